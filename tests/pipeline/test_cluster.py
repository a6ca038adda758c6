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

from cdiplatform.errors import ClusterConfigError
from cdiplatform.pipeline.cluster import (
    connect,
    declared_resources,
    gpu_resources,
    has_gpu_workers,
    load_slurm_config,
    parse_adapt,
    read_slurm_file,
    task_resources,
    thread_report,
    tunnel_command,
)
from cdiplatform.pipeline.cluster.pools import worker_resources
from cdiplatform.pipeline.cluster.resources import declare_resources
from cdiplatform.pipeline.cluster.slurm import slurm_pools
from cdiplatform.pipeline.cluster.threads import ALLOCATOR_ENV, OPENMP_ENV, PROFILE_INTERVAL, profile_interval
from cdiplatform.testing import require
from cdiplatform.testing.page_faults import fft_pair_page_faults
from cdiplatform.testing.slurm import gres_conf, slurm_conf

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
        assert entry["allocator"] == ALLOCATOR_ENV  # not distributed's MALLOC_TRIM_THRESHOLD_=65536
        assert entry["openmp"] == OPENMP_ENV  # OpenMP's threads spin briefly beside pocketfft's
        assert entry["profile_interval"] == PROFILE_INTERVAL  # not distributed's 10 ms


def test_local_two_workers_share_the_cores(local_client):
    assert len(_worker_addresses(local_client)) == 2
    _check_thread_share(local_client, workers=2)


@pytest.mark.parametrize("shape", [(4, 4, 64, 64, 64), (1, 2, 128, 128, 128)])
def test_local_workers_reuse_the_memory_of_fft_temporaries(local_client, shape):
    """With distributed's MALLOC_TRIM_THRESHOLD_=65536 every pair faulted its temporaries in again
    (16,388 faults for 8,192 pages); the workers' allocator settings keep them."""
    faults, pages = local_client.submit(fft_pair_page_faults, shape, pure=False).result()
    assert faults < pages / 10


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


@pytest.mark.parametrize("compute_threads, expected", [(None, "share"), (1, 1)])
def test_one_worker_computes_on_its_share_of_the_cores_unless_told(compute_threads, expected):
    # bench_beamtime's "1 worker of 1 thread" computed on 2 threads: one worker gets every core by default
    from cdiplatform.pipeline.cluster.threads import cores

    with connect("local", workers=1, compute_threads=compute_threads, dashboard=False) as handle:
        threads = {e["torch"] for e in thread_report(handle.client).values()}
    assert threads == {cores() if expected == "share" else expected}


def _phase_with_numba_kernels() -> int:
    import numpy as np
    import torch

    from cdiplatform.phasing import PhasingSettings, phase_retrieval

    torch.get_num_threads()  # a task thread that computed with torch before (its count taken once)
    amplitude = np.random.default_rng(0).random((1, 8, 8, 8), dtype=np.float32)
    phase_retrieval(amplitude, ndim=3, settings=PhasingSettings(algorithm="2*HIO", kernels="numba"), seed=0)
    return torch.get_num_threads()


@pytest.mark.skipif(CORES < 2, reason="numba's pool is as large as the worker's share on one core")
def test_numba_kernels_leave_each_worker_on_its_share_of_the_cores():
    # bench_beamtime's 2 workers of 1 thread each computed on 2 threads each (8x slower on 2 cores)
    # once a task had started numba's OpenMP pool: it set torch's thread count to every core
    with connect("local", workers=2, compute_threads=1, dashboard=False) as handle:
        client = handle.client
        addresses = list(client.scheduler_info()["workers"])
        seen = client.gather([client.submit(_phase_with_numba_kernels, workers=[a], pure=False) for a in addresses])
        report = thread_report(client)
    assert seen == [1, 1]
    assert {e["torch"] for e in report.values()} == {1}
    assert {e["omp"] for e in report.values()} == {"1"}


