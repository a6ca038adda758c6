"""The engine's in-place (and fused) steps against a textbook iteration written plainly here."""

import itertools

import numpy as np
import pytest
import torch

from cdiplatform.phasing import PhasingSettings, ShrinkWrap, TwinRemoval, transforms
from cdiplatform.phasing.blur import gaussian_transfer
from cdiplatform.phasing.engine import _twin_keep, iterate, time_to_error
from cdiplatform.phasing.kernels import compile_available, fused_steps
from cdiplatform.physics.fft import far_field


def textbook(amp, rho, sup, settings, measured=None):
    """ER / HIO / RAAR with shrink-wrap by the FFT Gaussian, no buffers, torch.where (the oracle)."""
    dims = (-3, -2, -1)
    grid = rho.shape[-3:]
    beta, sw = settings.beta, settings.shrink_wrap
    sw_its = set(sw.iterations(settings.algorithm.n_iterations)) if sw else set()
    for it, op in enumerate(settings.algorithm.operators()):
        if it in sw_its:
            g = gaussian_transfer(grid, sw.sigma, device="cpu")
            b = torch.fft.irfftn(torch.fft.rfftn(rho.abs(), dim=dims) * g, s=grid, dim=dims)
            sup = b >= sw.threshold * b.amax(dim=dims, keepdim=True)
        F = torch.fft.fftn(rho, dim=dims, norm="ortho")
        proj = amp * torch.sgn(F)
        F = proj if measured is None else torch.where(measured, proj, F)
        y = torch.fft.ifftn(F, dim=dims, norm="ortho")
        inside = sup
        if settings.positivity:
            y = y.real.to(torch.complex64)
            inside = sup & (y.real >= 0)
        if op == "ER":
            rho = torch.where(inside, y, 0)
        elif op == "HIO":
            rho = torch.where(inside, y, rho - beta * y)
        else:
            rho = torch.where(inside, y, beta * rho + (1 - 2 * beta) * y)
        if settings.twin is not None and it == settings.twin.iteration:
            rho = rho * _twin_keep(grid, settings.twin.halves, "cpu")
    return rho, sup


@pytest.fixture
def batch(make_object):
    """Two 3D objects, their magnitudes (unshifted), random starts and a loose box support."""
    rng = np.random.default_rng(7)
    obj = np.stack([make_object(rng, 8, 16, ndim=3) for _ in range(2)]).astype(np.complex64)
    amp = np.fft.ifftshift(np.abs(far_field(obj, ndim=3)), axes=(-3, -2, -1)).astype(np.float32)
    amp = torch.from_numpy(amp).unsqueeze(1)
    rho = rng.random((2, 3, 16, 16, 16)) * np.exp(2j * np.pi * rng.random((2, 3, 16, 16, 16)))
    sup = torch.zeros((2, 3, 16, 16, 16), dtype=torch.bool)
    sup[..., :6, :6, :6] = True
    sup[..., -6:, -6:, -6:] = True
    return amp, torch.from_numpy(rho.astype(np.complex64)), sup


