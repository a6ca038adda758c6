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

from cdiplatform.errors import ClusterConfigError
from cdiplatform.pipeline.cluster.handle import ClusterHandle
from cdiplatform.pipeline.cluster.resources import gpu_resources, has_gpu_workers, task_resources
from cdiplatform.pipeline.cluster.slurm import DEFAULT_SLURM_CONFIG
from cdiplatform.pipeline.cluster.slurm_config import load_slurm_config
from cdiplatform.pipeline.cluster.threads import ThreadLimits, thread_report

__all__ = [
    "DEFAULT_DASHBOARD_ADDRESS",
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

#: where the dashboard listens unless asked otherwise: loopback, a free port
DEFAULT_DASHBOARD_ADDRESS = "127.0.0.1:0"

_ADDRESS_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")


def connect(
    spec: str = "local",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    dashboard: bool = True,
    dashboard_address: str | None = None,
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
    ClusterConfigError (a ValueError)
        An unknown spec, or a SLURM configuration file that cannot be read
        or holds an invalid key or value (the message names file and key).
    ClusterUnreachableError (a ConnectionError)
        No scheduler answers at the address, or a SLURM spec on a machine
        without ``sbatch``.
    """
    if not isinstance(spec, str) or not spec:
        raise ClusterConfigError(f"cluster spec must be a non-empty string, got {spec!r}")
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ClusterConfigError(f"{name} must be a positive integer, got {value!r}")
    if gpu_workers is not None and (not isinstance(gpu_workers, int) or gpu_workers < 0):
        raise ClusterConfigError(f"gpu_workers must be a non-negative integer, got {gpu_workers!r}")

    address = dashboard_address or DEFAULT_DASHBOARD_ADDRESS
    if spec == "local":
        from cdiplatform.pipeline.cluster.local import connect_local

        return connect_local(
            workers=workers,
            threads_per_worker=threads_per_worker or 1,
            dashboard=dashboard,
            dashboard_address=address,
            gpu_workers=gpu_workers,
            timeout=timeout,
        )
    if spec == "slurm" or spec.startswith("slurm:"):
        path = spec[len("slurm:"):] if spec.startswith("slurm:") else None
        if path == "":
            raise ClusterConfigError("cluster spec 'slurm:' names no file; use 'slurm' or 'slurm:PATH'")
        from cdiplatform.pipeline.cluster.slurm import connect_slurm

        return connect_slurm(path, jobs=workers or 1, dashboard=dashboard, dashboard_address=address, wait=wait)
    if spec.startswith(_ADDRESS_SCHEMES):
        from cdiplatform.pipeline.cluster.address import connect_address

        return connect_address(spec, workers=workers, wait=wait, timeout=timeout)
    raise ClusterConfigError(
        f"unknown cluster spec {spec!r}: expected 'local', 'slurm', 'slurm:PATH' "
        "or a scheduler address such as 'tcp://host:8786'"
    )
