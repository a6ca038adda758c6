import json

import numpy as np
import pytest
import xarray as xr

from cdiplatform.physics.fft import diffraction_intensity
from cdiplatform.pipeline.params import build_params
from cdiplatform.pipeline.stage import get_stage


@pytest.fixture
def padded_collection(make_object):
    """Four 16-pixel objects zero-padded to 32x32 (model grid 16)."""
    rng = np.random.default_rng(5)
    obj = np.stack([make_object(rng, 12, 16) for _ in range(4)])
    padded = np.zeros((4, 32, 32), complex)
    padded[:, 8:24, 8:24] = obj
    inten = diffraction_intensity(padded, ndim=2).astype(np.float32)
    ds = xr.Dataset(
        {
            "intensity": (("scan", "y", "x"), inten),
            "amplitude": (("scan", "y", "x"), np.abs(padded).astype(np.float32)),
            "phase": (("scan", "y", "x"), np.angle(padded).astype(np.float32)),
        },
        coords={"scan": np.arange(4), "kind": ("scan", ["simulated"] * 4)},
        attrs={"model_grid": 16},
    )
    return ds


def _params(stage, **kw):
    """The stage's parameters from a [stage.params] table, as a job file gives them."""
    base = dict(algorithm="2*(20*ER+80*HIO)+20*ER", n_starts=2, average_last=10, chunk=2, device="cpu")
    base.update(kw)
    return build_params(type(stage), base, where="test")


def test_plan_and_compute(padded_collection):
    stage = get_stage("reconstruct")()
    assert stage.output_kind == "result" and stage.method == "er_hio"
    assert [i.name for i in stage.input_specs()] == ["collection", "seed"]
    params = _params(stage)
    plan = stage.plan(params, {"collection": padded_collection})
    assert plan.n_scans == 4 and plan.chunk == 2
    assert plan.variables["amplitude"].dims == ("y", "x")
    assert plan.variables["amplitude_model"].dims == ("y_model", "x_model")
    assert plan.variables["amplitude_model"].shape == (16, 16)
    assert plan.variables["chi"].dims == () and "phase_error" in plan.variables
    assert plan.attrs["method"] == "er_hio"

    rngs = [np.random.default_rng([1, i]) for i in range(4)]
    res = stage.compute(params, {"collection": padded_collection}, np.arange(4), rngs)
    assert set(res.values) == set(plan.variables)
    for name, var in plan.variables.items():
        assert res.values[name].shape == (4, *var.shape), name
        assert res.values[name].dtype == var.numpy_dtype, name
    assert not res.failed
    ok = [0, 1, 2, 3]
    assert np.all(res.values["chi"][ok] < 5e-3)
    assert np.all(res.values["iterations"][ok] == 220)
    assert np.nanmax(res.values["amplitude"][ok]) == pytest.approx(1.0)
    assert np.all(res.values["amplitude_error"][ok] < 0.1)
    assert np.all(np.isfinite(res.values["llk"][ok]))
    # the model-grid crop is the centre of the full result
    np.testing.assert_array_equal(res.values["amplitude_model"][0], res.values["amplitude"][0, 8:24, 8:24])
    assert list(res.values["fft"]) == ["torch"] * 4  # the rule's library for a small grid, kept per scan


def test_the_transforms_library_is_a_parameter_recorded_with_each_scan(padded_collection):
    stage = get_stage("reconstruct")()
    chi = {}
    for fft in ("torch", "pocketfft"):
        params = _params(stage, algorithm="20*ER", n_starts=1, average_last=0, fft=fft)
        rngs = [np.random.default_rng([1, i]) for i in range(4)]  # the same starts for both
        res = stage.compute(params, {"collection": padded_collection}, np.arange(4), rngs)
        assert not res.failed and list(res.values["fft"]) == [fft] * 4
        chi[fft] = res.values["chi"]
    np.testing.assert_allclose(chi["pocketfft"], chi["torch"], rtol=1e-4)  # float32 rounding (ER does not amplify it)


