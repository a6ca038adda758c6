"""``cdip``: run jobs, look into catalogs, ingest measured data."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cdiplatform.cli._console import CdipGroup, err, fail, out, say, text
from cdiplatform.cli._options import ClusterOpt, ThreadsOpt, WorkersOpt
from cdiplatform.cli.catalog_cmds import catalog_app
from cdiplatform.cli.export_cmds import export
from cdiplatform.cli.ingest_cmds import ingest_app
from cdiplatform.cli.report_cmds import report
from cdiplatform.cli.reprocess_cmds import reprocess
from cdiplatform.cli.status_cmds import status

app = typer.Typer(
    name="cdip",
    help="cdiplatform: batch CDI / Bragg CDI reconstruction on Dask.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=CdipGroup,
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(ingest_app, name="ingest")
app.command("status")(status)
app.command("reprocess")(reprocess)
app.command("export")(export)
app.command("report")(report)

AdaptOpt = Annotated[Optional[str], typer.Option(help="SLURM: keep between MIN and MAX jobs per pool, replacing "
                                                       "those that end (MIN:MAX)", metavar="MIN:MAX")]
DashboardOpt = Annotated[Optional[str], typer.Option(
    help="HOST:PORT of the dashboard (default 127.0.0.1:0, loopback only; 0.0.0.0:8787 opens it to the network)")]


def _dry_run(job, catalog: Optional[Path]) -> None:
    from cdiplatform.pipeline.runner import plan_job

    table = Table(title=text(f"dry run of {job.name} into {catalog or job.catalog}"))
    for col in ("stage", "output", "scans", "chunks", "done", "to compute", "state"):
        table.add_column(col, overflow="fold")
    for r in plan_job(job, catalog=catalog):
        table.add_row(*(text(v) for v in (r.label, r.node, r.n_scans or "?", r.chunks or "?", r.done,
                                           r.pending if r.n_scans else "?", r.state)))
    out.print(table)


def _summary(reports) -> Table:
    table = Table(title="summary")
    for col in ("stage", "output", "scans", "computed", "ok", "failed", "seconds", "state"):
        table.add_column(col, overflow="fold")
    for r in reports:
        table.add_row(text(r.label), text(r.node), text(r.n_scans), text(r.computed), text(r.ok),
                      text(len(r.failed), "red" if r.failed else None), text(f"{r.seconds:.1f}"), text(r.state))
    return table


@app.command()
def run(
    job_file: Annotated[Path, typer.Argument(help="job file (TOML)", metavar="JOB.toml")],
    catalog: Annotated[Optional[Path], typer.Option(help="output catalog (default: the job's)")] = None,
    cluster: ClusterOpt = "local",
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    adapt: AdaptOpt = None,
    dashboard_address: DashboardOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would run and what is done")] = False,
    new_run: Annotated[bool, typer.Option("--new-run", help="replace outputs written by another run")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="NAME=VALUE: a variable of the job ([job.vars])",
                                                      metavar="NAME=VALUE")] = None,
    break_lock: Annotated[bool, typer.Option("--break-lock", help="take the catalog from a run that cannot be "
                                                                  "shown to be gone (on another machine)")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="keep polling the job's SPEC file and process each scan "
                                                        "once it is complete, until stopped (Ctrl-C)")] = False,
    poll: Annotated[float, typer.Option(help="seconds between two polls of --watch")] = 10.0,
) -> None:
    """Run (or resume) a job: every stage, on a Dask cluster."""
    from cdiplatform.pipeline.job import load_job, parse_override

    job = load_job(job_file, overrides=dict(parse_override(item) for item in set_ or []))
    if dry_run:
        _dry_run(job, catalog)
        return
    _run(job, catalog=catalog, cluster=cluster, workers=workers, new_run=new_run,
         dashboard_address=dashboard_address, break_lock=break_lock, watch=watch, poll=poll, adapt=adapt,
         threads=threads)


class _PerformanceReport:
    """Dask's performance report around a run, self-contained (BokehJS inlined: it opens without
    internet); one that cannot be written only warns.

    The report is made after the last task, so failing to make it (bokeh
    missing, the scheduler gone) must not turn a finished run into a failure.
    """

    def __init__(self, path: Path) -> None:
        from distributed import performance_report

        self.path = path
        self.written = False
        self._report = performance_report(filename=str(path), mode="inline")

    def __enter__(self) -> _PerformanceReport:
        self._report.__enter__()
        return self

    def __exit__(self, *exc: object) -> bool:
        try:
            self._report.__exit__(*exc)
            self.written = self.path.exists() and self.path.stat().st_size > 0
        except Exception as report_exc:  # noqa: BLE001 - the run's outcome stands either way
            say(f"({type(report_exc).__name__}: {report_exc})", prefix="no performance report ",
                prefix_style="yellow", console=err)
        if not self.written:
            self.path.unlink(missing_ok=True)
        return False


def _run(job, *, catalog, cluster, workers, new_run, dashboard_address=None, break_lock=False, watch=False,
         poll=10.0, adapt=None, threads=None) -> None:
    from cdiplatform.catalog.lock import RunLock, check_unlocked
    from cdiplatform.pipeline.cluster import connect
    from cdiplatform.pipeline.runner import plan_job

    target = Path(catalog or job.catalog)
    if target.exists():
        from cdiplatform.catalog import open_catalog

        open_catalog(target)  # a directory that is not a catalog is refused before anything is written
    check_unlocked(target, break_lock=break_lock)  # a second run is refused before a cluster starts
    plan_job(job, catalog=target)  # every check that can fail before a cluster starts
    say(f"{len(job.stages)} stage(s) into {target}", prefix=f"{job.name}: ", prefix_style="bold")
    from cdiplatform.pipeline.cluster import parse_adapt

    try:
        handle = connect(cluster, workers=workers, compute_threads=threads, dashboard_address=dashboard_address,
                         adapt=parse_adapt(adapt) if adapt else None)
    except (ValueError, OSError, TimeoutError) as exc:
        fail(f"cluster {cluster!r}: {exc}")
    with handle:
        say(str(handle.dashboard_link), prefix="dashboard: ")
        tunnel = _tunnel(handle)
        if tunnel:
            say(tunnel, prefix="from your machine: ")
        if not watch:
            failed = _run_once(job, handle=handle, target=target, new_run=new_run, break_lock=break_lock)
            if failed:
                raise typer.Exit(1)
            return
        from cdiplatform.pipeline.watch import watch_job

        def on_poll(watcher, new):
            if new:
                say(f"{', '.join(new)} complete: processing", prefix="watch: ")

        with RunLock(target, job=job.name, command=" ".join(sys.argv), break_lock=break_lock):
            say(f"polling the SPEC file every {poll:g} s; Ctrl-C stops", prefix="watch: ")
            watch_job(job, run=lambda j: _run_once(j, handle=handle, target=target, new_run=new_run, locked=True),
                      poll=poll, on_poll=on_poll)
        say("watch stopped")


def _tunnel(handle) -> str:
    try:
        from cdiplatform.pipeline.cluster import tunnel_command
    except ImportError:
        return ""
    return tunnel_command(handle) or ""


def _benchmark_table(catalog: Path, node: str) -> Table:
    """Per method of a benchmark node: median errors and seconds, the flags counted."""
    from cdiplatform.catalog import open_catalog
    from cdiplatform.pipeline.stages.benchmark import summary_rows

    table = Table(title=text(f"{node}: medians per method"))
    for col in ("method", "scans", "chi", "amplitude error", "phase error (rad)", "seconds", "good", "twin",
                "failed"):
        table.add_column(col)
    for row in summary_rows(open_catalog(catalog).open(node).load()):
        table.add_row(*(text(v if not isinstance(v, float) else f"{v:.4g}") for v in row.values()))
    return table


def _run_once(job, *, handle, target: Path, new_run: bool, break_lock: bool = False, locked: bool = False) -> int:
    """One run of the job on a connected cluster, with progress bars and a summary; the failed scans' count."""
    from cdiplatform.pipeline.runlog import RunLog
    from cdiplatform.pipeline.runner import run_job

    reports_dir = target.parent / f"{target.stem}.reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    report_file = reports_dir / f"{job.name}-{stamp}.html"
    log = RunLog(reports_dir / f"{job.name}-{stamp}.jsonl")
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=False) as progress:
        tasks = {}

        def start(report, pending):
            what = {"resume": "resuming", "grow": f"adding {report.added} scans"}.get(report.state, "running")
            tasks[report.label] = progress.add_task(f"{report.label} ({what})", total=pending, failed=0)

        def advance(report, n):
            progress.update(tasks[report.label], advance=n, failed=len(report.failed))

        def end(report):
            if report.state == "complete":
                say(f"{report.label}: {report.node} is complete ({report.n_scans} scans); nothing to do",
                    console=progress.console)

        with _PerformanceReport(report_file) as perf:
            reports = run_job(job, client=handle.client, catalog=target, new_run=new_run,
                              cluster_label=f"{handle.kind} {handle.client.scheduler.address}",
                              on_stage_start=start, on_progress=advance, on_stage_end=end, log=log,
                              break_lock=break_lock, command=" ".join(sys.argv), lock=not locked)
    out.print(_summary(reports))
    for r in reports:
        if r.node.startswith("benchmarks/") and r.state != "complete":
            out.print(_benchmark_table(target, r.node))
    if all(r.state == "complete" for r in reports):
        say("everything was already complete: nothing recomputed, nothing rewritten")
        report_file.unlink(missing_ok=True)
        log.path.unlink(missing_ok=True)
    elif perf.written:
        say(str(report_file), prefix="performance report: ")
    failed = [(r, scan, why) for r in reports for scan, why in r.failed.items()]
    for r, scan, why in failed[:20]:
        say(f"{r.node} scan {scan}: {why}", prefix="failed ", prefix_style="red", console=err)
    if len(failed) > 20:
        say(f"... and {len(failed) - 20} more: cdip status {target}", console=err)
    return len(failed)


@app.command()
def stages() -> None:
    """List the stages a job file can name, with their parameters."""
    import dataclasses
    import typing

    from cdiplatform.pipeline.params import config_field_of
    from cdiplatform.pipeline.stage import registered_stages

    def fields_of(cls) -> str:
        hints = typing.get_type_hints(cls)
        return ", ".join(
            f"{f.name}: {getattr(hints[f.name], '__name__', hints[f.name])}"
            + (f" = {f.default!r}" if f.default is not dataclasses.MISSING else "")
            for f in dataclasses.fields(cls) if not f.metadata.get("config"))

    for name, cls in sorted(registered_stages().items()):
        ins = ", ".join(i.name for i in cls.input_specs()) or "-"
        say(f" (inputs: {ins}; writes a {cls.output_kind})", prefix=name, prefix_style="bold")
        say(f"  {fields_of(cls.Params)}")
        config = config_field_of(cls.Params)
        if config is not None:
            value = config.default
            recipes = ", ".join(sorted(config.metadata.get("recipes", {}))) or "none"
            say(f"  + the fields of {type(value).__name__} (recipes: {recipes}): {fields_of(type(value))}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        say("interrupted: run the same command again to resume", console=err)
        sys.exit(130)


if __name__ == "__main__":
    main()
