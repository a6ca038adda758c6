"""The far-field convention of the whole platform, written down once.

A complex object ``obj`` sampled on a grid of ``N`` points per axis, with its
centre at index ``N // 2``, diffracts into

    F = fftshift(fftn(ifftshift(obj), norm="ortho"))

whose zero frequency also sits at index ``N // 2`` on every axis. ``norm="ortho"``
makes the transform unitary: ``sum |F|**2 == sum |obj|**2`` (Parseval), so an
intensity ``|F|**2`` counts the same "photons" as the object holds.

The forward transform uses the kernel ``exp(-i q . r)``; a displacement field
``u`` therefore enters the object as the Bragg phase ``phi = -G . u`` (see
:mod:`cdiplatform.physics.bragg`).

Every function transforms the *last* ``ndim`` axes, so that leading axes are
batch axes (``(scan, y, x)`` with ``ndim=2``, ``(scan, z, y, x)`` with
``ndim=3``). Torch tensors stay tensors (on their device); anything else is
handled with NumPy/SciPy.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import scipy.fft

try:  # torch is a hard dependency of the package, but physics stays usable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["centre_index", "diffraction_intensity", "far_field", "from_far_field", "object_intensity"]

ArrayT = TypeVar("ArrayT")


def _axes(ndim: int | None, total: int) -> tuple[int, ...]:
    if ndim is None:
        ndim = total
    if not 1 <= ndim <= total:
        raise ValueError(f"ndim={ndim} does not fit an array of {total} dimensions")
    return tuple(range(total - ndim, total))


def _is_tensor(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _centred(x, ndim: int | None, *, inverse: bool):
    """``fftshift(T(ifftshift(x)))`` over the last ``ndim`` axes, T the unitary (inverse) FFT."""
    if _is_tensor(x):
        axes = _axes(ndim, x.ndim)
        transform = torch.fft.ifftn if inverse else torch.fft.fftn
        return torch.fft.fftshift(transform(torch.fft.ifftshift(x, dim=axes), dim=axes, norm="ortho"), dim=axes)
    x = np.asarray(x)
    axes = _axes(ndim, x.ndim)
    transform = scipy.fft.ifftn if inverse else scipy.fft.fftn
    return np.fft.fftshift(transform(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho", workers=-1),
                           axes=axes)


def far_field(obj: ArrayT, *, ndim: int | None = None) -> ArrayT:
    """Centred, unitary far field of a complex object.

    Parameters
    ----------
    obj : ndarray or torch.Tensor, shape ``(..., N1, ..., Nndim)``
        Object (complex or real), centre at ``N // 2`` on each of the last
        ``ndim`` axes.
    ndim : int, optional
        Number of trailing axes to transform; all axes by default.

    Returns
    -------
    Complex array of the same shape: the far field, zero frequency at ``N // 2``.
    """
    return _centred(obj, ndim, inverse=False)


def from_far_field(field: ArrayT, *, ndim: int | None = None) -> ArrayT:
    """Inverse of :func:`far_field`: the object whose centred far field is ``field``."""
    return _centred(field, ndim, inverse=True)


def diffraction_intensity(obj: ArrayT, *, ndim: int | None = None) -> ArrayT:
    """``|far_field(obj)|**2``: the photon-like intensity a detector records (real).

    A circular shift of the object only multiplies its transform by a phase
    factor, so the input ``ifftshift`` of :func:`far_field` is skipped here: the
    result is the same to the last bit, one copy cheaper.
    """
    if _is_tensor(obj):
        axes = _axes(ndim, obj.ndim)
        field = torch.fft.fftn(obj, dim=axes, norm="ortho")
        return torch.fft.fftshift(field.real**2 + field.imag**2, dim=axes)
    obj = np.asarray(obj)
    axes = _axes(ndim, obj.ndim)
    field = scipy.fft.fftn(obj, axes=axes, norm="ortho", workers=-1)
    return np.fft.fftshift(field.real**2 + field.imag**2, axes=axes)


def object_intensity(amplitude: np.ndarray, phase: np.ndarray, *, ndim: int | None = None) -> np.ndarray:
    """Far-field intensity ``|far_field(amplitude * exp(i phase))|**2`` of objects, in float32.

    Parameters
    ----------
    amplitude, phase : ndarray, shape ``(B, N1, ..., Nndim)``
        Object modulus and phase (radians), centre at ``N // 2``.
    ndim : int, optional
        Number of trailing (grid) axes; by default every axis but the first
        (the ``scan`` axis): 2 for ``(scan, y, x)``, 3 for ``(scan, z, y, x)``.

    Returns
    -------
    ndarray of float32, same shape
        Photon-like intensity, zero frequency at ``N // 2``; with the unitary
        FFT its sum equals ``sum(amplitude**2)`` (Parseval). The object is
        built in complex64 from the float32 inputs, so stored float32 truth
        reproduces its stored intensity exactly.
    """
    amplitude = np.asarray(amplitude, dtype=np.float32)
    phase = np.asarray(phase, dtype=np.float32)
    if amplitude.shape != phase.shape:
        raise ValueError(f"amplitude {amplitude.shape} and phase {phase.shape} differ in shape")
    ndim = amplitude.ndim - 1 if ndim is None else ndim
    parts = np.empty(amplitude.shape + (2,), dtype=np.float32)
    np.multiply(amplitude, np.cos(phase), out=parts[..., 0])
    np.multiply(amplitude, np.sin(phase), out=parts[..., 1])
    obj = parts.view(np.complex64)[..., 0]
    return diffraction_intensity(obj, ndim=ndim).astype(np.float32, copy=False)


def centre_index(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Index of the object centre and of the zero frequency: ``N // 2`` per axis."""
    return tuple(n // 2 for n in shape)
