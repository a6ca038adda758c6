"""Gradient refinement of starting objects against measured magnitudes, many scans in one batch.

:func:`refine` takes the measured magnitudes of ``S`` scans, a starting object
and support for each (a network's prediction mapped to the phasing grid, a
phase-retrieval result, ...) and minimizes a loss of the platform's forward
model (:mod:`cdiplatform.phasing.forward`: object times support, unitary far
field, magnitude, scale fitted in closed form) with Adam or L-BFGS, with
shrink-wrap updates of the support, until each scan's stopping rule holds.

Every scan is its own problem: its step sizes, line search, curvature
history, stopping rule and shrink-wrap rule see only its own loss and
gradient (:mod:`cdiplatform.phasing.optimizers`); a scan that stops leaves
the batch, the others go on. Science code only: NumPy or torch in, NumPy out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from cdiplatform.phasing.forward import amplitude_loss, far_field_magnitude, poisson_loss
from cdiplatform.phasing.optimizers import BatchedAdam, BatchedLBFGS
from cdiplatform.phasing.packing import SupportPacking
from cdiplatform.phasing.refine_settings import RefineSettings
from cdiplatform.phasing.retrieval import seed_support
from cdiplatform.physics.metrics import chi_square, poisson_llk

__all__ = ["RefineResult", "refine"]

_TINY = 1e-30


@dataclass
class RefineResult:
    """What :func:`refine` returns (NumPy, centred layout, zero frequency and object centre at ``N // 2``).

    Attributes
    ----------
    obj : ndarray, complex64, ``(S, *grid)``
        The refined object times its support, on the platform's scale (its
        far field fits the measured magnitudes with scale 1).
    support : ndarray, bool, ``(S, *grid)``
        The final support.
    chi : ndarray, float64, ``(S,)``
        :func:`cdiplatform.physics.metrics.chi_square` of ``obj`` (no scale
        fitted), as ``phase_retrieval`` reports it.
    llk : ndarray, float64, ``(S,)``
        :func:`cdiplatform.physics.metrics.poisson_llk` of ``obj`` against
        ``amplitude**2`` (no scale fitted).
    iterations : ndarray, int64, ``(S,)``
        Optimizer steps taken.
    evaluations : ndarray, int64, ``(S,)``
        Forward and backward passes (FFT pairs) spent on the scan, line
        searches and support updates included.
    seconds : ndarray, float64, ``(S,)``
        The batch's wall time shared among its scans in proportion to their
        evaluations.
    status : list of str
        Why each scan stopped: ``"converged"`` (stopping rule), ``"stalled"``
        (L-BFGS line search found no decrease: converged to float precision)
        or ``"max_iterations"``.
    loss_history : list of ndarray, float64
        Per scan, the loss at the start and after every step (after a
        support update, the loss with the new support).
    time_history : list of ndarray, float64, ``(n, 3)``
        Per scan, rows ``(iteration, seconds since the call started, chi)``
        at the start, every ``record_every`` steps and at the end; the
        seconds are the batch's wall clock.
    """

    obj: np.ndarray
    support: np.ndarray
    chi: np.ndarray
    llk: np.ndarray
    iterations: np.ndarray
    evaluations: np.ndarray
    seconds: np.ndarray
    status: list[str]
    loss_history: list[np.ndarray]
    time_history: list[np.ndarray]


def _as_tensor(x, device, dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _validate(amplitude, start, support, measured) -> int:
    ndim = amplitude.ndim - 1
    if ndim not in (2, 3):
        raise ValueError(f"amplitude must have shape (scan, *grid) with a 2D or 3D grid, not {tuple(amplitude.shape)}")
    for name, arr in (("start", start), ("support", support), ("measured", measured)):
        if arr is not None and tuple(arr.shape) != tuple(amplitude.shape):
            raise ValueError(f"{name} of shape {tuple(arr.shape)} differs from amplitude {tuple(amplitude.shape)}")
    if not torch.isfinite(amplitude).all():
        raise ValueError("amplitude holds NaN or infinite values")
    if (amplitude < 0).any():
        raise ValueError("amplitude has negative values")
    if not torch.isfinite(torch.view_as_real(start)).all():
        raise ValueError("start holds NaN or infinite values")
    dims = tuple(range(1, amplitude.ndim))
    empty = ~(support & (start.abs() > 0)).any(dim=dims)
    if empty.any():
        raise ValueError(f"start is zero over its whole support in scan(s) {torch.nonzero(empty).flatten().tolist()}")
    weight = amplitude if measured is None else amplitude * measured
    dark = ~(weight > 0).any(dim=dims)
    if dark.any():
        raise ValueError(f"no measured signal in scan(s) {torch.nonzero(dark).flatten().tolist()}")
    return ndim


class _Problem:
    """The scans still in the batch: data (unshifted layout), supports, and the parameters' layout.

    The parameters are packed (:class:`~cdiplatform.phasing.packing.SupportPacking`):
    ``x`` of shape ``(S, P, 2)``, per support voxel its real and imaginary
    parts (``"complex"``) or its amplitude and phase (``"polar"``).
    """

    def __init__(self, amplitude, weight, support, *, ndim: int, settings: RefineSettings) -> None:
        self.amplitude, self.weight, self.support = amplitude, weight, support
        self.ndim = ndim
        self.loss_fn = amplitude_loss if settings.loss == "amplitude" else poisson_loss
        self.polar = settings.parametrization == "polar"
        self.packing = SupportPacking(support)
        self.evaluations = torch.zeros(amplitude.shape[0], dtype=torch.int64)

    def to_params(self, obj: torch.Tensor) -> torch.Tensor:
        """Complex ``(S, *grid)`` -> packed parameters ``(S, P, 2)``."""
        if self.polar:
            return self.packing.pack(torch.stack([obj.abs(), obj.angle()], dim=-1))
        return self.packing.pack(torch.view_as_real(obj))

    def _parts(self, x: torch.Tensor) -> torch.Tensor:
        """Packed parameters -> packed (real, imaginary) parts."""
        if not self.polar:
            return x
        amp, phase = x[..., 0], x[..., 1]
        return torch.stack([amp * torch.cos(phase), amp * torch.sin(phase)], dim=-1)

    def to_object(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Packed parameters of the scans ``rows`` -> complex ``(n, *grid)``, zero outside the support."""
        return torch.view_as_complex(self.packing.rows(rows).unpack(self._parts(x)))

    def evaluate(self, x: torch.Tensor, rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Loss, gradient (packed, zeros on pads), chi and scale of the parameters ``x`` of the scans ``rows``."""
        pick = (lambda t: t) if rows is None else (lambda t: None if t is None else t[rows])
        obj = self.to_object(x, rows).requires_grad_(True)
        mag = far_field_magnitude(obj, None, ndim=self.ndim)  # obj is zero outside the support already
        value = self.loss_fn(mag, pick(self.amplitude), ndim=self.ndim, weight=pick(self.weight))
        (grad_obj,) = torch.autograd.grad(value.loss.sum(), obj)
        g = self.packing.rows(rows).pack(torch.view_as_real(grad_obj))  # dL/dRe, dL/dIm per voxel
        if self.polar:  # chain rule through (a cos p, a sin p)
            amp, phase = x[..., 0], x[..., 1]
            cos, sin = torch.cos(phase), torch.sin(phase)
            g = torch.stack([g[..., 0] * cos + g[..., 1] * sin, amp * (g[..., 1] * cos - g[..., 0] * sin)], dim=-1)
        counted = slice(None) if rows is None else rows.cpu()
        self.evaluations[counted] += 1
        return {"loss": value.loss.detach(), "grad": g, "chi": value.chi, "scale": value.scale}

    def new_supports(self, rows: torch.Tensor, support: torch.Tensor):
        """Give the scans ``rows`` new supports; return the map of packed tensors onto the new layout.

        Every packed quantity follows its voxel: a voxel that stays in its
        scan's support keeps its value, a new one starts at 0.
        """
        old = self.packing
        self.support[rows] = support
        self.packing = SupportPacking(self.support)
        new = self.packing

        def transfer(packed: torch.Tensor) -> torch.Tensor:
            return new.pack(old.unpack(packed))

        return transfer

    def keep(self, mask: torch.Tensor) -> None:
        self.amplitude, self.support = self.amplitude[mask], self.support[mask]
        self.weight = None if self.weight is None else self.weight[mask]
        self.packing = self.packing.rows(mask)
        self.evaluations = self.evaluations[mask.cpu()]


def refine(
    amplitude,
    start,
    support,
    *,
    settings: RefineSettings | None = None,
    measured=None,
    device: str | torch.device = "cpu",
) -> RefineResult:
    """Refine starting objects by gradient descent on a loss of the far-field magnitude.

    Parameters
    ----------
    amplitude : array or torch.Tensor, float, ``(S, *grid)``
        Measured magnitudes ``sqrt(I)`` (``I`` in photons for the Poisson
        loss), zero frequency at ``N // 2``; 2D or 3D grids.
    start : array or torch.Tensor, complex, ``(S, *grid)``
        Starting objects, centre at ``N // 2``; any overall scale (the scale
        is fitted).
    support : array or torch.Tensor, bool, ``(S, *grid)``
        Starting supports, centred; the object counts only inside.
    settings : RefineSettings, optional
    measured : bool array ``(S, *grid)``, optional
        True where ``amplitude`` was measured; all pixels by default.
    device : str or torch.device
        Where to run (``"cuda"`` when there is one).

    Returns
    -------
    RefineResult

    Raises
    ------
    ValueError
        On shapes that differ, non-finite or negative magnitudes, a start that
        is zero over its support, a scan without measured signal.
    """
    settings = RefineSettings() if settings is None else settings
    device = torch.device(device)
    amp = _as_tensor(amplitude, device, torch.float32)
    obj0 = _as_tensor(start, device, torch.complex64)
    sup = _as_tensor(support, device, torch.bool)
    meas = None if measured is None else _as_tensor(measured, device, torch.bool)
    ndim = _validate(amp, obj0, sup, meas)
    S, grid = amp.shape[0], tuple(amp.shape[1:])
    dims = tuple(range(-ndim, 0))
    t0 = time.perf_counter()

    # unshifted layout inside; the start normalized to a maximum amplitude of 1 inside its support
    amp_u = torch.fft.ifftshift(amp, dim=dims).contiguous()
    sup_u = torch.fft.ifftshift(sup, dim=dims).contiguous()
    weight_u = None if meas is None else torch.fft.ifftshift(meas, dim=dims).to(torch.float32).contiguous()
    obj_u = torch.fft.ifftshift(obj0, dim=dims) * sup_u
    peak = obj_u.abs().flatten(1).amax(dim=1).reshape((-1,) + (1,) * ndim)
    obj_u = obj_u / peak

    problem = _Problem(amp_u, weight_u, sup_u, ndim=ndim, settings=settings)
    x = problem.to_params(obj_u).contiguous()
    if settings.optimizer == "adam":
        opt = BatchedAdam(x, lr=settings.learning_rate, betas=settings.betas)
    else:
        opt = BatchedLBFGS(x, lr=settings.learning_rate, memory=settings.memory)
    sw = settings.shrink_wrap

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    ev = problem.evaluate(x, None)
    rows = list(range(S))  # batch position -> scan
    losses: list[list[float]] = [[v] for v in ev["loss"].cpu().tolist()]
    times: list[list[tuple[float, float, float]]] = [[(0, sync(), c)] for c in ev["chi"].cpu().tolist()]
    sw_loss = ev["loss"].cpu().numpy().copy()  # loss at the last support update, per batch position
    since_update = np.zeros(S, dtype=np.int64)

    out_obj = np.empty((S,) + grid, dtype=np.complex64)
    out_sup = np.empty((S,) + grid, dtype=bool)
    iterations = np.zeros(S, dtype=np.int64)
    evaluations = np.zeros(S, dtype=np.int64)
    status = [""] * S

    def finish(mask: np.ndarray, why: list[str], iteration: int) -> None:
        """Write out the scans at the batch positions ``mask`` and drop them from the batch."""
        pos = np.flatnonzero(mask)
        sel = torch.as_tensor(pos, device=device)
        obj = problem.to_object(x[sel], sel) * ev["scale"][sel].to(torch.float32).reshape((-1,) + (1,) * ndim)
        obj_c = torch.fft.fftshift(obj, dim=dims).cpu().numpy()
        sup_c = torch.fft.fftshift(problem.support[sel], dim=dims).cpu().numpy()
        chi_now = ev["chi"][sel].cpu().tolist()
        now = sync()
        for j, p in enumerate(pos):
            scan = rows[p]
            out_obj[scan], out_sup[scan] = obj_c[j], sup_c[j]
            iterations[scan] = iteration
            evaluations[scan] = int(problem.evaluations[p])
            status[scan] = why[j]
            if times[scan][-1][0] != iteration:
                times[scan].append((iteration, now, chi_now[j]))

    def keep(mask: np.ndarray) -> None:
        nonlocal x, ev, rows, sw_loss, since_update
        km = torch.as_tensor(mask, device=device)
        x = x[km].contiguous()
        ev = {k: v[km] for k, v in ev.items()}
        problem.keep(km)
        opt.keep(km)
        rows = [r for r, k in zip(rows, mask) if k]
        sw_loss, since_update = sw_loss[mask], since_update[mask]

    for it in range(1, settings.max_iterations + 1):
        x, ev, failed = opt.step(x, ev, problem.evaluate)
        loss_now = ev["loss"].cpu().numpy()
        for p, scan in enumerate(rows):
            losses[scan].append(float(loss_now[p]))
        since_update += 1
        if settings.record_every and it % settings.record_every == 0:
            now = sync()
            for p, c in enumerate(ev["chi"].cpu().tolist()):
                times[rows[p]].append((it, now, c))

        if sw is not None and it % sw.period == 0:
            update = loss_now <= (1.0 - sw.min_improvement) * sw_loss
            if update.any():
                pos = torch.as_tensor(np.flatnonzero(update), device=device)
                new = seed_support(problem.to_object(x[pos], pos), sw.threshold, ndim=ndim, sigma=sw.sigma)
                move = problem.new_supports(pos, new)  # every packed tensor follows its voxels
                x, ev["grad"] = move(x), move(ev["grad"])
                opt.new_layout(move, pos)
                for key, value in problem.evaluate(x[pos], pos).items():
                    ev[key][pos] = value
                for p, loss in zip(pos.tolist(), ev["loss"][pos].cpu().tolist()):
                    losses[rows[p]][-1] = loss  # the history holds the loss of the problem as it now stands
                sw_loss[update] = loss_now[update]
                since_update[update] = 0

        # stopping rule, per scan: relative decrease over the last `window` steps
        stop = failed.cpu().numpy().copy()
        why = ["stalled" if f else "" for f in stop]
        if settings.tolerance > 0:
            for p, scan in enumerate(rows):
                if stop[p] or since_update[p] < settings.window:
                    continue
                hist = losses[scan]
                before, now = hist[-1 - settings.window], hist[-1]
                if now == 0.0 or before - now <= settings.tolerance * abs(before):
                    stop[p], why[p] = True, "converged"
        if it == settings.max_iterations:
            why = [w or "max_iterations" for w in why]
            stop[:] = True
        if stop.any():
            finish(stop, [w for w, s in zip(why, stop) if s], it)
            if stop.all():
                break
            keep(~stop)

    total = sync()
    share = evaluations / max(int(evaluations.sum()), 1)
    mask_np = None if meas is None else meas.cpu().numpy()
    amp_np = amp.cpu().numpy()
    return RefineResult(
        obj=out_obj,
        support=out_sup,
        chi=np.asarray(chi_square(out_obj, amp_np, ndim=ndim, measured=mask_np), dtype=np.float64),
        llk=np.asarray(poisson_llk(out_obj, amp_np.astype(np.float64) ** 2, ndim=ndim, measured=mask_np),
                       dtype=np.float64),
        iterations=iterations,
        evaluations=evaluations,
        seconds=total * share,
        status=status,
        loss_history=[np.asarray(h, dtype=np.float64) for h in losses],
        time_history=[np.asarray(t, dtype=np.float64).reshape(-1, 3) for t in times],
    )
