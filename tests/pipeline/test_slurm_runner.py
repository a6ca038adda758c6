"""Jobs on a real single-node SLURM (started by the test setup): same data as a LocalCluster, torch stages
on GPU jobs, runs that outlive their workers' --lifetime and a scancel of a worker job."""

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import dask
import pytest
import xarray as xr
from distributed import get_task_stream

from cdiplatform import open_catalog
from cdiplatform.pipeline.cluster import connect, gpu_resources, task_resources, thread_report, tunnel_command
from cdiplatform.pipeline.cluster.threads import ALLOCATOR_ENV, OPENMP_ENV, PROFILE_INTERVAL
from cdiplatform.pipeline.job import load_job
from cdiplatform.pipeline.runner import run_job
from cdiplatform.testing.conformance import assert_runs_identical
from cdiplatform.testing.slurm import cluster_file_for_test_node

pytestmark = pytest.mark.slurm

JOB = """
[job]
name = "on_slurm"
seed = 5

[[stage]]
stage = "simulate_2d"
output = "collections/convex2d"
[stage.params]
n_scans = 32
chunk = 8

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


def _job(tmp_path: Path, text: str, name: str = "job.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_job(path, root=tmp_path)


def _squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _job_ids(logs: Path, name: str) -> set[int]:
    """The SLURM jobs named ``name`` that ran, from their log files ``<name>-<jobid>.err``."""
    return {int(p.stem.rsplit("-", 1)[1]) for p in logs.glob(f"{name}-*.err")}


def test_the_same_job_on_slurm_gives_the_same_data(slurm, repo_root, tmp_path, local_client):
    """Through ``cdip run``: SLURM jobs from the shipped jobs/slurm.yaml (fit to the test node) write what a
    LocalCluster writes."""
    (tmp_path / "job.toml").write_text(JOB)
    config = cluster_file_for_test_node(repo_root / "jobs" / "slurm.yaml", tmp_path / "cpu.yaml")
    on_slurm = cdip("run", "job.toml", "--catalog", "slurm.zarr", "--cluster", f"slurm:{config}",
                    "--workers", "2", cwd=tmp_path)
    assert on_slurm.returncode == 0, on_slurm.stdout + on_slurm.stderr
    run_job(load_job(tmp_path / "job.toml", root=tmp_path), client=local_client, catalog=tmp_path / "local.zarr")

    a = open_catalog(tmp_path / "slurm.zarr").open("collections/convex2d").load()
    b = open_catalog(tmp_path / "local.zarr").open("collections/convex2d").load()
    variables = ["intensity", "amplitude", "phase", "digest", "status"]
    xr.testing.assert_identical(a[variables].drop_attrs(), b[variables].drop_attrs())

    where = open_catalog(tmp_path / "slurm.zarr").open("results/where").load()
    assert set(where["slurm_job_id"].values.tolist()) <= _job_ids(tmp_path / "slurm-logs", "cdip-cpu")
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
    config_file = cluster_file_for_test_node(repo_root / "jobs" / "slurm.yaml", tmp_path / "slurm-chdir.yaml",
                                    job_extra_directives=["--chdir=/"])
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


ROUTING_JOB = """
[job]
name = "routing"
seed = 3

[[stage]]
stage = "cdiplatform.testing.stages:Squares"
output = "results/squares"
[stage.params]
n_scans = 24
chunk = 2
sleep = 0.2

