"""The elementwise steps of an iteration on CPU as one pass each, compiled by numba.

Between its two FFTs an iteration is a few passes over arrays larger than
the caches. Eager torch needs two passes for the modulus projection
(``F.sgn_()`` then ``F *= A``) and two for the HIO update (``rho -= beta y``
then a ``where``); each kernel here reads its operands once and writes its
result once, in parallel over the voxels, with the GIL released so that the
other threads of a Dask worker go on:

- :func:`modulus_`: ``F <- A F / |F|`` (0 where ``|F| = 0``), optionally
  only where a pixel was measured;
- :func:`update_`: ER, HIO or RAAR, ``rho <- inside ? y : ...`` (and, when
  asked, ``|rho|`` of the result in the same pass, for the next shrink-wrap);
- :func:`magnitude_`: ``|rho|`` for shrink-wrap;
- :func:`convolve_axis_`: the separable blur of shrink-wrap along one axis,
  all taps in one pass (eager torch makes one pass per tap);
- :func:`shrink_wrap_`: the whole support update, blur, maximum and
  threshold, in one call that reads the magnitude once and writes the
  support.

They take the engine's tensors (CPU, contiguous; complex64 objects, float32
magnitudes, bool masks) and work in place on zero-copy numpy views. The
thread count follows ``torch.get_num_threads()`` of the calling thread (the
worker's share of the cores). numba's thread pool must allow parallel
regions from several threads at once (Dask workers run tasks in threads),
so a thread-safe layer (OpenMP or TBB) is asked for; :func:`numba_available` says whether
numba and that layer load here. Results equal the eager steps to float32
rounding (``tests/phasing/test_cpu_kernels.py``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["UPDATES", "convolve_axis_", "magnitude_", "modulus_", "numba_available", "shrink_wrap_", "update_"]

#: the update rules and their code in the kernel
UPDATES = {"ER": 0, "HIO": 1, "RAAR": 2}


@functools.lru_cache(maxsize=1)
def numba_available() -> tuple[bool, str]:
    """Whether numba and a thread-safe threading layer (OpenMP or TBB) load in this process, and why not."""
    try:
        import numba
    except ImportError:
        return False, "numba is not installed"
    if numba.config.THREADING_LAYER in ("default", "workqueue"):  # workqueue aborts on concurrent launches
        numba.config.THREADING_LAYER = "threadsafe"  # OpenMP or TBB, whichever loads
    # numba's OpenMP layer starts its pool with omp_set_num_threads(NUMBA_NUM_THREADS, default: every
    # core) in the calling thread, and torch's OpenMP is the same library: a Dask worker's task thread
    # then computed torch on every core, two workers of one core each on four threads of two cores
    threads = torch.get_num_threads()
    try:
        _kernels()["magnitude"](np.zeros(2, dtype=np.complex64), np.zeros(2, dtype=np.float32))
    except Exception as exc:  # noqa: BLE001 - a missing libgomp or a refused layer, said in one line
        return False, f"numba cannot run parallel kernels here: {type(exc).__name__}: {exc}"
    finally:
        torch.set_num_threads(threads)
    return True, f"numba {numba.__version__}, threading layer {numba.threading_layer()}"


@functools.lru_cache(maxsize=1)
def _kernels() -> dict:
    """The numba kernels by name (:mod:`cdiplatform.phasing._numba_kernels`), imported at the first call."""
    from cdiplatform.phasing._numba_kernels import NUMBA_KERNELS

    return NUMBA_KERNELS


def _threads() -> None:
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _voxels(t: torch.Tensor, lead: int, *, written: bool = False):
    """A numpy view of a CPU tensor as ``(leading dims, voxels)`` (a copy of a strided operand read only)."""
    if written and not t.is_contiguous():
        raise ValueError(f"the numba kernels write in place and need a contiguous tensor, not strides {t.stride()}")
    return t.numpy().reshape(*t.shape[:lead], -1)


def modulus_(field: torch.Tensor, amplitude: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
    """``field <- amplitude * field / |field|`` in place, one pass; where ``measured`` is False, unchanged.

    Parameters
    ----------
    field : torch.Tensor, complex64, ``(S, K, *grid)``
    amplitude : torch.Tensor, float32, ``(S, 1, *grid)``
        Shared by the ``K`` starts of a scan.
    measured : torch.Tensor, bool, ``(S, 1, *grid)``, optional
    """
    _threads()
    f, a = _voxels(field, 2, written=True), _voxels(amplitude, 1)
    m = np.ones((a.shape[0], 1), dtype=np.bool_) if measured is None else _voxels(measured, 1)
    _kernels()["modulus"](f, a, m, measured is not None)
    return field


def update_(rho: torch.Tensor, field: torch.Tensor, inside: torch.Tensor, rule: str, beta: float, *,
            magnitude: torch.Tensor | None = None) -> torch.Tensor:
    """The real-space update in place, one pass: ``rho <- y`` inside; outside 0 (ER), ``rho - beta y`` (HIO)
    or ``beta rho + (1 - 2 beta) y`` (RAAR), with ``y = field`` (``P_M rho``).

    ``rho``, ``field`` complex64 and ``inside`` bool, all ``(S, K, *grid)``. With ``magnitude`` (float32,
    that shape) the same pass also writes ``|rho|`` of the result into it (the next shrink-wrap's input,
    as :func:`magnitude_` gives it, without reading ``rho`` again).
    """
    _threads()
    args = (_voxels(rho, 0, written=True), _voxels(field, 0), _voxels(inside, 0), UPDATES[rule], float(beta))
    if magnitude is None:
        _kernels()["update"](*args)
    else:
        _kernels()["update_magnitude"](*args, _voxels(magnitude, 0, written=True))
    return rho


def magnitude_(rho: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``|rho|`` into ``out`` (float32, the shape of ``rho``), one pass."""
    _threads()
    _kernels()["magnitude"](_voxels(rho, 0), _voxels(out, 0, written=True))
    return out


