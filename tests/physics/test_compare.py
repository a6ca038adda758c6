import numpy as np
import pytest
import scipy.ndimage

from cdiplatform.physics.align import shift_object, twin
from cdiplatform.physics.compare import ComparisonRules, compare_objects
from cdiplatform.physics.metrics import compare_with_truth


@pytest.fixture
def crystal(make_crystal):
    return make_crystal(np.random.default_rng(21), 32, ndim=3, size=12, edge=1.5)


@pytest.mark.parametrize("do_twin", [False, True])
@pytest.mark.parametrize("shift", [(0.0, 0.0, 0.0), (2.0, -1.0, 0.0), (0.4, -0.3, 0.25)])
def test_trivial_ambiguities_are_removed(crystal, do_twin, shift):
    obj = 3.0 * shift_object(crystal * np.exp(1.3j), shift)
    if do_twin:
        obj = twin(obj)
    c = compare_objects(obj, crystal)
    assert c.twinned == do_twin and (c.twin_margin > 0.02) == do_twin
    whole = all(float(s).is_integer() for s in shift)
    assert c.amplitude_error < (1e-9 if whole else 0.01)
    assert c.phase_error < (1e-9 if whole else 0.02)
    assert c.overlap > (0.999 if whole else 0.95) and c.coverage > 0.95


def test_a_phase_ramp_is_an_error_not_an_ambiguity(crystal):
    zz = np.arange(32)[:, None, None] - 16
    ramped = crystal * np.exp(1j * 0.2 * zz)
    c = compare_objects(ramped, crystal)
    support = np.abs(crystal) > 0.1 * np.abs(crystal).max()
    want = np.std((0.2 * zz * np.ones_like(crystal.real))[support])
    assert 0.8 * want < c.phase_error < 1.05 * want  # nearly all of the ramp stays (a shift of the edge absorbs a little)


def test_ringing_of_a_sub_voxel_shift_stays_out_of_the_phase_error(make_crystal):
    """A flat-phase guess that misses the crystal's edge: a sub-voxel shift must not turn its edge into phase error."""
    truth = np.abs(make_crystal(np.random.default_rng(22), 32, ndim=3, size=12, strain=0.0, edge=0.5))
    support = truth > 0.1
    guess = scipy.ndimage.gaussian_filter(truth * scipy.ndimage.binary_erosion(support, iterations=1), 0.7)
    guess = shift_object(guess.astype(complex), (0.3, -0.2, 0.1)).real  # off-centre by a fraction of a voxel
    guess = np.maximum(guess, 0.0).astype(complex)  # a real, positive guess: its phase is exactly 0
    default = compare_objects(guess, truth)
    assert np.abs(default.shift).max() > 0.05  # a sub-voxel shift was applied
    assert default.phase_error < 0.02
    whole = compare_objects(guess, truth, rules=ComparisonRules(subpixel=False))
    assert whole.phase_error < 1e-9
    assert 0.5 < default.coverage < 1.0  # the guess misses part of the true support; the amplitude error says so
    assert default.amplitude_error > 0.005


@pytest.mark.parametrize("side", ["object", "reference", "smoother"])
def test_every_shift_side_aligns_a_shifted_copy(crystal, side):
    c = compare_objects(shift_object(crystal, (0.5, 0.0, -0.5)), crystal, rules=ComparisonRules(shift_side=side))
    np.testing.assert_allclose(c.shift, (-0.5, 0.0, 0.5), atol=0.1)
    assert c.phase_error < 0.02 and c.amplitude_error < 0.01


def test_agreement_between_two_objects(crystal):
    support = np.abs(crystal) > 0.1 * np.abs(crystal).max()
    core = scipy.ndimage.binary_erosion(support, iterations=2)
    inner = crystal * core  # the same object without its outer two layers
    c = compare_objects(inner, crystal, rules=ComparisonRules(allow_twin=False, subpixel=False))
    assert np.all(c.shift == 0)
    expected = core.sum() / support.sum()
    assert c.overlap == pytest.approx(expected) and c.coverage == pytest.approx(expected)
    assert c.phase_error < 1e-9  # the same phase where both are
    noisy = crystal * np.exp(0.2j * np.random.default_rng(0).normal(size=crystal.shape))
    assert 0.15 < compare_objects(noisy, crystal).phase_error < 0.25


def test_compare_with_truth_uses_the_same_rules(crystal):
    obj = twin(shift_object(crystal, (1.0, 0.0, -2.0)))
    a = compare_with_truth(obj, np.abs(crystal), np.angle(crystal))
    b = compare_objects(obj, crystal)
    assert a.alignment.twinned == b.twinned and a.comparison.overlap == b.overlap
    assert a.amplitude_error == pytest.approx(b.amplitude_error, abs=1e-12)
    assert a.phase_error == pytest.approx(b.phase_error, abs=1e-9)


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        compare_objects(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        compare_objects(np.full((4, 4), np.nan), np.ones((4, 4)))
    with pytest.raises(ValueError, match="zero everywhere"):
        compare_objects(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="shift_side"):
        ComparisonRules(shift_side="left")
    with pytest.raises(ValueError, match="phase_region"):
        ComparisonRules(phase_region="all")
