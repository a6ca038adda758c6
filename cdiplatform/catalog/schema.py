"""Schemas of the node kinds, checked before anything is written.

A check collects every problem it finds and raises one :class:`SchemaError`
that names the node and each offending variable, so nothing is written when a
dataset does not fit.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdiplatform.catalog._errors import SchemaError
from cdiplatform.catalog.layout import NodeKind
from cdiplatform.catalog.run_nodes import BOOKKEEPING

__all__ = ["validate", "GRID_DIMS"]

#: grid dimensions of collections and results, by dimensionality
GRID_DIMS = {2: ("y", "x"), 3: ("z", "y", "x")}

#: per-scan coordinates every collection must carry
COLLECTION_COORDS = ("kind", "sample", "source")
SCAN_KINDS = ("simulated", "measured")


def _is_float32(v: xr.DataArray) -> bool:
    return v.dtype == np.float32


def _is_text(v: xr.DataArray) -> bool:
    return v.dtype.kind in "UOT"


def _grid_dims(ds: xr.Dataset, var: str, problems: list[str]) -> tuple[str, ...] | None:
    if var not in ds:
        problems.append(f"missing data variable {var!r}")
        return None
    dims = ds[var].dims
    if not dims or dims[0] != "scan" or dims[1:] not in GRID_DIMS.values():
        problems.append(
            f"{var!r} has dims {dims}; expected ('scan', 'y', 'x') or ('scan', 'z', 'y', 'x')"
        )
        return None
    return dims


def _check_scan_coord(ds: xr.Dataset, problems: list[str]) -> None:
    # a scan's identity: an integer (its index in the simulation that made it) or text
    # ("<beamtime>/<scan number>" for a measured scan)
    if "scan" not in ds.coords:
        problems.append("missing coordinate 'scan'")
    elif ds["scan"].dtype.kind not in "iuOUT":
        problems.append(f"coordinate 'scan' must hold integers or text, not {ds['scan'].dtype}")


def _check_bookkeeping(ds: xr.Dataset, problems: list[str]) -> None:
    for name in BOOKKEEPING:
        if name not in ds:
            problems.append(f"missing bookkeeping variable {name!r}")
        elif ds[name].dims != ("scan",):
            problems.append(f"{name!r} must have dims ('scan',), not {ds[name].dims}")


def _check_collection(ds: xr.Dataset, problems: list[str]) -> None:
    _check_scan_coord(ds, problems)
    dims = _grid_dims(ds, "intensity", problems)
    if dims is not None and not _is_float32(ds["intensity"]):
        problems.append(f"'intensity' must be float32, not {ds['intensity'].dtype}")
    for name in ("amplitude", "phase"):
        if name in ds and dims is not None:
            if ds[name].dims != dims:
                problems.append(f"{name!r} has dims {ds[name].dims}, 'intensity' has {dims}")
            if not _is_float32(ds[name]):
                problems.append(f"{name!r} must be float32, not {ds[name].dtype}")
    if "mask" in ds and dims is not None and ds["mask"].dims != dims:
        problems.append(f"'mask' has dims {ds['mask'].dims}, 'intensity' has {dims}")
    for name in COLLECTION_COORDS:
        if name not in ds.coords:
            problems.append(f"missing per-scan coordinate {name!r}")
        elif ds[name].dims != ("scan",) or not _is_text(ds[name]):
            problems.append(f"coordinate {name!r} must be text on ('scan',)")
    if "kind" in ds.coords and ds["kind"].dims == ("scan",):
        bad = {str(k) for k in np.asarray(ds["kind"].values).ravel()} - set(SCAN_KINDS)
        if bad:
            problems.append(f"coordinate 'kind' holds {sorted(bad)}; allowed: {SCAN_KINDS}")


def _check_result(ds: xr.Dataset, problems: list[str]) -> None:
    _check_scan_coord(ds, problems)
    for name in ("method", "collection"):
        if name not in ds.attrs:
            problems.append(f"missing attribute {name!r}")
    for name in ("amplitude", "phase", "support"):
        if name in ds:
            _grid_dims(ds, name, problems)


def _check_training(ds: xr.Dataset, problems: list[str]) -> None:
    _check_scan_coord(ds, problems)
    for name in ("inputs", "split"):
        if name not in ds:
            problems.append(f"missing data variable {name!r}")


def _check_raw(ds: xr.Dataset, problems: list[str]) -> None:
    if "frames" not in ds:
        problems.append("missing data variable 'frames'")
    elif ds["frames"].dims != ("frame", "det_y", "det_x"):
        problems.append(f"'frames' has dims {ds['frames'].dims}; expected ('frame', 'det_y', 'det_x')")


def _check_model(ds: xr.Dataset, problems: list[str]) -> None:
    for name in ("architecture", "config", "weights_hash"):
        if name not in ds.attrs:
            problems.append(f"missing attribute {name!r}")


def _check_benchmark(ds: xr.Dataset, problems: list[str]) -> None:
    _check_scan_coord(ds, problems)
    if "method" not in ds.coords:
        problems.append("missing coordinate 'method'")
    if "collection" not in ds.attrs:
        problems.append("missing attribute 'collection'")


_CHECKS = {
    "collection": _check_collection,
    "result": _check_result,
    "training": _check_training,
    "raw": _check_raw,
    "model": _check_model,
    "benchmark": _check_benchmark,
    "report": lambda ds, problems: None,
}


def validate(kind: NodeKind, ds: xr.Dataset, *, node: str, runner_managed: bool = False) -> None:
    """Check ``ds`` against the schema of ``kind``; raise one SchemaError listing every problem.

    Parameters
    ----------
    kind : {"collection", "result", "training", "raw", "model", "benchmark"}
    ds : xarray.Dataset
        What is about to be written (lazy arrays are not loaded).
    node : str
        Node path, for the message.
    runner_managed : bool
        Also require the runner's per-scan bookkeeping variables.
    """
    problems: list[str] = []
    _CHECKS[kind](ds, problems)
    if runner_managed:
        _check_bookkeeping(ds, problems)
    if problems:
        raise SchemaError(f"{node}: does not fit the {kind} schema: " + "; ".join(problems))
