"""A scheduler that is already running, at an address."""

from __future__ import annotations

from cdiplatform.errors import ClusterUnreachableError

from typing import TYPE_CHECKING

from cdiplatform.pipeline.cluster.handle import ClusterHandle
from cdiplatform.pipeline.cluster.threads import PLUGIN_NAME, ThreadLimits

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["connect_address", "dashboard_link"]


def connect_address(
    address: str, *, workers: int | None, wait: float | None, timeout: float
) -> ClusterHandle:
    from distributed import Client

    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachableError(
            f"no Dask scheduler answers at {address} within {timeout:g} s ({type(exc).__name__})"
        ) from None
    try:
        client.register_plugin(ThreadLimits(), name=PLUGIN_NAME)
        if wait is not None and workers:
            client.wait_for_workers(workers, timeout=wait)
    except BaseException:
        client.close()
        raise
    has_dashboard = "dashboard" in client.scheduler_info(n_workers=0).get("services", {})
    return ClusterHandle(client, None, "address", dashboard_link(client, has_dashboard))


def dashboard_link(client: Client, dashboard: bool) -> str | None:
    if not dashboard:
        return None
    try:
        return client.dashboard_link
    except Exception:  # no dashboard service, or bokeh missing
        return None
