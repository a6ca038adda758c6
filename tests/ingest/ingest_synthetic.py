"""A tiny synthetic beamtime for the ingest tests: SPEC text, TIFF frames, fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SENSOR = (16, 20)  # rows, columns of the tiny "sensor"
ROI = (2, 10, 4, 14)  # rows 2:10, columns 4:14 -> frames of 8 x 10
#: ``#UIMR5 minX sizeX minY sizeY``: columns 4..13, rows 2..9
UIMR5 = "4 10 2 8 1"

FILE_HEADER = """#F /data/beamtime.spec
#E 1580609738
#D Sat Feb 01 20:15:38 2020
#C sixc  User = cxduser

#O0 Delta  Theta  Chi  Phi  Mu  Gamma
#O1 camdist  IDEnergy  Energy  pm detector
#o0 del th chi phi mu gam
#o1 cam iden en pmd

"""


def scan_block(number: int, n_points: int, *, start: float = -0.1, step: float = 0.01,
               aborted_after: int | None = None, comment_at: int | None = None,
               bad_row_at: int | None = None, uimr5: str = UIMR5, energy: float = 9.0) -> str:
    """The text of one ``ascan th`` scan with ``n_points`` rows (quirks on request)."""
    intervals = n_points - 1 if aborted_after is None else n_points + 5
    stop = start + step * intervals
    lines = [
        f"#S {number}  ascan  th {start:g} {stop:g}  {intervals} 0.25",
        "#D Tue Feb 04 12:28:23 2020",
        "#T 0.25  (Seconds)",
        "#G0 0 0 0 0",
        "#Q -0.2 -0.1 0.5",
        "#P0 32.174 0.22 90 -5 0 12.6346",
        f"#P1 500 9.198 {energy:g} 0",
        "#UIMDET 34idcTIM2:",
        f"#UIMR5  {uimr5}",
        "#N 5",
        "#L Theta  H  Monitor  pm detector  Detector",
    ]
    for i in range(n_points):
        if comment_at is not None and i == comment_at:
            lines.append("#C Tue Feb 04 12:29:00 2020.  beam dump, waiting.")
            lines.append("")
        if bad_row_at is not None and i == bad_row_at:
            lines.append("0.5 0.1 oops")  # an interrupted write: too few values
        lines.append(f"{start + step * i:.6f} {0.1 * i:.3f} {1000 + i} {i % 3} {10 * i}")
    if aborted_after is not None:
        lines.append(f"#C Tue Feb 04 14:50:34 2020.  Scan aborted after {n_points} points.")
    return "\n".join(lines) + "\n\n"


@dataclass
class Beamtime:
    root: Path
    spec: Path
    pattern: str
    dark: Path
    white: Path
    frames: dict  # scan number -> (n, 8, 10) int32 array written
    dark_array: np.ndarray
    white_array: np.ndarray


def frame_stack(n: int, seed: int, peak: tuple[int, int, int] | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, ROI[1] - ROI[0], ROI[3] - ROI[2])
    frames = rng.poisson(3.0, size=shape).astype(np.int32)
    if peak is not None:
        frames[peak] = 5000
    return frames


def write_frames(root: Path, pattern: str, scan: int, frames: np.ndarray) -> None:
    import tifffile

    for i, frame in enumerate(frames):
        path = Path(pattern.format(scan=scan, point=i))
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, frame)
