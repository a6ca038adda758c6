import itertools

import numpy as np
import pytest
import torch

from cdiplatform.nn import apply_symmetry, n_symmetries
from cdiplatform.nn.augment import inversion, random_symmetry
from cdiplatform.physics import far_field


@pytest.mark.parametrize("ndim,size", [(2, 8), (2, 7), (3, 6)])
def test_every_symmetry_maps_a_true_pair_to_a_true_pair(ndim, size):
    rng = np.random.default_rng(0)
    obj = rng.normal(size=(2,) + (size,) * ndim) + 1j * rng.normal(size=(2,) + (size,) * ndim)
    magnitude = np.abs(far_field(obj, ndim=ndim))
    seen = set()
    for k in range(n_symmetries(ndim)):
        moved = apply_symmetry(torch.from_numpy(obj), k, ndim=ndim).numpy()
        np.testing.assert_allclose(
            np.abs(far_field(moved, ndim=ndim)),
            apply_symmetry(torch.from_numpy(magnitude), k, ndim=ndim).numpy(),
            atol=1e-9,
        )
        seen.add(moved.tobytes())
    assert len(seen) == n_symmetries(ndim)  # all distinct on a generic object


def test_flip_keeps_the_centre_voxel_and_symmetry_zero_is_identity():
    x = torch.zeros(1, 8, 8)
    x[0, 4, 5] = 1.0  # centre row N//2, one right of the centre column
    assert torch.equal(apply_symmetry(x, 0, ndim=2), x)
    flipped = apply_symmetry(x, 2 * 2, ndim=2)  # 2 permutations, flip bits 0b10: the second axis
    assert flipped[0, 4, 3] == 1.0
    with pytest.raises(ValueError, match="outside 0..7"):
        apply_symmetry(x, 8, ndim=2)


@pytest.mark.parametrize("ndim,size", [(2, 8), (2, 7), (3, 6)])
def test_inversion_maps_r_to_minus_r_about_the_centre(ndim, size):
    x = torch.arange(size**ndim, dtype=torch.float64).reshape((1,) + (size,) * ndim)
    centre = size // 2
    index = (0,) + tuple(np.random.default_rng(0).integers(0, size, ndim))
    mirrored = (0,) + tuple((2 * centre - i) % size for i in index[1:])
    assert apply_symmetry(x, inversion(ndim), ndim=ndim)[mirrored] == x[index]


@pytest.mark.parametrize("group, expected", [("permutations", 6), ("grid", 48)])
def test_random_symmetry_draws_from_its_group(group, expected):
    x = torch.arange(4 * 5 * 6, dtype=torch.float64).reshape(1, 4, 5, 6)  # each transpose has its own shape
    torch.manual_seed(0)
    drawn = {random_symmetry((x, x), ndim=3, group=group)[0].numpy().tobytes() for _ in range(600)}
    transposes = {x.permute(0, *(a + 1 for a in p)).numpy().tobytes() for p in itertools.permutations(range(3))}
    assert len(drawn) == expected
    assert (drawn == transposes) if group == "permutations" else (transposes < drawn)
    with pytest.raises(ValueError, match="group must be one of"):
        random_symmetry((x,), ndim=3, group="flips")
