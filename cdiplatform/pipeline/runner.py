"""The runner: turn a job into Dask work over catalog chunks, resumably.

For each stage in order:

1. resolve its inputs once (:mod:`.inputs`), check the parameters against
   them and plan the output; the output's scans are the primary input's
   (their identities carried along) or, for a stage that makes scans, their
   index in this run;
2. the run hash covers the stage, its parameters, the seed, the output node,
   the chunk and the inputs' identities (never the stage's position in the
   job, nor the number of scans); the run id is ``<job>-<stage>-<hash[:10]>``.
   An output written by the same run is resumed, and grown when its input
   gained scans; one written by another run is refused unless ``new_run``;
3. a new output is allocated once from a template (nothing computed),
   atomically; then one task per chunk that still has pending or failed
   scans screens, computes and writes its whole chunk (:mod:`.chunks`);
4. the driver, the only writer of attributes, records the outcome.

Chunk stages run side by side as far as their inputs allow (:func:`_run_chunk_stages`):
between two set or task stages, each starts as soon as the stages whose outputs it
reads have finished, its chunks behind those already submitted, and each is
finished as its last chunk comes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cdiplatform.catalog import STATUS_FAILED, STATUS_OK, CatalogError, open_catalog
from cdiplatform.catalog.provenance import history_line, now, software_info, stable_hash
from cdiplatform.catalog.run_nodes import run_template
from cdiplatform.errors import CatalogFullError, JobError
from cdiplatform.pipeline.chunks import ChunkOutcome, ChunkTask, run_chunk
from cdiplatform.pipeline.inputs import ResolvedInput, resolve_inputs, select_scans
from cdiplatform.pipeline.job import Job, StageSpec, params_to_dict
from cdiplatform.pipeline.randomness import RULE, stage_seed_sequence, stream_key
from cdiplatform.pipeline.members import MemberTask, run_member
from cdiplatform.pipeline.stage import Plan, SetStage, TaskStage
from cdiplatform.pipeline.tasks import SingleTask, run_single

__all__ = ["KILL_AFTER_CHUNKS", "StageReport", "plan_job", "run_job"]

#: test hook: the driver SIGKILLs itself after this many chunks were written (tests of resumption only)
KILL_AFTER_CHUNKS = "CDIP_TEST_KILL_AFTER_CHUNKS"


@dataclass
class StageReport:
    """What a stage did (or, in a dry run, would do)."""

    label: str
    node: str
    run_id: str = ""
    n_scans: int = 0
    chunks: int = 0
    #: "new", "resume", "grow", "complete", "waiting for ..." (dry run), "replace ..." (dry run)
    state: str = ""
    done: int = 0  # scans already complete before this run
    computed: int = 0
    ok: int = 0
    failed: dict[Any, str] = field(default_factory=dict)  # scan identity -> reason
    pending: int = 0
    added: int = 0  # scans appended to the output by this run
    seconds: float = 0.0
    disk_full: bool = False

    @property
    def success(self) -> bool:
        return not self.failed


@dataclass
class _Prepared:
    spec: StageSpec
    plan: Plan
    inputs: dict[str, ResolvedInput]
    scans: np.ndarray  # identities of the output's scans, in order
    run_hash: str
    run_id: str
    state: str  # "new", "resume", "grow", "complete"
    pending: np.ndarray  # bool per scan
    stored: int  # scans the stored node already holds

    @property
    def stream(self) -> int:
        return stream_key(self.spec.output)


def _primary(spec: StageSpec, inputs: dict[str, ResolvedInput]) -> str | None:
    for inp in spec.stage.input_specs():
        if inp.name in inputs and inputs[inp.name].form in ("one", "set"):
            return inp.name
    return None


def _views(inputs: dict[str, ResolvedInput]) -> dict[str, Any]:
    return {name: r.datasets for name, r in inputs.items()}


def _output_scans(plan: Plan, inputs: dict[str, ResolvedInput], primary: str | None) -> np.ndarray:
    if "scan" in plan.coords:
        scans = np.asarray(plan.coords["scan"])
    elif primary is not None:
        p = inputs[primary]
        scans = np.asarray(p.scans[0]) if p.form == "set" else np.asarray(p.datasets["scan"].values)
        if plan.input_index is not None:
            scans = scans[np.asarray(plan.input_index)]
    else:
        scans = np.arange(plan.n_scans, dtype=np.int64)
    if len(scans) != plan.n_scans:
        raise ValueError(f"the plan says {plan.n_scans} scans, its input gives {len(scans)}")
    return scans.astype(object) if scans.dtype.kind in "UOT" else scans.astype(np.int64)


def _prepare(job: Job, spec: StageSpec, catalog: Path, *, new_run: bool, dry: bool) -> _Prepared:
    inputs = resolve_inputs(job, spec, catalog)
    primary = _primary(spec, inputs)
    if spec.select is not None:
        if primary is None:
            raise JobError(f"{job.path}: {spec.label}: select needs an input with scans")
        try:
            inputs[primary] = select_scans(inputs[primary], spec.select)
        except CatalogError as exc:
            raise JobError(f"{job.path}: {spec.label}: inputs.{primary}: {exc}") from None
    stream = stream_key(spec.output)
    stage = spec.stage(seed=stage_seed_sequence(job.seed, stream))
    single = isinstance(stage, TaskStage)
    try:
        stage.validate(spec.params, _views(inputs))
        if single:  # one task writes the whole node
            plan, scans = Plan(n_scans=1, chunk=1, variables={}), np.zeros(1, dtype=np.int64)
        else:
            plan = stage.plan(spec.params, _views(inputs))
            scans = _output_scans(plan, inputs, primary)
    except (ValueError, CatalogError) as exc:
        raise JobError(f"{job.path}: {spec.label}: {exc}") from None
    plan = dataclasses.replace(plan, coords={k: v for k, v in plan.coords.items() if k != "scan"})
    follows = single and spec.stage.follows_content
    identity = {name: _content_identity(r) if follows else r.identity for name, r in inputs.items()}
    run_hash = stable_hash(
        {"stage": spec.stage.name, "params": params_to_dict(spec.params), "seed": job.seed, "inputs": identity,
         "output": spec.output, "chunk": plan.chunk}
    )
    run_id = f"{job.name}-{spec.stage.name}-{run_hash[:10]}"
    state, pending, stored, order = _stored_state(job, spec, catalog, run_hash, scans, single,
                                                  new_run=new_run or follows, dry=dry)
    if order is not None:  # the stored scans first, in their order, then the new ones
        scans = scans[order]
        coords = {k: v if isinstance(v, tuple) else np.asarray(v)[order] for k, v in plan.coords.items()}
        index = None if plan.input_index is None else np.asarray(plan.input_index)[order]
        plan = dataclasses.replace(plan, coords=coords, input_index=index)
    return _Prepared(spec, plan, inputs, scans, run_hash, run_id, state, pending, stored)


@dataclass
class _SetPrepared:
    spec: StageSpec
    stage: SetStage
    members: list[tuple[str, str]]  # (member, reason it fails without a task)
    run_hash: str
    run_id: str
    pending: list[str]  # members to make (new, failed before, or another run's with new_run)
    replace: set[str]  # pending members whose node exists (another run's)

    @property
    def stream(self) -> int:
        return stream_key(self.spec.output)


def _prepare_set(job: Job, spec: StageSpec, catalog: Path, *, new_run: bool) -> _SetPrepared:
    """A node-set stage: its members, and which of them this run must (re)make."""
    stream = stream_key(spec.output)
    stage = spec.stage(seed=stage_seed_sequence(job.seed, stream))
    try:
        stage.validate(spec.params, {})
        members = stage.members(spec.params, {})
    except (ValueError, CatalogError) as exc:
        raise JobError(f"{job.path}: {spec.label}: {exc}") from None
    params = params_to_dict(spec.params)
    params.pop(spec.stage.selection, None)  # the selection may grow; each member records its own state
    run_hash = stable_hash({"stage": spec.stage.name, "params": params, "seed": job.seed, "output": spec.output})
    run_id = f"{job.name}-{spec.stage.name}-{run_hash[:10]}"
    prefix = spec.output[:-1]
    cat = open_catalog(catalog) if catalog.exists() else None
    pending, replace = [], set()
    for member, reason in members:
        node = prefix + member
        if reason or cat is None or node not in cat:
            pending.append(member)
            continue
        stored = cat.attrs(node).get("run", {}).get("hash")
        if stored == run_hash:
            continue
        if not new_run:
            raise JobError(f"{job.path}: {spec.label}: {catalog}:{node} was written by another run "
                           f"({cat.attrs(node).get('run', {}).get('id', 'unknown')}) with other parameters; "
                           f"pass --new-run to replace it")
        pending.append(member)
        replace.add(member)
    return _SetPrepared(spec, stage, members, run_hash, run_id, pending, replace)


def _set_report(prep: _SetPrepared) -> StageReport:
    report = StageReport(prep.spec.label, prep.spec.output, prep.run_id, len(prep.members), len(prep.members))
    report.pending = len(prep.pending)
    report.done = report.n_scans - report.pending
    report.state = "complete" if not prep.pending else ("new" if report.done == 0 else "resume")
    return report


def _content_identity(resolved: ResolvedInput) -> Any:
    record = resolved.record
    if "nodes" in record:
        return [r["content_hash"] for r in record["nodes"]]
    return record["content_hash"]


def _stored_state(job: Job, spec: StageSpec, catalog: Path, run_hash: str, scans: np.ndarray, single: bool, *,
                  new_run: bool, dry: bool) -> tuple[str, np.ndarray, int, np.ndarray | None]:
    """How the output node stands against this run: new, resumed, grown or complete.

    Returns the state, which scans are pending, how many the node holds, and, when the input gained
    scans anywhere but at the end (a late scan, a failed ingest retried), the order that keeps the
    stored scans where they are and appends the new ones (positions in ``scans``).
    """
    n = len(scans)
    fresh = ("new", np.ones(n, dtype=bool), 0, None)
    if not catalog.exists():
        return fresh
    cat = open_catalog(catalog)
    if spec.output not in cat:
        return fresh
    run = cat.attrs(spec.output).get("run", {})
    where = f"{job.path}: {spec.label}: {catalog}:{spec.output}"
    if run.get("hash") != run_hash:
        if not new_run:
            raise JobError(f"{where} was written by another run ({run.get('id', 'unknown')}) with other "
                           f"parameters, seed or inputs; pass --new-run to replace it")
        if not dry:
            open_catalog(catalog, mode="a").remove(spec.output)
        return fresh
    if single:
        complete = bool(run.get("complete", False))
        return ("complete" if complete else "resume"), np.array([not complete]), 1, None
    state = cat.run_state(spec.output)
    if state is None:  # allocated by an older version and cut short: allocate it again
        if not dry:
            open_catalog(catalog, mode="a").remove(spec.output)
        return fresh
    done, status = state
    have = cat.scans(spec.output)
    m = len(have)
    order = None
    if m > n or not np.array_equal(have, scans[:m]):
        where_ = {s: i for i, s in enumerate(scans.tolist())}
        if m > n or any(h not in where_ for h in have.tolist()):
            raise JobError(f"{where} holds scans this run would not write (its input lost scans); "
                           f"pass --new-run to replace it")
        kept = [where_[h] for h in have.tolist()]
        new = sorted(set(range(n)) - set(kept))
        order = np.array(kept + new, dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    pending[:m] = ~done | (status != STATUS_OK)
    if m < n:
        return "grow", pending, m, order
    return ("complete" if not pending.any() else "resume"), pending, m, order


def _disk_full(exc: BaseException) -> bool:
    import errno

    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


def _full(catalog: Path, prep: Any, *, pending: int) -> CatalogFullError:
    """The one-line error of a full disk: the catalog, its free space, and what the stage still needs."""
    import shutil

    free = shutil.disk_usage(catalog if catalog.exists() else catalog.parent).free
    variables = getattr(getattr(prep, "plan", None), "variables", {})
    per_scan = sum(np.dtype(v.numpy_dtype).itemsize * int(np.prod(v.shape)) for v in variables.values()
                   if v.dtype != "str")
    need = f"; the stage's {pending} pending scans need up to {per_scan * pending / 2**20:.1f} MiB more" \
        if per_scan else ""
    return CatalogFullError(f"{catalog}: no space left on its disk ({free / 2**20:.1f} MiB free{need}); what is "
                            f"written is kept: free space and run again to resume")


def _chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _provenance(job: Job, prep: _Prepared, *, cluster: str, started: str) -> dict[str, Any]:
    params = params_to_dict(prep.spec.params)
    return {
        "software": software_info(),
        "job": _job_record(job),
        "run_id": prep.run_id,
        "stage": {"name": prep.spec.stage.name, "params": params, "params_hash": stable_hash(params)},
        "inputs": {name: r.record for name, r in prep.inputs.items()},
        "seed": job.seed,
        "random": {"seed": job.seed, "stream": prep.spec.output, "stream_key": prep.stream, "rule": RULE,
                   "draws": prep.spec.stage.draws or "nothing (deterministic)"},
        "cluster": cluster,
        "started": started,
        "finished": None,
    }


def _job_record(job: Job) -> dict[str, Any]:
    return {"name": job.name, "path": str(job.path), "sha256": job.sha256, "variables": job.variables}


def _report(prep: _Prepared) -> StageReport:
    report = StageReport(prep.spec.label, prep.spec.output, prep.run_id, len(prep.scans),
                         len(_chunk_bounds(len(prep.scans), prep.plan.chunk)))
    report.pending = int(prep.pending.sum())
    report.done = report.n_scans - report.pending
    report.added = len(prep.scans) - prep.stored
    report.state = prep.state
    return report


def plan_job(job: Job, *, catalog: Path | None = None) -> list[StageReport]:
    """What :func:`run_job` would do, without writing anything (``--dry-run``)."""
    catalog = Path(catalog or job.catalog)
    reports = []
    made: set[str] = set()
    for spec in job.stages:
        refs = [r for v in spec.inputs.values() for r in (v if isinstance(v, list) else [v])]
        waiting = [str(r) for r in refs if r.catalog is None and r.node in made and not _exists(catalog, r.node)]
        if waiting:
            reports.append(StageReport(spec.label, spec.output, state=f"waiting for {', '.join(waiting)}"))
            made.add(spec.output)
            continue
        if issubclass(spec.stage, SetStage):
            reports.append(_set_report(_prepare_set(job, spec, catalog, new_run=True)))
            made.add(spec.output)
            continue
        prep = _prepare(job, spec, catalog, new_run=True, dry=True)
        report = _report(prep)
        if prep.state == "new" and _exists(catalog, spec.output):
            stored = open_catalog(catalog).attrs(spec.output).get("run", {})
            report.state = f"replace run {stored.get('id')} (needs --new-run)"
        reports.append(report)
        made.add(spec.output)
    return reports


def _exists(catalog: Path, node: str) -> bool:
    return catalog.exists() and node in open_catalog(catalog)


def _task_inputs(prep: _Prepared, scans: np.ndarray | None) -> tuple:
    return tuple(r.task_input(name, scans) for name, r in prep.inputs.items())


def _kill_hook() -> int | None:
    value = os.environ.get(KILL_AFTER_CHUNKS)
    return int(value) if value else None


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
    log: Any = None,
    break_lock: bool = False,
    command: str = "",
    lock: bool = True,
) -> list[StageReport]:
    """Run (or resume, or grow) every stage of ``job`` on the Dask ``client``.

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
    log : RunLog, optional
        Where the run's events go as JSON lines (:mod:`cdiplatform.pipeline.runlog`).
    break_lock : bool
        Take the catalog's lock even from a run that cannot be shown to be gone (see
        :mod:`cdiplatform.catalog.lock`).
    command : str
        What runs, for the lock and the log.
    lock : bool
        Take the catalog's lock for the run (default); False when the caller holds it (``--watch``).

    Returns
    -------
    list of StageReport
        One per stage; a scan that failed is listed in ``report.failed`` (by
        its identity) with its reason.

    Raises
    ------
    CatalogLockedError
        Another run is writing into the catalog.
    """
    from cdiplatform.catalog.lock import RunLock

    catalog = Path(catalog or job.catalog).resolve()
    hooks = _Hooks(log, on_stage_start, on_progress, on_stage_end)
    import contextlib

    held = (RunLock(catalog, job=job.name, command=command or f"run of {job.path}", break_lock=break_lock)
            if lock else contextlib.nullcontext())
    with held:
        if log is not None:
            log.run_start(job=job.name, catalog=str(catalog), command=command)
        try:
            reports = _run_stages(job, client=client, catalog=catalog, new_run=new_run,
                                  cluster_label=cluster_label, hooks=hooks)
        except BaseException as exc:
            if log is not None:
                log.run_end(error=f"{type(exc).__name__}: {exc}")
            raise
        if log is not None:
            log.run_end(reports)
    return reports


class _Hooks:
    """The terminal's callbacks and the run log, called together."""

    def __init__(self, log, on_stage_start, on_progress, on_stage_end) -> None:
        self.log, self._start, self._progress, self._end = log, on_stage_start, on_progress, on_stage_end
        self._done: dict[str, int] = {}

    def start(self, report: StageReport, pending: int) -> None:
        self._done[report.label] = 0
        if self.log is not None:
            self.log.stage_start(report)
        if self._start:
            self._start(report, pending)

    def progress(self, report: StageReport, n: int) -> None:
        self._done[report.label] = self._done.get(report.label, 0) + n
        if self.log is not None:
            self.log.progress(report, self._done[report.label])
        if self._progress:
            self._progress(report, n)

    def end(self, report: StageReport) -> None:
        if self.log is not None:
            self.log.stage_end(report)
        if self._end:
            self._end(report)


