"""The iteration's transforms in calls of bounded size: the same result as one call, and memory reused."""

import pytest
import torch

from cdiplatform.phasing import transforms
from cdiplatform.phasing.transforms import unitary_fftn_
from cdiplatform.testing.page_faults import fft_pair_page_faults


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize(("shape", "ndim", "bound"), [
    ((3, 5, 8, 8, 8), 3, 3 * 8**3 * 8),   # 15 rows, 3 a call (the last call 3 too)
    ((2, 3, 8, 8, 8), 3, 4 * 8**3 * 8),   # 6 rows, 4 then 2
    ((4, 3, 16, 16), 2, 16 * 16 * 8),     # 2D, a row a call
    ((1, 1, 16, 16, 16), 3, 1024),        # one row larger than the bound: one call
])
def test_calls_of_bounded_size_give_the_transform_of_one_call(monkeypatch, shape, ndim, bound, in_place, inverse):
    monkeypatch.setattr(transforms, "CALL_BYTES", bound)
    x = torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    dims = tuple(range(-ndim, 0))
    expected = (torch.fft.ifftn if inverse else torch.fft.fftn)(x, dim=dims, norm="ortho")
    out = x.clone() if in_place else torch.empty_like(x)
    src = out if in_place else x
    assert unitary_fftn_(src, out, ndim=ndim, inverse=inverse) is out
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)


def test_a_batch_of_32_mib_is_transformed_without_faulting_its_temporaries_in_again():
    """A pair of 16 x 64^3 (32 MiB) in one torch call maps a fresh temporary each time; in bounded
    calls glibc hands back the same memory, so the steady state hardly faults."""
    faults, pages = fft_pair_page_faults((16, 1, 64, 64, 64))
    assert faults < pages / 10


@pytest.mark.parametrize(("shape", "ndim", "grids_a_call", "expected"), [
    ((5, 2, 8, 8, 8), 3, 4, [(0, 2, 0, 2), (2, 4, 0, 2), (4, 5, 0, 2)]),  # two scans of 2 starts a block
    ((2, 3, 8, 8, 8), 3, 2, [(0, 1, 0, 2), (0, 1, 2, 3), (1, 2, 0, 2), (1, 2, 2, 3)]),  # a scan's starts split
    ((2, 2, 16, 16), 2, 0.5, [(0, 1, 0, 1), (0, 1, 1, 2), (1, 2, 0, 1), (1, 2, 1, 2)]),  # a grid above the bound
    ((3, 1, 8, 8, 8), 3, 100, [(0, 3, 0, 1)]),  # the whole batch in one
])
def test_transform_blocks_cover_the_batch_in_contiguous_blocks_of_bounded_size(
    monkeypatch, shape, ndim, grids_a_call, expected
):
    grid_bytes = 8 * int(torch.tensor(shape[-ndim:]).prod())
    monkeypatch.setattr(transforms, "CALL_BYTES", int(grids_a_call * grid_bytes))
    blocks = transforms.transform_blocks(shape, ndim=ndim)
    assert [(s.start, s.stop, k.start, k.stop) for s, k in blocks] == expected
    x = torch.zeros(shape[:2] + (1,))
    for s, k in blocks:
        assert x[s, k].is_contiguous()
        x[s, k] += 1
    assert torch.equal(x, torch.ones_like(x))  # every start exactly once