[[stage]]
stage = "cdiplatform.testing.stages:WhereTorchRuns"
output = "results/where"
[stage.params]
n_scans = 16
chunk = 1
"""


@pytest.mark.timeout(240)
def test_torch_stages_run_on_gpu_jobs_the_others_anywhere(slurm, require, repo_root, tmp_path):
    """CPU jobs (jobs/slurm.yaml) and --gres=gpu:1 jobs (jobs/slurm_gpu.yaml) on one scheduler: the torch
    stage runs only on the two GPU jobs, on both of them (distributed #1851), the other stage also on
    the CPU job; closing cancels every job."""
    require(slurm.gpus >= 2, f"the test SLURM node offers {slurm.gpus} gpu GRES, 2 needed")
    cpu = cluster_file_for_test_node(repo_root / "jobs" / "slurm.yaml", tmp_path / "cpu.yaml", adapt=(1, 1))
    gpu = cluster_file_for_test_node(repo_root / "jobs" / "slurm_gpu.yaml", tmp_path / "gpu.yaml", adapt=(2, 2))
    logs = tmp_path / "slurm-logs"
    with connect(f"slurm:{cpu},{gpu}", wait=120) as handle:
        client = handle.client
        assert handle.cluster.jobs_per_pool() == {"cpu": 1, "gpu": 2}
        script = handle.cluster.job_script_of("gpu")
        assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script
        assert "#SBATCH --cpus-per-task=1" in script and "export OMP_NUM_THREADS=1" in script
        report = thread_report(client).values()
        assert {e["torch"] for e in report} == {1}
        assert all(e["allocator"] == ALLOCATOR_ENV for e in report)  # the job script's, not distributed's
        assert all(e["openmp"] == OPENMP_ENV for e in report)
        assert {e["profile_interval"] for e in report} == {PROFILE_INTERVAL}
        assert task_resources(client, uses_torch=True) == {"GPU": 1}
        names = {addr: w["name"] for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        gpu_workers = set(gpu_resources(client))
        assert len(gpu_workers) == 2
        jobs = {name: int(job.job_id) for name, job in handle.cluster.workers.items()}
        gpu_jobs = {jobs[names[a]] for a in gpu_workers}
        port = urlparse(handle.dashboard_link).port
        assert tunnel_command(handle).startswith(f"ssh -N -L 8787:127.0.0.1:{port} ")

        with get_task_stream(client) as stream:
            reports = run_job(_job(tmp_path, ROUTING_JOB), client=client, catalog=tmp_path / "c.zarr")
    assert _wait_gone({str(j) for j in jobs.values()}), "closing left SLURM jobs behind"
    assert [(r.ok, len(r.failed)) for r in reports] == [(24, 0), (16, 0)]

    where = open_catalog(tmp_path / "c.zarr").open("results/where").load()
    spread = Counter(where["slurm_job_id"].values.tolist())
    print(f"torch chunks per GPU job: {dict(spread)}")
    assert set(spread) == gpu_jobs, (spread, gpu_jobs)  # only GPU jobs, and both of them
    squares_on = {names.get(t["worker"]) for t in stream.data if str(t["key"]).startswith("routing-testing_squares")}
    assert "cpu.0" in squares_on, squares_on
    assert _job_ids(logs, "cdip-gpu") == gpu_jobs and len(_job_ids(logs, "cdip-cpu")) == 1


def _wait_gone(job_ids: set[str], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while job_ids & _squeue_ids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


SLOW_JOB = """
[job]
name = "slow"
seed = 11

[[stage]]
stage = "cdiplatform.testing.stages:Squares"
output = "results/squares"
[stage.params]
n_scans = {n_scans}
chunk = 2
sleep = {sleep}
"""


@pytest.mark.timeout(240)
def test_a_run_outlives_its_workers_lifetime(slurm, repo_root, tmp_path, local_client):
    """The job's 2 worker processes retire at --lifetime 10s (+-1 s) and the run takes longer: a new job
    replaces the first (jobs of several processes were never resubmitted: jobqueue #691) and every scan is ok,
    with the data of an undisturbed run."""
    config = cluster_file_for_test_node(repo_root / "jobs" / "slurm.yaml", tmp_path / "cpu.yaml", adapt=(1, 1),
                                        cores=2, processes=2,
                                        worker_extra_args=["--lifetime", "10s", "--lifetime-stagger", "1s"])
    job = _job(tmp_path, SLOW_JOB.format(n_scans=48, sleep=1.0))
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}), \
            connect(f"slurm:{config}", wait=120) as handle:
        (report,) = run_job(job, client=handle.client, catalog=tmp_path / "c.zarr")
    ran = _job_ids(tmp_path / "slurm-logs", "cdip-cpu")
    assert len(ran) >= 2, f"no job replaced the first one: {ran}"
    assert (report.ok, report.computed, report.failed) == (48, 48, {})
    # the reference: the same scans without the sleep (which changes no value)
    run_job(_job(tmp_path, SLOW_JOB.format(n_scans=48, sleep=0.0), "quick.toml"), client=local_client,
            catalog=tmp_path / "local.zarr")
    assert_runs_identical(tmp_path / "c.zarr", tmp_path / "local.zarr", "results/squares")


@pytest.mark.timeout(240)
def test_scancel_of_a_worker_job_mid_stage(slurm, repo_root, tmp_path, local_client):
    """``scancel`` of a job whose worker is computing a chunk: the chunk is computed again elsewhere, a new job
    replaces the cancelled one, every scan is ok and counted once, the data are an undisturbed run's."""
    config = cluster_file_for_test_node(repo_root / "jobs" / "slurm.yaml", tmp_path / "cpu.yaml", adapt=(2, 2))
    job = _job(tmp_path, SLOW_JOB.format(n_scans=24, sleep=1.5))
    cancelled = []

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}), \
            connect(f"slurm:{config}", wait=120) as handle:
        client, cluster = handle.client, handle.cluster

        def cancel_one(report, n):
            if cancelled or report.ok < 4:
                return
            busy = [a for a, keys in client.processing().items() if keys]
            name = client.scheduler_info(n_workers=-1)["workers"][busy[0]]["name"]
            cancelled.append(cluster.workers[name].job_id)
            subprocess.run(["scancel", str(cancelled[0])], check=True)

        (report,) = run_job(job, client=client, catalog=tmp_path / "c.zarr", on_progress=cancel_one)
    assert cancelled, "the run ended before a job was cancelled"
    ran = _job_ids(tmp_path / "slurm-logs", "cdip-cpu")
    assert len(ran) >= 3 and int(cancelled[0]) in ran, (ran, cancelled)
    assert (report.ok, report.computed, report.failed) == (24, 24, {})
    status = open_catalog(tmp_path / "c.zarr").open("results/squares")["status"].values
    assert (status == 1).all()
    run_job(_job(tmp_path, SLOW_JOB.format(n_scans=24, sleep=0.0), "quick.toml"), client=local_client,
            catalog=tmp_path / "local.zarr")
    assert_runs_identical(tmp_path / "c.zarr", tmp_path / "local.zarr", "results/squares")
