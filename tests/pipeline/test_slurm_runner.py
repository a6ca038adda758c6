"""The same job on a real single-node SLURM (started by the test setup) and on a LocalCluster."""

import subprocess
import sys

import xarray as xr

from cdiplatform import open_catalog

JOB = """
[job]
name = "on_slurm"
seed = 5

[[stage]]
stage = "simulate_2d"
output = "collections/convex2d"
[stage.params]
n_scans = 96
chunk = 16

[[stage]]
stage = "cdiplatform.testing.stages:WhereTorchRuns"
output = "results/where"
[stage.params]
n_scans = 6
chunk = 1
"""


def cdip(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cdiplatform.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_the_same_job_on_slurm_gives_the_same_data(slurm, repo_root, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    config = repo_root / "jobs" / "slurm.yaml"
    on_slurm = cdip("run", str(job), "--catalog", str(tmp_path / "slurm.zarr"), "--cluster", f"slurm:{config}",
                    "--workers", "2", cwd=tmp_path)
    assert on_slurm.returncode == 0, on_slurm.stdout + on_slurm.stderr
    local = cdip("run", str(job), "--catalog", str(tmp_path / "local.zarr"), "--workers", "2", cwd=tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr

    a = open_catalog(tmp_path / "slurm.zarr").open("collections/convex2d").load()
    b = open_catalog(tmp_path / "local.zarr").open("collections/convex2d").load()
    variables = ["intensity", "amplitude", "phase", "digest", "status"]
    xr.testing.assert_identical(a[variables].drop_attrs(), b[variables].drop_attrs())

    where = open_catalog(tmp_path / "slurm.zarr").open("results/where").load()
    assert (where["slurm_job_id"].values > 0).all(), "a task ran outside a SLURM job"
    assert (open_catalog(tmp_path / "local.zarr").open("results/where")["slurm_job_id"].values == -1).all()
    prov = open_catalog(tmp_path / "slurm.zarr").provenance("collections/convex2d")
    assert prov["cluster"].startswith("slurm")
