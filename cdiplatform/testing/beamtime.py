"""A synthetic beamtime written as a real one: a SPEC file in the APS 34-ID-C style and TIFF frames.

For tests and benchmarks of the ingest and of live processing. The SPEC file
looks like the real ``example.spec`` of scan 54 (file header with the
``#O``/``#o`` motor tables and ``#J`` counters; per scan ``#S .. ascan th``,
``#D``, ``#T``, ``#Q``, ``#P`` motor positions, the ``#UIM..`` detector lines
with the ``#UIMR5`` region, ``#N``, ``#L`` and one data row per point); each
point's frame is one int32 TIFF, named by a ``{scan}``/``{point}`` pattern;
dark and white fields of the whole sensor beside them.

:func:`write_beamtime` writes scans whole; :class:`BeamtimeWriter` writes
them a step at a time (the file header, a scan's header, a frame, a data
row, half a frame or half a row, the end or the abort of a scan) so that a
test can watch a scan being recorded.

The intensities are the caller's (a forward model, or :func:`bragg_peak_stack`
for a quick one); the geometry defaults are scan 54's.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BeamtimeFiles", "BeamtimeWriter", "SyntheticScan", "bragg_peak_stack", "write_beamtime"]

#: the motors of 34-ID-C's SPEC file: (name, mnemonic, position at scan 54), 8 a line as there
_MOTORS = (
    ("Delta", "del", 32.174), ("Theta", "th", 0.2200042), ("Chi", "chi", 90.0), ("Phi", "phi", -5.0),
    ("Mu", "mu", 0.0), ("Gamma", "gam", 12.6346), ("z-sample", "z", 10.214), ("rbverpos", "vp", -0.0335),
    ("Monochr", "mcr", 12.690528), ("Tweak", "twe", -1.3369048), ("chi_mono", "chimono", -0.8246601),
    ("WhitePos", "wbsp", 2.6258), ("WhiteGap", "wbsg", 0.1106), ("Mirror", "mth", 0.926866),
    ("horiz_gap", "hg", 0.03), ("horiz_pos", "hp", 0.1485),
    ("vert_gap", "vg", 0.07), ("detectorX", "detx", 6.1), ("Piezo_X", "px", -2.5), ("Piezo_Y", "py", 0.0),
    ("Piezo_Z", "pz", 0.0), ("Lab_X", "labx", -0.4), ("Lab_Y", "laby", 0.0), ("Lab_Z", "labz", 0.4),
    ("Clab_X", "clabx", 0.0), ("Clab_Y", "claby", 0.0), ("Clab_Z", "clabz", 0.0), ("Sample_X", "x", 0.514),
    ("Sample_Y", "y", -1.955), ("camdist", "cam", 500.0), ("LanlTension", "lanl", 0.0),
    ("IDEnergy", "iden", 9.198),
    ("Energy", "en", 9.0), ("hub_chi", "hub_chi", 90.0), ("hub_phi", "hub_phi", -5.0),
    ("kb_hpos", "condx", -659.03887), ("kb_vpos", "condyy", 4971.6398), ("detectorY", "dety", 0.0),
    ("hxp_chi", "hxp_chi", 90.0), ("hxp_phi", "hxp_phi", 0.0),
    ("dacx", "dacx", 12.0), ("Tension", "ten", 0.0), ("LinkamTemp", "linkt", 0.0), ("tipx", "tipx", 0.0),
    ("tipy", "tipy", 0.0), ("tipz", "tipz", 0.0), ("ctipx", "ctipx", 8.0950225), ("ctipy", "ctipy", -1.24899),
    ("ctipz", "ctipz", -6.34731),
)
_COUNTERS = ("Seconds  Monitor  Detector  pm detector  ImageTot  ImageMax",
             "sec mon det det2 imtot immax")
_LABELS = ("Theta", "H", "K", "L", "Epoch", "Seconds", "pm detector", "ImageTot", "ImageMax",
           "Monitor", "Detector")
_HKL = (-0.232897, -0.152347, 0.520262)  # scan 54's #Q
_EPOCH_START, _EPOCH_STEP = 231172.285, 5.46  # seconds since the file's #E, per point (scan 54)


@dataclass
class SyntheticScan:
    """One rocking scan to write: its frames and its geometry (defaults: scan 54's).

    Attributes
    ----------
    number : int
        The SPEC scan number.
    intensity : ndarray, shape ``(frames, rows, cols)``
        Photon counts per rocking point, non-negative; written as int32
        (rounded). ``rows, cols`` is the detector region.
    energy_kev, delta_deg, gamma_deg, camdist_mm : float
        Beam energy (keV), detector angles (degrees), sample-detector
        distance (mm): the ``Energy``, ``Delta``, ``Gamma``, ``camdist`` motors.
    th_start_deg, th_step_deg : float
        Rocking angle (``th``) of the first point and step per point, degrees.
    count_time_s : float
        Counting time per point, seconds.
    region_origin : (int, int)
        Sensor row and column of the region's first pixel (``#UIMR5``).
    planned_points : int or None
        Points the scan command asks for; default the frames given. More
        than the frames for a scan that is aborted (or still being recorded).
    aborted : bool
        End the scan with SPEC's ``Scan aborted after N points.`` comment.
    monitor : int
        The ``Monitor`` counter of every point.
    date : str
        The ``#D`` line (SPEC's ``ctime`` format).
    """

    number: int
    intensity: np.ndarray
    energy_kev: float = 9.0
    delta_deg: float = 32.174
    gamma_deg: float = 12.6346
    camdist_mm: float = 500.0
    th_start_deg: float = -0.279996
    th_step_deg: float = 0.005
    count_time_s: float = 0.25
    region_origin: tuple[int, int] = (0, 0)
    planned_points: int | None = None
    aborted: bool = False
    monitor: int = 1070
    date: str = "Tue Feb 04 12:28:23 2020"

    def __post_init__(self) -> None:
        counts = np.asarray(self.intensity)
        if counts.ndim != 3 or 0 in counts.shape:
            raise ValueError(f"scan {self.number}: intensity must be (frames, rows, cols), "
                             f"got shape {counts.shape}")
        if not np.all(np.isfinite(counts)) or counts.min() < 0 or counts.max() > np.iinfo(np.int32).max:
            raise ValueError(f"scan {self.number}: intensity must be finite counts in 0..2**31-1")
        self.intensity = np.rint(counts).astype(np.int32)
        if self.planned_points is None:
            self.planned_points = self.n_points
        if self.planned_points < self.n_points:
            raise ValueError(f"scan {self.number}: {self.n_points} frames but {self.planned_points} "
                             "planned points")

    @property
    def n_points(self) -> int:
        """Frames (points recorded)."""
        return int(self.intensity.shape[0])

    @property
    def command(self) -> str:
        """The ``#S`` command: ``ascan  th START STOP  INTERVALS TIME``."""
        intervals = self.planned_points - 1
        stop = self.th_start_deg + self.th_step_deg * intervals
        return f"ascan  th {self.th_start_deg:.6f} {stop:.6f}  {intervals} {self.count_time_s:g}"

    def theta(self, point: int) -> float:
        """Rocking angle of a point, degrees."""
        return self.th_start_deg + self.th_step_deg * point

    def motor_positions(self) -> dict[str, float]:
        """Every motor's position at the start of the scan (scan 54's, with this scan's geometry)."""
        positions = {name: value for name, _, value in _MOTORS}
        positions.update(Delta=self.delta_deg, Gamma=self.gamma_deg, Energy=self.energy_kev,
                         camdist=self.camdist_mm,
                         Theta=self.theta((self.planned_points - 1) / 2))  # th at the scan's middle
        return positions


@dataclass(frozen=True)
class BeamtimeFiles:
    """Where a synthetic beamtime is: what :func:`~cdiplatform.ingest.read_scan` takes.

    Attributes
    ----------
    spec : Path
        The SPEC file.
    frame_pattern : str
        Frame files, ``str.format`` pattern with ``scan`` and ``point`` fields.
    dark, white : Path
        Dark and white fields of the whole sensor (TIFF).
    """

    spec: Path
    frame_pattern: str
    dark: Path
    white: Path


class BeamtimeWriter:
    """Write a synthetic beamtime a step at a time.

    Parameters
    ----------
    directory : str or os.PathLike
        Where to write (created).
    spec_name : str
        The SPEC file's name in ``directory``.
    frame_template : str
        Frame file names, relative to ``directory`` (or absolute): a
        ``str.format`` pattern with ``scan`` and ``point`` (0-based).
    sensor_shape : (int, int)
        Rows and columns of the whole sensor (the dark and white fields);
        512 x 512 for the 34-ID-C Timepix.

    Examples
    --------
    >>> writer = BeamtimeWriter(tmp_path)                # doctest: +SKIP
    >>> writer.write_file_header(); writer.begin_scan(scan)  # doctest: +SKIP
    >>> writer.write_point(scan, 0)                      # the frame, then its SPEC row  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike, *, spec_name: str = "beamtime.spec",
                 frame_template: str = "frames/synthetic_S{scan:04d}_{point:05d}.tif",
                 sensor_shape: tuple[int, int] = (512, 512)) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.spec = self.directory / spec_name
        self.frame_pattern = str(self.directory / frame_template)
        self.sensor_shape = tuple(int(n) for n in sensor_shape)
        self.dark = self.directory / "dark.tif"
        self.white = self.directory / "whitefield.tif"

    @property
    def files(self) -> BeamtimeFiles:
        """The paths, for :func:`~cdiplatform.ingest.read_scan`."""
        return BeamtimeFiles(self.spec, self.frame_pattern, self.dark, self.white)

    def _append(self, text: str) -> None:
        with open(self.spec, "a", encoding="ascii") as fh:
            fh.write(text)

    # -- SPEC text -------------------------------------------------------------------------
    def write_file_header(self) -> None:
        """Start the SPEC file (overwriting it) with a 34-ID-C file header."""
        lines = [f"#F {self.spec}", "#E 1580609738", "#D Sat Feb 01 20:15:38 2020",
                 "#C sixc  User = cxduser", ""]
        for block in range(0, len(_MOTORS), 8):
            lines.append(f"#O{block // 8} " + "  ".join(m[0] for m in _MOTORS[block:block + 8]))
        for block in range(0, len(_MOTORS), 8):
            lines.append(f"#o{block // 8} " + " ".join(m[1] for m in _MOTORS[block:block + 8]))
        lines += [f"#J0 {_COUNTERS[0]}", f"#j0 {_COUNTERS[1]}", "", ""]
        self.spec.write_text("\n".join(lines) + "\n", encoding="ascii")

    def begin_scan(self, scan: SyntheticScan) -> None:
        """Append a scan's header lines, up to its ``#L`` labels."""
        rows, cols = scan.intensity.shape[1:]
        row0, col0 = scan.region_origin
        if row0 < 0 or col0 < 0 or row0 + rows > self.sensor_shape[0] or col0 + cols > self.sensor_shape[1]:
            raise ValueError(f"scan {scan.number}: a region of {rows} x {cols} at {scan.region_origin} "
                             f"does not fit the sensor {self.sensor_shape}")
        positions = list(scan.motor_positions().values())
        lines = [f"#S {scan.number}  {scan.command}", f"#D {scan.date}",
                 f"#T {scan.count_time_s:g}  (Seconds)", "#Q " + " ".join(f"{v:g}" for v in _HKL)]
        for block in range(0, len(positions), 8):
            lines.append(f"#P{block // 8} " + " ".join(f"{v:.8g}" for v in positions[block:block + 8]))
        lines += ["#UIMDET 34idcTIM2:", "#UIM Image header information from areaDetector",
                  "#UIMR Name minX sizeX minY sizeY BgdWidth",
                  f"#Readout 0 {self.sensor_shape[1]} 0 {self.sensor_shape[0]}",
                  f"#UIMR5  {col0} {cols} {row0} {rows} 1",  # minX sizeX minY sizeY: X is the column
                  f"#N {len(_LABELS)}", "#L " + "  ".join(_LABELS)]
        self._append("\n".join(lines) + "\n")

    def _row(self, scan: SyntheticScan, point: int) -> str:
        frame = scan.intensity[point]
        values = [scan.theta(point), *_HKL, _EPOCH_START + _EPOCH_STEP * point, scan.count_time_s, 0,
                  int(frame.sum(dtype=np.int64)), int(frame.max()), scan.monitor, 0]
        return " ".join(f"{v:.7g}" if isinstance(v, float) else str(v) for v in values)

    def write_row(self, scan: SyntheticScan, point: int, *, partial: bool = False) -> None:
        """Append a point's data row; ``partial``: only its first half, without the newline."""
        row = self._row(scan, point)
        self._append(row[:len(row) // 2] if partial else row + "\n")

    def finish_row(self, scan: SyntheticScan, point: int) -> None:
        """Append the rest of a row written with ``partial=True``."""
        row = self._row(scan, point)
        self._append(row[len(row) // 2:] + "\n")

    def end_scan(self, scan: SyntheticScan, *, points: int | None = None) -> None:
        """End a scan: SPEC's abort comment if ``scan.aborted``, then a blank line.

        ``points``: the points written (for the abort comment); default all frames.
        """
        points = scan.n_points if points is None else points
        if scan.aborted:
            self._append(f"#C {scan.date}.  Scan aborted after {points} points.\n")
        self._append("\n")

    # -- TIFF files ------------------------------------------------------------------------
    def frame_path(self, scan: SyntheticScan, point: int) -> Path:
        """The frame file of a point."""
        return Path(self.frame_pattern.format(scan=scan.number, point=point))

    def write_frame(self, scan: SyntheticScan, point: int, *, partial: bool = False) -> Path:
        """Write a point's frame (int32 TIFF); ``partial``: only the first half of its bytes."""
        import tifffile

        path = self.frame_path(scan, point)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, scan.intensity[point])
        data = buffer.getvalue()
        path.write_bytes(data[:len(data) // 2] if partial else data)
        return path

    def write_point(self, scan: SyntheticScan, point: int) -> None:
        """A point as the beamline records it: the frame, then the SPEC row."""
        self.write_frame(scan, point)
        self.write_row(scan, point)

    def write_scan(self, scan: SyntheticScan) -> None:
        """A whole scan: header, every point, end (or abort)."""
        self.begin_scan(scan)
        for point in range(scan.n_points):
            self.write_point(scan, point)
        self.end_scan(scan)

    def write_fields(self, *, dark: np.ndarray | None = None, white: np.ndarray | None = None) -> None:
        """Dark and white fields of the whole sensor (TIFF).

        Defaults: a dark field of zeros (int32) and a uniform white field of
        14,700 (float32, about the real one's mean).
        """
        import tifffile

        dark = np.zeros(self.sensor_shape, np.int32) if dark is None else np.asarray(dark)
        white = np.full(self.sensor_shape, 14_700.0, np.float32) if white is None else np.asarray(white)
        for name, field in (("dark", dark), ("white", white)):
            if field.shape != self.sensor_shape:
                raise ValueError(f"{name} field has shape {field.shape}, the sensor {self.sensor_shape}")
        tifffile.imwrite(self.dark, dark)
        tifffile.imwrite(self.white, white)


def write_beamtime(directory: str | os.PathLike, scans: list[SyntheticScan], *,
                   spec_name: str = "beamtime.spec",
                   frame_template: str = "frames/synthetic_S{scan:04d}_{point:05d}.tif",
                   sensor_shape: tuple[int, int] = (512, 512),
                   dark: np.ndarray | None = None, white: np.ndarray | None = None) -> BeamtimeFiles:
    """Write a whole synthetic beamtime: SPEC file, one TIFF per point, dark and white fields.

    Parameters
    ----------
    directory : str or os.PathLike
        Where to write (created).
    scans : list of SyntheticScan
        In file order, numbers unique (frame files are named by number).
    spec_name, frame_template, sensor_shape
        See :class:`BeamtimeWriter`.
    dark, white : ndarray, shape ``sensor_shape``, optional
        The fields (see :meth:`BeamtimeWriter.write_fields` for the defaults).

    Returns
    -------
    BeamtimeFiles
    """
    writer = BeamtimeWriter(directory, spec_name=spec_name, frame_template=frame_template,
                            sensor_shape=sensor_shape)
    writer.write_file_header()
    for scan in scans:
        writer.write_scan(scan)
    writer.write_fields(dark=dark, white=white)
    return writer.files


def bragg_peak_stack(shape: tuple[int, int, int], rng: np.random.Generator, *,
                     peak_counts: float = 165_297.0, size_fraction: float = 0.25) -> np.ndarray:
    """A quick rocking-scan intensity: the far field of a small crystal, Poisson noise.

    The crystal is a cuboid of ``size_fraction`` of each axis (so the
    oversampling is about ``1 / size_fraction``) with a random curved phase;
    its diffraction intensity (:func:`cdiplatform.physics.far_field`,
    centred at ``N // 2``) is scaled so that its maximum is ``peak_counts``
    (scan 54's brightest pixel by default), then drawn as Poisson counts.

    Parameters
    ----------
    shape : (frames, rows, cols)
    rng : numpy.random.Generator
    peak_counts : float
        Expected counts at the peak.
    size_fraction : float
        Crystal size per axis, as a fraction of the array.

    Returns
    -------
    ndarray, shape ``shape``, int32 counts.
    """
    from cdiplatform.physics import far_field

    obj = np.zeros(shape, np.complex128)
    sizes = [min(n, max(2, int(round(n * size_fraction)))) for n in shape]
    box = tuple(slice(n // 2 - s // 2, n // 2 - s // 2 + s) for n, s in zip(shape, sizes))
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in sizes], indexing="ij")
    phase = sum(rng.uniform(-0.5, 0.5) * g ** 2 for g in grids)  # curved (strain-like), no ramp
    obj[box] = np.exp(1j * phase)
    intensity = np.abs(far_field(obj)) ** 2
    intensity *= peak_counts / intensity.max()
    return rng.poisson(intensity).astype(np.int32)