def test_compute_threads_is_refused_for_an_address():
    with pytest.raises(ClusterConfigError, match="compute_threads is for local clusters"):
        connect("tcp://127.0.0.1:1", compute_threads=1)


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
        ("slurm:a.yaml,", {}, "names no file"),
        ("local", {"workers": 0}, "workers must be a positive integer"),
        ("local", {"adapt": (1, 2)}, "adapt is for SLURM clusters"),
        ("slurm", {"adapt": (1, 2), "workers": 2}, "not both"),
        ("slurm", {"adapt": (3, 2)}, r"adapt must be \(minimum, maximum\) jobs"),
        ("slurm", {"adapt": (0, 0)}, "maximum >= 1"),
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
        ("slurm:\n  cores: 1\n", "must hold the top-level key 'jobqueue'"),
        ("jobqueue:\n  pbs:\n    cores: 1\n", "'jobqueue' must hold only 'slurm'"),
        ("- 1\n- 2\n", "must hold the top-level key 'jobqueue'"),
        (GOOD + "distributed: {}\n", "optionally 'cdiplatform', found \\['distributed', 'jobqueue'\\]"),
        (GOOD + "cdiplatform:\n  jobs: 2\n", "'cdiplatform' may hold only 'adapt'"),
        (GOOD + "cdiplatform:\n  adapt: {minimum-jobs: 1}\n", "must hold minimum-jobs and maximum-jobs"),
        (GOOD + "cdiplatform:\n  adapt: {minimum-jobs: 2, maximum-jobs: 1}\n", "cdiplatform.adapt must be"),
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
    assert kwargs["job_name"] == "cdip-cpu"
    assert isinstance(kwargs["job_extra_directives"], list)
    assert all("-" not in key for key in kwargs)


@pytest.mark.parametrize(("text", "bounds"), [("1:8", (1, 8)), ("0:1", (0, 1)), (" 2:2", (2, 2))])
def test_parse_adapt(text, bounds):
    assert parse_adapt(text) == bounds


@pytest.mark.parametrize("text", ["8", "1-8", "a:b", "3:2", "0:0", "-1:2", ""])
def test_parse_adapt_refuses(text):
    with pytest.raises(ValueError, match="adapt"):
        parse_adapt(text)


# -- SLURM pools ---------------------------------------------------------------------


def _pool_file(tmp_path: Path, name: str, *, adapt=None, extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    text = GOOD.replace("    memory: 1GiB\n", f"    memory: 1GiB\n    name: cdip-{name}\n    interface: lo\n"
                                           f"    log-directory: {tmp_path / 'logs'}\n{extra}")
    if adapt is not None:
        text += f"cdiplatform:\n  adapt:\n    minimum-jobs: {adapt[0]}\n    maximum-jobs: {adapt[1]}\n"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("adapt", "workers", "from_file", "bounds"),
    [(None, None, None, (1, 1)), (None, None, (0, 4), (0, 4)), (None, 3, (0, 4), (3, 3)), ((2, 5), None, (0, 4), (2, 5))],
)
def test_pool_bounds_come_from_adapt_then_workers_then_the_file(tmp_path, adapt, workers, from_file, bounds):
    path = _pool_file(tmp_path, "cpu", adapt=from_file)
    (pool,), cluster_kwargs = slurm_pools([str(path)], jobs=workers, adapt=adapt)
    assert (pool.minimum, pool.maximum) == bounds
    assert pool.label == "cpu" and pool.resources == {} and pool.processes == 1
    assert cluster_kwargs == {"scheduler_options": {}}


@pytest.mark.parametrize(("configured", "expected"), [(None, PROFILE_INTERVAL), ("50ms", "50ms"), ("1s", "1s")])
def test_workers_profile_at_a_tenth_of_distributed_rate_unless_the_user_says(configured, expected):
    with dask.config.set({"distributed.worker.profile.interval": configured or "10ms"}):
        assert profile_interval() == expected


def test_every_file_is_a_pool_with_its_resources(tmp_path):
    cpu = _pool_file(tmp_path, "cpu", extra="    scheduler-options: {port: 0}\n")
    gpu = _pool_file(tmp_path, "gpu", extra="    processes: 2\n    cores: 2\n"
                                           "    worker-extra-args: ['--resources', 'GPU=1', '--lifetime', '1h']\n")
    pools, cluster_kwargs = slurm_pools([str(cpu), str(gpu), str(gpu)], adapt=(0, 2))
    assert [p.label for p in pools] == ["cpu", "gpu", "gpu_2"]
    assert [p.resources for p in pools] == [{}, {"GPU": 1.0}, {"GPU": 1.0}]
    assert pools[1].processes == 2 and "export OMP_NUM_THREADS=1" in pools[1].job["job_script_prologue"]
    assert "export MALLOC_TRIM_THRESHOLD_=268435456" in pools[1].job["job_script_prologue"]
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL=100ms" in pools[1].job["job_script_prologue"]
    assert cluster_kwargs == {"scheduler_options": {"port": 0}}  # the first file's, the others' never
    assert all("scheduler_options" not in p.job for p in pools)