CASES = [
    {"algorithm": "4*ER+8*HIO+4*RAAR"},
    {"algorithm": "3*ER+9*HIO", "shrink_wrap": ShrinkWrap(threshold=0.2, start=0, blur="fft")},
    {"algorithm": "3*ER+6*HIO+3*ER", "positivity": True, "twin": TwinRemoval(iteration=2)},
    {"algorithm": "2*ER+6*RAAR", "shrink_wrap": ShrinkWrap(blur="fft", period=2)},
]


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kernels", ["eager", "numba"])
@pytest.mark.parametrize("fft", ["torch", "pocketfft"])
def test_in_place_steps_are_the_textbook_iteration(batch, kw, masked, kernels, fft):
    amp, rho0, sup0 = batch
    kw = {"shrink_wrap": None, "twin": None, "kernels": kernels, "fft": fft, **kw}
    settings = PhasingSettings(**kw)
    measured = None
    if masked:
        measured = torch.ones_like(amp, dtype=torch.bool)
        measured[..., :2, :2, :3] = False  # the centre of the far field (unshifted layout)
    ref_rho, ref_sup = textbook(amp, rho0.clone(), sup0.clone(), settings, measured)
    rho, sup = rho0.clone(), sup0.clone()
    out = iterate(amp, rho, sup, settings, ndim=3, measured=measured)
    assert torch.equal(out.support, ref_sup)
    scale = float(ref_rho.abs().max())
    np.testing.assert_allclose(
        out.obj.numpy(), ref_rho.numpy(), rtol=0, atol=5e-4 * scale
    )  # float32 rounding grown over 16 iterations: the numba phase factor a / sqrt(re^2 + im^2) and
    # torch's sgn differ by an ulp, which HIO amplifies (past 1e-4 of the peak on an AVX-512 machine); a
    # wrong step differs by the order of the peak
    assert out.compiled == () and out.kernels == kernels and out.fft == fft


@pytest.mark.parametrize("period", [1, 2])
@pytest.mark.parametrize("twin", [None, TwinRemoval(iteration=2)])
def test_numba_shrink_wrap_from_the_updates_magnitude_is_the_eager_one(batch, period, twin):
    # with numba the update writes |rho| for the next shrink-wrap, which blurs, takes the maximum and
    # thresholds in one call: after the twin removal (which changes rho past the update) that |rho| is stale
    amp, rho0, sup0 = batch
    kw = {"algorithm": "3*ER+6*HIO+3*RAAR", "twin": twin,
          "shrink_wrap": ShrinkWrap(threshold=0.2, start=0, period=period, blur="separable")}
    eager = iterate(amp, rho0.clone(), sup0.clone(), PhasingSettings(**kw, kernels="eager"), ndim=3)
    numba = iterate(amp, rho0.clone(), sup0.clone(), PhasingSettings(**kw, kernels="numba"), ndim=3)
    assert numba.kernels == "numba" and numba.blur == eager.blur == "separable"
    assert int((numba.support != eager.support).sum()) <= 2  # of 36,864 voxels: float32 rounding at the edge
    scale = float(eager.obj.abs().max())
    np.testing.assert_allclose(numba.obj.numpy(), eager.obj.numpy(), rtol=0, atol=5e-4 * scale)


@pytest.mark.parametrize("fft", ["torch", "pocketfft"])
@pytest.mark.parametrize("positivity", [False, True])
@pytest.mark.parametrize("grids_a_block", [3, 2, 1])  # whole scans; two starts, then one; single starts
def test_numba_iteration_block_by_block_gives_the_bits_of_one_block(
    batch, monkeypatch, grids_a_block, positivity, fft
):
    # the numba path transforms, projects and updates the batch in blocks of at most CALL_BYTES (2 scans x
    # 3 starts of 16^3 here): every block must get its own scans' amplitude and mask, errors and |rho|
    amp, rho0, sup0 = batch
    measured = torch.ones_like(amp, dtype=torch.bool)
    measured[..., :2, :2, :3] = False
    measured[1, ..., 5:8, :2, :3] = False  # each scan its own mask
    settings = PhasingSettings(
        algorithm="3*ER+6*HIO+3*RAAR", kernels="numba", fft=fft, positivity=positivity, record_every=5,
        average_last=2,
        twin=TwinRemoval(iteration=2), shrink_wrap=ShrinkWrap(threshold=0.2, start=0, blur="separable"),
    )
    whole = iterate(amp, rho0.clone(), sup0.clone(), settings, ndim=3, measured=measured)
    monkeypatch.setattr(transforms, "CALL_BYTES", grids_a_block * 16**3 * 8)
    blocks = transforms.transform_blocks(tuple(rho0.shape), ndim=3)
    assert len(blocks) == {3: 2, 2: 4, 1: 6}[grids_a_block]
    split = iterate(amp, rho0.clone(), sup0.clone(), settings, ndim=3, measured=measured)
    assert torch.equal(split.obj, whole.obj) and torch.equal(split.support, whole.support)
    assert torch.equal(split.error, whole.error)
    for (it_a, _, err_a), (it_b, _, err_b) in zip(split.history, whole.history, strict=True):
        assert it_a == it_b and np.array_equal(err_a, err_b)


