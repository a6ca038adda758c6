"""Stages ``ingest_spec`` and ``ingest_arrays``: measured scans into the node set ``raw/<beamtime>/*``.

One task per scan, each writing its whole ``raw/<beamtime>/<scan>`` node
atomically (:class:`~cdiplatform.pipeline.stage.SetStage`); a scan that cannot
be read fails alone with the reader's message and is tried again at the next
run; a scan already ingested by the same run is done. The scan selection is
not part of the run's identity, so a beamtime grows as scans are recorded:
rerun the job with more scans (or ``all``), and only the new ones are read.
Job file::

    [[stage]]
    stage = "ingest_spec"
    output = "raw/34idc-2020/*"
    [stage.params]
    spec = "../shared/data/aps34idc-au111-scan54/example.spec"
    scans = "54"
    frames = "../shared/data/aps34idc-au111-scan54/frames/Staff20-1a_S{scan:04d}_{point:05d}.tif"
    dark = "../shared/data/aps34idc-au111-scan54/dark.tif"
    flat = "../shared/data/aps34idc-au111-scan54/whitefield.tif"

``cdip ingest spec`` and ``cdip ingest arrays`` run these stages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdiplatform.pipeline.stage import SetStage, register

__all__ = ["IngestArrays", "IngestSpec", "parse_scan_list", "scan_name"]


def parse_scan_list(text: str) -> list[int] | None:
    """``"54,60-72"`` -> ``[54, 60, 61, ..., 72]``; ``"all"`` -> None (every scan of the file)."""
    if text.strip().lower() == "all":
        return None
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


def scan_name(path: str | Path) -> str:
    """The scan an intensity file becomes: its stem, with characters a node name cannot hold replaced."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", Path(path).stem)


def _ingest_attrs(ds) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    chunk = (min(16, ds.sizes["frame"]), ds.sizes["det_y"], ds.sizes["det_x"])
    return ds, dict(ds.attrs), {"frames": {"chunks": chunk}}


@register
class IngestSpec(SetStage):
    """Scans of a SPEC file with their TIFF frames, dark and white fields: ``raw/<beamtime>/<scan>``."""

    name = "ingest_spec"
    selection = "scans"

    @dataclass(frozen=True)
    class Params:
        #: the beamtime's SPEC file
        spec: str
        #: frame files, a pattern with {scan} and {point} fields
        frames: str
        #: scan numbers ("54,60-72") or "all"
        scans: str = "all"
        #: dark and white fields of the whole sensor ("" for none)
        dark: str = ""
        flat: str = ""
        #: detector region (row0, row1, col0, col1); empty: the scan's #UIMR5
        roi: list[int] = ()
        #: a detector of the detector table
        detector: str = "timepix"

    def validate(self, params, inputs) -> None:
        if not Path(params.spec).is_file():
            raise ValueError(f"{params.spec}: SPEC file not found")
        if "{point" not in params.frames:
            raise ValueError(f"frames {params.frames!r} has no {{point}} field")
        if params.roi and len(params.roi) != 4:
            raise ValueError(f"roi must be 4 numbers (row0, row1, col0, col1), got {list(params.roi)}")
        parse_scan_list(params.scans)

    def members(self, params, inputs) -> list[tuple[str, str]]:
        from cdiplatform.ingest.spec import SpecFile

        with SpecFile(params.spec) as spec:
            keys = spec.keys
        wanted = parse_scan_list(params.scans)
        if wanted is None:
            return [(k, "") for k in keys]
        have = set(keys)
        return [(str(s), "" if str(s) in have else f"scan {s} is not in SPEC file {params.spec}") for s in wanted]

    def make(self, params, member: str, *, beamtime: str):
        from cdiplatform.catalog.raw import raw_scan_dataset
        from cdiplatform.ingest import read_scan

        raw = read_scan(str(Path(params.spec).resolve()), member, params.frames, dark=params.dark or None,
                        flat=params.flat or None, roi=tuple(params.roi) or None, detector=params.detector)
        return _ingest_attrs(raw_scan_dataset(raw, beamtime=beamtime))


@register
class IngestArrays(SetStage):
    """3D intensity arrays (NPY, NPZ, HDF5/CXI), one scan per file named after the file's stem."""

    name = "ingest_arrays"
    selection = "files"

    @dataclass(frozen=True)
    class Params:
        #: the files, one 3D scan each
        files: list[str]
        #: NPZ array name or HDF5 dataset path ("" : the format's default)
        dataset: str = ""

    def validate(self, params, inputs) -> None:
        seen: dict[str, str] = {}
        for f in params.files:
            name = scan_name(f)
            if name in seen:
                raise ValueError(f"{seen[name]} and {f} would both be scan {name!r} (a scan is named after its "
                                 f"file's stem): rename one, or ingest them into two beamtimes")
            seen[name] = f

    def members(self, params, inputs) -> list[tuple[str, str]]:
        return [(scan_name(f), "") for f in params.files]

    def make(self, params, member: str, *, beamtime: str):
        from cdiplatform.catalog.raw import raw_scan_dataset
        from cdiplatform.ingest import read_intensity

        path = next(str(Path(f).resolve()) for f in params.files if scan_name(f) == member)
        frames = read_intensity(path, dataset=params.dataset or None, scan=member)
        return _ingest_attrs(raw_scan_dataset(_ArrayScan(frames, member, path), beamtime=beamtime))


@dataclass
class _ArrayScan:
    """An intensity file seen as a raw scan: frames along the first axis, no SPEC columns, no geometry."""

    frames: Any
    scan: str
    path: str

    columns = {}
    dark = flat = None
    rocking_motor = "frame"

    @property
    def n_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def rocking_angles(self):
        import numpy as np

        return np.arange(self.n_frames, dtype=np.float64)

    def metadata(self) -> dict:
        return {"scan": self.scan, "sources": {"intensity": self.path}, "n_frames": self.n_frames}
