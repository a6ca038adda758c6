"""The 2D simulation (CDI NN 2018 recipe) and its stages ``simulate_2d`` and ``pad``."""

from __future__ import annotations


import numpy as np
import pytest
import xarray as xr
from scipy.spatial import ConvexHull

from cdiplatform.physics.fft import diffraction_intensity
from cdiplatform.simulate import Convex2DRecipe, object_intensity, random_objects_2d, simulate_2d, zero_pad
from cdiplatform.simulate.convex import convex_hull_successors, polygon_area_centroid, rasterize_convex
from cdiplatform.simulate.phase_fields import grating_gaussian_field, scale_phase

PI32 = np.float32(np.pi)


def rngs_for(scans, seed: int = 2018) -> list[np.random.Generator]:
    """One generator per scan, as the runner makes them (seed and scan position only)."""
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(s),))) for s in scans]


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    return simulate_2d(rngs_for(range(1000)), size=32)


def centroids(amplitude: np.ndarray) -> np.ndarray:
    grid = np.arange(amplitude.shape[-1])
    total = amplitude.sum(axis=(1, 2), dtype=np.float64)
    return np.stack([amplitude.sum(axis=2) @ grid, amplitude.sum(axis=1) @ grid], axis=1) / total[:, None]


def lattice_hull(mask: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie in the convex hull of the ``True`` pixels' centres."""
    pts = np.argwhere(mask).astype(float)
    hull = ConvexHull(pts)
    yy, xx = np.indices(mask.shape)
    grid = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(float)
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(axis=1)
    return inside.reshape(mask.shape)


# ----------------------------------------------------------------- objects


@pytest.mark.parametrize("size", [16, 32, 33])
def test_shapes_dtypes_and_ranges(size):
    out = simulate_2d(rngs_for(range(50)), size=size)
    assert set(out) == {"intensity", "amplitude", "phase"}
    for name, arr in out.items():
        assert arr.shape == (50, size, size), name
        assert arr.dtype == np.float32, name
        assert np.isfinite(arr).all(), name
    amp, phase = out["amplitude"], out["phase"]
    assert amp.min() >= 0 and amp.max() <= 1
    assert (amp.reshape(50, -1).max(axis=1) > 0.5).all()  # every object has an inside
    assert np.abs(phase).max() <= PI32
    assert (phase[amp == 0] == 0).all()
    assert not np.signbit(phase[amp == 0]).any()  # +0.0, not -0.0
    assert (out["intensity"] >= 0).all()


def test_phase_is_not_trivial(batch):
    amp, phase = batch["amplitude"], batch["phase"]
    inside = amp > 0
    ptp = np.array([np.ptp(p[m]) for p, m in zip(phase, inside)])
    assert ptp.max() > 0.9 * 2 * np.pi  # up to the full -pi..pi range...
    assert ptp.max() <= 2 * PI32
    assert np.median(ptp) > 1.0  # ...and usually a good part of it
    midrange = np.array([(p[m].max() + p[m].min()) / 2 for p, m in zip(phase, inside)])
    np.testing.assert_allclose(midrange, 0, atol=1e-5)  # centred on 0


def test_full_peak_to_peak_when_asked():
    recipe = Convex2DRecipe(ptp_min=1.0, ptp_max=1.0)
    amp, phase = random_objects_2d(rngs_for(range(30)), recipe=recipe)
    for a, p in zip(amp, phase):
        inside = p[a > 0]
        assert inside.max() == pytest.approx(np.pi, abs=1e-5)
        assert inside.min() == pytest.approx(-np.pi, abs=1e-5)


def test_centroid_at_grid_centre(batch):
    err = np.abs(centroids(batch["amplitude"]) - 16)
    assert err.max() < 0.35  # sampling limits it; the polygon's own centroid is exact


def test_objects_fit_with_margin(batch):
    support = (batch["amplitude"] > 0).any(axis=0)
    rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
    # at least 2 zero pixels on each side: the 2x padded grid is oversampled > 2 per axis
    assert rows.min() >= 2 and cols.min() >= 2 and rows.max() <= 29 and cols.max() <= 29
    assert (batch["amplitude"].reshape(1000, -1).max(axis=1) > 0.9).all()  # a plateau at 1, not a blur
    area = (batch["amplitude"] > 0.5).sum(axis=(1, 2))
    assert area.min() >= 0.04 * 32**2  # no slivers
    assert area.max() <= 0.35 * 32**2


def test_thresholded_shape_is_convex(batch):
    amp = batch["amplitude"]
    for i in range(0, 1000, 25):
        shape = amp[i] >= 0.5
        missing = lattice_hull(shape) & ~shape
        assert missing.sum() <= 2, f"object {i}: {missing.sum()} pixels of its hull missing"


@pytest.mark.parametrize(
    "size, recipe",
    [(32, Convex2DRecipe()), (16, Convex2DRecipe(sigma=0.0))],  # the second recentres many objects
    ids=["default", "recentring"],
)
def test_same_values_whatever_the_chunking(size, recipe):
    def run(scans):
        return simulate_2d(rngs_for(scans), size=size, recipe=recipe)

    whole = run(range(100))
    for chunk in (7, 13, 1):
        parts = [run(range(s, min(s + chunk, 100))) for s in range(0, 100, chunk)]
        for name, arr in whole.items():
            joined = np.concatenate([p[name] for p in parts])
            assert joined.tobytes() == arr.tobytes(), f"{name} differs with chunks of {chunk}"


def test_seeds_and_scans_differ():
    a = simulate_2d(rngs_for(range(10), seed=1))["amplitude"]
    b = simulate_2d(rngs_for(range(10), seed=2))["amplitude"]
    assert all(not np.array_equal(x, y) for x, y in zip(a, b))
    assert len({x.tobytes() for x in a}) == 10


def test_rngs_must_be_one_per_object():
    with pytest.raises(TypeError, match="sequence of generators"):
        random_objects_2d(np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"rngs\[1\]"):
        random_objects_2d([np.random.default_rng(0), 3])
    amp, phase = random_objects_2d([])
    assert amp.shape == phase.shape == (0, 32, 32)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"points_min": 2}, "points_min"),
        ({"radius_min": 0.4, "radius_max": 0.3}, "radius_min"),
        ({"max_radius": 0.6}, "max_radius"),
        ({"gratings_max": 0, "gaussians_max": 0}, "phase component"),
        ({"ptp_max": 1.5}, "ptp_max"),
        ({"aspect_min": 0.0}, "aspect_min"),
    ],
)
def test_bad_recipes_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        random_objects_2d(rngs_for(range(2)), recipe=Convex2DRecipe(**change))


