"""A stage's inputs, resolved once by the driver: opened, identified, hashed, and joined on ``scan``.

Every input of a job is alike, whatever it holds (a collection, a result, a
model, a node set ``raw/<beamtime>/*``): the driver resolves its path against
its own working directory once, records it in the provenance with its content
hash, folds its identity into the run hash, and hands tasks an absolute path
(:class:`TaskInput`), so that a worker started anywhere finds it.

Per-scan inputs are joined on the scans' identities: the first per-scan input
of a stage (its *primary* one) gives the output its scans; for every input,
the driver computes where each output scan sits in it (``-1`` where it does
not). An input the stage declares ``joined=False`` is read whole, scans and
all, like a model (form ``"whole"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cdiplatform.catalog import Catalog, CatalogError, is_node_set, node_kind, open_catalog
from cdiplatform.catalog.provenance import stable_hash
from cdiplatform.errors import JobError
from cdiplatform.pipeline.stage import Input

__all__ = ["ResolvedInput", "TaskInput", "resolve_inputs", "select_scans"]


@dataclass(frozen=True)
class TaskInput:
    """What a task needs to read one input: absolute catalog path, nodes, and where its scans are.

    ``form`` is ``"one"`` (a node), ``"set"`` (a node set: one node per scan),
    ``"many"`` (a list of nodes, each joined on ``scan``) or ``"whole"`` (a
    node without scans, such as a model). ``positions`` holds, per node
    (``set``: one array of member indices), the position of each of the
    task's scans, ``-1`` where the node lacks it.
    """

    name: str
    spec: Input
    catalog: str
    form: str
    nodes: tuple[str, ...]
    positions: tuple[np.ndarray, ...] = ()

    def ref(self, i: int = 0) -> str:
        return f"{self.catalog}:{self.nodes[i]}"


@dataclass
class ResolvedInput:
    """An input as the driver sees it: lazily opened datasets for ``validate`` and ``plan``, scans, records."""

    spec: Input
    catalog: Path
    form: str
    nodes: list[str]
    datasets: Any  # Dataset (one, whole), list of Datasets (set, many)
    scans: list[np.ndarray]  # per node its scan identities (set: one array of member identities)
    record: dict[str, Any]
    identity: Any

    @property
    def per_scan(self) -> bool:
        return self.form != "whole"

    def positions(self, scans: np.ndarray) -> tuple[np.ndarray, ...]:
        """Where each of ``scans`` sits in each node of this input (-1 where missing)."""
        return tuple(np.asarray(pd.Index(ids).get_indexer(scans), dtype=np.int64) for ids in self.scans)

    def task_input(self, name: str, scans: np.ndarray | None) -> TaskInput:
        positions = () if scans is None or not self.per_scan else self.positions(scans)
        return TaskInput(name, self.spec, str(self.catalog), self.form, tuple(self.nodes), positions)


def _record(cat: Catalog, node: str) -> tuple[dict[str, Any], Any]:
    attrs = cat.attrs(node)
    content = cat.content_hash(node)
    record: dict[str, Any] = {"node": f"{cat.path}:{node}", "kind": node_kind(node), "content_hash": content}
    if node_kind(node) == "model":
        for key in ("weights_hash", "architecture"):
            if key in attrs:
                record[key] = attrs[key]
    run = attrs.get("run", {})
    if run and not run.get("complete", True) and node_kind(node) == "model":
        raise CatalogError(f"{node}: the model's training has not finished (a checkpoint, not a model)")
    # a run's identity fixes its content (and lets it grow): keying on it lets a downstream stage
    # resume after failed input scans were retried, and take scans appended later
    identity = run.get("hash") or content
    return record, identity


def _open_one(cat: Catalog, node: str) -> xr.Dataset:
    ds = cat.open(node)
    ds.attrs["node"] = f"{cat.path}:{node}"
    return ds


def resolve_inputs(job: Any, stage_spec: Any, catalog: Path) -> dict[str, ResolvedInput]:
    """Open, identify and hash every input of a stage; errors name the job file, the stage and the input."""
    out: dict[str, ResolvedInput] = {}
    specs = {i.name: i for i in stage_spec.stage.input_specs()}
    for name, refs in stage_spec.inputs.items():
        spec = specs[name]
        where = f"{job.path}: {stage_spec.label}: inputs.{name}"
        try:
            out[name] = _resolve(spec, refs, catalog)
        except CatalogError as exc:
            raise JobError(f"{where}: {exc}") from None
    return out


def _resolve(spec: Input, refs: Any, catalog: Path) -> ResolvedInput:
    many = isinstance(refs, list)
    items = refs if many else [refs]
    cat_paths = {Path(r.resolve(catalog)[0]).resolve() for r in items}
    if len(cat_paths) != 1:
        raise CatalogError("the nodes of one input must be in one catalog")
    cat_path = cat_paths.pop()
    cat = open_catalog(cat_path)
    nodes = [r.node for r in items]
    if not many and is_node_set(nodes[0]):
        members = cat.expand(nodes[0])
        datasets = [_open_one(cat, m) for m in members]
        hashes = [cat.content_hash(m) for m in members]
        record = {"node": f"{cat.path}:{nodes[0]}", "kind": "raw", "members": members,
                  "content_hash": stable_hash(hashes)}
        ids = np.array([m.split("/", 1)[1] for m in members], dtype=object)  # "<beamtime>/<scan>"
        return ResolvedInput(spec, cat_path, "set", members, datasets, [ids], record, {"set": nodes[0]})
    records, identities, datasets, scans = [], [], [], []
    for node in nodes:
        ds = _open_one(cat, node)
        record, identity = _record(cat, node)
        records.append(record)
        identities.append(identity)
        datasets.append(ds)
        scans.append(np.asarray(ds["scan"].values) if "scan" in ds.dims else np.array([]))
    if many:
        return ResolvedInput(spec, cat_path, "many", nodes, datasets, scans, {"nodes": records}, identities)
    form = "one" if "scan" in datasets[0].dims and spec.joined else "whole"
    return ResolvedInput(spec, cat_path, form, nodes, datasets[0], scans if form == "one" else [],
                         records[0], identities[0])


def select_scans(resolved: ResolvedInput, select: tuple | None) -> ResolvedInput:
    """The primary input restricted to the positions ``select`` (``start:stop:step`` along ``scan``)."""
    if select is None:
        return resolved
    sl = slice(*select)
    if resolved.form == "set":
        members = resolved.nodes[sl]
        if not members:
            raise CatalogError(f"select {list(select)} leaves no scan of {resolved.record['node']}")
        return ResolvedInput(resolved.spec, resolved.catalog, "set", members, resolved.datasets[sl],
                             [resolved.scans[0][sl]], {**resolved.record, "select": list(select)},
                             {**resolved.identity, "select": list(select)})
    ds = resolved.datasets.isel(scan=sl)
    if ds.sizes["scan"] == 0:
        raise CatalogError(f"select {list(select)} leaves no scan of {resolved.record['node']}")
    ds.attrs = dict(resolved.datasets.attrs)
    return ResolvedInput(resolved.spec, resolved.catalog, resolved.form, resolved.nodes, ds,
                         resolved.scans, {**resolved.record, "select": list(select)},
                         [resolved.identity, list(select)])

