"""Cluster connection: local, address, SLURM (real, single node), GPU routing, threads.

Also the testing helpers the cluster tests rely on (``require``, the SLURM configuration).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import dask
import pytest

from cdiplatform.pipeline.cluster import (
    connect,
    gpu_resources,
    has_gpu_workers,
    load_slurm_config,
    task_resources,
    thread_report,
)
from cdiplatform.testing import require
from cdiplatform.testing.slurm import slurm_conf

CORES = len(os.sched_getaffinity(0))


def _worker_addresses(client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


# -- local -----------------------------------------------------------------------------


def _check_thread_share(client, *, workers: int) -> None:
    share = max(1, CORES // workers)
    report = thread_report(client)
    assert len(report) == workers
    for entry in report.values():
        assert entry["nthreads"] == 1
        assert entry["threads"] == share
        assert entry["torch"] == share
        assert entry["omp"] == str(share)


def test_local_two_workers_share_the_cores(local_client):
    assert len(_worker_addresses(local_client)) == 2
    _check_thread_share(local_client, workers=2)


def test_local_one_worker_gets_all_cores_and_its_own_dashboard(local_client):
    other = local_client.dashboard_link
    with connect("local", workers=1) as handle:
        assert handle.kind == "local"
        assert len(_worker_addresses(handle.client)) == 1
        _check_thread_share(handle.client, workers=1)
        # dashboards on free ports: two clusters at once do not collide, neither takes 8787
        assert handle.dashboard_link.startswith("http://")
        assert handle.dashboard_link != other
        assert ":8787/" not in handle.dashboard_link + other


def _listening(pid: int) -> dict[int, str]:
    """The TCP ports a process listens on, with the address each is bound to."""
    import psutil

    return {c.laddr.port: c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN}


def test_the_dashboard_listens_on_loopback_unless_opened(local_client):
    from urllib.parse import urlparse

    port = urlparse(local_client.dashboard_link).port
    bound = _listening(os.getpid())  # the LocalCluster's scheduler runs in this process
    assert bound[port] == "127.0.0.1", bound
    scheduler = int(local_client.scheduler.address.rsplit(":", 1)[1])
    assert bound[scheduler] == "127.0.0.1", bound
    with connect("local", workers=1, dashboard_address="0.0.0.0:0") as handle:
        opened = urlparse(handle.dashboard_link).port
        assert _listening(os.getpid())[opened] in ("0.0.0.0", "::")


def test_torch_tasks_go_to_the_gpu_worker():
    def where() -> tuple[str, str | None]:
        from distributed import get_worker

        return get_worker().address, os.environ.get("CUDA_VISIBLE_DEVICES")

    with connect("local", workers=2, gpu_workers=1, dashboard=False) as handle:
        client = handle.client
        gpus = gpu_resources(client)
        assert list(gpus.values()) == [1.0]
        (gpu_worker,) = gpus
        assert has_gpu_workers(client)
        assert task_resources(client, uses_torch=True) == {"GPU": 1}
        assert task_resources(client, uses_torch=False) is None

        futures = [
            client.submit(where, resources=task_resources(client, True), key=f"torch-{i}", pure=False)
            for i in range(6)
        ]
        assert {f.result() for f in futures} == {(gpu_worker, "0")}


def test_no_gpu_workers_means_no_resources(local_client):
    assert gpu_resources(local_client) == {}
    assert not has_gpu_workers(local_client)
    assert task_resources(local_client, uses_torch=True) is None


def test_gpu_workers_cannot_exceed_workers():
    with pytest.raises(ValueError, match="gpu_workers=3 exceeds the 2 local workers"):
        connect("local", workers=2, gpu_workers=3)


# -- address ---------------------------------------------------------------------------


def test_connect_to_address_leaves_the_cluster_running(local_client):
    address = local_client.scheduler.address
    with connect(address, workers=2, wait=30) as handle:
        assert handle.kind == "address"
        assert handle.cluster is None
        assert _worker_addresses(handle.client) == _worker_addresses(local_client)
        assert handle.client.submit(sum, [1, 2, 3]).result() == 6
        assert {e["threads"] for e in thread_report(handle.client).values()} == {1}
    # closing the handle closed only its client
    assert local_client.submit(sum, [4, 5]).result() == 9


def test_unreachable_address_is_a_one_line_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConnectionError, match=f"no Dask scheduler answers at {address}") as err:
        connect(address, timeout=1)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("sge", {}, "unknown cluster spec 'sge'"),
        ("slurm:", {}, "names no file"),
        ("local", {"workers": 0}, "workers must be a positive integer"),
        ("local", {"threads_per_worker": 1.5}, "threads_per_worker must be a positive integer"),
    ],
)
def test_bad_spec(spec, kwargs, message):
    with pytest.raises(ValueError, match=message):
        connect(spec, **kwargs)


# -- SLURM files -----------------------------------------------------------------------

GOOD = "jobqueue:\n  slurm:\n    cores: 1\n    memory: 1GiB\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobqueue:\n  slurm:\n    cores: [1\n", "invalid YAML .* at line 4"),
        (GOOD + "    corez: 2\n", "unknown key 'jobqueue.slurm.corez'"),
        (GOOD.replace("cores: 1", "cores: two"), "jobqueue.slurm.cores must be a positive integer"),
        (GOOD.replace("1GiB", "lots"), "jobqueue.slurm.memory is not a memory size"),
        (GOOD + "    job-extra-directives: --gres=gpu:1\n", "slurm.job-extra-directives must be a list"),
        ("slurm:\n  cores: 1\n", "exactly one top-level key 'jobqueue'"),
        ("jobqueue:\n  pbs:\n    cores: 1\n", "'jobqueue' must hold only 'slurm'"),
        ("- 1\n- 2\n", "exactly one top-level key 'jobqueue'"),
    ],
)
def test_bad_slurm_file_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        connect(f"slurm:{path}")
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_slurm_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ValueError, match=f"cannot read SLURM cluster file {path}"):
        connect(f"slurm:{path}")


def test_slurm_without_cores_or_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no jobs/slurm.yaml here: falls back to Dask's configuration
    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(ValueError, match="Dask's configuration .* sets no jobqueue.slurm.cores/memory"):
            connect("slurm")


def test_default_slurm_file_maps_to_jobqueue_keywords(repo_root):
    kwargs = load_slurm_config(repo_root / "jobs" / "slurm.yaml")
    assert kwargs["cores"] >= 1
    assert kwargs["processes"] == 1
    assert kwargs["job_name"] == "cdip-worker"
    assert isinstance(kwargs["job_extra_directives"], list)
    assert all("-" not in key for key in kwargs)


# -- real SLURM ------------------------------------------------------------------------


def _squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _wait_gone(job_ids: set[str], timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while (left := job_ids & _squeue_ids()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_slurm_jobs_run_tasks_and_are_cancelled(slurm, repo_root):
    def job_id() -> str:
        return os.environ["SLURM_JOB_ID"]

    handle = connect(f"slurm:{repo_root / 'jobs' / 'slurm.yaml'}", workers=2, wait=60)
    try:
        assert handle.kind == "slurm"
        script = handle.cluster.job_script()
        assert "#SBATCH --cpus-per-task=1" in script
        assert "export OMP_NUM_THREADS=1" in script
        ids = set(handle.client.run(job_id).values())
        assert len(ids) == 2
        assert ids <= _squeue_ids()
        ran_in = set(handle.client.gather(handle.client.map(lambda i: job_id(), range(8))))
        assert ran_in <= ids
        assert {e["torch"] for e in thread_report(handle.client).values()} == {1}
    finally:
        handle.close()
    assert _wait_gone(ids) == set()


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_slurm_gpu_resource_from_worker_args(slurm, tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text(
        "jobqueue:\n  slurm:\n    name: cdip-gpu-test\n    cores: 1\n    memory: 1GiB\n"
        "    interface: lo\n    walltime: '00:05:00'\n"
        f"    log-directory: {tmp_path / 'logs'}\n"
        "    worker-extra-args: ['--resources', 'GPU=1']\n"
    )
    with connect(f"slurm:{path}", workers=1, wait=60, dashboard=False) as handle:
        assert handle.dashboard_link is None
        assert list(gpu_resources(handle.client).values()) == [1.0]
        assert task_resources(handle.client, uses_torch=True) == {"GPU": 1}
        # keep no reference to the job objects: dask-jobqueue's close asserts on live ones
        job_ids = {str(j.job_id) for j in handle.cluster.workers.values()}
        assert len(job_ids) == 1
    assert _wait_gone(job_ids) == set()
    assert Path(tmp_path / "logs").is_dir()


# -- testing helpers -------------------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_require_skips_but_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    require(True, "present")  # no effect
    with pytest.raises(outcome, match="LAMMPS missing"):
        require(False, "LAMMPS missing")


def test_slurm_conf_describes_one_node():
    text = slurm_conf(node="box", address="10.0.0.5", cpus=8, memory_mb=30000, state_dir=Path("/x"))
    lines = text.splitlines()
    assert "SlurmctldHost=box(10.0.0.5)" in lines
    assert "NodeName=box NodeAddr=10.0.0.5 CPUs=8 RealMemory=30000 State=UNKNOWN" in lines
    assert "PartitionName=debug Nodes=box Default=YES MaxTime=INFINITE State=UP" in lines
    assert "StateSaveLocation=/x/ctld" in lines
    assert "AccountingStorageType=accounting_storage/none" in lines
