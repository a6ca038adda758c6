"""``build_report``: a static HTML site of a catalog's benchmarks and results, figures as files beside it.

The site needs no server and loads nothing from the internet: pages link a
local style sheet and PNG figures by relative paths, and hold no script::

    OUT/index.html                     the summary: every group's table, histograms, times, provenance
    OUT/style.css
    OUT/scans/<group>/<scan>.html      a page per scan: slices per method, convergence, provenance
    OUT/figures/<group>/...png
    OUT/.cdip-report                   marks the folder as a report (what a rebuild may replace)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cdiplatform.catalog import STATUS_FAILED, STATUS_OK, Catalog, node_kind, open_catalog
from cdiplatform.catalog.provenance import software_info
from cdiplatform.errors import ReportError
from cdiplatform.report import figures as fig
from cdiplatform.report.names import safe_name
from cdiplatform.report.sources import (
    Group,
    Method,
    NodeRef,
    Sources,
    Table,
    select_groups,
    table_from_benchmark,
)

__all__ = ["MARKER", "ReportSite", "benchmark_error_histograms", "build_report"]

#: the file that marks a folder as a report; a rebuild replaces only such folders
MARKER = ".cdip-report"
#: summary-table columns (those a group holds), then the flag
SUMMARY_VALUES = ("chi", "amplitude_error", "phase_error", "seconds")
COLUMN_TITLES = {"chi": "chi", "llk": "llk", "amplitude_error": "amp. err.", "phase_error": "phase err.",
                 "seconds": "s", "iterations": "iter.", "agreement_iou": "IoU vs ref.",
                 "agreement_phase_rms": "phase RMS vs ref."}
#: per-scan collection variables of a simulated gold collection (``simulate_gold``)
GOLD_VARIABLES = ("strained", "phase_range", "phase_residual", "residual_strain")
#: resolution curves a result (or its post-processing) node may hold (``reconstruct``), in page order
RESOLUTION_KINDS = ("prtf", "fsc")
#: scan pages per call of ``map_pages`` (each call opens the catalog and selects the groups again)
PAGES_PER_CALL = 4

#: ``map_pages(fn, items)``: ``[fn(item) for item in items]``, in order, computed wherever it likes
PageMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class ReportSite:
    """A report written to disk.

    Attributes
    ----------
    out : Path
        Its folder.
    index : Path
        The summary page (open it in a browser).
    pages : tuple of Path
        Every page, the summary first.
    figures : tuple of Path
        Every figure.
    notes : tuple of str
        What was missing or left out (also listed on the summary page).
    """

    out: Path
    index: Path
    pages: tuple[Path, ...]
    figures: tuple[Path, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def build_report(catalog: str | os.PathLike | Catalog, *, nodes: Sequence[str] | None = None,
                 out: str | os.PathLike, scan_pages: int | None = None,
                 map_pages: PageMap | None = None) -> ReportSite:
    """Write the HTML report of a catalog's benchmarks and results into ``out``.

    Parameters
    ----------
    catalog : path-like or Catalog
        The catalog (read only).
    nodes : sequence of str, optional
        ``benchmarks/<id>``, ``results/<run>`` or ``collections/<id>`` nodes
        (a collection: everything made from it). Default: every benchmark and result.
    out : path-like
        Folder of the site: created, or replaced when it holds an earlier
        report (it is built beside it and renamed into place).
    scan_pages : int, optional
        At most this many scan pages per group, for its first scans in table
        order (the summary still lists every scan); default every scan. A
        scan page costs about a third of a second a method.
    map_pages : callable, optional
        ``map_pages(fn, items)`` returning ``[fn(item) for item in items]``
        in order: how the scan pages are drawn, :data:`PAGES_PER_CALL` a
        call (the pipeline's report stage spreads them over the cluster's
        workers; each call reads the catalog by its path and writes into
        ``out``'s staging folder, so both must be reachable where it runs).
        Default: one after the other, here.

    Returns
    -------
    ReportSite

    Raises
    ------
    CatalogError
        Not a catalog.
    NodeNotFoundError
        A named node that is not there.
    ReportError
        A named node of a kind a report does not show, or ``out`` is a file
        or a folder that holds something else than a report.
    """
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    out = Path(out)
    if scan_pages is not None and scan_pages < 0:
        raise ReportError(f"scan_pages must be >= 0 (or None: every scan), got {scan_pages}")
    _check_out(out)
    sources = Sources(cat)
    groups, notes = select_groups(sources, nodes)
    with _staging(out) as tmp:
        writer = _Writer(tmp, sources, scan_pages=scan_pages)
        writer.write(groups, notes, nodes=nodes, map_pages=map_pages)
        (tmp / MARKER).write_text(json.dumps({"catalog": str(cat.path.resolve()), "nodes": list(nodes or []),
                                              "generated": writer.generated}) + "\n")
        _replace(tmp, out)
    pages = tuple(out / p.relative_to(tmp) for p in writer.pages)
    figures = tuple(out / p.relative_to(tmp) for p in writer.figures)
    return ReportSite(out, pages[0], pages, figures, tuple(writer.notes))


def benchmark_error_histograms(catalog: str | os.PathLike | Catalog, node: str, path: str | os.PathLike, *,
                               title: str = "", methods: Mapping[str, str] | None = None,
                               dpi: int = 110) -> Path:
    """The error histograms of one benchmark node, as its report draws them, into one PNG (a docs figure).

    Parameters
    ----------
    catalog : path-like or Catalog
        The catalog holding the benchmark (read only).
    node : str
        ``benchmarks/<id>``.
    path : path-like
        PNG to write.
    title : str
        Figure title; default ``"<node>: errors per scan"``.
    methods : mapping of str to str, optional
        The methods to draw (the benchmark's method names) and the legend label of each, in legend order;
        default every method under its own name.
    dpi : int
        Pixels per inch of the PNG.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ReportError
        ``node`` is not a benchmark node, or ``methods`` names a method it does not hold.
    """
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    if node_kind(node) != "benchmark":
        raise ReportError(f"{node}: not a benchmark node (benchmarks/<id>)")
    errors = _errors(table_from_benchmark(cat.open(node, chunks=None)))
    labels = dict(methods) if methods is not None else {m: m for m in errors}
    missing = [m for m in labels if m not in errors]
    if missing:
        raise ReportError(f"{node}: no method {missing[0]!r} (it holds {', '.join(errors)})")
    return fig.error_histograms({labels[m]: errors[m] for m in labels}, Path(path),
                                title=title or f"{node}: errors per scan", dpi=dpi)


def _errors(table: Table) -> dict[str, dict[str, np.ndarray]]:
    """``errors[method][metric]``: the per-scan errors of a group that the histograms show."""
    return {m: {v: table.values[v][:, j] for v in fig.ERROR_LABELS if v in table.values}
            for j, m in enumerate(table.methods)}


# ---------------------------------------------------------------------- the folder
def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: a file; name a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ReportError(f"{out}: holds files and no earlier report ({MARKER}); name a new or empty folder")


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(tmp: Path, out: Path) -> None:
    old = None
    if out.is_dir():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- values as text
def _text(value: float) -> str:
    if not np.isfinite(value):
        return "–"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value)}"
    return f"{value:.3g}"


def _provenance(sources: Sources, ref: NodeRef, role: str) -> dict[str, Any]:
    """What a node says of how it was made, for the provenance tables."""
    prov = sources.attrs(ref).get("provenance") or {}
    software = prov.get("software") or {}
    commit = str(software.get("commit") or "")
    inputs = prov.get("inputs") or {}
    listed = []
    for name, record in inputs.items():
        for rec in record if isinstance(record, list) else [record]:
            if isinstance(rec, dict):
                listed.append(f"{name}: {rec.get('node', '?')} ({str(rec.get('content_hash') or '')[:12]})")
    return {
        "role": role, "node": sources.name(ref), "recorded": bool(prov),
        "stage": (prov.get("stage") or {}).get("name", ""), "job": (prov.get("job") or {}).get("name", ""),
        "job_path": (prov.get("job") or {}).get("path", ""), "run": prov.get("run_id", ""),
        "software": f"{software.get('name', '')} {software.get('version', '')}".strip(),
        "commit": commit[:12] + (" (dirty)" if software.get("dirty") else ""), "commit_full": commit,
        "started": prov.get("started") or "", "finished": prov.get("finished") or "",
        "seed": prov.get("seed", ""), "inputs": listed,
        "history": str(sources.attrs(ref).get("history") or ""),
    }


# ---------------------------------------------------------------------- the writer
class _Writer:
    """Renders the pages and figures of one report into a folder."""

    def __init__(self, root: Path, sources: Sources, *, scan_pages: int | None = None,
                 generated: str | None = None) -> None:
        from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

        self.root = root
        self.sources = sources
        self.scan_pages = scan_pages
        self.pages: list[Path] = []
        self.figures: list[Path] = []
        self.notes: list[str] = []
        self.generated = generated or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        #: the scan pages the groups listed, written by :meth:`write` after the groups: (group, scan, pages)
        self.pending: list[tuple[Group, Any, dict[Any, str]]] = []
        self.env = Environment(loader=PackageLoader("cdiplatform.report", "templates"),
                               autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)

    def _figure(self, draw, rel: str, *args: Any, **kwargs: Any) -> str | None:
        """Draw a figure into ``figures/rel``; its path from the site root, None (and a note) if nothing to draw."""
        try:
            path = draw(*args, path=self.root / "figures" / rel, **kwargs)
        except ValueError as exc:
            self.notes.append(f"{rel}: {exc}")
            return None
        self.figures.append(path)
        return f"figures/{rel}"

    def _render(self, template: str, rel: str, **context: Any) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        depth = rel.count("/")
        html = self.env.get_template(template).render(root="../" * depth, generated=self.generated,
                                                      software=software_info(), **context)
        path.write_text(html, encoding="utf-8")
        self.pages.append(path)

    def write(self, groups: list[Group], notes: list[str], *, nodes: Sequence[str] | None = None,
              map_pages: PageMap | None = None) -> None:
        shutil.copyfile(resources.files("cdiplatform.report").joinpath("templates/style.css"),
                        self.root / "style.css")
        self.notes.extend(notes)
        for group in groups:
            self.notes.extend(group.notes)
        views = [self._group(group) for group in groups]  # lists the scan pages in self.pending
        self._write_scan_pages(nodes, map_pages)
        self._render("index.html", "index.html", catalog=str(self.sources.catalog.path), groups=views,
                     notes=list(dict.fromkeys(self.notes)))
        self.pages.insert(0, self.pages.pop())  # the summary first

    # ------------------------------------------------------------------ summary
    def _group(self, group: Group) -> dict[str, Any]:
        table = group.table
        columns = [v for v in SUMMARY_VALUES if v in table.values]
        if not any(np.isfinite(table.values[v]).any() for v in ("amplitude_error", "phase_error")
                   if v in table.values):
            columns = [v for v in columns if v not in ("amplitude_error", "phase_error")]
            self.notes.append(f"{group.title}: no amplitude or phase errors (no truth, or none recorded)")
        paged = table.scans if self.scan_pages is None else table.scans[:self.scan_pages]
        if len(paged) < len(table.scans):
            self.notes.append(f"{group.title}: scan pages for the first {len(paged)} of {len(table.scans)} scans "
                              "(scan_pages)")
        pages = {scan: f"scans/{group.key}/{safe_name(scan)}.html" for scan in paged}
        rows = []
        for i, scan in enumerate(table.scans):
            cells = []
            for j, method in enumerate(table.methods):
                for var in columns:
                    value = float(table.values[var][i, j])
                    cells.append({"method": method, "var": var, "value": repr(value), "text": _text(value),
                                  "cls": "num", "title": ""})
                flag = str(table.flags[i, j])
                cells.append({"method": method, "var": table.flag_name, "value": flag, "text": flag or "–",
                              "cls": f"flag {table.flag_name}-{safe_name(flag or 'none')}",
                              "title": str(table.reasons[i, j])})
            rows.append({"scan": str(scan), "href": pages.get(scan, ""), "cells": cells})
        counts = {m: Counter(str(f) or "none" for f in table.flags[:, j]) for j, m in enumerate(table.methods)}
        figures = []
        errors = _errors(table)
        known = any(np.isfinite(v).any() for per in errors.values() for v in per.values())
        src = self._figure(fig.error_histograms, f"{group.key}/errors.png", errors,
                           title=f"{group.title}: errors per scan") if known else None
        if not known:
            self.notes.append(f"{group.title}: no chi and no errors recorded: no error histograms")
        if src:
            figures.append({"src": src, "alt": f"error histograms of {group.title}",
                            "caption": "Histograms of the per-scan errors of each method (as the 2018 CDI NN "
                                       "paper's Fig. 4): chi against the measured magnitudes, and where the "
                                       "truth is known the amplitude and phase errors after alignment."})
        if "seconds" in table.values:
            src = self._figure(fig.time_per_method, f"{group.key}/time.png",
                               {m: table.values["seconds"][:, j] for j, m in enumerate(table.methods)},
                               title="compute time per scan")
            if src:
                figures.append({"src": src, "alt": f"time per method of {group.title}",
                                "caption": "Compute time per scan of each method."})
        gold = self._gold(group)
        if gold:
            figures.append(gold)
        self.pending.extend((group, scan, pages) for scan in paged)
        return {"key": group.key, "title": group.title, "node": self._name(group.benchmark),
                "collection": self._name(group.collection) or group.collection_ref or "(none recorded)",
                "methods": table.methods, "columns": [{"var": v, "title": COLUMN_TITLES.get(v, v)} for v in columns],
                "flag_name": table.flag_name, "rows": rows, "counts": counts, "figures": figures,
                "provenance": self._provenance_rows(group), "notes": group.notes}

    def _name(self, ref: NodeRef | None) -> str:
        return "" if ref is None else self.sources.name(ref)

    def _provenance_rows(self, group: Group) -> list[dict[str, Any]]:
        rows = []
        if group.benchmark is not None:
            rows.append(_provenance(self.sources, group.benchmark, "benchmark"))
        for method in group.methods.values():
            if method.result is not None:
                rows.append(_provenance(self.sources, method.result, method.label))
            if method.postprocess is not None:
                rows.append(_provenance(self.sources, method.postprocess, f"{method.label}: post-processing"))
        if group.collection is not None:
            rows.append(_provenance(self.sources, group.collection, "collection"))
        return rows

    def _gold(self, group: Group) -> dict[str, Any] | None:
        """The distributions of a simulated gold collection (phases inside the strained crystals, phase range,
        plane-fit residual, residual strain)."""
        if group.collection is None:
            return None
        ds = self.sources.open(group.collection)
        if not all(name in ds.variables for name in GOLD_VARIABLES) or "amplitude" not in ds or "phase" not in ds:
            return None
        ok = np.asarray(ds["status"].values) == STATUS_OK if "status" in ds else np.ones(ds.sizes["scan"], bool)
        strained = np.flatnonzero(np.asarray(ds["strained"].values, bool) & ok)
        if strained.size == 0:
            return None
        inside = []
        for start in range(0, strained.size, 64):  # a chunk of crystals at a time
            pick = strained[start:start + 64]
            amp = np.asarray(ds["amplitude"].isel(scan=pick).values)
            phase = np.asarray(ds["phase"].isel(scan=pick).values)
            inside.extend(p[a > 0.1] for a, p in zip(amp, phase))
        src = self._figure(fig.gold_distributions, f"{group.key}/gold.png",
                           phase_inside=np.concatenate(inside),
                           phase_range=np.asarray(ds["phase_range"].values)[strained],
                           phase_residual=np.asarray(ds["phase_residual"].values)[strained],
                           residual_strain=np.asarray(ds["residual_strain"].values)[strained],
                           title=f"{strained.size} LAMMPS-relaxed gold crystals (111 Bragg phase)")
        if src is None:
            return None
        return {"src": src, "alt": "gold collection distributions",
                "caption": "The simulated gold collection: phases inside the strained crystals, the phase range "
                           "and plane-fit residual per crystal, the residual strain."}

    # ------------------------------------------------------------------ scan pages
    def _write_scan_pages(self, nodes: Sequence[str] | None, map_pages: PageMap | None) -> None:
        pending, self.pending = self.pending, []
        if map_pages is None:
            for group, scan, pages in pending:
                self._scan_page(group, scan, pages)
            return
        calls = [_PageCall(str(self.sources.catalog.path), tuple(nodes) if nodes is not None else None,
                           str(self.root), self.generated, batch[0][0].key, tuple(s for _, s, _ in batch),
                           batch[0][2])
                 for batch in _batches(pending)]
        for pages, figures, notes in map_pages(_draw_scan_pages, calls):
            self.pages.extend(Path(p) for p in pages)
            self.figures.extend(Path(f) for f in figures)
            self.notes.extend(notes)

    def _scan_page(self, group: Group, scan: Any, pages: dict[Any, str]) -> None:
        table = group.table
        i = table.row(scan)
        scan_dir = f"{group.key}/{safe_name(scan)}"
        objects: dict[str, dict[str, Any]] = {}
        views = []
        for j, label in enumerate(table.methods):
            method = group.methods.get(label) or Method(label, None)
            got = self._object(method, scan)
            view = {"method": label, "node": self._name(method.result), "src": None, "why": got.get("why", ""),
                    "values": [{"text": _text(float(table.values[v][i, j]))} for v in table.values],
                    "flag": str(table.flags[i, j]), "reason": str(table.reasons[i, j]),
                    "postprocess": self._name(method.postprocess)}
            if "amplitude" in got:
                objects[label] = got
            views.append(view)
        truth = self._truth(group, scan)
        crops = self._crops([*objects.values(), *([truth] if truth else [])])
        strain_limit = _strain_limit([o for o in objects.values() if "strain" in o])
        shown = [*objects.values(), *([truth] if truth else [])]
        phase_limit = fig.shared_phase_limit([o["amplitude"] for o in shown], [o["phase"] for o in shown])
        for view in views:
            got = objects.get(view["method"])
            if got is None:
                continue
            view["src"] = self._figure(fig.central_slices, f"{scan_dir}/{safe_name(view['method'])}.png",
                                       got["amplitude"], got["phase"], title=view["method"],
                                       crop=crops[got["amplitude"].shape], strain=got.get("strain"),
                                       strain_support=got.get("support"), strain_coords_nm=got.get("coords"),
                                       strain_limit=strain_limit, phase_limit=phase_limit)
            if "strain_why" in got:
                view["why"] = got["strain_why"]
        truth_src = None
        if truth is not None:
            truth_src = self._figure(fig.central_slices, f"{scan_dir}/truth.png", truth["amplitude"],
                                     truth["phase"], title="truth", crop=crops[truth["amplitude"].shape],
                                     phase_limit=phase_limit)
        conv = self._convergence(group, scan, f"{scan_dir}/convergence.png")
        resolution = self._resolution(group, scan, f"{scan_dir}/resolution.png")
        order = list(pages)  # the scans that have a page, in table order
        at = order.index(scan)
        prev_scan = order[at - 1] if at > 0 else None
        next_scan = order[at + 1] if at + 1 < len(order) else None
        provenance = self._provenance_rows(group)
        self._render("scan.html", pages[scan], scan=str(scan), group={"title": group.title, "key": group.key},
                     metadata=self._metadata(group, scan), methods=views,
                     columns=[COLUMN_TITLES.get(v, v) for v in table.values], truth=truth_src, convergence=conv,
                     resolution=resolution,
                     prev={"scan": str(prev_scan), "href": pages[prev_scan]} if prev_scan is not None else None,
                     next={"scan": str(next_scan), "href": pages[next_scan]} if next_scan is not None else None,
                     provenance=provenance)

    def _object(self, method: Method, scan: Any) -> dict[str, Any]:
        """One method's object for a scan (amplitude, phase; strain from its post-processing), or why not."""
        if method.result is None:
            return {"why": "no result node recorded for this method"}
        ref, ds = method.result, self.sources.open(method.result)
        pos = self.sources.position(ref, scan)
        if pos is None:
            return {"why": f"scan {scan} is not in {self._name(ref)}"}
        why = self._status(ref, pos)
        if why:
            return {"why": why}
        model = "amplitude_model" in ds and "phase_model" in ds
        a_name, p_name = ("amplitude_model", "phase_model") if model else ("amplitude", "phase")
        if a_name not in ds or p_name not in ds:
            return {"why": f"{self._name(ref)} holds no amplitude and phase"}
        amplitude = self.sources.scan_values(ref, a_name, pos).astype(float)
        if not np.isfinite(amplitude).any():
            return {"why": "no values stored for this scan"}
        got: dict[str, Any] = {"amplitude": amplitude, "phase": self.sources.scan_values(ref, p_name, pos).astype(float)}
        got.update(self._strain(method, scan))
        return got

    def _status(self, ref: NodeRef, pos: int) -> str:
        """Why a run node holds nothing for the scan at ``pos`` ('' when it is ok, or not a run node)."""
        ds = self.sources.open(ref)
        if "status" not in ds:
            return ""
        status = int(self.sources.scan_values(ref, "status", pos))
        if status == STATUS_FAILED:
            return f"failed: {self.sources.scan_values(ref, 'reason', pos) if 'reason' in ds else ''}"
        return "" if status == STATUS_OK else "not computed yet (pending)"

    def _strain(self, method: Method, scan: Any) -> dict[str, Any]:
        ref = method.postprocess
        if ref is None:
            return {}
        ds = self.sources.open(ref)
        pos = self.sources.position(ref, scan)
        if pos is None or "strain" not in ds:
            return {"strain_why": f"no strain for this scan in {self._name(ref)}"}
        why = self._status(ref, pos)
        if why:
            return {"strain_why": f"post-processing {why}"}
        strain = self.sources.scan_values(ref, "strain", pos).astype(float)
        grid = ds["strain"].dims[1:]
        support = (self.sources.scan_values(ref, "support", pos) if "support" in ds
                   else np.isfinite(strain) & (strain != 0))
        coords = [np.asarray(ds[d].values, float) for d in grid] if all(d in ds.coords for d in grid) else None
        return {"strain": strain, "support": support, "coords": coords}

    def _truth(self, group: Group, scan: Any) -> dict[str, Any] | None:
        ref = group.collection
        if ref is None or "amplitude" not in self.sources.open(ref) or "phase" not in self.sources.open(ref):
            return None
        pos = self.sources.position(ref, scan)
        if pos is None:
            return None
        amplitude = self.sources.scan_values(ref, "amplitude", pos).astype(float)
        if not np.isfinite(amplitude).any() or np.nanmax(amplitude) <= 0:
            return None
        return {"amplitude": amplitude, "phase": self.sources.scan_values(ref, "phase", pos).astype(float)}

    @staticmethod
    def _crops(objects: list[dict[str, Any]]) -> dict[tuple[int, ...], tuple[slice, ...]]:
        """One box per grid shape, holding every method's object on that grid: methods side by side show the
        same region."""
        shapes: dict[tuple[int, ...], list[np.ndarray]] = {}
        for o in objects:
            shapes.setdefault(o["amplitude"].shape, []).append(o["amplitude"])
        return {shape: fig.object_crop(amps) for shape, amps in shapes.items()}

    def _convergence(self, group: Group, scan: Any, rel: str) -> dict[str, Any]:
        table = group.table
        i = table.row(scan)
        histories, iterations, points = {}, {}, {}
        for j, label in enumerate(table.methods):
            method = group.methods.get(label)
            ref = method.result if method is not None else None
            pos = None if ref is None else self.sources.position(ref, scan)
            if pos is not None and {"history_seconds", "history_chi"} <= set(self.sources.open(ref).data_vars):
                histories[label] = (self.sources.scan_values(ref, "history_seconds", pos),
                                    self.sources.scan_values(ref, "history_chi", pos))
                record = self.sources.open(ref)["history_chi"].dims[-1]
                if record in self.sources.open(ref).coords:  # the iteration of each record (reconstruct)
                    iterations[label] = np.asarray(self.sources.open(ref)[record].values)
                continue
            if "chi" in table.values and "seconds" in table.values:
                points[label] = (float(table.values["seconds"][i, j]), float(table.values["chi"][i, j]))
        without = [m for m in table.methods if m not in histories]
        try:
            path = fig.convergence(histories, self.root / "figures" / rel, points=points,
                                   iterations=iterations if len(iterations) == len(histories) else None,
                                   title=f"scan {scan}")
        except ValueError:
            return {"src": None, "without": without}
        self.figures.append(path)
        return {"src": f"figures/{rel}", "without": without}

    def _resolution(self, group: Group, scan: Any, rel: str) -> dict[str, Any] | None:
        """The PRTF and FSC of each method for a scan (from its result node, else its post-processing
        node): one figure, and the half-periods per axis; None when no method has any."""
        curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        rows = []
        for label in group.table.methods:
            method = group.methods.get(label)
            refs = [] if method is None else [r for r in (method.result, method.postprocess) if r is not None]
            for kind in RESOLUTION_KINDS:
                got = next((g for g in (self._curve(ref, scan, kind) for ref in refs) if g is not None), None)
                if got is None:
                    continue
                curves.setdefault(kind, {})[label] = (got["q"], got["curve"], got["threshold"])
                cells = [_half_period(r, c) for r, c in zip(got["resolution"], got["crossed"])]
                rows.append({"method": label, "kind": kind.upper(), "axes": cells,
                             "shell": _half_period(got["resolution_shell"], got["crossed_shell"]),
                             "node": self._name(got["ref"])})
        if not curves:
            return None
        src = self._figure(fig.resolution_curves, rel, curves, title=f"scan {scan}")
        return {"src": src, "rows": rows}

    def _curve(self, ref: NodeRef, scan: Any, kind: str) -> dict[str, Any] | None:
        """One scan's ``kind`` curve of a node and its resolutions, or None where it holds none."""
        ds = self.sources.open(ref)
        names = (kind, f"{kind}_q", f"{kind}_resolution", f"{kind}_crossed")
        pos = self.sources.position(ref, scan)
        if pos is None or not all(n in ds.data_vars for n in names) or self._status(ref, pos):
            return None
        curve = self.sources.scan_values(ref, kind, pos).astype(float)
        if not np.isfinite(curve).any():
            return None
        threshold = (self.sources.scan_values(ref, f"{kind}_threshold", pos).astype(float)
                     if f"{kind}_threshold" in ds.data_vars else np.full(curve.shape, np.exp(-1.0)))

        def value(name: str, default: Any) -> Any:
            return self.sources.scan_values(ref, name, pos) if name in ds.data_vars else default

        return {"ref": ref, "curve": curve, "q": self.sources.scan_values(ref, f"{kind}_q", pos).astype(float),
                "threshold": threshold,
                "resolution": self.sources.scan_values(ref, f"{kind}_resolution", pos).astype(float),
                "crossed": self.sources.scan_values(ref, f"{kind}_crossed", pos).astype(bool),
                "resolution_shell": float(value(f"{kind}_resolution_shell", np.nan)),
                "crossed_shell": bool(value(f"{kind}_crossed_shell", False))}

    def _metadata(self, group: Group, scan: Any) -> list[dict[str, str]]:
        if group.collection is None:
            return []
        ref = group.collection
        pos = self.sources.position(ref, scan)
        if pos is None:
            return []
        rows = [{"name": "collection", "value": self._name(ref)}]
        coords = self.sources.open(ref).coords  # in the order of names: a store's order depends on the process
        for name, coord in sorted(coords.items(), key=lambda item: str(item[0])):
            if name != "scan" and coord.dims == ("scan",):
                rows.append({"name": str(name), "value": str(self.sources.scan_values(ref, str(name), pos))})
        return rows


def _half_period(value: float, crossed: bool) -> dict[str, str]:
    """A resolution as a table cell: the half-period in nm, ``<=`` when the curve never crossed (a bound)."""
    if not np.isfinite(value):
        return {"text": "–", "title": ""}
    if crossed:
        return {"text": f"{value:.3g}", "title": ""}
    return {"text": f"≤ {value:.3g}", "title": "never fell below the threshold: the half-period of the last shell"}


def _strain_limit(objects: list[dict[str, Any]]) -> float | None:
    """One symmetric strain scale for every method of a scan: the 99th percentile of |strain| in the supports."""
    values = [np.abs(o["strain"][np.asarray(o["support"]) != 0]) for o in objects]
    values = [v[np.isfinite(v)] for v in values]
    values = [v for v in values if v.size]
    if not values:
        return None
    limit = float(np.percentile(np.concatenate(values), 99))
    return limit if limit > 0 else None


# ---------------------------------------------------------------------- scan pages elsewhere
@dataclass(frozen=True)
class _PageCall:
    """Scan pages of one group to draw in another process: what it needs to select the group again."""

    catalog: str
    nodes: tuple[str, ...] | None
    root: str
    generated: str
    group: str
    scans: tuple[Any, ...]
    pages: dict[Any, str]  # every paged scan of the group to its page (the links between pages)


def _batches(pending: list[tuple[Group, Any, dict[Any, str]]]) -> Iterator[list]:
    """The pending scan pages in runs of at most :data:`PAGES_PER_CALL`, one group each."""
    batch: list = []
    for entry in pending:
        if batch and (len(batch) == PAGES_PER_CALL or entry[0] is not batch[0][0]):
            yield batch
            batch = []
        batch.append(entry)
    if batch:
        yield batch


def _draw_scan_pages(call: _PageCall) -> tuple[list[str], list[str], list[str]]:
    """Draw one :class:`_PageCall`'s scan pages; their page and figure paths and the notes."""
    sources = Sources(open_catalog(call.catalog))
    groups, _ = select_groups(sources, list(call.nodes) if call.nodes is not None else None)
    group = next(g for g in groups if g.key == call.group)
    writer = _Writer(Path(call.root), sources, generated=call.generated)
    for scan in call.scans:
        writer._scan_page(group, scan, call.pages)
    return [str(p) for p in writer.pages], [str(p) for p in writer.figures], writer.notes
