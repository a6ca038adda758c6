import numpy as np
import pytest
import torch

from cdiplatform.nn import ModelConfig, apply_symmetry, average_objects, build_model, make_inputs, predict, screen_scans
from cdiplatform.nn.augment import inversion


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(arch="cdi_nn_2d", ndim=2, size=16, widths=(4, 8)),
        ModelConfig(arch="cdi_nn_3d", ndim=3, size=8, widths=(2, 4), dropout=0.1),
    ],
)
def test_predict_shapes_ranges_and_batch_independence(config):
    model = build_model(config, seed=0)
    model.train()
    x = np.random.default_rng(0).uniform(0, 1, (7, *config.grid)).astype(np.float32)
    amp, phase = predict(model, x, batch_size=3, device="cpu")
    assert amp.shape == phase.shape == x.shape and amp.dtype == np.float32
    assert amp.min() >= 0 and amp.max() <= 1
    assert phase.min() >= -np.pi and phase.max() <= np.pi
    assert model.training  # mode restored
    amp1, phase1 = predict(model, torch.from_numpy(x), batch_size=7, channels_last=False)
    np.testing.assert_allclose(amp, amp1, atol=1e-5)  # eval mode: no dropout, batching irrelevant
    np.testing.assert_allclose(phase, phase1, atol=1e-4)
    with torch.no_grad():
        a, p = model.eval()(torch.from_numpy(x[:1]).unsqueeze(1))
    np.testing.assert_allclose(amp[0], a[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(phase[0], (2 * np.pi * p[0, 0] - np.pi).numpy(), atol=1e-4)


def test_predict_refuses_other_grid():
    model = build_model(ModelConfig(arch="cdi_nn_2d", ndim=2, size=16, widths=(4, 8)))
    with pytest.raises(ValueError, match=r"grid \(32, 32\), the model \(cdi_nn_2d\) takes \(16, 16\)"):
        predict(model, np.zeros((2, 32, 32), np.float32))


def test_screen_scans_flags_grid_signal_and_oversampling(objects):
    config = ModelConfig(arch="cdi_nn_2d", ndim=2, size=32, oversampling=(1.8, 2.6))
    _, _, fit = objects(3, size=32, ndim=2, rng=np.random.default_rng(0), extent=0.45)
    _, _, small = objects(2, size=32, ndim=2, rng=np.random.default_rng(1), extent=0.2)
    intensity = np.concatenate([fit, small, np.zeros((1, 32, 32), np.float32)])
    intensity[0, 3, 3] = np.nan
    failed = screen_scans(config, intensity)
    assert set(failed) == {0, 3, 4, 5}
    assert "non-finite" in failed[0] and "no positive" in failed[5]
    assert failed[3].startswith("oversampling") and "[1.80, 2.60]" in failed[3]
    # a known oversampling overrides the estimate
    assert 3 not in screen_scans(config, intensity, oversampling=np.full(6, 2.0))
    grid = screen_scans(config, np.ones((2, 16, 16)))
    assert set(grid) == {0, 1} and "grid (16, 16)" in grid[0]
    assert screen_scans(config.replace(oversampling=None), intensity[1:5]) == {}
    assert make_inputs(intensity[[1, 2]], ndim=2).shape == (2, 32, 32)


def twin(obj: np.ndarray, ndim: int) -> np.ndarray:
    """``conj(rho(-r))`` of each object (leading axes kept), reflected through ``N // 2``."""
    return apply_symmetry(torch.as_tensor(obj), inversion(ndim), ndim=ndim).numpy().conj()


def assert_same_object(obj, amplitude, phase, *, support):
    """``obj`` and ``amplitude * exp(i phase)`` agree, phases compared inside ``support`` up to a constant."""
    np.testing.assert_allclose(amplitude, np.abs(obj), atol=1e-5)
    d = np.angle(np.exp(1j * phase[support]) * np.conj(obj[support]))
    np.testing.assert_allclose(np.angle(np.exp(1j * (d - d[0]))), 0, atol=1e-4)


@pytest.mark.parametrize("ndim", [2, 3])
def test_average_objects_undoes_twin_and_constant_phase(objects, ndim):
    amp, phase, _ = objects(2, size=16, ndim=ndim, rng=np.random.default_rng(ndim))
    obj = amp / amp.max(axis=tuple(range(1, ndim + 1)), keepdims=True) * np.exp(1j * phase)
    # per scan: the object itself, its twin with a constant phase, and itself with another
    predictions = np.stack([obj, twin(obj, ndim) * np.exp(0.7j), obj * np.exp(-1.2j)], axis=1)
    got_amp, got_phase = average_objects(predictions, ndim=ndim)
    assert got_amp.shape == got_phase.shape == obj.shape and got_amp.dtype == np.float32
    for i in range(2):
        assert_same_object(obj[i], got_amp[i], got_phase[i], support=amp[i] > 0)
    # the first prediction sets which of object and twin the average is
    got_amp, got_phase = average_objects(predictions[:, [1, 0, 2]], ndim=ndim)
    for i in range(2):
        assert_same_object(twin(obj, ndim)[i], got_amp[i], got_phase[i], support=twin(amp, ndim).real[i] > 0)


def test_average_objects_refuses_a_grid_of_other_dimensions():
    with pytest.raises(ValueError, match=r"\(scan, prediction, \*grid\) with 3 grid axes"):
        average_objects(np.ones((2, 16, 16), np.complex64), ndim=3)


def test_permutation_average_follows_a_transpose_of_the_input(objects):
    # averaged over both axis orders, the prediction of a transposed scan is the
    # transposed prediction (or its twin: the first pass picks), up to a constant phase
    config = ModelConfig(arch="cdi_nn_2d", ndim=2, size=32, widths=(4, 8))
    model = build_model(config, seed=0)
    _, _, intensity = objects(2, size=32, ndim=2, rng=np.random.default_rng(3), extent=0.45)
    x = make_inputs(intensity, ndim=2)
    amp, phase = predict(model, x, batch_size=1, average_permutations=True)
    amp_t, phase_t = predict(model, np.ascontiguousarray(x.transpose(0, 2, 1)), average_permutations=True)
    back = amp_t.transpose(0, 2, 1) * np.exp(1j * phase_t.transpose(0, 2, 1))
    single = predict(model, x)[0]
    assert not np.allclose(single, amp, atol=1e-3)  # the average is not one pass
    for i in range(2):
        obj = amp[i] * np.exp(1j * phase[i])
        candidates = [back[i], twin(back[i], 2)]
        best = min(candidates, key=lambda c: np.abs(np.abs(c) - amp[i]).max())
        assert_same_object(best, amp[i], phase[i], support=amp[i] > 0.1)
        assert np.abs(np.vdot(obj, best)) > 0
