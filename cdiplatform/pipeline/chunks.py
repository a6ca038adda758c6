"""What one task does: screen, compute and write a chunk of scans, whole, into the catalog.

Runs on a Dask worker; everything it needs travels in a :class:`ChunkTask`.
Before the stage sees a scan, the task screens it once for every stage: a scan
missing from a joined input, failed upstream (``failed upstream in <node>:
<reason>``), or whose declared variables hold NaN or infinity is recorded as
failed with that reason and never computed (unless the stage declared that
it sees failures for that input).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog import STATUS_FAILED, STATUS_OK, Var, open_catalog
from cdiplatform.catalog.run_nodes import fill_value
from cdiplatform.pipeline.inputs import TaskInput
from cdiplatform.pipeline.randomness import scan_rngs, stage_seed_sequence
from cdiplatform.pipeline.stage import ChunkResult, Stage

__all__ = ["ChunkOutcome", "ChunkTask", "failure_reason", "run_chunk"]


@dataclass(frozen=True)
class ChunkTask:
    """One task: scans ``start:stop`` of the output, of which ``local`` (positions in the chunk) are computed."""

    stage: type[Stage]
    params: Any
    variables: dict[str, Var]
    inputs: tuple[TaskInput, ...]  # positions: one per scan of ``scans``
    output: tuple[str, str]  # (catalog path, node)
    start: int
    stop: int
    local: tuple[int, ...]
    scans: np.ndarray  # identities of the scans computed, as ``local``
    seed: int
    stream: int
    time_limit: float | None = None  # seconds per scan; computed in a child process when set


@dataclass
class ChunkOutcome:
    start: int
    stop: int
    ok: list[Any] = field(default_factory=list)
    failed: dict[Any, str] = field(default_factory=dict)  # scan identity -> reason
    seconds: float = 0.0
    device: str = "cpu"
    #: why the chunk could not be written (its scans stay pending); "" when it was
    not_written: str = ""
    disk_full: bool = False


def failure_reason(exc: BaseException) -> str:
    """An exception as a scan's failure reason: type, message and where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" [{Path(frame.filename).name}:{frame.lineno}]" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _node_name(inp: TaskInput, i: int = 0) -> str:
    return inp.nodes[i]


def _variables(ds: xr.Dataset, inp: TaskInput) -> list[str]:
    spec = inp.spec
    if spec.loads_all:
        return list(ds.data_vars)
    names = [v for v in spec.variables] + [v for v in spec.optional if v in ds]
    if spec.sees_failures:
        names += [v for v in ("status", "reason") if v in ds and v not in names]
    return names


