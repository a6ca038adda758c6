import numpy as np
import pytest
import torch

from cdiplatform.phasing import PhasingSettings, ShrinkWrap, phase_retrieval, resolve_blur
from cdiplatform.phasing.blur import (
    CPU_SEPARABLE_MAX_TAPS,
    GaussianBlur,
    gaussian_taps,
    periodic_gaussian_kernel,
)
from cdiplatform.physics.fft import far_field


def _smooth_magnitude(rng, shape, ndim):
    """|rho| of a smooth blob plus noise, like an object between iterations."""
    x = torch.from_numpy(rng.random(shape, dtype=np.float32))
    grid = shape[-ndim:]
    axes = np.meshgrid(*[np.arange(n) - n // 2 for n in grid], indexing="ij")
    blob = np.exp(-sum((a / (0.2 * n)) ** 2 for a, n in zip(axes, grid)))
    blob = np.fft.ifftshift(blob).astype(np.float32)
    return x * 0.3 + torch.from_numpy(blob)


@pytest.mark.parametrize(
    "shape, ndim, sigma",
    [((2, 1, 12, 10, 9), 3, 1.0), ((3, 16, 15), 2, 1.0), ((1, 2, 8, 6, 7), 3, 2.5), ((2, 5, 4), 2, 0.7)],
)
def test_separable_with_every_tap_is_the_fft_blur(shape, ndim, sigma):
    x = _smooth_magnitude(np.random.default_rng(0), shape, ndim)
    fft = GaussianBlur(shape, ndim=ndim, method="fft", device="cpu")(x.clone(), sigma)
    sep = GaussianBlur(shape, ndim=ndim, method="separable", device="cpu", tolerance=0.0)(x.clone(), sigma)
    np.testing.assert_allclose(sep.numpy(), fft.numpy(), rtol=0, atol=2e-6 * float(fft.max()))


def test_the_fft_blur_is_a_periodic_gaussian_convolution():
    """Both blurs against a direct sum over the periodic kernel, in float64 (the oracle)."""
    grid = (9, 8)
    x = torch.zeros((1,) + grid)
    x[0, 2, 7] = 1.0
    k = [periodic_gaussian_kernel(n, 1.3) for n in grid]
    ref = np.array([[k[0][(i - 2) % 9] * k[1][(j - 7) % 8] for j in range(8)] for i in range(9)])
    for method in ("fft", "separable"):
        out = GaussianBlur(x.shape, ndim=2, method=method, device="cpu", tolerance=0.0)(x.clone(), 1.3)
        np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-6)


def test_taps_of_the_kernel():
    taps = gaussian_taps(64, 1.0)
    offsets = [m for m, _ in taps]
    assert offsets == [0, 1, 2, 3, 61, 62, 63]  # 7 taps: +-3 pixels
    weights = dict(taps)
    assert all(abs(weights[m] - weights[64 - m]) < 1e-12 for m in (1, 2, 3))
    assert abs(sum(w for _, w in taps) - 1.0) < 1e-3
    assert len(gaussian_taps(10, 1.0, tolerance=0.0)) == 10
    assert len(gaussian_taps(4, 3.0)) == 4  # a small axis: every (periodic) offset at most once
    assert len(gaussian_taps(64, 2.0)) > len(taps)


def test_default_taps_give_the_same_support_but_for_a_few_voxels():
    shape, ndim = (2, 2, 32, 32, 24), 3
    x = _smooth_magnitude(np.random.default_rng(1), shape, ndim)
    dims = (-3, -2, -1)
    sup = {}
    for method in ("fft", "separable"):
        b = GaussianBlur(shape, ndim=ndim, method=method, device="cpu")(x.clone(), 1.0)
        sup[method] = b >= 0.5 * b.amax(dim=dims, keepdim=True)
        if method == "fft":
            ref = b.clone()
        else:
            assert float((b - ref).abs().max()) < 2e-3 * float(ref.max())
    differ = int((sup["fft"] != sup["separable"]).sum())
    assert 0 < int(sup["fft"].sum()) < x.numel() / 2
    assert differ <= 1e-3 * int(sup["fft"].sum()), differ


def test_rule_is_a_fixed_function_of_device_grid_and_sigma():
    assert resolve_blur("cpu", (64, 64, 64)) == "separable"
    assert resolve_blur(torch.device("cpu"), (256, 256, 210), sigma=1.0) == "separable"
    assert resolve_blur("cpu", (64, 64, 64), sigma=3.0) == "fft"  # 23 taps an axis
    assert resolve_blur("cuda", (64, 64, 64)) == "fft"  # not measured on a GPU yet
    assert resolve_blur("cuda", (64, 64), method="separable") == "separable"
    assert resolve_blur("cpu", (64, 64, 64), method="fft") == "fft"
    taps = sum(len(gaussian_taps(64, 2.0)) for _ in range(2))
    assert (resolve_blur("cpu", (64, 64), sigma=2.0) == "separable") == (taps <= CPU_SEPARABLE_MAX_TAPS)
    with pytest.raises(ValueError, match="unknown blur method 'gpu'"):
        resolve_blur("cpu", (8, 8), method="gpu")
    with pytest.raises(ValueError, match="shrink-wrap blur must be one of"):
        ShrinkWrap(blur="direct")


@pytest.mark.parametrize("blur", ["fft", "separable", "auto"])
def test_the_run_reports_its_blur_and_converges(make_object, blur):
    rng = np.random.default_rng(4)
    obj = np.stack([make_object(rng, 8, 16, ndim=3) for _ in range(2)]).astype(np.complex64)
    amp = np.abs(far_field(obj, ndim=3)).astype(np.float32)
    settings = PhasingSettings(
        algorithm="2*(20*ER+80*HIO)+20*ER", shrink_wrap=ShrinkWrap(blur=blur), n_starts=2, average_last=5
    )
    res = phase_retrieval(amp, ndim=3, settings=settings, seed=0)
    assert res.blur == (resolve_blur("cpu", (16, 16, 16)) if blur == "auto" else blur)
    assert np.all(res.error < 5e-3), res.error
    plain = phase_retrieval(amp, ndim=3, settings=PhasingSettings(algorithm="5*ER", shrink_wrap=None), seed=0)
    assert plain.blur is None
