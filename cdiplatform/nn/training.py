"""The training loop: sequential schedule, per-epoch validation, checkpoints and exact resume.

Pure torch; the pipeline runs :func:`train` inside one task. Every epoch ends
with a checkpoint (named NumPy arrays, see :mod:`cdiplatform.nn.checkpoint`)
handed to a callback, which may store it and may raise to stop the training.
Passing such a checkpoint back as ``resume`` continues the run so that it ends
with the same weights and history as an uninterrupted one: the data order of
an epoch depends only on ``(seed, epoch)``, and the weights, optimizer state
and RNG states are restored. The torch RNG (dropout) is seeded from the
config's seed at the start of a fresh run and forked, so the caller's torch
RNG state is left as it was. On CPU, call with ``deterministic=True``
(``torch.use_deterministic_algorithms(True)`` for the duration of the call).
On a GPU the same flag picks deterministic kernels where torch has them and
only warns for the rest (the backward pass of 3D max pooling has none), so a
GPU training runs, but its resume is not bit-exact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from cdiplatform.nn.augment import random_symmetry
from cdiplatform.nn.checkpoint import load_optimizer_arrays, make_checkpoint, restore_rng, split_checkpoint
from cdiplatform.nn.config import SchedulePhase, TrainConfig
from cdiplatform.nn.data import BlockDataset, make_loader
from cdiplatform.nn.losses import loss_terms
from cdiplatform.nn.networks import CDINetwork
from cdiplatform.nn.weights import load_arrays

__all__ = ["apply_phase", "default_device", "train"]

Callback = Callable[[dict[str, np.ndarray], dict[str, Any]], None]


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def apply_phase(model: CDINetwork, phase: SchedulePhase) -> list[torch.nn.Parameter]:
    """Freeze every module group not in ``phase.train`` and put the model in training mode.

    Frozen groups get ``requires_grad=False`` and eval mode (no dropout);
    trained groups get ``requires_grad=True`` and train mode.

    Returns
    -------
    The trainable parameters, in a fixed order (that of ``model.parameters()``).
    """
    groups = model.groups
    unknown = set(phase.train) - set(groups)
    if unknown:
        raise ValueError(
            f"schedule phase {phase.name!r} trains {sorted(unknown)}, "
            f"which {model.config.arch} does not have; "
            f"it has {sorted(groups)}"
        )
    model.train()
    for name, module in groups.items():
        on = name in phase.train
        module.train(on)
        for p in module.parameters():
            p.requires_grad_(on)
    return [p for p in model.parameters() if p.requires_grad]


@contextlib.contextmanager
def _deterministic(on: bool, device: torch.device):
    if not on:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    # CUDA lacks deterministic kernels for some ops used here (max_pool3d backward): warn, do not fail
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _batch(batch: Mapping[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    missing = {"inputs", "amplitude", "phase"} - set(batch)
    if missing:
        raise ValueError(f"training batches need arrays {sorted(missing)} (have {sorted(batch)})")
    return tuple(
        batch[k].to(device, non_blocking=True).unsqueeze(1) for k in ("inputs", "amplitude", "phase")
    )


def _run_epoch(
    model, loader, device, config, weights, *, optimizer=None
) -> tuple[dict[str, float], float, float]:
    """One pass; returns mean loss terms (scan-weighted), seconds waiting for data, seconds in total."""
    mc = model.config
    sums: dict[str, float] = {}
    n = 0
    wait = 0.0
    start = tick = time.perf_counter()
    terms = ("amplitude", "phase", "physics")
    for batch in loader:
        wait += time.perf_counter() - tick
        x, amp_t, p_t = _batch(batch, device)
        if optimizer is not None and config.augment != "none":
            x, amp_t, p_t = random_symmetry((x, amp_t, p_t), ndim=mc.ndim, group=config.augment)
        with torch.set_grad_enabled(optimizer is not None):
            amp, p = model(x)
            parts = loss_terms(
                x,
                amp,
                p,
                amp_t,
                p_t,
                ndim=mc.ndim,
                kind=config.supervised_loss,
                phase_weighting=config.phase_weighting,
                twin_invariant=config.twin_invariant,
                terms=terms,
                phase_scale=mc.phase_scale,
                phase_offset=mc.phase_offset,
            )
            total = sum(weights.get(k, 0.0) * v for k, v in parts.items())
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        b = x.shape[0]
        n += b
        for k, v in {"loss": total, **parts}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
        tick = time.perf_counter()
    if n == 0:
        raise ValueError("an epoch saw no data (empty dataset?)")
    return {k: v / n for k, v in sums.items()}, wait, time.perf_counter() - start


def train(
    model: CDINetwork,
    train_data: BlockDataset,
    val_data: BlockDataset | None = None,
    *,
    config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    resume: Mapping[str, np.ndarray] | None = None,
    deterministic: bool = False,
) -> dict[str, list[float]]:
    """Train ``model`` through its schedule.

    Parameters
    ----------
    model : CDINetwork
        From :func:`cdiplatform.nn.build_model`; moved to ``device``.
    train_data, val_data : BlockDataset
        Yield dicts with ``inputs``, ``amplitude`` and ``phase`` (the unit
        phase channel), ``(batch, *grid)``. Their ``seed`` and
        ``config.num_workers`` fix the data order.
    config : TrainConfig, optional
        Default ``model.config.training``.
    device : str or torch.device, optional
        Default :func:`default_device`.
    callback : callable, optional
        ``callback(checkpoint, info)`` after every epoch: ``checkpoint`` is a
        flat ``dict[str, ndarray]``; ``info`` holds ``epoch``, ``phase``
        (name), ``history`` and timings (``data_wait_s``, ``train_s``,
        ``val_s``). Raising from it stops the training (the checkpoint given is
        complete).
    resume : mapping of str to ndarray, optional
        A checkpoint from an earlier call with the same model config and data.
        Restores the torch, NumPy and Python global RNG states it holds.
    deterministic : bool
        Enable ``torch.use_deterministic_algorithms`` during the call (on a
        GPU with ``warn_only=True``: ops without a deterministic CUDA kernel
        warn instead of failing).

    Returns
    -------
    dict of str to list of float
        History, one value per epoch: ``epoch``, ``phase`` (index),
        ``train_loss``, ``train_<term>``, ``val_loss``, ``val_<term>`` (terms:
        amplitude, phase, physics; every term is reported, the loss weighs them
        by the phase's weights).
    """
    config = config or model.config.training
    if config is None:
        raise ValueError("no TrainConfig: pass config= or build the model from a config with training")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    history: dict[str, list[float]] = {}
    start_epoch, ckpt_phase, saved = 0, -1, None
    if resume is not None:
        saved = split_checkpoint(resume)
        load_arrays(model, saved.get("model", {}), model.config)
        start_epoch = int(saved["meta"]["epochs_done"])
        ckpt_phase = int(saved["meta"]["phase"])
        history = {k: [float(x) for x in v] for k, v in saved.get("history", {}).items()}
        if any(len(v) != start_epoch for v in history.values()):
            raise ValueError(f"checkpoint history lengths differ from its {start_epoch} completed epochs")
    optimizer = None
    current = -1
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    # the torch RNG (dropout) runs on its own stream: seeded from the config, or restored
    with _deterministic(deterministic, device), torch.random.fork_rng(devices=cuda_devices):
        if resume is not None:
            restore_rng(resume)
        else:
            torch.manual_seed(config.seed)
        for epoch in range(start_epoch, config.epochs):
            index = config.phase_of_epoch(epoch)
            phase = config.schedule[index]
            params = apply_phase(model, phase)
            if index != current:
                optimizer = torch.optim.Adam(
                    params, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
                )
                if saved is not None and index == ckpt_phase and epoch == start_epoch:
                    load_optimizer_arrays(
                        optimizer, {f"optimizer/{k}": v for k, v in saved.get("optimizer", {}).items()}
                    )
                current = index
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(epoch)
            loader = make_loader(
                train_data,
                epoch=epoch,
                num_workers=config.num_workers,
                prefetch_factor=config.prefetch_factor,
                pin_memory=device.type == "cuda",
            )
            train_means, wait, train_s = _run_epoch(
                model, loader, device, config, phase.loss, optimizer=optimizer
            )
            record = {"epoch": float(epoch), "phase": float(index)}
            record.update({f"train_{k}": v for k, v in train_means.items()})
            val_s = 0.0
            if val_data is not None:
                model.eval()
                loader = make_loader(val_data, epoch=0, num_workers=0)
                val_means, _, val_s = _run_epoch(model, loader, device, config, phase.loss)
                record.update({f"val_{k}": v for k, v in val_means.items()})
            for k, v in record.items():
                history.setdefault(k, []).append(v)
            if callback is not None:
                ckpt = make_checkpoint(model, optimizer, epochs_done=epoch + 1, phase=index, history=history)
                info = {
                    "epoch": epoch,
                    "phase": phase.name,
                    "history": history,
                    "data_wait_s": wait,
                    "train_s": train_s,
                    "val_s": val_s,
                }
                callback(ckpt, info)
    model.eval()
    return history
