"""Training checkpoints as flat ``dict[str, ndarray]`` (no pickle), and back.

Keys:

- ``model/<name>``: the weights (:func:`~cdiplatform.nn.state_to_arrays`);
- ``optimizer/<i>/<state>``: Adam state of the i-th trained parameter of the current phase;
- ``rng/torch``, ``rng/cuda/<device>``, ``rng/numpy/*``, ``rng/python/*``: RNG states;
- ``history/<metric>``: per-epoch values (float64, one per completed epoch);
- ``meta/epochs_done``, ``meta/phase``: completed epochs and the schedule phase of the last one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["make_checkpoint", "restore_rng", "rng_arrays", "split_checkpoint"]


def rng_arrays() -> dict[str, np.ndarray]:
    """The global RNG states of torch (CPU and CUDA), NumPy and Python, as arrays."""
    out = {"rng/torch": torch.get_rng_state().numpy().copy()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/cuda/{i}"] = s.numpy().copy()
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    if kind != "MT19937":  # pragma: no cover
        raise ValueError(f"unexpected NumPy global RNG {kind!r}")
    out.update(
        {
            "rng/numpy/keys": np.asarray(keys, dtype=np.uint32),
            "rng/numpy/pos": np.asarray(pos, dtype=np.int64),
            "rng/numpy/has_gauss": np.asarray(has_gauss, dtype=np.int64),
            "rng/numpy/cached_gaussian": np.asarray(gauss, dtype=np.float64),
        }
    )
    version, internal, gauss_next = random.getstate()
    out.update(
        {
            "rng/python/version": np.asarray(version, dtype=np.int64),
            "rng/python/state": np.asarray(internal, dtype=np.uint64),
            "rng/python/has_gauss": np.asarray(gauss_next is not None, dtype=np.int64),
            "rng/python/gauss_next": np.asarray(0.0 if gauss_next is None else gauss_next, dtype=np.float64),
        }
    )
    return out


def restore_rng(arrays: Mapping[str, np.ndarray]) -> None:
    """Set the global RNG states from :func:`rng_arrays` output (CUDA states only where CUDA is used)."""
    torch.set_rng_state(torch.from_numpy(np.asarray(arrays["rng/torch"], dtype=np.uint8).copy()))
    cuda = sorted((k for k in arrays if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(
            [torch.from_numpy(np.asarray(arrays[k], dtype=np.uint8).copy()) for k in cuda]
        )
    np.random.set_state(
        (
            "MT19937",
            np.asarray(arrays["rng/numpy/keys"], dtype=np.uint32),
            int(arrays["rng/numpy/pos"]),
            int(arrays["rng/numpy/has_gauss"]),
            float(arrays["rng/numpy/cached_gaussian"]),
        )
    )
    gauss = float(arrays["rng/python/gauss_next"]) if int(arrays["rng/python/has_gauss"]) else None
    random.setstate(
        (int(arrays["rng/python/version"]), tuple(int(v) for v in arrays["rng/python/state"]), gauss)
    )


def _optimizer_arrays(optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    out = {}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            value = value.detach().cpu().numpy().copy() if torch.is_tensor(value) else np.asarray(value)
            out[f"optimizer/{i}/{key}"] = value
    return out


def load_optimizer_arrays(optimizer: torch.optim.Optimizer, arrays: Mapping[str, np.ndarray]) -> None:
    """Load ``optimizer/<i>/<key>`` arrays into an optimizer built over the same parameters."""
    sd = optimizer.state_dict()
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        if not key.startswith("optimizer/"):
            continue
        _, i, name = key.split("/", 2)
        if int(i) >= n_params:
            raise ValueError(
                f"checkpoint optimizer state {key} is for a parameter the optimizer does not have"
            )
        state.setdefault(int(i), {})[name] = torch.from_numpy(np.array(value))
    sd["state"] = state
    optimizer.load_state_dict(sd)


def make_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs_done: int,
    phase: int,
    history: Mapping[str, list[float]],
) -> dict[str, np.ndarray]:
    """Everything needed to continue a training exactly, as named arrays."""
    from cdiplatform.nn.weights import state_to_arrays

    out = {f"model/{k}": v for k, v in state_to_arrays(model).items()}
    out.update(_optimizer_arrays(optimizer))
    out.update(rng_arrays())
    out.update({f"history/{k}": np.asarray(v, dtype=np.float64) for k, v in history.items()})
    out["meta/epochs_done"] = np.asarray(epochs_done, dtype=np.int64)
    out["meta/phase"] = np.asarray(phase, dtype=np.int64)
    return out


def split_checkpoint(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Group checkpoint arrays by their key's first part (``model``, ``optimizer``...), prefix removed."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        head, _, rest = key.partition("/")
        out.setdefault(head, {})[rest] = value
    return out
