"""A dask-jobqueue SLURMCluster from a YAML file in jobqueue's keys (or Dask's configuration)."""

from __future__ import annotations

from cdiplatform.errors import ClusterConfigError, ClusterUnreachableError

import shutil
from pathlib import Path
from typing import Any

from cdiplatform.pipeline.cluster.address import dashboard_link
from cdiplatform.pipeline.cluster.handle import ClusterHandle
from cdiplatform.pipeline.cluster.slurm_config import load_slurm_config
from cdiplatform.pipeline.cluster.threads import PLUGIN_NAME, THREAD_ENV_VARS, ThreadLimits

__all__ = ["DEFAULT_SLURM_CONFIG", "connect_slurm"]

#: The SLURM configuration ``connect("slurm")`` reads, relative to the working directory.
DEFAULT_SLURM_CONFIG = Path("jobs") / "slurm.yaml"


def connect_slurm(path: str | None, *, jobs: int, dashboard: bool, dashboard_address: str,
                  wait: float | None) -> ClusterHandle:
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
        raise ClusterConfigError(
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
    options.setdefault("dashboard_address", dashboard_address)
    if not dashboard:
        options["dashboard"] = False
    kwargs["scheduler_options"] = options

    if shutil.which("sbatch") is None:
        raise ClusterUnreachableError(f"cannot start a SLURM cluster from {source}: no 'sbatch' on PATH")
    try:
        cluster = SLURMCluster(**kwargs)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterConfigError(f"SLURM cluster config from {source} is invalid: {first}") from None
    try:
        client = Client(cluster)
        client.register_plugin(ThreadLimits(), name=PLUGIN_NAME)
        cluster.scale(jobs=jobs)
        if wait is not None:
            client.wait_for_workers(jobs * int(processes), timeout=wait)
    except BaseException:
        cluster.close()
        raise
    return ClusterHandle(client, cluster, "slurm", dashboard_link(client, dashboard))