@pytest.mark.parametrize(
    ("args", "resources"),
    [([], {}), (["--resources", "GPU=1"], {"GPU": 1.0}), (["--nthreads", "2", "--resources=GPU=2,MEM=1e9"],
                                                          {"GPU": 2.0, "MEM": 1e9}),
     (["--resources", "GPU=1 FPGA=1"], {"GPU": 1.0, "FPGA": 1.0})],
)
def test_worker_resources_from_worker_args(args, resources):
    assert worker_resources(args) == resources


def test_new_jobs_go_where_work_waits(tmp_path):
    """Without any job: the first job of each pool up to its minimum, then the GPU pool when a task asks for GPU
    and no worker offers it, otherwise the pool without resources. No SLURM needed: nothing is submitted."""
    from distributed import Client

    from cdiplatform.pipeline.cluster.pools import PooledSLURMCluster

    cpu = _pool_file(tmp_path, "cpu")
    gpu = _pool_file(tmp_path, "gpu", extra="    worker-extra-args: ['--resources', 'GPU=1']\n")
    pools, kwargs = slurm_pools([str(cpu), str(gpu)], adapt=(0, 2))
    kwargs["scheduler_options"].update(dashboard=False)
    with PooledSLURMCluster(pools, **kwargs) as cluster, Client(cluster) as client:
        assert cluster.jobs_per_pool() == {"cpu": 0, "gpu": 0}
        assert cluster._pool_to_grow([0, 0]) == 0
        assert "--resources GPU=1" in cluster.job_script_of("gpu")
        assert "--resources" not in cluster.job_script_of("cpu")
        future = client.submit(sum, [1, 2], resources={"GPU": 1})
        deadline = time.monotonic() + 10
        while not cluster._waiting_resources() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cluster._waiting_resources() == {"GPU"}
        assert cluster._pool_to_grow([0, 0]) == 1
        assert cluster._pool_to_grow([0, 2]) == 0  # the GPU pool is full
        assert cluster._pool_to_grow([2, 2]) is None
        del future


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_adaptive_pools_start_from_zero_where_work_waits(slurm, require, tmp_path):
    """Pools between 0 and 1 job submit nothing until work comes; a torch-like task (GPU=1) gets a GPU job,
    the CPU pool stays empty."""
    require(slurm.gpus >= 1, f"the test SLURM node offers {slurm.gpus} gpu GRES")

    def job_id() -> str:
        return os.environ["SLURM_JOB_ID"]

    cpu = _pool_file(tmp_path, "cpu", adapt=(0, 1))
    gpu = _pool_file(tmp_path, "gpu", adapt=(0, 1), extra=(
        "    job-extra-directives: ['--gres=gpu:1']\n    worker-extra-args: ['--resources', 'GPU=1']\n"))
    with connect(f"slurm:{cpu},{gpu}", dashboard=False) as handle:
        assert handle.dashboard_link is None
        assert handle.cluster.jobs_per_pool() == {"cpu": 0, "gpu": 0}
        assert task_resources(handle.client, uses_torch=True) == {"GPU": 1}  # declared, before any worker
        ran_in = handle.client.submit(job_id, resources=task_resources(handle.client, True)).result(timeout=90)
        assert handle.cluster.jobs_per_pool() == {"cpu": 0, "gpu": 1}
        # keep no reference to the job objects: dask-jobqueue's close asserts on live ones
        assert [ran_in] == [str(job.job_id) for job in handle.cluster.workers.values()]


