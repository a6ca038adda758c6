"""Detector frames and fields (dark, white) from TIFF files.

One TIFF file per rocking point, named by a pattern such as
``"DIR/Staff20-1a_S{scan:04d}_{point:05d}.tif"``. Frames are read into one
``(frame, det_y, det_x)`` array with their own dtype (raw counts).

Every file is checked: missing, empty, truncated or not a TIFF, more than one
image, an image that is not 2-D, a shape or dtype other than the first
frame's, NaN or negative values; and a scan's frames must hold some signal
(not every pixel 0). Each problem raises :class:`IngestError` naming the file
and the scan.

Speed: the first frame is parsed with :mod:`tifffile`. When it is a classic
TIFF with one uncompressed strip, each further file's image tags (size, type,
compression, strip offset and length) are read directly (a few hundred bytes)
and, when they match the first frame's and the file has its size, its pixels
are read with one :func:`numpy.fromfile`; anything else goes through
tifffile (``fast=False``: every file). This hand-written path is kept because
it is measured clearly faster on the real frames: tifffile parses every tag
of every file in Python, and reading the 201 frames of scan 54 with it takes
2 to 3 times as long (``tests/benchmarks/bench_ingest.py``, both in the same
run, interleaved; figures in ``docs/ingest.md``). It handles no file that
tifffile cannot.
"""

from __future__ import annotations

import glob
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cdiplatform.ingest.errors import IngestError

__all__ = ["Region", "frame_files", "read_field", "read_frames", "read_tiff"]


@dataclass(frozen=True)
class Region:
    """A rectangle of the detector sensor, in pixels (end-exclusive).

    ``Region.from_uimr("0 256 0 256 1")`` reads a SPEC ``#UIMR5`` line, whose
    numbers are ``minX sizeX minY sizeY [BgdWidth]``: X is the column (fast)
    index, Y the row index.
    """

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    def __post_init__(self) -> None:
        if not (0 <= self.row_start < self.row_stop and 0 <= self.col_start < self.col_stop):
            raise ValueError(f"empty or negative detector region {self.as_tuple()}")

    @classmethod
    def from_uimr(cls, text: str) -> Region:
        """From the numbers of a ``#UIMR`` header line: ``minX sizeX minY sizeY ...``."""
        try:
            min_x, size_x, min_y, size_y = (int(float(v)) for v in text.split()[:4])
        except ValueError:
            raise ValueError(f"cannot read a detector region from {text!r} "
                             "(expected 'minX sizeX minY sizeY')") from None
        return cls(min_y, min_y + size_y, min_x, min_x + size_x)

    @classmethod
    def coerce(cls, value) -> Region:
        """A Region from a Region, or from ``(row_start, row_stop, col_start, col_stop)``."""
        if isinstance(value, Region):
            return value
        values = tuple(int(v) for v in value)
        if len(values) != 4:
            raise ValueError("a detector region is (row_start, row_stop, col_start, col_stop), "
                             f"got {value!r}")
        return cls(*values)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row_stop - self.row_start, self.col_stop - self.col_start)

    @property
    def slices(self) -> tuple[slice, slice]:
        return (slice(self.row_start, self.row_stop), slice(self.col_start, self.col_stop))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.row_start, self.row_stop, self.col_start, self.col_stop)

    def fits(self, shape: tuple[int, ...]) -> bool:
        return self.row_stop <= shape[-2] and self.col_stop <= shape[-1]


# -- single files --------------------------------------------------------------------------

def _check_values(arr: np.ndarray, path, scan, *, allow_negative: bool = False,
                  what: str = "frame") -> None:
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise IngestError(f"{what} holds {int(bad.sum())} NaN or infinite values (first at pixel {idx})",
                              path=path, scan=scan)
    if not allow_negative and arr.dtype.kind in "if":
        neg = arr < 0
        if neg.any():
            idx = tuple(int(i) for i in np.argwhere(neg)[0])
            raise IngestError(f"{what} holds {int(neg.sum())} negative values "
                              f"(first {arr[idx].item()} at pixel {idx})", path=path, scan=scan)


