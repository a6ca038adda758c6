"""The q steps of a 34-ID-C scan and the real-space grid conjugate to them, checked by hand.

The hand computation below follows the diffractometer's definition, with no
xrayutilities: detector arm ``kf = R_y(delta) R_x(-gamma) z`` (circles Delta
about y+, Gamma about x-, outer first), the pixel ``(r, c)`` of the 512 x 512
Timepix at ``D z + (r - 256) p (-y) + (c - 256) p (+x)`` on the arm (rows along
y-, columns along x+), ``q = k (pos / |pos| - z)``. Rocking Theta (about y+,
the outermost sample circle) by ``dth`` turns the crystal, so in the frame of
the crystal held at the grid centre the q of the next frame is ``R_y(-dth) q``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.ingest.geometry import q_steps
from cdiplatform.postprocess import conjugate_positions, frame_rotation, real_space_basis, voxel_sizes_nm

# scan 54 (SPEC #P0..#P4 and the scan command; README of the shared data)
SCAN54 = dict(energy_kev=9.0, delta_deg=32.174, gamma_deg=12.6346, rocking_step_deg=0.005, camdist_mm=500.0,
              pixel_size_m=(55e-6, 55e-6))
PEAK_PIXEL = (126, 127)  # the brightest pixel of the frames (region [0:256, 0:256] of the sensor)
HC_KEV_A = 12.398419843320026


def _ry(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rx(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def hand_q(row, col, dtheta_deg=0.0, *, energy_kev, delta_deg, gamma_deg, camdist_mm, pixel_size_m, **_):
    k = 2 * np.pi / (HC_KEV_A / energy_kev)
    arm = _ry(np.radians(delta_deg)) @ _rx(-np.radians(gamma_deg))
    d, p = camdist_mm * 1e-3, pixel_size_m[0]
    pos = arm @ np.array([(col - 256) * p, -(row - 256) * p, d])
    q_lab = k * (pos / np.linalg.norm(pos) - np.array([0.0, 0.0, 1.0]))
    return _ry(-np.radians(dtheta_deg)) @ q_lab


def hand_steps(row, col, binning=(1, 1, 1), **geo):
    q0 = hand_q(row, col, **geo)
    steps = np.array([hand_q(row, col, geo["rocking_step_deg"], **geo) - q0,
                      hand_q(row + 1, col, **geo) - q0, hand_q(row, col + 1, **geo) - q0])
    return steps * np.asarray(binning, float)[:, None], q0


@pytest.mark.parametrize("binning", [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_q_steps_signed_lab_frame_equal_hand(binning):
    got = q_steps(**SCAN54, pixel=PEAK_PIXEL, binning=binning)
    steps, q0 = hand_steps(*PEAK_PIXEL, binning=binning, **SCAN54)
    np.testing.assert_allclose(got["q_step"], steps, rtol=0, atol=1e-9)
    # the binned grid's centre is the middle of the bin that starts at the peak
    unbinned, _ = hand_steps(*PEAK_PIXEL, **SCAN54)
    np.testing.assert_allclose(got["q_peak"], q0 + ((np.asarray(binning) - 1) / 2) @ unbinned, atol=1e-9)
    assert got["frame"] == "laboratory"


def test_lab_frame_does_not_depend_on_sample_angles_but_sample_frame_does():
    lab_a = q_steps(**SCAN54, pixel=PEAK_PIXEL, sample_angles_deg=(0.215, 90.0, -5.0))
    lab_b = q_steps(**SCAN54, pixel=PEAK_PIXEL, sample_angles_deg=(3.0, 10.0, 40.0))
    np.testing.assert_allclose(lab_a["q_step"], lab_b["q_step"], atol=1e-12)
    sam = q_steps(**SCAN54, pixel=PEAK_PIXEL, sample_angles_deg=(0.215, 90.0, -5.0), frame="sample")
    assert not np.allclose(sam["q_step"], lab_a["q_step"], atol=1e-6)
    # a rotation: same lengths, angles and handedness
    np.testing.assert_allclose(np.linalg.det(sam["q_step"]), np.linalg.det(lab_a["q_step"]), rtol=1e-9)
    np.testing.assert_allclose(sam["q_voxel"], lab_a["q_voxel"], rtol=1e-9)
    with pytest.raises(ValueError, match="frame must be"):
        q_steps(**SCAN54, frame="detector")


def test_scan54_voxel_sizes_equal_hand_computation():
    shape = (200, 200, 200)  # the prepared cube of scan 54 (no binning)
    s, _ = hand_steps(*PEAK_PIXEL, **SCAN54)
    # b_a = 2 pi (s_b x s_c) / (N_a s_a . (s_b x s_c)), angstrom -> nm
    vol = s[0] @ np.cross(s[1], s[2])
    hand = np.array([np.cross(s[1], s[2]), np.cross(s[2], s[0]), np.cross(s[0], s[1])])
    hand = 2 * np.pi * hand / vol / np.array(shape)[:, None] / 10.0
    geo = q_steps(**SCAN54, pixel=PEAK_PIXEL)
    basis = real_space_basis(geo["q_step"], shape)
    np.testing.assert_allclose(basis, hand, rtol=1e-6)
    sizes = voxel_sizes_nm(geo["q_step"], shape)
    np.testing.assert_allclose(sizes, np.linalg.norm(hand, axis=1), rtol=1e-6)
    # the figures docs/postprocess.md reports (2 pi / (N |s_a|) = 14.8, 6.26, 6.26 nm, longer by the shear)
    np.testing.assert_allclose(sizes, [15.60, 6.44, 6.43], atol=0.01)
    assert np.linalg.det(basis) * np.linalg.det(geo["q_step"]) > 0  # handedness kept


def test_basis_is_conjugate_and_binning_halves_the_field_of_view():
    geo = q_steps(**SCAN54, pixel=PEAK_PIXEL)
    for shape in [(64, 64, 64), (32, 48, 40)]:
        b = real_space_basis(geo["q_step"], shape)
        np.testing.assert_allclose(geo["q_step"] @ b.T * 10.0, 2 * np.pi * np.diag(1 / np.array(shape)),
                                   atol=1e-12)
    # voxel N // 2 at the origin, one step along axis a moves by b_a
    shape = (8, 6, 4)
    where = np.zeros(shape, bool)
    where[4, 3, 2] = where[5, 3, 2] = where[4, 3, 3] = True
    pos = conjugate_positions(shape, geo["q_step"], where)
    b = real_space_basis(geo["q_step"], shape)
    np.testing.assert_allclose(pos, [np.zeros(3), b[2], b[0]], atol=1e-12)
    # binning by 2 along frames with half the frames: same voxel along the other axes, same q range
    full = voxel_sizes_nm(geo["q_step"], (128, 64, 64))
    binned = voxel_sizes_nm(q_steps(**SCAN54, pixel=PEAK_PIXEL, binning=(2, 1, 1))["q_step"], (64, 64, 64))
    np.testing.assert_allclose(binned, full, rtol=1e-9)


@pytest.mark.parametrize("bad, match", [
    (np.eye(2), "3x3"),
    (np.array([[1e-4, 0, 0], [2e-4, 0, 0], [0, 0, 1e-4]]), "singular"),
    (np.full((3, 3), np.nan), "NaN"),
])
def test_bad_q_step_is_a_one_line_error(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        real_space_basis(bad, (8, 8, 8))
    assert "\n" not in str(info.value)


def test_crystal_frame_puts_g_on_z_and_is_proper():
    g = q_steps(**SCAN54, pixel=PEAK_PIXEL)["q_peak"]
    r = frame_rotation("crystal", q_peak=g)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r @ (g / np.linalg.norm(g)), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(frame_rotation("laboratory"), np.eye(3))
    with pytest.raises(ValueError, match="q_peak"):
        frame_rotation("crystal")
    with pytest.raises(ValueError, match="frame must be"):
        frame_rotation("sample")