def _run_stages(job: Job, *, client: Any, catalog: Path, new_run: bool, cluster_label: str,
                hooks: _Hooks) -> list[StageReport]:
    cat = open_catalog(catalog, mode="a")
    kill_after = _kill_hook()
    written = 0

    def progress(report_: StageReport, n: int) -> None:
        nonlocal written
        written += 1
        if kill_after is not None and written >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        hooks.progress(report_, n)

    reports: list[StageReport] = []
    at = 0
    while at < len(job.stages):
        spec = job.stages[at]
        if issubclass(spec.stage, SetStage):
            reports.append(_run_set_stage(job, spec, catalog, client=client, new_run=new_run,
                                          cluster_label=cluster_label, on_stage_start=hooks.start,
                                          on_progress=hooks.progress, on_stage_end=hooks.end))
            at += 1
            continue
        if issubclass(spec.stage, TaskStage):
            prep = _prepare(job, spec, catalog, new_run=new_run, dry=False)
            report = _report(prep)
            if prep.state == "complete":
                hooks.end(report)
            else:
                report = _run_task_stage(job, prep, report, client=client, catalog=catalog, started=now(),
                                         cluster_label=cluster_label, on_stage_start=hooks.start,
                                         on_progress=hooks.progress, on_stage_end=hooks.end)
            reports.append(report)
            at += 1
            continue
        group = [spec]
        while at + len(group) < len(job.stages) and _chunked(job.stages[at + len(group)]):
            group.append(job.stages[at + len(group)])
        reports.extend(_run_chunk_stages(job, group, cat, client=client, catalog=catalog, new_run=new_run,
                                         cluster_label=cluster_label, hooks=hooks, on_progress=progress))
        at += len(group)
    return reports