def read_tiff(path: str | os.PathLike, *, scan: int | str | None = None, what: str = "frame",
              allow_negative: bool = False) -> np.ndarray:
    """Read a 2-D image from a one-image TIFF file, checked.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    scan : int or str, optional
        Scan number, for error messages.
    what : str
        What the file is (``"frame"``, ``"dark field"``...), for error messages.
    allow_negative : bool
        Accept negative values (a real, subtracted dark field may have some).

    Returns
    -------
    ndarray, shape ``(rows, columns)``, the file's dtype.

    Raises
    ------
    IngestError
        Missing, empty, truncated or unreadable file; not exactly one 2-D
        image; NaN or (unless allowed) negative values.
    """
    arr = _read_image(Path(path), scan, what)
    _check_values(arr, path, scan, allow_negative=allow_negative, what=what)
    return arr


def _read_image(path: Path, scan, what: str, out: np.ndarray | None = None) -> np.ndarray:
    """The one 2-D image of a TIFF file, into ``out`` when it has the image's shape and dtype."""
    import tifffile

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IngestError(f"{what} file not found", path=path, scan=scan) from None
    if size == 0:
        raise IngestError(f"{what} file is empty (0 bytes)", path=path, scan=scan)
    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) != 1:
                raise IngestError(f"{what} file holds {len(tif.pages)} images, expected one",
                                  path=path, scan=scan)
            page = tif.pages.first
            _check_extent(page, size, path, scan, what)
            if out is not None and page.shape == out.shape and page.dtype == out.dtype:
                arr = page.asarray(out=out)
            else:
                arr = page.asarray()
    except IngestError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise IngestError(f"{what} file is not a readable TIFF ({type(exc).__name__}: {exc})",
                          path=path, scan=scan) from exc
    arr = np.asarray(arr)
    if arr.ndim == 3 and 1 in arr.shape:
        arr = arr.squeeze()
    if arr.ndim != 2:
        raise IngestError(f"{what} image has shape {arr.shape}, expected 2-D (rows, columns)",
                          path=path, scan=scan)
    return arr


def _check_extent(page, size: int, path, scan, what: str) -> None:
    """Raise if the image data of ``page`` runs past the end of the file (truncated file)."""
    offsets = [int(o) for o in page.dataoffsets]
    counts = [int(c) for c in page.databytecounts]
    if not offsets:
        raise IngestError(f"{what} file has no image data", path=path, scan=scan)
    end = max(o + c for o, c in zip(offsets, counts))
    if end > size:
        raise IngestError(f"{what} file is truncated: its image data needs {end} bytes, "
                          f"the file has {size}", path=path, scan=scan)
    if page.compression == 1:
        expected = int(np.prod(page.shaped)) * page.dtype.itemsize if page.dtype is not None else None
        if expected is not None and sum(counts) < expected:
            raise IngestError(f"{what} file is truncated: {sum(counts)} bytes of pixels for "
                              f"an image of {page.shape}", path=path, scan=scan)


# -- fast path for uniform uncompressed frames ---------------------------------------------

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}
_LAYOUT_TAGS = (256, 257, 258, 259, 273, 277, 279, 284, 339)


