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

A single grid larger than glibc's largest mmap threshold (32 MiB: the
scan-54 grid, 110 MB) cannot avoid them that way: torch's result is a fresh
mapping in every call (splitting one transform into passes over slabs
measured slower than its page faults). Such grids are transformed by
pocketfft (``scipy.fft``'s library) into a buffer the engine keeps, with
no temporary of the grid's size: measured here, 7.8 against 12.2 ns a voxel
for the pair at 256 x 256 x 210 and 7.6-8.2 against 11.8-13.6 from 168^3
to 224^3, while at 160^3 and below torch (MKL) was faster, 1.0-1.6 times
(``docs/phasing.md``). :func:`resolve_fft` is that rule. CUDA has a caching
allocator, so there every transform is one torch call.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["CALL_BYTES", "FFTS", "IN_PLACE_BYTES", "resolve_fft", "transform_blocks", "unitary_fftn",
           "unitary_fftn_"]

#: the largest array one CPU transform call takes, bytes (glibc's largest mmap threshold is 32 MiB)
CALL_BYTES = 16 << 20

#: on the CPU, grids of more bytes than this are transformed by pocketfft (:func:`resolve_fft`)
IN_PLACE_BYTES = 32 << 20

#: the choices of ``PhasingSettings.fft``
FFTS = ("auto", "torch", "pocketfft")


def resolve_fft(device, grid: tuple[int, ...], *, choice: str = "auto", itemsize: int = 8) -> str:
    """Which library transforms an iteration: ``"torch"`` or ``"pocketfft"``, a fixed rule of device and grid.

    ``"auto"``: on the CPU, ``"pocketfft"`` (``scipy.fft``'s library, into a kept buffer) for a
    grid of more than :data:`IN_PLACE_BYTES` (the scan-54 grid, 256 x 256 x
    210 complex64, is 110 MB), where every torch call faults a fresh result
    in; ``"torch"`` for smaller grids and on every other device. Record the
    answer with the run.

    Raises
    ------
    ValueError
        ``choice`` is not one of :data:`FFTS`, or ``"pocketfft"`` on another device than the CPU.
    """
    if choice not in FFTS:
        raise ValueError(f"unknown fft {choice!r}; known: {', '.join(FFTS)}")
    on_cpu = torch.device(device).type == "cpu"
    if choice == "pocketfft" and not on_cpu:
        raise ValueError(f"fft='pocketfft' runs on the CPU, not on {torch.device(device).type}")
    if choice != "auto":
        return choice
    return "pocketfft" if on_cpu and math.prod(grid) * itemsize > IN_PLACE_BYTES else "torch"


@functools.lru_cache(maxsize=1)
def _pocketfft_c2c():
    """scipy's pocketfft ``c2c(a, axes, forward, inorm, out, nthreads)``, which writes into ``out``
    (its first pass reads ``a``, the others work in ``out``); None where this scipy lacks it."""
    try:
        from scipy.fft._pocketfft.pypocketfft import c2c
    except ImportError:
        return None
    return c2c


def _pocketfft_(src: torch.Tensor, out: torch.Tensor, *, ndim: int, inverse: bool) -> torch.Tensor:
    """``out <- fftn(src)`` (unitary) by pocketfft on the calling thread's share of the cores, no temporary.

    ``out`` is ``src`` or does not overlap it. Where scipy's module lacks the call into ``out``, ``src``
    is copied into ``out`` and the public ``scipy.fft`` transforms it in place (10 ms more at 256 x 256 x
    210): numpy's copy, on this thread, since torch's ``copy_`` runs on its OpenMP pool, whose threads
    then spin for milliseconds beside pocketfft's (174 against 135 ms an HIO iteration there).
    """
    a, b = src.numpy(), out.numpy()
    axes, workers = tuple(range(a.ndim - ndim, a.ndim)), torch.get_num_threads()
    c2c = _pocketfft_c2c()
    if c2c is not None:
        c2c(a, axes, not inverse, 1, b, workers)  # inorm 1: divide by sqrt(N), both ways
        return out
    import scipy.fft

    if src.data_ptr() != out.data_ptr():  # (``a is b`` never holds: ``.numpy()`` makes a new array each call)
        np.copyto(b, a)
    transform = scipy.fft.ifftn if inverse else scipy.fft.fftn
    res = transform(b, axes=axes, norm="ortho", overwrite_x=True, workers=workers)
    if not np.shares_memory(res, b):  # scipy copies where it cannot overwrite (a dtype it converts)
        b[...] = res
    return out


def unitary_fftn_(src: torch.Tensor, out: torch.Tensor, *, ndim: int, inverse: bool = False,
                  fft: str = "torch") -> torch.Tensor:
    """``out <- fftn(src)`` (or ``ifftn``) over the last ``ndim`` axes, ``norm="ortho"``.

    Parameters
    ----------
    src, out : torch.Tensor, complex64, ``(S, K, *grid)``, contiguous
        ``out`` may be ``src`` (in place).
    ndim : int
        Number of grid axes, 2 or 3.
    inverse : bool
        The inverse transform.
    fft : {"torch", "pocketfft"}
        The library (:func:`resolve_fft`); ``"pocketfft"`` (CPU) writes
        into ``out`` with no temporary (``out`` is ``src`` or does not
        overlap it).

    Returns
    -------
    torch.Tensor
        ``out``. With torch, the leading axes are transformed in groups of
        rows of at most :data:`CALL_BYTES` together on the CPU (one call on
        other devices); the result is that of one call (bit for bit where
        measured).
    """
    if fft == "pocketfft":
        return _pocketfft_(src, out, ndim=ndim, inverse=inverse)
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
