"""PRTF of kept starts, FSC of half data sets, binomial splitting, with known cut-offs."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.ingest.geometry import q_steps
from cdiplatform.physics.fft import far_field, from_far_field
from cdiplatform.postprocess import binomial_split, fourier_shell_correlation, orthogonal_q_step, prtf

SCAN54_STEP = q_steps(energy_kev=9.0, delta_deg=32.174, gamma_deg=12.6346, rocking_step_deg=0.005,
                      camdist_mm=500.0, pixel_size_m=(55e-6, 55e-6), pixel=(126, 127), binning=(2, 1, 1))["q_step"]


def _q(shape, q_step):
    idx = np.indices(shape).reshape(3, -1).T - np.array(shape) // 2
    return (idx @ q_step).reshape(shape + (3,))


def _field(shape, rng):
    obj = np.zeros(shape, complex)
    c = [n // 2 for n in shape]
    obj[c[0] - 5:c[0] + 5, c[1] - 4:c[1] + 6, c[2] - 6:c[2] + 4] = 1.0
    return far_field(obj * np.exp(0.3j * rng.standard_normal(shape)))


def _starts(field, reliable, k, rng):
    """``k`` objects whose far fields agree where ``reliable`` and have random phases elsewhere."""
    out = []
    for _ in range(k):
        ph = np.where(reliable, 0.0, rng.uniform(-np.pi, np.pi, field.shape))
        out.append(from_far_field(field * np.exp(1j * ph)))
    return np.stack(out)


@pytest.mark.parametrize("q_step", [SCAN54_STEP, orthogonal_q_step((32, 32, 32), (10.0, 10.0, 10.0))])
def test_prtf_falls_at_the_cut_off_of_reproducible_phases(q_step):
    rng = np.random.default_rng(3)
    shape = (32, 32, 32)
    field = _field(shape, rng)
    qn = np.linalg.norm(_q(shape, q_step), axis=-1)
    q_cut = 0.5 * qn.max() / np.sqrt(3) * 1.2
    objs = _starts(field, qn < q_cut, 8, rng)
    (res,) = prtf(objs[None], np.abs(field)[None], q_step=q_step)
    assert res.kind == "prtf" and res.crossed
    assert np.all(res.shell[res.q < 0.8 * q_cut] > 0.99)
    assert np.nanmax(res.shell[res.q > 1.2 * q_cut]) < 0.6  # about 1/sqrt(8) and its spread
    assert res.resolution_nm == pytest.approx(np.pi / q_cut / 10, rel=0.1)
    np.testing.assert_allclose(res.axis_resolution_nm, np.pi / q_cut / 10, rtol=0.15)
    # the same starts, all alike: no crossing, a bound at the grid's edge
    (same,) = prtf(np.stack([objs[0]] * 3)[None], np.abs(far_field(objs[0]))[None], q_step=q_step)
    assert not same.crossed and np.allclose(same.shell, 1.0, atol=1e-5)


def test_prtf_per_axis_follows_an_anisotropic_cut_off():
    rng = np.random.default_rng(4)
    shape = (32, 32, 32)
    spacing = (10.0, 10.0, 10.0)
    step = orthogonal_q_step(shape, spacing)
    q = _q(shape, step)
    cut = np.array([0.012, 0.018, 0.024])  # 1/angstrom along x, y, z (the grid reaches 0.031)
    reliable = ((q / cut) ** 2).sum(axis=-1) < 1
    field = _field(shape, rng)
    (res,) = prtf(_starts(field, reliable, 8, rng)[None], np.abs(field)[None], q_step=step, cone_deg=15)
    # per array axis (z, y, x): half-periods pi / q_cut (cones bin by |q|, whose edge in the cone lies
    # a little past the cut on the axis: a little finer, and shells of 0.002 1/angstrom)
    assert res.axis_crossed.all()
    assert res.axis_resolution_nm[0] < res.axis_resolution_nm[1] < res.axis_resolution_nm[2]
    np.testing.assert_allclose(res.axis_resolution_nm, np.pi / cut[::-1] / 10, rtol=0.2)


def test_prtf_bad_inputs():
    obj = np.ones((1, 2, 8, 8, 8), complex)
    with pytest.raises(ValueError, match="at least 2 kept starts"):
        prtf(obj[:, :1], np.ones((1, 8, 8, 8)), q_step=SCAN54_STEP)
    with pytest.raises(ValueError, match="same grid"):
        prtf(obj, np.ones((1, 8, 8, 9)), q_step=SCAN54_STEP)
    with pytest.raises(ValueError, match="non-negative"):
        prtf(obj, -np.ones((1, 8, 8, 8)), q_step=SCAN54_STEP)


@pytest.mark.parametrize("threshold", ["half-bit", 0.143])
def test_fsc_of_halves_that_agree_up_to_a_cut_off(threshold):
    rng = np.random.default_rng(5)
    shape = (32, 32, 32)
    field = _field(shape, rng)
    qn = np.linalg.norm(_q(shape, SCAN54_STEP), axis=-1)
    q_cut = 0.3 * qn.max()
    a, b = _starts(field, qn < q_cut, 2, rng)
    (res,) = fourier_shell_correlation(a[None], b[None], q_step=SCAN54_STEP, threshold=threshold)
    assert res.kind == "fsc" and res.crossed
    assert np.all(res.shell[res.q < 0.8 * q_cut] > 0.99)
    assert res.resolution_nm == pytest.approx(np.pi / q_cut / 10, rel=0.1)
    if threshold == "half-bit":
        assert np.all(np.diff(res.threshold[np.isfinite(res.threshold)][2:]) < 0)  # falls as 1/sqrt(n)
        assert 0.1716 < np.nanmin(res.threshold) < 0.3
    else:
        np.testing.assert_allclose(res.threshold, 0.143)
    with pytest.raises(ValueError, match="threshold"):
        fourier_shell_correlation(a[None], b[None], q_step=SCAN54_STEP, threshold="one-bit")


def test_binomial_split_halves():
    rng = np.random.default_rng(6)
    counts = rng.poisson(np.linspace(0, 400, 20000)).reshape(20, 1000)
    a, b = binomial_split(counts, np.random.default_rng(7))
    np.testing.assert_array_equal(a + b, counts)
    assert a.dtype.kind == "i" and abs(a.sum() / counts.sum() - 0.5) < 0.005
    # from Poisson counts of one mean: the halves are independent Poisson of half that mean
    pa, pb = binomial_split(rng.poisson(50.0, 20000), np.random.default_rng(8))
    assert abs(np.corrcoef(pa, pb)[0, 1]) < 0.03
    assert pa.mean() == pytest.approx(25, rel=0.02) and pa.var() == pytest.approx(25, rel=0.05)
    a2, _ = binomial_split(counts, np.random.default_rng(7))
    np.testing.assert_array_equal(a, a2)
    fa, fb = binomial_split(np.array([2.6, 0.4, 10.0]), np.random.default_rng(0))
    np.testing.assert_array_equal(fa + fb, [3, 0, 10])
    assert fa.dtype == np.float32


@pytest.mark.parametrize("bad, match", [(np.array([-1, 2]), "non-negative"), (np.array([np.nan]), "finite"),
                                         (np.array(["a"]), "numbers")])
def test_binomial_split_bad_inputs(bad, match):
    with pytest.raises(ValueError, match=match):
        binomial_split(bad, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Generator"):
        binomial_split(np.ones(3), 0)
