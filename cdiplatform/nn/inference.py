"""Batched inference, and the checks that keep a model away from data it was not trained for."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cdiplatform.nn.augment import apply_symmetry, inversion
from cdiplatform.nn.config import ModelConfig
from cdiplatform.nn.data import estimate_oversampling, unit_to_phase
from cdiplatform.nn.networks import CDINetwork, build_model
from cdiplatform.nn.weights import load_arrays

__all__ = ["average_objects", "load_model", "predict", "screen_scans"]


def load_model(
    weights: Mapping[str, np.ndarray],
    config: ModelConfig | Mapping[str, Any],
    *,
    expected_hash: str | None = None,
    device: str | torch.device | None = None,
) -> CDINetwork:
    """Build a network from its stored config and load its weights (checked), in eval mode."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(dict(config))
    model = build_model(config, seed=0)
    load_arrays(model, weights, config, expected_hash=expected_hash)
    if device is not None:
        model.to(device)
    return model.eval()


def screen_scans(
    config: ModelConfig,
    intensity: np.ndarray,
    *,
    oversampling: np.ndarray | None = None,
) -> dict[int, str]:
    """Scans a model must not be run on, with the reason.

    Parameters
    ----------
    config : ModelConfig
        The model's config (grid, oversampling range and tolerance).
    intensity : ndarray, shape ``(scan, *grid)``
    oversampling : ndarray, shape ``(scan,)``, optional
        Known linear oversampling per scan; estimated from the data
        (:func:`cdiplatform.nn.estimate_oversampling`) when not given.

    Returns
    -------
    dict of int to str
        Position within ``intensity`` -> reason, for every refused scan: grid
        other than the model's (all scans), no positive finite intensity,
        oversampling outside the training range widened by the tolerance.
    """
    intensity = np.asarray(intensity)
    n = intensity.shape[0] if intensity.ndim else 0
    grid = tuple(intensity.shape[1:])
    if grid != config.grid:
        reason = f"grid {grid} differs from the model's {config.grid} ({config.arch})"
        return {i: reason for i in range(n)}
    axes = tuple(range(1, intensity.ndim))
    finite = np.isfinite(intensity).all(axis=axes)
    signal = (np.where(np.isfinite(intensity), intensity, 0) > 0).any(axis=axes)
    out: dict[int, str] = {}
    for i in np.flatnonzero(~finite):
        out[int(i)] = "intensity has non-finite values"
    for i in np.flatnonzero(finite & ~signal):
        out[int(i)] = "intensity has no positive value"
    if config.oversampling is not None:
        lo, hi = config.oversampling
        tol = config.oversampling_tolerance
        ok = np.flatnonzero(finite & signal)
        if oversampling is None:
            sigma = np.full(n, np.nan)
            if len(ok):
                sigma[ok] = estimate_oversampling(intensity[ok], ndim=config.ndim)
        else:
            sigma = np.asarray(oversampling, dtype=np.float64).reshape(n)
        for i in ok:
            s = sigma[i]
            if not np.isfinite(s):
                out[int(i)] = "oversampling could not be estimated (no autocorrelation support)"
            elif not (lo / tol <= s <= hi * tol):
                out[int(i)] = (
                    f"oversampling {s:.2f} outside the model's training range "
                    f"[{lo:.2f}, {hi:.2f}] (tolerance x{tol:g})"
                )
    return dict(sorted(out.items()))