def _chunked(spec: StageSpec) -> bool:
    return not issubclass(spec.stage, (SetStage, TaskStage))


def _reads(spec: StageSpec, catalog: Path) -> list[tuple[Path, str]]:
    refs = [r for value in spec.inputs.values() for r in (value if isinstance(value, list) else [value])]
    return [(Path(c).resolve(), node) for c, node in (r.resolve(catalog) for r in refs)]


def _depends(spec: StageSpec, earlier: StageSpec, catalog: Path) -> bool:
    """Whether ``spec`` reads the output of ``earlier`` (a node, or a member of a node set)."""
    from fnmatch import fnmatchcase

    out = earlier.output
    return any(c == catalog and (node == out or fnmatchcase(node, out) or fnmatchcase(out, node))
               for c, node in _reads(spec, catalog))


@dataclass
class _StageRun:
    """A chunk stage whose chunks are on the cluster."""

    prep: _Prepared
    report: StageReport
    futures: list
    chunk_scans: dict
    t0: float
    left: int = field(init=False)  # chunks not yet come
    devices: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.left = len(self.futures)


def _run_chunk_stages(job: Job, stages: list[StageSpec], cat, *, client, catalog: Path, new_run: bool,
                      cluster_label: str, hooks: _Hooks, on_progress) -> list[StageReport]:
    """Consecutive chunk stages, each started once the stages it reads have finished.

    In the beamtime job the two ER/HIO stages and refine read only the collection and the network's
    guess: their chunks queue behind each other, and the workers that a stage's last chunks leave idle
    go on with the next stage's instead of waiting at a barrier.
    """
    from distributed import as_completed

    needs = {s.index: {e.index for e in stages[:k] if _depends(s, e, catalog)} for k, s in enumerate(stages)}
    reports: dict[int, StageReport] = {}
    finished: set[int] = set()
    runs: list[_StageRun] = []
    arriving = as_completed()
    owner: dict[str, _StageRun] = {}
    refused: list[BaseException] = []  # a stage that cannot start: raised once the running ones finished

    def done(run: _StageRun) -> None:
        run.report.seconds = time.perf_counter() - run.t0
        if any(r.report.disk_full for r in runs):
            return  # the attributes are not written on a full disk; the rerun completes the stage
        _finish(cat, job, run.prep, run.report, run.devices, cluster_label=cluster_label)
        hooks.end(run.report)
        finished.add(run.prep.spec.index)
        start_ready()

    def start_ready() -> None:
        for spec in stages:
            if spec.index in reports or not needs[spec.index] <= finished:
                continue
            if refused or any(r.report.disk_full for r in runs):
                return
            try:
                prep = _prepare(job, spec, catalog, new_run=new_run, dry=False)
                if prep.state != "complete":
                    _make_room(cat, job, prep, catalog=catalog, cluster_label=cluster_label)
            except Exception as exc:  # noqa: BLE001 - a refused resume, a full disk: after the others end
                refused.append(exc)
                return
            report = reports[spec.index] = _report(prep)
            if prep.state == "complete":
                hooks.end(report)
                finished.add(spec.index)
                return start_ready()  # what waited for it may start now
            hooks.start(report, report.pending)
            run = _StageRun(prep, report, *_submit(client, catalog, job, prep), t0=time.perf_counter())
            report.computed = int(prep.pending.sum())
            runs.append(run)
            for fut in run.futures:
                owner[fut.key] = run
                arriving.add(fut)
            if run.left == 0:
                return done(run)

    start_ready()
    _collect(client, arriving, owner, runs, on_progress, done)
    full = next((r for r in runs if r.report.disk_full), None)
    if full is not None:
        raise _full(catalog, full.prep, pending=len(full.report.failed))
    if refused:
        raise refused[0]
    return [reports[s.index] for s in stages]


