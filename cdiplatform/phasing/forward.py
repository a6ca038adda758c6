"""The differentiable forward model of refinement and its losses with a closed-form scale.

Forward model (the platform's far field, :func:`cdiplatform.physics.far_field`):
the object times its support, unitary FFT, magnitude,

    M = |fftn(obj * support, norm="ortho")|

in the *unshifted* FFT layout (object centre and zero frequency at index 0, as
in :mod:`cdiplatform.phasing.engine`): the caller shifts the data once on the
way in and the result once on the way out, so that a step holds no
``fftshift`` copies. In the centred layout the same magnitudes are
``fftshift(M)`` of ``ifftshift(obj)``.

:class:`FarFieldMagnitude` is that map as a ``torch.autograd.Function`` with its
analytic backward: for a real loss ``L(M)``, with torch's convention for
complex gradients (``dL/dRe + i dL/dIm``),

    grad_obj = support * ifftn(grad_M * F / |F|, norm="ortho"),

one inverse FFT (the transform is unitary, so its adjoint is its inverse; the
phase factor ``F / |F|`` is taken as 0 where ``F = 0``). A forward and
backward pass is therefore one FFT pair, where eager autograd through
``torch.fft`` and ``abs`` runs several; and any loss written on ``M`` stays
differentiable.

Losses, per scan (``S`` scans, sums over the measured pixels, weight ``w``):

- ``"amplitude"`` (Gaussian on magnitudes): ``min_s sum w (s M - A)**2 / sum w A**2``,
  with ``s = sum w M A / sum w M**2``: the platform's chi-square
  (:func:`cdiplatform.physics.metrics.chi_square`) of the object ``s * obj``;
- ``"poisson"`` (on intensities ``I = A**2``): the Poisson deviance per
  measured pixel of ``Ic = s M**2``, minimized over ``s`` at
  ``s = sum w I / sum w M**2``: the platform's
  :func:`cdiplatform.physics.metrics.poisson_llk` of ``sqrt(s) * obj``.

Both scales are exact minimizers (the derivative of the loss in ``s`` is zero
there), so the gradient at fixed ``s`` is the gradient of the minimized loss
(the envelope theorem): the scale is computed without autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LOSSES", "FarFieldMagnitude", "LossValue", "amplitude_loss", "far_field_magnitude", "poisson_loss"]

#: the losses :func:`cdiplatform.phasing.refine.refine` knows
LOSSES = ("amplitude", "poisson")

_TINY = 1e-30


class FarFieldMagnitude(torch.autograd.Function):
    """``|fftn(obj * support, norm="ortho")|`` over the last ``ndim`` axes, analytic backward.

    ``apply(obj, support, ndim)``: ``obj`` complex ``(S, *grid)`` (complex64
    or complex128); ``support`` real (0/1) of ``obj``'s shape, not
    differentiated, or ``None`` for an object already zero outside its
    support; ``ndim`` the number of grid axes. Unshifted layout.

    Products of complex by real arrays run on the real views (last axis:
    real, imaginary), which torch computes about twice as fast as a complex
    tensor times a real one (no promotion of the real factor); the modulus
    is ``sqrt(re**2 + im**2)``, several times faster than ``abs`` of a
    complex tensor on CPU.
    """

    @staticmethod
    def forward(ctx, obj: torch.Tensor, support: torch.Tensor | None, ndim: int) -> torch.Tensor:
        dims = tuple(range(-ndim, 0))
        rho = obj if support is None else torch.view_as_complex(torch.view_as_real(obj) * support.unsqueeze(-1))
        field = torch.fft.fftn(rho, dim=dims, norm="ortho")
        parts = torch.view_as_real(field)
        mag = parts[..., 0].square().add_(parts[..., 1].square()).sqrt_()
        ctx.save_for_backward(field, mag, support)
        ctx.ndim = ndim
        return mag

    @staticmethod
    def backward(ctx, grad_mag: torch.Tensor):
        field, mag, support = ctx.saved_tensors
        dims = tuple(range(-ctx.ndim, 0))
        # grad_F = grad_M F / |F| (0 where F = 0, since F is then 0 too)
        ratio = grad_mag / mag.clamp_min(_TINY)
        grad_field = torch.view_as_complex(torch.view_as_real(field) * ratio.unsqueeze(-1))
        grad = torch.fft.ifftn(grad_field, dim=dims, norm="ortho")
        if support is not None:
            torch.view_as_real(grad).mul_(support.unsqueeze(-1))
        return grad, None, None


def far_field_magnitude(obj: torch.Tensor, support: torch.Tensor | None, *, ndim: int) -> torch.Tensor:
    """Far-field magnitude of ``obj * support``, unshifted layout, differentiable in ``obj``.

    Parameters
    ----------
    obj : torch.Tensor, complex, ``(S, *grid)``
    support : torch.Tensor, bool or real, of ``obj``'s shape, or None
        None: ``obj`` is taken as it is (already zero outside its support).
    ndim : int
        Grid dimensions (the last ``ndim`` axes are transformed).

    Returns
    -------
    torch.Tensor, real, the shape of ``obj``.
    """
    if not obj.is_complex():
        raise ValueError(f"far_field_magnitude needs a complex object, not {obj.dtype}")
    if support is not None:
        support = support.to(obj.real.dtype).expand(obj.shape)
    return FarFieldMagnitude.apply(obj, support, ndim)


@dataclass
class LossValue:
    """One evaluation of a loss, per scan.

    Attributes
    ----------
    loss : torch.Tensor, float64, ``(S,)``
        The loss at the closed-form scale (differentiable in the magnitudes).
    scale : torch.Tensor, float64, ``(S,)``, no gradient
        The factor that turns the object into the platform's scale: the
        fitted object is ``scale * obj`` (``sqrt`` of the intensity scale for
        ``"poisson"``).
    chi : torch.Tensor, float64, ``(S,)``
        The chi-square ``sum w (|F(scale obj)| - A)**2 / sum w A**2`` (detached).
    """

    loss: torch.Tensor
    scale: torch.Tensor
    chi: torch.Tensor


def _sum(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Sum over the grid, per scan, float64: lines summed in the input's precision, then their sums in float64
    (the cast of a whole float32 grid to float64 cost more than the rest of the loss)."""
    lines = x.sum(dim=-1)
    return lines.sum(dim=tuple(range(-(ndim - 1), 0)), dtype=torch.float64) if ndim > 1 else lines.double()


