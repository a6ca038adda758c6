"""Batched phase retrieval of many scans with many random (or seeded) starts.

:func:`phase_retrieval` takes measured magnitudes of ``S`` scans, runs ``K``
random starts of each (or ``K`` starts drawn from a given starting object,
a *seed*: see :func:`seeded_starts`) in one batch on the data's device
(:func:`cdiplatform.phasing.engine.iterate`), ranks the starts of every scan
by their reciprocal-space error alone (never by a truth), aligns the best
``keep_best`` on the best one (shift, twin, constant phase) and averages them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from cdiplatform.phasing.engine import gaussian_transfer, iterate
from cdiplatform.phasing.settings import PhasingSettings
from cdiplatform.physics.align import align

__all__ = ["PhasingResult", "initial_support", "phase_retrieval", "seed_support", "seeded_starts"]


@dataclass
class PhasingResult:
    """What :func:`phase_retrieval` returns (NumPy arrays, centred layout).

    Attributes
    ----------
    obj : ndarray, complex64, ``(S, *grid)``
        Aligned average of the best starts of each scan, centre at ``N // 2``.
    support : ndarray, bool, ``(S, *grid)``
        Final support of the best start.
    error : ndarray, float64, ``(S,)``
        Reciprocal-space error (:func:`cdiplatform.physics.metrics.chi_square`)
        of ``obj``.
    start_errors : ndarray, float64, ``(S, K)``
        Error of every start before selection.
    best : ndarray, int, ``(S, keep_best)``
        Indices of the kept starts, best first.
    iterations : int
    history : list of (int, float, ndarray ``(S, K)``)
        ``(iteration, seconds, error)`` recorded during the iterations
        (``record_every``; see :class:`cdiplatform.phasing.engine.IterationResult`).
    blur : str or None
        The shrink-wrap blur the run used (``"fft"`` or ``"separable"``), to
        record with it; None without shrink-wrap.
    compiled : tuple of str
        The steps that ran fused by ``torch.compile`` (empty: all eager).
    kernels : str
        ``"numba"`` or ``"eager"``: how the elementwise steps ran (record it with the run).
    fft : str
        ``"torch"`` or ``"pocketfft"``: the transforms' library (record it with the run).
    """

    obj: np.ndarray
    support: np.ndarray
    error: np.ndarray
    start_errors: np.ndarray
    best: np.ndarray
    iterations: int
    history: list
    blur: str | None = None
    compiled: tuple[str, ...] = ()
    kernels: str = "eager"
    fft: str = "torch"


def _as_tensor(x, device, dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _validate(amplitude: torch.Tensor, ndim: int, measured) -> None:
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, not {ndim}")
    if amplitude.ndim != ndim + 1:
        raise ValueError(
            f"amplitude must have shape (scan, {', '.join('yx' if ndim == 2 else 'zyx')}), "
            f"i.e. {ndim + 1} dimensions; got shape {tuple(amplitude.shape)}"
        )
    if any(n < 4 for n in amplitude.shape[1:]):
        raise ValueError(f"grid {tuple(amplitude.shape[1:])} is too small (at least 4 per axis)")
    bad = ~torch.isfinite(amplitude).flatten(1).all(dim=1)
    if bad.any():
        scans = torch.nonzero(bad).flatten().tolist()
        raise ValueError(f"amplitude holds NaN or infinite values in scan(s) {scans}")
    neg = (amplitude < 0).flatten(1).any(dim=1)
    if neg.any():
        raise ValueError(f"amplitude is negative in scan(s) {torch.nonzero(neg).flatten().tolist()}")
    if measured is not None and tuple(measured.shape) != tuple(amplitude.shape):
        raise ValueError(
            f"measured mask of shape {tuple(measured.shape)} differs from amplitude {tuple(amplitude.shape)}"
        )


def initial_support(amplitude: torch.Tensor, settings: PhasingSettings, *, ndim: int) -> torch.Tensor:
    """Starting support per scan, bool ``(S, *grid)``, centred layout.

    ``"box"``: a centred box of ``support_fraction`` of each axis (cohere's
    ``initial_support_area``); ``"autocorrelation"``: the autocorrelation
    ``|IFFT(A**2)|`` blurred by sigma 1 above ``support_threshold`` of its maximum.
    """
    grid = tuple(amplitude.shape[-ndim:])
    S = amplitude.shape[0]
    if settings.initial_support == "box":
        sup = torch.zeros(grid, dtype=torch.bool, device=amplitude.device)
        sl = []
        for n in grid:
            w = max(1, int(settings.support_fraction * n))
            lo = n // 2 - w // 2
            sl.append(slice(lo, lo + w))
        sup[tuple(sl)] = True
        return sup.expand((S,) + grid).clone()
    dims = tuple(range(-ndim, 0))
    inten = amplitude.to(torch.complex64).square()
    auto = torch.fft.ifftn(torch.fft.ifftshift(inten, dim=dims), dim=dims).abs()
    transfer = gaussian_transfer(grid, 1.0, device=auto.device)
    blur = torch.fft.irfftn(torch.fft.rfftn(auto, dim=dims) * transfer, s=grid, dim=dims)
    peak = blur.amax(dim=dims, keepdim=True)
    return torch.fft.fftshift(blur >= settings.support_threshold * peak, dim=dims)


def _random_starts(rngs, n_starts, grid, device) -> torch.Tensor:
    S = len(rngs)
    starts = np.empty((S, n_starts) + grid, dtype=np.complex64)
    for s, rng in enumerate(rngs):
        amp = rng.random((n_starts,) + grid, dtype=np.float32)
        ph = rng.random((n_starts,) + grid, dtype=np.float32)
        starts[s] = amp * np.exp(2j * np.pi * ph)
    return torch.from_numpy(starts).to(device)


def seed_support(start: torch.Tensor, threshold: float, *, ndim: int, sigma: float = 1.0) -> torch.Tensor:
    """Support of an object: its amplitude blurred by a Gaussian of ``sigma`` pixels, above ``threshold`` of the maximum.

    ``start`` complex ``(S, *grid)``, any layout (the blur is periodic); bool of
    the same shape, per scan. The support of a seed, and the shrink-wrap of
    refinement.
    """
    dims = tuple(range(-ndim, 0))
    grid = tuple(start.shape[-ndim:])
    transfer = gaussian_transfer(grid, sigma, device=start.device)
    blur = torch.fft.irfftn(torch.fft.rfftn(start.abs(), dim=dims) * transfer, s=grid, dim=dims)
    return blur >= threshold * blur.amax(dim=dims, keepdim=True)


def seeded_starts(
    seed_obj: torch.Tensor, rngs, n_starts: int, *, phase_noise: float, amplitude_noise: float
) -> torch.Tensor:
    """``n_starts`` starting objects per scan drawn from one seed each.

    Start ``k`` of scan ``s`` is ``|seed| (1 + amplitude_noise N) exp(i (arg seed + phase_noise N'))``,
    with ``N, N'`` independent standard normal per voxel from ``rngs[s]`` (drawn only for a noise
    above 0, amplitude first). With both noises at 0 every start is the seed itself.

    Parameters
    ----------
    seed_obj : torch.Tensor, complex64, ``(S, *grid)``
    rngs : list of numpy.random.Generator, one per scan
    n_starts : int

    Returns
    -------
    torch.Tensor, complex64, ``(S, n_starts, *grid)``, on the seed's device.
    """
    grid = tuple(seed_obj.shape[1:])
    starts = seed_obj.unsqueeze(1).expand((seed_obj.shape[0], n_starts) + grid).clone()
    if phase_noise == 0 and amplitude_noise == 0:
        return starts
    for s, rng in enumerate(rngs):
        factor = np.ones((n_starts,) + grid, dtype=np.complex64)
        if amplitude_noise > 0:
            factor *= (1.0 + amplitude_noise * rng.standard_normal((n_starts,) + grid, dtype=np.float32))
        if phase_noise > 0:
            factor *= np.exp(1j * phase_noise * rng.standard_normal((n_starts,) + grid, dtype=np.float32))
        starts[s] *= torch.from_numpy(factor).to(starts.device)
    return starts


def _centring_roll(obj: np.ndarray) -> tuple[int, ...]:
    """Whole-pixel roll that brings the (circular) centre of mass of ``|obj|**2`` to ``N // 2``."""
    w = np.abs(obj) ** 2
    total = w.sum()
    if total == 0:
        return (0,) * obj.ndim
    roll = []
    for ax, n in enumerate(obj.shape):
        prof = w.sum(axis=tuple(a for a in range(obj.ndim) if a != ax))
        # circular mean position: robust to objects that wrap around the edge
        ang = np.angle((prof * np.exp(2j * np.pi * np.arange(n) / n)).sum())
        com = (ang / (2 * np.pi) * n) % n
        roll.append(int(np.round(n // 2 - com)))
    return tuple(roll)


def phase_retrieval(
    amplitude,
    *,
    ndim: int,
    settings: PhasingSettings | None = None,
    measured=None,
    support=None,
    rngs: list[np.random.Generator] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    centre: bool = True,
    start=None,
) -> PhasingResult:
    """Phase many scans, many random starts each (or starts from a seed), in one batch.

    Parameters
    ----------
    amplitude : array or torch.Tensor, float, ``(S, *grid)``
        Measured magnitudes ``sqrt(I)``, zero frequency at ``N // 2``.
    ndim : int
        2 or 3 (grid dimensions).
    settings : PhasingSettings, optional
        Algorithm, shrink-wrap, starts...; the defaults are cohere's scan-54 settings.
    measured : bool array ``(S, *grid)``, optional
        True where the magnitude was measured; elsewhere the far field keeps
        its current estimate.
    support : bool array ``(S, *grid)`` or ``grid``, optional
        Starting support (centred); ``settings.initial_support`` otherwise, or
        with ``start`` the seed's support (:func:`seed_support` at
        ``settings.support_threshold``).
    rngs : list of numpy.random.Generator, optional
        One generator per scan (the runner's); or ``seed`` to derive them.
    device : optional
        Where to run; the tensor's device (or CPU) by default.
    centre : bool
        Roll each result (object and support, by whole pixels, periodically)
        so that the centre of mass of ``|rho|**2`` sits at ``N // 2``; a
        shift is a trivial ambiguity, it leaves the far-field magnitude as is.
    start : complex array ``(S, *grid)``, optional
        A seed per scan (centred layout, any scale: for example a network's
        prediction on the phasing grid) instead of random starts. The
        ``n_starts`` starts are the seed perturbed by
        ``settings.seed_phase_noise`` and ``seed_amplitude_noise``
        (:func:`seeded_starts`), scaled to the data's norm; they skip the
        twin removal (which would cut most of a centred seed) and the box or
        autocorrelation support. With both noises at 0, ``n_starts`` must be 1.

    Returns
    -------
    PhasingResult

    Raises
    ------
    ValueError
        For arrays of the wrong shape, NaN or negative magnitudes, a number
        of generators that differs from the number of scans, a seed of another
        shape or zero over its support, or identical seeded starts.
    """
    settings = PhasingSettings() if settings is None else settings
    if device is None:
        device = amplitude.device if isinstance(amplitude, torch.Tensor) else torch.device("cpu")
    amp = _as_tensor(amplitude, device, torch.float32)
    meas = None if measured is None else _as_tensor(measured, device, torch.bool)
    _validate(amp, ndim, meas)
    S = amp.shape[0]
    grid = tuple(amp.shape[1:])
    dims = tuple(range(-ndim, 0))
    if rngs is None:
        rngs = [np.random.default_rng([0 if seed is None else seed, s]) for s in range(S)]
    if len(rngs) != S:
        raise ValueError(f"got {len(rngs)} random generators for {S} scans")
    K = settings.n_starts

    seed_obj = None
    if start is not None:
        seed_obj = _as_tensor(start, device, torch.complex64)
        if tuple(seed_obj.shape) != (S,) + grid:
            raise ValueError(f"start of shape {tuple(seed_obj.shape)} differs from amplitude {(S,) + grid}")
        if not torch.isfinite(torch.view_as_real(seed_obj)).all():
            raise ValueError("start holds NaN or infinite values")
        if K > 1 and settings.seed_phase_noise == 0 and settings.seed_amplitude_noise == 0:
            raise ValueError(
                f"n_starts={K} seeded starts would all be the seed: set seed_phase_noise or "
                "seed_amplitude_noise, or n_starts=1"
            )
        settings = replace(settings, twin=None)
    if support is None:
        if seed_obj is None:
            sup0 = initial_support(amp, settings, ndim=ndim)
        else:
            sup0 = seed_support(seed_obj, settings.support_threshold, ndim=ndim)
    else:
        sup0 = _as_tensor(support, device, torch.bool)
        if tuple(sup0.shape) == grid:
            sup0 = sup0.expand((S,) + grid)
        if tuple(sup0.shape) != (S,) + grid:
            raise ValueError(f"support of shape {tuple(sup0.shape)} fits neither {grid} nor {(S,) + grid}")
    if seed_obj is not None:
        empty = ~(sup0 & (seed_obj.abs() > 0)).flatten(1).any(dim=1)
        if empty.any():
            raise ValueError(f"start is zero over its support in scan(s) {torch.nonzero(empty).flatten().tolist()}")
    # unshifted layout: zero frequency and object centre at index 0
    amp_u = torch.fft.ifftshift(amp, dim=dims).unsqueeze(1).contiguous()
    meas_u = None if meas is None else torch.fft.ifftshift(meas, dim=dims).unsqueeze(1).contiguous()
    sup_u = torch.fft.ifftshift(sup0, dim=dims).unsqueeze(1)
    w = amp_u if meas_u is None else amp_u * meas_u
    norm = w.square().sum(dim=dims, keepdim=True, dtype=torch.float64).sqrt().to(torch.float32)
    if seed_obj is None:
        rho = _random_starts(rngs, K, grid, device)
    else:
        rho = seeded_starts(torch.fft.ifftshift(seed_obj, dim=dims), rngs, K,
                            phase_noise=settings.seed_phase_noise, amplitude_noise=settings.seed_amplitude_noise)
    rho.mul_(sup_u)  # inside the support, on the data's norm
    cur = rho.abs().square().sum(dim=dims, keepdim=True).sqrt().clamp_min(1e-30)
    rho.mul_((norm / cur).to(rho.dtype))
    support_buf = sup_u.expand(S, K, *grid).contiguous()

    raw = iterate(amp_u, rho, support_buf, settings, ndim=ndim, measured=meas_u)

    obj = torch.fft.fftshift(raw.obj, dim=dims).cpu().numpy()
    sup = torch.fft.fftshift(raw.support, dim=dims).cpu().numpy()
    err = raw.error.cpu().numpy()
    k = settings.keep_best
    order = np.argsort(err, axis=1, kind="stable")[:, :k]
    out = np.empty((S,) + grid, dtype=np.complex64)
    out_sup = np.empty((S,) + grid, dtype=bool)
    for s in range(S):
        ref = obj[s, order[s, 0]]
        if k == 1:
            out[s] = ref
        else:
            acc = ref.astype(np.complex128)
            for j in order[s, 1:]:
                acc += align(obj[s, j], ref, ramp=False).obj
            out[s] = acc / k
        out_sup[s] = sup[s, order[s, 0]]
        if centre:
            roll = _centring_roll(out[s])
            out[s] = np.roll(out[s], roll, axis=tuple(range(ndim)))
            out_sup[s] = np.roll(out_sup[s], roll, axis=tuple(range(ndim)))
    if k == 1:
        final_err = err[np.arange(S), order[:, 0]]
    else:
        from cdiplatform.physics.metrics import chi_square

        final_err = chi_square(
            out, amp.cpu().numpy(), ndim=ndim, measured=None if meas is None else meas.cpu().numpy()
        )
    if not np.all(np.isfinite(final_err)):
        bad = np.nonzero(~np.isfinite(final_err))[0].tolist()
        raise FloatingPointError(f"phase retrieval diverged (non-finite error) for scan(s) {bad}")
    return PhasingResult(
        obj=out,
        support=out_sup,
        error=np.asarray(final_err, dtype=np.float64),
        start_errors=err,
        best=order,
        iterations=settings.algorithm.n_iterations,
        history=raw.history,
        blur=raw.blur,
        compiled=raw.compiled,
        kernels=raw.kernels,
        fft=raw.fft,
    )