def test_results_do_not_depend_on_chunking(padded_collection):
    stage = get_stage("reconstruct")()
    params = _params(stage, algorithm="10*ER+20*HIO", n_starts=1, average_last=0)
    ds = padded_collection.isel(scan=[0, 1, 3])
    rngs = lambda idx: [np.random.default_rng([1, i]) for i in idx]  # noqa: E731

    whole = stage.compute(params, {"collection": ds}, np.array([0, 1, 3]), rngs([0, 1, 3]))
    one = stage.compute(params, {"collection": ds.isel(scan=[2])}, np.array([3]), rngs([3]))
    np.testing.assert_allclose(whole.values["amplitude"][2], one.values["amplitude"][0], atol=1e-4)


def test_mask_is_honoured(padded_collection):
    ds = padded_collection.isel(scan=[0, 1]).copy()
    mask = np.zeros(ds["intensity"].shape, np.uint8)
    mask[:, 15:17, 15:17] = 1  # bad pixels
    ds["mask"] = (("scan", "y", "x"), mask)
    ds["intensity"].values[:, 15:17, 15:17] = 0.0
    stage = get_stage("reconstruct")()
    rngs = [np.random.default_rng(i) for i in range(2)]
    res = stage.compute(_params(stage), {"collection": ds}, np.arange(2), rngs)
    assert not res.failed
    assert np.all(res.values["amplitude_error"] < 0.1)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"algorithm": "20*EX"}, "unknown operator"),
        ({"beta": 1.5}, "beta"),
        ({"chunk": 0}, "chunk"),
        ({"model_size": 64}, "does not fit"),
        ({"n_starts": 1, "keep_best": 2}, "keep_best"),
    ],
)
def test_validate_refuses_bad_params(padded_collection, kw, match):
    stage = get_stage("reconstruct")()
    with pytest.raises(ValueError, match=match):  # from the table (a JobError) or from validate
        stage.validate(_params(stage, **kw), {"collection": padded_collection})


@pytest.mark.parametrize("stage_name", ["reconstruct", "refine"])
def test_a_model_size_that_disagrees_with_the_grid_relation_is_refused_up_front(padded_collection, stage_name):
    # A user's job set model_size = 8 on a collection whose pad recorded model grid 16: every scan
    # failed in put() with a broadcast error; the conflict is now refused before anything runs.
    from cdiplatform.physics.grids import GridRelation

    relation = json.dumps(GridRelation.for_zero_padding((16, 16), factor=2).to_dict())
    ds = padded_collection.assign(grid_relation=("scan", [relation] * 4))
    stage = get_stage(stage_name)()
    inputs = {"collection": ds}
    if stage_name == "refine":
        inputs["seed"] = ds[["amplitude", "phase"]]
    params = _params if stage_name == "reconstruct" else (lambda s, **kw: build_params(type(s), kw, where="test"))
    with pytest.raises(ValueError, match="disagrees with the collection's grid_relation"):
        stage.validate(params(stage, model_size=8), inputs)
    stage.validate(params(stage, model_size=16), inputs)  # agreeing is fine


def test_a_recipe_then_overrides_and_nested_tables():
    from cdiplatform.phasing import RECIPES

    stage = get_stage("reconstruct")
    params = build_params(stage, {"recipe": "cohere_scan54", "n_starts": 2, "shrink_wrap": {"sigma": 0.8},
                                  "chunk": 1}, where="test")
    assert params.chunk == 1 and params.phasing.n_starts == 2
    assert params.phasing.shrink_wrap.sigma == 0.8
    assert params.phasing.shrink_wrap.threshold == RECIPES["cohere_scan54"].shrink_wrap.threshold
    assert params.phasing.average_last == RECIPES["cohere_scan54"].average_last
    assert build_params(stage, {"twin": False}, where="test").phasing.twin is None
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        build_params(stage, {"recipe": "nope"}, where="test")
    with pytest.raises(ValueError, match="shrink_wrap: unknown parameter 'sigmaa'"):
        build_params(stage, {"shrink_wrap": {"sigmaa": 1.0}}, where="test")


