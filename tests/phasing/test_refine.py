import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from cdiplatform.phasing.forward import FarFieldMagnitude, amplitude_loss, far_field_magnitude, poisson_loss
from cdiplatform.phasing.refine import refine
from cdiplatform.phasing.refine_settings import RefineSettings, RefineShrinkWrap
from cdiplatform.physics.fft import far_field
from cdiplatform.physics.metrics import chi_square, compare_with_truth, poisson_llk


def perturbed(amp, phase, rng, *, phase_rms=0.4, amplitude_rms=0.05):
    """The truth with Gaussian noise per voxel: ``phase_rms`` rad in phase, ``amplitude_rms`` relative in amplitude."""
    noisy_amp = amp * (1 + amplitude_rms * rng.normal(size=amp.shape))
    return (noisy_amp * np.exp(1j * (phase + phase_rms * rng.normal(size=amp.shape)))).astype(np.complex64)


def loose_support(amp):
    """The truth's support (amplitude above 5% of the maximum), dilated by one voxel."""
    return np.stack([binary_dilation(a > 0.05 * a.max(), iterations=1) for a in amp])


# -- the forward model ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 5, 6), (2, 4, 5, 3)])
def test_analytic_backward_passes_gradcheck(shape):
    gen = torch.Generator().manual_seed(0)
    obj = torch.randn(shape, dtype=torch.complex128, generator=gen, requires_grad=True)
    support = (torch.rand(shape, generator=gen, dtype=torch.float64) > 0.3).double()
    assert torch.autograd.gradcheck(lambda o: FarFieldMagnitude.apply(o, support, len(shape) - 1), (obj,))


def test_magnitude_and_gradient_match_eager_autograd_of_the_platform_far_field():
    gen = torch.Generator().manual_seed(1)
    obj = torch.randn(3, 8, 8, 8, dtype=torch.complex128, generator=gen)
    support = torch.rand(3, 8, 8, 8, generator=gen) > 0.5
    target = torch.rand(3, 8, 8, 8, generator=gen, dtype=torch.float64)
    dims = (1, 2, 3)

    a = obj.clone().requires_grad_(True)  # centred layout, eager autograd through torch.fft
    eager = far_field(a * support, ndim=3).abs()
    ((eager - target) ** 3).sum().backward()

    b = torch.fft.ifftshift(obj, dim=dims).requires_grad_(True)  # unshifted layout, analytic backward
    mag = torch.fft.fftshift(far_field_magnitude(b, torch.fft.ifftshift(support, dim=dims), ndim=3), dim=dims)
    ((mag - target) ** 3).sum().backward()

    torch.testing.assert_close(mag, eager.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.fft.fftshift(b.grad, dim=dims), a.grad, rtol=1e-10, atol=1e-12)


# -- the losses and their closed-form scale --------------------------------------------------------


def _loss_at(kind, mag, amp, weight, s):
    """The loss at an explicit scale ``s`` of the intensity-like quantity (a tensor), as written in the docs."""
    w = weight
    if kind == "amplitude":
        return (w * (s * mag - amp) ** 2).sum() / (w * amp**2).sum()
    ic, i = s * mag**2, amp**2
    dev = ic - i + torch.where(i > 0, i * torch.log(i.clamp_min(1e-300) / ic), 0.0)
    return (w * dev).sum() / w.sum()


@pytest.mark.parametrize("kind", ["amplitude", "poisson"])
def test_closed_form_scale_is_the_exact_minimizer(kind):
    gen = torch.Generator().manual_seed(2)
    mag = torch.rand(1, 6, 6, dtype=torch.float64, generator=gen) * 3.0
    amp = torch.rand(1, 6, 6, dtype=torch.float64, generator=gen) * 50.0
    amp[0, 0, :3] = 0.0  # zero counts
    weight = (torch.rand(1, 6, 6, generator=gen) > 0.2).double()
    fn = amplitude_loss if kind == "amplitude" else poisson_loss
    value = fn(mag, amp, ndim=2, weight=weight)
    s_best = value.scale if kind == "amplitude" else value.scale**2  # the scale of |F| or of |F|^2
    s = s_best.clone().requires_grad_(True)
    at_best = _loss_at(kind, mag[0], amp[0], weight[0], s[0])
    (ds,) = torch.autograd.grad(at_best, s)
    assert abs(float(ds[0])) < 1e-10 * max(1.0, float(at_best.detach()))
    torch.testing.assert_close(value.loss[0], at_best.detach(), rtol=1e-12, atol=0)
    # a brute-force scan of the scale finds nothing lower
    grid = float(s_best[0]) * torch.linspace(0.5, 1.5, 2001, dtype=torch.float64)
    scanned = torch.stack([_loss_at(kind, mag[0], amp[0], weight[0], g) for g in grid])
    assert float(scanned.min()) >= float(value.loss[0]) * (1 - 1e-12)
    assert abs(float(grid[scanned.argmin()]) / float(s_best[0]) - 1) <= 1e-3


