"""Nodes written by runs, chunk by chunk: their variables, bookkeeping and templates.

A run node (a collection, result or training set made by a pipeline stage)
holds, beside the stage's data variables, one bookkeeping record per scan:

=============  ==========  ==================================================
variable       dtype       what
=============  ==========  ==================================================
``status``     uint8       CF flags 0 pending, 1 ok, 2 failed
``reason``     text        why the scan failed ('' otherwise)
``done``       bool        its chunk was written (the completion marker, last)
``seconds``    float32     compute time of the scan
``digest``     uint64      64-bit hash of the scan's values (the manifest
                           content hashes come from; :mod:`.hashing`)
=============  ==========  ==================================================

The node is allocated once from a template (:func:`run_template`, lazy data
variables that are never computed); each task then writes one whole chunk
along ``scan`` (:func:`chunk_dataset` builds it) with ``done`` written last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog.hashing import digest_values

__all__ = ["BOOKKEEPING", "STATUS_FAILED", "STATUS_MEANINGS", "STATUS_OK", "STATUS_PENDING", "Var",
           "bookkeeping_tail", "chunk_dataset", "fill_value", "run_template"]

#: status codes of the per-scan ``status`` variable (CF flag_values / flag_meanings)
STATUS_PENDING, STATUS_OK, STATUS_FAILED = 0, 1, 2
STATUS_MEANINGS = "pending ok failed"

#: per-scan variables every run node carries beside its data
BOOKKEEPING = ("status", "reason", "done", "seconds", "digest")

_BOOKKEEPING_ATTRS = {
    "status": {"flag_values": [0, 1, 2], "flag_meanings": STATUS_MEANINGS, "long_name": "scan status"},
    "reason": {"long_name": "why the scan failed"},
    "done": {"long_name": "chunk written"},
    "seconds": {"units": "s", "long_name": "compute time per scan"},
    "digest": {"long_name": "blake2b-64 of the scan's values"},
}


@dataclass(frozen=True)
class Var:
    """A data variable of a run node, per scan.

    Parameters
    ----------
    dims : tuple of str
        Dimensions after ``scan`` (``()`` for a per-scan scalar).
    shape : tuple of int
        Sizes of those dimensions.
    dtype : str
        NumPy dtype name; ``"str"`` for variable-length text.
    attrs : dict
        CF-style attributes (``units``, ``long_name``).
    timing : bool
        Wall-clock times (a time-to-accuracy record): left out of the scan's
        digest, since two identical runs differ in them.
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: dict[str, Any] = field(default_factory=dict)
    timing: bool = False

    def __post_init__(self) -> None:
        if len(self.dims) != len(self.shape):
            raise ValueError(f"Var dims {self.dims} and shape {self.shape} differ in length")

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "str" else np.dtype(self.dtype)


def fill_value(dtype: Any) -> Any:
    """What a failed or pending scan holds: NaN, 0, False or ''."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind in "OUT":
        return ""
    return 0


def _bookkeeping(n: int) -> dict[str, tuple]:
    return {
        "status": (("scan",), np.full(n, STATUS_PENDING, dtype=np.uint8), _BOOKKEEPING_ATTRS["status"]),
        "reason": (("scan",), np.full(n, "", dtype=object), _BOOKKEEPING_ATTRS["reason"]),
        "done": (("scan",), np.zeros(n, dtype=bool), _BOOKKEEPING_ATTRS["done"]),
        "seconds": (("scan",), np.full(n, np.nan, dtype=np.float32), _BOOKKEEPING_ATTRS["seconds"]),
        "digest": (("scan",), np.zeros(n, dtype="<u8"), _BOOKKEEPING_ATTRS["digest"]),
    }


def per_scan_coords(coords: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Coordinates of a run node: per-scan arrays of length ``n`` on ``scan``, grid ones as ``(dim, values)``."""
    out: dict[str, Any] = {}
    for name, value in coords.items():
        if isinstance(value, tuple):
            out[name] = value
            continue
        arr = np.asarray(value)
        if arr.shape[:1] != (n,):
            raise ValueError(f"per-scan coordinate {name!r} has {arr.shape[:1]} values for {n} scans")
        if arr.dtype.kind == "U":
            arr = arr.astype(object)
        out[name] = (("scan",) + tuple(f"{name}_{i}" for i in range(1, arr.ndim)), arr)
    return out