def test_validate_refuses_bad_collections(padded_collection):
    stage = get_stage("reconstruct")()
    with pytest.raises(ValueError, match="no 'intensity'"):
        stage.validate(_params(stage), {"collection": padded_collection.drop_vars("intensity")})
    flat = xr.Dataset({"intensity": (("scan", "x"), np.ones((2, 8), np.float32))})
    with pytest.raises(ValueError, match="dims"):
        stage.validate(_params(stage), {"collection": flat})


# --- the resolution of the reconstruction: PRTF of the kept starts, FSC of binomial halves -----------------

N3 = 24


@pytest.fixture
def crystals_3d(make_object):
    """Two 12-voxel crystals on a 24^3 grid as Poisson photon counts (peak 1e4), with an orthogonal q step."""
    from cdiplatform.postprocess.resolution import orthogonal_q_step

    rng = np.random.default_rng(3)
    obj = np.stack([make_object(rng, N3 // 2, N3, ndim=3) for _ in range(2)])
    inten = diffraction_intensity(obj, ndim=3)
    counts = rng.poisson(1e4 * inten / inten.max(axis=(1, 2, 3), keepdims=True)).astype(np.float32)
    step = orthogonal_q_step((N3,) * 3, (10.0,) * 3)
    return xr.Dataset({"intensity": (("scan", "z", "y", "x"), counts),
                       "q_step": (("scan", "axis", "xyz"), np.broadcast_to(step, (2, 3, 3)).copy())},
                      coords={"scan": np.arange(2), "axis": ["z", "y", "x"], "xyz": ["x", "y", "z"]})


def _params_3d(stage, **kw):
    return _params(stage, **{"algorithm": "20*ER+60*HIO+20*ER", "average_last": 0, "twin": False, **kw})


def _rngs(index):
    return [np.random.default_rng([1, int(i)]) for i in index]


PRTF = {"prtf", "prtf_q", "prtf_resolution", "prtf_resolution_shell", "prtf_crossed", "prtf_crossed_shell"}
FSC = {"fsc", "fsc_q", "fsc_threshold", "fsc_resolution", "fsc_resolution_shell", "fsc_crossed", "fsc_crossed_shell"}


def test_the_prtf_of_the_kept_starts_is_stored_per_scan_and_axis(crystals_3d):
    stage = get_stage("reconstruct")()
    params = _params_3d(stage, keep_best=2)
    plan = stage.plan(params, {"collection": crystals_3d})
    assert PRTF <= set(plan.variables) and not FSC & set(plan.variables)
    assert plan.variables["prtf"].dims == ("shell",) and plan.variables["prtf"].shape == (N3 // 2,)
    assert plan.variables["prtf_resolution"].dims == ("axis",) and plan.variables["prtf_resolution"].shape == (3,)
    assert plan.coords["axis"][1].tolist() == ["z", "y", "x"]
    res = stage.compute(params, {"collection": crystals_3d}, np.arange(2), _rngs(range(2)))
    assert not res.failed and set(res.values) == set(plan.variables)
    for name, var in plan.variables.items():
        assert res.values[name].shape == (2, *var.shape) and res.values[name].dtype == var.numpy_dtype, name
    assert res.values["prtf_resolution"].shape == (2, 3) and np.isfinite(res.values["prtf_resolution"]).all()
    # half-periods no finer than the grid's finest (pi / q_max: about a voxel of 10 nm)
    assert (res.values["prtf_resolution"] > 9.0).all() and (res.values["prtf_resolution"] < 200).all()
    curve = res.values["prtf"]
    assert np.isfinite(curve[:, :5]).all()
    assert np.nanmin(curve) >= 0 and np.nanmax(curve) < 1.1
    assert np.all(np.isfinite(curve) == np.isfinite(res.values["prtf_q"]))  # NaN-padded together
    assert np.nanmax(curve[:, :2]) > 0.9  # the low shells are reproducible


@pytest.mark.parametrize("case", ["keep_best_1", "2d", "no_q_step"])
def test_without_a_prtf_the_node_has_no_prtf_variables(crystals_3d, padded_collection, case):
    stage = get_stage("reconstruct")()
    ds = {"keep_best_1": crystals_3d, "2d": padded_collection,
          "no_q_step": crystals_3d.drop_vars("q_step")}[case]
    params = _params_3d(stage, keep_best=1) if case == "keep_best_1" else _params(stage, keep_best=2)
    plan = stage.plan(params, {"collection": ds})
    assert not (PRTF | FSC) & set(plan.variables) and "axis" not in plan.coords
    if case == "keep_best_1":
        res = stage.compute(params, {"collection": ds}, np.arange(2), _rngs(range(2)))
        assert set(res.values) == set(plan.variables)


def test_fsc_is_refused_where_it_cannot_apply(crystals_3d, padded_collection):
    stage = get_stage("reconstruct")()
    params = _params(stage, fsc=True)
    for ds, words in ((padded_collection, "needs a 3D collection"),
                      (crystals_3d.drop_vars("q_step"), "needs the collection's q steps.*no 'q_step'")):
        with pytest.raises(ValueError, match=f"reconstruct: fsc = true {words}") as info:
            stage.validate(params, {"collection": ds})
        assert "\n" not in str(info.value)
    seed = xr.Dataset({"amplitude": np.abs(crystals_3d["intensity"]), "phase": 0 * crystals_3d["intensity"]})
    with pytest.raises(ValueError, match="reconstruct: fsc = true needs random starts"):
        stage.validate(params, {"collection": crystals_3d, "seed": seed})
    stage.validate(params, {"collection": crystals_3d})
    # a q step of another layout is refused before anything runs (the PRTF alone needs it too)
    bad = crystals_3d.drop_vars("q_step").assign(q_step=(("scan", "k"), np.ones((2, 9))))
    with pytest.raises(ValueError, match=r"reconstruct: q_step of .* not \(scan, axis=3, xyz=3\)"):
        stage.validate(_params(stage, keep_best=2), {"collection": bad})


def test_the_fsc_of_binomial_halves_does_not_depend_on_chunking(crystals_3d):
    stage = get_stage("reconstruct")()
    params = _params_3d(stage, keep_best=2, fsc=True)
    plan = stage.plan(params, {"collection": crystals_3d})
    assert (PRTF | FSC) <= set(plan.variables)
    both = stage.compute(params, {"collection": crystals_3d}, np.arange(2), _rngs(range(2)))
    assert not both.failed and set(both.values) == set(plan.variables)
    fsc, thr = both.values["fsc"], both.values["fsc_threshold"]
    assert np.isfinite(fsc[:, :5]).all() and np.all(np.isfinite(fsc) == np.isfinite(thr))
    assert np.nanmin(fsc) >= -1 and np.nanmax(fsc) <= 1 + 1e-9
    assert np.nanmax(fsc[:, :2]) > 0.9  # halves agree at low q
    assert np.isfinite(both.values["fsc_resolution"]).all() and both.values["fsc_resolution"].shape == (2, 3)
    np.testing.assert_array_equal(both.values["fsc_q"], both.values["prtf_q"])  # one grid, one set of shells
    # scan 1 alone (chunk 1) draws its starts and its halves from its own stream: the same result
    alone = stage.compute(params, {"collection": crystals_3d.isel(scan=[1])}, np.array([1]), _rngs([1]))
    for name in FSC | PRTF:
        np.testing.assert_array_equal(alone.values[name][0], both.values[name][1], err_msg=name)
    # the FSC draws after the full data's starts: the reconstruction is the one without it
    plain = stage.compute(_params_3d(stage, keep_best=2), {"collection": crystals_3d.isel(scan=[1])}, np.array([1]),
                          _rngs([1]))
    np.testing.assert_array_equal(plain.values["amplitude"], alone.values["amplitude"])
