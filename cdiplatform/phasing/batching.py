"""How many scans one device phases at once: a fixed rule of grid, starts and memory.

The ``reconstruct`` stage writes and resumes by chunks; the batch (scans
phased together on one device) is separate, so that a GPU phases many scans
at once while chunks stay small. :func:`auto_batch_size` is the automatic
default: a rule of the grid, the starts, the dtype and the device's memory
(never a measurement at run time), so a resumed run batches the same way
on the same kind of device; record it with the run.
"""

from __future__ import annotations

import math
import os

import torch

__all__ = [
    "ARRAYS_PER_SCAN",
    "ARRAYS_PER_START",
    "MAX_BATCH",
    "MEMORY_FRACTION",
    "auto_batch_size",
    "batch_bytes",
    "device_memory_bytes",
]

#: complex arrays of the grid held per start at the peak of a :func:`~cdiplatform.phasing.phase_retrieval`
#: (engine buffers, :mod:`cdiplatform.phasing.engine`: rho, field, support, magnitude, the blur's
#: buffer, 3.1; averaging 1; the random start and the shifted result on the way in and out, 2; the
#: FFT library's workspace, 1; rounded up)
ARRAYS_PER_START = 8
#: complex arrays of the grid held per scan (amplitude given, shifted and doubled, a mask: 2.1)
ARRAYS_PER_SCAN = 3
#: the share of the device's memory a batch may take: the whole GPU is the worker's; a CPU node
#: is shared with the other workers of the run and the pipeline's own arrays
MEMORY_FRACTION = {"cuda": 0.8, "cpu": 0.25}
#: never more scans in one batch (the per-scan work on the host, and a failure's cost, stay bounded)
MAX_BATCH = 4096


def device_memory_bytes(device) -> int:
    """Total memory of ``device``: the GPU's (``total_memory``), or the host's physical memory."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.get_device_properties(dev).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def batch_bytes(grid: tuple[int, ...], *, n_starts: int, batch: int = 1, dtype=torch.complex64) -> int:
    """Bytes a batch of ``batch`` scans of ``n_starts`` starts needs at its peak (the rule's estimate)."""
    voxels = math.prod(int(n) for n in grid)
    item = torch.empty((), dtype=dtype).element_size()
    return batch * voxels * item * (ARRAYS_PER_START * n_starts + ARRAYS_PER_SCAN)


def auto_batch_size(
    grid: tuple[int, ...],
    *,
    n_starts: int,
    device,
    memory_bytes: int | None = None,
    dtype=torch.complex64,
) -> int:
    """Scans per batch on one device: as many as fit in its share of memory.

    ``floor(MEMORY_FRACTION[device type] * memory / batch_bytes(grid, n_starts))``,
    between 1 and :data:`MAX_BATCH`; the estimate counts
    :data:`ARRAYS_PER_START` complex arrays of the grid per start and
    :data:`ARRAYS_PER_SCAN` per scan (``dtype``: complex64, 8 bytes a voxel).
    Examples (complex64, 4 starts): an 80 GiB GPU takes 936 scans of 64^3,
    117 of 128^3 and 17 of the scan-54 grid (256, 256, 210) (56 with one
    start); a 24 GiB CPU node 87, 10 and 1 (5 with one start).

    Parameters
    ----------
    grid : tuple of int
        The grid of one scan (2D or 3D).
    n_starts : int
        Random starts per scan.
    device : str or torch.device
        Only its type and memory count.
    memory_bytes : int, optional
        The device's memory, when known better than :func:`device_memory_bytes`
        (a node's allocation in a cluster, a GPU shared with other work).
    dtype : torch.dtype
        The complex dtype of the iterations.

    Returns
    -------
    int
    """
    if n_starts < 1 or not grid or any(int(n) < 1 for n in grid):
        raise ValueError(f"need n_starts >= 1 and a non-empty grid of positive sizes, not {n_starts}, {grid}")
    dev = torch.device(device)
    memory = device_memory_bytes(dev) if memory_bytes is None else int(memory_bytes)
    if memory <= 0:
        raise ValueError(f"memory_bytes must be positive, not {memory}")
    share = MEMORY_FRACTION.get(dev.type, MEMORY_FRACTION["cpu"])
    fits = int(share * memory // batch_bytes(grid, n_starts=n_starts, dtype=dtype))
    return max(1, min(MAX_BATCH, fits))