# ----------------------------------------------------------------- diffraction


def test_parseval_and_zero_frequency(batch):
    amp, phase, intensity = batch["amplitude"], batch["phase"], batch["intensity"]
    photons = (amp.astype(np.float64) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(intensity.sum(axis=(1, 2)), photons, rtol=1e-5)
    obj = amp.astype(np.float64) * np.exp(1j * phase.astype(np.float64))
    np.testing.assert_allclose(intensity[:, 16, 16], np.abs(obj.sum(axis=(1, 2))) ** 2 / 32**2, rtol=1e-4)


@pytest.mark.parametrize("size", [32, 33])
def test_centred_symmetric_object_has_symmetric_intensity(size):
    c = size // 2
    r = np.arange(size) - c
    amp = (np.abs(r)[:, None] <= 5) & (np.abs(r)[None, :] <= 9)  # real, symmetric about (c, c)
    disc = np.hypot(*np.meshgrid(r, r)) < 4
    amp = (0.5 * amp + 0.5 * disc).astype(np.float32)[None]
    intensity = object_intensity(amp, np.zeros_like(amp))[0]
    lo = 1 if size % 2 == 0 else 0  # with even N, index 0 (frequency -N/2) has no mirror
    part = intensity[lo:, lo:]
    np.testing.assert_allclose(part, part[::-1, ::-1], rtol=1e-5, atol=1e-6 * part.max())
    assert intensity.argmax() == c * size + c  # zero frequency at N // 2


def test_object_intensity_matches_the_convention(batch):
    amp, phase = batch["amplitude"][:20], batch["phase"][:20]
    reference = diffraction_intensity(amp.astype(np.float64) * np.exp(1j * phase.astype(np.float64)), ndim=2)
    got = object_intensity(amp, phase)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-6 * reference.max())


