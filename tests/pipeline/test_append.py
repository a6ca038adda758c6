"""A beamtime grows: scans recorded later flow through every stage, the others are left untouched."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform import open_catalog
from cdiplatform.pipeline.job import load_job
from cdiplatform.pipeline.runner import run_job
from cdiplatform.testing.beamtime import BeamtimeWriter, SyntheticScan, bragg_peak_stack
from cdiplatform.testing.conformance import assert_runs_identical, shared_client

JOB = """
[job]
name = "growing"
seed = 3
[job.vars]
spec = ""
frames = ""
scans = "all"

[[stage]]
stage = "ingest_spec"
output = "raw/bt/*"
[stage.params]
spec = "${spec}"
frames = "${frames}"
scans = "${scans}"

[[stage]]
stage = "prepare"
inputs = { raw = "raw/bt/*" }
output = "collections/bt_16"
[stage.params]
size = 16
threshold = 0.0

[[stage]]
stage = "network_input"
inputs = { collection = "collections/bt_16" }
output = "collections/bt_8"
[stage.params]
size = 8
target_oversampling = [2.0]
chunk = 2

[[stage]]
stage = "reconstruct"
inputs = { collection = "collections/bt_16" }
output = "results/bt_er_hio"
[stage.params]
algorithm = "10*ER+20*HIO+10*ER"
average_last = 0
n_starts = 1
twin = false
chunk = 1
"""

NODES = ["collections/bt_16", "collections/bt_8", "results/bt_er_hio"]


def record(writer: BeamtimeWriter, numbers, rng) -> None:
    for n in numbers:
        writer.write_scan(SyntheticScan(n, bragg_peak_stack((16, 16, 16), rng, peak_counts=5e4)))


@pytest.fixture
def beamtime(tmp_path):
    writer = BeamtimeWriter(tmp_path / "bt", sensor_shape=(16, 16))
    writer.write_file_header()
    writer.write_fields()
    return writer


def run(tmp_path, writer, catalog, scans="all"):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    files = writer.files
    loaded = load_job(job, root=tmp_path, overrides={"spec": str(files.spec), "frames": files.frame_pattern,
                                                      "scans": scans})
    return run_job(loaded, client=shared_client(2), catalog=catalog)


def test_scans_appended_are_the_only_ones_computed_in_every_stage(tmp_path, beamtime):
    rng = np.random.default_rng(9)
    catalog = tmp_path / "c.zarr"
    record(beamtime, [10, 11, 12], rng)
    first = run(tmp_path, beamtime, catalog)
    assert [r.computed for r in first] == [3, 3, 3, 3] and not any(r.failed for r in first)
    before = {node: open_catalog(catalog).open(node, chunks=None).load() for node in NODES}

    record(beamtime, [13, 14], rng)
    second = run(tmp_path, beamtime, catalog)
    assert [r.computed for r in second] == [2, 2, 2, 2], [(r.label, r.state, r.computed) for r in second]
    assert [r.state for r in second] == ["resume", "grow", "grow", "grow"]
    cat = open_catalog(catalog)
    for node in NODES:
        after = cat.open(node, chunks=None).load()
        assert after["scan"].values.tolist() == [f"bt/{n}" for n in (10, 11, 12, 13, 14)]
        assert (after["status"].values == 1).all()
        assert_runs_identical(after.isel(scan=slice(0, 3)), before[node])

    # the same five scans processed in one go give the same data: growth changes nothing
    fresh = tmp_path / "fresh.zarr"
    run(tmp_path, beamtime, fresh)
    assert_runs_identical(catalog, fresh, NODES)


def test_a_scan_retried_later_is_appended_after_the_others(tmp_path, beamtime):
    """A scan that failed to ingest (here: not recorded yet) and comes later goes to the end of every node;
    the scans already there keep their places."""
    rng = np.random.default_rng(2)
    catalog = tmp_path / "c.zarr"
    record(beamtime, [20, 22], rng)
    first = run(tmp_path, beamtime, catalog, scans="20-22")
    assert sorted(first[0].failed) == ["bt/21"] and "not in SPEC" in first[0].failed["bt/21"]
    record(beamtime, [21], rng)
    second = run(tmp_path, beamtime, catalog, scans="20-22")
    assert [r.computed for r in second] == [1, 1, 1, 1]
    ids = open_catalog(catalog).open("results/bt_er_hio")["scan"].values.tolist()
    assert ids == ["bt/20", "bt/22", "bt/21"]
