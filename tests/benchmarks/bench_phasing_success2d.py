"""Success rate of the papers' ER/HIO baseline on simulated 2D objects (zero-padded).

    python tests/benchmarks/bench_phasing_success2d.py [--n 200] [--starts 4] [--threads 1]

Objects from :func:`cdiplatform.simulate.objects2d.simulate_2d` (32x32,
zero-padded to 64x64: oversampled 2x), phased with the recipe ``paper_2d``
(620 iterations ``3*(20*ER+180*HIO)+20*ER``, shrink-wrap, final 20 averaged)
with ``--starts`` random starts, the best chosen by the reciprocal-space error
only. Each result is cropped to the 32x32 model grid, aligned on the truth
(shift, twin, constant phase) and scored: a success has an amplitude error
<= 0.1 and an RMS phase error <= 0.3 rad inside the true support. Target:
>= 80% (aiming at 90%).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cdiplatform.phasing import phase_retrieval, recipe
from cdiplatform.physics.metrics import compare_with_truth
from cdiplatform.simulate.objects2d import simulate_2d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--starts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--figure", default="docs/figures/er_hio_2d_failures.png",
                    help="where to draw the failures (truth and reconstruction, with the reason)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = simulate_2d([np.random.default_rng([args.seed, i]) for i in range(args.n)], size=32, pad=2)
    amp = np.sqrt(data["intensity"])
    settings = recipe("paper_2d", n_starts=args.starts)
    t0 = time.perf_counter()
    objs, chis = [], []
    for lo in range(0, args.n, args.batch):
        rngs = [np.random.default_rng([args.seed, 1, i]) for i in range(lo, min(lo + args.batch, args.n))]
        res = phase_retrieval(amp[lo : lo + args.batch], ndim=2, settings=settings, rngs=rngs)
        objs.append(res.obj)
        chis.append(res.error)
    seconds = time.perf_counter() - t0
    obj, chi = np.concatenate(objs), np.concatenate(chis)
    crop = (slice(16, 48), slice(16, 48))
    ae, pe = np.empty(args.n), np.empty(args.n)
    for i in range(args.n):
        c = compare_with_truth(obj[i][crop], data["amplitude"][i][crop], data["phase"][i][crop])
        ae[i], pe[i] = c.amplitude_error, c.phase_error
    ok = (ae <= 0.1) & (pe <= 0.3)
    print(f"threads {torch.get_num_threads()}, {args.n} objects x {args.starts} starts: {seconds:.1f} s")
    print(f"success rate {ok.mean():.3f} ({ok.sum()}/{args.n}); target >= 0.80, aim 0.90")
    for name, e in (("amplitude error", ae), ("phase error (rad)", pe)):
        print(f"{name}: median {np.median(e):.4f}, 90th pct {np.percentile(e, 90):.4f}, max {e.max():.4f}")
    print(f"chi: median {np.median(chi):.2e}, max {chi.max():.2e}")
    if (~ok).any():
        bad = np.nonzero(~ok)[0]
        print("failures (index, amplitude error, phase error, chi):")
        for i in bad[:20]:
            print(f"  {i:4d} {ae[i]:.4f} {pe[i]:.4f} {chi[i]:.2e}")
        _draw_failures(args.figure, bad[:8], data, obj, crop, ae, pe, chi)


def _reason(ae: float, pe: float) -> str:
    parts = [f"amplitude error {ae:.3f} > 0.1" if ae > 0.1 else "", f"phase error {pe:.2f} > 0.3 rad" if pe > 0.3 else ""]
    return "; ".join(p for p in parts if p)


def _draw_failures(path, bad, data, obj, crop, ae, pe, chi) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, len(bad), figsize=(2.2 * len(bad), 8.6), squeeze=False)
    for col, i in enumerate(bad):
        support = data["amplitude"][i][crop] > 0.1
        panels = (data["amplitude"][i][crop], np.abs(obj[i][crop]),
                  np.where(support, data["phase"][i][crop], np.nan), np.where(support, np.angle(obj[i][crop]), np.nan))
        for row, (img, title) in enumerate(zip(panels, ("true amplitude", "ER/HIO amplitude", "true phase",
                                                        "ER/HIO phase"))):
            ax = axes[row][col]
            ax.imshow(img, cmap="gray" if row < 2 else "twilight")
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title)
        axes[0][col].set_title(f"object {i}\nchi {chi[i]:.1e}", fontsize=8)
        axes[3][col].set_xlabel(_reason(ae[i], pe[i]).replace("; ", "\n"), fontsize=7)
    fig.suptitle("ER/HIO failures on simulated 2D objects (best of the starts, before alignment)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"figure of the failures: {path}")


if __name__ == "__main__":
    main()
