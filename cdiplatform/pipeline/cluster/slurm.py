"""SLURM jobs from YAML files in jobqueue's keys (or Dask's configuration), one pool per file, adaptive."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cdiplatform.errors import ClusterConfigError, ClusterUnreachableError
from cdiplatform.pipeline.cluster.address import dashboard_link
from cdiplatform.pipeline.cluster.handle import ClusterHandle
from cdiplatform.pipeline.cluster.resources import declare_resources
from cdiplatform.pipeline.cluster.slurm_config import SlurmFile, read_slurm_file
from cdiplatform.pipeline.cluster.threads import (
    PLUGIN_NAME,
    THREAD_ENV_VARS,
    ThreadLimits,
    profile_env,
    worker_env,
)

__all__ = ["DEFAULT_SLURM_CONFIG", "connect_slurm", "slurm_pools"]

#: The SLURM configuration ``connect("slurm")`` reads, relative to the working directory.
DEFAULT_SLURM_CONFIG = Path("jobs") / "slurm.yaml"

#: ``SLURMCluster`` keywords that belong to the cluster (its scheduler), not to a job
_CLUSTER_KEYS = ("scheduler_options", "shared_temp_directory")


def _files(paths: list[str] | None) -> list[SlurmFile | None]:
    """The files of a spec; None stands for Dask's own configuration (``jobqueue.slurm``)."""
    if paths is None:
        return [read_slurm_file(DEFAULT_SLURM_CONFIG) if DEFAULT_SLURM_CONFIG.exists() else None]
    return [read_slurm_file(p) for p in paths]


def slurm_pools(paths: list[str] | None, *, jobs: int | None = None,
                adapt: tuple[int, int] | None = None) -> tuple[list[Any], dict[str, Any]]:
    """The pools of a SLURM spec and the cluster-level keywords (of its first file).

    Parameters
    ----------
    paths : list of str or None
        One file per pool (None: ``jobs/slurm.yaml`` if present, else Dask's configuration).
    jobs : int, optional
        A fixed number of jobs in every pool (kept, and replaced when they end).
    adapt : (int, int), optional
        Minimum and maximum jobs of every pool; overrides the files' ``cdiplatform.adapt``.

    Returns
    -------
    pools : list of Pool
    cluster_kwargs : dict
        ``SLURMCluster`` keywords of the scheduler (``scheduler_options``...), from the first file.
    """
    import dask

    from cdiplatform.pipeline.cluster.pools import Pool, pool_label, worker_resources

    pools, cluster_kwargs, labels = [], {}, set()
    for k, file in enumerate(_files(paths)):
        kwargs = dict(file.kwargs) if file is not None else {}
        source = str(file.path) if file is not None else "Dask's configuration (jobqueue.slurm)"

        def setting(key: str, kwargs: dict[str, Any] = kwargs) -> Any:
            kw = "job_name" if key == "name" else key.replace("-", "_")
            return kwargs[kw] if kw in kwargs else dask.config.get(f"jobqueue.slurm.{key}", None)

        cores, memory = setting("cores"), setting("memory")
        if cores is None or memory is None:
            raise ClusterConfigError(
                f"SLURM cluster config from {source} sets no jobqueue.slurm.cores/memory; "
                f"give them in {DEFAULT_SLURM_CONFIG} or with 'slurm:PATH'"
            )
        processes = int(setting("processes") or 1)
        share = max(1, int(cores) // processes)
        prologue = list(setting("job-script-prologue") or [])
        env = [*((v, share) for v in THREAD_ENV_VARS), *worker_env().items(), *profile_env().items()]
        for var, value in env:
            if not any(line.lstrip().startswith(f"export {var}=") for line in prologue):
                prologue.append(f"export {var}={value}")
        kwargs["job_script_prologue"] = prologue
        for key in _CLUSTER_KEYS:
            value = kwargs.pop(key, None)
            if k == 0 and value is not None:
                cluster_kwargs[key] = value
        if k == 0 and "scheduler_options" not in cluster_kwargs:
            cluster_kwargs["scheduler_options"] = dict(setting("scheduler-options") or {})

        bounds = adapt or ((jobs, jobs) if jobs else None) or (file.adapt if file is not None else None) or (1, 1)
        label = pool_label(Path(file.path).stem if file is not None else "slurm", labels)
        pools.append(Pool(label=label, job=kwargs, processes=processes, minimum=bounds[0], maximum=bounds[1],
                          resources=worker_resources(setting("worker-extra-args"))))
    return pools, cluster_kwargs


def connect_slurm(paths: list[str] | None, *, jobs: int | None, adapt: tuple[int, int] | None, dashboard: bool,
                  dashboard_address: str, wait: float | None) -> ClusterHandle:
    from distributed import Client

    from cdiplatform.pipeline.cluster.pools import PooledSLURMCluster

    pools, cluster_kwargs = slurm_pools(paths, jobs=jobs, adapt=adapt)
    source = ", ".join(paths) if paths else str(DEFAULT_SLURM_CONFIG)
    options = cluster_kwargs["scheduler_options"]
    options.setdefault("dashboard_address", dashboard_address)
    if not dashboard:
        options["dashboard"] = False

    if shutil.which("sbatch") is None:
        raise ClusterUnreachableError(f"cannot start a SLURM cluster from {source}: no 'sbatch' on PATH")
    try:
        cluster = PooledSLURMCluster(pools, **cluster_kwargs)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterConfigError(f"SLURM cluster config from {source} is invalid: {first}") from None
    try:
        client = Client(cluster)
        client.register_plugin(ThreadLimits(), name=PLUGIN_NAME)
        declare_resources(client, [p.resources for p in pools])
        cluster.adapt()
        if wait is not None:
            n = sum(p.minimum * p.processes for p in pools)
            if n:
                client.wait_for_workers(n, timeout=wait)
    except BaseException:
        cluster.close()
        raise
    return ClusterHandle(client, cluster, "slurm", dashboard_link(client, dashboard))
