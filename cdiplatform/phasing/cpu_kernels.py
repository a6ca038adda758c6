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

_TINY = 1e-30
#: from this many (scan, start) rows a kernel runs a row a thread, below it splits the voxels of each row
_MANY_ROWS = 16


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
    """The numba kernels, compiled at their first call (cached on disk between processes).

    Complex operands come as complex64 arrays, not as (re, im) pairs of floats: only then does LLVM
    vectorize the loops (about 6 times faster here). Shifted indices are unsigned, so that numba
    adds no negative-index wraparound to them, which also keeps the loops vectorized.
    """
    from numba import njit, prange

    jit = njit(parallel=True, nogil=True, cache=True, boundscheck=False)

    @njit(inline="always")
    def project(z, a):  # one voxel of the modulus projection: a z / |z|, 0 where z = 0
        m2 = z.real * z.real + z.imag * z.imag
        return z * (a / np.sqrt(m2) if m2 > _TINY else np.float32(0.0))

    # (scan, start) rows of V voxels: many rows (a 2D batch) run a row a thread, few (a large 3D grid)
    # split each row's voxels between the threads; either way one parallel region a call
    @jit
    def modulus(f, a, m, masked):  # f complex64 (S, K, V); a float32 and m bool (S, V)
        k_starts, v_count = f.shape[1], f.shape[2]
        rows = f.shape[0] * k_starts
        if rows >= _MANY_ROWS:
            for row in prange(rows):
                s, k = row // k_starts, row % k_starts
                fr, ar, mr = f[s, k], a[s], m[s]
                for v in range(v_count):
                    z = fr[v]
                    fr[v] = project(z, ar[v]) if not masked or mr[v] else z
        else:
            for row in range(rows):
                s, k = row // k_starts, row % k_starts
                fr, ar, mr = f[s, k], a[s], m[s]
                for v in prange(v_count):
                    z = fr[v]
                    fr[v] = project(z, ar[v]) if not masked or mr[v] else z

    @jit
    def update(r, y, inside, rule, beta):  # r, y complex64 (N,), inside bool (N,)
        b = np.float32(beta)
        c = np.float32(1.0 - 2.0 * beta)
        if rule == 0:
            for i in prange(inside.shape[0]):
                r[i] = y[i] if inside[i] else np.complex64(0.0)
        elif rule == 1:
            for i in prange(inside.shape[0]):
                yi = y[i]
                r[i] = yi if inside[i] else r[i] - b * yi
        else:
            for i in prange(inside.shape[0]):
                yi = y[i]
                r[i] = yi if inside[i] else b * r[i] + c * yi

    @njit(inline="always")
    def modulus_of(z):
        return np.sqrt(z.real * z.real + z.imag * z.imag)

    # update's loops, each also writing |r| of its result; the rules are written out in both: shared
    # through inlined helpers, RAAR's loop measured 12 % slower (1.61 against 1.43 ms at 64^3 x 16)
    @jit
    def update_magnitude(r, y, inside, rule, beta, out):  # update, and out float32 (N,) <- |r| of the result
        b = np.float32(beta)
        c = np.float32(1.0 - 2.0 * beta)
        if rule == 0:
            for i in prange(inside.shape[0]):
                z = y[i] if inside[i] else np.complex64(0.0)
                r[i] = z
                out[i] = modulus_of(z)
        elif rule == 1:
            for i in prange(inside.shape[0]):
                yi = y[i]
                z = yi if inside[i] else r[i] - b * yi
                r[i] = z
                out[i] = modulus_of(z)
        else:
            for i in prange(inside.shape[0]):
                yi = y[i]
                z = yi if inside[i] else b * r[i] + c * yi
                r[i] = z
                out[i] = modulus_of(z)

    @jit
    def magnitude(r, out):  # r complex64 (N,), out float32 (N,)
        for i in prange(out.shape[0]):
            out[i] = modulus_of(r[i])

    # the blur's taps: offsets m in [0, n) (a tap m "before" the point), the first one 0; every output
    # point sums its taps in their order, ((w0 s0 + w1 s1) + w2 s2) + ..., whichever kernel computes
    # it, so all of them give the same bits. The taps go four at a time through one loop over the
    # points (a store per point every four taps, not per tap: a fifth to a quarter less time along z)
    @njit(inline="always")
    def add_taps(out, first, g, s0, s1, s2, s3, w0, w1, w2, w3):  # out[k] (+)= sum of g <= 4 taps w_t s_t[k]
        if first:
            if g == 4:
                for k in range(out.shape[0]):
                    out[k] = w0 * s0[k] + w1 * s1[k] + w2 * s2[k] + w3 * s3[k]
            elif g == 3:
                for k in range(out.shape[0]):
                    out[k] = w0 * s0[k] + w1 * s1[k] + w2 * s2[k]
            elif g == 2:
                for k in range(out.shape[0]):
                    out[k] = w0 * s0[k] + w1 * s1[k]
            else:
                for k in range(out.shape[0]):
                    out[k] = w0 * s0[k]
        elif g == 4:
            for k in range(out.shape[0]):
                out[k] = out[k] + w0 * s0[k] + w1 * s1[k] + w2 * s2[k] + w3 * s3[k]
        elif g == 3:
            for k in range(out.shape[0]):
                out[k] = out[k] + w0 * s0[k] + w1 * s1[k] + w2 * s2[k]
        elif g == 2:
            for k in range(out.shape[0]):
                out[k] = out[k] + w0 * s0[k] + w1 * s1[k]
        else:
            for k in range(out.shape[0]):
                out[k] = out[k] + w0 * s0[k]

    @njit(inline="always")
    def before(i, m, n):  # (i - m) mod n for i, m in [0, n)
        k = i - m
        return k + n if k < 0 else k

    @njit(inline="always")
    def along_first(src, d, i, offsets, weights):  # d <- sum_t w_t src[(i - m_t) mod n]: src rows (n, C), d (C,)
        n, count, t = src.shape[0], offsets.shape[0], 0
        while t < count:
            g = min(4, count - t)
            t1, t2, t3 = t + min(1, g - 1), t + min(2, g - 1), t + min(3, g - 1)  # past g: unused repeats
            add_taps(d, t == 0, g, src[before(i, offsets[t], n)], src[before(i, offsets[t1], n)],
                     src[before(i, offsets[t2], n)], src[before(i, offsets[t3], n)],
                     weights[t], weights[t1], weights[t2], weights[t3])
            t += g

    @njit(inline="always")
    def along_row(twice, d, offsets, weights):  # d[k] <- sum_t w_t s[(k - m_t) mod n], twice = s then s again
        n, count, t = d.shape[0], offsets.shape[0], 0
        while t < count:
            g = min(4, count - t)
            t1, t2, t3 = t + min(1, g - 1), t + min(2, g - 1), t + min(3, g - 1)
            b0, b1, b2, b3 = n - offsets[t], n - offsets[t1], n - offsets[t2], n - offsets[t3]
            add_taps(d, t == 0, g, twice[b0:b0 + n], twice[b1:b1 + n], twice[b2:b2 + n], twice[b3:b3 + n],
                     weights[t], weights[t1], weights[t2], weights[t3])
            t += g

    @njit(inline="always")
    def row_twice(s, twice):
        n = s.shape[0]
        for k in range(n):
            twice[k] = s[k]
        for k in range(n):
            twice[n + k] = s[k]

    @njit(inline="always")
    def signed(offsets, n):  # the offsets as shifts in (-n/2, n/2]
        shifts = np.empty(offsets.shape[0], dtype=np.int64)
        for t in range(offsets.shape[0]):
            shifts[t] = offsets[t] - n if offsets[t] > n // 2 else offsets[t]
        return shifts

    @njit(inline="always")
    def inner(shifts, n):  # the rows i whose taps i - s_t all lie in [0, n): [lo, hi)
        lo, hi = 0, n
        for s in shifts:
            lo, hi = max(lo, s), min(hi, n + s)
        return lo, max(lo, hi)

    @njit(inline="always")
    def along_columns(src, d, offsets, weights, shifts, lo, hi):  # d <- src blurred along axis 0, both (n, C)
        # rows [lo, hi) as one span of the flat plane (long loops), the rows that wrap around one by one
        n, c = src.shape
        flat, out = src.reshape(n * c), d.reshape(n * c)[lo * c:hi * c]
        span, count, t = (hi - lo) * c, offsets.shape[0], 0
        while t < count and span > 0:
            g = min(4, count - t)
            t1, t2, t3 = t + min(1, g - 1), t + min(2, g - 1), t + min(3, g - 1)
            b0, b1, b2, b3 = ((lo - shifts[t]) * c, (lo - shifts[t1]) * c, (lo - shifts[t2]) * c,
                              (lo - shifts[t3]) * c)
            add_taps(out, t == 0, g, flat[b0:b0 + span], flat[b1:b1 + span], flat[b2:b2 + span],
                     flat[b3:b3 + span], weights[t], weights[t1], weights[t2], weights[t3])
            t += g
        for i in range(lo):
            along_first(src, d[i], i, offsets, weights)
        for i in range(hi, n):
            along_first(src, d[i], i, offsets, weights)

    @jit
    def convolve_rows(src, dst, offsets, weights):  # src, dst float32 (B, n): along the contiguous axis
        for b in prange(src.shape[0]):
            twice = np.empty(2 * src.shape[1], dtype=np.float32)
            row_twice(src[b], twice)
            along_row(twice, dst[b], offsets, weights)

    @jit
    def convolve_planes(src, dst, offsets, weights):  # src, dst float32 (B, n, C): along axis 1
        n = src.shape[1]
        for row in prange(src.shape[0] * n):
            b = row // n
            along_first(src[b], dst[b, row - b * n], row - b * n, offsets, weights)

    @njit(inline="always")
    def greater(a, b):  # the maximum of two, NaN if either is (as torch's amax): a NaN grid has no support
        return a if a > b or a != a else b

    # shrink-wrap of R volumes (Z, Y, X), plane by plane, each thread a run of consecutive planes (they
    # share most of their z taps in the cache): the plane blurred along z from the magnitude m into a
    # scratch plane, along y into a second, along x (row by row) into a[z] with its maximum; then each
    # volume's maximum and the threshold. The magnitude is only read, a is written once
    @jit
    def shrink_wrap(m, a, support, oz, wz, oy, wy, ox, wx, threshold, runs):  # float32 x2, bool: (R, Z, Y, X)
        rows, nz, ny, nx = m.shape
        plane, planes = ny * nx, rows * nz
        per = (planes + runs - 1) // runs
        peaks = np.empty(planes, dtype=np.float32)
        sy = signed(oy, ny)
        lo, hi = inner(sy, ny)
        for run in prange(runs):
            by_z, by_y = np.empty((ny, nx), dtype=np.float32), np.empty((ny, nx), dtype=np.float32)
            twice, lanes = np.empty(2 * nx, dtype=np.float32), np.empty(nx, dtype=np.float32)
            for task in range(run * per, min(planes, (run + 1) * per)):
                r, z = task // nz, task % nz
                along_first(m[r].reshape(nz, plane), by_z.reshape(plane), z, oz, wz)
                along_columns(by_z, by_y, oy, wy, sy, lo, hi)
                out = a[r, z]
                lanes[:] = -np.inf  # the maximum a column: a vectorized loop
                for y in range(ny):
                    row = out[y]
                    row_twice(by_y[y], twice)
                    along_row(twice, row, ox, wx)
                    for x in range(nx):
                        lanes[x] = greater(row[x], lanes[x])
                peak = lanes[0]
                for v in lanes:
                    peak = greater(v, peak)
                peaks[task] = peak
        levels = np.empty(rows, dtype=np.float32)
        for r in range(rows):
            peak = peaks[r * nz]
            for z in range(nz):
                peak = greater(peaks[r * nz + z], peak)
            levels[r] = peak * np.float32(threshold)
        for task in prange(planes):
            r, z = task // nz, task % nz
            p, s, level = a[r, z].reshape(plane), support[r, z].reshape(plane), levels[r]
            for i in range(plane):
                s[i] = p[i] >= level

    return {"modulus": modulus, "update": update, "update_magnitude": update_magnitude, "magnitude": magnitude,
            "convolve_rows": convolve_rows, "convolve_planes": convolve_planes, "shrink_wrap": shrink_wrap}


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
