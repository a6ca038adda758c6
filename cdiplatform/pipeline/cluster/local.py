"""A LocalCluster of worker processes, one per core by default, the dashboard on loopback."""

from __future__ import annotations

from cdiplatform.errors import ClusterConfigError

import copy

from cdiplatform.pipeline.cluster.handle import ClusterHandle
from cdiplatform.pipeline.cluster.resources import cuda_devices
from cdiplatform.pipeline.cluster.threads import PLUGIN_NAME, ThreadEnvNanny, ThreadLimits, cores
from cdiplatform.pipeline.cluster.address import dashboard_link

__all__ = ["connect_local"]


def connect_local(
    *,
    workers: int | None,
    threads_per_worker: int,
    dashboard: bool,
    compute_threads: int | None = None,
    dashboard_address: str,
    gpu_workers: int | None,
    timeout: float,
) -> ClusterHandle:
    from distributed import Client, LocalCluster

    n_cores = cores()
    n = workers or max(1, n_cores // threads_per_worker)
    share = compute_threads or max(1, n_cores // n)
    if gpu_workers is None:
        gpu_workers = min(n, cuda_devices())
    elif gpu_workers > n:
        raise ClusterConfigError(f"gpu_workers={gpu_workers} exceeds the {n} local workers")

    cluster = LocalCluster(
        n_workers=0,
        threads_per_worker=threads_per_worker,
        processes=True,
        # scheduler and workers talk on loopback; the scheduler's HTTP server (it runs even without a
        # dashboard) listens where asked, loopback by default, never on every interface unasked
        host="127.0.0.1",
        dashboard_address=dashboard_address,
        scheduler_kwargs={"dashboard": dashboard},
        worker_class=ThreadEnvNanny,
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
        client.register_plugin(ThreadLimits(share), name=PLUGIN_NAME)
        client.wait_for_workers(n, timeout=timeout)
    except BaseException:
        cluster.close()
        raise
    return ClusterHandle(client, cluster, "local", dashboard_link(client, dashboard))
