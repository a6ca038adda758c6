import math

import numpy as np
import pytest
import torch

from cdiplatform.nn import make_inputs, make_targets, physics_loss, supervised_loss, twin_targets
from cdiplatform.nn.losses import loss_terms
from cdiplatform.physics import far_field


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


def test_support_weighted_phase_counts_the_support_alike():
    amplitude = torch.zeros(2, 1, 8, 8)
    amplitude[0, ..., 2:6, 2:6] = 1.0
    amplitude[0, ..., 2, 2:6] = 0.2  # a faint edge row: inside the support (> 10% of the maximum)
    amplitude[0, ..., 6, 2:6] = 0.05  # fainter: outside
    amplitude[1, ..., 1:3, 1:3] = 4.0  # another scale: the threshold follows each scan's maximum
    p_target = torch.full_like(amplitude, 0.5)
    p = p_target.clone()
    p[amplitude <= 0.1 * amplitude.amax(dim=(1, 2, 3), keepdim=True)] = 0.9  # wrong only outside the supports
    x = torch.rand(2, 1, 8, 8)
    kwargs = {"ndim": 2, "kind": "mae", "terms": ("phase",), "phase_weighting": "support"}
    assert float(loss_terms(x, amplitude, p, amplitude, p_target, **kwargs)["phase"]) == 0
    p[0, ..., 2, 2] = 0.7  # wrong by 0.2 on a faint edge voxel, one of 16 + 4 support voxels
    support = loss_terms(x, amplitude, p, amplitude, p_target, **kwargs)["phase"]
    assert float(support) == pytest.approx(0.2 / 20)
    weighted = loss_terms(x, amplitude, p, amplitude, p_target, **(kwargs | {"phase_weighting": "amplitude"}))["phase"]
    assert float(weighted) < float(support)  # amplitude weighting discounts the faint edge


@pytest.mark.parametrize("ndim,size", [(2, 8), (2, 7), (3, 6)])
def test_twin_targets_diffract_like_the_targets(ndim, size):
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 1, *(size,) * ndim, generator=g, dtype=torch.float64)
    p = torch.rand(2, 1, *(size,) * ndim, generator=g, dtype=torch.float64)
    a_twin, p_twin = twin_targets(a, p, ndim=ndim)
    field = far_field(torch.polar(a, 2 * math.pi * p - math.pi), ndim=ndim)
    twin_field = far_field(torch.polar(a_twin, 2 * math.pi * p_twin - math.pi), ndim=ndim)
    torch.testing.assert_close(twin_field.abs(), field.abs())
    assert not torch.allclose(a_twin, a)
    assert ((p_twin >= 0) & (p_twin < 1)).all()
    back_a, back_p = twin_targets(a_twin, p_twin, ndim=ndim)  # the twin of the twin is the object
    torch.testing.assert_close(back_a, a)
    torch.testing.assert_close(torch.polar(torch.ones_like(back_p), 2 * math.pi * back_p),
                               torch.polar(torch.ones_like(p), 2 * math.pi * p))
    with pytest.raises(ValueError, match="full turn"):
        twin_targets(a, p, ndim=ndim, phase_scale=math.pi)


@pytest.mark.parametrize("kind", ["mae", "bce"])
@pytest.mark.parametrize("phase_weighting", ["uniform", "amplitude"])
def test_twin_invariant_loss_accepts_either_twin_per_scan(kind, phase_weighting):
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 1, 8, 8, generator=g) * 0.9 + 0.05
    p = torch.rand(2, 1, 8, 8, generator=g) * 0.9 + 0.05
    a_twin, p_twin = twin_targets(a, p, ndim=2)
    x = torch.rand(2, 1, 8, 8, generator=g)
    kwargs = {"ndim": 2, "kind": kind, "terms": ("amplitude", "phase"), "phase_weighting": phase_weighting}
    exact = loss_terms(x, a, p, a, p, **kwargs)  # the floor (bce of soft targets is not 0)
    # scan 0 predicted as its target, scan 1 as its twin
    pred_a, pred_p = torch.stack([a[0], a_twin[1]]), torch.stack([p[0], p_twin[1]])
    fixed = loss_terms(x, pred_a, pred_p, a, p, **kwargs)
    either = loss_terms(x, pred_a, pred_p, a, p, twin_invariant=True, **kwargs)
    for term in ("amplitude", "phase"):
        torch.testing.assert_close(either[term], exact[term])
        assert float(fixed[term]) > float(exact[term]) + 1e-3


def test_twin_choice_takes_shape_and_phase_from_one_object():
    g = torch.Generator().manual_seed(3)
    a = torch.zeros(1, 1, 8, 8)
    a[..., 1:4, 2:7] = 1.0  # far from its reflection
    p = torch.full_like(a, 0.5) + 0.05 * torch.rand(a.shape, generator=g)
    _, p_twin = twin_targets(a, p, ndim=2)
    kwargs = {"ndim": 2, "kind": "mae", "terms": ("amplitude", "phase"), "twin_invariant": True}
    # the shape of the object with the phase of its twin: the shape decides, the phase error stays
    mixed = loss_terms(a, a, p_twin, a, p, **kwargs)
    assert float(mixed["amplitude"]) == 0
    torch.testing.assert_close(mixed["phase"], (p_twin - p).abs().mean())
    assert float(mixed["phase"]) > 0


def test_physics_term_alone_recovers_the_phase_given_the_amplitude(objects):
    """The physics term carries the phase: descending it from a flat phase, with the true amplitude
    held fixed, finds the object's phase (what a refinement of a network's prediction relies on)."""
    from cdiplatform.physics.metrics import compare_with_truth

    amp, phase, intensity = objects(1, size=24, ndim=2, rng=np.random.default_rng(4))
    x = torch.from_numpy(make_inputs(intensity, ndim=2))
    a, _ = (torch.from_numpy(t) for t in make_targets(amp, phase, ndim=2))
    p = torch.full_like(a, 0.5, requires_grad=True)
    optimizer = torch.optim.Adam([p], lr=1e-2)
    errors = []
    for step in range(201):
        if step % 200 == 0:
            obj = a[0].numpy() * np.exp(1j * (2 * np.pi * p[0].detach().numpy() - np.pi))
            errors.append(compare_with_truth(obj, amp[0], phase[0], subpixel=False).phase_error)
        loss = physics_loss(x, a, p, ndim=2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert errors[0] > 0.3, "the test object's phase must not be flat"
    assert errors[1] < 0.1 * errors[0]
