import numpy as np
import pytest
import torch

from cdiplatform.phasing import PhasingSettings, ShrinkWrap, TwinRemoval, phase_retrieval, recipe
from cdiplatform.phasing.engine import gaussian_transfer
from cdiplatform.physics.fft import far_field
from cdiplatform.physics.metrics import chi_square, compare_with_truth


@pytest.mark.parametrize("algorithm", ["3*(20*ER+180*HIO)+20*ER", "2*(30*ER+150*RAAR)+40*ER"])
def test_converges_on_known_objects(objects_2d, algorithm):
    obj, amp = objects_2d
    settings = recipe("paper_2d", algorithm=algorithm, n_starts=2, average_last=10)
    res = phase_retrieval(amp, ndim=2, settings=settings, seed=3)
    assert res.obj.shape == obj.shape and res.support.shape == obj.shape
    assert np.all(res.error < 2e-3), res.error
    errs = [compare_with_truth(res.obj[i], np.abs(obj[i]), np.angle(obj[i])) for i in range(len(obj))]
    good = sum(e.amplitude_error < 0.05 and e.phase_error < 0.3 for e in errs)
    assert good >= 7, [(round(e.amplitude_error, 3), round(e.phase_error, 3)) for e in errs]
    # the error the engine reports is the metrics' chi-square of what it returns
    np.testing.assert_allclose(res.error, chi_square(res.obj, amp, ndim=2), rtol=1e-3, atol=1e-7)


def test_error_reduction_never_rises_with_fixed_support(objects_2d):
    obj, amp = objects_2d
    support = np.abs(obj) > 0
    settings = PhasingSettings(
        algorithm="60*ER", shrink_wrap=None, twin=None, record_every=1, n_starts=3, keep_best=1
    )
    res = phase_retrieval(amp, ndim=2, settings=settings, support=support, seed=5)
    hist = np.stack([e for _, _, e in res.history])  # (iterations, S, K)
    assert hist.shape == (60, len(obj), 3)
    rises = np.diff(hist, axis=0)
    assert np.all(rises <= 1e-6 * hist[:-1] + 1e-9), rises.max()
    assert np.all(hist[-1] < hist[0])


def test_hio_with_exact_support_recovers_object(make_object):
    rng = np.random.default_rng(0)
    obj = make_object(rng, 12, 24)[None].astype(np.complex64)
    amp = np.abs(far_field(obj, ndim=2)).astype(np.float32)
    settings = PhasingSettings(algorithm="200*HIO+50*ER", shrink_wrap=None, twin=None, n_starts=4)
    res = phase_retrieval(amp, ndim=2, settings=settings, support=np.abs(obj[0]) > 0, seed=1)
    cmp = compare_with_truth(res.obj[0], np.abs(obj[0]), np.angle(obj[0]))
    assert cmp.amplitude_error < 0.02 and cmp.phase_error < 0.1


def test_3d_small(make_object):
    rng = np.random.default_rng(2)
    obj = np.stack([make_object(rng, 8, 16, ndim=3) for _ in range(2)]).astype(np.complex64)
    amp = np.abs(far_field(obj, ndim=3)).astype(np.float32)
    settings = PhasingSettings(algorithm="2*(20*ER+80*HIO)+20*ER", n_starts=2, average_last=5)
    res = phase_retrieval(torch.from_numpy(amp), ndim=3, settings=settings, seed=0)
    assert res.obj.shape == (2, 16, 16, 16)
    assert np.all(res.error < 5e-3), res.error


def test_results_do_not_depend_on_batch(objects_2d):
    obj, amp = objects_2d
    settings = PhasingSettings(algorithm="10*ER+20*HIO", n_starts=2)
    rngs = lambda idx: [np.random.default_rng([9, i]) for i in idx]  # noqa: E731
    whole = phase_retrieval(amp[:4], ndim=2, settings=settings, rngs=rngs(range(4)))
    part = phase_retrieval(amp[2:4], ndim=2, settings=settings, rngs=rngs(range(2, 4)))
    np.testing.assert_allclose(whole.obj[2:], part.obj, atol=1e-4)
    np.testing.assert_array_equal(whole.best[2:], part.best)


def test_selection_uses_the_reciprocal_error_only(objects_2d):
    obj, amp = objects_2d
    settings = PhasingSettings(algorithm="10*ER+30*HIO+10*ER", n_starts=4, keep_best=2)
    res = phase_retrieval(amp[:3], ndim=2, settings=settings, seed=2)
    assert res.best.shape == (3, 2)
    for s in range(3):
        assert res.start_errors[s, res.best[s, 0]] == res.start_errors[s].min()
        assert res.start_errors[s, res.best[s, 1]] <= np.sort(res.start_errors[s])[1]


