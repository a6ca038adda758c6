"""cdiplatform.physics.resample: truncated-DCT resampling and the oversampling estimate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from cdiplatform.physics.fft import diffraction_intensity
from cdiplatform.physics.resample import dct_resample, oversampling_ratio, resample_matrix


@pytest.mark.parametrize("shape_in, shape_out", [((20, 24), (8, 10)), ((9, 16), (12, 16)), ((7,), (7,))])
def test_plain_dct_resample_is_truncated_dct(shape_in, shape_out):
    x = np.random.default_rng(0).random((3,) + shape_in)
    axes = tuple(range(1, 1 + len(shape_in)))
    coeffs = scipy.fft.dctn(x, axes=axes, norm="ortho")
    expected = scipy.fft.idctn(coeffs, s=shape_out, axes=axes, norm="ortho")
    expected *= np.sqrt(np.prod(shape_out) / np.prod(shape_in))
    np.testing.assert_allclose(dct_resample(x, shape_out), expected, atol=1e-12)


def test_constant_stays_constant_and_sum_scales():
    x = np.full((40, 50), 3.0)
    y = dct_resample(x, (16, 20), centre=(20, 25))
    np.testing.assert_allclose(y, 3.0, atol=1e-12)
    assert y.sum() == pytest.approx(x.sum() * 16 / 40 * 20 / 50)


@pytest.mark.parametrize("n_in, n_out", [(200, 32), (104, 32), (64, 32), (20, 32)])
def test_centre_lands_on_half_size(n_in, n_out):
    """A symmetric peak at input N//2 lands, symmetric, on output n//2."""
    i = np.arange(n_in)
    peak = np.exp(-0.5 * ((i - n_in // 2) / (n_in / 12)) ** 2)
    y = dct_resample(peak, (n_out,), centre=(n_in // 2,))
    c = n_out // 2
    assert int(np.argmax(y)) == c
    np.testing.assert_allclose(y[c - 3:c], y[c + 3:c:-1], rtol=1e-6)  # symmetric about c
    plain = dct_resample(peak, (n_out,))
    if n_in != n_out:
        assert not np.allclose(plain[c - 3:c], plain[c + 3:c:-1], rtol=1e-3)  # the half-sample offset


def test_resample_matrix_identity():
    np.testing.assert_allclose(resample_matrix(12, 12), np.eye(12), atol=1e-12)


def test_complex_rejected():
    with pytest.raises(ValueError, match="real"):
        dct_resample(np.ones(4, complex), (2,))


@pytest.mark.parametrize("n, widths", [(64, (8, 16, 21)), (48, (12, 6, 16))])
def test_oversampling_of_boxes(n, widths):
    obj = np.zeros((n, n, n))
    starts = [n // 2 - w // 2 for w in widths]
    obj[tuple(slice(s, s + w) for s, w in zip(starts, widths))] = 1.0
    intensity = diffraction_intensity(obj)
    np.testing.assert_allclose(oversampling_ratio(intensity), [n / w for w in widths], rtol=1e-9)
    noisy = np.random.default_rng(1).poisson(intensity / intensity.max() * 1e5).astype(float)
    noisy[noisy <= 2] = 0
    np.testing.assert_allclose(oversampling_ratio(noisy), [n / w for w in widths], rtol=0.1)


def test_oversampling_batched_2d():
    n = 32
    batch = np.zeros((2, n, n))
    batch[0, 12:20, 12:20] = 1  # 8 wide
    batch[1, 8:24, 14:18] = 1  # 16 x 4
    intensity = diffraction_intensity(batch, ndim=2)
    np.testing.assert_allclose(oversampling_ratio(intensity, ndim=2), [[4, 4], [2, 8]])
