"""Beamtime ingest: many scans of a SPEC file (or intensity files), one Dask task each.

Each task reads one scan with :mod:`cdiplatform.ingest` and writes it whole
into ``raw/<beamtime>/<scan>`` (the catalog moves a finished node into place
in one rename, so a killed ingest leaves no half-written scan). A scan that
cannot be read is recorded as failed, with the reader's message, in the
attributes of ``raw/<beamtime>``; the others land. Scans already in the
catalog are skipped unless ``overwrite``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cdiplatform.catalog import open_catalog
from cdiplatform.catalog.provenance import history_line, now, software_info
from cdiplatform.catalog.raw import raw_node, raw_scan_dataset
from cdiplatform.errors import IngestError

__all__ = ["IngestOutcome", "ingest_arrays", "ingest_spec", "parse_scan_list"]


@dataclass
class IngestOutcome:
    scan: str
    node: str
    state: str  # "ok", "skipped", "failed"
    reason: str = ""
    frames: int = 0


def parse_scan_list(text: str) -> list[int]:
    """``"54,60-72"`` -> ``[54, 60, 61, ..., 72]``."""
    scans: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"scan list {text!r}: {part!r} is not a number or a range like 60-72")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"scan list {text!r}: range {part!r} runs backwards")
        scans.extend(range(lo, hi + 1))
    if not scans:
        raise ValueError(f"scan list {text!r} names no scan")
    return scans


def _ingest_one(read: Callable[[], Any], *, catalog: str, node: str, beamtime: str, scan: str,
                overwrite: bool, stage: dict) -> IngestOutcome:
    cat = open_catalog(catalog, mode="a")
    if node in cat and not overwrite:
        return IngestOutcome(scan, node, "skipped")
    try:
        raw = read()
        ds = raw_scan_dataset(raw, beamtime=beamtime)
    except Exception as exc:  # noqa: BLE001 - one bad scan never stops the batch
        return IngestOutcome(scan, node, "failed", f"{type(exc).__name__}: {exc}")
    started = now()
    attrs = dict(ds.attrs)
    attrs["provenance"] = {"software": software_info(), "stage": stage, "started": started, "finished": now(),
                           "inputs": attrs.get("sources", {})}
    attrs["history"] = history_line(f"ingested scan {scan} of beamtime {beamtime}")
    chunk = (min(16, ds.sizes["frame"]), ds.sizes["det_y"], ds.sizes["det_x"])
    cat.write(node, ds, attrs=attrs, overwrite=overwrite, encoding={"frames": {"chunks": chunk}})
    return IngestOutcome(scan, node, "ok", frames=ds.sizes["frame"])


def _run(client, jobs: list[tuple[str, str, Callable]], *, catalog: Path, beamtime: str, overwrite: bool,
         stage: dict, on_done: Callable[[IngestOutcome], None] | None) -> list[IngestOutcome]:
    from distributed import as_completed

    open_catalog(catalog, mode="a")  # create it before the workers race to
    run = uuid.uuid4().hex[:8]  # task keys never collide, with each other or with another ingest
    futures = [
        client.submit(_ingest_one, read, catalog=str(catalog), node=node, beamtime=beamtime, scan=scan,
                      overwrite=overwrite, stage=stage, key=f"ingest-{beamtime}-{scan}-{run}", pure=False)
        for scan, node, read in jobs
    ]
    outcomes = []
    for fut in as_completed(futures):
        outcome = fut.result()
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    record = open_catalog(catalog).group_attrs(f"raw/{beamtime}").get("ingest", {})
    for o in outcomes:
        if o.state != "skipped":
            record[o.scan] = {"state": o.state, "reason": o.reason, "time": now()}
    open_catalog(catalog, mode="a").update_group_attrs(f"raw/{beamtime}", {"ingest": record})
    return sorted(outcomes, key=lambda o: (len(o.scan), o.scan))


def _check_beamtime(beamtime: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", beamtime):
        raise ValueError(f"beamtime {beamtime!r}: use letters, digits, '_', '-' and '.'")


def ingest_spec(
    client,
    *,
    catalog: str | Path,
    spec: str | Path,
    scans: list[int],
    frames: str,
    beamtime: str,
    dark: str | Path | None = None,
    flat: str | Path | None = None,
    roi: tuple[int, int, int, int] | None = None,
    detector: str = "timepix",
    overwrite: bool = False,
    on_done: Callable[[IngestOutcome], None] | None = None,
) -> list[IngestOutcome]:
    """Ingest ``scans`` of a SPEC file and their TIFF frames into ``raw/<beamtime>/<scan>``.

    Parameters
    ----------
    client : distributed.Client
    catalog : path
        Catalog to write (created when missing).
    spec : path
        The beamtime's SPEC file.
    scans : list of int
        Scan numbers.
    frames : str
        Frame-file pattern with ``{scan}`` and ``{point}`` fields.
    beamtime : str
        Name of the beamtime group.
    dark, flat : path, optional
        Dark and white fields of the whole sensor.
    roi : (row0, row1, col0, col1), optional
        Detector region of the frames (default: the scan's ``#UIMR5``).
    """
    from cdiplatform.ingest import read_scan
    from functools import partial

    _check_beamtime(beamtime)
    spec = Path(spec).resolve()
    if not spec.is_file():
        raise ValueError(f"{spec}: SPEC file not found")
    stage = {"name": "ingest_spec", "params": {"spec": str(spec), "frames": frames, "dark": str(dark or ""),
                                               "flat": str(flat or ""), "roi": list(roi or []),
                                               "detector": detector}}
    jobs = [(str(s), raw_node(beamtime, s),
             partial(read_scan, str(spec), s, frames, dark=dark, flat=flat, roi=roi, detector=detector))
            for s in scans]
    return _run(client, jobs, catalog=Path(catalog), beamtime=beamtime, overwrite=overwrite, stage=stage,
                on_done=on_done)


@dataclass
class _ArrayScan:
    """An intensity file seen as a raw scan: frames along the first axis."""

    frames: np.ndarray
    scan: str
    path: str

    columns = {}
    dark = flat = None
    rocking_motor = "frame"

    @property
    def n_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def rocking_angles(self) -> np.ndarray:
        return np.arange(self.n_frames, dtype=np.float64)

    def metadata(self) -> dict:
        return {"scan": self.scan, "sources": {"intensity": self.path}, "n_frames": self.n_frames}


def _read_array(path: str, dataset: str | None, scan: str) -> _ArrayScan:
    from cdiplatform.ingest import read_intensity

    return _ArrayScan(read_intensity(path, dataset=dataset, scan=scan), scan, path)


def ingest_arrays(client, *, catalog: str | Path, files: list[str | Path], beamtime: str,
                  dataset: str | None = None, overwrite: bool = False,
                  on_done: Callable[[IngestOutcome], None] | None = None) -> list[IngestOutcome]:
    """Ingest 3D intensity arrays (NPY, NPZ, HDF5/CXI), one scan per file named after the file's stem."""
    from functools import partial

    _check_beamtime(beamtime)
    stage = {"name": "ingest_arrays", "params": {"dataset": dataset or ""}}
    jobs = []
    seen: dict[str, str] = {}
    for f in files:
        scan = re.sub(r"[^0-9A-Za-z_.-]+", "_", Path(f).stem)
        if scan in seen:
            raise IngestError(f"{seen[scan]} and {f} would both be scan {scan!r} of beamtime {beamtime} "
                              f"(a scan is named after its file's stem): rename one, or ingest them into "
                              f"two beamtimes")
        seen[scan] = str(f)
        jobs.append((scan, raw_node(beamtime, scan), partial(_read_array, str(Path(f).resolve()), dataset, scan)))
    return _run(client, jobs, catalog=Path(catalog), beamtime=beamtime, overwrite=overwrite, stage=stage,
                on_done=on_done)