def run_template(*, scans: Sequence[Any], chunk: int, variables: Mapping[str, Var], coords: Mapping[str, Any],
                 attrs: Mapping[str, Any]) -> xr.Dataset:
    """The template of a run node: lazy data variables (dask, never computed), eager coordinates and bookkeeping.

    Parameters
    ----------
    scans : sequence
        The scans' identities, in order: integers (a simulated scan's index in
        the run that made it) or text (``"<beamtime>/<scan number>"``).
    chunk : int
        Scans per task and per zarr chunk along ``scan``.
    variables : mapping of str to Var
    coords : mapping
        Per-scan coordinates (1-D, one value per scan) and grid coordinates ``(dim, values)``.
    attrs : mapping
        Attributes of the node.
    """
    import dask.array as da

    n = len(scans)
    if n < 1:
        raise ValueError(f"a stage must produce at least one scan, the plan says {n}")
    taken = sorted(set(variables) & set(BOOKKEEPING))
    if taken:
        raise ValueError(f"the variable name(s) {taken} belong to the bookkeeping every run node carries "
                         f"({', '.join(BOOKKEEPING)}): name them otherwise")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, the plan says {chunk}")
    ids = np.asarray(scans)
    ids = ids.astype(object) if ids.dtype.kind in "UOT" else ids.astype(np.int64)
    if len(set(ids.tolist())) != n:
        raise ValueError("the scans of a node must be distinct")
    all_coords = {"scan": ("scan", ids), **per_scan_coords({k: v for k, v in coords.items() if k != "scan"}, n)}
    data: dict[str, Any] = {}
    for name, var in variables.items():
        if var.dtype == "str":
            data[name] = (("scan", *var.dims), np.full((n, *var.shape), "", dtype=object), var.attrs)
            continue
        dtype = var.numpy_dtype
        arr = da.full((n, *var.shape), fill_value(dtype), dtype=dtype, chunks=(chunk, *var.shape))
        data[name] = (("scan", *var.dims), arr, var.attrs)
    data.update(_bookkeeping(n))
    return xr.Dataset(data, coords=all_coords, attrs=dict(attrs))


def bookkeeping_tail(n: int) -> dict[str, np.ndarray]:
    """Pending bookkeeping of ``n`` scans appended to a node."""
    return {name: value[1] for name, value in _bookkeeping(n).items()}


def chunk_dataset(
    *,
    variables: Mapping[str, Var],
    n: int,
    local: Sequence[int],
    values: Mapping[str, np.ndarray],
    failed: Mapping[int, str],
    seconds: Sequence[float],
    existing: xr.Dataset | None,
) -> xr.Dataset:
    """One whole chunk of a run node: recomputed scans from ``values``, the others as already stored.

    Parameters
    ----------
    variables : mapping of str to Var
        The node's data variables.
    n : int
        Scans in the chunk.
    local : sequence of int
        Positions within the chunk of the scans computed now (``p``-th row of ``values``).
    values : mapping of str to ndarray
        One array per variable, leading axis ``len(local)``.
    failed : mapping of int to str
        Rows of ``values`` (positions in ``local``) that failed, with the reason.
    seconds : sequence of float
        Compute time of each computed scan.
    existing : xarray.Dataset, optional
        The chunk as stored (data and bookkeeping variables, loaded), when some
        of its scans are kept.
    """
    data: dict[str, tuple] = {}
    for name, var in variables.items():
        dtype = var.numpy_dtype
        if existing is not None:
            arr = np.asarray(existing[name].values).astype(dtype, copy=True)
        else:
            arr = np.full((n, *var.shape), fill_value(dtype), dtype=dtype)
        new = np.asarray(values[name]).astype(dtype, copy=False)
        for p, pos in enumerate(local):
            arr[pos] = fill_value(dtype) if p in failed else new[p]
        data[name] = (("scan", *var.dims), arr)
    book = ({k: np.asarray(existing[k].values).copy() for k in BOOKKEEPING} if existing is not None
            else bookkeeping_tail(n))
    book["reason"] = book["reason"].astype(object)
    for p, pos in enumerate(local):
        book["status"][pos] = STATUS_FAILED if p in failed else STATUS_OK
        book["reason"][pos] = failed.get(p, "")
        book["seconds"][pos] = seconds[p]
        book["digest"][pos] = 0 if p in failed else digest_values(
            {k: values[k][p] for k, v in variables.items() if not v.timing})
    book["done"][:] = True
    data.update({k: (("scan",), v) for k, v in book.items()})
    return xr.Dataset(data)
