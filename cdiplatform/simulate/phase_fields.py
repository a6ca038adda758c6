"""Smooth random phase fields: sums of sine gratings and Gaussians, batched.

Both kinds of component are separable in ``y`` and ``x`` (a grating through
``sin(a + b) = sin a cos b + cos a sin b``, an axis-aligned Gaussian as a
product), so a field with ``R`` terms is the batched product of a ``(N, R)`` and
an ``(R, N)`` matrix: ``O(B R N^2)`` multiply-adds and only ``O(B R N)``
transcendental functions.

Coordinates are pixels relative to the grid centre ``N // 2`` (the platform's
object centre, see :mod:`cdiplatform.physics.fft`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["grating_gaussian_field", "scale_phase"]


def grating_gaussian_field(
    *,
    size: int,
    grating_direction: np.ndarray,
    grating_period: np.ndarray,
    grating_offset: np.ndarray,
    grating_weight: np.ndarray,
    gaussian_centre: np.ndarray,
    gaussian_width: np.ndarray,
    gaussian_weight: np.ndarray,
    dtype: np.dtype | type = np.float64,
) -> np.ndarray:
    """Sum of sine gratings and axis-aligned Gaussians on a ``size x size`` grid.

    ``sum_k w_k sin(q_k . r + c_k) + sum_m v_m exp(-(y - y_m)^2 / 2 sy_m^2 - (x - x_m)^2 / 2 sx_m^2)``

    with ``r = (y, x)`` in pixels from the centre ``size // 2`` and
    ``q_k = 2 pi / P_k (sin t_k, cos t_k)``. Components of zero weight are
    unused slots.

    Parameters
    ----------
    size : int
        Grid size ``N``.
    grating_direction : ndarray, shape ``(B, K)``
        Direction ``t_k`` of each grating's wave vector, radians from the ``x`` axis.
    grating_period : ndarray, shape ``(B, K)``
        Period ``P_k`` in pixels (positive).
    grating_offset : ndarray, shape ``(B, K)``
        Phase ``c_k`` of the sine at the centre, radians.
    grating_weight : ndarray, shape ``(B, K)``
        Weight ``w_k`` (dimensionless).
    gaussian_centre : ndarray, shape ``(B, M, 2)``
        Centres ``(y_m, x_m)`` in pixels from the grid centre.
    gaussian_width : ndarray, shape ``(B, M, 2)``
        Standard deviations ``(sy_m, sx_m)`` in pixels (positive).
    gaussian_weight : ndarray, shape ``(B, M)``
        Signed weights ``v_m``.
    dtype : numpy dtype
        Float type of the result and of the sines, cosines and exponentials
        (their arguments are computed in float64).

    Returns
    -------
    ndarray of ``dtype``, shape ``(B, N, N)``
        The field, in units of the weights.
    """
    r = np.arange(size, dtype=np.float64) - size // 2
    k = 2.0 * np.pi / np.asarray(grating_period, dtype=np.float64)
    ky = (k * np.sin(grating_direction))[:, None, :]
    kx = (k * np.cos(grating_direction))[:, None, :]
    w = np.asarray(grating_weight, dtype=dtype)[:, None, :]
    # arguments in float64, the O(B R N) transcendental functions in ``dtype`` (float32 is SIMD-fast)
    arg_y = (ky * r[None, :, None] + np.asarray(grating_offset, dtype=np.float64)[:, None, :]).astype(dtype)
    arg_x = (kx * r[None, :, None]).astype(dtype)

    centre = np.asarray(gaussian_centre, dtype=np.float64)
    width = np.asarray(gaussian_width, dtype=np.float64)
    v = np.asarray(gaussian_weight, dtype=dtype)[:, None, :]
    zy = (r[None, :, None] - centre[:, None, :, 0]) / width[:, None, :, 0]
    zx = (r[None, :, None] - centre[:, None, :, 1]) / width[:, None, :, 1]
    gy = np.exp((-0.5 * zy**2).astype(dtype))
    gx = np.exp((-0.5 * zx**2).astype(dtype))

    left = np.concatenate([w * np.sin(arg_y), w * np.cos(arg_y), v * gy], axis=2)  # (B, N, R)
    right = np.concatenate([np.cos(arg_x), np.sin(arg_x), gx], axis=2)  # (B, N, R)
    # one small matrix product per scan (np.matmul loops over the batch), so a
    # scan's values do not depend on the batch it was computed in
    return np.matmul(left, np.ascontiguousarray(right.transpose(0, 2, 1)))


def scale_phase(field: np.ndarray, support: np.ndarray, peak_to_peak: np.ndarray) -> np.ndarray:
    """Scale fields to a given peak-to-peak inside a support, centred on zero.

    Parameters
    ----------
    field : ndarray of float, shape ``(B, N, N)``
        Raw fields (any units, magnitudes well below 1e29).
    support : ndarray of bool, shape ``(B, N, N)``
        Pixels of each object; the phase is 0 elsewhere.
    peak_to_peak : ndarray, shape ``(B,)``
        Wanted ``max - min`` of the phase inside the support, radians.

    Returns
    -------
    ndarray, shape ``(B, N, N)``, the dtype of ``field``
        Phase in radians, within ``[-peak_to_peak / 2, peak_to_peak / 2]`` inside
        the support (midrange at 0) and exactly 0 outside. A field that is
        constant over its support gives a phase of 0.
    """
    inside = np.asarray(support, dtype=field.dtype)
    # masks by arithmetic (much faster than np.where): +-1e30 pushes outside pixels out of max/min
    penalty = (inside - 1) * field.dtype.type(1e30)
    flat = (len(field), int(np.prod(field.shape[1:])))
    hi = (field + penalty).reshape(flat).max(axis=1).astype(np.float64)
    lo = (field - penalty).reshape(flat).min(axis=1).astype(np.float64)
    span = hi - lo
    ok = (span > 0) & (span < 1e29)  # an empty support gives span -2e30
    scale = np.where(ok, np.asarray(peak_to_peak, dtype=np.float64) / np.where(ok, span, 1.0), 0.0)
    mid = np.where(ok, 0.5 * (hi + lo), 0.0)
    phase = (field - mid.astype(field.dtype)[:, None, None]) * scale.astype(field.dtype)[:, None, None]
    return phase * inside + field.dtype.type(0)  # + 0 turns the -0.0 of negative values outside into 0.0
