"""``cdip reprocess``: a whole beamtime in one command (the packaged job ``beamtime.toml``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer

from cdiplatform.cli._options import ClusterOpt, ThreadsOpt, WorkersOpt


def beamtime_job() -> Path:
    """The packaged beamtime job (``jobs/beamtime.toml`` in a source checkout links to it)."""
    return Path(str(resources.files("cdiplatform").joinpath("data", "beamtime.toml")))


def _examples() -> str:
    """The committed examples catalog (the shipped networks) beside the package, when there is one."""
    here = Path(__file__).resolve().parents[2] / "catalogs" / "examples.zarr"
    return str(here) if here.is_dir() else "catalogs/examples.zarr"


def reprocess(
    spec: Annotated[Path, typer.Argument(help="the beamtime's SPEC file")],
    frames: Annotated[str, typer.Option(help="frame files: DIR/name_S{scan:04d}_{point:05d}.tif")],
    beamtime: Annotated[str, typer.Option(help="beamtime name (raw/<beamtime>, <beamtime>_* nodes)")],
    catalog: Annotated[Path, typer.Option(help="catalog to write (created when missing)")],
    scans: Annotated[str, typer.Option(help="scan numbers, e.g. 54,60-72, or all")] = "all",
    dark: Annotated[Optional[Path], typer.Option(help="dark field of the whole sensor")] = None,
    flat: Annotated[Optional[Path], typer.Option(help="white field of the whole sensor")] = None,
    size: Annotated[int, typer.Option(help="phasing grid: voxels per axis of the cube at the Bragg peak")] = 64,
    cluster: ClusterOpt = "local",
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="process each new scan once it is complete, until "
                                                        "stopped (Ctrl-C)")] = False,
    poll: Annotated[float, typer.Option(help="seconds between two polls of --watch")] = 10.0,
    new_run: Annotated[bool, typer.Option("--new-run", help="replace nodes another run wrote")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would run and what is done")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", metavar="NAME=VALUE",
                                                      help="another variable of the job (algorithm, starts, fsc...)")]
    = None,
) -> None:
    """Reprocess a beamtime: ingest, prepare, the network's guess, ER/HIO (and what follows), scan by scan.

    Runs the packaged job beamtime.toml (see `cdip run jobs/beamtime.toml --dry-run`): rerun it after
    more scans were recorded and only the new ones are computed, in every stage.
    """
    from cdiplatform.cli.main import _dry_run, _run
    from cdiplatform.pipeline.job import load_job, parse_override

    overrides = {"spec": str(spec), "frames": frames, "scans": scans, "beamtime": beamtime,
                 "dark": str(dark or ""), "flat": str(flat or ""), "size": size, "examples": _examples(),
                 **dict(parse_override(item) for item in set_ or [])}
    job = load_job(beamtime_job(), overrides=overrides)
    if dry_run:
        _dry_run(job, catalog)
        return
    _run(job, catalog=catalog, cluster=cluster, workers=workers, new_run=new_run, watch=watch, poll=poll,
         threads=threads)
