"""One comparison of a reconstruction with the truth or with a reference method's object.

Every method (network, refinement, ER/HIO, seeded ER/HIO) is compared the
same way, on one grid (the model grid), one pair at a time:

1. **Registration** (:func:`cdiplatform.physics.align.register`): the twin
   ``conj(rho(-r))`` is taken when it correlates better with the reference,
   and the sub-pixel shift at the peak of the cross-correlation is found. No
   phase ramp is removed: against the truth a ramp is strain (the mean strain
   of a crystal on its substrate is half of its phase variance).
2. **The shift is applied to one side** (``ComparisonRules.shift_side``):
   by default the smoother of the two (:func:`high_frequency_share`), as a
   Fourier shift, so that the sharper one is compared as it was sampled.
3. **Supports**: each object's significant voxels are those above
   ``support_threshold`` of its own maximum amplitude.
4. **Errors**:

   - ``amplitude_error``: mean absolute difference over the grid of the two
     amplitudes, each normalized to a maximum of 1
     (:func:`cdiplatform.physics.metrics.amplitude_error`);
   - ``phase_error``: RMS of the wrapped phase difference over the
     *common support* (voxels significant in both objects), after removing
     the constant phase that minimizes it;
   - ``overlap``: intersection over union of the two supports;
   - ``coverage``: share of the reference's support that the object covers
     (the phase error says nothing about the rest; the amplitude error does).

Why the common support and the smoother side (docs/benchmark.md has the
numbers): a phase means nothing where the amplitude is near zero. Counting
the phase of every voxel of the true support lets a sub-pixel Fourier shift,
which rings at a sharp edge (negative lobes, phase pi), decide the error of a
prediction whose amplitude misses the edge of the true support: the flat
predictions of the reduced 3D network on control crystals read 0 rad with a
whole-pixel shift and 0.1-0.6 rad with a sub-pixel one (median 0.37).
Restricted to the common support both read the same (0.006 and 0), and a
reconstruction off by a fraction of a voxel (ER/HIO centres to whole voxels)
still aligns to a fraction of a voxel (2D ER/HIO: 0.059 rad against 0.082
with whole voxels). Shifting the smoother side keeps a sharp truth from
ringing into the amplitude error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cdiplatform.physics.align import register, shift_object, twin
from cdiplatform.physics.metrics import amplitude_error

__all__ = ["PHASE_REGIONS", "SHIFT_SIDES", "Comparison", "ComparisonRules", "compare_objects", "high_frequency_share"]

#: where the phase error is counted
PHASE_REGIONS = ("common", "reference", "weighted")
#: which object the sub-pixel shift moves
SHIFT_SIDES = ("smoother", "reference", "object")


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True)
class ComparisonRules:
    """How objects are compared (the same rules for every method).

    Attributes
    ----------
    support_threshold : float
        An object's support: amplitude above this fraction of its maximum.
    subpixel : bool
        Register to a fraction of a voxel (``False``: whole voxels).
    allow_twin : bool
        Take the twin of the object when it correlates better.
    shift_side : ``"smoother"``, ``"reference"`` or ``"object"``
        Which of the two the registration shift moves (the other is left as
        it was sampled); ``"smoother"``: the one with the smaller share of
        its power above a quarter of the sampling frequency (a Fourier shift
        rings least on it).
    phase_region : ``"common"``, ``"reference"`` or ``"weighted"``
        Voxels of the phase error: significant in both objects; the
        reference's support alone (the earlier rule); or the reference's
        support weighted by the product of the two amplitudes.
    """

    support_threshold: float = 0.1
    subpixel: bool = True
    allow_twin: bool = True
    shift_side: str = "smoother"
    phase_region: str = "common"

    def __post_init__(self) -> None:
        if not 0.0 <= self.support_threshold < 1.0:
            raise ValueError(f"support_threshold must be in [0, 1), got {self.support_threshold}")
        if self.shift_side not in SHIFT_SIDES:
            raise ValueError(f"unknown shift_side {self.shift_side!r}; choose one of {SHIFT_SIDES}")
        if self.phase_region not in PHASE_REGIONS:
            raise ValueError(f"unknown phase_region {self.phase_region!r}; choose one of {PHASE_REGIONS}")


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_objects` (one pair).

    Attributes
    ----------
    amplitude_error : float
        Mean absolute amplitude difference over the grid, both max 1.
    phase_error : float
        RMS wrapped phase difference (rad) over the phase region, constant
        removed; NaN when the region is empty.
    overlap : float
        Intersection over union of the two supports (0 when both are empty).
    coverage : float
        Share of the reference's support inside the object's.
    twinned : bool
        The object was replaced by its twin.
    twin_margin : float
        ``(twin_peak - peak) / max(twin_peak, peak)`` of the registration:
        how much better (> 0) or worse the twin correlates; near 0 when the
        object is (nearly) its own twin. NaN when the twin was not tried.
    shift : ndarray, voxels per axis
        Shift of the object onto the reference (applied to the side chosen).
    offset : float
        Constant phase removed (rad).
    obj, reference : ndarray, complex128
        The two objects as compared (twinned and shifted as said, offset removed from ``obj``).
    """

    amplitude_error: float
    phase_error: float
    overlap: float
    coverage: float
    twinned: bool
    twin_margin: float
    shift: np.ndarray
    offset: float
    obj: np.ndarray
    reference: np.ndarray


