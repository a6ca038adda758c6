"""Batched inference, and the checks that keep a model away from data it was not trained for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cdiplatform.nn.config import ModelConfig
from cdiplatform.nn.data import estimate_oversampling, unit_to_phase
from cdiplatform.nn.networks import CDINetwork, build_model
from cdiplatform.nn.weights import load_arrays

__all__ = ["load_model", "predict", "screen_scans"]


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