def _make_room(cat, job: Job, prep: _Prepared, *, catalog: Path, cluster_label: str) -> None:
    """Allocate a new output node, or grow a stored one by the scans its input gained."""
    spec = prep.spec
    try:
        if prep.state == "new":
            _allocate(cat, job, prep, cluster_label=cluster_label, started=now())
        elif prep.state == "grow":
            new = slice(prep.stored, None)
            coords = {k: np.asarray(v)[new] for k, v in prep.plan.coords.items() if not isinstance(v, tuple)}
            cat.grow(spec.output, prep.scans[new], coords)
    except (CatalogError, ValueError) as exc:
        raise JobError(f"{job.path}: {spec.label}: {exc}") from None
    except OSError as exc:
        if _disk_full(exc):
            raise _full(catalog, prep, pending=int(prep.pending.sum())) from None
        raise


def _allocate(cat, job: Job, prep: _Prepared, *, cluster_label: str, started: str) -> None:
    spec = prep.spec
    attrs = dict(prep.plan.attrs)
    attrs["provenance"] = _provenance(job, prep, cluster=cluster_label, started=started)
    attrs["run"] = {"id": prep.run_id, "hash": prep.run_hash, "complete": False}
    attrs["history"] = history_line(f"{spec.stage.name} allocated by job {job.name}")
    if spec.stage.output_kind in ("result", "benchmark"):
        attrs.setdefault("method", spec.stage.method or spec.stage.name)
        primary = _primary(spec, prep.inputs)
        attrs.setdefault("collection", prep.inputs[primary].record["node"] if primary is not None else "")
    template = run_template(scans=prep.scans, chunk=prep.plan.chunk, variables=prep.plan.variables,
                            coords=prep.plan.coords, attrs=attrs)
    cat.allocate(spec.output, template, chunk=prep.plan.chunk, attrs=attrs)