def test_mask_keeps_unmeasured_pixels_free(objects_2d):
    obj, amp = objects_2d
    measured = np.ones(amp.shape, dtype=bool)
    measured[:, 14:18, 14:18] = False  # a beamstop over the centre
    corrupted = amp.copy()
    corrupted[~measured] = 0.0  # what the detector "saw" there is meaningless
    settings = recipe("paper_2d", n_starts=2, average_last=10)
    res = phase_retrieval(corrupted[:4], ndim=2, settings=settings, measured=measured[:4], seed=4)
    chi = chi_square(res.obj, amp[:4], ndim=2, measured=measured[:4])
    assert np.all(chi < 5e-3), chi
    # the far field in the unmeasured pixels is recovered, not forced to the corrupted zeros
    F = np.abs(far_field(res.obj, ndim=2))
    assert np.all(F[:, 15, 15] > 0.3 * amp[:4, 15, 15])


def test_positivity_on_a_real_object(make_object):
    rng = np.random.default_rng(3)
    obj = np.abs(make_object(rng, 12, 24))[None].astype(np.complex64)
    amp = np.abs(far_field(obj, ndim=2)).astype(np.float32)
    settings = PhasingSettings(algorithm="2*(20*ER+80*HIO)+20*ER", positivity=True, n_starts=2)
    res = phase_retrieval(amp, ndim=2, settings=settings, seed=0)
    assert res.error[0] < 1e-3
    assert np.abs(res.obj[0].imag).max() < 0.05 * np.abs(res.obj[0]).max()


def test_shrink_wrap_schedule_and_transfer():
    sw = ShrinkWrap(threshold=0.2, sigma=3.0, sigma_final=1.0, period=2, start=1, stop=9)
    its = sw.iterations(100)
    assert its == [1, 3, 5, 7]
    sig = [sw.sigma_at(k, len(its)) for k in range(len(its))]
    assert sig[0] == 3.0 and abs(sig[-1] - 1.0) < 1e-12 and all(a > b for a, b in zip(sig, sig[1:]))
    g = gaussian_transfer((16, 16), 1.5, device="cpu")
    assert g.shape == (16, 9) and float(g[0, 0]) == 1.0
    # the blur by the transfer function equals a direct Gaussian convolution (periodic)
    x = torch.zeros(16, 16)
    x[5, 7] = 1.0
    blurred = torch.fft.irfftn(torch.fft.rfftn(x) * g, s=(16, 16))
    yy, xx = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    d2 = ((yy - 5 + 8) % 16 - 8) ** 2 + ((xx - 7 + 8) % 16 - 8) ** 2
    ref = np.exp(-d2 / (2 * 1.5**2))
    np.testing.assert_allclose(blurred.numpy(), ref / ref.sum(), atol=2e-5)


def test_twin_removal_keeps_one_quadrant():
    from cdiplatform.phasing.engine import _twin_keep

    keep = np.fft.fftshift(_twin_keep((8, 6), (0, 1), "cpu").numpy())
    assert keep[:4, 3:].all() and not keep[4:, :].any() and not keep[:, :3].any()
    with pytest.raises(ValueError, match="twin halves"):
        TwinRemoval(halves=(0, 2))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((16, 16), np.float32), "3 dimensions"),
        (np.ones((2, 16, 16, 16), np.float32), "3 dimensions"),
        (np.ones((2, 3, 3), np.float32), "too small"),
        (
            np.where(np.arange(2 * 16 * 16).reshape(2, 16, 16) == 300, np.nan, 1.0).astype(np.float32),
            r"scan\(s\) \[1\]",
        ),
        (-np.ones((1, 16, 16), np.float32), "negative"),
    ],
)
def test_bad_data_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        phase_retrieval(bad, ndim=2, settings=PhasingSettings(algorithm="ER"))


def test_bad_arguments_are_refused(objects_2d):
    _, amp = objects_2d
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        phase_retrieval(amp, ndim=1)
    with pytest.raises(ValueError, match="random generators"):
        phase_retrieval(amp, ndim=2, rngs=[np.random.default_rng(0)])
    with pytest.raises(ValueError, match="measured mask"):
        phase_retrieval(amp, ndim=2, measured=np.ones((2, 32, 32), bool))
    with pytest.raises(ValueError, match="unknown phasing recipe"):
        recipe("nope")


def test_autocorrelation_support_and_sigma_schedule(objects_2d):
    obj, amp = objects_2d
    from cdiplatform.phasing.retrieval import initial_support

    settings = recipe(
        "paper_2d",
        initial_support="autocorrelation",
        shrink_wrap=ShrinkWrap(threshold=0.1, sigma=2.0, sigma_final=1.0),
        n_starts=2,
        average_last=10,
    )
    sup = initial_support(torch.from_numpy(amp), settings, ndim=2).numpy()
    true = np.abs(obj) > 0
    # the autocorrelation's support (centred) holds nearly all of the object's and is larger
    inside = (sup & true).sum(axis=(1, 2)) / true.sum(axis=(1, 2))
    assert np.all(inside > 0.98), inside
    assert np.all(sup.sum(axis=(1, 2)) > 1.5 * true.sum(axis=(1, 2)))
    res = phase_retrieval(amp[:4], ndim=2, settings=settings, seed=8)
    assert np.all(res.error < 2e-3), res.error