def _layout(path: Path) -> tuple | None:
    """The image-layout tags of a classic TIFF's first IFD, read directly; None if not simple."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8 or head[:2] not in (b"II", b"MM"):
                return None
            bo = "<" if head[:2] == b"II" else ">"
            magic, ifd = struct.unpack(bo + "HI", head[2:8])
            if magic != 42:
                return None
            fh.seek(ifd)
            raw_n = fh.read(2)
            if len(raw_n) < 2:
                return None
            (n,) = struct.unpack(bo + "H", raw_n)
            entries = fh.read(12 * n)
            if len(entries) < 12 * n:
                return None
    except OSError:
        return None
    tags = {}
    for i in range(n):
        tag, typ, count = struct.unpack(bo + "HHI", entries[12 * i:12 * i + 8])
        if tag not in _LAYOUT_TAGS:
            continue
        if count != 1 or typ not in _TYPE_SIZES or _TYPE_SIZES[typ] > 4:
            return None  # several strips or an odd entry: let tifffile handle it
        value_bytes = entries[12 * i + 8:12 * i + 12]
        fmt = {1: "B", 3: "H", 4: "I", 8: "h", 9: "i"}.get(typ)
        if fmt is None:
            return None
        tags[tag] = struct.unpack(bo + fmt, value_bytes[:struct.calcsize(fmt)])[0]
    return (bo,) + tuple(tags.get(t) for t in _LAYOUT_TAGS)


@dataclass(frozen=True)
class _FastLayout:
    signature: tuple
    offset: int
    dtype: np.dtype
    shape: tuple[int, int]
    size: int  # file size of the reference frame

    @property
    def count(self) -> int:
        return self.shape[0] * self.shape[1]


def _fast_layout(path: Path, arr: np.ndarray) -> _FastLayout | None:
    import tifffile

    sig = _layout(path)
    if sig is None:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if (tif.is_bigtiff or page.compression != 1 or len(page.dataoffsets) != 1
                    or page.shape != arr.shape or page.predictor not in (1, None)):
                return None
            offset = int(page.dataoffsets[0])
            dtype = page.dtype.newbyteorder(tif.byteorder)
    except Exception:
        return None
    return _FastLayout(sig, offset, dtype, arr.shape, path.stat().st_size)


def _read_fast(path: Path, layout: _FastLayout, out: np.ndarray) -> bool:
    """Read ``path`` into ``out`` if its layout is the reference one; False otherwise."""
    try:
        if path.stat().st_size != layout.size or _layout(path) != layout.signature:
            return False
        data = np.fromfile(path, dtype=layout.dtype, count=layout.count, offset=layout.offset)
    except OSError:
        return False
    if data.size != layout.count:
        return False
    out[...] = data.reshape(layout.shape)
    return True


# -- frame series --------------------------------------------------------------------------

def _pattern_glob(pattern: str, scan) -> str:
    """A glob for every point of a pattern (``{point...}`` replaced by ``*``)."""
    text = re.sub(r"\{point(:[^}]*)?\}", "*", pattern)
    try:
        return text.format(scan=scan)
    except (KeyError, IndexError, ValueError):
        return text


def frame_files(pattern: str, scan: int, n_points: int, *, allow_extra: bool = False) -> list[Path]:
    """The frame file of every point of a scan, checked to exist and to be all there.

    Parameters
    ----------
    pattern : str
        ``str.format`` pattern with the fields ``scan`` and ``point``
        (0-based), for example ``"DIR/Staff20-1a_S{scan:04d}_{point:05d}.tif"``.
    scan : int
        Scan number.
    n_points : int
        Number of points SPEC recorded; one frame is expected per point.
    allow_extra : bool
        Leave out frame files beyond the recorded points instead of raising
        (an aborted scan: the detector may have written the frame of the
        point being counted when the scan was stopped).

    Raises
    ------
    IngestError
        A frame is missing, or there are more frame files than points
        (unless ``allow_extra``).
    """
    if "{point" not in pattern:
        raise IngestError("frame pattern has no {point} field", path=pattern, scan=scan)
    try:
        files = [Path(pattern.format(scan=scan, point=i)) for i in range(n_points)]
        extra = Path(pattern.format(scan=scan, point=n_points))
    except (KeyError, IndexError, ValueError) as exc:
        raise IngestError(f"frame pattern cannot be filled with scan and point ({exc})",
                          path=pattern, scan=scan) from None
    missing = [f for f in files if not f.is_file()]
    extra_found = not allow_extra and extra.is_file()
    if missing or extra_found:
        on_disk = len(glob.glob(_pattern_glob(pattern, scan)))
    if missing:
        raise IngestError(
            f"{len(missing)} of {n_points} frames missing (first: {missing[0]}); "
            f"{on_disk} files match the pattern, SPEC recorded {n_points} points",
            path=pattern, scan=scan)
    if extra_found:
        raise IngestError(
            f"frame count differs from the SPEC points: {on_disk} files match the pattern "
            f"(including {extra.name}) but SPEC recorded {n_points} points",
            path=pattern, scan=scan)
    return files


def read_frames(files: Sequence[str | os.PathLike], *, scan: int | str | None = None,
                fast: bool = True) -> np.ndarray:
    """Read one image per file into a ``(frame, det_y, det_x)`` array.

    Parameters
    ----------
    files : sequence of paths
        One TIFF file per frame, in frame order.
    scan : int or str, optional
        Scan number, for error messages.
    fast : bool
        Read files laid out like the first one directly (see the module
        notes); ``False`` parses every file with tifffile.

    Returns
    -------
    ndarray, shape ``(n_frames, rows, columns)``, the frames' own dtype.

    Raises
    ------
    IngestError
        Any bad file (see :func:`read_tiff`), frames that differ in shape
        or dtype from the first one, or frames without signal (every pixel
        of every frame 0).
    """
    files = [Path(f) for f in files]
    if not files:
        raise IngestError("no frame files given", scan=scan)
    first = read_tiff(files[0], scan=scan)
    out = np.empty((len(files),) + first.shape, dtype=first.dtype)
    out[0] = first
    layout = _fast_layout(files[0], first) if fast else None
    for i, path in enumerate(files[1:], start=1):
        slot = out[i]
        if layout is not None and _read_fast(path, layout, slot):
            if out.dtype.kind in "fi":  # unsigned counts cannot be negative or NaN
                _check_values(slot, path, scan)
            continue
        arr = _read_image(path, scan, "frame", out=slot)
        if arr.shape != first.shape:
            raise IngestError(f"frame {i} has shape {arr.shape}, the first frame "
                              f"({files[0].name}) has {first.shape}", path=path, scan=scan)
        if not np.shares_memory(arr, slot):  # another dtype: read on its own, cast if safe
            if not np.can_cast(arr.dtype, first.dtype, casting="safe"):
                raise IngestError(f"frame {i} has dtype {arr.dtype}, the first frame has {first.dtype}",
                                  path=path, scan=scan)
            slot[...] = arr
        if out.dtype.kind in "fi":  # unsigned counts cannot be negative or NaN
            _check_values(slot, path, scan)
    if not out.any():
        raise IngestError(f"no signal: every pixel of the {len(files)} frames ({files[0].name} to "
                          f"{files[-1].name}) is 0", path=files[0].parent, scan=scan)
    return out


def read_field(path: str | os.PathLike, *, kind: str, region: Region | None = None,
               scan: int | str | None = None) -> np.ndarray:
    """Read a dark or white (flat) field, checked; the whole sensor.

    Parameters
    ----------
    path : str or os.PathLike
        TIFF (or ``.npy``) file of the field.
    kind : {"dark", "white"}
        Which field: a white field must not be negative; a dark field may be
        (a real, already subtracted dark).
    region : Region, optional
        The detector region the frames cover; raises if it does not fit in
        the field.
    scan : int or str, optional
        Scan number, for error messages.

    Returns
    -------
    ndarray, shape ``(rows, columns)``, float64: the full field (crop it with
    ``field[region.slices]``).
    """
    if kind not in ("dark", "white"):
        raise ValueError(f"kind must be 'dark' or 'white', not {kind!r}")
    what = f"{kind} field"
    path = Path(path)
    if path.suffix.lower() == ".npy":
        from cdiplatform.ingest.arrays import read_intensity

        arr = read_intensity(path, scan=scan, ndim=2, allow_negative=(kind == "dark"),
                             require_signal=False, what=what)
    else:
        arr = read_tiff(path, scan=scan, what=what, allow_negative=(kind == "dark"))
    if region is not None and not region.fits(arr.shape):
        raise IngestError(f"detector region rows {region.row_start}:{region.row_stop}, columns "
                          f"{region.col_start}:{region.col_stop} does not fit the {what} of shape "
                          f"{arr.shape}", path=path, scan=scan)
    return arr.astype(np.float64, copy=False)
