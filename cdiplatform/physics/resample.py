"""Resampling of diffraction data by truncated DCT, and oversampling estimates.

Resampling
----------
:func:`dct_resample` changes the number of samples of an array along some
axes while keeping what it covers: the orthonormal DCT-II of the array
(``scipy.fft.dctn(norm="ortho")``) is truncated to its first ``n``
coefficients per axis (or zero-extended), and the cosine series is evaluated
at ``n`` points spread over the same extent. With no centre given this is
``idctn(..., s=n, norm="ortho")``. Values are multiplied by
``sqrt(n / N)`` per axis so that a constant stays the same constant (the
sum of the array is then multiplied by ``n / N`` per axis).

Resampling a diffraction pattern from ``N`` to ``n`` points over the same q
range makes its q step ``N / n`` times coarser; its real-space field of view,
and hence its oversampling ratio, shrink by ``n / N``.

Oversampling
------------
The autocorrelation of the object is the inverse Fourier transform of the
intensity; its support is twice the object's extent. :func:`oversampling_ratio`
measures that support along each axis and returns ``N / object extent`` per
axis (2 is the Nyquist limit for phasing; isolated crystals measured in Bragg
CDI usually have 3 or more).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
import scipy.ndimage

from cdiplatform.physics.fft import from_far_field

__all__ = ["dct_resample", "oversampling_ratio", "resample_matrix"]


def resample_matrix(n_in: int, n_out: int, *, shift: float = 0.0) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of :func:`dct_resample` along one axis.

    Parameters
    ----------
    n_in, n_out : int
        Samples before and after.
    shift : float
        Output sample ``j`` is taken at position ``j + shift`` of the output
        grid (in output samples); 0 gives the plain truncated DCT.

    Returns
    -------
    ndarray, float64, shape ``(n_out, n_in)``.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    n_keep = min(n_in, n_out)
    # forward: the first n_keep orthonormal DCT-II basis rows of length n_in
    k = np.arange(n_keep)[:, None]
    i = np.arange(n_in)[None, :]
    forward = np.cos(np.pi * k * (2 * i + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    forward[0] /= np.sqrt(2.0)
    # inverse at n_out points (orthonormal DCT-III of length n_out), shifted
    j = np.arange(n_out)[:, None] + shift
    kk = np.arange(n_keep)[None, :]
    inverse = np.cos(np.pi * kk * (2 * j + 1) / (2 * n_out)) * np.sqrt(2.0 / n_out)
    inverse[:, 0] /= np.sqrt(2.0)
    return np.sqrt(n_out / n_in) * (inverse @ forward)


def dct_resample(
    x: np.ndarray,
    shape: Sequence[int],
    *,
    centre: Sequence[float] | None = None,
) -> np.ndarray:
    """Resample the last ``len(shape)`` axes of ``x`` by truncated (or extended) DCT.

    Parameters
    ----------
    x : ndarray, shape ``(..., N1, ..., Nd)``
        Real data (leading axes are batch axes).
    shape : sequence of int
        New sizes ``(n1, ..., nd)`` of the last ``d`` axes.
    centre : sequence of float, optional
        Per resampled axis, the input index (may be fractional) that must land
        exactly on output index ``n // 2`` (the platform's centre). Without it
        the two grids share their outer edges (plain DCT resampling), which
        puts input index ``N // 2`` about half an output sample off
        ``n // 2``. Pass ``[N // 2 for N in ...]`` to keep a pattern centred.

    Returns
    -------
    ndarray, float64, shape ``(..., n1, ..., nd)``. A constant input stays the
    same constant; sums scale by ``n / N`` per axis.

    Notes
    -----
    Without ``centre`` this equals
    ``idctn(dctn(x, axes, norm="ortho"), s=shape, axes, norm="ortho")``
    times ``prod(sqrt(n / N))``. With it, the cosine series of the kept
    coefficients is evaluated at output positions shifted by a fraction of a
    sample, computed as a small matrix per axis.
    """
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise ValueError("dct_resample takes real data (resample |F| or |F|^2, not F)")
    shape = tuple(int(n) for n in shape)
    d = len(shape)
    if d == 0 or d > x.ndim:
        raise ValueError(f"shape {shape} does not fit an array of {x.ndim} dimensions")
    axes = tuple(range(x.ndim - d, x.ndim))
    if centre is not None and len(centre) != d:
        raise ValueError(f"centre needs {d} values, got {len(centre)}")
    out = x.astype(np.float64, copy=False)
    for a, n_out, ax in zip(range(d), shape, axes):
        n_in = out.shape[ax]
        if centre is None:
            shift = 0.0
        else:
            # output position j+shift covers input position (j+shift+0.5)*n_in/n_out - 0.5
            shift = (float(centre[a]) + 0.5) * n_out / n_in - 0.5 - n_out // 2
        if n_in == n_out and shift == 0.0:
            continue
        m = resample_matrix(n_in, n_out, shift=shift)
        out = np.moveaxis(np.tensordot(m, np.moveaxis(out, ax, 0), axes=(1, 0)), 0, ax)
    return np.ascontiguousarray(out)


def _run_through(line: np.ndarray, centre: int) -> tuple[int, int]:
    """First and last index of the run of True values of ``line`` containing ``centre``."""
    if not line[centre]:
        return centre, centre
    falses = np.flatnonzero(~line)
    lo = falses[falses < centre]
    hi = falses[falses > centre]
    start = int(lo[-1]) + 1 if lo.size else 0
    stop = int(hi[0]) - 1 if hi.size else line.size - 1
    return start, stop


def oversampling_ratio(
    intensity: np.ndarray,
    *,
    ndim: int | None = None,
    threshold: float = 0.02,
) -> np.ndarray:
    """Oversampling ratio per axis, from the extent of the autocorrelation.

    Parameters
    ----------
    intensity : ndarray, shape ``(..., N1, ..., Nd)``
        Diffraction intensity (|F|^2, counts), zero frequency near ``N // 2``;
        masked or missing voxels should be 0.
    ndim : int, optional
        Number of trailing grid axes (default: all).
    threshold : float
        The autocorrelation's support is where its modulus exceeds this
        fraction of its value at the centre, not counting the central voxel
        itself (which holds the noise and background power).

    Returns
    -------
    ndarray, float64, shape ``(..., d)``: ``2 * N / (extent + 1)`` per axis,
    where ``extent`` is the length, in voxels, of the support run through the
    centre of the autocorrelation along that axis (projected over the other
    axes). It is ``N / a`` for an object ``a`` voxels wide.
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    if ndim is None:
        ndim = intensity.ndim
    if not 1 <= ndim <= intensity.ndim:
        raise ValueError(f"ndim={ndim} does not fit an array of {intensity.ndim} dimensions")
    grid = intensity.shape[intensity.ndim - ndim:]
    batch = intensity.shape[: intensity.ndim - ndim]
    flat = intensity.reshape((-1,) + grid)
    centre = tuple(n // 2 for n in grid)
    out = np.empty((flat.shape[0], ndim))
    for b, item in enumerate(flat):
        acf = np.abs(from_far_field(item))
        ref = acf.copy()
        ref[centre] = 0.0
        # the central value minus the noise spike: the largest neighbour on the grid
        peak = ref[tuple(slice(max(c - 1, 0), c + 2) for c in centre)].max()
        if not peak > 0:
            out[b] = np.nan
            continue
        support = ref > threshold * peak
        support[centre] = True
        labels, _ = scipy.ndimage.label(support)  # keep the blob around the centre only
        support = labels == labels[centre]
        for ax in range(ndim):
            other = tuple(i for i in range(ndim) if i != ax)
            line = support.any(axis=other) if other else support
            start, stop = _run_through(line, centre[ax])
            extent = stop - start + 1
            out[b, ax] = 2.0 * grid[ax] / (extent + 1)
    return out.reshape(batch + (ndim,))
