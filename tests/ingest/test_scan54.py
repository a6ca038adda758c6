"""The done-when checks on the real scan (APS 34-ID-C, Au(111), scan 54).

These need ``<repo>/../shared/data/aps34idc-au111-scan54``: they skip without
it, and fail under ``CI=true`` (the ``shared_data`` fixture).
"""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.ingest import correct_frames, prepare_scan, read_scan, threshold_intensity
from cdiplatform.testing.cohere_preprocessing import make_peer_amplitude

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def raw54(shared_data):
    return read_scan(shared_data / "example.spec", 54,
                     str(shared_data / "frames" / "Staff20-1a_S{scan:04d}_{point:05d}.tif"),
                     dark=shared_data / "dark.tif", flat=shared_data / "whitefield.tif")


@pytest.fixture(scope="module")
def prepared54(raw54):
    return prepare_scan(raw54)


def test_metadata_match_spec(raw54):
    assert raw54.frames.shape == (201, 256, 256)
    assert int(raw54.frames.sum(dtype=np.int64)) == 46_155_653
    assert raw54.rocking_mnemonic == "th" and raw54.rocking_motor == "Theta"
    assert raw54.rocking_start == pytest.approx(-0.28, abs=1e-4)
    assert raw54.rocking_stop == pytest.approx(0.72, abs=1e-4)
    assert raw54.rocking_step == pytest.approx(0.005)
    assert raw54.count_time_s == 0.25
    assert raw54.energy_kev == 9.0
    assert raw54.delta_deg == pytest.approx(32.174)
    assert raw54.gamma_deg == pytest.approx(12.6346)
    assert raw54.camdist_mm == 500.0
    assert raw54.region.as_tuple() == (0, 256, 0, 256)
    assert raw54.detector.pixel_size == (55e-6, 55e-6)
    assert raw54.columns["Monitor"].shape == (201,)
    assert int((raw54.dark > 1).sum()) == 13 and int((raw54.flat == 0).sum()) == 11


def test_brightest_voxel_at_cube_centre(raw54, prepared54):
    raw_peak = np.unravel_index(int(np.argmax(raw54.frames)), raw54.frames.shape)
    assert raw_peak == (99, 126, 127)
    cube = prepared54.intensity
    centre = tuple(n // 2 for n in cube.shape)
    # the default centring puts the brightest recorded voxel at N // 2 on each axis
    assert prepared54.centre_raw == raw_peak
    assert cube[centre] > 0.9 * cube.max()
    # the white field moves the corrected maximum to the neighbour (99, 127, 128): one voxel off
    corrected_peak = np.unravel_index(int(np.argmax(cube)), cube.shape)
    assert np.abs(np.subtract(corrected_peak, centre)).max() <= 1


def test_prepared_counts_conserved(raw54, prepared54):
    corrected, _, _ = correct_frames(raw54.frames, dark=raw54.dark, flat=raw54.flat,
                                     flat_mean=raw54.flat_mean)
    corrected, _ = threshold_intensity(corrected, 2.0)
    crop = next(s for s in prepared54.steps if s["step"] == "crop")
    region = tuple(slice(max(st, 0), st + n) for st, n in zip(crop["start"], crop["size"]))
    expected = corrected[region].sum(dtype=np.float64)
    assert prepared54.intensity.sum(dtype=np.float64) == pytest.approx(expected, rel=1e-6)
    assert prepared54.intensity.shape == (200, 200, 200)


def test_q_voxel_and_oversampling(prepared54):
    dz, dy, dx = prepared54.q_voxel
    assert dy == pytest.approx(5.0e-4, rel=0.01) and dx == pytest.approx(5.0e-4, rel=0.01)
    assert 1.9e-4 < dz < 2.4e-4
    assert np.all((prepared54.oversampling > 2.5) & (prepared54.oversampling < 10))


def test_peer_identical_array(raw54):
    amplitude, record = make_peer_amplitude(raw54)
    assert amplitude.shape == (256, 256, 210) and amplitude.dtype == np.float32
    assert record["max_corrected"] == pytest.approx(121_942, abs=1)
    assert record["max_corrected_at"][0] == 99
    assert record["voxels_kept"] == 280_031
    assert int(np.count_nonzero(amplitude)) == 280_031
    assert np.unravel_index(int(np.argmax(amplitude)), amplitude.shape) == (128, 128, 105)
    assert float(amplitude.max()) ** 2 == pytest.approx(121_942.29, rel=1e-6)
