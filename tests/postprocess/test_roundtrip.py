"""Done-when: a crystal with a known quadratic displacement, forward-simulated on the detector
frame of scan 54's real angles and brought back, gives the applied strain and is not mirrored.

Forward: :func:`cdiplatform.simulate.simulate_detector_frame` (scan 54: 9 keV, Delta 32.174, Gamma
12.6346 degrees, 500 mm, 55 um pixels, 0.005 degree a frame; the peak at pixel (126, 127)). Back: the
measured magnitude with the exact phases, inverse far field (the exact solution of phase retrieval),
then :func:`cdiplatform.postprocess.postprocess_scans`.

Stated error: with the conjugate voxel of (19.5, 13.4, 13.4) nm of a 160 x 96 x 96 grid and a 4 nm
orthogonal voxel, the relative strain inside the support (2 voxels in from the surface) is within
5 % (RMS) of the applied strain's range, its regression slope on the truth within 5 % of 1; the mean
strain (from the Bragg peak against the reference lattice) within 5e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from cdiplatform.physics.fft import far_field, from_far_field
from cdiplatform.postprocess import frame_rotation, postprocess_scans
from cdiplatform.simulate import polyhedron_density, scan_geometry, simulate_detector_frame

SHAPE = (160, 96, 96)
H = 4.0  # nm, the crystal's grid and the orthogonal voxel
N = 80
#: an irregular polyhedron about 180 x 150 x 160 nm, and a block on one corner: no mirror symmetry
NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1],
                    [1, 1, 1], [-1, 1, -1]], float)
DISTANCES = np.array([90, 70, 80, 60, 75, 85, 100, 95.0])
MARKER = dict(normals=np.vstack([np.eye(3), -np.eye(3)]), distances_nm=[20, 20, 15, 20, 20, 15],
              centre_nm=(70.0, 45.0, -55.0))
QUAD = 2.5e-5  # 1/nm: u_G = QUAD (r . g)^2 + CROSS (r . g) x
CROSS = 1e-5
UNIFORM = 1e-3  # a mean strain along G, taken away by the ramp, given back by the absolute strain


def crystal_density(shape, spacing):
    main = polyhedron_density(shape, spacing_nm=spacing, normals=NORMALS, distances_nm=DISTANCES)
    return np.maximum(main, polyhedron_density(shape, spacing_nm=spacing, **MARKER))


def applied(pos_lab, g_hat):
    """Displacement along G (nm) and its derivative along G at lab positions ``(..., 3)``."""
    rg = pos_lab @ g_hat
    u = QUAD * rg**2 + CROSS * rg * pos_lab[..., 0] + UNIFORM * rg
    du = 2 * QUAD * rg + CROSS * (pos_lab[..., 0] + rg * g_hat[0]) + UNIFORM
    return u, du


@pytest.fixture(scope="module")
def measured():
    geo = scan_geometry(pixel=(126, 127))
    g = geo["q_peak"]
    g_hat = g / np.linalg.norm(g)
    ax = (np.arange(N) - N // 2) * H
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    u, _ = applied(np.stack([xx, yy, zz], axis=-1), g_hat)
    rho = crystal_density((N, N, N), H)
    inten, obj = simulate_detector_frame(rho[None], (u[..., None] * g_hat)[None], spacing_nm=H,
                                         q_step=geo["q_step"], q_peak=g, shape=SHAPE, return_object=True)
    field = far_field(obj, ndim=3)
    back = from_far_field(np.sqrt(inten) * np.exp(1j * np.angle(field)), ndim=3)
    true_phase_range = float(np.ptp(-np.linalg.norm(g) * 10 * u[rho > 0.5]))
    return dict(geo=geo, obj=back, support=np.abs(back) > 0.05, phase_range=true_phase_range)


def _truth_on(grid, frame, q_peak):
    rot = frame_rotation(frame, q_peak=q_peak)
    zz, yy, xx = np.meshgrid(grid.z, grid.y, grid.x, indexing="ij")
    lab = np.stack([xx, yy, zz], axis=-1) @ rot  # frame -> lab
    return lab


def _overlap(a, b):
    return (a & b).sum() / np.sqrt(a.sum() * b.sum())


@pytest.mark.parametrize("frame", ["laboratory", "crystal"])
def test_recovered_strain_equals_applied(measured, frame):
    geo = measured["geo"]
    g = geo["q_peak"]
    assert measured["phase_range"] > 3 * np.pi  # the phase wraps: the unwrapping is needed
    hkl = (1, 1, 1)
    a_ref = 2 * np.pi * np.sqrt(3) / np.linalg.norm(g)  # a reference lattice whose G is the grid centre's q
    res = postprocess_scans(measured["obj"], measured["support"], q_step=geo["q_step"], q_peak=g, frame=frame,
                            voxel_nm=H, amplitude_threshold=0.5, lattice_constant=a_ref, hkl=hkl)
    assert res.grid.frame == frame
    np.testing.assert_allclose(res.grid.spacing_nm, H)
    lab = _truth_on(res.grid, frame, g)
    _, du = applied(lab, g / np.linalg.norm(g))
    sup = res.support[0]
    inner = binary_erosion(sup, iterations=2)
    assert inner.sum() > 5000
    got = res.strain[0]
    # relative: the ramp took the mean strain away
    err = (got - got[sup].mean()) - (du - du[sup].mean())
    spread = np.ptp(du[sup])
    assert np.sqrt(np.mean(err[inner] ** 2)) < 0.05 * spread
    slope = np.polyfit(du[inner], got[inner], 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)
    # absolute: the removed ramp and the peak position against the reference lattice give the mean back
    # (the least-squares ramp's slope along G: near the mean strain, not equal to it for a curved field)
    assert res.mean_strain[0] == pytest.approx(du[sup].mean(), abs=5e-5)
    err_abs = res.strain_absolute[0] - du
    assert abs(np.mean(err_abs[inner])) < 5e-5
    assert np.sqrt(np.mean(err_abs[inner] ** 2)) < 0.05 * spread
    if frame == "crystal":
        np.testing.assert_allclose(res.g_direction[0], [0, 0, 1], atol=1e-12)


def test_crystal_is_not_mirrored(measured):
    geo = measured["geo"]
    g = geo["q_peak"]

    def support_and_truth(q_step):
        res = postprocess_scans(measured["obj"], measured["support"], q_step=q_step, q_peak=g, voxel_nm=H,
                                amplitude_threshold=0.5)
        truth = crystal_density(res.grid.shape, H) > 0.5  # lab frame, centred like the grid
        return res.support[0], truth

    sup, truth = support_and_truth(geo["q_step"])
    right = _overlap(sup, truth)
    assert right > 0.9
    for axes in [(0,), (1,), (2,), (0, 1, 2)]:  # mirrors, and the inversion (also improper)
        assert _overlap(sup, np.flip(truth, axis=axes)) < right - 0.05
    # the same chain with the sign of one q step flipped (a mirror) or with lengths only does not fit
    flipped = geo["q_step"] * np.array([[1.0], [-1.0], [1.0]])
    lengths = np.diag(np.linalg.norm(geo["q_step"], axis=1))
    for wrong in (flipped, lengths):
        s, t = support_and_truth(wrong)
        assert _overlap(s, t) < right - 0.1


def test_bad_inputs_are_one_line_errors(measured):
    geo = measured["geo"]
    obj, sup = measured["obj"], measured["support"]
    cases = [
        (dict(obj=np.abs(obj)), "complex"),
        (dict(support=sup.astype(np.uint8)), "support must be boolean"),
        (dict(q_step=np.ones(3)), "q_step must be"),
        (dict(frame="detector"), "frame must be"),
        (dict(amplitude_threshold=1.5), "amplitude_threshold"),
        (dict(lattice_constant=4.08), "both lattice_constant and hkl"),
    ]
    for change, match in cases:
        kw = dict(obj=obj, support=sup, q_step=geo["q_step"], q_peak=geo["q_peak"])
        kw.update(change)
        with pytest.raises(ValueError, match=match) as info:
            postprocess_scans(kw.pop("obj"), kw.pop("support"), **kw)
        assert "\n" not in str(info.value)
