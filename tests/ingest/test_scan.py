"""read_scan on the synthetic beamtime, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ingest_synthetic import frame_stack, write_frames

from cdiplatform.ingest import IngestError, SpecFile, read_scan


def test_read_scan_metadata_and_frames(beamtime):
    raw = read_scan(beamtime.spec, 1, beamtime.pattern, dark=beamtime.dark, flat=beamtime.white)
    np.testing.assert_array_equal(raw.frames, beamtime.frames[1])
    assert raw.frames.dtype == np.int32
    assert raw.region.as_tuple() == (2, 10, 4, 14)  # from #UIMR5 "4 10 2 8"
    assert (raw.energy_kev, raw.delta_deg, raw.gamma_deg, raw.camdist_mm) == (9.0, 32.174, 12.6346, 500.0)
    assert (raw.rocking_motor, raw.rocking_mnemonic) == ("Theta", "th")
    assert raw.rocking_start == pytest.approx(-0.1) and raw.rocking_step == pytest.approx(0.01)
    assert raw.rocking_stop == pytest.approx(-0.05)
    assert raw.count_time_s == 0.25
    assert raw.detector.pixel_size == (55e-6, 55e-6)
    np.testing.assert_allclose(raw.rocking_angles, -0.1 + 0.01 * np.arange(6), atol=1e-9)
    assert set(raw.columns) == {"Theta", "H", "Monitor", "pm detector", "Detector"}
    np.testing.assert_array_equal(raw.dark, beamtime.dark_array[2:10, 4:14])
    np.testing.assert_array_equal(raw.flat, beamtime.white_array[2:10, 4:14])
    assert raw.flat_mean == pytest.approx(beamtime.white_array.mean())  # the whole sensor's mean
    meta = raw.metadata()
    json.dumps(meta)  # plain metadata
    assert len(meta["sources"]["frames"]) == 6 and meta["region"] == [2, 10, 4, 14]


def test_read_scan_with_spec_object_and_given_roi(beamtime):
    spec = SpecFile(beamtime.spec)
    raw = read_scan(spec, 2, beamtime.pattern, roi=(0, 8, 0, 10))
    assert raw.region.as_tuple() == (0, 8, 0, 10)
    assert raw.n_frames == 7 and raw.dark is None and raw.flat is None


def test_aborted_scan_reads_the_points_it_has(beamtime):
    raw = read_scan(beamtime.spec, 3, beamtime.pattern)
    assert raw.aborted and raw.n_frames == 4


def test_scan_not_in_spec(beamtime):
    with pytest.raises(IngestError, match="not in SPEC") as info:
        read_scan(beamtime.spec, 99, beamtime.pattern)
    assert info.value.scan == 99 and info.value.path == str(beamtime.spec)


def test_frame_count_differs_from_spec_points(beamtime):
    write_frames(beamtime.root, beamtime.pattern, 1, frame_stack(7, 5))  # one frame too many
    with pytest.raises(IngestError, match="frame count differs") as info:
        read_scan(beamtime.spec, 1, beamtime.pattern)
    assert info.value.scan == 1


def test_missing_frame(beamtime):
    Path(beamtime.pattern.format(scan=2, point=4)).unlink()
    with pytest.raises(IngestError, match="missing") as info:
        read_scan(beamtime.spec, 2, beamtime.pattern)
    assert "00004.tif" in str(info.value) and info.value.scan == 2


def test_region_does_not_match_frames(beamtime):
    with pytest.raises(IngestError, match="frames are 8 x 10") as info:
        read_scan(beamtime.spec, 1, beamtime.pattern, roi=(0, 9, 0, 10))
    assert info.value.scan == 1


def test_region_does_not_fit_dark(beamtime):
    import tifffile

    small = beamtime.root / "small_dark.tif"
    tifffile.imwrite(small, np.zeros((9, 12), np.int32))
    with pytest.raises(IngestError, match="does not fit the dark field") as info:
        read_scan(beamtime.spec, 1, beamtime.pattern, dark=small)
    assert info.value.path == str(small) and info.value.scan == 1


def test_unknown_detector(beamtime):
    with pytest.raises(IngestError, match="unknown detector 'pilatus'.*timepix"):
        read_scan(beamtime.spec, 1, beamtime.pattern, detector="pilatus")


@pytest.mark.parametrize("layout", ["peer", "ours"])
def test_peer_amplitude_layout_padding_and_centre(beamtime, layout):
    from cdiplatform.testing.cohere_preprocessing import make_peer_amplitude

    raw = read_scan(beamtime.spec, 1, beamtime.pattern, dark=beamtime.dark, flat=beamtime.white)
    amplitude, record = make_peer_amplitude(raw, layout=layout)
    # frames (6, 8, 10): 6 -> 6, 8 -> 8, 10 -> 10 are already fast and even
    expected = (10, 8, 6) if layout == "peer" else (6, 8, 10)
    assert amplitude.shape == expected
    assert np.unravel_index(int(np.argmax(amplitude)), amplitude.shape) == tuple(n // 2 for n in expected)
    assert np.all((amplitude == 0) | (amplitude ** 2 > 2))  # the threshold (<= 2 -> 0)
    assert record["max_corrected_at"] == [3, 4, 5]  # the planted peak
    # the hot (frame pixel 1, 1) and dead (2, 2) pixels are zero in every frame
    ours = amplitude if layout == "ours" else amplitude.transpose(2, 1, 0)
    shift = np.array(record["roll"])[[2, 1, 0]] if layout == "peer" else np.array(record["roll"])
    back = np.roll(ours, -shift, axis=(0, 1, 2))
    assert not back[:, 1, 1].any() and not back[:, 2, 2].any()


def test_scan_without_signal_is_refused_where_it_enters(beamtime):
    write_frames(beamtime.root, beamtime.pattern, 1, np.zeros((6, 8, 10), np.int32))
    with pytest.raises(IngestError, match="no signal") as info:
        read_scan(beamtime.spec, 1, beamtime.pattern, dark=beamtime.dark, flat=beamtime.white)
    assert info.value.scan == 1 and "scan_S0001_00000.tif" in str(info.value)


def test_aborted_scan_leaves_out_the_frame_of_the_point_being_counted(beamtime):
    write_frames(beamtime.root, beamtime.pattern, 3, frame_stack(5, 9))  # 4 rows, 5 frames
    raw = read_scan(beamtime.spec, 3, beamtime.pattern)
    assert raw.aborted and raw.n_frames == 4 and len(raw.sources["frames"]) == 4


def test_scan_still_being_recorded_is_refused_unless_asked(beamtime):
    text = beamtime.spec.read_text().replace("#C Tue Feb 04 14:50:34 2020.  Scan aborted after 4 points.\n", "")
    beamtime.spec.write_text(text)  # scan 3: 4 of 10 points, last in the file, no abort comment
    with pytest.raises(IngestError, match="still being recorded: 4 of 10 points") as info:
        read_scan(beamtime.spec, 3, beamtime.pattern)
    assert info.value.scan == 3
    raw = read_scan(beamtime.spec, 3, beamtime.pattern, allow_incomplete=True)
    assert raw.n_frames == 4 and not raw.aborted
