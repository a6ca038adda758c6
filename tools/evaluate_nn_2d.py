"""Evaluate a trained CDI NN (2D) on held-out objects against a trivial baseline; write docs figures.

    python tools/evaluate_nn_2d.py --model catalogs/examples.zarr:models/cdi_nn_2d --n 1000

Simulates ``--n`` fresh objects (a seed the training never used), predicts
shape and phase, and measures per object, as the 2018 paper's Fig. 4:

- the reciprocal-space error: ``chi_square`` of the predicted object's far
  field against the measured magnitudes;
- the shape error: mean absolute error of the amplitudes (both max 1) and the
  phase error: RMS inside the true support, after alignment (shift, twin,
  constant phase) — :func:`cdiplatform.physics.metrics.compare_with_truth`.

The trivial baseline predicts the mean training object for every scan. Prints
the medians and writes ``docs/figures/nn2d_errors.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from cdiplatform.catalog import load_model_arrays
    from cdiplatform.nn import load_model, make_inputs, predict
    from cdiplatform.physics.metrics import chi_square, compare_with_truth
    from cdiplatform.simulate import simulate_2d

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="catalogs/examples.zarr:models/cdi_nn_2d")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=987654321)
    parser.add_argument("--baseline-n", type=int, default=4096, help="objects averaged into the baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    torch.set_num_threads(2)

    weights, config, digest = load_model_arrays(args.model)
    model = load_model(weights, config, expected_hash=digest)
    rngs = [np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(i,))) for i in range(args.n)]
    test = simulate_2d(rngs)
    amp_pred, phase_pred = predict(model, make_inputs(test["intensity"], ndim=2), batch_size=256)

    base_rngs = [np.random.default_rng(np.random.SeedSequence(args.seed + 1, spawn_key=(i,)))
                 for i in range(args.baseline_n)]
    base = simulate_2d(base_rngs)
    mean_amp = (base["amplitude"] / base["amplitude"].max(axis=(1, 2), keepdims=True)).mean(axis=0)
    mean_phase = base["phase"].mean(axis=0)

    magnitude = np.sqrt(test["intensity"])
    rows = {"nn": [], "baseline": []}
    for i in range(args.n):
        truth_a, truth_p = test["amplitude"][i], test["phase"][i]
        for name, (a, p) in {"nn": (amp_pred[i], phase_pred[i]), "baseline": (mean_amp, mean_phase)}.items():
            obj = a * np.exp(1j * p)
            # the prediction's scale is free: fit it to the measured magnitudes
            chi = float(chi_square(obj, magnitude[i], ndim=2, fit_scale=True))
            cmp = compare_with_truth(obj, truth_a, truth_p)
            rows[name].append((chi, cmp.amplitude_error, cmp.phase_error))
    stats = {}
    for name, values in rows.items():
        arr = np.asarray(values)
        stats[name] = {"chi_median": float(np.median(arr[:, 0])), "shape_error_median": float(np.median(arr[:, 1])),
                       "phase_error_median": float(np.median(arr[:, 2]))}
    ratio = {k: stats["nn"][k] / stats["baseline"][k] for k in stats["nn"]}
    print(json.dumps({"model": args.model, "weights_hash": digest, "n": args.n, "medians": stats,
                      "nn_over_baseline": ratio}, indent=1))

    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    labels = ("reciprocal-space error (chi)", "shape error (MAE, max 1)", "phase error (RMS rad, in support)")
    for k, (ax, label) in enumerate(zip(axes, labels)):
        nn_v, base_v = np.asarray(rows["nn"])[:, k], np.asarray(rows["baseline"])[:, k]
        bins = np.linspace(0, np.percentile(np.concatenate([nn_v, base_v]), 99), 40)
        ax.hist(base_v, bins=bins, alpha=0.6, label="mean object (baseline)")
        ax.hist(nn_v, bins=bins, alpha=0.6, label="CDI NN")
        ax.set_xlabel(label)
        ax.set_ylabel("objects")
    axes[0].legend()
    fig.suptitle(f"CDI NN (2D) on {args.n} held-out objects")
    fig.tight_layout()
    fig.savefig(args.out / "nn2d_errors.png", dpi=110)
    print(f"figure: {args.out / 'nn2d_errors.png'}")


if __name__ == "__main__":
    main()