# ----------------------------------------------------------------- padding


@pytest.mark.parametrize("size", [32, 33])
def test_padded_variant(size):
    factor = 2
    plain = simulate_2d(rngs_for(range(20)), size=size)
    padded = simulate_2d(rngs_for(range(20)), size=size, pad=factor)
    big = factor * size
    assert padded["intensity"].shape == (20, big, big)
    lo = big // 2 - size // 2
    centre = (slice(None), slice(lo, lo + size), slice(lo, lo + size))
    for name in ("amplitude", "phase"):
        assert np.array_equal(padded[name][centre], plain[name])  # the same object, centred at M // 2
        rest = padded[name].copy()
        rest[centre] = 0
        assert not rest.any()
    # the same far field, sampled twice as finely: every other pixel from M // 2 is the old one;
    # with the unitary FFT each sample carries 1 / factor**2 of the photons (the total is the same)
    s = big // 2 - factor * (size // 2)
    sub = padded["intensity"][:, s::factor, s::factor]
    peak = plain["intensity"].max()
    np.testing.assert_allclose(sub * factor**2, plain["intensity"], rtol=1e-4, atol=1e-6 * peak)
    total = plain["intensity"].sum(axis=(1, 2))
    np.testing.assert_allclose(padded["intensity"].sum(axis=(1, 2)), total, rtol=1e-5)


def test_zero_pad_keeps_the_centre_and_works_on_tensors():
    import torch

    a = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    p = zero_pad(a, factor=3)
    assert p.shape == (2, 15, 15)
    assert p[:, 15 // 2, 15 // 2].tolist() == a[:, 2, 2].tolist()
    t = zero_pad(torch.from_numpy(a), factor=3)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), p)
    cube = zero_pad(np.ones((1, 4, 4, 4), dtype=np.complex64), factor=2, ndim=3)
    assert cube.shape == (1, 8, 8, 8) and cube.dtype == np.complex64 and cube.sum() == 64
    with pytest.raises(ValueError, match="factor"):
        zero_pad(a, factor=0)


# ----------------------------------------------------------------- geometry and phase pieces


def test_hull_matches_scipy():
    rng = np.random.default_rng(5)
    pts = rng.normal(size=(200, 10, 2)) * [3.0, 7.0]
    valid = rng.random((200, 10)) < 0.7
    valid[:, :3] = True
    succ = convex_hull_successors(pts, valid=valid)
    area, centroid = polygon_area_centroid(pts, succ)
    for b in range(200):
        idx = np.flatnonzero(valid[b])
        hull = ConvexHull(pts[b, idx][:, ::-1])  # (x, y): vertices counter-clockwise
        ring = idx[hull.vertices]
        assert {i for i in range(10) if succ[b, i] != i} == set(ring)
        assert all(succ[b, ring[k]] == ring[(k + 1) % len(ring)] for k in range(len(ring)))
        assert area[b] == pytest.approx(hull.volume)
        tri = [pts[b, [ring[0], ring[k], ring[k + 1]]] for k in range(1, len(ring) - 1)]
        w = np.array([abs(np.linalg.det(np.stack([t[1] - t[0], t[2] - t[0]]))) / 2 for t in tri])
        c = sum(wk * t.mean(axis=0) for wk, t in zip(w, tri)) / w.sum()
        np.testing.assert_allclose(centroid[b], c, atol=1e-9)


def test_hull_needs_three_points():
    with pytest.raises(ValueError, match="fewer than 3"):
        convex_hull_successors(np.zeros((1, 4, 2)), valid=np.array([[True, True, False, False]]))