def _submit(client, catalog: Path, job: Job, prep: _Prepared) -> tuple[list, dict]:
    from cdiplatform.pipeline.cluster import task_resources

    spec = prep.spec
    resources = task_resources(client, spec.stage.uses_torch)
    futures, chunk_scans = [], {}
    for start, stop in _chunk_bounds(len(prep.scans), prep.plan.chunk):
        local = np.flatnonzero(prep.pending[start:stop])
        if len(local) == 0:
            continue
        scans = prep.scans[start + local]
        task = ChunkTask(
            stage=spec.stage, params=spec.params, variables=prep.plan.variables,
            inputs=_task_inputs(prep, scans), output=(str(catalog), spec.output), start=start, stop=stop,
            local=tuple(int(i) for i in local), scans=scans, seed=job.seed, stream=prep.stream,
            time_limit=spec.time_limit,
        )
        key = f"{prep.run_id}-{start}"
        # in the order submitted: giving an earlier stage's chunks precedence (priority=-index) interleaved
        # refine with ER/HIO on every worker and slowed ER/HIO's scans by a quarter (bench_beamtime)
        futures.append(client.submit(run_chunk, task, key=key, resources=resources, pure=False))
        chunk_scans[key] = [s.item() if isinstance(s, np.generic) else s for s in scans]
    return futures, chunk_scans


