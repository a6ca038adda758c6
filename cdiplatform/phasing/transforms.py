"""The iteration's unitary FFTs into preallocated buffers, in calls small enough to reuse memory.

``torch.fft.fftn(x, out=y)`` on the CPU transforms into a temporary of the
size of ``x`` and copies it into ``y``. glibc serves an allocation of 32 MiB
or more (a batch of 16 starts at 64^3) with a fresh ``mmap`` and unmaps it
when freed, so each such call page-faults the whole temporary in again:
measured here, an FFT pair of 16 x 64^3 took 25.6 ms with 16,386 page
faults and 11.7 ms with none, the same transforms in calls of at most
:data:`CALL_BYTES` whose temporaries glibc keeps and reuses. Below
32 MiB glibc reuses freed memory only while its trim threshold allows:
Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``, which makes it return
(and fault in again) every temporary, so the platform's workers start with
:data:`cdiplatform.pipeline.cluster.threads.ALLOCATOR_ENV` instead.

A single start larger than the bound (the scan-54 grid, 110 MB) is one
call, as before: splitting one transform into passes over slabs measured
slower than its page faults. CUDA has a caching allocator, so there every
transform is one call.
"""

from __future__ import annotations

import math

import torch

__all__ = ["CALL_BYTES", "transform_blocks", "unitary_fftn", "unitary_fftn_"]

#: the largest array one CPU transform call takes, bytes (glibc's largest mmap threshold is 32 MiB)
CALL_BYTES = 16 << 20


def unitary_fftn_(src: torch.Tensor, out: torch.Tensor, *, ndim: int, inverse: bool = False) -> torch.Tensor:
    """``out <- fftn(src)`` (or ``ifftn``) over the last ``ndim`` axes, ``norm="ortho"``.

    Parameters
    ----------
    src, out : torch.Tensor, complex64, ``(S, K, *grid)``, contiguous
        ``out`` may be ``src`` (in place).
    ndim : int
        Number of grid axes, 2 or 3.
    inverse : bool
        The inverse transform.

    Returns
    -------
    torch.Tensor
        ``out``. The leading axes are transformed in groups of rows of at
        most :data:`CALL_BYTES` together on the CPU (one call on other
        devices); the result is that of one call (bit for bit where measured).
    """
    transform = torch.fft.ifftn if inverse else torch.fft.fftn
    dims = tuple(range(-ndim, 0))
    grid = src.shape[-ndim:]
    row_bytes = math.prod(grid) * src.element_size()
    rows = src.numel() * src.element_size() // row_bytes
    if src.device.type != "cpu" or rows == 1 or rows * row_bytes <= CALL_BYTES:
        return transform(src, dim=dims, norm="ortho", out=out)
    rows_in, rows_out = src.reshape(-1, *grid), out.view(-1, *grid)
    step = max(1, CALL_BYTES // row_bytes)
    for i in range(0, rows_in.shape[0], step):
        transform(rows_in[i:i + step], dim=dims, norm="ortho", out=rows_out[i:i + step])
    return out


def unitary_fftn(src: torch.Tensor, *, ndim: int, inverse: bool = False) -> torch.Tensor:
    """``fftn(src)`` (or ``ifftn``) over the last ``ndim`` axes, ``norm="ortho"``, as a new tensor.

    One call, no copy: for blocks of at most :data:`CALL_BYTES` (see
    :func:`transform_blocks`) the result's memory is reused from the last
    block's on the CPU.
    """
    transform = torch.fft.ifftn if inverse else torch.fft.fftn
    return transform(src, dim=tuple(range(-ndim, 0)), norm="ortho")


def transform_blocks(shape: tuple[int, ...], *, ndim: int, itemsize: int = 8) -> list[tuple[slice, slice]]:
    """Index pairs ``(scans, starts)`` that cover an ``(S, K, *grid)`` batch in blocks of transforms.

    Each block is contiguous and holds at most :data:`CALL_BYTES` (whole
    scans while their ``K`` starts fit, else groups of starts of one scan),
    or one grid where a single grid is larger.

    Parameters
    ----------
    shape : tuple of int
        ``(S, K, *grid)``.
    ndim : int
        Number of grid axes.
    itemsize : int
        Bytes a voxel (8 for complex64).
    """
    n_scans, n_starts = shape[0], shape[1]
    grid_bytes = math.prod(shape[-ndim:]) * itemsize
    if n_starts * grid_bytes <= CALL_BYTES:
        step = CALL_BYTES // (n_starts * grid_bytes)
        return [(slice(s, min(s + step, n_scans)), slice(0, n_starts)) for s in range(0, n_scans, step)]
    step = max(1, CALL_BYTES // grid_bytes)
    return [(slice(s, s + 1), slice(k, min(k + step, n_starts)))
            for s in range(n_scans) for k in range(0, n_starts, step)]
