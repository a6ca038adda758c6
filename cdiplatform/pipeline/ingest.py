"""Beamtime ingest: many scans of a SPEC file (or intensity files), one Dask task each.

Each task reads one scan with :mod:`cdiplatform.ingest` and writes it whole
into ``raw/<beamtime>/<scan>`` (the catalog moves a finished node into place
in one rename, so a killed ingest leaves no half-written scan). A scan that
cannot be read is recorded as failed, with the reader's message, in the
attributes of ``raw/<beamtime>``; the others land. Scans already in the
catalog are skipped unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr

from cdiplatform.catalog import open_catalog
from cdiplatform.catalog.provenance import history_line, now, software_info

__all__ = ["IngestOutcome", "ingest_arrays", "ingest_spec", "parse_scan_list", "raw_scan_dataset"]


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


def _content_hash(ds: xr.Dataset) -> str:
    h = hashlib.sha256()
    for name in sorted(ds.variables):
        h.update(name.encode())
        h.update(np.ascontiguousarray(ds[name].values).tobytes() if ds[name].dtype.kind != "O"
                 else str(ds[name].values.tolist()).encode())
    return h.hexdigest()


def raw_scan_dataset(raw: Any, *, beamtime: str) -> xr.Dataset:
    """A :class:`~cdiplatform.ingest.RawScan` as the catalog's raw-scan layout.

    Dims ``frame, det_y, det_x``: ``frames`` (counts as recorded), every SPEC
    column on ``frame`` (prefixed ``spec_``), the rocking angle as coordinate,
    the dark and white fields cropped to the region; geometry in attributes.
    """
    n = raw.n_frames
    data: dict[str, Any] = {"frames": (("frame", "det_y", "det_x"), raw.frames, {"units": "counts"})}
    labels = list(raw.columns)
    if labels:
        table = np.stack([np.asarray(raw.columns[k], dtype=np.float64) for k in labels], axis=1)
        data["spec"] = (("frame", "spec_column"), table,
                        {"long_name": "SPEC data columns per rocking point (#L labels on spec_column)"})
    if raw.dark is not None:
        data["dark"] = (("det_y", "det_x"), raw.dark.astype(np.float32), {"long_name": "dark field, cropped"})
    if raw.flat is not None:
        data["flat"] = (("det_y", "det_x"), raw.flat.astype(np.float32), {"long_name": "white field, cropped"})
    coords = {
        "frame": ("frame", np.arange(n)),
        "rocking_angle": ("frame", np.asarray(raw.rocking_angles, dtype=np.float64),
                          {"units": "degree", "motor": raw.rocking_motor}),
    }
    if labels:
        coords["spec_column"] = ("spec_column", np.asarray(labels, dtype=object))
    meta = raw.metadata()
    attrs = {"beamtime": beamtime, "kind": "measured", **{k: v for k, v in meta.items() if k != "motors"},
             "motors": meta.get("motors", {})}
    return xr.Dataset(data, coords=coords, attrs=attrs)


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
    attrs["content_hash"] = _content_hash(ds)
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
    futures = [
        client.submit(_ingest_one, read, catalog=str(catalog), node=node, beamtime=beamtime, scan=scan,
                      overwrite=overwrite, stage=stage, key=f"ingest-{beamtime}-{scan}", pure=False)
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
    jobs = [(str(s), f"raw/{beamtime}/{s}",
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
    for f in files:
        scan = re.sub(r"[^0-9A-Za-z_.-]+", "_", Path(f).stem)
        jobs.append((scan, f"raw/{beamtime}/{scan}", partial(_read_array, str(Path(f).resolve()), dataset, scan)))
    return _run(client, jobs, catalog=Path(catalog), beamtime=beamtime, overwrite=overwrite, stage=stage,
                on_done=on_done)


def raw_scan_from_dataset(ds: xr.Dataset) -> Any:
    """The inverse of :func:`raw_scan_dataset`: a catalog raw scan as a :class:`~cdiplatform.ingest.RawScan`."""
    from cdiplatform.ingest import Detector, RawScan, Region

    a = ds.attrs
    columns = ({str(k): ds["spec"].values[:, i] for i, k in enumerate(ds["spec_column"].values)}
               if "spec" in ds else {})
    detector = Detector(name=a.get("detector", "unknown"), pixel_size=tuple(a.get("pixel_size_m", (55e-6, 55e-6))),
                        sensor_shape=tuple(a.get("sensor_shape", ds["frames"].shape[1:])),
                        orientation=tuple(a.get("detector_orientation", ("y-", "x+"))))
    region = a.get("region") or [0, ds.sizes["det_y"], 0, ds.sizes["det_x"]]
    return RawScan(
        frames=ds["frames"].values,
        columns=columns,
        scan=a.get("scan", ""),
        energy_kev=float(a.get("energy_kev", np.nan)),
        delta_deg=float(a.get("delta_deg", np.nan)),
        gamma_deg=float(a.get("gamma_deg", np.nan)),
        camdist_mm=float(a.get("camdist_mm", np.nan)),
        rocking_motor=a.get("rocking_motor", "frame"),
        rocking_mnemonic=a.get("rocking_mnemonic", ""),
        rocking_start=float(a.get("rocking_start_deg", 0.0)),
        rocking_stop=float(a.get("rocking_stop_deg", 0.0)),
        rocking_step=float(a.get("rocking_step_deg", np.nan)),
        count_time_s=float(a.get("count_time_s", np.nan)),
        detector=detector,
        region=Region(*region),
        dark=ds["dark"].values.astype(np.float64) if "dark" in ds else None,
        flat=ds["flat"].values.astype(np.float64) if "flat" in ds else None,
        flat_mean=a.get("flat_mean"),
        sources=a.get("sources", {}),
        motors=a.get("motors", {}),
        date=a.get("date"),
        command=a.get("command", ""),
        aborted=bool(a.get("aborted", False)),
    )