class _Opened:
    """The task's inputs, opened lazily (no dask inside a task: a worker's ``.load()`` would
    submit graphs to its own cluster)."""

    def __init__(self, inputs: tuple[TaskInput, ...]) -> None:
        self.inputs = inputs
        self.cats = {inp.catalog: open_catalog(inp.catalog) for inp in inputs}
        self.nodes: dict[str, list[xr.Dataset | None]] = {}
        for inp in inputs:
            cat = self.cats[inp.catalog]
            if inp.form == "set":
                self.nodes[inp.name] = [None] * len(inp.nodes)  # members opened as needed
            else:
                opened = []
                for node in inp.nodes:
                    ds = cat.open(node, chunks=None)
                    ds.attrs["node"] = f"{inp.catalog}:{node}"
                    opened.append(ds)
                self.nodes[inp.name] = opened

    def member(self, inp: TaskInput, i: int) -> xr.Dataset:
        got = self.nodes[inp.name][i]
        if got is None:
            got = self.cats[inp.catalog].open(inp.nodes[i], chunks=None)
            got.attrs["node"] = f"{inp.catalog}:{inp.nodes[i]}"
            self.nodes[inp.name][i] = got
        return got

    def screen(self, scans: np.ndarray) -> dict[int, str]:
        """Positions (in ``scans``) that cannot be computed, with the reason."""
        failed: dict[int, str] = {}
        for inp in self.inputs:
            if inp.form in ("whole", "set") or inp.spec.sees_failures:
                continue
            for k, ds in enumerate(self.nodes[inp.name]):
                pos = inp.positions[k]
                node = _node_name(inp, k)
                for p in np.flatnonzero(pos < 0):
                    failed.setdefault(int(p), f"scan {scans[p]} is not in {node}")
                have = np.flatnonzero(pos >= 0)
                if "status" not in ds or len(have) == 0:
                    continue
                status = np.asarray(ds["status"].isel(scan=pos[have]).values)
                bad = have[status != STATUS_OK]
                if len(bad):
                    reasons = np.asarray(ds["reason"].isel(scan=pos[bad]).values) if "reason" in ds else None
                    for j, p in enumerate(bad):
                        why = str(reasons[j]) if reasons is not None and reasons[j] else "not computed"
                        failed.setdefault(int(p), f"failed upstream in {node}: {why}")
        return failed

    def load(self, rows: np.ndarray) -> dict[str, Any]:
        """The inputs of the scans at ``rows`` (positions in the task's scans), loaded."""
        out: dict[str, Any] = {}
        for inp in self.inputs:
            if inp.form == "whole":
                out[inp.name] = self.nodes[inp.name][0]
            elif inp.form == "set":
                out[inp.name] = [self.member(inp, int(m)).load() for m in inp.positions[0][rows]]
            else:
                loaded = [self._load_node(inp, k, ds, rows) for k, ds in enumerate(self.nodes[inp.name])]
                out[inp.name] = loaded if inp.form == "many" else loaded[0]
        return out

    @staticmethod
    def _load_node(inp: TaskInput, k: int, ds: xr.Dataset, rows: np.ndarray) -> xr.Dataset:
        pos = inp.positions[k][rows]
        names = _variables(ds, inp)
        if (pos >= 0).all():
            return ds[names].isel(scan=pos).load()
        # only an input that sees failures gets here: scans it lacks come as failed ones
        part = ds[names].isel(scan=pos[pos >= 0]).load()
        full = part.isel(scan=np.zeros(len(pos), dtype=int)).copy(deep=True)
        for name, var in full.data_vars.items():
            var.values[pos < 0] = fill_value(var.dtype)
            var.values[pos >= 0] = part[name].values
        if "status" in full:
            full["status"].values[pos < 0] = STATUS_FAILED
        if "reason" in full:
            full["reason"].values[pos < 0] = f"not in {_node_name(inp, k)}"
        return full

    def not_finite(self, loaded: dict[str, Any], scans: np.ndarray) -> dict[int, str]:
        """Rows whose declared variables hold NaN or infinity."""
        failed: dict[int, str] = {}
        for inp in self.inputs:
            if not inp.spec.variables or inp.form == "whole":
                continue
            if inp.spec.sees_failures:
                continue
            datasets = loaded[inp.name] if inp.form in ("set", "many") else [loaded[inp.name]]
            if inp.form == "set":  # one dataset per scan
                for p, ds in enumerate(datasets):
                    for v in inp.spec.variables:
                        arr = np.asarray(ds[v].values) if v in ds else np.zeros(1)
                        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                            failed.setdefault(p, f"scan {scans[p]} ({ds.attrs.get('node', '')}): {v!r} holds "
                                                 "NaN or infinite values")
                continue
            for k, ds in enumerate(datasets):
                for v in inp.spec.variables:
                    if v not in ds:
                        continue
                    arr = np.asarray(ds[v].values)
                    if arr.dtype.kind not in "fc":
                        continue
                    finite = np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
                    for p in np.flatnonzero(~finite):
                        failed.setdefault(int(p), f"scan {scans[p]} of {_node_name(inp, k)}: {v!r} holds NaN "
                                                  "or infinite values")
        return failed


def _subset(loaded: dict[str, Any], keep: np.ndarray, inputs: tuple[TaskInput, ...]) -> dict[str, Any]:
    out = {}
    for inp in inputs:
        value = loaded[inp.name]
        if inp.form == "whole":
            out[inp.name] = value
        elif inp.form == "set":
            out[inp.name] = [value[int(i)] for i in keep]
        elif inp.form == "many":
            out[inp.name] = [ds.isel(scan=keep) for ds in value]
        else:
            out[inp.name] = value.isel(scan=keep)
    return out


