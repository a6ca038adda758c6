"""The batched iteration loop: ER, HIO and RAAR with Gaussian shrink-wrap.

Internally every array lives in the *unshifted* FFT layout (zero frequency and
object centre at index 0), so an iteration is a bare ``fftn``/``ifftn`` pair
with no ``fftshift`` copies; the data are shifted once on the way in and the
result once on the way out. All buffers are allocated once, on the device of
the data, and the iteration updates them in place. The transforms are
unitary (``norm="ortho"``), so the object comes out on the platform's scale
(:mod:`cdiplatform.physics.fft`):

================  ======================================================
buffer            what
================  ======================================================
``rho``           current object, complex64, ``(S, K, *grid)``
``field``         its far field, then the projection ``P_M rho`` (in place)
``average``       sum of the last iterates (only with ``average_last``)
``blur``          real |rho| blurred by a Fourier-space Gaussian (shrink-wrap)
``blur_hat``      its half spectrum (``rfftn``)
``support``       bool
``amplitude``     measured magnitudes, float32, ``(S, 1, *grid)``, shared by the K starts
================  ======================================================

``S`` is the number of scans and ``K`` the number of random starts per scan.
The iteration follows cohere's order: shrink-wrap from the current object,
far field, modulus projection, back to real space, the ER/HIO/RAAR update,
twin removal, averaging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cdiplatform.phasing.settings import PhasingSettings

__all__ = ["IterationResult", "iterate"]

_TINY = 1e-30


@dataclass
class IterationResult:
    """Raw output of :func:`iterate`, still in the unshifted layout.

    Attributes
    ----------
    obj : torch.Tensor, complex64, ``(S, K, *grid)``
        Final object per start (the average of the last iterates when asked).
    support : torch.Tensor, bool, ``(S, K, *grid)``
    error : torch.Tensor, float64, ``(S, K)``
        Reciprocal-space error of ``obj`` (see :func:`fourier_error`).
    history : list of (int, ndarray)
        ``(iteration, error (S, K))`` recorded every ``record_every`` iterations.
    """

    obj: torch.Tensor
    support: torch.Tensor
    error: torch.Tensor
    history: list[tuple[int, np.ndarray]]


def _grid_dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


def gaussian_transfer(grid: tuple[int, ...], sigma: float, *, device, half: bool = True) -> torch.Tensor:
    """Fourier transform of a unit-sum Gaussian of std ``sigma`` pixels, unshifted layout.

    Returns the real ``exp(-2 pi**2 sigma**2 |f|**2)`` on the ``rfftn`` half
    grid (``half=True``) or the full grid, with ``f`` in cycles per pixel.
    """
    out = None
    for axis, n in enumerate(grid):
        if half and axis == len(grid) - 1:
            f = torch.fft.rfftfreq(n, device=device, dtype=torch.float64)
        else:
            f = torch.fft.fftfreq(n, device=device, dtype=torch.float64)
        g = torch.exp(-2.0 * math.pi**2 * sigma**2 * f**2)
        shape = [1] * len(grid)
        shape[axis] = -1
        g = g.reshape(shape)
        out = g if out is None else out * g
    return out.to(torch.float32)


def _twin_keep(grid: tuple[int, ...], halves: tuple[int, ...], device) -> torch.Tensor:
    """Bool mask, unshifted layout, of the part the twin removal keeps."""
    keep = np.ones(grid, dtype=bool)
    for axis, h in enumerate(halves[: len(grid)]):
        half = (grid[axis] + 1) // 2
        sl = [slice(None)] * len(grid)
        sl[axis] = slice(half, None) if h == 0 else slice(None, half)
        keep[tuple(sl)] = False
    return torch.from_numpy(np.fft.ifftshift(keep)).to(device)


def fourier_error(
    field: torch.Tensor, amplitude: torch.Tensor, measured: torch.Tensor | None, ndim: int
) -> torch.Tensor:
    """``sum (|F| - A)**2 / sum A**2`` over the measured pixels, per batch item (float64)."""
    dims = _grid_dims(ndim)
    diff = field.abs().sub_(amplitude).square_()
    a2 = amplitude.square()
    if measured is not None:
        diff.mul_(measured)
        a2 = a2 * measured
    num = diff.sum(dim=dims, dtype=torch.float64)
    den = a2.sum(dim=dims, dtype=torch.float64).clamp_min(_TINY)
    return num / den


def iterate(
    amplitude: torch.Tensor,
    rho: torch.Tensor,
    support: torch.Tensor,
    settings: PhasingSettings,
    *,
    ndim: int,
    measured: torch.Tensor | None = None,
) -> IterationResult:
    """Run the algorithm sequence on a batch, in place, in the unshifted layout.

    Parameters
    ----------
    amplitude : torch.Tensor, float32, ``(S, 1, *grid)``
        Measured magnitudes (``sqrt`` of the intensity), unshifted.
    rho : torch.Tensor, complex64, ``(S, K, *grid)``
        Starting objects; overwritten.
    support : torch.Tensor, bool, ``(S, K, *grid)``
        Starting supports; overwritten by shrink-wrap.
    settings : PhasingSettings
    ndim : int
        2 or 3.
    measured : torch.Tensor, bool, ``(S, 1, *grid)``, optional
        True where the magnitude was measured; elsewhere the far field keeps
        its current value.

    Returns
    -------
    IterationResult
    """
    dims = _grid_dims(ndim)
    grid = tuple(rho.shape[-ndim:])
    device = rho.device
    seq = settings.algorithm
    n_iter = seq.n_iterations
    beta = float(settings.beta)

    field = torch.empty_like(rho)
    average = torch.zeros_like(rho) if settings.average_last > 0 else None
    avg_from = n_iter - settings.average_last

    sw = settings.shrink_wrap
    sw_iters: dict[int, float] = {}
    if sw is not None:
        its = sw.iterations(n_iter)
        sw_iters = {it: sw.sigma_at(k, len(its)) for k, it in enumerate(its)}
    blur = blur_hat = transfer = None
    transfer_sigma = None
    if sw_iters:
        blur = torch.empty(rho.shape, dtype=torch.float32, device=device)
        half_shape = rho.shape[:-1] + (grid[-1] // 2 + 1,)
        blur_hat = torch.empty(half_shape, dtype=torch.complex64, device=device)

    ratio = None
    unmeasured = None
    if measured is not None:
        ratio = torch.empty(rho.shape, dtype=torch.float32, device=device)
        unmeasured = ~measured
    positive = torch.empty(rho.shape, dtype=torch.bool, device=device) if settings.positivity else None
    twin_keep = None
    if settings.twin is not None and settings.twin.iteration < n_iter:
        twin_keep = _twin_keep(grid, settings.twin.halves, device)

    # real views (last axis: real, imaginary): products of complex by real arrays run about
    # twice as fast on them as on the complex tensors (no promotion of the real factor)
    rho_r = torch.view_as_real(rho)
    field_r = torch.view_as_real(field)
    amp_r = amplitude.unsqueeze(-1)
    blur_hat_r = None if blur_hat is None else torch.view_as_real(blur_hat)
    ratio_r = None if ratio is None else ratio.unsqueeze(-1)

    history: list[tuple[int, np.ndarray]] = []
    record = settings.record_every
    it = 0
    for op, count in seq.steps:
        for _ in range(count):
            # -- shrink-wrap from the current object
            if it in sw_iters:
                sigma = sw_iters[it]
                if sigma != transfer_sigma:
                    transfer = gaussian_transfer(grid, sigma, device=device).unsqueeze(-1)
                    transfer_sigma = sigma
                torch.linalg.vector_norm(rho_r, dim=-1, out=blur)  # |rho|
                torch.fft.rfftn(blur, dim=dims, out=blur_hat)
                blur_hat_r.mul_(transfer)
                torch.fft.irfftn(blur_hat, s=grid, dim=dims, out=blur)
                peak = blur.amax(dim=dims, keepdim=True)
                torch.ge(blur, peak.mul_(sw.threshold), out=support)

            # -- modulus projection in reciprocal space
            torch.fft.fftn(rho, dim=dims, norm="ortho", out=field)
            if record and (it % record == 0 or it == n_iter - 1):
                history.append((it, fourier_error(field, amplitude, measured, ndim).cpu().numpy()))
            if measured is None:
                field.sgn_()
                field_r.mul_(amp_r)
            else:
                torch.abs(field, out=ratio)
                ratio.clamp_min_(_TINY)
                torch.div(amplitude, ratio, out=ratio)
                ratio.masked_fill_(unmeasured, 1.0)
                field_r.mul_(ratio_r)
            torch.fft.ifftn(field, dim=dims, norm="ortho", out=field)  # field now holds P_M rho

            # -- real-space update
            inside = support
            if positive is not None:  # a real, non-negative object
                field.imag.zero_()
                torch.ge(field.real, 0.0, out=positive)
                positive.logical_and_(support)
                inside = positive
            if op == "ER":
                torch.mul(field_r, inside.unsqueeze(-1), out=rho_r)
            elif op == "HIO":
                rho.sub_(field, alpha=beta)
                torch.where(inside, field, rho, out=rho)
            else:  # RAAR: inside P_M rho, outside beta rho + (1 - 2 beta) P_M rho
                rho.mul_(beta).add_(field, alpha=1.0 - 2.0 * beta)
                torch.where(inside, field, rho, out=rho)

            if twin_keep is not None and it == settings.twin.iteration:
                rho.mul_(twin_keep)
            if average is not None and it >= avg_from:
                average.add_(rho)
            it += 1

    obj = rho if average is None else average.div_(settings.average_last)
    torch.fft.fftn(obj, dim=dims, norm="ortho", out=field)
    error = fourier_error(field, amplitude, measured, ndim)
    return IterationResult(obj=obj, support=support, error=error, history=history)