def _expand(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * ndim)


def _chi(mag: torch.Tensor, amplitude: torch.Tensor, weight, scale: torch.Tensor, ndim: int) -> torch.Tensor:
    with torch.no_grad():
        diff = (mag * _expand(scale, ndim).to(mag.dtype) - amplitude).square_()
        a2 = amplitude.square()
        if weight is not None:
            diff.mul_(weight)
            a2.mul_(weight)
        return _sum(diff, ndim) / _sum(a2, ndim).clamp_min(_TINY)


def amplitude_loss(
    mag: torch.Tensor, amplitude: torch.Tensor, *, ndim: int, weight: torch.Tensor | None = None
) -> LossValue:
    """Gaussian loss on magnitudes at the best scale: the chi-square of the fitted object.

    Parameters
    ----------
    mag : torch.Tensor, real, ``(S, *grid)``
        Model magnitudes ``M`` (any scale).
    amplitude : torch.Tensor, real, ``(S, *grid)``
        Measured magnitudes ``A = sqrt(I)``.
    ndim : int
    weight : torch.Tensor, real, ``(S, *grid)``, optional
        1 on measured pixels, 0 elsewhere; all pixels by default.

    Returns
    -------
    LossValue
        ``loss = sum w (s M - A)**2 / sum w A**2``, ``s = sum w M A / sum w M**2``.
    """
    with torch.no_grad():
        wm = mag if weight is None else mag * weight
        scale = _sum(wm * amplitude, ndim) / _sum(wm * mag, ndim).clamp_min(_TINY)
        a2 = amplitude.square() if weight is None else amplitude.square() * weight
        total = _sum(a2, ndim).clamp_min(_TINY)
    diff = (mag * _expand(scale, ndim).to(mag.dtype) - amplitude).square()
    if weight is not None:
        diff = diff * weight
    loss = _sum(diff, ndim) / total
    return LossValue(loss=loss, scale=scale, chi=loss.detach().clone())


def poisson_loss(
    mag: torch.Tensor, amplitude: torch.Tensor, *, ndim: int, weight: torch.Tensor | None = None
) -> LossValue:
    """Poisson deviance per measured pixel of ``Ic = s M**2`` against ``I = A**2`` at the best ``s``.

    Same parameters as :func:`amplitude_loss`. ``s = sum w I / sum w M**2`` (the
    maximum-likelihood scale); the deviance is ``Ic - I + I log(I / Ic)`` (``Ic``
    where ``I = 0``), ``Ic`` floored at 1e-30 in the logarithm.
    """
    inten = amplitude.square()
    calc = mag.square()
    with torch.no_grad():
        w_calc = calc if weight is None else calc * weight
        w_inten = inten if weight is None else inten * weight
        s = _sum(w_inten, ndim) / _sum(w_calc, ndim).clamp_min(_TINY)
    ic = calc * _expand(s, ndim).to(calc.dtype)
    positive = inten > 0
    log_term = torch.where(positive, inten * torch.log(inten.clamp_min(_TINY) / ic.clamp_min(_TINY)), 0.0)
    dev = ic - inten + log_term
    if weight is not None:
        dev = dev * weight
        count = _sum(weight, ndim).clamp_min(1.0)
    else:
        count = torch.full_like(s, float(mag[0].numel()))
    loss = _sum(dev, ndim) / count
    scale = s.sqrt()
    return LossValue(loss=loss, scale=scale, chi=_chi(mag.detach(), amplitude, weight, scale, ndim))
