import numpy as np
import pytest
import torch

from cdiplatform.phasing import PhasingSettings, phase_retrieval, recipe
from cdiplatform.phasing.retrieval import seed_support, seeded_starts
from cdiplatform.physics.metrics import compare_with_truth


def test_an_exact_seed_stays_exact_no_twin_removal_no_box(crystals_3d):
    amp, phase, magnitude = crystals_3d
    truth = (amp * np.exp(1j * phase)).astype(np.complex64)
    # default settings hold the twin removal at iteration 2 and a box support; a seed skips both
    settings = recipe("paper_2d", algorithm="10*ER", n_starts=1, average_last=0)
    assert settings.twin is not None
    res = phase_retrieval(magnitude, ndim=3, settings=settings, start=truth * 5.0, support=amp > 0, seed=0)
    assert np.all(res.error < 1e-6), res.error
    for s in range(len(amp)):
        cmp = compare_with_truth(res.obj[s], amp[s], phase[s])
        assert cmp.phase_error < 1e-3 and not cmp.alignment.twinned
    # the same through a random start's path (twin removal, box) is far from it after 10 iterations
    random = phase_retrieval(magnitude, ndim=3, settings=settings, seed=0)
    assert np.all(random.error > 100 * res.error.max())


def test_a_perturbed_seed_converges_with_its_own_support(crystals_3d):
    amp, phase, magnitude = crystals_3d
    rng = np.random.default_rng(11)
    seed = (amp * (1 + 0.05 * rng.normal(size=amp.shape)) * np.exp(1j * (phase + 0.4 * rng.normal(size=amp.shape))))
    settings = recipe("paper_2d", algorithm="20*HIO+60*ER", n_starts=1, average_last=0)
    res = phase_retrieval(magnitude, ndim=3, settings=settings, start=seed, seed=0)
    errs = [compare_with_truth(res.obj[s], amp[s], phase[s]) for s in range(len(amp))]
    assert all(e.phase_error < 0.1 and e.amplitude_error < 0.01 for e in errs), [
        (round(e.phase_error, 3), round(e.amplitude_error, 4)) for e in errs
    ]


def test_seed_support_is_the_blurred_seed_above_the_threshold(crystals_3d):
    amp, phase, magnitude = crystals_3d
    seed = (amp * np.exp(1j * phase)).astype(np.complex64)
    settings = PhasingSettings(algorithm="2*ER", shrink_wrap=None, support_threshold=0.2)
    res = phase_retrieval(magnitude, ndim=3, settings=settings, start=seed, centre=False, seed=0)
    expected = seed_support(torch.from_numpy(seed), 0.2, ndim=3).numpy()
    np.testing.assert_array_equal(res.support, expected)
    # it holds the crystal and little more
    assert np.all((expected >= (amp > 0.2)).all(axis=(1, 2, 3)))
    assert np.all(expected.sum(axis=(1, 2, 3)) < 2 * (amp > 0).sum(axis=(1, 2, 3)))


def test_seeded_starts_differ_only_by_the_stated_perturbation():
    rng = np.random.default_rng(0)
    seed = torch.from_numpy((rng.random((2, 16, 16)) * np.exp(1j * rng.normal(size=(2, 16, 16)))).astype(np.complex64))
    same = seeded_starts(seed, [np.random.default_rng(1)] * 2, 3, phase_noise=0.0, amplitude_noise=0.0)
    assert all(torch.equal(same[:, k], seed) for k in range(3))
    def gens():
        return [np.random.default_rng([5, s]) for s in range(2)]

    noisy = seeded_starts(seed, gens(), 3, phase_noise=0.3, amplitude_noise=0.05)
    again = seeded_starts(seed, gens(), 3, phase_noise=0.3, amplitude_noise=0.05)
    assert torch.equal(noisy, again)  # from each scan's generator alone
    ratio = (noisy / seed.unsqueeze(1)).numpy()
    assert abs(np.angle(ratio).std() - 0.3) < 0.02
    assert abs(np.abs(ratio).std() - 0.05) < 0.005 and abs(np.abs(ratio).mean() - 1) < 0.005
    assert not torch.equal(noisy[:, 0], noisy[:, 1])


def test_several_identical_seeded_starts_are_refused(crystals_3d):
    amp, phase, magnitude = crystals_3d
    seed = amp * np.exp(1j * phase)
    with pytest.raises(ValueError, match="would all be the seed"):
        phase_retrieval(magnitude, ndim=3, settings=PhasingSettings(algorithm="ER", n_starts=2), start=seed)
    with pytest.raises(ValueError, match="start of shape"):
        phase_retrieval(magnitude, ndim=3, settings=PhasingSettings(algorithm="ER"), start=seed[:2])
    with pytest.raises(ValueError, match=r"zero over its support in scan\(s\) \[1\]"):
        phase_retrieval(magnitude, ndim=3, settings=PhasingSettings(algorithm="ER"),
                        start=seed * (np.arange(3) != 1)[:, None, None, None], support=amp > 0)
    with pytest.raises(ValueError, match="seed noise"):
        PhasingSettings(seed_phase_noise=-0.1)


def test_perturbed_seeds_give_distinct_starts_ranked_by_chi(crystals_3d):
    amp, phase, magnitude = crystals_3d
    seed = amp * np.exp(1j * phase)
    settings = PhasingSettings(algorithm="20*ER", n_starts=3, keep_best=1, seed_phase_noise=0.5)
    res = phase_retrieval(magnitude, ndim=3, settings=settings, start=seed, seed=4)
    assert res.start_errors.shape == (3, 3)
    assert np.all(np.ptp(res.start_errors, axis=1) > 0)
    np.testing.assert_array_equal(res.error, res.start_errors.min(axis=1))
