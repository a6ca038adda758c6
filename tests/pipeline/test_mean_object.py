"""mean_object: the mean of a reference collection predicted for every scan, a method benchmark accepts."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cdiplatform import open_catalog
from cdiplatform.errors import JobError
from cdiplatform.pipeline.job import load_job
from cdiplatform.pipeline.runner import run_job
from cdiplatform.pipeline.stages.mean_object import mean_object
from cdiplatform.testing.conformance import shared_client

N = 16


def objects(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Discs of random radius and scale (amplitude) with a random linear phase inside, 0 outside."""
    y, x = np.meshgrid(np.arange(N) - N // 2, np.arange(N) - N // 2, indexing="ij")
    amp, ph = [], []
    for _ in range(n):
        disc = (y ** 2 + x ** 2) <= rng.uniform(3, 6) ** 2
        amp.append(rng.uniform(0.2, 5.0) * disc * (1 + 0.2 * rng.random((N, N))))
        ph.append(disc * (rng.uniform(-0.3, 0.3) * y + rng.uniform(-0.3, 0.3) * x + rng.uniform(-1, 1)))
    return np.stack(amp).astype(np.float32), np.stack(ph).astype(np.float32)


def collection(amp: np.ndarray, ph: np.ndarray, ids: np.ndarray, status: np.ndarray | None = None) -> xr.Dataset:
    from cdiplatform.physics import diffraction_intensity

    n = len(ids)
    status = np.ones(n, np.uint8) if status is None else status
    intensity = diffraction_intensity(amp * np.exp(1j * ph), ndim=2).astype(np.float32)
    return xr.Dataset(
        {"intensity": (("scan", "y", "x"), intensity), "amplitude": (("scan", "y", "x"), amp),
         "phase": (("scan", "y", "x"), ph), "status": ("scan", status),
         "reason": ("scan", np.where(status == 1, "", "empty object").astype(object))},
        coords={"scan": ids, "kind": ("scan", ["simulated"] * n), "sample": ("scan", [f"o{i}" for i in ids]),
                "source": ("scan", ["test"] * n)})


JOB = """
[job]
name = "baseline"
seed = 3

[[stage]]
stage = "mean_object"
inputs = { collection = "collections/c", reference = "collections/ref" }
output = "results/mean"
[stage.params]
chunk = 2

[[stage]]
stage = "benchmark"
inputs = { collection = "collections/c", methods = ["results/mean"] }
output = "benchmarks/b"
[stage.params]
reference = ""
"""


@pytest.fixture
def inputs(tmp_path):
    """collections/c (5 scans, ids 0-4) and collections/ref (7 scans, ids 100-106, the one at 102 failed)."""
    rng = np.random.default_rng(11)
    cat = open_catalog(tmp_path / "c.zarr", mode="a")
    cat.write("collections/c", collection(*objects(5, rng), np.arange(5)), attrs={})
    amp, ph = objects(7, rng)
    amp[2] = np.nan  # a failed scan's fill values: it must not enter the mean
    status = np.ones(7, np.uint8)
    status[2] = 2
    cat.write("collections/ref", collection(amp, ph, np.arange(100, 107), status), attrs={})
    (tmp_path / "job.toml").write_text(JOB)
    return tmp_path, amp[status == 1], ph[status == 1]


def _run(folder):
    return run_job(load_job(folder / "job.toml", root=folder), client=shared_client(1), catalog=folder / "c.zarr")


def test_every_scan_gets_the_mean_of_the_reference_and_benchmark_takes_it_as_a_method(inputs):
    from cdiplatform.physics.compare import compare_objects
    from cdiplatform.physics.metrics import chi_square

    folder, ref_amp, ref_ph = inputs
    reports = _run(folder)
    assert all(r.ok == 5 and not r.failed for r in reports), [(r.label, r.failed) for r in reports]

    by_hand = (ref_amp.astype(np.float64) / ref_amp.reshape(len(ref_amp), -1).max(axis=1)[:, None, None]).mean(0)
    by_hand /= by_hand.max()
    phase_by_hand = ref_ph.astype(np.float64).mean(axis=0)
    cat = open_catalog(folder / "c.zarr")
    result = cat.open("results/mean").load()
    assert result.attrs["method"] == "mean_object"
    assert result.attrs["reference"]["scans"] == 6
    assert result["scan"].values.tolist() == [0, 1, 2, 3, 4]  # the collection's scans, not the reference's
    for i in range(5):
        np.testing.assert_allclose(result["amplitude"].values[i], by_hand, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(result["phase"].values[i], phase_by_hand, rtol=1e-6, atol=1e-7)
        assert (result["support"].values[i] == (by_hand > 0.1)).all()
    assert (result["status"].values == 1).all() and np.isfinite(result["seconds"].values).all()
    amp, ph = mean_object(ref_amp, ref_ph)
    np.testing.assert_allclose(amp, by_hand, rtol=1e-12)
    np.testing.assert_allclose(ph, phase_by_hand, rtol=1e-12)

    bench = cat.open("benchmarks/b").load()
    truth = cat.open("collections/c").load()
    assert bench["method"].values.tolist() == ["mean_object"]
    assert bench.attrs["methods"]["mean_object"].endswith("results/mean")
    guess = by_hand * np.exp(1j * phase_by_hand)
    for i in range(5):
        magnitude = np.sqrt(truth["intensity"].values[i].astype(np.float64))
        want = float(chi_square(guess, magnitude, ndim=2, fit_scale=True))
        assert bench["chi"].values[i, 0] == pytest.approx(want, rel=1e-4)
        cmp = compare_objects(guess, truth["amplitude"].values[i] * np.exp(1j * truth["phase"].values[i]))
        assert bench["amplitude_error"].values[i, 0] == pytest.approx(cmp.amplitude_error, rel=1e-4, abs=1e-6)
    assert np.isfinite(bench["phase_error"].values).all()


def test_a_reference_scan_that_is_ok_but_not_finite_fails_every_scan_with_its_name(inputs):
    folder, _, _ = inputs
    cat = open_catalog(folder / "c.zarr", mode="a")
    ref = cat.open("collections/ref").load()
    ref["phase"].values[4, 3, 3] = np.inf
    for var in ref.variables.values():
        var.encoding = {}
    cat.write("collections/ref", ref, attrs={}, overwrite=True)
    report = _run(folder)[0]
    assert set(report.failed) == {0, 1, 2, 3, 4}
    assert "reference scan 104 holds NaN or infinite values" in report.failed[0], report.failed[0]


def test_a_reference_without_truth_is_refused_in_one_line(inputs):
    folder, _, _ = inputs
    cat = open_catalog(folder / "c.zarr", mode="a")
    cat.write("collections/ref", cat.open("collections/ref").load().drop_vars("phase"), attrs={},
              overwrite=True)
    with pytest.raises(JobError, match=r"mean_object: the reference .* has no 'phase'"):
        _run(folder)


def test_mean_object_refuses_an_object_without_amplitude():
    amp = np.ones((3, 4, 4))
    amp[1] = 0
    with pytest.raises(ValueError, match="reference scan 1 has no positive amplitude"):
        mean_object(amp, np.zeros_like(amp))


def test_the_reference_is_averaged_block_by_block_as_in_one_piece(monkeypatch):
    from cdiplatform.pipeline.stages import mean_object as module

    rng = np.random.default_rng(5)
    amp, ph = objects(9, rng)
    status = np.ones(9, np.uint8)
    status[[3, 4]] = 2
    ds = collection(amp, ph, np.arange(9), status)
    monkeypatch.setattr(module, "_BLOCK_BYTES", 8 * N * N * 2)  # two scans a block: blocks with 0, 1, 2 ok
    got_amp, got_ph, count = module.reference_mean(ds)
    want_amp, want_ph = mean_object(amp[status == 1], ph[status == 1])
    assert count == 7
    np.testing.assert_allclose(got_amp, want_amp, rtol=1e-12)
    np.testing.assert_allclose(got_ph, want_ph, rtol=1e-12, atol=1e-15)


def test_on_a_padded_collection_the_mean_stays_on_the_model_grid_with_its_grid_relation(inputs):
    folder, ref_amp, ref_ph = inputs
    (folder / "job.toml").write_text(JOB.replace('collection = "collections/c"', 'collection = "collections/p"')
                                     .replace("[[stage]]", '[[stage]]\nstage = "pad"\ninputs = { collection = '
                                              '"collections/c" }\noutput = "collections/p"\n\n[[stage]]', 1))
    reports = _run(folder)
    assert all(r.ok == 5 and not r.failed for r in reports), [(r.label, r.failed) for r in reports]
    cat = open_catalog(folder / "c.zarr")
    result = cat.open("results/mean").load()
    assert result["amplitude"].shape == (5, N, N) and result["grid_relation"].values[0]
    np.testing.assert_allclose(result["amplitude"].values[3], mean_object(ref_amp, ref_ph)[0], rtol=1e-6, atol=1e-7)
    bench = cat.open("benchmarks/b").load()
    assert np.isfinite(bench["chi"].values).all() and np.isfinite(bench["amplitude_error"].values).all()