def test_losses_are_the_platform_metrics_of_the_fitted_object():
    rng = np.random.default_rng(3)
    obj = (rng.normal(size=(2, 8, 8)) + 1j * rng.normal(size=(2, 8, 8))) * (rng.random((2, 8, 8)) > 0.5)
    amp = np.abs(far_field(obj * 1.7 + 0.3 * rng.normal(size=obj.shape), ndim=2))
    measured = rng.random(amp.shape) > 0.1
    mag = torch.fft.fftshift(torch.from_numpy(np.abs(np.fft.fftn(obj, axes=(1, 2), norm="ortho"))), dim=(1, 2))
    w = torch.from_numpy(measured.astype(np.float64))
    amp_t = torch.from_numpy(amp)
    a = amplitude_loss(mag, amp_t, ndim=2, weight=w)
    p = poisson_loss(mag, amp_t, ndim=2, weight=w)
    np.testing.assert_allclose(a.loss, chi_square(obj, amp, ndim=2, measured=measured, fit_scale=True), rtol=1e-10)
    np.testing.assert_allclose(p.loss, poisson_llk(obj, amp**2, ndim=2, measured=measured, fit_scale=True),
                               rtol=1e-10)
    # the scale turns the object into the platform's: its metrics without a fit are the losses
    fitted = obj * a.scale.numpy()[:, None, None]
    np.testing.assert_allclose(chi_square(fitted, amp, ndim=2, measured=measured), a.loss, rtol=1e-10)
    np.testing.assert_allclose(chi_square(obj * p.scale.numpy()[:, None, None], amp, ndim=2, measured=measured),
                               p.chi, rtol=1e-10)


# -- refinement -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    # the defaults but for the number of steps (at this size the loss still falls by more than the
    # tolerance long after the errors have settled: 200 steps give the errors of 800)
    [RefineSettings(max_iterations=200), RefineSettings(parametrization="complex"),
     RefineSettings(loss="poisson", max_iterations=200)],
    ids=["default", "complex", "poisson"],
)
def test_refinement_recovers_a_perturbed_crystal(crystals_3d, settings):
    amp, phase, magnitude = crystals_3d
    rng = np.random.default_rng(4)
    start = perturbed(amp, phase, rng)
    before = [compare_with_truth(start[i], amp[i], phase[i]) for i in range(len(amp))]
    res = refine(magnitude * 30.0, start, loose_support(amp), settings=settings)  # any data scale
    after = [compare_with_truth(res.obj[i], amp[i], phase[i]) for i in range(len(amp))]
    assert all(b.phase_error > 0.3 for b in before)
    assert all(a.phase_error < 0.1 and a.amplitude_error < 0.01 for a in after), [
        (round(a.phase_error, 3), round(a.amplitude_error, 4)) for a in after
    ]
    # the reported chi is the platform's, of the object on the data's scale
    np.testing.assert_allclose(res.chi, chi_square(res.obj, magnitude * 30.0, ndim=3), rtol=1e-6)
    assert np.all(res.chi < 1e-3)
    assert res.obj.dtype == np.complex64 and res.support.dtype == bool and res.obj.shape == amp.shape
    for s in range(len(amp)):
        assert len(res.loss_history[s]) == res.iterations[s] + 1
        t = res.time_history[s]
        assert t[0, 0] == 0 and t[-1, 0] == res.iterations[s] and np.all(np.diff(t[:, 1]) >= 0)


@pytest.mark.parametrize("parametrization", ["complex", "polar"])
def test_adam_reduces_the_error_of_a_perturbed_crystal(crystals_3d, parametrization):
    amp, phase, magnitude = crystals_3d
    start = perturbed(amp, phase, np.random.default_rng(4))
    settings = RefineSettings(optimizer="adam", parametrization=parametrization, max_iterations=300)
    res = refine(magnitude, start, loose_support(amp), settings=settings)
    after = [compare_with_truth(res.obj[i], amp[i], phase[i]) for i in range(len(amp))]
    assert all(a.phase_error < 0.15 and a.amplitude_error < 0.01 for a in after), [
        (round(a.phase_error, 3), round(a.amplitude_error, 4)) for a in after
    ]
    assert np.all(np.diff(res.loss_history[0][::50]) < 0)  # the loss falls


def test_refinement_on_a_2d_object_with_a_mask(make_crystal):
    rng = np.random.default_rng(5)
    amp, phase = map(np.stack, zip(*[make_crystal(rng, 16, ndim=2) for _ in range(2)]))
    magnitude = np.abs(far_field(amp * np.exp(1j * phase), ndim=2)).astype(np.float32)
    measured = np.ones(magnitude.shape, dtype=bool)
    measured[:, 15:17, 15:17] = False  # a beam stop
    garbage = magnitude.copy()
    garbage[~measured] = 1e3
    start = perturbed(amp, phase, rng)
    settings = RefineSettings(max_iterations=300)
    res = refine(garbage, start, loose_support(amp), settings=settings, measured=measured)
    clean = refine(magnitude, start, loose_support(amp), settings=settings, measured=measured)
    # what the detector reported at unmeasured pixels changes nothing, to the bit
    np.testing.assert_array_equal(res.obj, clean.obj)
    errs = [compare_with_truth(res.obj[i], amp[i], phase[i]) for i in range(2)]
    assert all(e.phase_error < 0.2 for e in errs), [e.phase_error for e in errs]  # from 0.4 rad


