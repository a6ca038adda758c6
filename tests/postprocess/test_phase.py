"""Unwrapping inside a support, the least-squares ramp, displacement and strain."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from cdiplatform.postprocess import (
    displacement_from_phase,
    masked_gradient,
    mean_strain,
    remove_phase_ramp,
    strain_along,
    unwrap_phase_in_support,
)


def _ball(n=24, r=9.0):
    idx = np.indices((n, n, n)) - n // 2
    return (idx**2).sum(axis=0) <= r**2, idx


def test_unwrapping_recovers_a_phase_that_wraps():
    sup, idx = _ball()
    true = 0.06 * (idx[0] + 3) ** 2 + 0.5 * idx[2]  # a range of about 12 rad
    assert np.ptp(true[sup]) > 3 * np.pi
    noise_outside = np.random.default_rng(0).uniform(-np.pi, np.pi, sup.shape)
    wrapped = np.where(sup, np.angle(np.exp(1j * true)), noise_outside)
    got = unwrap_phase_in_support(wrapped[None], sup[None])[0]
    shift = got[sup] - true[sup]
    np.testing.assert_allclose(shift, shift[0], atol=1e-6)  # equal up to one constant...
    assert shift[0] / (2 * np.pi) == pytest.approx(round(shift[0] / (2 * np.pi)), abs=1e-6)  # ...of 2 pi k
    assert np.all(got[~sup] == 0)


def test_unwrapping_2d_batch_and_bad_inputs():
    y, x = np.indices((32, 32)) - 16
    true = 0.03 * (x**2 + y**2)
    sup = np.hypot(x, y) < 14
    got = unwrap_phase_in_support(np.angle(np.exp(1j * true))[None], sup[None])[0]
    d = got[sup] - true[sup]
    np.testing.assert_allclose(d, d[0], atol=1e-6)
    with pytest.raises(ValueError, match="boolean"):
        unwrap_phase_in_support(true[None], sup[None].astype(int))
    with pytest.raises(ValueError, match="NaN"):
        unwrap_phase_in_support(np.full((1, 32, 32), np.nan), sup[None])


@pytest.mark.parametrize("weights", [None, "amplitude"])
def test_least_squares_ramp_and_offset(weights):
    sup, _ = _ball()
    coords = [np.arange(24) * 2.0 - 24.0] * 3  # nm
    zz, yy, xx = np.meshgrid(*coords, indexing="ij")
    rest = 0.01 * (xx**2 - yy**2)  # has no linear part on a ball centred at 0
    phase = 0.7 + 0.05 * zz - 0.02 * yy + 0.03 * xx + rest
    w = None if weights is None else np.where(sup, 1.0, 0.0)[None]
    out, ramp, offset = remove_phase_ramp(phase[None], sup[None], coords=coords, weights=w)
    np.testing.assert_allclose(ramp[0], [0.05, -0.02, 0.03], atol=1e-9)
    np.testing.assert_allclose(out[0][sup], rest[sup] - rest[sup].mean(), atol=1e-9)
    assert offset[0] == pytest.approx(0.7 + rest[sup].mean())
    with pytest.raises(ValueError, match="too few"):
        remove_phase_ramp(phase[None], np.zeros((1,) + sup.shape, bool), coords=coords)
    with pytest.raises(ValueError, match="coords"):
        remove_phase_ramp(phase[None], sup[None], coords=coords[:2])


def test_displacement_sign_is_minus_phase_over_g():
    # phi = -G.u: a displacement of +0.1 nm along G (|G| = 2.67 1/angstrom) is a phase of -2.67 rad
    u = displacement_from_phase(np.full((1, 2, 2, 2), -2.67), 2.67)
    np.testing.assert_allclose(u, 0.1)
    with pytest.raises(ValueError, match="q_bragg"):
        displacement_from_phase(np.zeros((2, 2, 2, 2)), [1.0, -1.0])


def test_masked_gradient_central_inside_one_sided_at_the_surface():
    v = np.arange(10.0) ** 2
    sup = np.zeros(10, bool)
    sup[2:8] = True
    g = masked_gradient(v[None], sup[None], spacing=[0.5])[0, 0]
    assert g[4] == pytest.approx((25 - 9) / 2 / 0.5)  # central
    assert g[2] == pytest.approx((9 - 4) / 0.5)  # forward at the lower surface
    assert g[7] == pytest.approx((49 - 36) / 0.5)  # backward at the upper surface
    assert g[0] == 0 and g[9] == 0
    single = np.zeros(10, bool)
    single[5] = True
    assert masked_gradient(v[None], single[None], spacing=[1.0])[0, 0, 5] == 0  # no neighbour: 0


@pytest.mark.parametrize("direction", [(0, 0, 1), (1, 0, 0), (0.6, 0.0, 0.8)])
def test_strain_along_a_direction(direction):
    sup, _ = _ball()
    h = (2.0, 3.0, 4.0)  # nm along z, y, x
    ax = [(np.arange(24) - 12) * s for s in h]
    zz, yy, xx = np.meshgrid(*ax, indexing="ij")
    u = 1e-3 * xx + 2e-3 * yy + 3e-3 * zz  # a constant gradient (x, y, z) = (1, 2, 3) e-3
    eps = strain_along(u[None], sup[None], spacing=h, direction=np.asarray(direction, float))[0]
    # every support voxel with a neighbour in the support along each axis (surface ones included)
    ok = sup.copy()
    for ax in range(3):
        ok &= np.roll(sup, 1, axis=ax) | np.roll(sup, -1, axis=ax)
    assert (sup & ~binary_erosion(sup) & ok).sum() > 100
    np.testing.assert_allclose(eps[ok], np.dot(direction, [1e-3, 2e-3, 3e-3]), atol=1e-12)
    assert np.all(eps[~sup] == 0)
    with pytest.raises(ValueError, match="unit vectors"):
        strain_along(u[None], sup[None], spacing=h, direction=[1.0, 1.0, 0.0])


def test_mean_strain_against_reference_lattice():
    a = 4.0782  # gold, angstrom
    g111 = 2 * np.pi * np.sqrt(3) / a
    q = np.array([0.0, 0.0, g111 / 1.002])  # spacing 0.2 % larger than the reference
    assert mean_strain(q, lattice_constant=a, hkl=(1, 1, 1))[0] == pytest.approx(2e-3, rel=1e-9)
    # a ramp that moves the peak back onto the reference: no mean strain
    back = mean_strain(q, lattice_constant=a, hkl=(1, 1, 1), ramp_q=[[0, 0, g111 - q[2]]])
    assert back[0] == pytest.approx(0.0, abs=1e-12)


def test_missing_scikit_image_is_a_one_line_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skimage.restoration", None)
    with pytest.raises(ImportError, match="pip install scikit-image") as info:
        unwrap_phase_in_support(np.zeros((1, 4, 4)), np.ones((1, 4, 4), bool))
    assert "\n" not in str(info.value)
