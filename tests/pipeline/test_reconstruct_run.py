"""ER/HIO through the runner: simulated, padded collection -> results node on both grids."""

import numpy as np
import pytest

from cdiplatform import open_catalog
from cdiplatform.pipeline.cluster import connect
from cdiplatform.pipeline.job import load_job
from cdiplatform.pipeline.runner import run_job

JOB = """
[job]
name = "er"
seed = 9

[[stage]]
stage = "simulate_2d"
output = "collections/c"
[stage.params]
n_scans = 24
chunk = 8

[[stage]]
stage = "pad"
inputs = { collection = "collections/c" }
output = "collections/p"
[stage.params]
chunk = 8

[[stage]]
stage = "reconstruct"
inputs = { collection = "collections/p" }
select = "8:16"
output = "results/er_hio"
[stage.params]
algorithm = "2*(20*ER+80*HIO)+20*ER"
n_starts = 2
model_size = 32
chunk = 4
"""


@pytest.fixture(scope="module")
def client():
    with connect("local", workers=2, dashboard=False) as handle:
        yield handle.client


def test_reconstruct_stage_writes_results_on_both_grids(client, tmp_path):
    path = tmp_path / "job.toml"
    path.write_text(JOB)
    catalog = tmp_path / "c.zarr"
    reports = run_job(load_job(path, root=tmp_path), client=client, catalog=catalog)
    assert not any(r.failed for r in reports), [r.failed for r in reports]
    cat = open_catalog(catalog)
    result = cat.open("results/er_hio").load()
    assert result.attrs["method"] == "er_hio" and result.attrs["collection"].endswith("collections/p")
    assert result["scan"].values.tolist() == list(range(8, 16))
    assert result["amplitude"].shape == (8, 64, 64) and result["amplitude_model"].shape == (8, 32, 32)
    assert (result["iterations"].values == 220).all()
    assert (result["seconds"].values > 0).all()
    # most objects are found (the stage scores them against the truth, after alignment)
    assert np.median(result["amplitude_error"].values) < 0.1
    # and the methods join on scan with plain xarray
    truth = cat.open("collections/c").sel(scan=result["scan"]).load()
    assert truth["amplitude"].shape == result["amplitude_model"].shape
