"""Dask worker resources: torch stages go to workers that advertise ``GPU``."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DECLARED_RESOURCES", "cuda_devices", "declare_resources", "declared_resources", "gpu_resources",
           "has_gpu_workers", "task_resources"]

#: scheduler metadata key: the resources that workers of this cluster will advertise once they arrive
DECLARED_RESOURCES = ("cdiplatform", "declared-resources")


def declare_resources(client: Client, per_pool: list[dict[str, float]]) -> None:
    """Record on the scheduler the resources that the cluster's workers will advertise.

    SLURM workers arrive long after the cluster starts (queue wait, adaptive
    scaling from zero): a torch stage submitted before the first GPU worker
    connects must still ask for ``GPU``, and wait for it, rather than run on
    whatever CPU worker is there. :func:`task_resources` reads this record.
    """
    names = sorted({name for resources in per_pool for name, amount in resources.items() if amount > 0})
    client.set_metadata(list(DECLARED_RESOURCES), names)


def declared_resources(client: Client) -> set[str]:
    """The resources recorded by :func:`declare_resources` (empty when none were)."""
    return set(client.get_metadata(list(DECLARED_RESOURCES), default=[]) or [])


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
        ``{"GPU": 1}`` when ``uses_torch`` and a worker advertises ``GPU``, or
        the cluster declared that its workers will (:func:`declare_resources`:
        SLURM GPU jobs still queued); None otherwise (the task may run on any worker).
    """
    if uses_torch and (has_gpu_workers(client) or "GPU" in declared_resources(client)):
        return {"GPU": 1}
    return None


def cuda_devices() -> int:
    """CUDA (or ROCm) devices torch sees; 0 without importing torch on a machine without any."""
    import glob

    if not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd")) and sys.platform == "linux":
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
