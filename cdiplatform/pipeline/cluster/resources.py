"""Dask worker resources: torch stages go to workers that advertise ``GPU``."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["cuda_devices", "gpu_resources", "has_gpu_workers", "task_resources"]


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
