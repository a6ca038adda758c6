"""Corrections, crop, binning, q voxel, network input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdiplatform.ingest import (
    bin_array,
    correct_frames,
    crop_cube,
    fft_size,
    find_peak,
    network_input,
    prepare_scan,
    q_steps,
    q_steps_approx,
    read_scan,
    threshold_intensity,
)
from cdiplatform.physics.fft import diffraction_intensity


def test_correct_frames_mask_mode():
    frames = np.full((3, 4, 5), 10, dtype=np.int32)
    dark = np.zeros((4, 5))
    dark[1, 1] = 5.0  # hot
    flat = np.full((4, 5), 2.0)
    flat[2, 2] = 0.0  # dead
    flat[0, 3] = 1.0  # weak: gains x2 relative to the others
    out, mask, records = correct_frames(frames, dark=dark, flat=flat, flat_mean=4.0)
    assert out.dtype == np.float32
    assert mask.sum() == 2 and mask[1, 1] and mask[2, 2]
    assert np.all(out[:, 1, 1] == 0) and np.all(out[:, 2, 2] == 0)
    assert np.all(out[:, 0, 3] == 40.0)  # 10 / (1 / 4)
    assert out[0, 0, 0] == 20.0  # 10 / (2 / 4)
    steps = [r["step"] for r in records]
    assert steps == ["dark_field", "white_field", "detector_mask"]
    assert records[0]["hot_pixels"] == 1 and records[1]["dead_pixels"] == 1
    json.dumps(records)


def test_correct_frames_subtract_mode_clips_negative():
    frames = np.array([[[5, 1]], [[3, 0]]], dtype=np.int32)
    dark = np.array([[2.0, 2.0]])
    out, mask, records = correct_frames(frames, dark=dark, dark_mode="subtract")
    np.testing.assert_array_equal(out, [[[3, 0]], [[1, 0]]])
    assert not mask.any()
    assert records[0]["clipped_negative"] == 2


def test_correct_frames_rejects_mismatched_field():
    from cdiplatform.ingest import IngestError

    with pytest.raises(IngestError, match="white field shape"):
        correct_frames(np.zeros((2, 4, 5)), flat=np.ones((4, 6)), scan=3)


def test_threshold():
    arr = np.array([0.0, 1.0, 2.0, 2.5, 10.0], dtype=np.float32)
    out, rec = threshold_intensity(arr, 2.0)
    np.testing.assert_array_equal(out, [0, 0, 0, 2.5, 10])
    assert rec["voxels_zeroed"] == 2 and rec["counts_removed"] == 3.0 and rec["voxels_kept"] == 2
    assert arr[2] == 2.0  # not in place by default


@pytest.mark.parametrize("n, up, multiple, expected", [
    (201, False, 2, 200), (256, False, 2, 256), (199, False, 2, 192), (201, True, 2, 216),
    (33, False, 2, 32), (201, False, 4, 200), (130, False, 6, 120),
])
def test_fft_size(n, up, multiple, expected):
    assert fft_size(n, up=up, multiple=multiple) == expected


def test_crop_puts_centre_at_half_size_and_pads_outside():
    arr = np.zeros((7, 9, 11), dtype=np.float32)
    arr[1, 4, 9] = 5.0
    centre = find_peak(arr)
    assert centre == (1, 4, 9)
    box, mask, rec = crop_cube(arr, centre, 6, mask=np.zeros((9, 11), bool))
    assert box.shape == (6, 6, 6) and box[3, 3, 3] == 5.0
    assert rec["start"] == [-2, 1, 6]
    assert mask[0].all() and mask[1].all() and not mask[2:, :, :4].any()  # two frames outside
    assert mask[:, :, 5].all()  # column 11 is outside too
    assert rec["outside_voxels"] == 6 * 6 * 6 - 4 * 6 * 5


def test_find_peak_centre_of_mass():
    arr = np.zeros((5, 5, 5))
    arr[1, 2, 3] = 1.0
    arr[3, 2, 3] = 1.0
    assert find_peak(arr, method="com") == (2, 2, 3)


def test_binning_sums_and_trims():
    arr = np.arange(5 * 4 * 4, dtype=np.float32).reshape(5, 4, 4)
    out, rec = bin_array(arr, (2, 2, 2))
    assert out.shape == (2, 2, 2)
    assert out.sum() == arr[:4].sum()
    assert rec["dropped"] == [1, 0, 0]
    m, _ = bin_array(np.eye(4, dtype=bool)[None].repeat(2, 0), (2, 2, 2), reduce="any")
    np.testing.assert_array_equal(m[0], [[True, False], [False, True]])


def test_q_steps_34idc_scan54_geometry():
    """The README's figures: about 5.0e-4 per pixel, |Q| dtheta = 2.3e-4 per rocking step."""
    kwargs = dict(energy_kev=9.0, delta_deg=32.174, gamma_deg=12.6346, rocking_step_deg=0.005,
                  camdist_mm=500.0, pixel_size_m=(55e-6, 55e-6))
    approx = q_steps_approx(**kwargs)
    assert approx["two_theta_deg"] == pytest.approx(34.3, abs=0.05)
    assert approx["q_voxel"][1] == pytest.approx(5.0e-4, rel=0.01)
    assert approx["q_voxel"][0] == pytest.approx(2.3e-4, rel=0.03)
    exact = q_steps(**kwargs)
    assert exact["q_bragg"] == pytest.approx(approx["q_bragg"], rel=1e-3)
    np.testing.assert_allclose(exact["q_voxel"][1:], approx["q_voxel"][1:], rtol=0.01)
    # the rocking axis is not perpendicular to Q (gamma out of plane): a shorter step
    assert 0.85 * approx["q_voxel"][0] < exact["q_voxel"][0] < approx["q_voxel"][0]
    assert abs(exact["angles_deg"][0] - 90) > 5  # sheared
    binned = q_steps(**kwargs, binning=(2, 1, 1))
    assert binned["q_voxel"][0] == pytest.approx(2 * exact["q_voxel"][0])


