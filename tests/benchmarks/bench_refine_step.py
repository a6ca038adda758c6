"""Cost of a refinement step against the FFT pair it needs, batched.

    python tests/benchmarks/bench_refine_step.py                      # 64^3, batches 1, 4, 16
    python tests/benchmarks/bench_refine_step.py --batches 4 --repeats 3 --steps 5   # short

Per batch size ``S``, side by side in one run (milliseconds per scan, and as a
multiple of the FFT pair, forward and inverse, on the same batch):

- ``fft pair``: ``ifftn(fftn(x))`` on ``(S, *grid)`` complex64;
- ``eager autograd``: the amplitude loss with its closed-form scale on
  ``physics.far_field(obj * support).abs()``, backward by torch's autograd
  through ``fftshift``/``fftn``/``abs``;
- ``analytic forward+backward``: the same loss on
  :func:`cdiplatform.phasing.forward.far_field_magnitude` (one FFT each way)
  of the object already zero outside its support, as ``refine`` calls it;
- ``adam step`` / ``lbfgs step``: a whole optimizer step of
  :func:`cdiplatform.phasing.refine.refine`'s loop (evaluation, update; the
  L-BFGS two-loop recursion and line search), ``complex`` parametrization.

Timings on a shared machine are noisy: read the ratios of one run, and
print ``/proc/loadavg`` beside them (done at the end).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cdiplatform.phasing.forward import amplitude_loss, far_field_magnitude
from cdiplatform.phasing.optimizers import BatchedAdam, BatchedLBFGS
from cdiplatform.phasing.refine import _Problem
from cdiplatform.phasing.refine_settings import RefineSettings
from cdiplatform.physics.fft import far_field


def crystal_batch(S: int, n: int, rng: np.random.Generator):
    """``S`` balls of diameter ``n / 2`` with a quadratic phase on ``n^3`` grids, their magnitudes and a support."""
    axes = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    r2 = sum(a**2 for a in axes) / (n / 4) ** 2
    amp = np.clip(3 * (1 - r2), 0, 1)
    objs = np.stack([amp * np.exp(1j * rng.normal() * r2) for _ in range(S)]).astype(np.complex64)
    mag = np.abs(far_field(objs, ndim=3)).astype(np.float32)
    return objs, mag, np.broadcast_to(amp > 0, objs.shape).copy()


def timed(fn, repeats: int, steps: int) -> float:
    """Best over ``repeats`` of the mean seconds of ``steps`` calls (after one warm-up call)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory", type=int, default=5, help="L-BFGS pairs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    dims = (1, 2, 3)
    print(f"grid {args.grid}^3, {args.threads} torch thread(s), best of {args.repeats} x {args.steps} steps")
    print(f"{'S':>3} {'what':28s} {'ms/scan':>9} {'x pair':>7}")
    for S in args.batches:
        objs, mag, support = crystal_batch(S, args.grid, rng)
        obj_t = torch.from_numpy(objs)
        amp_t = torch.from_numpy(mag)
        sup_t = torch.from_numpy(support)

        def pair(obj_t=obj_t):
            torch.fft.ifftn(torch.fft.fftn(obj_t, dim=dims, norm="ortho"), dim=dims, norm="ortho")

        def eager(obj_t=obj_t, sup_t=sup_t, amp_t=amp_t):
            x = obj_t.detach().requires_grad_(True)
            m = far_field(x * sup_t, ndim=3).abs()
            torch.autograd.grad(amplitude_loss(m, amp_t, ndim=3).loss.sum(), x)

        amp_u = torch.fft.ifftshift(amp_t, dim=dims).contiguous()
        sup_u = torch.fft.ifftshift(sup_t, dim=dims).contiguous()
        masked_u = torch.fft.ifftshift(obj_t, dim=dims) * sup_u

        def analytic(masked_u=masked_u, amp_u=amp_u):  # as refine calls it: zero outside the support already
            x = masked_u.detach().requires_grad_(True)
            m = far_field_magnitude(x, None, ndim=3)
            torch.autograd.grad(amplitude_loss(m, amp_u, ndim=3).loss.sum(), x)

        results = [("fft pair", timed(pair, args.repeats, args.steps)),
                   ("eager autograd", timed(eager, args.repeats, args.steps)),
                   ("analytic forward+backward", timed(analytic, args.repeats, args.steps))]
        for name in ("adam", "lbfgs"):
            settings = RefineSettings(optimizer=name, shrink_wrap=None, memory=args.memory)
            problem = _Problem(amp_u, None, sup_u.clone(), ndim=3, settings=settings)
            noise = torch.from_numpy(np.exp(0.3j * rng.normal(size=objs.shape)).astype(np.complex64))
            x = problem.to_params(torch.fft.ifftshift(obj_t * noise, dim=dims)).contiguous()
            opt = (BatchedAdam(x, lr=0.01) if name == "adam" else BatchedLBFGS(x, lr=0.01, memory=args.memory))
            state = {"x": x, "ev": problem.evaluate(x, None)}
            for _ in range(args.memory):  # fill the L-BFGS history before timing
                state["x"], state["ev"], _ = opt.step(state["x"], state["ev"], problem.evaluate)

            def step(opt=opt, problem=problem, state=state):
                state["x"], state["ev"], _ = opt.step(state["x"], state["ev"], problem.evaluate)

            before = problem.evaluations.clone()
            sec = timed(step, args.repeats, args.steps)
            per_step = float((problem.evaluations - before).double().mean()) / (1 + args.repeats * args.steps)
            results.append((f"{name} step ({per_step:.2f} evals)", sec))
        base = results[0][1]
        for name, sec in results:
            print(f"{S:>3} {name:28s} {sec / S * 1e3:9.2f} {sec / base:7.2f}")
    print("loadavg:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
