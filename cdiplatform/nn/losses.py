"""Losses: supervised per-pixel terms and the physics-aware far-field term.

The physics-aware term (Chan et al. 2021) compares the measured magnitude
with the magnitude of the far field of the predicted object
``amplitude * exp(i phi)``, ``phi = phase_scale * p + phase_offset``, through
:func:`cdiplatform.physics.fft.far_field`. Normalization: **both** magnitudes
are divided by their own maximum over the grid, per scan (the input already
is, by :func:`cdiplatform.nn.make_inputs`; dividing again changes nothing).
The overall scale of the object is thereby dropped, so the term is zero for a
prediction equal to the targets (whose far field is proportional to the
input) and positive for any prediction whose diffraction differs in shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cdiplatform.physics.fft import far_field

__all__ = ["loss_terms", "normalized_magnitude", "physics_loss", "predicted_magnitude", "supervised_loss"]

_EPS = 1e-12


def normalized_magnitude(magnitude: torch.Tensor, *, ndim: int) -> torch.Tensor:
    """``magnitude / max(magnitude)`` over the last ``ndim`` axes, per scan (all-zero scans stay zero)."""
    peak = magnitude.flatten(start_dim=magnitude.ndim - ndim).amax(dim=-1)
    peak = peak.reshape(*peak.shape, *([1] * ndim))
    return magnitude / peak.clamp_min(_EPS)


def predicted_magnitude(
    amplitude: torch.Tensor,
    p: torch.Tensor,
    *,
    ndim: int,
    phase_scale: float = 2 * math.pi,
    phase_offset: float = -math.pi,
) -> torch.Tensor:
    """Normalized far-field magnitude of ``amplitude * exp(i (phase_scale * p + phase_offset))``.

    Shapes ``(..., *grid)``; the FFT runs over the last ``ndim`` axes.
    """
    phi = p * phase_scale + phase_offset
    obj = torch.polar(amplitude.float(), phi.float())
    field = far_field(obj, ndim=ndim)
    return normalized_magnitude(field.abs(), ndim=ndim)


def physics_loss(
    inputs: torch.Tensor,
    amplitude: torch.Tensor,
    p: torch.Tensor,
    *,
    ndim: int,
    phase_scale: float = 2 * math.pi,
    phase_offset: float = -math.pi,
) -> torch.Tensor:
    """Mean absolute difference between the normalized input magnitude and that of the prediction's far field.

    Parameters
    ----------
    inputs : Tensor, shape ``(B, [1,] *grid)``
        Measured magnitudes (``sqrt`` of intensity), any scale.
    amplitude, p : Tensor, same shape
        Predicted amplitude and unit phase channel.

    Returns
    -------
    Scalar tensor, >= 0; zero when the prediction diffracts like the input.
    """
    target = normalized_magnitude(inputs, ndim=ndim)
    pred = predicted_magnitude(amplitude, p, ndim=ndim, phase_scale=phase_scale, phase_offset=phase_offset)
    return (pred - target).abs().mean()


def supervised_loss(
    pred: torch.Tensor, target: torch.Tensor, *, kind: str, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel loss, ``"bce"`` (binary cross-entropy) or ``"mae"``: the mean over
    everything, or with ``weight`` (same shape) the weighted mean ``sum(w l) / sum(w)``."""
    if kind == "bce":
        per_pixel = F.binary_cross_entropy(pred, target, reduction="none")
    elif kind == "mae":
        per_pixel = (pred - target).abs()
    else:
        raise ValueError(f"unknown supervised loss {kind!r}; known: 'bce', 'mae'")
    if weight is None:
        return per_pixel.mean()
    return (per_pixel * weight).sum() / weight.sum().clamp_min(_EPS)


def loss_terms(
    inputs: torch.Tensor,
    amplitude: torch.Tensor,
    p: torch.Tensor,
    amplitude_target: torch.Tensor,
    p_target: torch.Tensor,
    *,
    ndim: int,
    kind: str,
    terms: tuple[str, ...] = ("amplitude", "phase", "physics"),
    phase_scale: float = 2 * math.pi,
    phase_offset: float = -math.pi,
    phase_weighting: str = "uniform",
) -> dict[str, torch.Tensor]:
    """The requested loss terms (``amplitude``, ``phase``, ``physics``) for one batch, as scalar tensors.

    ``phase_weighting="amplitude"`` weighs the phase term per voxel by the
    target amplitude: the phase of empty space is undefined, and a uniform
    mean over a grid that is mostly empty is minimized by a constant phase.
    """
    out: dict[str, torch.Tensor] = {}
    if "amplitude" in terms:
        out["amplitude"] = supervised_loss(amplitude, amplitude_target, kind=kind)
    if "phase" in terms:
        weight = amplitude_target if phase_weighting == "amplitude" else None
        out["phase"] = supervised_loss(p, p_target, kind=kind, weight=weight)
    if "physics" in terms:
        out["physics"] = physics_loss(
            inputs, amplitude, p, ndim=ndim, phase_scale=phase_scale, phase_offset=phase_offset
        )
    return out
