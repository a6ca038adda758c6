import numpy as np
import pytest

from cdiplatform.physics.align import shift_object, twin
from cdiplatform.physics.compare import compare_objects
from cdiplatform.physics.fft import far_field
from cdiplatform.physics.grids import zero_pad
from cdiplatform.physics.metrics import chi_square
from cdiplatform.physics.quality import QualityThresholds, quality_flag
from cdiplatform.physics.support import support_from_amplitude


@pytest.fixture
def scan(make_crystal):
    """A strained crystal on its 2x zero-padded phasing grid and its measured magnitudes."""
    truth = zero_pad(make_crystal(np.random.default_rng(31), 16, ndim=3, size=9, strain=1.5)[None], factor=2)[0]
    return truth, np.abs(far_field(truth))


def _flag(obj, truth, magnitude, **kw):
    chi = float(chi_square(obj, magnitude, fit_scale=True))
    support = support_from_amplitude(obj[None], threshold=0.1, dilation=1)[0]
    return quality_flag(chi=chi, support=support, comparison=compare_objects(obj, truth), **kw)


def test_a_good_reconstruction_is_good(scan):
    truth, magnitude = scan
    obj = 2.0 * shift_object(truth, (1.0, 0.0, -1.0)) * np.exp(0.4j)  # trivially different only
    assert _flag(obj, truth, magnitude) == ("good", "")


def test_a_known_twin_is_twin(scan):
    truth, magnitude = scan
    flag, reason = _flag(twin(shift_object(truth, (0.0, 2.0, 0.0))), truth, magnitude)
    assert flag == "twin" and "twin" in reason


def test_an_object_that_is_its_own_twin_is_not_called_twin():
    obj = np.zeros((16, 16), complex)
    obj[5:12, 5:12] = 1.0  # centro-symmetric about (8, 8), flat phase: the twin is the object
    c = compare_objects(obj, obj)
    assert abs(c.twin_margin) < 1e-9
    assert quality_flag(chi=0.0, support=np.abs(obj) > 0, comparison=c) == ("good", "")


def test_garbage_fails_with_its_reason(scan):
    truth, magnitude = scan
    rng = np.random.default_rng(0)
    garbage = rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape)
    flag, reason = _flag(garbage, truth, magnitude)
    assert flag == "failed" and reason.startswith("chi")
    # with a permissive chi, its support fails the next checks
    loose = QualityThresholds(max_chi=1e9)
    flag, reason = _flag(garbage, truth, magnitude, thresholds=loose)
    assert flag == "failed" and reason.startswith("exploded support")


@pytest.mark.parametrize("chi, make_support, reason", [
    (float("nan"), lambda s: s, "chi is not finite"),
    (0.5, lambda s: s, "chi 0.5 above 0.1"),
    (0.01, lambda s: np.zeros_like(s), "empty support"),
    (0.01, lambda s: np.ones_like(s), "exploded support"),
    (0.01, lambda s: s | np.roll(s, 16, axis=0), "support not compact ("),
])
def test_each_failure_names_its_check(scan, chi, make_support, reason):
    truth, _ = scan
    support = np.abs(truth) > 0.1 * np.abs(truth).max()
    flag, why = quality_flag(chi=chi, support=make_support(support))
    assert flag == "failed" and why.startswith(reason), why


def test_a_support_with_a_large_satellite_is_not_compact(scan):
    truth, _ = scan
    support = np.abs(truth) > 0.1 * np.abs(truth).max()
    satellite = np.zeros_like(support)
    satellite[2:5, 2:5, 2:5] = True  # 27 voxels: one significant piece too many at the default 5% share
    flag, why = quality_flag(chi=0.0, support=support | satellite,
                             thresholds=QualityThresholds(max_components=3, min_largest_share=0.99))
    assert flag == "failed" and "largest piece" in why
    assert quality_flag(chi=0.0, support=support | satellite,
                        thresholds=QualityThresholds(max_components=3, min_largest_share=0.5))[0] == "good"


@pytest.mark.parametrize("bad", [{"max_chi": 0}, {"max_support_fraction": 1.5}, {"max_components": 0},
                                 {"min_largest_share": 2.0}, {"twin_margin": -1.0}])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="quality thresholds"):
        QualityThresholds(**bad)
