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


MODEL_JOB = """
[job]
name = "relative_model"
seed = 5

[[stage]]
stage = "simulate_2d"
output = "collections/c"
[stage.params]
n_scans = 8
chunk = 4

[[stage]]
stage = "infer"
inputs = { collection = "collections/c", model = "models.zarr:models/tiny" }
output = "results/nn"
[stage.params]
chunk = 4
device = "cpu"

[[stage]]
stage = "cdiplatform.testing.stages:WhereTorchRuns"
output = "results/where"
[stage.params]
n_scans = 2
"""


def test_a_relative_model_path_is_found_by_workers_started_elsewhere(slurm, repo_root, tmp_path):
    """The driver resolves every input, the model too, against its own working directory; SLURM workers
    started in another directory (here /, by --chdir) are handed absolute paths."""
    from cdiplatform.catalog import write_model
    from cdiplatform.nn import ModelConfig, build_model, state_to_arrays, weights_hash

    config = ModelConfig(arch="cdi_nn_2d", ndim=2, size=32, widths=(4, 8), oversampling=(1.0, 9.0))
    weights = state_to_arrays(build_model(config, seed=0))
    write_model(open_catalog(tmp_path / "models.zarr", mode="a"), "models/tiny",
                {f"model/{k}": v for k, v in weights.items()},
                attrs={"config": config.to_dict(), "architecture": config.architecture(),
                       "weights_hash": weights_hash(weights)})
    yaml = (repo_root / "jobs" / "slurm.yaml").read_text().replace(
        "job-extra-directives: []", 'job-extra-directives: ["--chdir=/"]')
    config_file = tmp_path / "slurm-chdir.yaml"
    config_file.write_text(yaml)
    job = tmp_path / "job.toml"
    job.write_text(MODEL_JOB)
    run = cdip("run", str(job), "--catalog", "out.zarr", "--cluster", f"slurm:{config_file}", "--workers", "1",
               cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    where = open_catalog(tmp_path / "out.zarr").open("results/where").load()
    assert set(where["cwd"].values.tolist()) == {"/"} and (where["slurm_job_id"].values > 0).all()
    result = open_catalog(tmp_path / "out.zarr").open("results/nn").load()
    assert (result["status"].values == 1).all()
    prov = open_catalog(tmp_path / "out.zarr").provenance("results/nn")
    assert prov["inputs"]["model"]["node"] == f"{tmp_path / 'models.zarr'}:models/tiny"
    assert prov["inputs"]["model"]["weights_hash"] == weights_hash(weights)
