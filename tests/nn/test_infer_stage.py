"""The ``infer`` stage on a model node of a real catalog (no cluster: compute called directly)."""

import numpy as np
import pytest
import xarray as xr

from cdiplatform.nn import ModelConfig, build_model, make_inputs, predict, state_to_arrays, weights_hash
from cdiplatform.pipeline.stage import get_stage
from cdiplatform.pipeline.stages import infer as infer_module


@pytest.fixture
def model_node(tmp_path):
    """A tiny 2D model written to a real catalog, as the train stage writes it."""
    from cdiplatform.catalog import open_catalog, write_model

    config = ModelConfig(arch="cdi_nn_2d", ndim=2, size=32, widths=(4, 8), oversampling=(1.8, 2.6))
    weights = state_to_arrays(build_model(config, seed=0))
    catalog = open_catalog(tmp_path / "c.zarr", mode="a")
    attrs = {
        "config": config.to_dict(),
        "architecture": config.architecture(),
        "weights_hash": weights_hash(weights),
    }
    write_model(catalog, "models/tiny", {f"model/{k}": v for k, v in weights.items()}, attrs=attrs)
    infer_module._MODELS.clear()
    ds = open_catalog(tmp_path / "c.zarr").open("models/tiny", chunks=None)  # the input the runner gives
    ds.attrs["node"] = f"{tmp_path / 'c.zarr'}:models/tiny"
    yield ds
    infer_module._MODELS.clear()


@pytest.mark.parametrize("average_permutations", [False, True])
def test_infer_stage_predicts_and_flags_scans(objects, model_node, average_permutations):
    _, _, fit = objects(3, size=32, ndim=2, rng=np.random.default_rng(0), extent=0.45)
    _, _, small = objects(1, size=32, ndim=2, rng=np.random.default_rng(1), extent=0.2)
    intensity = np.concatenate([fit, small, np.zeros((1, 32, 32), np.float32)])
    ds = xr.Dataset(
        {
            "intensity": (("scan", "y", "x"), intensity),
            # a per-axis record as prepare writes it (another threshold): not what the model is screened by
            "oversampling": (("scan", "axis"), np.full((5, 2), 2.2, np.float32)),
        },
        coords={"scan": np.arange(5), "axis": ["y", "x"]},
    )
    stage = get_stage("infer")()
    params = stage.Params(chunk=4, batch_size=2, device="cpu", average_permutations=average_permutations)
    inputs = {"collection": ds, "model": model_node}
    stage.validate(params, inputs)
    plan = stage.plan(params, inputs)
    assert plan.n_scans == 5 and plan.variables["phase"].shape == (32, 32)
    result = stage.compute(params, inputs, np.arange(5), [np.random.default_rng(i) for i in range(5)])
    assert set(result.failed) == {3, 4}
    assert "oversampling" in result.failed[3] and "no positive" in result.failed[4]
    for name, var in plan.variables.items():
        assert result.values[name].shape == (5, *var.shape) and result.values[name].dtype == var.dtype
    assert np.isfinite(result.values["amplitude"][:3]).all() and np.isnan(result.values["phase"][3:]).all()
    model = infer_module._model(model_node, "cpu")
    assert len(infer_module._MODELS) == 1, "the network is loaded once per process and device"
    amp, phase = predict(model, make_inputs(intensity[:3], ndim=2), average_permutations=average_permutations)
    np.testing.assert_allclose(result.values["amplitude"][:3], amp, atol=1e-6)
    np.testing.assert_allclose(result.values["phase"][:3], phase, atol=1e-5)


def test_infer_stage_refuses_bad_dims(model_node):
    stage = get_stage("infer")()
    ds = xr.Dataset({"intensity": (("scan", "a", "b"), np.ones((1, 4, 4)))})
    with pytest.raises(ValueError, match="dims"):
        stage.validate(stage.Params(), {"collection": ds, "model": model_node})
