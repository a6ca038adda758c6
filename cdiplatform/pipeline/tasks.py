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

from cdiplatform.catalog import open_catalog
from cdiplatform.catalog.models import read_model, write_model
from cdiplatform.catalog.provenance import history_line, now
from cdiplatform.pipeline.chunks import failure_reason

__all__ = ["NodeWriter", "SingleTask", "run_single"]


@dataclass(frozen=True)
class SingleTask:
    stage: type
    params: Any
    inputs: dict[str, tuple[str, Any, Any]]
    output: tuple[str, str]
    attrs: dict[str, Any]  # provenance and run record, written with every checkpoint
    resume: bool


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


def run_single(task: SingleTask) -> dict[str, Any]:
    """Run a task stage on a worker; returns its summary, or ``{"failed": reason}``."""
    t0 = time.perf_counter()
    opened = {}
    for name, (path, node, select) in task.inputs.items():
        ds = open_catalog(path).open(node, chunks=None)  # no dask inside a task
        ds.attrs["node"] = f"{path}:{node}"
        opened[name] = ds.isel(scan=slice(*select)) if select is not None else ds
    resume = None
    if task.resume:
        arrays, _ = read_model(open_catalog(task.output[0]), task.output[1], prefix=None)
        resume = arrays
    writer = NodeWriter(task.output[0], task.output[1], task.attrs)
    try:
        summary = task.stage().run(task.params, opened, writer, resume)
    except Exception as exc:  # noqa: BLE001 - reported as the stage's failure; checkpoints stay
        return {"failed": failure_reason(exc), "seconds": time.perf_counter() - t0}
    return {**summary, "seconds": time.perf_counter() - t0}
