"""``cdip``: run jobs, look into catalogs, ingest measured data."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cdiplatform.catalog import CatalogError
from cdiplatform.cli.catalog_cmds import catalog_app
from cdiplatform.cli.ingest_cmds import ingest_app
from cdiplatform.pipeline.job import JobError

app = typer.Typer(
    name="cdip",
    help="cdiplatform: batch CDI / Bragg CDI reconstruction on Dask.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(ingest_app, name="ingest")

out = Console()
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _dry_run(job, catalog: Optional[Path]) -> None:
    from cdiplatform.pipeline.runner import plan_job

    table = Table(title=f"dry run of {job.name} into {catalog or job.catalog}")
    for col in ("stage", "output", "scans", "chunks", "done", "to compute", "state"):
        table.add_column(col, overflow="fold")
    for r in plan_job(job, catalog=catalog):
        table.add_row(r.label, r.node, str(r.n_scans or "?"), str(r.chunks or "?"), str(r.done),
                      str(r.pending if r.n_scans else "?"), r.state)
    out.print(table)


def _summary(reports) -> Table:
    table = Table(title="summary")
    for col in ("stage", "output", "scans", "computed", "ok", "failed", "seconds", "state"):
        table.add_column(col, overflow="fold")
    for r in reports:
        table.add_row(r.label, r.node, str(r.n_scans), str(r.computed), str(r.ok),
                      f"[red]{len(r.failed)}[/]" if r.failed else "0", f"{r.seconds:.1f}", r.state)
    return table


@app.command()
def run(
    job_file: Annotated[Path, typer.Argument(help="job file (TOML)", metavar="JOB.toml")],
    catalog: Annotated[Optional[Path], typer.Option(help="output catalog (default: the job's)")] = None,
    cluster: Annotated[str, typer.Option(help="local | slurm | slurm:PATH.yaml | tcp://ADDRESS")] = "local",
    workers: Annotated[Optional[int], typer.Option(help="worker processes (local) or SLURM jobs")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would run and what is done")] = False,
    new_run: Annotated[bool, typer.Option("--new-run", help="replace outputs written by another run")] = False,
) -> None:
    """Run (or resume) a job: every stage, on a Dask cluster."""
    from cdiplatform.pipeline.job import load_job

    try:
        job = load_job(job_file)
        if dry_run:
            _dry_run(job, catalog)
            return
        _run(job, catalog=catalog, cluster=cluster, workers=workers, new_run=new_run)
    except (JobError, CatalogError) as exc:
        _fail(str(exc))


class _PerformanceReport:
    """Dask's performance report around a run; one that cannot be written only warns.

    The report is made after the last task, so failing to make it (bokeh
    missing, the scheduler gone) must not turn a finished run into a failure.
    """

    def __init__(self, path: Path) -> None:
        from distributed import performance_report

        self.path = path
        self.written = False
        self._report = performance_report(filename=str(path))

    def __enter__(self) -> _PerformanceReport:
        self._report.__enter__()
        return self

    def __exit__(self, *exc: object) -> bool:
        try:
            self._report.__exit__(*exc)
            self.written = self.path.exists()
        except Exception as report_exc:  # noqa: BLE001 - the run's outcome stands either way
            err.print(f"[yellow]no performance report[/] ({type(report_exc).__name__}: {report_exc})",
                      highlight=False)
        return False


def _run(job, *, catalog, cluster, workers, new_run) -> None:
    from cdiplatform.pipeline.cluster import connect
    from cdiplatform.pipeline.runner import plan_job, run_job

    target = Path(catalog or job.catalog)
    plan_job(job, catalog=target)  # every check that can fail before a cluster starts
    out.print(f"[bold]{job.name}[/]: {len(job.stages)} stage(s) into {target}")
    reports_dir = target.parent / f"{target.stem}.reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report_file = reports_dir / f"{job.name}-{stamp}.html"
    try:
        handle = connect(cluster, workers=workers)
    except (ValueError, OSError, TimeoutError) as exc:
        _fail(f"cluster {cluster!r}: {exc}")
    with handle:
        out.print(f"dashboard: [link={handle.dashboard_link}]{handle.dashboard_link}[/link]")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=out, transient=False) as progress:
            tasks = {}

            def start(report, pending):
                what = "resuming" if report.state == "resume" else "running"
                tasks[report.label] = progress.add_task(f"{report.label} ({what})", total=pending, failed=0)

            def advance(report, n):
                progress.update(tasks[report.label], advance=n, failed=len(report.failed))

            def end(report):
                if report.state == "complete":
                    progress.console.print(
                        f"{report.label}: {report.node} is complete ({report.n_scans} scans); nothing to do")

            with _PerformanceReport(report_file) as perf:
                reports = run_job(job, client=handle.client, catalog=target, new_run=new_run,
                                  cluster_label=f"{handle.kind} {handle.client.scheduler.address}", on_stage_start=start, on_progress=advance,
                                  on_stage_end=end)
    out.print(_summary(reports))
    if all(r.state == "complete" for r in reports):
        out.print("everything was already complete: nothing recomputed, nothing rewritten")
        report_file.unlink(missing_ok=True)
    elif perf.written:
        out.print(f"performance report: {report_file}")
    failed = [(r, scan, why) for r in reports for scan, why in sorted(r.failed.items())]
    if failed:
        for r, scan, why in failed[:20]:
            err.print(f"[red]failed[/] {r.node} scan {scan}: {why}", highlight=False)
        if len(failed) > 20:
            err.print(f"... and {len(failed) - 20} more: cdip catalog show {target} NODE")
        raise typer.Exit(1)


@app.command()
def stages() -> None:
    """List the stages a job file can name, with their parameters."""
    import dataclasses
    import typing

    from cdiplatform.pipeline.stage import registered_stages

    for name, cls in sorted(registered_stages().items()):
        hints = typing.get_type_hints(cls.Params)
        params = ", ".join(
            f"{f.name}: {getattr(hints[f.name], '__name__', hints[f.name])} = {f.default!r}"
            if f.default is not dataclasses.MISSING else f"{f.name}: {hints[f.name]}"
            for f in dataclasses.fields(cls.Params)
        )
        ins = ", ".join(cls.inputs) or "-"
        out.print(f"[bold]{name}[/] (inputs: {ins}; writes a {cls.output_kind})\n  {params}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
