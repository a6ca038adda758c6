"""scan_state: when a scan being recorded is complete (the --watch rule), files written in steps."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.ingest import IngestError, read_scan
from cdiplatform.ingest.live import scan_state
from cdiplatform.testing.beamtime import BeamtimeWriter, SyntheticScan, bragg_peak_stack


@pytest.fixture
def writer(tmp_path) -> BeamtimeWriter:
    w = BeamtimeWriter(tmp_path, sensor_shape=(8, 8))
    w.write_file_header()
    return w


def _scan(number: int, points: int, *, planned: int | None = None, aborted: bool = False) -> SyntheticScan:
    rng = np.random.default_rng(number)
    return SyntheticScan(number, bragg_peak_stack((points, 4, 4), rng, peak_counts=500.0),
                         planned_points=planned, aborted=aborted)


def _poll(writer, scan, previous=None):
    return scan_state(writer.spec, scan.number, writer.frame_pattern, previous_sizes=previous)


def test_scan_recorded_point_by_point_is_complete_once_all_points_and_steady_frames(writer):
    scan = _scan(5, 4)
    state = _poll(writer, scan)
    assert not state.complete and "no scan in the SPEC file yet" in state.reason
    writer.begin_scan(scan)
    for point in range(4):
        writer.write_point(scan, point)
        state = _poll(writer, scan, previous=state.frame_sizes)
        if point < 3:
            assert not state.complete and state.reason.startswith(f"recording: {point + 1} of 4 points")
    assert (state.points_recorded, state.points_planned, state.frames_present) == (4, 4, 4)
    assert not state.complete and "1 frame files new or changed" in state.reason  # the last frame is new
    state = _poll(writer, scan, previous=state.frame_sizes)
    assert state.complete and not state.aborted and state.reason.startswith("complete: ended at 4 of 4")
    np.testing.assert_array_equal(read_scan(writer.spec, 5, writer.frame_pattern).frames, scan.intensity)


def test_two_polls_are_needed_to_see_frame_sizes_hold(writer):
    scan = _scan(5, 3)
    writer.write_scan(scan)
    first = _poll(writer, scan)
    assert not first.complete and "not seen at an earlier poll" in first.reason
    assert sorted(first.frame_sizes) == [str(writer.frame_path(scan, p)) for p in range(3)]
    assert _poll(writer, scan, previous=first.frame_sizes).complete


def test_a_frame_still_being_written_holds_the_scan_back(writer):
    scan = _scan(5, 3)
    writer.begin_scan(scan)
    for point in range(3):
        writer.write_frame(scan, point, partial=(point == 2))
        writer.write_row(scan, point)
    before = _poll(writer, scan)
    writer.write_frame(scan, 2)  # the detector finishes the file
    state = _poll(writer, scan, previous=before.frame_sizes)
    assert not state.complete and "1 frame files new or changed since the last poll" in state.reason
    assert "00002.tif" in state.reason
    assert _poll(writer, scan, previous=state.frame_sizes).complete


def test_a_missing_frame_holds_the_scan_back(writer):
    scan = _scan(5, 3)
    writer.begin_scan(scan)
    for point in range(3):
        writer.write_row(scan, point)  # SPEC rows, frames not (yet) there
    writer.write_frame(scan, 0)
    state = _poll(writer, scan)
    assert not state.complete and state.frames_present == 1
    assert "waiting for 2 frame files (first:" in state.reason and "00001.tif" in state.reason


def test_a_row_without_its_newline_is_not_a_point_yet(writer):
    scan = _scan(5, 3)
    writer.begin_scan(scan)
    writer.write_point(scan, 0)
    writer.write_point(scan, 1)
    writer.write_frame(scan, 2)
    writer.write_row(scan, 2, partial=True)
    state = _poll(writer, scan)
    assert state.points_recorded == 2 and not state.complete and "recording: 2 of 3" in state.reason
    writer.finish_row(scan, 2)
    state = _poll(writer, scan, previous=_poll(writer, scan).frame_sizes)
    assert state.points_recorded == 3 and state.complete


def test_aborted_scan_is_complete_with_the_points_it_has(writer):
    scan = _scan(5, 3, planned=10, aborted=True)
    writer.begin_scan(scan)
    for point in range(3):
        writer.write_point(scan, point)
    assert not _poll(writer, scan).complete  # 3 of 10, no comment yet: still recording
    writer.end_scan(scan)  # "#C ... Scan aborted after 3 points."
    first = _poll(writer, scan)
    state = _poll(writer, scan, previous=first.frame_sizes)
    assert state.complete and state.aborted and state.reason.startswith("complete: aborted at 3 of 10")
    assert read_scan(writer.spec, 5, writer.frame_pattern).aborted


def test_next_scan_header_ends_a_scan_cut_short(writer):
    short, following = _scan(5, 2, planned=6), _scan(6, 2)
    writer.begin_scan(short)
    for point in range(2):
        writer.write_point(short, point)
    assert not _poll(writer, short).complete
    writer.end_scan(short)
    writer.begin_scan(following)  # SPEC started the next scan
    first = _poll(writer, short)
    state = _poll(writer, short, previous=first.frame_sizes)
    assert state.complete and state.aborted and state.reason.startswith("complete: aborted at 2 of 6")
    assert state.points_recorded == 2 and state.points_planned == 6
    assert not _poll(writer, following).complete  # 0 of 2 points


def test_scan_aborted_before_its_first_point(writer):
    scan = _scan(5, 1, planned=4, aborted=True)
    writer.begin_scan(scan)
    writer.end_scan(scan, points=0)
    state = _poll(writer, scan)
    assert state.complete and state.aborted and state.points_recorded == 0 and state.frames_present == 0


def test_scan_not_in_the_file_yet(writer):
    writer.write_scan(_scan(5, 2))
    state = scan_state(writer.spec, 6, writer.frame_pattern)
    assert not state.complete and "not in the SPEC file yet (1 scans so far)" in state.reason


def test_bad_arguments_raise(writer, tmp_path):
    with pytest.raises(IngestError, match="SPEC file not found"):
        scan_state(tmp_path / "absent.spec", 1, writer.frame_pattern)
    writer.write_scan(_scan(5, 2))
    writer.write_scan(_scan(5, 2))
    with pytest.raises(IngestError, match="appears 2 times"):
        scan_state(writer.spec, 5, writer.frame_pattern)
    assert scan_state(writer.spec, "5.2", writer.frame_pattern).points_recorded == 2
    with pytest.raises(IngestError, match=r"no \{point\}"):
        scan_state(writer.spec, 5, str(tmp_path / "frame.tif"))