def test_history_carries_iteration_seconds_and_error(batch):
    amp, rho, sup = batch
    settings = PhasingSettings(algorithm="5*ER+7*HIO", record_every=4, shrink_wrap=ShrinkWrap(start=0))
    out = iterate(amp, rho, sup, settings, ndim=3)
    assert [h[0] for h in out.history] == [0, 4, 8, 11]
    seconds = [h[1] for h in out.history]
    assert seconds[0] >= 0 and all(b > a for a, b in itertools.pairwise(seconds))
    assert all(h[2].shape == (2, 3) and h[2].dtype == np.float64 for h in out.history)
    assert np.all(out.history[-1][2] < out.history[0][2])
    target = float(np.median(out.history[1][2]))
    its, secs = time_to_error(out.history, target)
    errs = np.stack([h[2] for h in out.history])
    for s in range(2):
        for k in range(3):
            hit = [h[0] for h in out.history if h[2][s, k] <= target]
            assert its[s, k] == (hit[0] if hit else -1)
            assert (np.isnan(secs[s, k]) and not hit) or secs[s, k] == seconds[
                [h[0] for h in out.history].index(hit[0])
            ]
    assert (its == 4).sum() >= 3 and np.all(errs[1][its == 4] <= target)
    with pytest.raises(ValueError, match="history is empty"):
        time_to_error([], 0.1)


def test_compile_refused_clearly_without_a_compiler(batch, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, c++, clang++ to be found
    ok, why = compile_available("cpu")
    assert not ok and "C++ compiler" in why
    amp, rho, sup = batch
    with pytest.raises(RuntimeError, match="compile=True but torch.compile cannot build kernels here"):
        iterate(amp, rho, sup, PhasingSettings(algorithm="2*HIO", compile=True), ndim=3)


@pytest.mark.parametrize("masked", [False, True])
def test_fused_steps_match_the_eager_ones(batch, masked):
    ok, why = compile_available("cpu")
    if not ok:
        pytest.skip(f"torch.compile unavailable: {why}")
    amp, rho0, sup0 = batch
    measured = None
    if masked:
        measured = torch.ones_like(amp, dtype=torch.bool)
        measured[..., :2, :2, :3] = False
    kw = {"algorithm": "3*ER+4*HIO+3*RAAR", "shrink_wrap": ShrinkWrap(threshold=0.2, start=0), "twin": None,
          "kernels": "eager"}
    eager = iterate(amp, rho0.clone(), sup0.clone(), PhasingSettings(**kw), ndim=3, measured=measured)
    fused = iterate(
        amp, rho0.clone(), sup0.clone(), PhasingSettings(**kw, compile=True), ndim=3, measured=measured
    )
    assert fused.compiled == fused_steps("cpu") and eager.compiled == ()
    assert "blur" in fused.compiled and fused.blur == "separable"
    assert int((fused.support != eager.support).sum()) <= 2
    scale = float(eager.obj.abs().max())
    np.testing.assert_allclose(fused.obj.numpy(), eager.obj.numpy(), rtol=0, atol=1e-4 * scale)


def test_numba_kernels_take_the_place_of_torch_compile_on_a_cpu(batch):
    ok, why = compile_available("cpu")
    if not ok:
        pytest.skip(f"torch.compile unavailable: {why}")
    amp, rho, sup = batch
    settings = PhasingSettings(algorithm="2*HIO", shrink_wrap=ShrinkWrap(start=0), twin=None, compile=True,
                               kernels="numba")
    out = iterate(amp, rho, sup, settings, ndim=3)
    assert out.kernels == "numba" and out.compiled == () and out.blur == "separable"