def test_prepare_scan_on_synthetic(beamtime):
    raw = read_scan(beamtime.spec, 1, beamtime.pattern, dark=beamtime.dark, flat=beamtime.white)
    prepared = prepare_scan(raw, threshold=2.0)
    n = prepared.intensity.shape[0]
    assert prepared.intensity.shape == (n, n, n) and n == 6  # min(6, 8, 10) -> 6
    # the planted peak (frame 3, pixel 4, 5) is at the centre
    assert np.unravel_index(prepared.intensity.argmax(), prepared.intensity.shape) == (3, 3, 3)
    assert prepared.centre_raw == (3, 4, 5)
    assert prepared.mask.any()  # the hot pixel is in the crop
    names = [s["step"] for s in prepared.steps]
    assert names == ["dark_field", "white_field", "detector_mask", "threshold", "centre", "crop",
                     "oversampling"]
    json.dumps(prepared.metadata())


def _box_intensity(n: int, a: int, counts: float = 1e6, seed: int = 0) -> np.ndarray:
    obj = np.zeros((n, n, n))
    s = slice(n // 2 - a // 2, n // 2 - a // 2 + a)
    obj[s, s, s] = 1.0
    intensity = diffraction_intensity(obj)
    rng = np.random.default_rng(seed)
    return rng.poisson(intensity / intensity.max() * counts).astype(np.float64)


@pytest.mark.parametrize("target", [2.0, 3.0])
def test_network_input_matches_target_oversampling(target):
    from cdiplatform.physics.resample import oversampling_ratio

    intensity = _box_intensity(64, 8)  # oversampling 8 per axis
    x, rec = network_input(intensity, target_oversampling=target, size=32)
    assert x.shape == (32, 32, 32) and x.dtype == np.float32
    assert x.max() == pytest.approx(1.0) and x.min() >= 0
    assert np.unravel_index(x.argmax(), x.shape) == (16, 16, 16)
    np.testing.assert_allclose(rec["oversampling_after"], target, rtol=0.05)
    measured = oversampling_ratio(x.astype(np.float64) ** 2)
    np.testing.assert_allclose(measured, target, rtol=0.15)