def _check_result(result: ChunkResult, variables: dict[str, Var], n: int, stage: str) -> None:
    if not isinstance(result, ChunkResult):
        raise TypeError(f"stage {stage} returned {type(result).__name__}, not ChunkResult")
    for name, var in variables.items():
        if name not in result.values:
            raise ValueError(f"stage {stage} did not return variable {name!r}")
        got = np.shape(result.values[name])
        if got != (n, *var.shape):
            raise ValueError(f"stage {stage} returned {name!r} of shape {got}, expected {(n, *var.shape)}")


def _compute(task: ChunkTask, inputs: dict[str, Any], scans: np.ndarray) -> tuple[dict, dict[int, str]]:
    if task.time_limit is not None:
        from dataclasses import replace

        from cdiplatform.pipeline.isolation import call_in_child

        return call_in_child(_compute, replace(task, time_limit=None), inputs, scans,
                             timeout=task.time_limit * len(scans))
    stage = task.stage(seed=stage_seed_sequence(task.seed, task.stream))
    rngs = scan_rngs(task.seed, task.stream, scans)
    result = stage.compute(task.params, inputs, scans, rngs)
    _check_result(result, task.variables, len(scans), task.stage.name)
    return result.values, dict(result.failed)


def run_chunk(task: ChunkTask) -> ChunkOutcome:
    """Screen, compute and write the scans ``task.local`` of a chunk; never raises for a bad scan.

    The clean scans are computed in one call; if that call raises, each is
    tried alone so that one bad scan does not take its neighbours down. The
    whole chunk is written with ``done`` last, so a task killed in between
    leaves its chunk to be redone.
    """
    t0 = time.perf_counter()
    out = ChunkOutcome(task.start, task.stop)
    if task.stage.uses_torch:
        import torch

        out.device = "cuda" if torch.cuda.is_available() else "cpu"
    scans = np.asarray(task.scans)
    n = len(scans)
    opened = _Opened(task.inputs)
    failed = opened.screen(scans)
    rows = np.array([p for p in range(n) if p not in failed], dtype=np.int64)
    loaded = opened.load(rows) if len(rows) else {}
    for p, why in (opened.not_finite(loaded, scans[rows]) if len(rows) else {}).items():
        failed[int(rows[p])] = why
    keep = np.array([j for j, p in enumerate(rows) if int(p) not in failed], dtype=np.int64)
    clean = rows[keep]
    if len(keep) < len(rows):
        loaded = _subset(loaded, keep, task.inputs)

    values = {name: np.empty((n, *v.shape), dtype=v.numpy_dtype) for name, v in task.variables.items()}
    seconds = np.zeros(n, dtype=np.float32)
    if len(clean):
        t1 = time.perf_counter()
        try:
            vals, bad = _compute(task, loaded, scans[clean])
        except Exception:  # noqa: BLE001 - isolate the scan that broke the batch
            for j, p in enumerate(clean):
                t2 = time.perf_counter()
                try:
                    one, bad1 = _compute(task, _subset(loaded, np.array([j]), task.inputs), scans[[p]])
                except Exception as exc:  # noqa: BLE001
                    failed[int(p)] = failure_reason(exc)
                else:
                    for name in values:
                        values[name][p] = one[name][0]
                    if bad1:
                        failed[int(p)] = next(iter(bad1.values()))
                seconds[p] = time.perf_counter() - t2
        else:
            for name in values:
                values[name][clean] = vals[name]
            for j, why in bad.items():
                failed[int(clean[j])] = why
            seconds[clean] = (time.perf_counter() - t1) / len(clean)
    for name, var in task.variables.items():
        for p in failed:
            values[name][p] = fill_value(var.numpy_dtype)

    try:
        cat = open_catalog(task.output[0], mode="a")
        cat.write_chunk(task.output[1], start=task.start, stop=task.stop, variables=task.variables,
                        local=list(task.local), values=values, failed=failed, seconds=seconds.tolist())
    except Exception as exc:  # noqa: BLE001 - reported by the driver for every scan of the chunk
        import errno

        out.not_written = f"{type(exc).__name__}: {exc}"
        out.disk_full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        out.seconds = time.perf_counter() - t0
        return out
    out.failed = {_plain(scans[p]): r for p, r in failed.items()}
    out.ok = [_plain(scans[p]) for p in range(n) if p not in failed]
    out.seconds = time.perf_counter() - t0
    return out


def _plain(scan: Any) -> Any:
    return scan.item() if isinstance(scan, np.generic) else scan
