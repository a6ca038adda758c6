"""Stages that run as one task (:class:`~cdiplatform.pipeline.stage.TaskStage`), such as a training.

The task writes its output node whole, through a :class:`NodeWriter`: every
checkpoint replaces the node atomically (the catalog renames a finished copy
into place), with ``run.complete`` false until the final write. A resumed run
hands the stage the arrays of the last checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cdiplatform.catalog import STATUS_OK, open_catalog
from cdiplatform.catalog.models import read_model, write_model
from cdiplatform.catalog.provenance import history_line, now
from cdiplatform.pipeline.chunks import failure_reason
from cdiplatform.pipeline.inputs import TaskInput
from cdiplatform.pipeline.randomness import stage_seed_sequence
from cdiplatform.pipeline.stage import TaskContext

__all__ = ["NodeWriter", "SingleTask", "run_single"]


@dataclass(frozen=True)
class SingleTask:
    stage: type
    params: Any
    inputs: tuple[TaskInput, ...]
    records: dict[str, dict[str, Any]]
    output: tuple[str, str]
    attrs: dict[str, Any]  # provenance and run record, written with every checkpoint
    resume: bool
    seed: int
    stream: int


class NodeWriter:
    """Writes the task's output node; every call replaces it whole and atomically."""

    def __init__(self, catalog: str, node: str, attrs: dict[str, Any]) -> None:
        self.catalog, self.node = catalog, node
        self.base = attrs
        self.checkpoints = 0

    def write(self, arrays: dict[str, np.ndarray], attrs: dict[str, Any], *, complete: bool) -> None:
        """Replace the node by ``arrays`` with the base attributes updated by ``attrs``."""
        merged = {**self.base, **attrs}
        merged["run"] = {**self.base.get("run", {}), "complete": complete}
        merged["provenance"] = {**self.base.get("provenance", {}), "finished": now() if complete else None}
        merged["history"] = history_line("finished" if complete else f"checkpoint {self.checkpoints + 1}")
        write_model(open_catalog(self.catalog, mode="a"), self.node, arrays, attrs=merged)
        self.checkpoints += 1


def _context(task: SingleTask, writer: NodeWriter, resume) -> TaskContext:
    inputs, streams, valid = {}, {}, {}
    for inp in task.inputs:
        cat = open_catalog(inp.catalog)
        node = inp.nodes[0]
        ds = cat.open(node, chunks=None)  # no dask inside a task
        ds.attrs["node"] = inp.ref()
        inputs[inp.name] = ds
        streams[inp.name] = {v: cat.array(node, v) for v in inp.spec.streamed}
        if "status" in ds:
            valid[inp.name] = np.flatnonzero(np.asarray(ds["status"].values) == STATUS_OK)
    return TaskContext(inputs=inputs, streams=streams, valid=valid, records=task.records, writer=writer,
                       resume=resume, map=_map_on_cluster)


def _map_on_cluster(fn, items) -> list[Any]:
    """``[fn(item) for item in items]`` as tasks of the cluster this task runs on (one by one outside a worker).

    ``worker_client`` secedes the task's thread while it waits, so the calls may run on its worker too.
    """
    items = list(items)
    try:
        from distributed import get_worker, worker_client

        get_worker()
        in_worker = True
    except (ImportError, ValueError):  # not in a worker: a task stage called directly
        in_worker = False
    if not in_worker or len(items) < 2:
        return [fn(item) for item in items]
    with worker_client() as client:
        return client.gather(client.map(fn, items, pure=False))


def run_single(task: SingleTask) -> dict[str, Any]:
    """Run a task stage on a worker; returns its summary, or ``{"failed": reason}``."""
    t0 = time.perf_counter()
    resume = None
    if task.resume:
        resume, _ = read_model(open_catalog(task.output[0]), task.output[1], prefix=None)
    writer = NodeWriter(task.output[0], task.output[1], task.attrs)
    stage = task.stage(seed=stage_seed_sequence(task.seed, task.stream))
    try:
        summary = stage.run(task.params, _context(task, writer, resume))
    except Exception as exc:  # noqa: BLE001 - reported as the stage's failure; checkpoints stay
        return {"failed": failure_reason(exc), "seconds": time.perf_counter() - t0}
    return {**summary, "seconds": time.perf_counter() - t0}
