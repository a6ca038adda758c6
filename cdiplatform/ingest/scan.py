"""A measured Bragg CDI rocking scan as it came: frames, SPEC columns, geometry."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cdiplatform.ingest.detectors import Detector, get_detector
from cdiplatform.ingest.errors import IngestError
from cdiplatform.ingest.frames import Region, frame_files, read_field, read_frames
from cdiplatform.ingest.spec import SpecFile, SpecScan

__all__ = ["RawScan", "read_scan"]

#: motor names tried, in order, for each quantity (34-ID-C names first)
MOTOR_NAMES = {
    "energy_kev": ("Energy", "energy", "en"),
    "delta_deg": ("Delta", "delta", "del"),
    "gamma_deg": ("Gamma", "gamma", "gam"),
    "camdist_mm": ("camdist", "cam", "detdist"),
}


@dataclass
class RawScan:
    """A rocking scan as recorded.

    Attributes
    ----------
    frames : ndarray, shape ``(frame, det_y, det_x)``
        Raw detector counts, the files' dtype; one frame per rocking point,
        rows and columns of the detector region.
    columns : dict of str to ndarray
        The SPEC data columns, each of shape ``(frame,)`` (rocking angle,
        H K L, monitor, counters...), under their ``#L`` labels.
    scan : int or str
        Scan number (``"54.2"`` for a repeated number).
    energy_kev, delta_deg, gamma_deg, camdist_mm : float
        Beam energy (keV, motor ``Energy``), detector angles (degrees) and
        sample-detector distance (mm, motor ``camdist``).
    rocking_motor : str
        Name of the scanned motor (``Theta``); ``rocking_mnemonic`` its
        SPEC mnemonic (``th``).
    rocking_start, rocking_stop, rocking_step : float
        From the scan command, in the motor's units (degrees); step per frame.
    count_time_s : float
        Counting time per point, seconds.
    detector : Detector
        Pixel size and sensor shape (from the detector table).
    region : Region
        The part of the sensor the frames cover (``#UIMR5`` or given).
    dark, flat : ndarray or None
        The dark and white fields cropped to ``region`` (float64, as read).
    flat_mean : float or None
        Mean of the whole white field (what it is normalized by).
    sources : dict of str to str or list
        ``spec``, ``frames`` (list of files), ``dark``, ``flat`` paths.
    motors : dict of str to float
        Every motor position at the start of the scan.
    date : str or None
        ISO date of the scan start (SPEC ``#D``).
    command : str
        The SPEC scan command.
    aborted : bool
        SPEC says the scan was aborted.
    """

    frames: np.ndarray
    columns: dict[str, np.ndarray]
    scan: int | str
    energy_kev: float
    delta_deg: float
    gamma_deg: float
    camdist_mm: float
    rocking_motor: str
    rocking_mnemonic: str
    rocking_start: float
    rocking_stop: float
    rocking_step: float
    count_time_s: float
    detector: Detector
    region: Region
    dark: np.ndarray | None = None
    flat: np.ndarray | None = None
    flat_mean: float | None = None
    sources: dict = field(default_factory=dict)
    motors: dict[str, float] = field(default_factory=dict)
    date: str | None = None
    command: str = ""
    aborted: bool = False

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def rocking_angles(self) -> np.ndarray:
        """The rocking motor's recorded position per frame (SPEC column)."""
        for name in (self.rocking_motor, self.rocking_mnemonic):
            if name in self.columns:
                return self.columns[name]
        return self.rocking_start + self.rocking_step * np.arange(self.n_frames)

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        return self.detector.pixel_size

    def metadata(self) -> dict:
        """Plain, JSON-ready metadata (everything but the arrays)."""
        meta = {
            "scan": self.scan,
            "energy_kev": self.energy_kev,
            "delta_deg": self.delta_deg,
            "gamma_deg": self.gamma_deg,
            "camdist_mm": self.camdist_mm,
            "rocking_motor": self.rocking_motor,
            "rocking_mnemonic": self.rocking_mnemonic,
            "rocking_start_deg": self.rocking_start,
            "rocking_stop_deg": self.rocking_stop,
            "rocking_step_deg": self.rocking_step,
            "n_frames": self.n_frames,
            "count_time_s": self.count_time_s,
            "region": list(self.region.as_tuple()),
            "flat_mean": self.flat_mean,
            "date": self.date,
            "command": self.command,
            "aborted": self.aborted,
            "sources": {k: ([str(p) for p in v] if isinstance(v, list) else v)
                        for k, v in self.sources.items()},
            "motors": dict(self.motors),
        }
        meta.update(self.detector.as_dict())
        return meta


def _motor(spec_scan: SpecScan, quantity: str, override: float | None) -> float:
    if override is not None:
        return float(override)
    for name in MOTOR_NAMES[quantity]:
        try:
            return float(spec_scan.motor(name))
        except IngestError:
            continue
    raise IngestError(f"no motor for {quantity} (tried {', '.join(MOTOR_NAMES[quantity])}); "
                      f"give it explicitly", path=spec_scan.path, scan=spec_scan.scan_id)


def read_scan(
    spec: SpecFile | str | os.PathLike,
    scan_number: int | str,
    frames_pattern: str,
    *,
    dark: str | os.PathLike | None = None,
    flat: str | os.PathLike | None = None,
    roi: Region | tuple[int, int, int, int] | None = None,
    detector: str | Detector = "timepix",
    energy_kev: float | None = None,
    camdist_mm: float | None = None,
    allow_incomplete: bool = False,
    fast: bool = True,
) -> RawScan:
    """Read a rocking scan: its frames, SPEC columns and geometry.

    Parameters
    ----------
    spec : SpecFile or path
        The beamtime's SPEC file (pass a :class:`SpecFile` to index it once
        for many scans).
    scan_number : int or str
        Scan number, or ``"54.2"`` for the second scan numbered 54.
    frames_pattern : str
        Frame files, a ``str.format`` pattern with ``scan`` and ``point``
        (0-based) fields: ``"DIR/Staff20-1a_S{scan:04d}_{point:05d}.tif"``.
    dark, flat : path, optional
        Dark field and white (flat) field of the whole sensor, TIFF or NPY.
    roi : Region or (row_start, row_stop, col_start, col_stop), optional
        Detector region of the frames; default from the scan's ``#UIMR5``
        line, else the whole frame from the sensor origin.
    detector : str or Detector
        Name in :data:`~cdiplatform.ingest.detectors.DETECTORS`.
    energy_kev, camdist_mm : float, optional
        Override SPEC's ``Energy`` and ``camdist`` motors.
    allow_incomplete : bool
        Read the last scan of a SPEC file still being written, with the
        points it has so far (see :attr:`SpecScan.incomplete`); by default
        such a scan is refused.
    fast : bool
        Direct reads of uniform uncompressed frames (see :mod:`.frames`).

    Returns
    -------
    RawScan

    Raises
    ------
    IngestError
        Scan not in the SPEC file, or still being recorded; missing, extra,
        corrupt or mismatched frames; a frame count other than the SPEC
        points (frame files beyond the points of an aborted scan, such as
        that of the point being counted when it stopped, are left out);
        frames without signal;
        a region that does not fit the frames, the sensor, the dark or the
        white field; a scan command that is not a motor scan.
    """
    if isinstance(spec, SpecFile):
        spec_scan = spec.scan(scan_number)
    else:
        with SpecFile(spec) as spec_file:
            spec_scan = spec_file.scan(scan_number)
    return _read_scan(spec_scan, frames_pattern, dark=dark, flat=flat, roi=roi, detector=detector,
                      energy_kev=energy_kev, camdist_mm=camdist_mm, allow_incomplete=allow_incomplete,
                      fast=fast)


def _read_scan(spec_scan: SpecScan, frames_pattern: str, *, dark, flat, roi, detector, energy_kev,
               camdist_mm, allow_incomplete: bool, fast: bool) -> RawScan:
    spec_path = spec_scan.path
    key = spec_scan.scan_id
    det = get_detector(detector)

    command = spec_scan.parsed_command
    if not command.motors:
        raise IngestError(f"scan command {spec_scan.command!r} is not a motor scan "
                          "(ascan/dscan family); cannot tell the rocking motor",
                          path=spec_path, scan=key)
    mnemonic, start, stop = command.motors[0]
    try:
        motor_name = spec_scan.motor_name(mnemonic)
    except IngestError:
        motor_name = mnemonic
    if command.relative:
        try:
            origin = spec_scan.motor(mnemonic)
        except IngestError:
            origin = 0.0
        start, stop = origin + start, origin + stop
    step = command.step() or 0.0
    n_points = spec_scan.n_points
    if spec_scan.incomplete and not allow_incomplete:
        raise IngestError(f"scan is still being recorded: {n_points} of {spec_scan.planned_points} "
                          "points, no next scan and no abort comment in the SPEC file yet",
                          path=spec_path, scan=key)
    if n_points == 0:
        raise IngestError("scan has no data rows in the SPEC file", path=spec_path, scan=key)

    files = frame_files(frames_pattern, spec_scan.number, n_points,
                        allow_extra=spec_scan.aborted or spec_scan.incomplete)
    frames = read_frames(files, scan=key, fast=fast)

    if roi is not None:
        region = Region.coerce(roi)
        region_source = "given"
    elif "UIMR5" in spec_scan.header:
        region = Region.from_uimr(spec_scan.header["UIMR5"])
        region_source = "#UIMR5"
    else:
        region = Region(0, frames.shape[1], 0, frames.shape[2])
        region_source = "frame shape"
    if region.shape != frames.shape[1:]:
        raise IngestError(f"detector region {region.as_tuple()} (from {region_source}) is "
                          f"{region.shape[0]} x {region.shape[1]} pixels but the frames are "
                          f"{frames.shape[1]} x {frames.shape[2]}", path=files[0], scan=key)
    if not region.fits(det.sensor_shape):
        raise IngestError(f"detector region {region.as_tuple()} does not fit the "
                          f"{det.name} sensor {det.sensor_shape}", path=files[0], scan=key)

    dark_arr = flat_arr = None
    flat_mean = None
    if dark is not None:
        dark_arr = read_field(dark, kind="dark", region=region, scan=key)[region.slices].copy()
    if flat is not None:
        full = read_field(flat, kind="white", region=region, scan=key)
        flat_mean = float(full.mean())
        if not flat_mean > 0:
            raise IngestError("white field is zero everywhere", path=flat, scan=key)
        flat_arr = full[region.slices].copy()

    count_time = spec_scan.count_time if spec_scan.count_time is not None else command.count_time
    return RawScan(
        frames=frames,
        columns=dict(spec_scan.data),
        scan=key,
        energy_kev=_motor(spec_scan, "energy_kev", energy_kev),
        delta_deg=_motor(spec_scan, "delta_deg", None),
        gamma_deg=_motor(spec_scan, "gamma_deg", None),
        camdist_mm=_motor(spec_scan, "camdist_mm", camdist_mm),
        rocking_motor=motor_name,
        rocking_mnemonic=mnemonic,
        rocking_start=float(start),
        rocking_stop=float(stop),
        rocking_step=float(step),
        count_time_s=float(count_time) if count_time is not None else float("nan"),
        detector=det,
        region=region,
        dark=dark_arr,
        flat=flat_arr,
        flat_mean=flat_mean,
        sources={
            "spec": spec_path,
            "frames": [str(f) for f in files],
            "dark": None if dark is None else str(Path(dark)),
            "flat": None if flat is None else str(Path(flat)),
        },
        motors=dict(spec_scan.motors),
        date=spec_scan.date_iso or spec_scan.date,
        command=spec_scan.command,
        aborted=spec_scan.aborted,
    )
