"""Models as data: weights as named NumPy arrays, their content hash, checked loading.

No pickle anywhere: a model is its :class:`~cdiplatform.nn.ModelConfig`
(JSON-able) plus ``dict[str, ndarray]`` of its ``state_dict`` entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cdiplatform.nn.config import ModelConfig

__all__ = ["WeightsMismatchError", "load_arrays", "state_to_arrays", "weights_hash"]


class WeightsMismatchError(ValueError):
    """Weights that do not fit a model: other architecture, keys, shapes, dtypes or hash."""


def state_to_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's ``state_dict`` as CPU NumPy arrays (copies), keyed by parameter name."""
    return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}


def weights_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """Content hash of named arrays: ``"sha256:<hex>"`` over sorted names, dtypes, shapes and bytes.

    Independent of dict order and of memory layout; any changed value, name,
    shape or dtype changes it.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(name.encode())
        h.update(b"\0" + a.dtype.str.encode() + b"\0" + repr(a.shape).encode() + b"\0")
        h.update(np.ascontiguousarray(a).tobytes())
    return "sha256:" + h.hexdigest()


def _architecture(config: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, ModelConfig):
        return config.architecture()
    return ModelConfig.from_dict(dict(config)).architecture()


def load_arrays(
    model: torch.nn.Module,
    arrays: Mapping[str, np.ndarray],
    expected_config: ModelConfig | Mapping[str, Any],
    *,
    expected_hash: str | None = None,
) -> torch.nn.Module:
    """Load named arrays into ``model`` after checking that they are the expected weights.

    Parameters
    ----------
    model : CDINetwork
        Built from a config (``model.config``); keeps its device.
    arrays : mapping of str to ndarray
        Weights, as from :func:`state_to_arrays`.
    expected_config : ModelConfig or dict
        Config stored with the weights; its architecture must equal the model's.
    expected_hash : str, optional
        :func:`weights_hash` stored with the weights; checked if given.

    Returns
    -------
    The model, loaded.

    Raises
    ------
    WeightsMismatchError
        Naming every architecture field, key, shape or dtype that differs, or the hashes.
    """
    problems: list[str] = []
    model_config = getattr(model, "config", None)
    if model_config is None:
        raise WeightsMismatchError("the model has no .config; build it with cdiplatform.nn.build_model")
    have, want = model_config.architecture(), _architecture(expected_config)
    for key in sorted(set(have) | set(want)):
        if have.get(key) != want.get(key):
            problems.append(
                f"architecture {key}: model has {have.get(key)!r}, weights are for {want.get(key)!r}"
            )
    if expected_hash is not None:
        got = weights_hash(arrays)
        if got != expected_hash:
            problems.append(f"weights hash {got} differs from the expected {expected_hash}")
    state = model.state_dict()
    missing = sorted(set(state) - set(arrays))
    unexpected = sorted(set(arrays) - set(state))
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    for name in sorted(set(state) & set(arrays)):
        a, t = np.asarray(arrays[name]), state[name]
        if tuple(a.shape) != tuple(t.shape):
            problems.append(f"{name}: shape {tuple(a.shape)}, model expects {tuple(t.shape)}")
        elif a.dtype != torch.empty((), dtype=t.dtype).numpy().dtype:
            problems.append(f"{name}: dtype {a.dtype}, model expects {t.dtype}")
        elif not np.isfinite(a).all() and a.dtype.kind == "f":
            problems.append(f"{name}: has non-finite values")
    if problems:
        raise WeightsMismatchError("weights do not fit the model:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for name, t in state.items():
            # reshape: ascontiguousarray makes 0-d arrays (batch norm's counters) 1-d
            t.copy_(torch.from_numpy(np.ascontiguousarray(arrays[name])).reshape(t.shape))
    return model
