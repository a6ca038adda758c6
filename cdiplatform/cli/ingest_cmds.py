"""``cdip ingest``: shortcuts to the ingest stages, run as one-stage jobs (one resume scheme for everything)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cdiplatform.cli._console import fail
from cdiplatform.cli._options import ClusterOpt, WorkersOpt

ingest_app = typer.Typer(help="Ingest measured scans into raw/<beamtime>/<scan>.", no_args_is_help=True)

NewRunOpt = Annotated[bool, typer.Option("--new-run", "--overwrite",
                                         help="re-ingest scans that another ingest (other files or settings) wrote")]


def _roi(text: Optional[str]) -> list[int]:
    if not text:
        return []
    try:
        rows, cols = text.split(",")
        r0, r1 = (int(v) for v in rows.split(":"))
        c0, c1 = (int(v) for v in cols.split(":"))
    except ValueError:
        fail(f"--roi {text!r}: expected R0:R1,C0:C1 (rows, then columns)")
    return [r0, r1, c0, c1]


def _beamtime(name: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        fail(f"--beamtime {name!r}: use letters, digits, '_', '-' and '.'")
    return name


def _ingest(stage: str, params: dict, *, beamtime: str, catalog: Path, cluster: str, workers: Optional[int],
            new_run: bool) -> None:
    from cdiplatform.cli.main import _run
    from cdiplatform.pipeline.job import one_stage_job

    job = one_stage_job(stage, params=params, output=f"raw/{_beamtime(beamtime)}/*", catalog=catalog,
                        name=f"ingest-{beamtime}", origin=f"cdip ingest ({stage})")
    _run(job, catalog=catalog, cluster=cluster, workers=workers, new_run=new_run)


@ingest_app.command("spec")
def spec(
    spec_file: Annotated[Path, typer.Argument(help="the beamtime's SPEC file")],
    scans: Annotated[str, typer.Option(help="scan numbers, e.g. 54,60-72, or all")],
    frames: Annotated[str, typer.Option(help="frame files: DIR/name_S{scan:04d}_{point:05d}.tif")],
    beamtime: Annotated[str, typer.Option(help="beamtime name (the raw/<beamtime> group)")],
    catalog: Annotated[Path, typer.Option(help="catalog to write")],
    dark: Annotated[Optional[Path], typer.Option(help="dark field of the whole sensor")] = None,
    flat: Annotated[Optional[Path], typer.Option(help="white field of the whole sensor")] = None,
    roi: Annotated[Optional[str], typer.Option(help="detector region R0:R1,C0:C1 (default: #UIMR5)")] = None,
    detector: Annotated[str, typer.Option(help="detector name in the detector table")] = "timepix",
    new_run: NewRunOpt = False,
    cluster: ClusterOpt = "local",
    workers: WorkersOpt = None,
) -> None:
    """Ingest scans of a SPEC file with their detector frames (the ingest_spec stage, one task per scan)."""
    params = {"spec": str(spec_file), "frames": frames, "scans": scans, "dark": str(dark or ""),
              "flat": str(flat or ""), "roi": _roi(roi), "detector": detector}
    _ingest("ingest_spec", params, beamtime=beamtime, catalog=catalog, cluster=cluster, workers=workers,
            new_run=new_run)


@ingest_app.command("arrays")
def arrays(
    files: Annotated[list[Path], typer.Argument(help="NPY, NPZ or HDF5/CXI files, one 3D scan each")],
    beamtime: Annotated[str, typer.Option(help="beamtime name (the raw/<beamtime> group)")],
    catalog: Annotated[Path, typer.Option(help="catalog to write")],
    dataset: Annotated[Optional[str], typer.Option(help="NPZ array name or HDF5 dataset path")] = None,
    new_run: NewRunOpt = False,
    cluster: ClusterOpt = "local",
    workers: WorkersOpt = None,
) -> None:
    """Ingest 3D intensity arrays (NPY, NPZ, HDF5/CXI ``/entry_1/data_1/data``), one scan per file."""
    _ingest("ingest_arrays", {"files": [str(f) for f in files], "dataset": dataset or ""}, beamtime=beamtime,
            catalog=catalog, cluster=cluster, workers=workers, new_run=new_run)
