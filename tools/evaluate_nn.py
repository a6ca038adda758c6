"""Evaluate a trained network on held-out scans against a trivial baseline; write a docs figure.

    python tools/evaluate_nn.py --model catalogs/examples.zarr:models/cdi_nn_2d --n 1000
    python tools/evaluate_nn.py --model catalogs/examples.zarr:models/cdi_nn_3d_reduced \
        --test catalogs/train_3d_cdi_nn.zarr:training/gold32

2D without ``--test``: simulates ``--n`` fresh objects (a seed the training
never used); with ``--test``: the test split of an assembled training set
(crystals the network never saw). Per scan, as the 2018 paper's Fig. 4:

- the reciprocal-space error: ``chi_square`` of the predicted object's far
  field against the measured magnitudes (the prediction's scale fitted);
- the shape error: mean absolute error of the amplitudes (both max 1) and the
  phase error: RMS inside the true support, after alignment (whole-pixel
  shift, twin, constant phase) - :func:`cdiplatform.physics.metrics.compare_with_truth`.
  Predictions, baseline and truth all share the grid centre, so the shift is
  kept to whole pixels: a sub-pixel Fourier shift rings at the support's edge,
  where the phase of near-zero amplitude then enters the phase error.

The trivial baseline predicts the mean training object for every scan. Prints
the medians and writes ``docs/figures/<model>_errors.png``
(:func:`cdiplatform.report.figures.error_histograms`, the histograms of
``cdip report``'s summary page).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def simulated_2d(n: int, seed: int) -> dict[str, np.ndarray]:
    from cdiplatform.simulate import simulate_2d

    return simulate_2d([np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,))) for i in range(n)])


def from_training_set(ref: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Test and train splits of an assembled training set, as intensity, amplitude and phase (radians)."""
    from cdiplatform.catalog import open_catalog, parse_node_ref

    path, node = parse_node_ref(ref)
    ds = open_catalog(path).open(node, chunks=None)
    splits = ds.attrs["splits"]
    out = []
    for name in ("test", "train"):
        lo, hi = splits[name]
        part = ds.isel(scan=slice(lo, hi)).load()
        part = part.isel(scan=np.flatnonzero(part["status"].values == 1))
        phase = part["phase"].values * ds.attrs["phase_scale"] + ds.attrs["phase_offset"]
        out.append({"intensity": part["inputs"].values.astype(np.float64) ** 2,
                    "amplitude": part["amplitude"].values, "phase": np.where(part["amplitude"].values > 0, phase, 0)})
    return out[0], out[1]


def main() -> None:
    import torch

    from cdiplatform.catalog import load_model_arrays
    from cdiplatform.nn import load_model, make_inputs, predict
    from cdiplatform.physics.metrics import chi_square, compare_with_truth
    from cdiplatform.report.figures import error_histograms

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="catalogs/examples.zarr:models/cdi_nn_2d")
    parser.add_argument("--test", default="", help="TRAINING_NODE whose test split to use (else simulate 2D)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=987654321)
    parser.add_argument("--baseline-n", type=int, default=4096, help="objects averaged into the 2D baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--average-permutations", action="store_true",
                        help="average the predictions over the axis orders of each scan (nn.predict)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    weights, config, digest = load_model_arrays(args.model)
    model = load_model(weights, config, expected_hash=digest)
    ndim = int(config["ndim"])
    if args.test:
        test, base = from_training_set(args.test)
    else:
        test, base = simulated_2d(args.n, args.seed), simulated_2d(args.baseline_n, args.seed + 1)
    n = len(test["intensity"])
    axes_ = tuple(range(1, ndim + 1))
    amp_pred, phase_pred = predict(model, make_inputs(test["intensity"], ndim=ndim), batch_size=64,
                                   average_permutations=args.average_permutations)
    mean_amp = (base["amplitude"] / base["amplitude"].max(axis=axes_, keepdims=True)).mean(axis=0)
    mean_phase = base["phase"].mean(axis=0)

    magnitude = np.sqrt(test["intensity"])
    rows = {"nn": [], "baseline": []}
    for i in range(n):
        truth_a, truth_p = test["amplitude"][i], test["phase"][i]
        for name, (a, p) in {"nn": (amp_pred[i], phase_pred[i]), "baseline": (mean_amp, mean_phase)}.items():
            obj = a * np.exp(1j * p)
            chi = float(chi_square(obj, magnitude[i], ndim=ndim, fit_scale=True))
            cmp = compare_with_truth(obj, truth_a, truth_p, subpixel=False)
            rows[name].append((chi, cmp.amplitude_error, cmp.phase_error))
    stats = {}
    for name, values in rows.items():
        arr = np.asarray(values)
        stats[name] = {"chi_median": float(np.median(arr[:, 0])), "shape_error_median": float(np.median(arr[:, 1])),
                       "phase_error_median": float(np.median(arr[:, 2]))}
    ratio = {k: stats["nn"][k] / stats["baseline"][k] for k in stats["nn"]}
    # scans whose true phase varies (strained crystals; every 2D object) apart from flat-phase ones (controls)
    support = test["amplitude"] > 0.1 * test["amplitude"].max(axis=axes_, keepdims=True)
    phase_rms = np.array([np.std(test["phase"][i][support[i]]) for i in range(n)])
    varies = phase_rms > 0.01
    phase_errors = {name: np.asarray(values)[:, 2] for name, values in rows.items()}
    by_phase = {
        label: {"n": int(pick.sum()), "true_phase_rms_median": float(np.median(phase_rms[pick])),
                **{f"{name}_phase_error_median": float(np.median(err[pick])) for name, err in phase_errors.items()}}
        for label, pick in (("varying_phase", varies), ("flat_phase", ~varies)) if pick.any()
    }
    print(json.dumps({"model": args.model, "weights_hash": digest, "n": n,
                      "average_permutations": args.average_permutations, "medians": stats,
                      "nn_over_baseline": ratio, "by_true_phase": by_phase}, indent=1))

    name = args.model.rsplit("/", 1)[-1]
    metrics = ("chi", "amplitude_error", "phase_error")
    errors = {label: dict(zip(metrics, np.asarray(rows[key]).T))
              for key, label in (("baseline", "mean object (baseline)"), ("nn", name))}
    figure = error_histograms(errors, args.out / f"{name}_errors.png", title=f"{name} on {n} held-out scans",
                              dpi=110)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
