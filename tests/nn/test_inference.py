import numpy as np
import pytest
import torch

from cdiplatform.nn import ModelConfig, build_model, make_inputs, predict, screen_scans


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
