"""Alignment of two complex objects: shift, twin, phase offset and phase ramp.

Two reconstructions from the same diffraction data (or a reconstruction and
the truth) can differ by the "trivial" ambiguities of phase retrieval: a
translation, the twin ``conj(rho(-r))`` (same far-field magnitude), a constant
phase, and a linear phase ramp (a shift of the far field). The functions here
remove them, working on the last ``ndim`` axes of NumPy arrays (torch tensors
are converted to NumPy), one pair at a time; :func:`align` does all of it.

Coordinates follow :mod:`cdiplatform.physics.fft`: the object centre is at
``N // 2``; the twin is the point inversion about that centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = [
    "Alignment",
    "Registration",
    "align",
    "find_shift",
    "register",
    "remove_phase_offset",
    "remove_phase_ramp",
    "shift_object",
    "twin",
]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _axes(ndim: int | None, arr: np.ndarray) -> tuple[int, ...]:
    ndim = arr.ndim if ndim is None else ndim
    if not 1 <= ndim <= arr.ndim:
        raise ValueError(f"ndim={ndim} does not fit an array of shape {arr.shape}")
    return tuple(range(arr.ndim - ndim, arr.ndim))


def _subpixel_peak(values: np.ndarray) -> np.ndarray:
    """Position of the maximum of a periodic real array, refined by a parabola per axis.

    Returned as signed offsets in ``[-N/2, N/2)`` (FFT layout, 0 = no offset).
    """
    idx = np.unravel_index(int(np.argmax(values)), values.shape)
    out = np.empty(values.ndim)
    for ax, (i, n) in enumerate(zip(idx, values.shape)):
        lo = list(idx)
        hi = list(idx)
        lo[ax] = (i - 1) % n
        hi[ax] = (i + 1) % n
        ym, y0, yp = values[tuple(lo)], values[idx], values[tuple(hi)]
        den = ym - 2.0 * y0 + yp
        frac = 0.5 * (ym - yp) / den if den < 0 else 0.0
        pos = i + float(np.clip(frac, -0.5, 0.5))
        out[ax] = (pos + n / 2) % n - n / 2
    return out


def _refine_peak(cross_power: np.ndarray, start: np.ndarray, *, upsample: int = 20) -> np.ndarray:
    """The peak of ``|ifftn(cross_power)|`` to ``1 / upsample`` pixel, searched within a pixel of ``start``.

    The correlation is evaluated at the fine positions by a matrix DFT per
    axis (an upsampled cross-correlation, as Guizar-Sicairos et al. 2008),
    then the best fine sample is refined by a parabola; the parabola on the
    whole-pixel correlation alone is biased by up to a fifth of a pixel near
    half-pixel shifts.
    """
    coarse = np.round(start)
    offsets = np.arange(-upsample, upsample + 1) / upsample
    out = cross_power
    for ax, n in enumerate(cross_power.shape):
        k = np.fft.fftfreq(n) * n
        kernel = np.exp(2j * np.pi * np.outer(coarse[ax] + offsets, k) / n)  # (fine, n)
        out = np.moveaxis(np.tensordot(kernel, np.moveaxis(out, ax, 0), axes=(1, 0)), 0, ax)
    fine = np.abs(out)
    idx = np.unravel_index(int(np.argmax(fine)), fine.shape)
    pos = np.empty(len(idx))
    for ax, i in enumerate(idx):
        frac = 0.0
        if 0 < i < fine.shape[ax] - 1:
            lo, hi = list(idx), list(idx)
            lo[ax], hi[ax] = i - 1, i + 1
            ym, y0, yp = fine[tuple(lo)], fine[idx], fine[tuple(hi)]
            den = ym - 2.0 * y0 + yp
            frac = float(np.clip(0.5 * (ym - yp) / den, -0.5, 0.5)) if den < 0 else 0.0
        pos[ax] = coarse[ax] + (i - upsample + frac) / upsample
    n = np.asarray(cross_power.shape, dtype=float)
    return (pos + n / 2) % n - n / 2


def _freqs(shape: tuple[int, ...]) -> list[np.ndarray]:
    grids = []
    for ax, n in enumerate(shape):
        f = np.fft.fftfreq(n)
        s = [1] * len(shape)
        s[ax] = n
        grids.append(f.reshape(s))
    return grids


def find_shift(reference, moving, *, ndim: int | None = None) -> np.ndarray:
    """Sub-pixel shift ``s`` such that ``shift_object(moving, s)`` best matches ``reference``.

    Found at the peak of the complex cross-correlation (computed by FFT,
    periodic), refined by an upsampled correlation (:func:`register`
    without the twin). Both arrays: shape ``grid`` (no batch axes), complex
    or real.

    Returns
    -------
    ndarray of float, shape ``(ndim,)``, in pixels.
    """
    ref, mov = _np(reference), _np(moving)
    if ref.shape != mov.shape:
        raise ValueError(f"cannot align arrays of shapes {mov.shape} and {ref.shape}")
    axes = _axes(ndim, ref)
    if len(axes) != ref.ndim:
        raise ValueError("find_shift aligns one pair at a time: give arrays without batch axes")
    return register(mov, ref, allow_twin=False).shift


def shift_object(obj, shift, *, ndim: int | None = None) -> np.ndarray:
    """Translate ``obj`` by ``shift`` pixels (sub-pixel, Fourier phase ramp, periodic)."""
    arr = _np(obj)
    axes = _axes(ndim, arr)
    shift = np.asarray(shift, dtype=float)
    if shift.shape != (len(axes),):
        raise ValueError(f"shift {shift.tolist()} does not have one value per axis {len(axes)}")
    if not np.any(shift):
        return arr.copy()
    grid = tuple(arr.shape[a] for a in axes)
    phase = sum(f * s for f, s in zip(_freqs(grid), shift))
    ramp = np.exp(-2j * np.pi * phase)
    out = scipy.fft.ifftn(scipy.fft.fftn(arr, axes=axes) * ramp, axes=axes)
    if np.isrealobj(arr):
        out = out.real
    return out.astype(np.result_type(arr.dtype, np.complex64) if np.iscomplexobj(arr) else arr.dtype)


def twin(obj, *, ndim: int | None = None) -> np.ndarray:
    """The twin image ``conj(rho(c - r))`` with inversion about the centre ``c = N // 2``."""
    arr = _np(obj)
    axes = _axes(ndim, arr)
    out = np.flip(arr, axis=axes)
    # flip maps i -> N-1-i; the inversion about N//2 is i -> 2*(N//2) - i
    shifts = [1 if arr.shape[a] % 2 == 0 else 0 for a in axes]
    out = np.roll(out, shifts, axis=axes)
    return np.conj(out)