def test_shipped_slurm_files_are_jobqueue_configuration(repo_root):
    """jobs/slurm.yaml and jobs/slurm_gpu.yaml: dask-jobqueue reads them as its own configuration (the
    cdiplatform section aside); workers retire before their walltime; GPU jobs ask one GPU and advertise it."""
    import yaml
    from dask.utils import parse_timedelta
    from dask_jobqueue.slurm import SLURMJob

    scripts = {}
    for name in ("slurm", "slurm_gpu"):
        path = repo_root / "jobs" / f"{name}.yaml"
        file = read_slurm_file(path)
        assert file.adapt is not None and file.adapt[0] >= 1
        args = file.kwargs["worker_extra_args"]
        lifetime = parse_timedelta(args[args.index("--lifetime") + 1])
        stagger = parse_timedelta(args[args.index("--lifetime-stagger") + 1])
        h, m, s = (int(x) for x in file.kwargs["walltime"].split(":"))
        assert lifetime + stagger <= h * 3600 + m * 60 + s - 600, "less than 10 min left for the last chunk"
        data = yaml.safe_load(path.read_text())  # merged into Dask's configuration as a config file would be
        keys = {f"jobqueue.slurm.{k}": v for k, v in data.pop("jobqueue")["slurm"].items()}
        with dask.config.set({**keys, **data}):
            scripts[name] = SLURMJob(scheduler="tcp://127.0.0.1:8786", name="w").job_script()
    assert "--gres" not in scripts["slurm"] and "--resources" not in scripts["slurm"]
    assert "#SBATCH --gres=gpu:1" in scripts["slurm_gpu"] and "--resources GPU=1" in scripts["slurm_gpu"]
    assert all("--lifetime-stagger 5m" in script for script in scripts.values())


# -- declared resources, the dashboard tunnel -------------------------------------------


def test_declared_gpu_workers_get_torch_tasks_before_they_arrive():
    with connect("local", workers=1, dashboard=False) as handle:
        assert task_resources(handle.client, uses_torch=True) is None
        declare_resources(handle.client, [{}, {"GPU": 1.0}])
        assert declared_resources(handle.client) == {"GPU"}
        assert task_resources(handle.client, uses_torch=True) == {"GPU": 1}
        assert task_resources(handle.client, uses_torch=False) is None


def test_tunnel_command_reaches_the_loopback_dashboard(local_client):
    from urllib.parse import urlparse

    from cdiplatform.pipeline.cluster import ClusterHandle

    handle = ClusterHandle(local_client, None, "slurm", local_client.dashboard_link)
    port = urlparse(local_client.dashboard_link).port
    assert tunnel_command(handle, user="ana", host="login1.example.org") == (
        f"ssh -N -L 8787:127.0.0.1:{port} ana@login1.example.org")
    default = tunnel_command(handle, local_port=9000).split()
    assert default[:4] == ["ssh", "-N", "-L", f"9000:127.0.0.1:{port}"]
    assert default[4].split("@")[1] not in ("localhost", "")
    assert tunnel_command(ClusterHandle(local_client, None, "slurm", None)) == ""  # no dashboard


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
    assert "NodeName=box NodeAddr=10.0.0.5 CPUs=8 RealMemory=30000 Gres=gpu:2 State=UNKNOWN" in lines
    assert "GresTypes=gpu" in lines
    assert "PartitionName=debug Nodes=box Default=YES MaxTime=INFINITE State=UP" in lines
    assert "StateSaveLocation=/x/ctld" in lines
    assert "AccountingStorageType=accounting_storage/none" in lines


@pytest.mark.slurm
def test_the_test_node_offers_gpu_gres_and_is_not_restarted_when_up(slurm):
    from cdiplatform.testing.slurm import GPUS, MIN_CPUS, ensure_slurm

    again = ensure_slurm()
    assert not again.started
    assert (again.gpus, again.cpus >= MIN_CPUS) == (GPUS, True)
    gres = subprocess.run(["sinfo", "-h", "-N", "-n", again.node, "-o", "%G"], capture_output=True, text=True,
                          check=True)
    assert gres.stdout.split() == [f"gpu:{GPUS}"]


def test_gres_conf_names_fake_devices():
    text = gres_conf(node="box", gpus=2, device_dir=Path("/x"))
    assert text.splitlines()[1] == "NodeName=box Name=gpu File=/x/fake-gpu[0-1]"
    assert "Gres=" not in slurm_conf(node="box", address="10.0.0.5", cpus=8, memory_mb=30000, gpus=0)
