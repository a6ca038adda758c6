"""What one task does: compute a chunk of scans and write it, whole, into the catalog.

Runs on a Dask worker; everything it needs travels in a :class:`ChunkTask`.
"""

from __future__ import annotations

import hashlib
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog import STATUS_FAILED, STATUS_OK, open_catalog
from cdiplatform.pipeline.stage import ChunkResult, Plan, Stage

__all__ = ["ChunkTask", "ChunkOutcome", "failure_reason", "fill_value", "run_chunk", "scan_rngs"]


@dataclass(frozen=True)
class ChunkTask:
    """One task: scans ``start:stop`` of the output, of which ``pending`` are (re)computed."""

    stage: type[Stage]
    params: Any
    plan: Plan
    inputs: dict[str, tuple[str, Any, Any]]  # name -> (catalog path, node or node-set members, select)
    output: tuple[str, str]  # (catalog path, node)
    start: int
    stop: int
    pending: tuple[int, ...]  # global scan positions
    seed: int
    stream: int  # separates the random streams of the stages of one job
    source: tuple[int, ...] | None = None  # input positions of the pending scans, when not the same


@dataclass
class ChunkOutcome:
    start: int
    stop: int
    ok: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"


def stream_key(label: str) -> int:
    """A stable 32-bit key for a stage, so two stages of a job draw different numbers."""
    return zlib.crc32(label.encode())


def scan_rngs(seed: int, stream: int, scans: np.ndarray) -> list[np.random.Generator]:
    """One generator per scan, from the job seed, the stage stream and the scan position only."""
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, int(s)))) for s in scans]


def fill_value(dtype: np.dtype) -> Any:
    """What a failed or pending scan holds: NaN, 0, False or ''."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" or dtype.kind == "c":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind in "OUT":
        return ""
    return 0


def _digest(values: dict[str, np.ndarray], i: int) -> np.uint64:
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(values):
        a = np.ascontiguousarray(values[name][i])
        h.update(name.encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else str(a).encode())
    return np.frombuffer(h.digest(), dtype="<u8")[0]


def _check_result(result: ChunkResult, plan: Plan, n: int, stage: str) -> None:
    if not isinstance(result, ChunkResult):
        raise TypeError(f"stage {stage} returned {type(result).__name__}, not ChunkResult")
    for name, var in plan.variables.items():
        if name not in result.values:
            raise ValueError(f"stage {stage} did not return variable {name!r}")
        got = np.shape(result.values[name])
        if got != (n, *var.shape):
            raise ValueError(f"stage {stage} returned {name!r} of shape {got}, expected {(n, *var.shape)}")


def _compute(task: ChunkTask, inputs: dict[str, xr.Dataset], index: np.ndarray) -> tuple[dict, dict[int, str]]:
    stage = task.stage()
    rngs = scan_rngs(task.seed, task.stream, index)
    result = stage.compute(task.params, inputs, index, rngs)
    _check_result(result, task.plan, len(index), task.stage.name)
    return result.values, dict(result.failed)


def failure_reason(exc: BaseException) -> str:
    """An exception as a scan's failure reason: type, message and where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" [{Path(frame.filename).name}:{frame.lineno}]" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def run_chunk(task: ChunkTask) -> ChunkOutcome:
    """Compute the pending scans of a chunk and write the whole chunk; never raises for a bad scan.

    The batch is computed in one call; if that call raises, each scan is tried
    alone so that one bad scan does not take its neighbours down. Data
    variables are written first and ``done`` last, so a task killed in
    between leaves its chunk to be redone.
    """
    t0 = time.perf_counter()
    out = ChunkOutcome(task.start, task.stop)
    try:
        import torch

        out.device = "cuda" if task.stage.uses_torch and torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        pass
    pending = np.asarray(task.pending, dtype=np.int64)
    opened: dict[str, Any] = {}
    for name, (path, node, select) in task.inputs.items():
        cat = open_catalog(path)
        # no dask inside a task: a worker's .load() would submit graphs to its own cluster
        opened[name] = ([cat.open(n, chunks=None) for n in node] if isinstance(node, list)
                        else cat.open(node, chunks=None))
        if select is not None:
            opened[name] = opened[name].isel(scan=slice(*select))

    source = dict(zip(task.pending, task.source)) if task.source is not None else None

    def load(index: np.ndarray) -> dict[str, Any]:
        # output scan i reads input scan source[i]; a node set (raw scans of a beamtime) gives a list of
        # datasets, one per scan; an input without a scan dimension (a model) is given whole
        where = np.array([source[int(i)] for i in index]) if source is not None else index
        return {name: [ds[i].load() for i in where] if isinstance(ds, list)
                else ds.isel(scan=where).load() if "scan" in ds.dims else ds
                for name, ds in opened.items()}

    values: dict[str, np.ndarray] = {}
    failed: dict[int, str] = {}  # position in `pending`
    seconds = np.full(len(pending), np.nan, dtype=np.float32)
    try:
        values, failed = _compute(task, load(pending), pending)
        seconds[:] = (time.perf_counter() - t0) / max(len(pending), 1)
    except Exception:  # noqa: BLE001 - isolate the scan that broke the batch
        values = {name: np.empty((len(pending), *v.shape), dtype=v.dtype if v.dtype != "str" else object)
                  for name, v in task.plan.variables.items()}
        for pos, scan in enumerate(pending):
            t1 = time.perf_counter()
            one = np.array([scan])
            try:
                vals, bad = _compute(task, load(one), one)
            except Exception as exc:  # noqa: BLE001
                failed[pos] = failure_reason(exc)
            else:
                for name in values:
                    values[name][pos] = vals[name][0]
                if bad:
                    failed[pos] = bad[0] if 0 in bad else next(iter(bad.values()))
            seconds[pos] = time.perf_counter() - t1

    chunk = _assemble(task, pending, values, failed, seconds)
    cat = open_catalog(task.output[0], mode="a")
    region = slice(task.start, task.stop)
    cat.write_region(task.output[1], chunk, scans=region, last=("done",))
    out.failed = {int(pending[p]): r for p, r in failed.items()}
    out.ok = [int(s) for p, s in enumerate(pending) if p not in failed]
    out.seconds = time.perf_counter() - t0
    return out