def _check_taps(offsets, weights, n: int) -> None:
    if offsets[0] != 0 or offsets.min() < 0 or offsets.max() >= n or len(weights) != len(offsets):
        raise ValueError(f"tap offsets must lie in [0, {n}) and start with 0, one weight each, not {offsets.tolist()}")


def convolve_axis_(src: torch.Tensor, dst: torch.Tensor, axis: int, offsets, weights) -> torch.Tensor:
    """``dst[i] = sum_t weights[t] src[(i - offsets[t]) mod n]`` along ``axis`` (negative), one pass.

    ``src`` and ``dst`` float32 of one shape, contiguous; ``offsets`` int64 in ``[0, n)``, the first
    0, and ``weights`` float32: numpy arrays of the taps (:func:`cdiplatform.phasing.blur.gaussian_taps`).
    """
    _check_taps(offsets, weights, src.shape[axis])
    _threads()
    shape = src.shape
    n = shape[axis]
    lead = int(np.prod(shape[:axis]))
    a, b = _voxels(src, 0), _voxels(dst, 0, written=True)
    if axis == -1:
        _kernels()["convolve_rows"](a.reshape(lead, n), b.reshape(lead, n), offsets, weights)
    else:
        _kernels()["convolve_planes"](a.reshape(lead, n, -1), b.reshape(lead, n, -1), offsets, weights)
    return dst


def shrink_wrap_(magnitude: torch.Tensor, spare: torch.Tensor, support: torch.Tensor, taps, threshold: float) -> torch.Tensor:
    """The shrink-wrap support in one call: ``support <- blur(magnitude) >= threshold * max``, per grid.

    The separable blur along each grid axis (``dst[i] = sum_t weights[t] src[(i - offsets[t]) mod n]``,
    first axis first, as :func:`convolve_axis_` in turn), the maximum of each blurred grid and the
    threshold, without writing the blurred arrays out between them: the same support, bit for bit, as
    a :func:`convolve_axis_` pass per grid axis, ``amax`` and ``>=``.

    Parameters
    ----------
    magnitude : torch.Tensor, float32, ``(R, *grid)``
        ``|rho|`` of ``R`` grids (2D or 3D); only read.
    spare : torch.Tensor, float32, the shape of ``magnitude``
        Holds the blurred grids on return.
    support : torch.Tensor, bool, the shape of ``magnitude``
        Written.
    taps : sequence of (offsets, weights)
        Per grid axis: numpy int64 offsets in ``[0, n)``, the first 0, and float32 weights
        (:func:`cdiplatform.phasing.blur.gaussian_taps`).
    threshold : float
        Of the grid's maximum.
    """
    ndim = len(taps)
    if ndim not in (2, 3) or magnitude.ndim < ndim + 1:
        raise ValueError(f"shrink_wrap_ blurs 2 or 3 grid axes of (rows, *grid), not {ndim} of {tuple(magnitude.shape)}")
    if spare.shape != magnitude.shape or support.shape != magnitude.shape:
        raise ValueError(f"magnitude {tuple(magnitude.shape)}, spare {tuple(spare.shape)} and support "
                         f"{tuple(support.shape)} must have one shape")
    grid = tuple(magnitude.shape[-ndim:])
    for n, (offsets, weights) in zip(grid, taps):
        _check_taps(offsets, weights, n)
    if ndim == 2:  # a grid of one plane, blurred along z by the identity
        taps = [(np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.float32)), *taps]
        grid = (1, *grid)
    _threads()
    import numba

    views = [_voxels(t, 0, written=w).reshape(-1, *grid)
             for t, w in ((magnitude, False), (spare, True), (support, True))]
    flat = [a for offsets, weights in taps for a in (offsets, weights)]
    _kernels()["shrink_wrap"](*views, *flat, float(threshold), numba.get_num_threads())
    return support
