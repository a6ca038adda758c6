"""What a report shows, read from a catalog: groups of methods compared on the same scans.

A *group* is one table of the summary page and one folder of scan pages:

- a ``benchmarks/<id>`` node, with the result node of each of its methods
  (its ``methods`` attribute) and its ``collection``;
- or the ``results/<run>`` nodes of one collection that no benchmark of the
  report names (their table is made from their own ``chi``, errors, ``seconds``
  and ``status``).

Post-processing nodes (``method = "postprocess"``, or a ``strain`` variable)
are not methods: each is attached to the result node it was made from (its
``collection`` attribute, the primary input of its stage, names that result)
and gives that method its strain. Whatever a reference points to that is not
there becomes a note, never an error; only a node the caller names that does
not exist, or is of a kind the report cannot show, is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog import (
    STATUS_MEANINGS,
    Catalog,
    CatalogError,
    NodeNotFoundError,
    check_node_path,
    node_kind,
    open_catalog,
    parse_node_ref,
)
from cdiplatform.errors import ReportError
from cdiplatform.report.names import safe_name

__all__ = ["Group", "Method", "NodeRef", "Sources", "Table", "select_groups", "table_from_benchmark"]

#: per (scan, method) numbers of a benchmark node, in table order
BENCHMARK_VALUES = ("chi", "llk", "amplitude_error", "phase_error", "seconds", "iterations",
                    "agreement_iou", "agreement_phase_rms")
#: numbers of a result node's own scans, for groups without a benchmark
RESULT_VALUES = ("chi", "llk", "amplitude_error", "phase_error", "seconds", "iterations")
_STATUS = dict(enumerate(STATUS_MEANINGS.split()))
#: largest zarr chunk of one variable that Sources.scan_values keeps in memory
BLOCK_BYTES = 128 * 2**20


@dataclass(frozen=True)
class NodeRef:
    """A node of a catalog (the report's, or one a reference points into)."""

    catalog: Catalog
    node: str

    @property
    def key(self) -> tuple[str, str]:
        return str(self.catalog.path.resolve()), self.node


@dataclass
class Method:
    """One method of a group: its label, its result node and the post-processing made from it."""

    label: str
    result: NodeRef | None
    postprocess: NodeRef | None = None


@dataclass
class Table:
    """Per-scan, per-method values of a group, as its node holds them.

    Attributes
    ----------
    scans : list
        Scan identities (int or str), rows.
    methods : list of str
        Columns.
    values : dict of str to ndarray
        ``(n_scans, n_methods)`` float arrays, NaN where unknown.
    flags, reasons : ndarray
        ``(n_scans, n_methods)`` text: quality flag (benchmarks) or run status (results), and why.
    flag_name : str
        ``"flag"`` or ``"status"``.
    """

    scans: list[Any]
    methods: list[str]
    values: dict[str, np.ndarray]
    flags: np.ndarray
    reasons: np.ndarray
    flag_name: str = "flag"

    def __post_init__(self) -> None:
        self._rows = {scan: i for i, scan in enumerate(self.scans)}

    def row(self, scan: Any) -> int:
        """The row of a scan (its identity)."""
        return self._rows[scan]


@dataclass
class Group:
    """One table of the summary page and the scan pages under it."""

    key: str
    title: str
    benchmark: NodeRef | None
    collection: NodeRef | None
    collection_ref: str
    methods: dict[str, Method]
    table: Table
    notes: list[str] = field(default_factory=list)


def scan_ids(values: Any) -> list[Any]:
    """Scan identities as Python ints or strs (what pages and comparisons use)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return [int(v) for v in arr]
    return [str(v) for v in arr]


class Sources:
    """Opens the nodes of a catalog, and of catalogs its references point into, once each.

    Parameters
    ----------
    catalog : Catalog
        The report's catalog. A reference ``PATH:NODE`` to a catalog that is
        not there any more (a catalog moved or copied) is looked up in it.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._catalogs = {str(catalog.path.resolve()): catalog}
        self._datasets: dict[tuple[str, str], xr.Dataset] = {}
        self._attrs: dict[tuple[str, str], dict[str, Any]] = {}
        self._positions: dict[tuple[str, str], dict[Any, int]] = {}
        self._blocks: dict[tuple[str, str, str], tuple[int, np.ndarray]] = {}

    def name(self, ref: NodeRef) -> str:
        """The node as pages show it: its path, with its catalog when that is another one."""
        return ref.node if ref.catalog is self.catalog else f"{ref.catalog.path}:{ref.node}"

    def resolve(self, ref: str | None) -> NodeRef | None:
        """The node a recorded reference (``NODE`` or ``CATALOG:NODE``) names, or None if it is not there."""
        if not ref:
            return None
        try:
            path, node = parse_node_ref(str(ref), default_catalog=self.catalog.path)
        except CatalogError:
            return None
        cat = self._catalog(path)
        if cat is not None and node in cat:
            return NodeRef(cat, node)
        if cat is not self.catalog and node in self.catalog:
            return NodeRef(self.catalog, node)
        return None

    def _catalog(self, path: Path) -> Catalog | None:
        key = str(Path(path).resolve())
        if key not in self._catalogs:
            try:
                self._catalogs[key] = open_catalog(path)
            except CatalogError:
                self._catalogs[key] = None  # type: ignore[assignment]
        return self._catalogs[key]

    def open(self, ref: NodeRef) -> xr.Dataset:
        """The node, lazily indexed (no dask): a scan's arrays are read when taken."""
        if ref.key not in self._datasets:
            self._datasets[ref.key] = ref.catalog.open(ref.node, chunks=None)
        return self._datasets[ref.key]

    def position(self, ref: NodeRef, scan: Any) -> int | None:
        """Where a scan (its identity) sits in a node, or None if the node does not hold it."""
        if ref.key not in self._positions:
            self._positions[ref.key] = {s: i for i, s in enumerate(scan_ids(self.open(ref)["scan"].values))}
        return self._positions[ref.key].get(scan)

    def scan_values(self, ref: NodeRef, name: str, pos: int) -> np.ndarray:
        """One scan's values of a variable. The zarr chunk holding it is read whole and kept (one per
        variable, up to ``BLOCK_BYTES``): scan pages go in scan order, and a chunk read for every scan
        would be decompressed once per scan."""
        var = self.open(ref)[name]
        chunk = int((var.encoding.get("chunks") or (1,))[0])
        if chunk * var.dtype.itemsize * int(np.prod(var.shape[1:])) > BLOCK_BYTES:
            return np.asarray(var.isel(scan=pos).values)
        start = pos // chunk * chunk
        key = (*ref.key, name)
        if key not in self._blocks or self._blocks[key][0] != start:
            self._blocks[key] = (start, np.asarray(var.isel(scan=slice(start, start + chunk)).values))
        return self._blocks[key][1][pos - start]

    def attrs(self, ref: NodeRef) -> dict[str, Any]:
        if ref.key not in self._attrs:
            self._attrs[ref.key] = ref.catalog.attrs(ref.node)
        return self._attrs[ref.key]

    def is_postprocess(self, ref: NodeRef) -> bool:
        """Whether a result node was made by post-processing (``method = "postprocess"``, or it holds strain)."""
        if self.attrs(ref).get("method") == "postprocess":
            return True
        return "strain" in self.open(ref).data_vars

    def postprocess_source(self, ref: NodeRef) -> NodeRef | None:
        """The result a post-processing node was made from: its ``source`` (the postprocess stage's
        record) or ``result`` attribute, else its ``collection`` (the runner records a stage's primary
        input there), whichever names a result node."""
        attrs = self.attrs(ref)
        for key in ("source", "result", "collection"):
            found = self.resolve(attrs.get(key))
            if found is not None and node_kind(found.node) == "result":
                return found
        return None


def table_from_benchmark(ds: xr.Dataset) -> Table:
    """The per-scan, per-method values, flags and reasons of a benchmark node."""
    methods = [str(m) for m in np.asarray(ds["method"].values)]
    scans = scan_ids(ds["scan"].values)
    shape = (len(scans), len(methods))

    def grid(name: str, dtype: Any, fill: Any) -> np.ndarray:
        if name not in ds or set(ds[name].dims) != {"scan", "method"}:
            return np.full(shape, fill, dtype=dtype)
        return np.asarray(ds[name].transpose("scan", "method").values).astype(dtype)

    values = {name: grid(name, float, np.nan) for name in BENCHMARK_VALUES if name in ds}
    if "method_seconds" in ds:  # the benchmark's per-method times (its own "seconds" is the run's bookkeeping)
        values["seconds"] = grid("method_seconds", float, np.nan)
    flags = grid("flag", object, "")
    reasons = grid("flag_reason", object, "")
    return Table(scans, methods, values, flags, reasons, "flag")


def _table_from_results(sources: Sources, methods: dict[str, Method]) -> Table:
    per_method = {}
    scans: dict[Any, None] = {}
    for label, method in methods.items():
        ds = sources.open(method.result)  # type: ignore[arg-type]
        ids = scan_ids(ds["scan"].values)
        scans.update(dict.fromkeys(ids))
        per_method[label] = (ids, ds)
    order = list(scans)
    rows = {s: i for i, s in enumerate(order)}
    shape = (len(order), len(methods))
    values = {name: np.full(shape, np.nan) for name in RESULT_VALUES}
    flags = np.full(shape, "", dtype=object)
    reasons = np.full(shape, "", dtype=object)
    for col, (label, (ids, ds)) in enumerate(per_method.items()):
        at = np.array([rows[s] for s in ids], dtype=np.int64)
        for name in RESULT_VALUES:
            if name in ds and ds[name].dims == ("scan",):
                values[name][at, col] = np.asarray(ds[name].values, dtype=float)
        if "status" in ds:
            flags[at, col] = [_STATUS.get(int(s), str(s)) for s in np.asarray(ds["status"].values)]
        if "reason" in ds:
            reasons[at, col] = [str(r) for r in np.asarray(ds["reason"].values)]
    values = {k: v for k, v in values.items() if np.isfinite(v).any() or k in ("chi", "seconds")}
    return Table(order, list(methods), values, flags, reasons, "status")


def select_groups(sources: Sources, nodes: Sequence[str] | None = None) -> tuple[list[Group], list[str]]:
    """The groups a report shows, and notes on what is missing.

    Parameters
    ----------
    sources : Sources
    nodes : sequence of str, optional
        Benchmark, result and collection nodes of the catalog (a collection
        stands for every benchmark and result made from it; a post-processing
        node for the result it was made from). Default: every benchmark and
        result.

    Raises
    ------
    NodeNotFoundError
        A named node that the catalog does not hold.
    ReportError
        A named node of a kind the report does not show (models, raw scans, training sets).
    """
    cat = sources.catalog
    notes: list[str] = []
    results_all = cat.nodes("result")
    if nodes is None:
        wanted = cat.nodes("benchmark") + results_all
    else:
        wanted = []
        for node in nodes:
            ref = NodeRef(cat, check_node_path(node))
            if ref.node not in cat:
                raise NodeNotFoundError(f"{cat.path}: no node {ref.node!r}")
            kind = node_kind(ref.node)
            if kind == "collection":
                made = [n for n in cat.nodes("benchmark") + results_all
                        if _collection_key(sources, NodeRef(cat, n)) == ref.key]
                if not made:
                    notes.append(f"{ref.node}: no benchmark or result made from it")
                wanted.extend(made)
            elif kind in ("benchmark", "result"):
                wanted.append(ref.node)
            else:
                raise ReportError(f"{node}: a {kind} node; a report shows benchmarks, results and collections")
    wanted = list(dict.fromkeys(wanted))

    # post-processing nodes, by the result they were made from (every one in the catalog)
    post: dict[tuple[str, str], NodeRef] = {}
    for node in results_all:
        ref = NodeRef(cat, node)
        if not sources.is_postprocess(ref):
            continue
        source = sources.postprocess_source(ref)
        if source is None:
            attrs = sources.attrs(ref)
            recorded = attrs.get("source") or attrs.get("result") or attrs.get("collection")
            notes.append(f"{node}: post-processing node whose source result {recorded!r} is not there")
            continue
        if source.key in post:
            notes.append(f"{sources.name(source)}: several post-processing nodes; showing {node}")
        post[source.key] = ref
        if node in wanted and source.catalog is cat:  # a post-processing node stands for its result
            wanted.append(source.node)
    wanted = [n for n in dict.fromkeys(wanted)
              if node_kind(n) == "benchmark" or not sources.is_postprocess(NodeRef(cat, n))]

    groups: list[Group] = []
    claimed: set[tuple[str, str]] = set()
    for node in (n for n in wanted if node_kind(n) == "benchmark"):
        group = _benchmark_group(sources, NodeRef(cat, node), post)
        claimed.update(m.result.key for m in group.methods.values() if m.result is not None)
        groups.append(group)

    by_collection: dict[str, list[NodeRef]] = {}
    for node in (n for n in wanted if node_kind(n) == "result"):
        ref = NodeRef(cat, node)
        if ref.key in claimed:
            continue
        by_collection.setdefault(str(sources.attrs(ref).get("collection", "")), []).append(ref)
    for recorded, refs in by_collection.items():
        groups.append(_results_group(sources, recorded, refs, post))
    if not groups:
        notes.append(f"{cat.path}: no benchmark and no result to show")
    seen: dict[str, int] = {}
    for group in groups:  # results of two catalogs' collections of one name
        seen[group.key] = seen.get(group.key, 0) + 1
        if seen[group.key] > 1:
            group.key = f"{group.key}-{seen[group.key]}"
    return groups, notes


def _collection_key(sources: Sources, ref: NodeRef) -> tuple[str, str] | None:
    found = sources.resolve(sources.attrs(ref).get("collection"))
    return None if found is None else found.key


def _benchmark_group(sources: Sources, bench: NodeRef, post: dict[tuple[str, str], NodeRef]) -> Group:
    attrs = sources.attrs(bench)
    notes: list[str] = []
    table = table_from_benchmark(sources.open(bench))
    recorded = dict(attrs.get("methods") or {})
    if not recorded:
        notes.append(f"{bench.node}: no 'methods' attribute naming the result nodes: no scan figures")
    methods: dict[str, Method] = {}
    for label in table.methods:
        ref = sources.resolve(recorded.get(label))
        if ref is None and label in recorded:
            notes.append(f"{bench.node}: the result of {label}, {recorded[label]}, is not there")
        method = Method(label, ref, post.get(ref.key) if ref is not None else None)
        methods[label] = method
    collection_ref = str(attrs.get("collection", ""))
    collection = sources.resolve(collection_ref)
    if collection is None:
        notes.append(f"{bench.node}: its collection {collection_ref or '(none recorded)'} is not there: "
                     "no truth and no scan metadata")
    name = bench.node.split("/", 1)[1]
    return Group(safe_name(f"benchmark-{name}"), f"benchmark {name}", bench, collection, collection_ref,
                 methods, table, notes)


def _results_group(sources: Sources, recorded: str, refs: list[NodeRef],
                   post: dict[tuple[str, str], NodeRef]) -> Group:
    notes: list[str] = []
    methods: dict[str, Method] = {}
    for ref in refs:
        label = str(sources.attrs(ref).get("method") or ref.node.split("/", 1)[1])
        if label in methods:
            label = f"{label} ({ref.node.split('/', 1)[1]})"
        methods[label] = Method(label, ref, post.get(ref.key))
    collection = sources.resolve(recorded)
    shown = collection.node if collection is not None else (recorded.rsplit(":", 1)[-1] or "(no collection)")
    if collection is None:
        notes.append(f"results of {recorded or '(no collection recorded)'}: the collection is not there: "
                     "no truth and no scan metadata")
    notes.append(f"results of {shown}: no benchmark node; the table holds the results' own values")
    table = _table_from_results(sources, methods)
    name = shown.split("/", 1)[-1]
    return Group(safe_name(f"results-{name}"), f"results of {shown}", None, collection, recorded, methods,
                 table, notes)

