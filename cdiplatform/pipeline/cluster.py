"""Connecting to a Dask cluster: a local one, SLURM jobs, or a running scheduler.

:func:`connect` turns a cluster spec (the ``--cluster`` option of ``cdip``)
into a :class:`ClusterHandle`:

``local``
    A :class:`distributed.LocalCluster` of worker processes, by default one
    per core with one thread each.
``slurm``
    A ``dask_jobqueue.SLURMCluster`` configured from ``jobs/slurm.yaml`` in
    the working directory when that file exists, otherwise from Dask's own
    configuration (``~/.config/dask/jobqueue.yaml``, ``DASK_JOBQUEUE__SLURM__*``),
    which is where a facility usually keeps it.
``slurm:PATH``
    A ``SLURMCluster`` configured from the YAML file ``PATH``, written in
    dask-jobqueue's own keys (``jobqueue: slurm: {cores, memory, processes,
    walltime, interface, queue, account, job-extra-directives, ...}``); keys it
    leaves out come from Dask's configuration.
``tcp://HOST:PORT`` (or ``tls://``...)
    A scheduler that is already running.

Every worker gets the :class:`ThreadLimits` plugin, which sets torch's and
BLAS's thread counts to the worker's share of the cores (see
:func:`thread_report`). Workers that advertise the Dask resource ``GPU`` run
the torch stages (:func:`task_resources`).
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from distributed import Nanny, WorkerPlugin

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DEFAULT_SLURM_CONFIG",
    "ClusterHandle",
    "ThreadLimits",
    "connect",
    "gpu_resources",
    "has_gpu_workers",
    "load_slurm_config",
    "task_resources",
    "thread_report",
]

#: The SLURM configuration ``connect("slurm")`` reads, relative to the working directory.
DEFAULT_SLURM_CONFIG = Path("jobs") / "slurm.yaml"

#: Environment variables that size the thread pools of OpenMP, BLAS and friends.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

_ADDRESS_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")
_PLUGIN_NAME = "cdip-thread-limits"


@dataclass
class ClusterHandle:
    """A connected Dask client and the cluster it started, if any.

    Use it as a context manager, or call :meth:`close`.

    Attributes
    ----------
    client : distributed.Client
        The connected client.
    cluster : distributed.deploy.Cluster or None
        The cluster :func:`connect` started (None when connected to an address).
    kind : {"local", "slurm", "address"}
        Which kind of spec was given.
    dashboard_link : str or None
        URL of the scheduler's dashboard, None when it has none.
    """

    client: Client
    cluster: Any | None
    kind: Literal["local", "slurm", "address"]
    dashboard_link: str | None

    def close(self) -> None:
        """Close the client, then the cluster (which cancels SLURM jobs)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    spec: str = "local",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    dashboard: bool = True,
    gpu_workers: int | None = None,
    wait: float | None = None,
    timeout: float = 30.0,
) -> ClusterHandle:
    """Start or reach a Dask cluster and connect a client to it.

    Parameters
    ----------
    spec : str
        ``"local"``, ``"slurm"``, ``"slurm:PATH"`` or a scheduler address
        ``"tcp://HOST:PORT"`` (see the module's docstring).
    workers : int, optional
        Local: number of worker processes (default: one per core).
        SLURM: number of jobs to submit (default 1; each job runs
        ``processes`` workers). Address: how many workers ``wait`` waits for.
    threads_per_worker : int, optional
        Local only: task threads per worker process (default 1).
    dashboard : bool
        Start the scheduler's dashboard, on a free port.
    gpu_workers : int, optional
        Local only: how many workers advertise the resource ``GPU=1`` (each
        sees one device through ``CUDA_VISIBLE_DEVICES``). Default: one per
        CUDA device torch sees, at most ``workers``. Tests set it on a CPU
        machine to check where torch tasks go.
    wait : float, optional
        SLURM and address: seconds to wait for all workers (``workers`` jobs
        times ``processes``; for an address, ``workers``) before returning;
        None returns at once and tasks start as workers arrive. Local
        clusters are always waited for.
    timeout : float
        Seconds to wait for a scheduler at an address to answer, or for
        local workers to start.

    Returns
    -------
    ClusterHandle

    Raises
    ------
    ValueError
        An unknown spec, or a SLURM configuration file that cannot be read
        or holds an invalid key or value (the message names file and key).
    ConnectionError
        No scheduler answers at the address.
    FileNotFoundError
        A SLURM spec on a machine without ``sbatch``.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"cluster spec must be a non-empty string, got {spec!r}")
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if gpu_workers is not None and (not isinstance(gpu_workers, int) or gpu_workers < 0):
        raise ValueError(f"gpu_workers must be a non-negative integer, got {gpu_workers!r}")

    if spec == "local":
        return _connect_local(
            workers=workers,
            threads_per_worker=threads_per_worker or 1,
            dashboard=dashboard,
            gpu_workers=gpu_workers,
            timeout=timeout,
        )
    if spec == "slurm" or spec.startswith("slurm:"):
        path = spec[len("slurm:"):] if spec.startswith("slurm:") else None
        if path == "":
            raise ValueError("cluster spec 'slurm:' names no file; use 'slurm' or 'slurm:PATH'")
        return _connect_slurm(path, jobs=workers or 1, dashboard=dashboard, wait=wait)
    if spec.startswith(_ADDRESS_SCHEMES):
        return _connect_address(spec, workers=workers, wait=wait, timeout=timeout)
    raise ValueError(
        f"unknown cluster spec {spec!r}: expected 'local', 'slurm', 'slurm:PATH' "
        "or a scheduler address such as 'tcp://host:8786'"
    )


# -- threads ---------------------------------------------------------------------------


class ThreadLimits(WorkerPlugin):
    """Worker plugin: size torch's and BLAS's thread pools to the worker's share of cores.

    On setup it sets the ``*_NUM_THREADS`` environment variables (read by
    libraries imported later, torch among them), calls
    ``torch.set_num_threads`` if torch is already imported, and limits the
    BLAS libraries already loaded through ``threadpoolctl`` when that is
    installed.

    Parameters
    ----------
    threads : int, optional
        Threads per worker; default: the worker's ``nthreads``.
    """

    name = _PLUGIN_NAME
    idempotent = False

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.applied: int | None = None
        self.blas: str = "env"

    def setup(self, worker: Any) -> None:
        n = int(self.threads or worker.state.nthreads or 1)
        os.environ.update({var: str(n) for var in THREAD_ENV_VARS})
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self.blas = "env"
        else:
            threadpool_limits(limits=n)
            self.blas = "threadpoolctl"
        self.applied = n


def thread_report(client: Client) -> dict[str, dict[str, Any]]:
    """The thread settings of every worker, for benchmarks and logs to print.

    Returns
    -------
    dict
        Worker address to ``{"nthreads": task threads, "threads": the share
        set by ThreadLimits (None if the plugin is absent), "torch":
        torch.get_num_threads() in a task thread, "blas": how BLAS was
        limited, "omp": OMP_NUM_THREADS}``.
    """

    def _probe(dask_worker: Any) -> dict[str, Any]:
        plugin = dask_worker.plugins.get(_PLUGIN_NAME)
        import torch

        return {
            "nthreads": dask_worker.state.nthreads,
            "threads": getattr(plugin, "applied", None),
            "torch": dask_worker.executor.submit(torch.get_num_threads).result(),
            "blas": getattr(plugin, "blas", None),
            "omp": os.environ.get("OMP_NUM_THREADS"),
        }

    return client.run(_probe)


class _ThreadEnvNanny(Nanny):
    """A Nanny that spawns its worker with the thread variables set to ``core_share``.

    Distributed's ``pre-spawn-environ`` pins OpenMP and BLAS to one thread and
    lets the parent's environment win; this sets them to the worker's share so
    that BLAS, loaded at import in the new process, starts with the right size.
    """

    def __init__(self, *args: Any, core_share: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        share = {var: str(core_share) for var in THREAD_ENV_VARS}
        self.pre_spawn_env.update(share)
        self.env.update(share)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- GPU resources ---------------------------------------------------------------------


def gpu_resources(client: Client) -> dict[str, float]:
    """The workers that advertise the Dask resource ``GPU``, with their amount.

    Returns
    -------
    dict of str to float
        Worker address to its ``GPU`` resource; empty when there is none.
    """
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {
        addr: float(info.get("resources", {}).get("GPU", 0))
        for addr, info in workers.items()
        if info.get("resources", {}).get("GPU", 0) > 0
    }


def has_gpu_workers(client: Client) -> bool:
    """Whether any worker of the cluster advertises the resource ``GPU``."""
    return bool(gpu_resources(client))


def task_resources(client: Client, uses_torch: bool) -> dict[str, int] | None:
    """Dask resources to ask for a task: ``{"GPU": 1}`` for torch work on a cluster with GPUs.

    Parameters
    ----------
    client : distributed.Client
    uses_torch : bool
        Whether the task runs torch (NN training, inference, refinement, phasing).

    Returns
    -------
    dict or None
        ``{"GPU": 1}`` when ``uses_torch`` and a worker advertises ``GPU``;
        None otherwise (the task may run on any worker).
    """
    if uses_torch and has_gpu_workers(client):
        return {"GPU": 1}
    return None


def _cuda_devices() -> int:
    """CUDA (or ROCm) devices torch sees; 0 without importing torch on a machine without any."""
    import glob

    if not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd")) and sys.platform == "linux":
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# -- local -----------------------------------------------------------------------------


def _connect_local(
    *,
    workers: int | None,
    threads_per_worker: int,
    dashboard: bool,
    gpu_workers: int | None,
    timeout: float,
) -> ClusterHandle:
    from distributed import Client, LocalCluster

    cores = _cores()
    n = workers or max(1, cores // threads_per_worker)
    share = max(1, cores // n)
    if gpu_workers is None:
        gpu_workers = min(n, _cuda_devices())
    elif gpu_workers > n:
        raise ValueError(f"gpu_workers={gpu_workers} exceeds the {n} local workers")

    cluster = LocalCluster(
        n_workers=0,
        threads_per_worker=threads_per_worker,
        processes=True,
        # the scheduler's HTTP server runs even without a dashboard: never on the fixed 8787
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": dashboard},
        worker_class=_ThreadEnvNanny,
        core_share=share,
    )
    try:
        for i in range(n):
            spec = copy.deepcopy(cluster.new_spec)
            if i < gpu_workers:
                spec["options"]["resources"] = {"GPU": 1}
                spec["options"]["env"] = {"CUDA_VISIBLE_DEVICES": str(i)}
            cluster.worker_spec[i] = spec
        cluster.scale(n)
        client = Client(cluster)
        client.register_plugin(ThreadLimits(share), name=_PLUGIN_NAME)
        client.wait_for_workers(n, timeout=timeout)
    except BaseException:
        cluster.close()
        raise
    return ClusterHandle(client, cluster, "local", _dashboard_link(client, dashboard))


# -- SLURM -----------------------------------------------------------------------------


def load_slurm_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a SLURM cluster file in dask-jobqueue's keys into ``SLURMCluster`` keywords.

    The file holds ``jobqueue: slurm: {...}`` exactly as dask-jobqueue's own
    configuration does (``cores``, ``memory``, ``processes``, ``walltime``,
    ``interface``, ``queue``, ``account``, ``job-extra-directives``,
    ``worker-extra-args``, ``job-script-prologue``...).

    Parameters
    ----------
    path : path-like
        The YAML file.

    Returns
    -------
    dict
        Keyword arguments for ``dask_jobqueue.SLURMCluster`` (hyphens turned
        into underscores, ``name`` into ``job_name``); keys the file leaves out
        are absent, so that Dask's configuration supplies them.

    Raises
    ------
    ValueError
        The file cannot be read or parsed, lacks ``jobqueue.slurm``, or holds
        an unknown key or a value of the wrong type (the message names the
        file and the key).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read SLURM cluster file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"invalid YAML in SLURM cluster file {path}{at}: {problem}") from None

    if not isinstance(data, dict) or set(data) != {"jobqueue"}:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"SLURM cluster file {path} must hold exactly one top-level key 'jobqueue' "
            f"(with 'slurm' under it), found {found}"
        )
    jq = data["jobqueue"]
    if not isinstance(jq, dict) or "slurm" not in jq or set(jq) != {"slurm"}:
        found = sorted(jq) if isinstance(jq, dict) else type(jq).__name__
        raise ValueError(f"SLURM cluster file {path}: 'jobqueue' must hold only 'slurm', found {found}")
    conf = jq["slurm"] or {}
    if not isinstance(conf, dict):
        raise ValueError(f"SLURM cluster file {path}: 'jobqueue.slurm' must be a mapping")

    known = _jobqueue_slurm_keys()
    kwargs: dict[str, Any] = {}
    for key, value in conf.items():
        if key not in known:
            raise ValueError(
                f"SLURM cluster file {path}: unknown key 'jobqueue.slurm.{key}' "
                f"(dask-jobqueue knows: {', '.join(sorted(known))})"
            )
        _check_value(path, key, value)
        kwargs["job_name" if key == "name" else key.replace("-", "_")] = value
    return kwargs


def _jobqueue_slurm_keys() -> set[str]:
    import dask
    import dask_jobqueue  # noqa: F401  (loads jobqueue's defaults into dask.config)

    return set(dask.config.get("jobqueue.slurm")) | {"header-skip"}


_INT_KEYS = ("cores", "processes", "death-timeout", "job-cpu")
_LIST_KEYS = ("job-extra-directives", "worker-extra-args", "job-script-prologue", "job-directives-skip")
_STR_KEYS = ("walltime", "queue", "account", "interface", "name", "python", "log-directory", "shebang")


def _check_value(path: Path, key: str, value: Any) -> None:
    from dask.utils import parse_bytes

    where = f"SLURM cluster file {path}: jobqueue.slurm.{key}"
    if value is None:
        return
    if key in _INT_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{where} must be a positive integer, got {value!r}")
    if key in _LIST_KEYS and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"{where} must be a list of strings, got {value!r}")
    if key in _STR_KEYS and not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    if key in ("memory", "job-mem"):
        try:
            parse_bytes(str(value))
        except ValueError:
            raise ValueError(f"{where} is not a memory size like '4GiB', got {value!r}") from None
    if key == "scheduler-options" and not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping, got {value!r}")


def _connect_slurm(path: str | None, *, jobs: int, dashboard: bool, wait: float | None) -> ClusterHandle:
    import dask
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    if path is None and DEFAULT_SLURM_CONFIG.exists():
        path = str(DEFAULT_SLURM_CONFIG)
    kwargs = load_slurm_config(path) if path is not None else {}
    source = path or "Dask's configuration (jobqueue.slurm)"

    def setting(key: str) -> Any:
        kw = "job_name" if key == "name" else key.replace("-", "_")
        return kwargs[kw] if kw in kwargs else dask.config.get(f"jobqueue.slurm.{key}", None)

    cores, memory = setting("cores"), setting("memory")
    if cores is None or memory is None:
        raise ValueError(
            f"SLURM cluster config from {source} sets no jobqueue.slurm.cores/memory; "
            f"give them in {DEFAULT_SLURM_CONFIG} or with 'slurm:PATH'"
        )
    processes = setting("processes") or 1
    share = max(1, int(cores) // int(processes))
    prologue = list(setting("job-script-prologue") or [])
    for var in THREAD_ENV_VARS:
        if not any(line.lstrip().startswith(f"export {var}=") for line in prologue):
            prologue.append(f"export {var}={share}")
    kwargs["job_script_prologue"] = prologue

    options = dict(setting("scheduler-options") or {})
    options.setdefault("dashboard_address", ":0")
    if not dashboard:
        options["dashboard"] = False
    kwargs["scheduler_options"] = options

    if shutil.which("sbatch") is None:
        raise FileNotFoundError(f"cannot start a SLURM cluster from {source}: no 'sbatch' on PATH")
    try:
        cluster = SLURMCluster(**kwargs)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"SLURM cluster config from {source} is invalid: {first}") from None
    try:
        client = Client(cluster)
        client.register_plugin(ThreadLimits(), name=_PLUGIN_NAME)
        cluster.scale(jobs=jobs)
        if wait is not None:
            client.wait_for_workers(jobs * int(processes), timeout=wait)
    except BaseException:
        cluster.close()
        raise
    return ClusterHandle(client, cluster, "slurm", _dashboard_link(client, dashboard))


# -- address ---------------------------------------------------------------------------


def _connect_address(
    address: str, *, workers: int | None, wait: float | None, timeout: float
) -> ClusterHandle:
    from distributed import Client

    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"no Dask scheduler answers at {address} within {timeout:g} s ({type(exc).__name__})"
        ) from None
    try:
        client.register_plugin(ThreadLimits(), name=_PLUGIN_NAME)
        if wait is not None and workers:
            client.wait_for_workers(workers, timeout=wait)
    except BaseException:
        client.close()
        raise
    has_dashboard = "dashboard" in client.scheduler_info(n_workers=0).get("services", {})
    return ClusterHandle(client, None, "address", _dashboard_link(client, has_dashboard))


def _dashboard_link(client: Client, dashboard: bool) -> str | None:
    if not dashboard:
        return None
    try:
        return client.dashboard_link
    except Exception:  # no dashboard service, or bokeh missing
        return None
