"""The numba kernels of :mod:`cdiplatform.phasing.cpu_kernels`, compiled at their first call.

Imported only when a kernel is first needed, so that numba stays optional. Every kernel and the
helpers it inlines are module globals: numba's on-disk cache keys a function by its code and by the
pickled values of its closure cells, and a compiled function pickles with an identifier new in
every process, so kernels defined inside a function (as they were until 2026-12-04) never found
their cached machine code and were compiled again in every process that ran one (20-40 s a worker
here). Globals are not part of the key: a second process loads them from the cache.

Complex operands come as complex64 arrays, not as (re, im) pairs of floats: only then does LLVM
vectorize the loops (about 6 times faster here). Shifted indices are unsigned, so that numba adds no
negative-index wraparound to them, which also keeps the loops vectorized.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["NUMBA_KERNELS"]

_TINY = 1e-30
#: from this many (scan, start) rows a kernel runs a row a thread, below it splits the voxels of each row
_MANY_ROWS = 16

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

#: the kernels by name
NUMBA_KERNELS = {"modulus": modulus, "update": update, "update_magnitude": update_magnitude, "magnitude": magnitude,
           "convolve_rows": convolve_rows, "convolve_planes": convolve_planes, "shrink_wrap": shrink_wrap}
