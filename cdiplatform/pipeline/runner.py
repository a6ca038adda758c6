"""The runner: turn a job into Dask work over catalog chunks, resumably.

For each stage in order:

1. open its inputs, check the parameters against them and plan the output;
2. the run id is the job name, the stage and a hash of the parameters, the
   seed and the inputs' content hashes; an output node written by the same run
   is resumed, one written by another run is refused unless ``new_run``;
3. allocate the output once from a template (nothing computed), then submit
   one task per chunk that still has pending or failed scans; each task writes
   its whole chunk (see :mod:`cdiplatform.pipeline.chunks`);
4. record the outcome in the node's attributes (the driver is the only one
   that writes attributes).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr

from cdiplatform.catalog import STATUS_FAILED, STATUS_OK, CatalogError, open_catalog
from cdiplatform.catalog.provenance import history_line, now, software_info, stable_hash
from cdiplatform.pipeline.chunks import ChunkOutcome, ChunkTask, run_chunk, stream_key
from cdiplatform.pipeline.job import Job, JobError, StageSpec, params_to_dict
from cdiplatform.pipeline.stage import Plan, TaskStage
from cdiplatform.pipeline.tasks import SingleTask, run_single
from cdiplatform.pipeline.template import build_template

__all__ = ["StageReport", "run_job", "plan_job"]


@dataclass
class StageReport:
    """What a stage did (or, in a dry run, would do)."""

    label: str
    node: str
    run_id: str = ""
    n_scans: int = 0
    chunks: int = 0
    state: str = ""  # "new", "resume", "complete", "waiting" (dry run: input not made yet)
    done: int = 0  # scans already complete before this run
    computed: int = 0
    ok: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    pending: int = 0
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return not self.failed


@dataclass
class _Prepared:
    spec: StageSpec
    plan: Plan
    inputs: dict[str, tuple[str, str]]
    input_hashes: dict[str, dict[str, str]]
    run_hash: str
    run_id: str
    exists: bool
    pending: np.ndarray  # bool per scan


def _open_inputs(job: Job, spec: StageSpec, catalog: Path) -> tuple[dict[str, xr.Dataset], dict, dict]:
    lazy, refs, hashes = {}, {}, {}
    for name, ref in spec.inputs.items():
        cat_path, node = ref.resolve(catalog)
        try:
            cat = open_catalog(cat_path)
            if is_node_set(node):
                members = expand_node_set(cat, node)
                lazy[name] = [cat.open(m) for m in members]
                content = stable_hash([cat.content_hash(m) for m in members])
                hashes[name] = {"node": f"{cat_path}:{node}", "members": members, "content_hash": content,
                                "identity": content}
                refs[name] = (str(cat_path.resolve()), members, None)
                continue
            lazy[name] = cat.open(node)
            lazy[name].attrs["node"] = f"{cat_path}:{node}"
            if spec.select is not None:
                lazy[name] = lazy[name].isel(scan=slice(*spec.select))
                if lazy[name].sizes["scan"] == 0:
                    raise CatalogError(f"select {spec.select} leaves no scan of {node}")
            run = cat.attrs(node).get("run", {})
            hashes[name] = {"node": f"{cat_path}:{node}", "content_hash": cat.content_hash(node)}
            if spec.select is not None:
                hashes[name]["select"] = list(spec.select)
            # a run's identity fixes its content; keying on it lets a downstream stage resume
            # after failed input scans were retried
            hashes[name]["identity"] = [run.get("hash") or hashes[name]["content_hash"], hashes[name].get("select")]
        except CatalogError as exc:
            raise JobError(f"{job.path}: {spec.label}: inputs.{name}: {exc}") from None
        refs[name] = (str(cat_path.resolve()), node, spec.select)
    return lazy, refs, hashes


def is_node_set(node: str) -> bool:
    """``raw/<beamtime>/*``: every raw scan of a beamtime, as one input."""
    return node.endswith("/*")


def expand_node_set(cat, node: str) -> list[str]:
    """The members of a node set, in scan order (numeric names sort as numbers)."""
    prefix = node[:-1]
    members = [n for n in cat.nodes() if n.startswith(prefix)]
    if not members:
        raise CatalogError(f"{cat.path}: no node matches {node!r}")

    def key(n: str):
        last = n.rsplit("/", 1)[-1]
        return (0, int(last), "") if last.isdigit() else (1, 0, last)

    return sorted(members, key=key)


def _prepare(job: Job, spec: StageSpec, catalog: Path, *, new_run: bool, dry: bool) -> _Prepared:
    lazy, refs, hashes = _open_inputs(job, spec, catalog)
    stage = spec.stage()
    single = isinstance(stage, TaskStage)
    try:
        stage.validate(spec.params, lazy)
        plan = Plan(n_scans=1, chunk=1, variables={}) if single else stage.plan(spec.params, lazy)
    except (ValueError, CatalogError) as exc:
        raise JobError(f"{job.path}: {spec.label}: {exc}") from None
    if spec.stage.output_kind == "result" and "scan" not in plan.coords:
        # results keep the scan ids of the collection they read, so that methods join on scan
        source = next((ds for ds in lazy.values() if isinstance(ds, xr.Dataset) and "scan" in ds.dims), None)
        if source is not None:
            ids = source["scan"].values
            ids = ids[plan.input_index] if plan.input_index is not None else ids
            if len(ids) == plan.n_scans:
                plan = dataclasses.replace(plan, coords={"scan": ids, **plan.coords})
    params = params_to_dict(spec.params)
    identity = {name: h["identity"] for name, h in hashes.items()}
    run_hash = stable_hash(
        {"stage": spec.stage.name, "params": params, "seed": job.seed, "inputs": identity, "output": spec.output,
         "n_scans": plan.n_scans, "chunk": plan.chunk, "model": plan.attrs.get("model")}
    )
    run_id = f"{job.name}-{spec.index}-{spec.stage.name}-{run_hash[:10]}"
    stored = _stored_run(catalog, spec.output)
    exists = stored is not None
    pending = np.ones(plan.n_scans, dtype=bool)
    if exists:
        if stored.get("hash") != run_hash:
            if not new_run:
                raise JobError(
                    f"{job.path}: {spec.label}: {catalog}:{spec.output} was written by another run "
                    f"({stored.get('id', 'unknown')}) with other parameters, seed or inputs; "
                    f"pass --new-run to replace it"
                )
            if not dry:
                open_catalog(catalog, mode="a").remove(spec.output)
            exists = False
        elif single:
            pending = np.array([not stored.get("complete", False)])
        else:
            ds = open_catalog(catalog).open(spec.output, chunks=None)
            done = ds["done"].values
            status = ds["status"].values
            pending = ~done | (status != STATUS_OK)
    return _Prepared(spec, plan, refs, hashes, run_hash, run_id, exists, pending)


def _stored_run(catalog: Path, node: str) -> dict[str, Any] | None:
    """The run record of an existing output node; None when the catalog or the node does not exist."""
    if not catalog.exists():
        return None
    cat = open_catalog(catalog)
    return cat.attrs(node).get("run", {}) if node in cat else None


def _chunk_bounds(plan: Plan) -> list[tuple[int, int]]:
    return [(s, min(s + plan.chunk, plan.n_scans)) for s in range(0, plan.n_scans, plan.chunk)]


def _provenance(job: Job, prep: _Prepared, *, cluster: str, started: str) -> dict[str, Any]:
    params = params_to_dict(prep.spec.params)
    return {
        "software": software_info(),
        "job": {"name": job.name, "path": str(job.path), "sha256": job.sha256},
        "run_id": prep.run_id,
        "stage": {"name": prep.spec.stage.name, "index": prep.spec.index, "params": params,
                  "params_hash": stable_hash(params)},
        "inputs": prep.input_hashes,
        "model": prep.plan.attrs.get("model"),
        "seed": job.seed,
        "cluster": cluster,
        "started": started,
        "finished": None,
    }


def plan_job(job: Job, *, catalog: Path | None = None) -> list[StageReport]:
    """What :func:`run_job` would do, without writing anything (``--dry-run``)."""
    catalog = Path(catalog or job.catalog)
    reports = []
    made: set[str] = set()
    for spec in job.stages:
        report = StageReport(spec.label, spec.output)
        waiting = [str(r) for r in spec.inputs.values() if r.catalog is None and r.node in made
                   and _stored_run(catalog, r.node) is None]
        if waiting:
            report.state = f"waiting for {', '.join(waiting)}"
            reports.append(report)
            made.add(spec.output)
            continue
        prep = _prepare(job, spec, catalog, new_run=True, dry=True)
        report.run_id = prep.run_id
        report.n_scans = prep.plan.n_scans
        report.chunks = len(_chunk_bounds(prep.plan))
        report.pending = int(prep.pending.sum())
        report.done = report.n_scans - report.pending
        if prep.exists:
            report.state = "complete" if report.pending == 0 else "resume"
        else:
            stored = _stored_run(catalog, spec.output)
            report.state = "new" if stored is None else f"replace run {stored.get('id')} (needs --new-run)"
            report.done = 0
            report.pending = report.n_scans
        reports.append(report)
        made.add(spec.output)
    return reports


def run_job(
    job: Job,
    *,
    client: Any,
    catalog: Path | None = None,
    new_run: bool = False,
    cluster_label: str = "",
    on_stage_start: Callable[[StageReport, int], None] | None = None,
    on_progress: Callable[[StageReport, int], None] | None = None,
    on_stage_end: Callable[[StageReport], None] | None = None,
) -> list[StageReport]:
    """Run (or resume) every stage of ``job`` on the Dask ``client``.

    Parameters
    ----------
    job : Job
        A checked job (:func:`cdiplatform.pipeline.job.load_job`).
    client : distributed.Client
        Where the tasks run.
    catalog : path, optional
        Output catalog; the job's own by default. Created when missing.
    new_run : bool
        Replace output nodes that another run wrote, instead of refusing.
    on_stage_start, on_progress, on_stage_end : callables, optional
        Hooks for the terminal: ``(report, pending_scans)``, ``(report, scans_just_finished)``
        and ``(report)``.

    Returns
    -------
    list of StageReport
        One per stage; a scan that failed is listed in ``report.failed`` with its reason.
    """
    from distributed import as_completed

    from cdiplatform.pipeline.cluster import task_resources

    catalog = Path(catalog or job.catalog).resolve()
    cat = open_catalog(catalog, mode="a")
    reports = []
    for spec in job.stages:
        prep = _prepare(job, spec, catalog, new_run=new_run, dry=False)
        report = StageReport(spec.label, spec.output, prep.run_id, prep.plan.n_scans,
                             len(_chunk_bounds(prep.plan)))
        report.pending = int(prep.pending.sum())
        report.done = report.n_scans - report.pending
        report.state = "resume" if prep.exists else "new"
        if prep.exists and report.pending == 0:
            report.state = "complete"
            if on_stage_end:
                on_stage_end(report)
            reports.append(report)
            continue
        started = now()
        if issubclass(spec.stage, TaskStage):
            reports.append(_run_task_stage(job, prep, report, client=client, catalog=catalog, started=started,
                                           cluster_label=cluster_label, on_stage_start=on_stage_start,
                                           on_progress=on_progress, on_stage_end=on_stage_end))
            continue
        if not prep.exists:
            attrs = dict(prep.plan.attrs)
            attrs["provenance"] = _provenance(job, prep, cluster=cluster_label, started=started)
            attrs["run"] = {"id": prep.run_id, "hash": prep.run_hash, "complete": False}
            attrs["history"] = history_line(f"{spec.stage.name} allocated by job {job.name}")
            if spec.stage.output_kind == "result":
                attrs.setdefault("method", spec.stage.method or spec.stage.name)
                first = next(iter(prep.input_hashes.values()), {"node": ""})
                attrs.setdefault("collection", first["node"])
            try:
                cat.allocate(spec.output, build_template(prep.plan, attrs=attrs), chunk=prep.plan.chunk, attrs=attrs)
            except (CatalogError, ValueError) as exc:
                raise JobError(f"{job.path}: {spec.label}: {exc}") from None
        if on_stage_start:
            on_stage_start(report, report.pending)
        t0 = time.perf_counter()
        resources = task_resources(client, spec.stage.uses_torch)
        stream = stream_key(f"{spec.index}:{spec.stage.name}")
        futures = []
        task_plan = dataclasses.replace(prep.plan, input_index=None)  # each task carries its own part
        for start, stop in _chunk_bounds(prep.plan):
            todo = np.flatnonzero(prep.pending[start:stop]) + start
            if len(todo) == 0:
                continue
            source = None if prep.plan.input_index is None else tuple(int(i) for i in prep.plan.input_index[todo])
            task = ChunkTask(
                stage=spec.stage, params=spec.params, plan=task_plan, inputs=prep.inputs,
                output=(str(catalog), spec.output), start=start, stop=stop,
                pending=tuple(int(s) for s in todo), seed=job.seed, stream=stream, source=source,
            )
            futures.append(client.submit(run_chunk, task, key=f"{prep.run_id}-{start}", resources=resources,
                                         pure=False))
            report.computed += len(todo)
        devices = set()
        for fut in as_completed(futures):
            try:
                outcome: ChunkOutcome = fut.result()
            except Exception as exc:  # the write itself failed: the chunk stays pending for a resume
                bounds = fut.key.rsplit("-", 1)[-1]
                report.failed[int(bounds)] = f"chunk not written: {type(exc).__name__}: {exc}"
                if on_progress:
                    on_progress(report, 0)
                continue
            devices.add(outcome.device)
            report.ok += len(outcome.ok)
            report.failed.update(outcome.failed)
            if on_progress:
                on_progress(report, len(outcome.ok) + len(outcome.failed))
        report.seconds = time.perf_counter() - t0
        ds = open_catalog(catalog).open(spec.output, chunks=None)
        status = ds["status"].values
        n_failed = int((status == STATUS_FAILED).sum())
        n_ok = int((status == STATUS_OK).sum())
        prov = cat.attrs(spec.output).get("provenance", {})
        prov.update(finished=now(), device=sorted(devices) or ["cpu"], cluster=cluster_label)
        old_history = cat.attrs(spec.output).get("history", "")
        cat.update_attrs(spec.output, {
            "provenance": prov,
            "run": {"id": prep.run_id, "hash": prep.run_hash, "complete": n_ok == report.n_scans,
                    "n_ok": n_ok, "n_failed": n_failed},
            "history": (old_history + "\n" if old_history else "")
            + history_line(f"{spec.stage.name}: {report.computed} scans computed, {n_failed} failed"),
        })
        if on_stage_end:
            on_stage_end(report)
        reports.append(report)
    return reports


def _run_task_stage(job: Job, prep: _Prepared, report: StageReport, *, client, catalog: Path, started: str,
                    cluster_label: str, on_stage_start, on_progress, on_stage_end) -> StageReport:
    """One task that writes its node itself, checkpointing as it goes (see :mod:`.tasks`)."""
    from cdiplatform.pipeline.cluster import task_resources

    spec = prep.spec
    attrs = {
        "provenance": _provenance(job, prep, cluster=cluster_label, started=started),
        "run": {"id": prep.run_id, "hash": prep.run_hash, "complete": False},
    }
    task = SingleTask(stage=spec.stage, params=spec.params, inputs=prep.inputs,
                      output=(str(catalog), spec.output), attrs=attrs, resume=prep.exists)
    if on_stage_start:
        on_stage_start(report, 1)
    t0 = time.perf_counter()
    fut = client.submit(run_single, task, key=f"{prep.run_id}-task", pure=False,
                        resources=task_resources(client, spec.stage.uses_torch))
    try:
        summary = fut.result()
    except Exception as exc:  # a worker lost, say: the checkpoints stay for a resume
        summary = {"failed": f"{type(exc).__name__}: {exc}"}
    report.seconds = time.perf_counter() - t0
    report.computed = 1
    if "failed" in summary:
        report.failed[0] = summary["failed"]
    else:
        report.ok = 1
    if on_progress:
        on_progress(report, 1)
    if on_stage_end:
        on_stage_end(report)
    return report


def stage_report_rows(reports: list[StageReport]) -> list[dict[str, Any]]:
    """Rows for a summary table."""
    return [dataclasses.asdict(r) | {"failed": len(r.failed)} for r in reports]