def test_rasterization_is_exact_and_digitally_convex():
    rng = np.random.default_rng(11)
    pts = 16 + rng.normal(size=(100, 8, 2)) * 5
    succ = convex_hull_successors(pts)
    masks = rasterize_convex(pts, succ, size=32)
    yy, xx = np.indices((32, 32))
    for b in range(100):
        inside = np.ones((32, 32), dtype=bool)
        for i in np.flatnonzero(succ[b] != np.arange(8)):
            (y0, x0), (y1, x1) = pts[b, i], pts[b, succ[b, i]]
            inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
        assert np.array_equal(masks[b], inside)
        if masks[b].sum() >= 3:
            assert np.array_equal(lattice_hull(masks[b]), masks[b])


def test_separable_phase_field_matches_direct_sum():
    rng = np.random.default_rng(3)
    b, k, m, n = 4, 2, 3, 20
    args = dict(
        grating_direction=rng.uniform(0, np.pi, (b, k)),
        grating_period=rng.uniform(5, 30, (b, k)),
        grating_offset=rng.uniform(0, 2 * np.pi, (b, k)),
        grating_weight=rng.uniform(-1, 1, (b, k)),
        gaussian_centre=rng.uniform(-5, 5, (b, m, 2)),
        gaussian_width=rng.uniform(1, 6, (b, m, 2)),
        gaussian_weight=rng.uniform(-1, 1, (b, m)),
    )
    field = grating_gaussian_field(size=n, **args)
    y, x = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    for i in range(b):
        direct = np.zeros((n, n))
        for j in range(k):
            q = 2 * np.pi / args["grating_period"][i, j]
            t = args["grating_direction"][i, j]
            wave = np.sin(q * (np.sin(t) * y + np.cos(t) * x) + args["grating_offset"][i, j])
            direct += args["grating_weight"][i, j] * wave
        for j in range(m):
            (cy, cx), (sy, sx) = args["gaussian_centre"][i, j], args["gaussian_width"][i, j]
            bump = np.exp(-((y - cy) ** 2) / (2 * sy**2) - (x - cx) ** 2 / (2 * sx**2))
            direct += args["gaussian_weight"][i, j] * bump
        np.testing.assert_allclose(field[i], direct, atol=1e-12)


def test_scale_phase():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(3, 8, 8)).astype(np.float32)
    support = np.zeros((3, 8, 8), dtype=bool)
    support[:, 2:6, 1:7] = True
    support[2] = False  # empty support: phase 0, no error
    phase = scale_phase(field, support, np.array([1.0, 2 * np.pi, 3.0]))
    assert phase.dtype == np.float32
    for i, ptp in enumerate([1.0, 2 * np.pi]):
        inside = phase[i][support[i]]
        assert inside.max() - inside.min() == pytest.approx(ptp, rel=1e-6)
        assert inside.max() + inside.min() == pytest.approx(0, abs=1e-6)
    assert (phase[~support] == 0).all()


# ----------------------------------------------------------------- stages


def _params(stage, **table):
    from cdiplatform.pipeline.params import build_params

    return build_params(stage, table, where="test")


def test_the_stage_params_are_the_recipe():
    from cdiplatform.pipeline.stages.simulate_2d import Simulate2D

    assert Simulate2D.Params().recipe == Convex2DRecipe()
    params = _params(Simulate2D, n_scans=30, ptp_max=0.5, sigma=2.0)
    assert params.recipe == Convex2DRecipe(ptp_max=0.5, sigma=2.0) and params.n_scans == 30