def remove_phase_offset(obj, reference=None, *, weight=None) -> np.ndarray:
    """Multiply ``obj`` by the constant phase that best matches ``reference``.

    Without a reference the weighted mean phase (weights ``|obj|**2`` times
    ``weight``) is set to zero.
    """
    arr = _np(obj)
    ref = np.abs(arr) if reference is None else _np(reference)
    prod = arr * np.conj(ref)
    if weight is not None:
        prod = prod * _np(weight)
    s = prod.sum()
    if s == 0:
        return arr.copy()
    return (arr * np.exp(-1j * np.angle(s))).astype(arr.dtype)


def remove_phase_ramp(obj, reference=None, *, ndim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Remove a linear phase ramp from ``obj`` (relative to ``reference`` when given).

    The ramp's frequency is the sub-pixel peak of ``|FFT(obj * conj(ref))|``
    (``ref = |obj|`` without a reference: then the ramp is the offset of the
    object's far-field maximum from the centre).

    Returns
    -------
    (ndarray, ndarray)
        The object without the ramp, and the ramp's frequency per axis in
        cycles per pixel.
    """
    arr = _np(obj)
    axes = _axes(ndim, arr)
    if len(axes) != arr.ndim:
        raise ValueError("remove_phase_ramp works on one object at a time (no batch axes)")
    ref = np.abs(arr) if reference is None else _np(reference)
    spec = np.abs(scipy.fft.fftn(arr * np.conj(ref)))
    k = _subpixel_peak(spec) / np.asarray(arr.shape, dtype=float)
    centre = [n // 2 for n in arr.shape]
    phase = np.zeros(arr.shape)
    for ax, n in enumerate(arr.shape):
        s = [1] * arr.ndim
        s[ax] = n
        phase = phase + k[ax] * (np.arange(n) - centre[ax]).reshape(s)
    return (arr * np.exp(-2j * np.pi * phase)).astype(arr.dtype), k


@dataclass(frozen=True)
class Registration:
    """Result of :func:`register`: how a moving object lies on a reference.

    Attributes
    ----------
    twinned : bool
        The twin of the moving object correlates better than the object.
    shift : ndarray, pixels per axis
        Translation that puts the (twinned, when ``twinned``) moving object
        on the reference: ``shift_object(moving, shift)``.
    peak, twin_peak : float
        Peak of ``|cross-correlation|`` with the reference of the object and
        of its twin (``twin_peak`` is NaN when the twin was not tried).
    """

    twinned: bool
    shift: np.ndarray
    peak: float
    twin_peak: float


def register(moving, reference, *, allow_twin: bool = True, subpixel: bool = True) -> Registration:
    """Twin and shift of ``moving`` on ``reference`` at the peak of their cross-correlation (one pair).

    Parameters
    ----------
    moving, reference : array, shape ``grid`` (no batch axes)
    allow_twin : bool
        Also try the twin of ``moving`` (:func:`twin`) and keep whichever
        correlates better.
    subpixel : bool
        Refine the shift to a twentieth of a pixel by an upsampled
        correlation (:func:`_refine_peak`), then a parabola; ``False``: whole
        pixels (the whole-pixel peak, a parabola's estimate rounded).
    """
    mov, ref = _np(moving), _np(reference)
    if mov.shape != ref.shape:
        raise ValueError(f"cannot align an object of shape {mov.shape} on one of shape {ref.shape}")
    fref = scipy.fft.fftn(ref)

    def cross_power(x):
        return fref * np.conj(scipy.fft.fftn(x))

    power = cross_power(mov)
    c = np.abs(scipy.fft.ifftn(power))
    peak, twin_peak, twinned = float(c.max()), float("nan"), False
    if allow_twin:
        tpower = cross_power(twin(mov))
        tc = np.abs(scipy.fft.ifftn(tpower))
        twin_peak = float(tc.max())
        if twin_peak > peak:
            c, power, twinned = tc, tpower, True
    s = _subpixel_peak(c)
    s = _refine_peak(power, s) if subpixel else np.round(s)
    return Registration(twinned=twinned, shift=s, peak=peak, twin_peak=twin_peak)


@dataclass
class Alignment:
    """Result of :func:`align`.

    Attributes
    ----------
    obj : ndarray
        The moving object after the operations below, in this order: twin,
        shift, ramp, offset.
    twinned : bool
    shift : ndarray, pixels per axis
    ramp : ndarray, cycles per pixel per axis (zeros when not removed)
    offset : float, radians removed
    """

    obj: np.ndarray
    twinned: bool
    shift: np.ndarray
    ramp: np.ndarray
    offset: float


def align(
    moving,
    reference,
    *,
    ndim: int | None = None,
    allow_twin: bool = True,
    shift: bool = True,
    ramp: bool = False,
    offset: bool = True,
    weight=None,
    subpixel: bool = True,
) -> Alignment:
    """Align a complex object on a reference (one pair, no batch axes).

    Parameters
    ----------
    moving, reference : array, shape ``grid``
    ndim : int, optional
        Must equal the number of axes when given.
    allow_twin : bool
        Test the twin of ``moving`` too and keep whichever correlates better
        (peak of the complex cross-correlation).
    shift, ramp, offset : bool
        Which ambiguities to remove.
    weight : array, optional
        Weights of the phase-offset fit (for example the true support).
    subpixel : bool
        Refine the shift below a pixel (a Fourier shift, which rings at sharp
        edges); ``False``: whole pixels only (an exact roll).
    """
    mov, ref = _np(moving), _np(reference)
    if mov.shape != ref.shape:
        raise ValueError(f"cannot align an object of shape {mov.shape} on one of shape {ref.shape}")
    _axes(ndim, mov)
    reg = register(mov, ref, allow_twin=allow_twin, subpixel=subpixel)
    twinned = reg.twinned
    if twinned:
        mov = twin(mov)
    s = reg.shift if shift else np.zeros(mov.ndim)
    if shift:
        mov = shift_object(mov, s)
    k = np.zeros(mov.ndim)
    if ramp:
        mov, k = remove_phase_ramp(mov, ref)
    off = 0.0
    if offset:
        prod = mov * np.conj(ref)
        if weight is not None:
            prod = prod * _np(weight)
        total = prod.sum()
        off = float(np.angle(total)) if total != 0 else 0.0
        mov = (mov * np.exp(-1j * off)).astype(mov.dtype)
    return Alignment(obj=mov, twinned=twinned, shift=s, ramp=k, offset=off)
