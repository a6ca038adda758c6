"""``cdip ingest``: bring measured scans into a catalog, one Dask task per scan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cdiplatform.cli._console import fail, out, say

ingest_app = typer.Typer(help="Ingest measured scans into raw/<beamtime>/<scan>.", no_args_is_help=True)

ClusterOpt = Annotated[str, typer.Option(help="local | slurm | slurm:PATH.yaml | tcp://ADDRESS")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="worker processes (local) or SLURM jobs")]


def _roi(text: Optional[str]) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        rows, cols = text.split(",")
        r0, r1 = (int(v) for v in rows.split(":"))
        c0, c1 = (int(v) for v in cols.split(":"))
    except ValueError:
        fail(f"--roi {text!r}: expected R0:R1,C0:C1 (rows, then columns)")
    return (r0, r1, c0, c1)


def _drive(run, *, catalog: Path, cluster: str, workers: Optional[int], total: int) -> None:
    from cdiplatform.catalog import open_catalog
    from cdiplatform.pipeline.cluster import connect

    if catalog.exists():
        open_catalog(catalog)  # a directory that is not a catalog is refused before anything is written

    try:
        handle = connect(cluster, workers=workers)
    except (ValueError, OSError, TimeoutError) as exc:
        fail(f"cluster {cluster!r}: {exc}")
    with handle, Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=out) as progress:
        say(str(handle.dashboard_link), prefix="dashboard: ")
        bar = progress.add_task("ingest", total=total)

        def done(outcome):
            progress.advance(bar)
            if outcome.state == "failed":
                say(f"scan {outcome.scan}: {outcome.reason}", prefix="failed ", prefix_style="red",
                    console=progress.console)

        try:
            outcomes = run(handle.client, done)
        except ValueError as exc:
            fail(str(exc))
    counts = {s: sum(o.state == s for o in outcomes) for s in ("ok", "skipped", "failed")}
    say(f"{counts['ok']} ingested, {counts['skipped']} already there, {counts['failed']} failed")
    if counts["failed"]:
        raise typer.Exit(1)


@ingest_app.command("spec")
def spec(
    spec_file: Annotated[Path, typer.Argument(help="the beamtime's SPEC file")],
    scans: Annotated[str, typer.Option(help="scan numbers, e.g. 54,60-72")],
    frames: Annotated[str, typer.Option(help="frame files: DIR/name_S{scan:04d}_{point:05d}.tif")],
    beamtime: Annotated[str, typer.Option(help="beamtime name (the raw/<beamtime> group)")],
    catalog: Annotated[Path, typer.Option(help="catalog to write")],
    dark: Annotated[Optional[Path], typer.Option(help="dark field of the whole sensor")] = None,
    flat: Annotated[Optional[Path], typer.Option(help="white field of the whole sensor")] = None,
    roi: Annotated[Optional[str], typer.Option(help="detector region R0:R1,C0:C1 (default: #UIMR5)")] = None,
    detector: Annotated[str, typer.Option(help="detector name in the detector table")] = "timepix",
    overwrite: Annotated[bool, typer.Option(help="re-ingest scans already in the catalog")] = False,
    cluster: ClusterOpt = "local",
    workers: WorkersOpt = None,
) -> None:
    """Ingest scans of a SPEC file with their detector frames (one Dask task per scan)."""
    from cdiplatform.pipeline.ingest import ingest_spec, parse_scan_list

    try:
        numbers = parse_scan_list(scans)
    except ValueError as exc:
        fail(f"--scans: {exc}")
    region = _roi(roi)
    _drive(lambda client, done: ingest_spec(
        client, catalog=catalog, spec=spec_file, scans=numbers, frames=frames, beamtime=beamtime, dark=dark,
        flat=flat, roi=region, detector=detector, overwrite=overwrite, on_done=done),
        catalog=catalog, cluster=cluster, workers=workers, total=len(numbers))


@ingest_app.command("arrays")
def arrays(
    files: Annotated[list[Path], typer.Argument(help="NPY, NPZ or HDF5/CXI files, one 3D scan each")],
    beamtime: Annotated[str, typer.Option(help="beamtime name (the raw/<beamtime> group)")],
    catalog: Annotated[Path, typer.Option(help="catalog to write")],
    dataset: Annotated[Optional[str], typer.Option(help="NPZ array name or HDF5 dataset path")] = None,
    overwrite: Annotated[bool, typer.Option(help="re-ingest scans already in the catalog")] = False,
    cluster: ClusterOpt = "local",
    workers: WorkersOpt = None,
) -> None:
    """Ingest 3D intensity arrays (NPY, NPZ, HDF5/CXI ``/entry_1/data_1/data``), one scan per file."""
    from cdiplatform.pipeline.ingest import ingest_arrays

    _drive(lambda client, done: ingest_arrays(client, catalog=catalog, files=[str(f) for f in files],
                                              beamtime=beamtime, dataset=dataset, overwrite=overwrite,
                                              on_done=done),
           catalog=catalog, cluster=cluster, workers=workers, total=len(files))
