"""Random streams follow what the run hash covers (seed, output node, scan identity), never a stage's place."""

import os
import subprocess
import sys

import numpy as np
import pytest

from cdiplatform import open_catalog
from cdiplatform.pipeline.job import load_job
from cdiplatform.pipeline.randomness import scan_key, scan_rngs, stage_seed_sequence, stream_key
from cdiplatform.pipeline.runner import KILL_AFTER_CHUNKS, run_job
from cdiplatform.testing.conformance import assert_runs_identical, shared_client

HEAD = '[job]\nname = "streams"\nseed = 12\n'
OTHER = """
[[stage]]
stage = "cdiplatform.testing.stages:Squares"
output = "results/inserted"
[stage.params]
n_scans = 6
chunk = 3
"""
CHAIN = """
[[stage]]
stage = "simulate_2d"
output = "collections/c"
[stage.params]
n_scans = 12
size = 16
chunk = 4

[[stage]]
stage = "cdiplatform.testing.stages:Squares"
output = "results/sq"
[stage.params]
n_scans = 12
chunk = 2
sleep = 0.3

[[stage]]
stage = "cdiplatform.testing.stages:Noisy"
inputs = { source = "results/sq" }
output = "results/a"
[stage.params]
chunk = 3
"""


@pytest.fixture(scope="module")
def client():
    return shared_client(2)


def job(tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(HEAD + text)
    return load_job(path, root=tmp_path)


def test_a_stage_inserted_earlier_changes_no_stream(client, tmp_path):
    plain = job(tmp_path, "plain", CHAIN)
    edited = job(tmp_path, "edited", OTHER + CHAIN)
    run_job(plain, client=client, catalog=tmp_path / "plain.zarr")
    run_job(edited, client=client, catalog=tmp_path / "edited.zarr")
    assert_runs_identical(tmp_path / "plain.zarr", tmp_path / "edited.zarr",
                          ["collections/c", "results/sq", "results/a"])


def test_a_half_done_run_resumed_after_an_edit_equals_an_uninterrupted_one(client, tmp_path):
    plain = job(tmp_path, "plain", CHAIN)
    edited = job(tmp_path, "edited", OTHER + CHAIN)
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    env = {**os.environ, KILL_AFTER_CHUNKS: "5"}  # simulate_2d's 3 chunks, then 2 of Squares' 6
    proc = subprocess.run([sys.executable, "-m", "cdiplatform.cli.main", "run", str(plain.path), "--catalog",
                           str(killed), "--cluster", client.scheduler.address], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    done = open_catalog(killed).open("results/sq")["done"].values
    assert 0 < done.sum() < 12
    reports = run_job(edited, client=client, catalog=killed)
    assert [r.state for r in reports] == ["new", "complete", "resume", "new"]
    run_job(plain, client=client, catalog=clean)
    assert_runs_identical(killed, clean, ["collections/c", "results/sq", "results/a"])


def test_streams_depend_on_seed_output_and_scan_only():
    a = scan_rngs(1, stream_key("results/x"), [0, 5])
    b = scan_rngs(1, stream_key("results/x"), [5])
    assert a[1].random() == b[0].random()
    assert scan_rngs(1, stream_key("results/y"), [5])[0].random() != scan_rngs(1, stream_key("results/x"), [5])[0].random()
    assert scan_rngs(2, stream_key("results/x"), [5])[0].random() != scan_rngs(1, stream_key("results/x"), [5])[0].random()
    # text identities (measured scans) and integers never share a key
    assert scan_key("5") != scan_key(5) and scan_key("bt/54") == scan_key("bt/54")
    one = np.random.default_rng(stage_seed_sequence(3, stream_key("training/t"))).random()
    assert one == np.random.default_rng(stage_seed_sequence(3, stream_key("training/t"))).random()


def test_the_split_of_a_training_set_follows_the_job_seed():
    """assemble_training draws its split from the job's seed (it had a seed parameter of its own)."""
    import xarray as xr

    from cdiplatform.pipeline.stages.assemble_training import AssembleTraining

    n = 40
    ds = xr.Dataset({v: (("scan", "y", "x"), np.ones((n, 4, 4), np.float32)) for v in ("intensity", "amplitude",
                                                                                       "phase")},
                    coords={"scan": np.arange(n)})
    params = AssembleTraining.Params()
    assert not hasattr(params, "seed")

    def order(seed, output="training/t"):
        stage = AssembleTraining(seed=stage_seed_sequence(seed, stream_key(output)))
        return stage.plan(params, {"collection": ds}).input_index.tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != order(1, "training/other")