@pytest.mark.parametrize(
    "optimizer, parametrization, tolerance", [("adam", "polar", 0.2), ("lbfgs", "complex", 2e-3), ("lbfgs", "polar", 2e-2)]
)
def test_a_scans_result_does_not_depend_on_its_batch(crystals_3d, optimizer, parametrization, tolerance):
    amp, phase, magnitude = crystals_3d
    rng = np.random.default_rng(6)
    start = perturbed(amp, phase, rng, phase_rms=0.6)
    support = loose_support(amp)
    # shrink-wrap at a short period and a loose tolerance: scans stop and update their supports at
    # different iterations, so that the batch shrinks while the others go on
    settings = RefineSettings(optimizer=optimizer, parametrization=parametrization, max_iterations=150,
                              tolerance=tolerance, window=10,
                              shrink_wrap=RefineShrinkWrap(threshold=0.1, period=15, min_improvement=0.3))
    whole = refine(magnitude, start, support, settings=settings)
    assert len(set(whole.iterations.tolist())) > 1, whole.iterations  # the scans did stop apart
    assert not np.array_equal(whole.support, support)  # and shrink-wrap did act
    for s in range(len(amp)):
        alone = refine(magnitude[s : s + 1], start[s : s + 1], support[s : s + 1], settings=settings)
        # bitwise: every operation on a scan (FFT, per-scan sums, elementwise updates) is the same
        # arithmetic whatever the batch holds (pocketfft/MKL transform each batch item alike on CPU)
        np.testing.assert_array_equal(alone.obj[0], whole.obj[s])
        np.testing.assert_array_equal(alone.support[0], whole.support[s])
        np.testing.assert_array_equal(alone.loss_history[0], whole.loss_history[s])
        assert alone.iterations[0] == whole.iterations[s] and alone.status[0] == whole.status[s]


def test_shrink_wrap_waits_for_the_loss_to_improve(crystals_3d):
    amp, phase, magnitude = crystals_3d
    start = perturbed(amp[:1], phase[:1], np.random.default_rng(7))
    support = loose_support(amp[:1])
    never = RefineSettings(max_iterations=60, tolerance=0,
                           shrink_wrap=RefineShrinkWrap(period=20, min_improvement=0.999999))
    res = refine(magnitude[:1], start, support, settings=never)
    np.testing.assert_array_equal(res.support, support)
    often = RefineSettings(max_iterations=60, tolerance=0, shrink_wrap=RefineShrinkWrap(period=20, threshold=0.1,
                                                                                        min_improvement=0.0))
    res = refine(magnitude[:1], start, support, settings=often)
    assert not np.array_equal(res.support, support)
    assert res.support.sum() < support.sum()  # the loose support shrinks towards the crystal


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
        ({"loss": "l1"}, "unknown refinement loss 'l1'"),
        ({"parametrization": "cartesian"}, "unknown parametrization"),
        ({"learning_rate": -0.1}, "learning_rate must be positive"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"tolerance": -1e-3}, "tolerance"),
        ({"window": 0}, "window"),
        ({"betas": (0.9, 1.2)}, "betas"),
        ({"record_every": -1}, "record_every"),
        ({"shrink_wrap": 0.1}, "RefineShrinkWrap"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        RefineSettings(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"threshold": 1.5}, "threshold"), ({"sigma": 0}, "sigma"), ({"period": 0}, "period"),
     ({"min_improvement": 1.0}, "min_improvement")],
)
def test_bad_shrink_wrap_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefineShrinkWrap(**kwargs)


def test_bad_inputs_are_refused(crystals_3d):
    amp, phase, magnitude = crystals_3d
    start = (amp * np.exp(1j * phase)).astype(np.complex64)
    support = amp > 0
    with pytest.raises(ValueError, match="start of shape"):
        refine(magnitude, start[:2], support)
    with pytest.raises(ValueError, match="support of shape"):
        refine(magnitude, start, support[:, :8])
    with pytest.raises(ValueError, match="negative"):
        refine(-magnitude, start, support)
    bad = magnitude.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        refine(bad, start, support)
    with pytest.raises(ValueError, match=r"zero over its whole support in scan\(s\) \[2\]"):
        refine(magnitude, start * (np.arange(3) != 2)[:, None, None, None], support)
    with pytest.raises(ValueError, match="2D or 3D"):
        refine(magnitude[0, 0], start[0, 0], support[0, 0])
