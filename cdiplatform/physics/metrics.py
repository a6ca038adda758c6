"""Quality metrics of a reconstruction: against the data, and against the truth.

Against the data (any reconstruction, batched over leading axes):

- :func:`chi_square`: ``sum (|F| - A)**2 / sum A**2`` over the measured
  pixels, ``F = far_field(obj)`` and ``A`` the measured magnitudes (cohere's
  "chi"; no square root).
- :func:`poisson_llk`: the Poisson log-likelihood of the measured intensity
  given ``|F|**2``, as the mean deviance per measured pixel
  ``Ic - I + I log(I / Ic)`` (0 for a perfect fit; smaller is better).

Against the truth (simulated data; one object at a time, after :func:`align`):

- :func:`amplitude_error`: mean absolute difference over the grid of the two
  amplitudes, each normalized to a maximum of 1.
- :func:`phase_error`: RMS of the phase difference, wrapped to (-pi, pi],
  inside a given support, after removing the best constant offset.
- :func:`compare_with_truth` aligns and computes both by the rules every
  method is compared with (:mod:`cdiplatform.physics.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cdiplatform.physics.align import Alignment
from cdiplatform.physics.fft import far_field

if TYPE_CHECKING:
    from cdiplatform.physics.compare import Comparison

__all__ = [
    "TruthComparison",
    "amplitude_error",
    "chi_square",
    "compare_with_truth",
    "phase_error",
    "poisson_llk",
]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check(obj: np.ndarray, data: np.ndarray, what: str, ndim: int | None) -> tuple[int, ...]:
    if obj.shape[-data.ndim :] != data.shape and obj.shape != data.shape[-obj.ndim :]:
        raise ValueError(f"object of shape {obj.shape} does not match {what} of shape {data.shape}")
    nd = obj.ndim if ndim is None else ndim
    if not 1 <= nd <= obj.ndim:
        raise ValueError(f"ndim={ndim} does not fit an object of shape {obj.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{what} holds NaN or infinite values")
    return tuple(range(-nd, 0))


def _magnitudes(obj, ndim):
    arr = _np(obj)
    f = far_field(arr.astype(np.complex128, copy=False), ndim=ndim)
    return arr, np.abs(f)


def chi_square(obj, amplitude, *, ndim: int | None = None, measured=None, fit_scale: bool = False):
    """Reciprocal-space error ``sum (s|F| - A)**2 / sum A**2`` over the measured pixels.

    Parameters
    ----------
    obj : array, complex, shape ``(..., *grid)``
        Reconstructed object(s), centre at ``N // 2``.
    amplitude : array, float, shape ``(..., *grid)`` (broadcast against ``obj``)
        Measured magnitudes ``sqrt(I)``.
    ndim : int, optional
        Grid dimensions (the last ``ndim`` axes); all axes by default.
    measured : array of bool, optional
        True where ``amplitude`` was measured; all pixels by default.
    fit_scale : bool
        Use the scale ``s`` of ``|F|`` that minimizes the error (for objects
        stored with an arbitrary normalization); ``s = 1`` otherwise.

    Returns
    -------
    ndarray of float64, shape ``(...)`` (a 0-d array for one object).
    """
    amp = _np(amplitude).astype(np.float64)
    arr, mag = _magnitudes(obj, ndim)
    axes = _check(arr, amp, "amplitude", ndim)
    w = np.ones_like(amp) if measured is None else _np(measured).astype(np.float64)
    if fit_scale:
        s = (mag * amp * w).sum(axis=axes, keepdims=True) / np.maximum(
            (mag**2 * w).sum(axis=axes, keepdims=True), 1e-300
        )
        mag = mag * s
    num = ((mag - amp) ** 2 * w).sum(axis=axes)
    den = (amp**2 * w).sum(axis=axes)
    return num / np.maximum(den, 1e-300)


def poisson_llk(obj, intensity, *, ndim: int | None = None, measured=None, fit_scale: bool = False):
    """Poisson deviance per measured pixel, ``mean(Ic - I + I log(I / Ic))``, ``Ic = s|F|**2``.

    Same parameters as :func:`chi_square`, with the intensity ``I`` (photons)
    instead of the magnitudes. ``fit_scale`` uses the maximum-likelihood
    scale ``s = sum I / sum |F|**2``.
    """
    inten = _np(intensity).astype(np.float64)
    arr, mag = _magnitudes(obj, ndim)
    axes = _check(arr, inten, "intensity", ndim)
    if np.any(inten < 0):
        raise ValueError("intensity has negative values")
    w = np.ones_like(inten) if measured is None else _np(measured).astype(np.float64)
    calc = mag**2
    if fit_scale:
        total_calc = np.maximum((calc * w).sum(axis=axes, keepdims=True), 1e-300)
        calc = calc * ((inten * w).sum(axis=axes, keepdims=True) / total_calc)
    calc = np.maximum(calc, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(inten > 0, inten * np.log(inten / calc), 0.0)
    dev = (calc - inten + log_term) * w
    n = np.maximum(np.broadcast_to(w, dev.shape).sum(axis=axes), 1.0)
    return dev.sum(axis=axes) / n


def amplitude_error(amplitude, truth_amplitude) -> float:
    """Mean absolute difference over the grid, both amplitudes normalized to a maximum of 1."""
    a, t = np.abs(_np(amplitude)).astype(np.float64), np.abs(_np(truth_amplitude)).astype(np.float64)
    if a.shape != t.shape:
        raise ValueError(f"amplitude of shape {a.shape} does not match the truth's {t.shape}")
    a = a / max(a.max(), 1e-300)
    t = t / max(t.max(), 1e-300)
    return float(np.mean(np.abs(a - t)))


def phase_error(obj, truth, support) -> float:
    """RMS of the wrapped phase difference inside ``support``, best constant offset removed.

    Parameters
    ----------
    obj, truth : complex arrays of one grid (already aligned in position and twin)
    support : bool array of the grid: the true support

    Returns
    -------
    float, radians.
    """
    o, t, s = _np(obj), _np(truth), _np(support).astype(bool)
    if not (o.shape == t.shape == s.shape):
        raise ValueError(f"shapes differ: object {o.shape}, truth {t.shape}, support {s.shape}")
    if not s.any():
        raise ValueError("the true support is empty")
    d = np.angle(o[s] * np.conj(t[s]))
    d = np.angle(np.exp(1j * (d - np.angle(np.exp(1j * d).mean()))))
    return float(np.sqrt(np.mean(d**2)))


@dataclass
class TruthComparison:
    """Result of :func:`compare_with_truth`: the two errors, the alignment used, the full comparison."""

    amplitude_error: float
    phase_error: float
    alignment: Alignment
    comparison: Comparison


def compare_with_truth(
    obj,
    truth_amplitude,
    truth_phase,
    *,
    support_threshold: float = 0.1,
    subpixel: bool = True,
) -> TruthComparison:
    """Align a reconstruction on the truth and compute both errors, by the benchmark's rules.

    A shorthand of :func:`cdiplatform.physics.compare.compare_objects` with
    ``ComparisonRules(support_threshold=..., subpixel=...)`` and the truth
    ``truth_amplitude * exp(1j * truth_phase)``: twin, sub-pixel shift applied
    to the smoother of the two, constant phase, no phase ramp; the phase
    error counts the voxels significant in both objects.

    Parameters
    ----------
    obj : complex array, shape ``grid``
        One reconstruction on the truth's grid.
    truth_amplitude, truth_phase : float arrays, shape ``grid``
    support_threshold : float
        Supports: amplitude above this fraction of the object's maximum.
    subpixel : bool
        Align to a fraction of a voxel (default) or to whole voxels.
    """
    from cdiplatform.physics.compare import ComparisonRules, compare_objects

    ta, tp = _np(truth_amplitude).astype(np.float64), _np(truth_phase).astype(np.float64)
    if not np.any(ta > 0):
        raise ValueError("the true amplitude is zero everywhere")
    rules = ComparisonRules(support_threshold=support_threshold, subpixel=subpixel)
    c = compare_objects(obj, ta * np.exp(1j * tp), rules=rules)
    al = Alignment(obj=c.obj, twinned=c.twinned, shift=c.shift, ramp=np.zeros(c.shift.shape), offset=c.offset)
    return TruthComparison(amplitude_error=c.amplitude_error, phase_error=c.phase_error, alignment=al, comparison=c)