def _collect(client, arriving, owner: dict, runs: list[_StageRun], on_progress, on_done) -> None:
    """Every chunk as it comes (``arriving``, an ``as_completed`` that ``on_done`` may add to);
    ``on_done(run)`` once a stage's last chunk came."""
    for fut in arriving:
        run = owner[fut.key]
        report = run.report
        try:
            outcome: ChunkOutcome = fut.result()
            error, full = outcome.not_written, outcome.disk_full
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the task was lost or cancelled: the chunk stays pending
            error, full = f"{type(exc).__name__}: {exc}", _disk_full(exc)
        # the outcome is handled: let go of it, or a worker that ends (scancel, --lifetime) would make the
        # scheduler recompute every chunk whose result it still held
        fut.release()
        if error:
            if full and not report.disk_full:  # no further chunk can be written: stop the stages
                report.disk_full = True
                client.cancel([f for r in runs for f in r.futures if not f.done()])
            for scan in run.chunk_scans[fut.key]:
                report.failed[scan] = f"chunk not written: {error}"
            on_progress(report, len(run.chunk_scans[fut.key]))
        else:
            run.devices.add(outcome.device)
            report.ok += len(outcome.ok)
            report.failed.update(outcome.failed)
            on_progress(report, len(outcome.ok) + len(outcome.failed))
        run.left -= 1
        if run.left == 0:
            on_done(run)