def test_simulate_2d_stage_plan_and_compute():
    from cdiplatform.pipeline.stages.simulate_2d import Simulate2D

    stage = Simulate2D()
    params = _params(Simulate2D, n_scans=30, size=16, chunk=8, ptp_max=0.5)
    stage.validate(params, {})
    plan = stage.plan(params, {})
    assert (plan.n_scans, plan.chunk) == (30, 8)
    assert set(plan.variables) == {"intensity", "amplitude", "phase"}
    for var in plan.variables.values():
        assert var.dims == ("y", "x") and var.shape == (16, 16) and var.dtype == "float32"
    assert plan.variables["phase"].attrs["units"] == "rad"
    assert list(plan.coords["kind"]) == ["simulated"] * 30
    assert plan.coords["sample"][29] == "convex2d-29"
    assert set(plan.coords["source"]) == {"simulate_2d"}
    assert plan.coords["x"][0] == "x" and list(plan.coords["x"][1][[0, 8]]) == [-8, 0]
    assert plan.attrs["model_grid"] == 16

    index = np.arange(8, 16)
    result = stage.compute(params, {}, index, rngs_for(index))
    expected = simulate_2d(rngs_for(index), size=16, recipe=Convex2DRecipe(ptp_max=0.5))
    assert result.failed == {}
    for name, arr in expected.items():
        assert np.array_equal(result.values[name], arr)
    ptp = [np.ptp(p[a > 0]) for a, p in zip(result.values["amplitude"], result.values["phase"])]
    assert max(ptp) <= 0.5 * 2 * np.pi + 1e-5


@pytest.mark.parametrize("change", [{"n_scans": 0}, {"chunk": 0}, {"points_min": 1}, {"size": 4}])
def test_simulate_2d_stage_refuses_bad_params(change):
    from cdiplatform.pipeline.stages.simulate_2d import Simulate2D

    with pytest.raises(ValueError):
        Simulate2D().validate(_params(Simulate2D, **change), {})


def collection_dataset(n: int = 12, size: int = 16) -> xr.Dataset:
    """What the runner hands to ``pad``: a loaded simulated collection."""
    from cdiplatform.pipeline.stages.simulate_2d import Simulate2D

    stage = Simulate2D()
    params = Simulate2D.Params(n_scans=n, size=size, chunk=n)
    plan = stage.plan(params, {})
    values = stage.compute(params, {}, np.arange(n), rngs_for(range(n))).values
    coords = {k: (v if isinstance(v, tuple) else ("scan", v)) for k, v in plan.coords.items()}
    coords["scan"] = ("scan", np.arange(n))
    data = {k: (("scan", "y", "x"), v) for k, v in values.items()}
    data["status"] = ("scan", np.ones(n, dtype=np.uint8))
    data["reason"] = ("scan", np.full(n, "", dtype=object))
    return xr.Dataset(data, coords=coords, attrs=plan.attrs)


def test_pad_stage_reproduces_the_padded_simulation():
    from cdiplatform.pipeline.stages.pad import Pad

    ds = collection_dataset()
    stage, params = Pad(), Pad.Params(factor=2, chunk=5)
    stage.validate(params, {"collection": ds})
    plan = stage.plan(params, {"collection": ds})
    assert plan.n_scans == 12 and plan.chunk == 5
    assert plan.variables["intensity"].shape == (32, 32)
    assert plan.attrs["model_grid"] == 16 and plan.attrs["grid"] == 32 and plan.attrs["pad_factor"] == 2
    assert "padded_from" in plan.attrs
    assert list(plan.coords["sample"]) == list(ds["sample"].values)
    assert list(plan.coords["y"][1][[0, 16]]) == [-16, 0]

    index = np.arange(5, 10)
    result = stage.compute(params, {"collection": ds.isel(scan=index)}, index, rngs_for(index))
    expected = simulate_2d(rngs_for(index), size=16, pad=2)
    assert result.failed == {}
    for name, arr in expected.items():
        assert result.values[name].tobytes() == arr.tobytes(), name


def test_pad_stage_refuses_measured_collections():
    from cdiplatform.pipeline.stages.pad import Pad

    ds = collection_dataset(n=2).drop_vars(["amplitude", "phase"])
    with pytest.raises(ValueError, match="amplitude"):
        Pad().validate(Pad.Params(), {"collection": ds})
    with pytest.raises(ValueError, match="factor"):
        Pad().validate(Pad.Params(factor=1), {"collection": collection_dataset(n=2)})
