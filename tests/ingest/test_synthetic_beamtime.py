"""The synthetic beamtime writer (cdiplatform.testing.beamtime): what it writes reads back."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.ingest import SpecFile, read_scan
from cdiplatform.testing.beamtime import BeamtimeWriter, SyntheticScan, bragg_peak_stack, write_beamtime

SENSOR = (24, 30)


def _scans(rng):
    return [
        SyntheticScan(7, bragg_peak_stack((6, 8, 10), rng), region_origin=(3, 5)),
        SyntheticScan(8, bragg_peak_stack((5, 8, 10), rng, peak_counts=1e4), energy_kev=10.2,
                      delta_deg=30.5, gamma_deg=11.0, camdist_mm=750.0, th_start_deg=-0.5,
                      th_step_deg=0.01, count_time_s=0.5),
        SyntheticScan(9, bragg_peak_stack((4, 8, 10), rng), planned_points=11, aborted=True),
    ]


def test_read_scan_reads_back_values_and_geometry(tmp_path):
    rng = np.random.default_rng(3)
    scans = _scans(rng)
    dark = np.zeros(SENSOR, np.int32)
    dark[4, 6] = 5
    white = np.full(SENSOR, 100.0, np.float32)
    white[5, 7] = 0.0
    files = write_beamtime(tmp_path, scans, sensor_shape=SENSOR, dark=dark, white=white)
    for scan in scans:
        raw = read_scan(files.spec, scan.number, files.frame_pattern, dark=files.dark, flat=files.white)
        assert raw.frames.dtype == np.int32
        np.testing.assert_array_equal(raw.frames, scan.intensity)
        assert (raw.energy_kev, raw.delta_deg, raw.gamma_deg, raw.camdist_mm) == pytest.approx(
            (scan.energy_kev, scan.delta_deg, scan.gamma_deg, scan.camdist_mm))
        assert (raw.rocking_motor, raw.rocking_mnemonic) == ("Theta", "th")
        assert raw.rocking_start == pytest.approx(scan.th_start_deg, abs=1e-6)
        assert raw.rocking_step == pytest.approx(scan.th_step_deg, rel=1e-6)
        np.testing.assert_allclose(raw.rocking_angles, scan.th_start_deg + scan.th_step_deg
                                   * np.arange(scan.n_points), atol=1e-6)
        assert raw.count_time_s == scan.count_time_s
        row0, col0 = scan.region_origin
        assert raw.region.as_tuple() == (row0, row0 + 8, col0, col0 + 10)
        np.testing.assert_array_equal(raw.columns["ImageTot"], scan.intensity.sum(axis=(1, 2)))
        np.testing.assert_array_equal(raw.columns["ImageMax"], scan.intensity.max(axis=(1, 2)))
        np.testing.assert_array_equal(raw.dark, dark[raw.region.slices])
        np.testing.assert_array_equal(raw.flat, white[raw.region.slices])
        assert raw.aborted == scan.aborted
    assert SpecFile(files.spec).scan(9).planned_points == 11


def test_default_geometry_is_scan_54s(tmp_path):
    scan = SyntheticScan(54, bragg_peak_stack((3, 4, 4), np.random.default_rng(0)), planned_points=201)
    writer = BeamtimeWriter(tmp_path, sensor_shape=(16, 16))
    writer.write_file_header()
    writer.begin_scan(scan)
    for point in range(3):
        writer.write_point(scan, point)
    spec_scan = SpecFile(writer.spec).scan(54)
    assert spec_scan.command == "ascan  th -0.279996 0.720004  200 0.25"
    assert spec_scan.header["UIMR5"] == "0 4 0 4 1" and spec_scan.header["UIMDET"] == "34idcTIM2:"
    assert spec_scan.motor("Theta") == pytest.approx(0.2200042, abs=1e-5)
    assert spec_scan.incomplete  # 3 of 201 points, still being recorded


@pytest.mark.shared_data
def test_spec_text_is_in_the_style_of_the_real_file(tmp_path, shared_data):
    real = SpecFile(shared_data / "example.spec").scan(54)
    scan = SyntheticScan(54, bragg_peak_stack((201, 4, 4), np.random.default_rng(0)))
    files = write_beamtime(tmp_path, [scan], sensor_shape=(16, 16))
    ours = SpecFile(files.spec).scan(54)
    assert ours.command == real.command and ours.count_time == real.count_time
    assert ours.motors == pytest.approx(real.motors, abs=1e-5)  # every motor, by name
    assert ours.mnemonics == real.mnemonics
    assert set(ours.labels) <= set(real.labels)
    np.testing.assert_allclose(ours.column("th"), real.column("th"), atol=1e-5)


def test_bragg_peak_stack_is_centred_at_the_counts_asked():
    stack = bragg_peak_stack((16, 16, 16), np.random.default_rng(1), peak_counts=1e5)
    assert stack.dtype == np.int32
    peak = np.unravel_index(int(np.argmax(stack)), stack.shape)
    assert np.abs(np.subtract(peak, 8)).max() <= 1
    assert 0.97e5 < stack.max() < 1.03e5


@pytest.mark.parametrize("kwargs, message", [
    (dict(intensity=np.ones((3, 4))), "frames, rows, cols"),
    (dict(intensity=-np.ones((3, 4, 4))), "finite counts"),
    (dict(intensity=np.ones((3, 4, 4)), planned_points=2), "3 frames but 2 planned"),
])
def test_bad_synthetic_scans(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticScan(1, **kwargs)


def test_region_must_fit_the_sensor(tmp_path):
    writer = BeamtimeWriter(tmp_path, sensor_shape=(8, 8))
    writer.write_file_header()
    with pytest.raises(ValueError, match="does not fit the sensor"):
        writer.begin_scan(SyntheticScan(1, np.ones((2, 4, 4)), region_origin=(6, 0)))
