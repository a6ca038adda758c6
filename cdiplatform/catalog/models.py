"""Trained networks as catalog nodes: weights as arrays, never pickles.

A model node ``models/<id>`` holds one data variable per named array (network
weights, and while a training runs, its optimizer and random-number state),
the array's name kept in the variable's ``key`` attribute since names such as
``model/encoder.0.weight`` are not zarr names. Its attributes hold the
configuration (``config``), the architecture, the weights' hash and the
training history.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog._catalog import Catalog, open_catalog, parse_node_ref
from cdiplatform.catalog._errors import CatalogError

__all__ = ["arrays_to_dataset", "dataset_to_arrays", "load_model_arrays", "model_from_dataset", "read_model",
           "write_model"]


def _var_name(key: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "__", key)


def arrays_to_dataset(arrays: Mapping[str, np.ndarray]) -> xr.Dataset:
    """Named arrays as a dataset: one variable per array, its own dimensions, the name in ``key``."""
    data = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        name = _var_name(key)
        if name in data:
            raise CatalogError(f"two arrays map to the variable name {name!r}")
        dims = tuple(f"{name}_dim{i}" for i in range(value.ndim))
        data[name] = (dims, value, {"key": key})
    return xr.Dataset(data)


def dataset_to_arrays(ds: xr.Dataset, *, prefix: str | None = None) -> dict[str, np.ndarray]:
    """The inverse of :func:`arrays_to_dataset`; only keys under ``prefix/`` when given (prefix removed)."""
    out = {}
    for name, var in ds.data_vars.items():
        key = var.attrs.get("key", name)
        if prefix is not None:
            if not key.startswith(prefix + "/"):
                continue
            key = key[len(prefix) + 1:]
        out[key] = np.asarray(var.values)
    return out


def write_model(cat: Catalog, node: str, arrays: Mapping[str, np.ndarray], *, attrs: Mapping[str, Any],
                overwrite: bool = True) -> None:
    """Write (or atomically replace) a model node from named arrays and attributes."""
    cat.write(node, arrays_to_dataset(arrays), attrs=attrs, overwrite=overwrite)


def read_model(cat: Catalog, node: str, *, prefix: str | None = "model") -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, attrs)`` of a model node; by default only the network weights (``model/...``)."""
    ds = cat.open(node, chunks=None).load()
    return dataset_to_arrays(ds, prefix=prefix), cat.attrs(node)


def check_model_attrs(attrs: Mapping[str, Any], *, where: str) -> None:
    """Refuse a node that is not a finished model (a checkpoint of a running training, or another node)."""
    if "config" not in attrs or "weights_hash" not in attrs:
        raise CatalogError(f"{where}: not a model node (no 'config' or 'weights_hash' attribute)")
    if not attrs.get("run", {}).get("complete", True):
        raise CatalogError(f"{where}: the model's training has not finished (a checkpoint, not a model)")


def model_from_dataset(ds: xr.Dataset) -> tuple[dict[str, np.ndarray], dict[str, Any], str | None]:
    """``(weights, config, weights_hash)`` of a model node opened as a dataset (a stage's model input)."""
    check_model_attrs(ds.attrs, where=str(ds.attrs.get("node", "model input")))
    return dataset_to_arrays(ds.load(), prefix="model"), ds.attrs["config"], ds.attrs.get("weights_hash")


def load_model_arrays(ref: str) -> tuple[dict[str, np.ndarray], dict[str, Any], str | None]:
    """``(weights, config, weights_hash)`` of the model node ``CATALOG:models/<id>``."""
    path, node = parse_node_ref(ref)
    cat = open_catalog(path)
    weights, attrs = read_model(cat, node)
    check_model_attrs(attrs, where=ref)
    return weights, attrs["config"], attrs.get("weights_hash")
