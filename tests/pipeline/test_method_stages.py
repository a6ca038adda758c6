"""refine, seeded reconstruct and benchmark on small 3D crystals, through the real runner."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cdiplatform import open_catalog
from cdiplatform.pipeline.job import load_job
from cdiplatform.pipeline.runner import run_job
from cdiplatform.testing.conformance import StageTests, shared_client

N = 12  # model grid; the phasing grid is the padded 24^3


def crystals(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Faceted, lopsided blobs (unlike their twins) with a smooth strain phase, on the model grid."""
    z, y, x = np.meshgrid(*[np.arange(N) - N // 2] * 3, indexing="ij")
    amp, ph = [], []
    for _ in range(n):
        a = (np.abs(z) / rng.uniform(3, 4) + np.abs(y) / rng.uniform(2.5, 4) + np.abs(x) / rng.uniform(3, 4)) <= 1
        a |= (z >= 0) & (z <= 2) & (np.abs(y) <= 1) & (x >= 1) & (x <= 4)  # a lump on one side
        amp.append(a.astype(np.float32))
        ph.append((0.12 * (z + rng.uniform(-1, 1)) ** 2 * a - 0.6 * a).astype(np.float32))
    return np.stack(amp), np.stack(ph)


def write_inputs(catalog, *, twin_scan: int = 1, garbage_scan: int = 2, failed_scan: int = 3) -> None:
    """collections/gold (model grid, truth), and results/nn: the truth perturbed, one scan the twin, one garbage,
    one failed (as a network refusing a scan records it)."""
    from cdiplatform.physics.align import twin

    rng = np.random.default_rng(7)
    amp, ph = crystals(6, rng)
    ids = np.arange(6)
    coords = {"scan": ids, "kind": ("scan", ["simulated"] * 6), "sample": ("scan", [f"c{i}" for i in ids]),
              "source": ("scan", ["test"] * 6)}
    book = {"status": ("scan", np.ones(6, np.uint8)), "reason": ("scan", np.full(6, "", dtype=object)),
            "done": ("scan", np.ones(6, bool)), "seconds": ("scan", np.full(6, 0.01, np.float32)),
            "digest": ("scan", np.arange(6, dtype="<u8"))}
    from cdiplatform.physics import diffraction_intensity

    obj = amp * np.exp(1j * ph)
    collection = xr.Dataset({"intensity": (("scan", "z", "y", "x"), diffraction_intensity(obj, ndim=3).astype(np.float32)),
                             "amplitude": (("scan", "z", "y", "x"), amp), "phase": (("scan", "z", "y", "x"), ph),
                             **book}, coords=coords)
    guess = amp * (1 + 0.05 * rng.standard_normal(amp.shape)) * np.exp(1j * (ph + 0.3 * rng.standard_normal(ph.shape)))
    guess = guess * amp
    guess[twin_scan] = twin(obj[twin_scan])
    guess[garbage_scan] = rng.random((N,) * 3) * np.exp(2j * np.pi * rng.random((N,) * 3))
    status = np.ones(6, np.uint8)
    status[failed_scan] = 2
    reason = np.full(6, "", dtype=object)
    reason[failed_scan] = "oversampling 1.1 outside the training range"
    peak = np.abs(guess).reshape(6, -1).max(axis=1).reshape(-1, 1, 1, 1)
    nn = xr.Dataset({"amplitude": (("scan", "z", "y", "x"), (np.abs(guess) / peak).astype(np.float32)),
                     "phase": (("scan", "z", "y", "x"), np.angle(guess).astype(np.float32)),
                     "support": (("scan", "z", "y", "x"), (np.abs(guess) / peak > 0.1).astype(np.uint8)),
                     **{**book, "status": ("scan", status), "reason": ("scan", reason)}}, coords={"scan": ids})
    cat = open_catalog(catalog, mode="a")
    cat.write("collections/gold", collection, attrs={"model_grid": N})
    cat.write("results/nn", nn, attrs={"method": "nn", "collection": "collections/gold"})


UPSTREAM = """
[[stage]]
stage = "pad"
inputs = { collection = "collections/gold" }
output = "collections/gold_pad"
"""
REFINE = """
[[stage]]
stage = "refine"
inputs = { collection = "collections/gold_pad", seed = "results/nn" }
output = "results/nn_refined"
[stage.params]
max_iterations = 150
chunk = {chunk}
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chain")
    catalog = folder / "c.zarr"
    write_inputs(catalog)
    job = folder / "job.toml"
    job.write_text('[job]\nname = "chain"\nseed = 2\n' + UPSTREAM + REFINE.replace("{chunk}", "2") + """
[[stage]]
stage = "reconstruct"
inputs = { collection = "collections/gold_pad", seed = "results/nn" }
output = "results/er_hio_nn"
[stage.params]
algorithm = "40*HIO+20*ER"
average_last = 0
n_starts = 1
record_every = 10
chunk = 3

[[stage]]
stage = "reconstruct"
inputs = { collection = "collections/gold_pad" }
output = "results/er_hio"
[stage.params]
algorithm = "2*(20*ER+80*HIO)+20*ER"
n_starts = 2
record_every = 20
chunk = 3

[[stage]]
stage = "benchmark"
inputs = { collection = "collections/gold_pad", methods = ["results/nn", "results/nn_refined", "results/er_hio_nn", "results/er_hio"] }
output = "benchmarks/gold"
[stage.params]
reference = "er_hio"
""")
    reports = run_job(load_job(job, root=folder), client=shared_client(2), catalog=catalog)
    return catalog, {r.node: r for r in reports}


def test_a_scan_whose_network_result_failed_fails_in_refine_with_that_reason(chain):
    catalog, reports = chain
    refined = reports["results/nn_refined"]
    assert refined.failed[3] == "failed upstream in results/nn: oversampling 1.1 outside the training range"
    ds = open_catalog(catalog).open("results/nn_refined").load()
    assert ds.attrs["method"] == "nn_refined"
    ok = [0, 4, 5]
    assert (ds["chi"].values[ok] < 0.05).all()
    assert (ds["phase_error"].values[ok] < 0.15).all(), ds["phase_error"].values
    assert np.isfinite(ds["history_chi"].values[0, :2]).all()


def test_the_benchmark_compares_every_method_and_flags_twins_and_garbage(chain):
    catalog, _ = chain
    ds = open_catalog(catalog).open("benchmarks/gold").load()
    assert ds["method"].values.tolist() == ["nn", "nn_refined", "er_hio_nn", "er_hio"]
    flags = ds["flag"].to_pandas()
    assert flags.loc[1, "nn"] == "twin", ds["flag_reason"].values[1]
    assert flags.loc[2, "nn"] == "failed" and "chi" in ds["flag_reason"].to_pandas().loc[2, "nn"]
    assert flags.loc[3, "nn"] == "failed" and "oversampling" in ds["flag_reason"].to_pandas().loc[3, "nn"]
    assert flags.loc[0, "nn_refined"] == "good"
    assert ds["agreement_iou"].to_pandas().loc[0, "er_hio"] == 1.0
    # every method is judged against the data on the phasing grid: the refinement fits far better than its seed
    chi = ds["chi"].to_pandas()
    assert chi.loc[0, "nn_refined"] < 0.5 * chi.loc[0, "nn"]
    assert np.isfinite(ds["seconds_to_target"].to_pandas().loc[0, "er_hio"])


@pytest.mark.parametrize("change, message", [
    ({"optimizer": '"sgd"'}, "unknown optimizer 'sgd'"),
    ({"loss": '"l2"'}, "unknown refinement loss 'l2'"),
    ({"learning_rate": "-0.1"}, "learning_rate"),
])
def test_bad_refine_parameters_are_one_line_errors(tmp_path, change, message):
    from cdiplatform.errors import JobError

    table = REFINE.replace("{chunk}", "2") + "".join(f"{k} = {v}\n" for k, v in change.items())
    job = tmp_path / "job.toml"
    job.write_text('[job]\nname = "bad"\n' + UPSTREAM + table)
    with pytest.raises(JobError, match=message) as info:
        load_job(job, root=tmp_path)
    assert "\n" not in str(info.value)


class TestRefine(StageTests):
    upstream = UPSTREAM
    stage_table = REFINE
    output = "results/nn_refined"
    chunks = (2, 4)
    spoil = ("collections/gold_pad", "intensity")
    spoil_position = 1

    def prepare_catalog(self, catalog):
        write_inputs(catalog)


class TestBenchmark(StageTests):
    upstream = UPSTREAM
    stage_table = """
        [[stage]]
        stage = "benchmark"
        inputs = { collection = "collections/gold_pad", methods = ["results/nn"] }
        output = "benchmarks/b"
        [stage.params]
        reference = "nn"
        chunk = {chunk}
    """
    output = "benchmarks/b"
    spoil = ("collections/gold_pad", "intensity")
    spoil_position = 0

    def prepare_catalog(self, catalog):
        write_inputs(catalog)
