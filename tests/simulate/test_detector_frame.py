"""The forward model on the detector frame: sign of the Bragg shift, photons, noise, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.simulate import polyhedron_density, scan_geometry, simulate_detector_frame

CUBE = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
SHAPE = (64, 48, 48)


@pytest.fixture(scope="module")
def geometry():
    return scan_geometry(pixel=(126, 127), binning=(2, 1, 1))


def _crystal(n=40, h=5.0, half=60.0):
    rho = polyhedron_density((n, n, n), spacing_nm=h, normals=CUBE, distances_nm=[half] * 6)
    ax = (np.arange(n) - n // 2) * h
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    return rho, np.stack([xx, yy, zz], axis=-1), h


def test_polyhedron_has_the_size_in_nm():
    rho, pos, h = _crystal()
    inside = rho > 0.5
    assert inside[20, 20, 20] and not inside[20, 20, 20 + 13]
    width = pos[..., 0][inside].max() - pos[..., 0][inside].min() + h
    assert width == pytest.approx(120.0, abs=h)


@pytest.mark.parametrize("strain", [2e-3, -3e-3])
def test_uniform_strain_moves_the_peak_by_minus_strain_times_g(geometry, strain):
    rho, pos, h = _crystal()
    g = geometry["q_peak"]
    g_hat = g / np.linalg.norm(g)
    u = strain * (pos @ g_hat)[..., None] * g_hat  # a uniform strain along G (nm)
    inten = simulate_detector_frame(rho[None], u[None], spacing_nm=h, q_step=geometry["q_step"], q_peak=g,
                                    shape=SHAPE)[0]
    peak = np.array(np.unravel_index(np.argmax(inten), SHAPE)) - np.array(SHAPE) // 2
    dq = peak @ geometry["q_step"]
    # a larger spacing (tensile, strain > 0) diffracts at a smaller |q|: dq = -strain G
    np.testing.assert_allclose(dq, -strain * g, atol=0.75 * np.linalg.norm(geometry["q_step"], axis=1).max())
    assert np.sign(dq @ g_hat) == -np.sign(strain)


def test_unstrained_peak_at_centre_photons_and_poisson(geometry):
    rho, _, h = _crystal()
    kw = dict(spacing_nm=h, q_step=geometry["q_step"], q_peak=geometry["q_peak"], shape=SHAPE)
    clean, obj = simulate_detector_frame(np.stack([rho, rho]), None, total_photons=1e6, return_object=True, **kw)
    assert tuple(np.unravel_index(np.argmax(clean[0]), SHAPE)) == tuple(n // 2 for n in SHAPE)
    np.testing.assert_allclose(clean.reshape(2, -1).sum(axis=1), 1e6, rtol=1e-4)
    assert obj.shape == (2,) + SHAPE and np.iscomplexobj(obj)
    noisy = simulate_detector_frame(rho[None], None, total_photons=1e6, rngs=[np.random.default_rng(1)], **kw)
    assert np.all(noisy == np.round(noisy)) and abs(noisy.sum() - 1e6) < 5 * 1e3
    again = simulate_detector_frame(rho[None], None, total_photons=1e6, rngs=[np.random.default_rng(1)], **kw)
    np.testing.assert_array_equal(noisy, again)


@pytest.mark.parametrize("change, match", [
    (dict(density=-np.ones((1, 8, 8, 8))), "non-negative"),
    (dict(density=np.ones((8, 8, 8))), r"\(scan, z, y, x\)"),
    (dict(displacement_nm=np.zeros((1, 8, 8, 8))), "displacement_nm must have shape"),
    (dict(spacing_nm=0.0), "spacing_nm must be positive"),
    (dict(rngs=[np.random.default_rng(0)]), "needs total_photons"),
    (dict(total_photons=1.0, rngs=[]), "1 scans"),
    (dict(q_step=np.zeros((3, 3))), "singular"),
])
def test_bad_inputs_are_one_line_errors(geometry, change, match):
    kw = dict(density=np.ones((1, 8, 8, 8)), displacement_nm=None, spacing_nm=5.0, q_step=geometry["q_step"],
              q_peak=geometry["q_peak"], shape=(8, 8, 8))
    kw.update(change)
    with pytest.raises(ValueError, match=match) as info:
        simulate_detector_frame(kw.pop("density"), kw.pop("displacement_nm"), **kw)
    assert "\n" not in str(info.value)
