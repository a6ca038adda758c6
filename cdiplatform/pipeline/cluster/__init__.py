"""Connecting to a Dask cluster: a local one, SLURM jobs, or a running scheduler.

:func:`connect` turns a cluster spec (the ``--cluster`` option of ``cdip``)
into a :class:`ClusterHandle`:

``local``
    A :class:`distributed.LocalCluster` of worker processes, by default one
    per core with one thread each.
``slurm``
    SLURM jobs (dask-jobqueue) configured from ``jobs/slurm.yaml`` in
    the working directory when that file exists, otherwise from Dask's own
    configuration (``~/.config/dask/jobqueue.yaml``, ``DASK_JOBQUEUE__SLURM__*``),
    which is where a facility usually keeps it.
``slurm:PATH`` or ``slurm:PATH,PATH...``
    SLURM jobs configured from the YAML file ``PATH``, written in
    dask-jobqueue's own keys (``jobqueue: slurm: {cores, memory, processes,
    walltime, interface, queue, account, job-extra-directives, ...}``); keys it
    leaves out come from Dask's configuration. Several files make several
    pools of jobs on one scheduler (``slurm:jobs/slurm.yaml,jobs/slurm_gpu.yaml``:
    CPU jobs and GPU jobs); the first file's ``scheduler-options`` apply.
    Every pool scales adaptively between a minimum and a maximum number of
    jobs (``adapt``, or the file's ``cdiplatform: adapt:`` section; default
    one job), which also replaces jobs that end (``--lifetime``, walltime,
    ``scancel``): see :mod:`.pools` and docs/slurm.md.
``tcp://HOST:PORT`` (or ``tls://``...)
    A scheduler that is already running.

Every worker gets the :class:`ThreadLimits` plugin, which sets torch's and
BLAS's thread counts to the worker's share of the cores (see
:func:`thread_report`). Workers that advertise the Dask resource ``GPU`` run
the torch stages (:func:`task_resources`).
"""

from __future__ import annotations

from cdiplatform.errors import ClusterConfigError
from cdiplatform.pipeline.cluster.handle import ClusterHandle
from cdiplatform.pipeline.cluster.resources import (
    declared_resources,
    gpu_resources,
    has_gpu_workers,
    task_resources,
)
from cdiplatform.pipeline.cluster.slurm import DEFAULT_SLURM_CONFIG
from cdiplatform.pipeline.cluster.slurm_config import check_adapt, load_slurm_config, read_slurm_file
from cdiplatform.pipeline.cluster.threads import ThreadLimits, thread_report
from cdiplatform.pipeline.cluster.tunnel import tunnel_command

__all__ = [
    "DEFAULT_DASHBOARD_ADDRESS",
    "DEFAULT_SLURM_CONFIG",
    "ClusterHandle",
    "ThreadLimits",
    "connect",
    "declared_resources",
    "gpu_resources",
    "has_gpu_workers",
    "load_slurm_config",
    "parse_adapt",
    "read_slurm_file",
    "task_resources",
    "thread_report",
    "tunnel_command",
]

#: where the dashboard listens unless asked otherwise: loopback, a free port
DEFAULT_DASHBOARD_ADDRESS = "127.0.0.1:0"

_ADDRESS_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")