def _finish(cat, job: Job, prep: _Prepared, report: StageReport, devices: set[str], *, cluster_label: str) -> None:
    spec = prep.spec
    state = cat.run_state(spec.output)
    status = state[1] if state is not None else np.zeros(0)
    n_failed = int((status == STATUS_FAILED).sum())
    n_ok = int((status == STATUS_OK).sum())
    attrs = cat.attrs(spec.output)
    prov = attrs.get("provenance", {})
    prov.update(finished=now(), device=sorted(devices) or ["cpu"], cluster=cluster_label)
    old_history = attrs.get("history", "")
    what = f"{report.computed} scans computed, {n_failed} failed"
    if report.added and prep.stored:
        what += f", {report.added} appended"
    cat.update_attrs(spec.output, {
        "provenance": prov,
        "run": {"id": prep.run_id, "hash": prep.run_hash, "complete": n_ok == report.n_scans,
                "n_ok": n_ok, "n_failed": n_failed},
        "history": (old_history + "\n" if old_history else "") + history_line(f"{spec.stage.name}: {what}"),
    })


def _run_task_stage(job: Job, prep: _Prepared, report: StageReport, *, client, catalog: Path, started: str,
                    cluster_label: str, on_stage_start, on_progress, on_stage_end) -> StageReport:
    """One task that writes its node itself, checkpointing as it goes (see :mod:`.tasks`)."""
    from cdiplatform.pipeline.cluster import task_resources

    spec = prep.spec
    attrs = {
        "provenance": _provenance(job, prep, cluster=cluster_label, started=started),
        "run": {"id": prep.run_id, "hash": prep.run_hash, "complete": False},
    }
    task = SingleTask(stage=spec.stage, params=spec.params, inputs=_task_inputs(prep, None),
                      records={name: r.record for name, r in prep.inputs.items()},
                      output=(str(catalog), spec.output), attrs=attrs, resume=prep.state == "resume",
                      seed=job.seed, stream=prep.stream)
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


