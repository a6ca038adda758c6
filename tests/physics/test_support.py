import numpy as np
import pytest
import torch

from cdiplatform.physics.support import support_components, support_from_amplitude


def test_threshold_then_dilate_per_scan():
    a = np.zeros((2, 9, 9))
    a[0, 4, 4] = 1.0
    a[0, 4, 5] = 0.05  # below 0.1 of the maximum
    a[1, 2, 2] = 100.0  # another scale: thresholds are per scan
    a[1, 2, 3] = 20.0
    s = support_from_amplitude(a, threshold=0.1, dilation=0)
    assert s.sum(axis=(1, 2)).tolist() == [1, 2]
    d = support_from_amplitude(a, threshold=0.1, dilation=1)
    assert d[0].sum() == 5 and d[0, 3, 4] and not d[0, 3, 3]  # the face-connected cross
    assert support_from_amplitude(a, threshold=0.1, dilation=2)[0].sum() == 13  # a diamond of radius 2
    assert not d[1, 6, 6] and d[1, 1, 3]
    np.testing.assert_array_equal(support_from_amplitude(torch.from_numpy(a) * np.exp(1j), dilation=1), d)


def test_zero_scan_gives_an_empty_support_and_bad_parameters_are_refused():
    assert not support_from_amplitude(np.zeros((1, 4, 4, 4)), dilation=2).any()
    with pytest.raises(ValueError, match="threshold"):
        support_from_amplitude(np.ones((1, 4, 4)), threshold=1.0)
    with pytest.raises(ValueError, match="dilation"):
        support_from_amplitude(np.ones((1, 4, 4)), dilation=-1)
    with pytest.raises(ValueError, match="NaN"):
        support_from_amplitude(np.full((1, 4, 4), np.nan))


def test_components():
    s = np.zeros((10, 10, 10), bool)
    s[2:6, 2:6, 2:6] = True  # 64 voxels
    one = support_components(s)
    assert (one.voxels, one.n_components, one.largest_share) == (64, 1, 1.0)
    assert one.fraction == pytest.approx(0.064)
    s[8, 8, 8] = True  # a speck: below 5% of the support, not a piece that counts
    speck = support_components(s)
    assert speck.n_components == 1 and speck.largest_share == pytest.approx(64 / 65)
    s[7:10, 0:3, 7:10] = True  # 27 voxels apart
    two = support_components(s)
    assert two.n_components == 2 and two.largest_share == pytest.approx(64 / 92)
    diagonal = np.zeros((4, 4), bool)
    diagonal[0, 0] = diagonal[1, 1] = True  # corners touch: one piece
    assert support_components(diagonal).n_components == 1
    empty = support_components(np.zeros((4, 4), bool))
    assert (empty.voxels, empty.n_components, empty.largest_share) == (0, 0, 0.0)
