"""Fixtures of the ingest tests (builders in ``ingest_synthetic``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ingest_synthetic import SENSOR, Beamtime, frame_stack, scan_block, write_frames, FILE_HEADER


@pytest.fixture
def beamtime(tmp_path: Path) -> Beamtime:
    """Scans 1 (6 points), 2 (7 points, a comment and a bad row), 3 (aborted: 4 of 11)."""
    import tifffile

    spec = tmp_path / "beamtime.spec"
    spec.write_text(
        FILE_HEADER
        + scan_block(1, 6)
        + scan_block(2, 7, comment_at=3, bad_row_at=5)
        + scan_block(3, 4, aborted_after=4)
    )
    pattern = str(tmp_path / "frames" / "S{scan:04d}" / "scan_S{scan:04d}_{point:05d}.tif")
    frames = {1: frame_stack(6, 1, peak=(3, 4, 5)), 2: frame_stack(7, 2), 3: frame_stack(4, 3)}
    for number, stack in frames.items():
        write_frames(tmp_path, pattern, number, stack)
    dark = np.zeros(SENSOR, dtype=np.int32)
    dark[3, 5] = 7  # a hot pixel inside the region (frame pixel 1, 1)
    dark[0, 0] = 9  # and one outside it
    white = np.full(SENSOR, 100.0, dtype=np.float32)
    white[4, 6] = 0.0  # a dead pixel inside the region (frame pixel 2, 2)
    white[5, 5] = 50.0  # a weak pixel: its counts double
    tifffile.imwrite(tmp_path / "dark.tif", dark)
    tifffile.imwrite(tmp_path / "white.tif", white)
    return Beamtime(tmp_path, spec, pattern, tmp_path / "dark.tif", tmp_path / "white.tif",
                    frames, dark, white)
