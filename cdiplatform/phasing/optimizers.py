"""Adam and L-BFGS for a batch of independent problems, one per scan.

Each scan is its own optimization problem: every quantity an optimizer keeps
(Adam's moments, L-BFGS's step and gradient-change pairs, curvature scale,
line-search step) is per scan, and every reduction (dot products, maxima)
runs over one scan's parameters only. A scan's trajectory therefore does not
depend on which other scans share its batch (on CPU the arithmetic is the
same to the bit; see ``docs/refinement.md``). ``torch.optim.LBFGS`` would
instead share one line search and one curvature history across the batch.

The parameters are one real tensor ``x`` of shape ``(S, ...)`` (in refinement,
the packed support voxels of :mod:`cdiplatform.phasing.packing`, zeros on
pads, which both optimizers keep zero). An
``evaluate(x, rows)`` callable returns a dict of per-scan tensors with at
least ``"loss"`` (float64, ``(n,)``) and ``"grad"`` (the shape of ``x``) for
the scans ``rows`` (a LongTensor of positions in the batch; ``None``: all).
``keep(mask)`` drops the scans that stopped from the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["BatchedAdam", "BatchedLBFGS", "Evaluate"]

Evaluate = Callable[[torch.Tensor, "torch.Tensor | None"], dict[str, torch.Tensor]]

_TINY = 1e-30


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-scan dot product over everything but the first axis, float64 ``(S,)``."""
    return (a * b).flatten(1).sum(dim=1, dtype=torch.float64)


