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

The twin ambiguity: an object ``rho(r)`` and its twin ``conj(rho(-r))``
diffract identically, so the input cannot tell which of the two a target is.
With a fixed target the loss-optimal prediction is a blur of both.
``loss_terms(..., twin_invariant=True)`` takes the supervised terms of each
scan against whichever of the pair the prediction is closer to (by the sum of
its amplitude and phase terms, so that the shape and the phase it is compared
with belong to one object); the physics term needs nothing, it is
twin-invariant by construction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cdiplatform.nn.augment import apply_symmetry, inversion
from cdiplatform.nn.config import PHASE_WEIGHTINGS
from cdiplatform.physics.fft import far_field

__all__ = [
    "loss_terms",
    "normalized_magnitude",
    "physics_loss",
    "predicted_magnitude",
    "supervised_loss",
    "twin_targets",
]

_EPS = 1e-12

#: ``phase_weighting="support"``: the support is where the target amplitude exceeds this
#: fraction of its maximum (the threshold of :func:`cdiplatform.physics.metrics.compare_with_truth`).
SUPPORT_FRACTION = 0.1


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


def _per_pixel(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy(pred, target, reduction="none")
    if kind == "mae":
        return (pred - target).abs()
    raise ValueError(f"unknown supervised loss {kind!r}; known: 'bce', 'mae'")


def _scan_sums(
    pred: torch.Tensor, target: torch.Tensor, *, kind: str, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scan (first axis): the (weighted) sum of the per-pixel loss and the sum of the weights."""
    per_pixel = _per_pixel(pred, target, kind).flatten(start_dim=1)
    if weight is None:  # every pixel weighs 1: the weight sum is the pixel count
        return per_pixel.sum(dim=1), per_pixel.new_full((per_pixel.shape[0],), per_pixel.shape[1])
    weight = weight.flatten(start_dim=1)
    return (per_pixel * weight).sum(dim=1), weight.sum(dim=1)


def _phase_weight(amplitude_target: torch.Tensor, weighting: str, *, ndim: int) -> torch.Tensor | None:
    """Per-voxel weights of the phase term (``None``: uniform)."""
    if weighting == "uniform":
        return None
    if weighting == "amplitude":
        return amplitude_target
    if weighting == "support":
        support = normalized_magnitude(amplitude_target, ndim=ndim) > SUPPORT_FRACTION
        return support.to(amplitude_target.dtype)
    raise ValueError(f"unknown phase weighting {weighting!r}; known: {PHASE_WEIGHTINGS}")


def supervised_loss(
    pred: torch.Tensor, target: torch.Tensor, *, kind: str, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel loss, ``"bce"`` (binary cross-entropy) or ``"mae"``: the mean over
    everything, or with ``weight`` (same shape) the weighted mean ``sum(w l) / sum(w)``."""
    num, den = _scan_sums(pred.reshape(1, -1), target.reshape(1, -1), kind=kind,
                          weight=None if weight is None else weight.reshape(1, -1))
    return num.sum() / den.sum().clamp_min(_EPS)


def twin_targets(
    amplitude: torch.Tensor,
    p: torch.Tensor,
    *,
    ndim: int,
    phase_scale: float = 2 * math.pi,
    phase_offset: float = -math.pi,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The twin ``conj(rho(-r))`` of targets ``(amplitude, p)``: reflected through the grid centre
    ``N // 2``, phase negated (``phi -> -phi``, in the unit channel ``p -> -p - 2 offset / scale``,
    wrapped into ``[0, 1)``). Needs a phase mapping of one full turn (``phase_scale = 2 pi``)."""
    if not math.isclose(phase_scale, 2 * math.pi):
        raise ValueError(f"the twin of a phase channel needs phase_scale = 2 pi (a full turn), got {phase_scale}")
    k = inversion(ndim)
    p_twin = torch.remainder(-apply_symmetry(p, k, ndim=ndim) - 2 * phase_offset / phase_scale, 1.0)
    return apply_symmetry(amplitude, k, ndim=ndim), p_twin


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
    twin_invariant: bool = False,
) -> dict[str, torch.Tensor]:
    """The requested loss terms (``amplitude``, ``phase``, ``physics``) for one batch, as scalar tensors.

    ``phase_weighting="amplitude"`` weighs the phase term per voxel by the
    target amplitude: the phase of empty space is undefined, and a uniform
    mean over a grid that is mostly empty is minimized by a constant phase.
    ``"support"`` weighs every voxel of the target's support (amplitude above
    :data:`SUPPORT_FRACTION` of the scan's maximum) alike and the rest 0, as
    the phase error of an evaluation is taken.
    ``twin_invariant=True`` compares each scan with its target or the
    target's twin (:func:`twin_targets`), whichever gives the smaller sum of
    the amplitude and phase terms; the terms are then those of that choice.
    """
    out: dict[str, torch.Tensor] = {}
    candidates = [(amplitude_target, p_target)]
    if twin_invariant:
        candidates.append(
            twin_targets(amplitude_target, p_target, ndim=ndim, phase_scale=phase_scale, phase_offset=phase_offset)
        )
    sums = []  # per candidate: {term: (per-scan loss sums, per-scan weight sums)}
    for amp_t, p_t in candidates:
        weight = _phase_weight(amp_t, phase_weighting, ndim=ndim)
        sums.append({
            "amplitude": _scan_sums(amplitude, amp_t, kind=kind, weight=None),
            "phase": _scan_sums(p, p_t, kind=kind, weight=weight),
        })
    chosen = sums[0]
    if len(sums) == 2:
        score = [sum(num / den.clamp_min(_EPS) for num, den in c.values()) for c in sums]
        twin = (score[1] < score[0]).detach()
        chosen = {
            term: tuple(torch.where(twin, b, a) for a, b in zip(sums[0][term], sums[1][term], strict=True))
            for term in sums[0]
        }
    for term in ("amplitude", "phase"):
        if term in terms:
            num, den = chosen[term]
            out[term] = num.sum() / den.sum().clamp_min(_EPS)
    if "physics" in terms:
        out["physics"] = physics_loss(
            inputs, amplitude, p, ndim=ndim, phase_scale=phase_scale, phase_offset=phase_offset
        )
    return out
