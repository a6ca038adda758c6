import numpy as np
import pytest
import torch

from cdiplatform.nn import make_inputs, make_targets, physics_loss, supervised_loss


@pytest.mark.parametrize("ndim,size", [(2, 32), (3, 16)])
def test_physics_term_zero_for_perfect_prediction_positive_otherwise(objects, ndim, size):
    amp, phase, intensity = objects(3, size=size, ndim=ndim, rng=np.random.default_rng(0))
    x = torch.from_numpy(make_inputs(intensity, ndim=ndim))
    a, p = (torch.from_numpy(t) for t in make_targets(amp, phase, ndim=ndim))
    perfect = physics_loss(x, a, p, ndim=ndim)
    assert float(perfect) < 1e-5
    # twice the amplitude everywhere diffracts the same after normalization: still zero
    assert float(physics_loss(x, 2 * a, p, ndim=ndim)) < 1e-5
    wrong_phase = physics_loss(x, a, (p + 0.2 * torch.rand_like(p)) % 1, ndim=ndim)
    wrong_shape = physics_loss(x, torch.roll(a, 3, dims=-1) * (1 + torch.rand_like(a)), p, ndim=ndim)
    assert float(wrong_phase) > 100 * float(perfect) + 1e-3
    assert float(wrong_shape) > 100 * float(perfect) + 1e-3


def test_physics_term_has_gradients_for_both_channels():
    a = torch.rand(2, 1, 16, 16, requires_grad=True)
    p = torch.rand(2, 1, 16, 16, requires_grad=True)
    x = torch.rand(2, 1, 16, 16)
    physics_loss(x, a, p, ndim=2).backward()
    assert a.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["bce", "mae"])
def test_supervised_loss_minimal_at_target(kind):
    t = torch.tensor([0.0, 1.0, 1.0, 0.0])
    near = supervised_loss(t * 0.98 + 0.01, t, kind=kind)
    far = supervised_loss(1 - t * 0.98 - 0.01, t, kind=kind)
    assert 0 <= float(near) < float(far)
    with pytest.raises(ValueError, match="unknown supervised loss"):
        supervised_loss(t, t, kind="mse")


@pytest.mark.parametrize("kind", ["mae", "bce"])
def test_weighted_supervised_loss_is_the_weighted_mean(kind):
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 1, 4, 4, generator=g) * 0.9 + 0.05, torch.rand(2, 1, 4, 4, generator=g)
    weight = torch.rand(2, 1, 4, 4, generator=g)
    per_pixel = supervised_loss(pred[:1, :, :1, :1], target[:1, :, :1, :1], kind=kind)  # one pixel: its loss
    assert float(per_pixel) > 0
    pixels = torch.stack([supervised_loss(p.reshape(1), t.reshape(1), kind=kind)
                          for p, t in zip(pred.flatten(), target.flatten(), strict=True)])
    expected = (pixels * weight.flatten()).sum() / weight.sum()
    torch.testing.assert_close(supervised_loss(pred, target, kind=kind, weight=weight), expected)
    torch.testing.assert_close(supervised_loss(pred, target, kind=kind, weight=torch.ones_like(pred)),
                               supervised_loss(pred, target, kind=kind))


def test_amplitude_weighted_phase_ignores_empty_space():
    from cdiplatform.nn.losses import loss_terms

    amplitude = torch.zeros(1, 1, 8, 8)
    amplitude[..., 2:6, 2:6] = 1.0
    p_target = torch.full_like(amplitude, 0.5)
    p = p_target.clone()
    p[amplitude == 0] = 0.9  # wrong only where there is no matter
    x = torch.rand(1, 1, 8, 8)
    kwargs = {"ndim": 2, "kind": "mae", "terms": ("phase",)}
    assert float(loss_terms(x, amplitude, p, amplitude, p_target, **kwargs)["phase"]) == pytest.approx(0.4 * 48 / 64)
    assert float(loss_terms(x, amplitude, p, amplitude, p_target, phase_weighting="amplitude", **kwargs)["phase"]) == 0
    p[..., 3, 3] = 0.6  # wrong inside: 0.1 on one of 16 voxels of matter
    weighted = loss_terms(x, amplitude, p, amplitude, p_target, phase_weighting="amplitude", **kwargs)["phase"]
    assert float(weighted) == pytest.approx(0.1 / 16)