def _per_scan(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(S,)`` values shaped to broadcast against ``like`` ``(S, ...)``, in its dtype."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1)).to(like.dtype)


def _merge(into: dict[str, torch.Tensor], rows: torch.Tensor, part: dict[str, torch.Tensor]) -> None:
    for key, value in part.items():
        into[key][rows] = value


class BatchedAdam:
    """Adam (Kingma & Ba) with moments per scan; every scan steps at every call.

    Parameters
    ----------
    x : torch.Tensor
        The parameters (for the state's shapes).
    lr : float
        Step size in parameter units.
    betas : (float, float)
    eps : float
        Added to the root of the second moment; small, because the
        gradients of a normalized chi-square over many voxels are small.
    """

    def __init__(self, x: torch.Tensor, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-12) -> None:
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    def step(self, x: torch.Tensor, ev: dict[str, torch.Tensor], evaluate: Evaluate):
        """One step from ``x`` (gradient in ``ev``), in place; returns ``(x, ev at x, failed (S,) bool)``."""
        b1, b2 = self.betas
        g = ev["grad"]
        self.t += 1
        self.m.mul_(b1).add_(g, alpha=1.0 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        denom = self.v.sqrt().div_(math.sqrt(1.0 - b2**self.t)).add_(self.eps)
        x.addcdiv_(self.m, denom, value=-self.lr / (1.0 - b1**self.t))
        return x, evaluate(x, None), torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def new_layout(self, move: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> None:
        """The parameters moved to a new layout (``move``); the scans ``rows`` got new supports.

        The moments follow their voxels (new voxels start at 0).
        """
        self.m, self.v = move(self.m), move(self.v)

    def keep(self, mask: torch.Tensor) -> None:
        self.m, self.v = self.m[mask], self.v[mask]


class BatchedLBFGS:
    """Limited-memory BFGS with a backtracking (Armijo) line search, all of it per scan.

    The two-loop recursion runs over ``memory`` slots shared in position by
    the batch, each holding every scan's own pair; a pair that fails the
    curvature test (``s . y <= 0``) is stored with weight 0, which makes it a
    no-op for that scan alone. Without a valid pair a scan's direction is
    steepest descent scaled so that its largest component is ``lr``; with
    one, the initial inverse Hessian is ``s.y / y.y`` of its latest pair.
    The line search starts at step 1 and halves per scan until the loss
    falls by ``c1 * step * g.d``; only the scans still searching are
    evaluated again. A scan whose search fails after ``max_backtracks``
    halvings (numerically converged) is reported as failed and does not move.

    Parameters
    ----------
    x : torch.Tensor
    lr : float
    memory : int
    c1 : float
    max_backtracks : int
    """

    def __init__(self, x: torch.Tensor, *, lr: float, memory: int = 5, c1: float = 1e-4,
                 max_backtracks: int = 20) -> None:
        self.lr, self.memory, self.c1, self.max_backtracks = float(lr), int(memory), float(c1), int(max_backtracks)
        S = x.shape[0]
        self.s_hist = torch.zeros((self.memory,) + tuple(x.shape), dtype=x.dtype, device=x.device)
        self.y_hist = torch.zeros_like(self.s_hist)
        self.rho = torch.zeros((self.memory, S), dtype=torch.float64, device=x.device)
        self.gamma = torch.zeros(S, dtype=torch.float64, device=x.device)
        self.has_pair = torch.zeros(S, dtype=torch.bool, device=x.device)
        self.slot = 0
        self.filled = 0

    def _steepest_scale(self, g: torch.Tensor) -> torch.Tensor:
        return self.lr / g.abs().flatten(1).amax(dim=1).to(torch.float64).clamp_min(_TINY)

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        q = g.clone()
        order = [(self.slot - 1 - j) % self.memory for j in range(self.filled)]
        alphas = []
        for k in order:
            a = self.rho[k] * _dot(self.s_hist[k], q)
            q.sub_(self.y_hist[k] * _per_scan(a, q))
            alphas.append(a)
        scale = torch.where(self.has_pair, self.gamma, self._steepest_scale(g))
        q.mul_(_per_scan(scale, q))
        for k, a in zip(reversed(order), reversed(alphas)):
            b = self.rho[k] * _dot(self.y_hist[k], q)
            q.add_(self.s_hist[k] * _per_scan(a - b, q))
        return q.neg_()

    def step(self, x: torch.Tensor, ev: dict[str, torch.Tensor], evaluate: Evaluate):
        """One step from ``x`` with loss and gradient ``ev``; returns ``(x_new, ev at x_new, failed (S,) bool)``."""
        g, f = ev["grad"], ev["loss"]
        d = self._direction(g)
        gd = _dot(g, d)
        uphill = ~(gd < 0)
        if uphill.any():  # not a descent direction (lost curvature): restart those scans from steepest descent
            self.reset(uphill)
            steep = -g * _per_scan(self._steepest_scale(g), g)
            d = torch.where(uphill.reshape((-1,) + (1,) * (g.ndim - 1)), steep, d)
            gd = _dot(g, d)
        step = torch.ones_like(f)
        x_new = x + d
        ev_new = evaluate(x_new, None)
        ok = ev_new["loss"] <= f + self.c1 * step * gd
        for _ in range(self.max_backtracks):
            rows = torch.nonzero(~ok).flatten()
            if rows.numel() == 0:
                break
            step[rows] *= 0.5
            x_new[rows] = x[rows] + d[rows] * _per_scan(step[rows], d[rows])
            _merge(ev_new, rows, evaluate(x_new[rows], rows))
            ok[rows] = ev_new["loss"][rows] <= f[rows] + self.c1 * step[rows] * gd[rows]
        failed = ~ok
        if failed.any():  # stay where the scan was
            rows = torch.nonzero(failed).flatten()
            x_new[rows] = x[rows]
            _merge(ev_new, rows, {key: value[rows] for key, value in ev.items()})
        s = x_new - x
        y = ev_new["grad"] - g
        sy = _dot(s, y)
        yy = _dot(y, y)
        valid = ok & (sy > 0) & (yy > 0)
        self.s_hist[self.slot] = s
        self.y_hist[self.slot] = y
        self.rho[self.slot] = torch.where(valid, 1.0 / sy.clamp_min(_TINY), 0.0)
        self.gamma = torch.where(valid, sy / yy.clamp_min(_TINY), self.gamma)
        self.has_pair |= valid
        self.slot = (self.slot + 1) % self.memory
        self.filled = min(self.filled + 1, self.memory)
        return x_new, ev_new, failed

    def reset(self, rows: torch.Tensor) -> None:
        """Forget the curvature of the scans ``rows`` (bool mask or indices)."""
        self.rho[:, rows] = 0.0
        self.has_pair[rows] = False

    def new_layout(self, move: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> None:
        """The parameters moved to a new layout (``move``); the scans ``rows`` got new supports.

        Their problem changed, so they forget their curvature; the others keep it.
        """
        self.s_hist = torch.stack([move(h) for h in self.s_hist])
        self.y_hist = torch.stack([move(h) for h in self.y_hist])
        self.reset(rows)

    def keep(self, mask: torch.Tensor) -> None:
        self.s_hist, self.y_hist = self.s_hist[:, mask], self.y_hist[:, mask]
        self.rho, self.gamma, self.has_pair = self.rho[:, mask], self.gamma[mask], self.has_pair[mask]
