import numpy as np
import pytest
import torch

from cdiplatform.nn import (
    ModelConfig,
    WeightsMismatchError,
    build_model,
    load_arrays,
    load_model,
    state_to_arrays,
    weights_hash,
)

SMALL_2D = ModelConfig(arch="cdi_nn_2d", ndim=2, size=16, widths=(4, 8))
SMALL_3D = ModelConfig(arch="cdi_nn_3d", ndim=3, size=8, widths=(2, 4), dropout=0.1)


@pytest.mark.parametrize("config", [SMALL_2D, SMALL_3D])
def test_round_trip_gives_identical_weights_and_outputs(config):
    src = build_model(config, seed=1).eval()
    arrays = state_to_arrays(src)
    assert all(type(v) is np.ndarray for v in arrays.values())
    dst = load_arrays(
        build_model(config, seed=2), arrays, config.to_dict(), expected_hash=weights_hash(arrays)
    )
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.eval().state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = torch.rand(2, 1, *config.grid)
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(src(x), dst(x), strict=True))


def test_state_to_arrays_are_copies():
    model = build_model(SMALL_2D, seed=0)
    arrays = state_to_arrays(model)
    name = next(iter(arrays))
    arrays[name][...] = 0
    assert not torch.all(model.state_dict()[name] == 0)


def test_hash_is_order_independent_and_content_sensitive():
    arrays = state_to_arrays(build_model(SMALL_2D, seed=0))
    h = weights_hash(arrays)
    assert h.startswith("sha256:") and weights_hash(dict(reversed(list(arrays.items())))) == h
    changed = {k: v.copy() for k, v in arrays.items()}
    first = next(iter(changed))
    changed[first].flat[0] = np.nextafter(changed[first].flat[0], np.float32(np.inf))
    assert weights_hash(changed) != h
    renamed = {("x" + k if k == first else k): v for k, v in arrays.items()}
    assert weights_hash(renamed) != h


def test_refuses_other_architecture_naming_the_field():
    arrays = state_to_arrays(build_model(SMALL_2D))
    other = SMALL_2D.replace(widths=(4, 16))
    with pytest.raises(
        WeightsMismatchError, match=r"architecture widths: model has \[4, 16\], weights are for \[4, 8\]"
    ):
        load_arrays(build_model(other), arrays, SMALL_2D)
    normed = SMALL_2D.replace(batch_norm=True)
    with pytest.raises(WeightsMismatchError, match=r"architecture batch_norm: model has True, weights are for False"):
        load_arrays(build_model(normed), arrays, SMALL_2D)


def test_refuses_wrong_shape_missing_and_extra_keys_naming_them():
    model = build_model(SMALL_2D)
    arrays = state_to_arrays(model)
    key = "shape_net.0.0.weight"
    last = list(arrays)[-1]
    bad = {k: v + 1 for k, v in arrays.items()}
    bad[key] = np.zeros((5, 1, 3, 3), dtype=np.float32)
    del bad[last]
    bad["extra.weight"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(WeightsMismatchError) as err:
        load_arrays(model, bad, SMALL_2D)
    text = str(err.value)
    assert f"{key}: shape (5, 1, 3, 3), model expects (4, 1, 3, 3)" in text
    assert f"missing keys: {last}" in text
    assert "unexpected keys: extra.weight" in text
    second = list(arrays)[1]
    assert torch.equal(
        model.state_dict()[second], torch.from_numpy(arrays[second])
    )  # nothing loaded on refusal


def test_refuses_wrong_hash_and_dtype():
    model = build_model(SMALL_2D)
    arrays = state_to_arrays(model)
    with pytest.raises(WeightsMismatchError, match="hash"):
        load_arrays(model, arrays, SMALL_2D, expected_hash="sha256:" + "0" * 64)
    as64 = {k: v.astype(np.float64) for k, v in arrays.items()}
    with pytest.raises(WeightsMismatchError, match="dtype float64, model expects torch.float32"):
        load_arrays(model, as64, SMALL_2D)


def test_load_model_builds_from_stored_config():
    src = build_model(SMALL_3D, seed=4)
    arrays = state_to_arrays(src)
    model = load_model(arrays, SMALL_3D.to_dict(), expected_hash=weights_hash(arrays))
    assert not model.training
    assert weights_hash(state_to_arrays(model)) == weights_hash(arrays)
