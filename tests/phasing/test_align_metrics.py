import numpy as np
import pytest

from cdiplatform.physics.align import (
    align,
    find_shift,
    remove_phase_offset,
    remove_phase_ramp,
    shift_object,
    twin,
)
from cdiplatform.physics.fft import far_field
from cdiplatform.physics.metrics import (
    amplitude_error,
    chi_square,
    compare_with_truth,
    phase_error,
    poisson_llk,
)


@pytest.fixture
def truth(make_object):
    return make_object(np.random.default_rng(11), 14, 32)


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (4, 5, 6)])
def test_twin_is_an_involution_with_the_same_far_field(shape):
    rng = np.random.default_rng(0)
    obj = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    np.testing.assert_allclose(twin(twin(obj)), obj)
    np.testing.assert_allclose(np.abs(far_field(twin(obj))), np.abs(far_field(obj)), atol=1e-10)
    centre = tuple(n // 2 for n in shape)
    assert twin(obj)[centre] == np.conj(obj[centre])


@pytest.mark.parametrize("shift", [(3.0, -5.0), (0.4, 1.7), (-7.25, 0.0)])
def test_find_shift_is_subpixel(truth, shift):
    moved = shift_object(truth, shift)
    found = find_shift(truth, moved)
    np.testing.assert_allclose(found, -np.asarray(shift), atol=0.15)
    back = shift_object(moved, found)
    assert np.abs(back - truth).max() < 0.1 * np.abs(truth).max()


def test_phase_offset_and_ramp(truth):
    off = remove_phase_offset(truth * np.exp(1.1j), truth)
    np.testing.assert_allclose(off, truth, atol=1e-6)
    yy, xx = np.meshgrid(np.arange(32) - 16, np.arange(32) - 16, indexing="ij")
    ramped = truth * np.exp(2j * np.pi * (2 * yy - 3 * xx) / 32)
    flat, k = remove_phase_ramp(ramped, truth)
    np.testing.assert_allclose(k, [2 / 32, -3 / 32], atol=1e-3)
    assert np.abs(remove_phase_offset(flat, truth) - truth).max() < 0.05


@pytest.mark.parametrize("do_twin", [False, True])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (2.0, -3.0), (1.5, 0.5)])
@pytest.mark.parametrize("offset", [0.0, 2.5])
def test_truth_errors_invariant_to_trivial_ambiguities(truth, do_twin, shift, offset):
    obj = truth * np.exp(1j * offset)
    obj = shift_object(obj, shift)
    if do_twin:
        obj = twin(obj)
    cmp = compare_with_truth(obj, np.abs(truth), np.angle(truth))
    assert cmp.alignment.twinned == do_twin
    tol = 1e-6 if float(shift[0]).is_integer() and float(shift[1]).is_integer() else 0.02
    assert cmp.amplitude_error < tol
    assert cmp.phase_error < max(tol, 1e-5) * 5


def test_truth_errors_see_real_differences(truth):
    rng = np.random.default_rng(1)
    noisy_phase = truth * np.exp(1j * 0.3 * rng.normal(size=truth.shape))
    cmp = compare_with_truth(noisy_phase, np.abs(truth), np.angle(truth))
    assert 0.2 < cmp.phase_error < 0.4
    assert cmp.amplitude_error < 1e-3  # only a tiny sub-pixel shift is fitted to the noise
    blurred = np.abs(truth) ** 2 * np.exp(1j * np.angle(truth))
    assert compare_with_truth(blurred, np.abs(truth), np.angle(truth)).amplitude_error > 0.005


def test_phase_error_wraps():
    t = np.ones((4, 4), complex) * np.exp(1j * 3.1)
    o = np.ones((4, 4), complex) * np.exp(-1j * 3.1)
    s = np.ones((4, 4), bool)
    assert phase_error(o, t, s) < 1e-9  # a constant offset across the branch cut
    o2 = o.copy()
    o2[0, 0] *= np.exp(0.5j)
    assert phase_error(o2, t, s) > 0.1
    with pytest.raises(ValueError, match="empty"):
        phase_error(o, t, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="shapes differ"):
        phase_error(o, t, np.ones((3, 4), bool))


def test_amplitude_error_normalizes():
    a = np.zeros((8, 8))
    a[2:6, 2:6] = 1.0
    assert amplitude_error(7 * a, a) == 0.0
    assert amplitude_error(np.zeros_like(a), a) == pytest.approx(16 / 64)


def test_chi_square_and_llk(truth):
    amp = np.abs(far_field(truth))
    batch = np.stack([truth, shift_object(truth, (1.0, 2.0)), twin(truth), truth * np.exp(0.7j)])
    chi = chi_square(batch, amp, ndim=2)
    assert chi.shape == (4,) and np.all(chi < 1e-10)
    assert chi_square(0.5 * truth, amp, ndim=2) == pytest.approx(0.25, rel=1e-6)
    assert chi_square(0.5 * truth, amp, ndim=2, fit_scale=True) < 1e-10
    measured = np.ones(amp.shape, bool)
    measured[16, 16] = False
    wrong = amp.copy()
    wrong[16, 16] = 0
    assert chi_square(truth, wrong, measured=measured) < 1e-10
    assert chi_square(truth, wrong) > 1e-3
    inten = amp**2 * 100
    assert abs(poisson_llk(truth * 10, inten)) < 1e-8
    assert poisson_llk(truth * 9, inten) > 0.01
    assert poisson_llk(truth * 9, inten, fit_scale=True) < 1e-8
    with pytest.raises(ValueError, match="NaN"):
        chi_square(truth, np.full(amp.shape, np.nan))
    with pytest.raises(ValueError, match="does not match"):
        chi_square(truth, amp[:8])


def test_align_refuses_shape_mismatch(truth):
    with pytest.raises(ValueError, match="cannot align"):
        align(truth, truth[:8])


@pytest.mark.parametrize("shift", [(2.0, -3.0), (0.0, 1.0)])
def test_whole_pixel_alignment_is_exact_and_never_fractional(truth, shift):
    obj = twin(np.roll(truth, [int(s) for s in shift], axis=(0, 1)) * np.exp(0.7j))
    cmp = compare_with_truth(obj, np.abs(truth), np.angle(truth), subpixel=False)
    assert cmp.alignment.twinned
    assert np.all(cmp.alignment.shift == np.round(cmp.alignment.shift))
    assert cmp.amplitude_error < 1e-9 and cmp.phase_error < 1e-9
    # a real object that is only a little off-centre: no fractional shift, so no ringing at its edge
    slightly = shift_object(np.abs(truth).astype(complex), (0.3, -0.2))
    al = align(slightly, np.abs(truth).astype(complex), subpixel=False)
    assert np.all(al.shift == 0) and np.allclose(np.abs(al.obj), np.abs(slightly))
