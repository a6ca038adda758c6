"""The template of a stage's output node: every variable, nothing computed yet."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from cdiplatform.catalog import STATUS_MEANINGS
from cdiplatform.pipeline.chunks import fill_value
from cdiplatform.pipeline.stage import Plan

__all__ = ["build_template"]


def build_template(plan: Plan, *, attrs: dict[str, Any]) -> xr.Dataset:
    """Lazy data variables (dask, never computed) and eager coordinates and bookkeeping.

    The bookkeeping variables, per scan: ``status`` (CF flags pending/ok/failed),
    ``reason`` (why a scan failed), ``done`` (its chunk was written),
    ``seconds`` (compute time per scan) and ``digest`` (a 64-bit hash of the
    scan's values, the per-chunk manifest that content hashes come from).
    """
    n, chunk = plan.n_scans, plan.chunk
    if n < 1:
        raise ValueError(f"a stage must produce at least one scan, the plan says {n}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, the plan says {chunk}")
    coords: dict[str, Any] = {"scan": ("scan", np.arange(n, dtype=np.int64))}
    for name, value in plan.coords.items():
        if isinstance(value, tuple):
            coords[name] = value
        else:
            arr = np.asarray(value)
            if arr.shape[:1] != (n,):
                raise ValueError(f"per-scan coordinate {name!r} has {arr.shape[:1]} values for {n} scans")
            coords[name] = (("scan",) + tuple(f"{name}_{i}" for i in range(1, arr.ndim)), arr)
    data: dict[str, Any] = {}
    for name, var in plan.variables.items():
        if var.dtype == "str":
            data[name] = (("scan", *var.dims), np.full((n, *var.shape), "", dtype=object), var.attrs)
            continue
        dtype = np.dtype(var.dtype)
        arr = da.full((n, *var.shape), fill_value(dtype), dtype=dtype, chunks=(chunk, *var.shape))
        data[name] = (("scan", *var.dims), arr, var.attrs)
    data["status"] = (
        ("scan",),
        np.zeros(n, dtype=np.uint8),
        {"flag_values": [0, 1, 2], "flag_meanings": STATUS_MEANINGS, "long_name": "scan status"},
    )
    data["reason"] = (("scan",), np.full(n, "", dtype=object), {"long_name": "why the scan failed"})
    data["done"] = (("scan",), np.zeros(n, dtype=bool), {"long_name": "chunk written"})
    data["seconds"] = (("scan",), np.full(n, np.nan, dtype=np.float32), {"units": "s", "long_name": "compute time per scan"})
    data["digest"] = (("scan",), np.zeros(n, dtype="<u8"), {"long_name": "blake2b-64 of the scan's values"})
    return xr.Dataset(data, coords=coords, attrs=dict(attrs))