def high_frequency_share(obj) -> float:
    """Share of ``sum |FFT(obj)|**2`` at frequencies above 1/4 cycle per voxel on some axis."""
    f = np.abs(np.fft.fftn(_np(obj))) ** 2
    total = f.sum()
    if not total > 0:
        return 0.0
    high = np.zeros(f.shape, bool)
    for ax, n in enumerate(f.shape):
        shape = [1] * f.ndim
        shape[ax] = n
        high = high | (np.abs(np.fft.fftfreq(n)) > 0.25).reshape(shape)
    return float(f[high].sum() / total)


def _support(obj: np.ndarray, threshold: float) -> np.ndarray:
    a = np.abs(obj)
    peak = a.max()
    return a > threshold * peak if peak > 0 else np.zeros(a.shape, bool)


def compare_objects(obj, reference, *, rules: ComparisonRules = ComparisonRules()) -> Comparison:
    """Align ``obj`` on ``reference`` and compute the errors of :class:`Comparison`.

    Parameters
    ----------
    obj : complex array (or tensor), shape ``grid``
        One reconstruction (any overall scale), on the reference's grid.
    reference : complex array, shape ``grid``
        The truth ``amplitude * exp(1j * phase)``, or the reference method's object.
    rules : ComparisonRules

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        When the shapes differ, an object holds NaN or infinite values, or the
        reference is zero everywhere.
    """
    o = _np(obj).astype(np.complex128)
    r = _np(reference).astype(np.complex128)
    if o.shape != r.shape:
        raise ValueError(f"cannot compare an object of shape {o.shape} with a reference of shape {r.shape}")
    if not (np.all(np.isfinite(o)) and np.all(np.isfinite(r))):
        raise ValueError("object or reference holds NaN or infinite values")
    if not np.any(r):
        raise ValueError("the reference is zero everywhere")
    reg = register(o, r, allow_twin=rules.allow_twin, subpixel=rules.subpixel)
    if reg.twinned:
        o = twin(o)
    if np.any(reg.shift):
        side = rules.shift_side
        if side == "smoother":
            side = "object" if high_frequency_share(o) <= high_frequency_share(r) else "reference"
        if side == "object":
            o = shift_object(o, reg.shift)
        else:
            r = shift_object(r, -reg.shift)
    s_obj = _support(o, rules.support_threshold)
    s_ref = _support(r, rules.support_threshold)
    union = s_obj | s_ref
    both = s_obj & s_ref
    overlap = float(both.sum() / union.sum()) if union.any() else 0.0
    coverage = float(both.sum() / s_ref.sum()) if s_ref.any() else 0.0

    region = s_ref if rules.phase_region in ("reference", "weighted") else both
    offset, phase_err = 0.0, float("nan")
    if region.any():
        prod = o[region] * np.conj(r[region])
        w = np.abs(prod) if rules.phase_region == "weighted" else np.ones(prod.shape)
        if w.sum() > 0:
            d = np.angle(prod)
            offset = float(np.angle(np.sum(w * np.exp(1j * d))))
            d = np.angle(np.exp(1j * (d - offset)))
            phase_err = float(np.sqrt(np.sum(w * d**2) / w.sum()))
    o = o * np.exp(-1j * offset)
    margin = float("nan")
    if not np.isnan(reg.twin_peak):
        top = max(reg.peak, reg.twin_peak)
        margin = (reg.twin_peak - reg.peak) / top if top > 0 else 0.0
    return Comparison(
        amplitude_error=amplitude_error(np.abs(o), np.abs(r)),
        phase_error=phase_err,
        overlap=overlap,
        coverage=coverage,
        twinned=reg.twinned,
        twin_margin=margin,
        shift=reg.shift,
        offset=offset,
        obj=o,
        reference=r,
    )