def _assemble(task: ChunkTask, pending: np.ndarray, values: dict, failed: dict[int, str], seconds) -> xr.Dataset:
    """The whole chunk: recomputed scans from ``values``, the others as already stored."""
    n = task.stop - task.start
    local = pending - task.start
    if len(pending) < n:
        existing = open_catalog(task.output[0]).open(task.output[1], chunks=None).isel(scan=slice(task.start, task.stop))
        existing = existing.drop_vars(list(existing.coords)).load()
    else:
        existing = None
    data = {}
    for name, var in task.plan.variables.items():
        dtype = object if var.dtype == "str" else np.dtype(var.dtype)
        if existing is not None:
            arr = np.asarray(existing[name].values).astype(dtype, copy=True)
        else:
            arr = np.full((n, *var.shape), fill_value(dtype), dtype=dtype)
        new = np.asarray(values[name]).astype(dtype, copy=False)
        for p, pos in enumerate(local):
            arr[pos] = fill_value(dtype) if p in failed else new[p]
        data[name] = (("scan", *var.dims), arr)
    status = np.asarray(existing["status"].values if existing is not None else np.zeros(n), dtype=np.uint8).copy()
    reason = np.asarray(existing["reason"].values if existing is not None else [""] * n, dtype=object).copy()
    secs = np.asarray(existing["seconds"].values if existing is not None else np.full(n, np.nan), dtype=np.float32).copy()
    digest = np.asarray(existing["digest"].values if existing is not None else np.zeros(n), dtype="<u8").copy()
    for p, pos in enumerate(local):
        status[pos] = STATUS_FAILED if p in failed else STATUS_OK
        reason[pos] = failed.get(p, "")
        secs[pos] = seconds[p]
        digest[pos] = 0 if p in failed else _digest(values, p)
    data.update(
        status=(("scan",), status),
        reason=(("scan",), reason),
        seconds=(("scan",), secs),
        digest=(("scan",), digest),
        done=(("scan",), np.ones(n, dtype=bool)),
    )
    return xr.Dataset(data)