def connect(
    spec: str = "local",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    compute_threads: int | None = None,
    dashboard: bool = True,
    dashboard_address: str | None = None,
    gpu_workers: int | None = None,
    adapt: tuple[int, int] | None = None,
    wait: float | None = None,
    timeout: float = 30.0,
) -> ClusterHandle:
    """Start or reach a Dask cluster and connect a client to it.

    Parameters
    ----------
    spec : str
        ``"local"``, ``"slurm"``, ``"slurm:PATH[,PATH...]"`` or a scheduler
        address ``"tcp://HOST:PORT"`` (see the module's docstring).
    workers : int, optional
        Local: number of worker processes (default: one per core).
        SLURM: a fixed number of jobs in every pool, replaced when they end
        (each job runs ``processes`` workers); same as ``adapt=(workers, workers)``.
        Address: how many workers ``wait`` waits for.
    threads_per_worker : int, optional
        Local only: task threads per worker process (default 1).
    compute_threads : int, optional
        Local only: the threads of torch's and BLAS's pools in each worker
        (default: the worker's share of the machine's cores, so that one
        worker on 2 cores computes on 2 threads). ``1`` makes every worker
        one core's: what a benchmark of scaling across workers needs.
    dashboard : bool
        Start the scheduler's dashboard.
    dashboard_address : str, optional
        ``HOST:PORT`` the dashboard listens on (local and SLURM clusters).
        Default ``127.0.0.1:0``: loopback only, a free port (reach it from
        another machine through an SSH tunnel); ``0.0.0.0:8787`` opens it on
        every interface.
    gpu_workers : int, optional
        Local only: how many workers advertise the resource ``GPU=1`` (each
        sees one device through ``CUDA_VISIBLE_DEVICES``). Default: one per
        CUDA device torch sees, at most ``workers``. Tests set it on a CPU
        machine to check where torch tasks go.
    adapt : (int, int), optional
        SLURM only: every pool scales between this minimum and maximum number
        of jobs (overrides the files' ``cdiplatform.adapt``; see
        :func:`parse_adapt` for ``--adapt MIN:MAX``). Default: the file's, else
        one job.
    wait : float, optional
        SLURM and address: seconds to wait for the workers (SLURM: every
        pool's minimum jobs times ``processes``; for an address, ``workers``)
        before returning; None returns at once and tasks start as workers
        arrive. Local clusters are always waited for.
    timeout : float
        Seconds to wait for a scheduler at an address to answer, or for
        local workers to start.

    Returns
    -------
    ClusterHandle

    Raises
    ------
    ClusterConfigError (a ValueError)
        An unknown spec, or a SLURM configuration file that cannot be read
        or holds an invalid key or value (the message names file and key).
    ClusterUnreachableError (a ConnectionError)
        No scheduler answers at the address, or a SLURM spec on a machine
        without ``sbatch``.
    """
    if not isinstance(spec, str) or not spec:
        raise ClusterConfigError(f"cluster spec must be a non-empty string, got {spec!r}")
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker),
                        ("compute_threads", compute_threads)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ClusterConfigError(f"{name} must be a positive integer, got {value!r}")
    if gpu_workers is not None and (not isinstance(gpu_workers, int) or gpu_workers < 0):
        raise ClusterConfigError(f"gpu_workers must be a non-negative integer, got {gpu_workers!r}")
    is_slurm = spec == "slurm" or spec.startswith("slurm:")
    if adapt is not None:
        if not is_slurm:
            raise ClusterConfigError(f"adapt is for SLURM clusters, not for {spec!r}")
        if workers is not None:
            raise ClusterConfigError("give workers (a fixed number of jobs) or adapt (minimum, maximum), not both")
        adapt = check_adapt(adapt)

    if compute_threads is not None and spec != "local":
        raise ClusterConfigError(f"compute_threads is for local clusters, not for {spec!r} (a SLURM file sets "
                                 "its jobs' cores)")
    address = dashboard_address or DEFAULT_DASHBOARD_ADDRESS
    if spec == "local":
        from cdiplatform.pipeline.cluster.local import connect_local

        return connect_local(
            workers=workers,
            threads_per_worker=threads_per_worker or 1,
            compute_threads=compute_threads,
            dashboard=dashboard,
            dashboard_address=address,
            gpu_workers=gpu_workers,
            timeout=timeout,
        )
    if is_slurm:
        paths = spec[len("slurm:"):].split(",") if spec.startswith("slurm:") else None
        if paths is not None and not all(paths):
            raise ClusterConfigError(f"cluster spec {spec!r} names no file (or an empty one); use 'slurm' or "
                                     "'slurm:PATH[,PATH...]'")
        from cdiplatform.pipeline.cluster.slurm import connect_slurm

        return connect_slurm(paths, jobs=workers, adapt=adapt, dashboard=dashboard, dashboard_address=address,
                             wait=wait)
    if spec.startswith(_ADDRESS_SCHEMES):
        from cdiplatform.pipeline.cluster.address import connect_address

        return connect_address(spec, workers=workers, wait=wait, timeout=timeout)
    raise ClusterConfigError(
        f"unknown cluster spec {spec!r}: expected 'local', 'slurm', 'slurm:PATH[,PATH...]' "
        "or a scheduler address such as 'tcp://host:8786'"
    )


def parse_adapt(text: str) -> tuple[int, int]:
    """``"MIN:MAX"`` (the ``--adapt`` option) as ``(minimum, maximum)`` jobs.

    Raises
    ------
    ClusterConfigError (a ValueError)
        Not two integers with 0 <= MIN <= MAX and MAX >= 1.
    """
    lo, sep, hi = str(text).partition(":")
    try:
        bounds = (int(lo), int(hi)) if sep else None
    except ValueError:
        bounds = None
    if bounds is None:
        raise ClusterConfigError(f"--adapt must be MIN:MAX jobs, such as 1:8, got {text!r}")
    return check_adapt(bounds, where="--adapt")