def predict(
    model: CDINetwork,
    inputs: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    channels_last: bool | None = None,
    average_permutations: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and phase of a batch of scans.

    Parameters
    ----------
    model : CDINetwork
        Trained network (its training/eval mode is restored afterwards).
    inputs : ndarray or Tensor, shape ``(scan, *grid)``
        Network inputs (:func:`cdiplatform.nn.make_inputs`: ``sqrt`` of the
        intensity, maximum 1 per scan). Screen scans first with :func:`screen_scans`.
    batch_size : int
        Scans per forward pass.
    device : str or torch.device, optional
        Default: the model's device.
    channels_last : bool, optional
        Run 3D convolutions in ``channels_last_3d`` memory format (faster on
        CPU with oneDNN); default on for 3D models on CPU.
    average_permutations : bool
        Predict every scan once per order of its axes (``ndim!`` passes: 6 in
        3D), undo each transpose and average (see :func:`average_objects`).
        Transposing a scan transposes the object, so each pass is an estimate
        of the same object from an input the network finds as plausible as
        the original when its training data are symmetric under transposes:
        the 2D objects, and the gold crystals, whose phase is ``G . u`` with
        ``G`` along the grid's (1, 1, 1), which every transpose keeps.

    Returns
    -------
    amplitude : ndarray, float32, ``(scan, *grid)``
        Normalized amplitude in ``[0, 1]``.
    phase : ndarray, float32, ``(scan, *grid)``
        Radians, ``phase_scale * p + phase_offset`` (``[-pi, pi)`` by default).

    Raises
    ------
    ValueError
        If the grid of ``inputs`` is not the model's.
    """
    config = model.config
    if tuple(inputs.shape[1:]) != config.grid:
        raise ValueError(
            f"inputs have grid {tuple(inputs.shape[1:])}, the model ({config.arch}) takes {config.grid}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    run = functools.partial(_forward, model, batch_size=batch_size, device=device, channels_last=channels_last)
    if not average_permutations:
        return run(inputs)
    orders = [(0, *order) for order in itertools.permutations(range(1, config.ndim + 1))]
    amplitude = np.empty((inputs.shape[0], *config.grid), dtype=np.float32)
    phase = np.empty_like(amplitude)
    for start in range(0, inputs.shape[0], batch_size):
        x = torch.as_tensor(inputs[start : start + batch_size])
        objects = []
        for axes in orders:
            amp, p = run(x.permute(*axes).contiguous())
            back = tuple(np.argsort(axes))
            objects.append(amp.transpose(back) * np.exp(1j * p.transpose(back)))
        stop = start + x.shape[0]
        amplitude[start:stop], phase[start:stop] = average_objects(np.stack(objects, axis=1), ndim=config.ndim)
    return amplitude, phase


def average_objects(objects: np.ndarray, *, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Average several predictions of each scan's object into one.

    Each prediction is first matched to the scan's first one: replaced by its
    twin ``conj(rho(-r))`` (reflected through the grid centre ``N // 2``) when
    that is the closer, then given the constant phase that best matches it.
    The amplitude is the mean of the amplitudes, the phase that of the mean
    complex object (so that a voxel's phase counts by its amplitude).

    Parameters
    ----------
    objects : complex ndarray, shape ``(scan, prediction, *grid)``
    ndim : int
        Spatial dimensions.

    Returns
    -------
    amplitude, phase : float32 ndarrays, shape ``(scan, *grid)``; phase in ``[-pi, pi]`` radians.
    """
    obj = torch.as_tensor(objects)
    if obj.ndim != ndim + 2:
        raise ValueError(f"objects of shape {tuple(obj.shape)} are not (scan, prediction, *grid) with {ndim} grid axes")
    grid_axes = tuple(range(2, obj.ndim))
    first = obj[:, :1]
    twins = apply_symmetry(obj, inversion(ndim), ndim=ndim).conj()
    overlap = (first.conj() * obj).sum(dim=grid_axes)
    overlap_twin = (first.conj() * twins).sum(dim=grid_axes)
    use_twin = overlap_twin.abs() > overlap.abs()
    obj = torch.where(use_twin.reshape(*use_twin.shape, *(1,) * ndim), twins, obj)
    overlap = torch.where(use_twin, overlap_twin, overlap)
    obj = obj * torch.exp(-1j * overlap.angle()).reshape(*overlap.shape, *(1,) * ndim)
    amplitude = obj.abs().mean(dim=1)
    phase = obj.mean(dim=1).angle()
    return amplitude.numpy().astype(np.float32), phase.numpy().astype(np.float32)


def _forward(
    model: CDINetwork,
    inputs: np.ndarray | torch.Tensor,
    *,
    batch_size: int,
    device: str | torch.device | None,
    channels_last: bool | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pass of the network over ``inputs`` in batches (see :func:`predict`)."""
    config = model.config
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if channels_last is None:
        channels_last = config.ndim == 3 and device.type == "cpu"
    fmt = torch.channels_last_3d if config.ndim == 3 else torch.channels_last
    was_training = model.training
    model.eval().to(device)
    if channels_last:
        model.to(memory_format=fmt)
    n = inputs.shape[0]
    amplitude = np.empty((n, *config.grid), dtype=np.float32)
    phase = np.empty((n, *config.grid), dtype=np.float32)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                x = torch.as_tensor(
                    np.asarray(inputs[start : start + batch_size])
                    if not torch.is_tensor(inputs)
                    else inputs[start : start + batch_size]
                )
                x = x.to(device=device, dtype=torch.float32).unsqueeze(1)
                if channels_last:
                    x = x.contiguous(memory_format=fmt)
                amp, p = model(x)
                stop = start + x.shape[0]
                amplitude[start:stop] = amp[:, 0].float().cpu().numpy()
                phase[start:stop] = (
                    unit_to_phase(p[:, 0].float(), scale=config.phase_scale, offset=config.phase_offset)
                    .cpu()
                    .numpy()
                )
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return amplitude, phase
