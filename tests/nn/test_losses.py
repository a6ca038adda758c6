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