def _run_set_stage(job: Job, spec: StageSpec, catalog: Path, *, client, new_run: bool, cluster_label: str,
                   on_stage_start, on_progress, on_stage_end) -> StageReport:
    """One task per member of a node set (``raw/<beamtime>/*``), each written whole; the parent group
    records every member's last state (ok or failed, with the reason)."""
    from distributed import as_completed

    prep = _prepare_set(job, spec, catalog, new_run=new_run)
    report = _set_report(prep)
    if not prep.pending:
        if on_stage_end:
            on_stage_end(report)
        return report
    prefix = spec.output[:-1]
    beamtime = prefix.rstrip("/")
    params = params_to_dict(spec.params)
    provenance = {"software": software_info(), "job": _job_record(job),
                  "run_id": prep.run_id, "stage": {"name": spec.stage.name, "params": params,
                                                   "params_hash": stable_hash(params)},
                  "seed": job.seed, "cluster": cluster_label}
    run = {"id": prep.run_id, "hash": prep.run_hash}
    reasons = dict(prep.members)
    if on_stage_start:
        on_stage_start(report, len(prep.pending))
    t0 = time.perf_counter()
    cat = open_catalog(catalog, mode="a")
    record = cat.group_attrs(beamtime).get("members", {})
    futures = []
    for member in prep.pending:
        ident = beamtime.split("/", 1)[1] + "/" + member
        if reasons.get(member):
            report.failed[ident] = reasons[member]
            record[member] = {"state": "failed", "reason": reasons[member], "time": now(), "run": prep.run_id}
            continue
        task = MemberTask(stage=spec.stage, params=spec.params, catalog=str(catalog), node=prefix + member,
                          member=member, provenance=provenance, run=run, replace=member in prep.replace,
                          seed=job.seed, stream=prep.stream)
        futures.append(client.submit(run_member, task, key=f"{prep.run_id}-{member}", pure=False))
    report.computed = len(prep.pending)
    if on_progress and report.failed:
        on_progress(report, len(report.failed))
    for fut in as_completed(futures):
        try:
            outcome = fut.result()
        except Exception as exc:  # the write itself failed (a full disk): the member stays pending
            member = fut.key[len(prep.run_id) + 1:]
            outcome_ok, why = False, f"not written: {type(exc).__name__}: {exc}"
            if _disk_full(exc):
                report.disk_full = True
        else:
            member, outcome_ok, why = outcome.member, outcome.ok, outcome.reason
        fut.release()  # handled: a worker that ends must not recompute it
        ident = beamtime.split("/", 1)[1] + "/" + member
        if outcome_ok:
            report.ok += 1
            record[member] = {"state": "ok", "time": now(), "run": prep.run_id}
        else:
            report.failed[ident] = why
            record[member] = {"state": "failed", "reason": why, "time": now(), "run": prep.run_id}
        if on_progress:
            on_progress(report, 1)
    report.seconds = time.perf_counter() - t0
    if report.disk_full:
        raise _full(catalog, None, pending=len(report.failed))
    cat.update_group_attrs(beamtime, {"members": record})
    if on_stage_end:
        on_stage_end(report)
    return report
