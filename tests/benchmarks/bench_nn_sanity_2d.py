"""Sanity training of CDI NN (2D): the loss falls on a few hundred simple synthetic objects.

Run: ``python tests/benchmarks/bench_nn_sanity_2d.py [--objects 400] [--epochs 8] [--threads 2]``

Objects: random convex polygons (16-20 px across) in a 32x32 box with a
smooth random phase (linear ramp plus a quadratic term), diffracted with
:func:`cdiplatform.physics.diffraction_intensity`. Split 80/10/10 by object;
full-width CDI NN (widths 32-64-128), BCE, Adam lr 1e-3, batch 32 (the
paper's 256 gives too few steps on so few objects). Prints the history and
the validation errors of the last epoch (about 3-5 min on 2 loaded cores). Not a shipped model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.spatial import ConvexHull

from cdiplatform.nn import BlockDataset, assemble_training, build_model, cdi_nn_2d_config, predict
from cdiplatform.physics import diffraction_intensity


def convex_objects(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.meshgrid(np.arange(size) - size // 2, np.arange(size) - size // 2, indexing="ij")
    points = np.stack([yy.ravel(), xx.ravel(), np.ones(size * size)])
    amp = np.zeros((n, size, size), np.float32)
    phase = np.zeros((n, size, size), np.float32)
    for i in range(n):
        radius = rng.uniform(8, 10)
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 12)))
        vertices = np.stack([radius * np.sin(angles), radius * np.cos(angles)], 1) * rng.uniform(
            0.7, 1.0, (len(angles), 1)
        )
        hull = ConvexHull(vertices)
        inside = (hull.equations @ points <= 1e-9).all(0).reshape(size, size)
        ramp = rng.normal(0, 0.06, 2)
        phi = ramp[0] * yy + ramp[1] * xx + rng.normal(0, 0.01) * (yy**2 + xx**2)
        amp[i] = inside
        phase[i] = np.where(inside, np.angle(np.exp(1j * phi)), 0)
    return amp, phase


def show_epoch(checkpoint: dict, info: dict) -> None:
    h = {k: v[-1] for k, v in info["history"].items()}
    print(
        f"epoch {info['epoch']}: train {h['train_loss']:.4f}  val {h['val_loss']:.4f}  "
        f"(val amplitude {h['val_amplitude']:.4f}, phase {h['val_phase']:.4f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    amp, phase = convex_objects(args.objects, 32, rng)
    intensity = diffraction_intensity(amp * np.exp(1j * phase), ndim=2).astype(np.float32)
    data = assemble_training(intensity, amp, phase, np.arange(args.objects), ndim=2, rng=rng)
    arrays = {k: data[k] for k in ("inputs", "amplitude", "phase")}
    n_train, n_val = int((data["split"] == 0).sum()), int((data["split"] == 1).sum())
    config = cdi_nn_2d_config(epochs=args.epochs, batch_size=32, seed=0)
    train_ds = BlockDataset(arrays, batch_size=32, indices=np.arange(n_train), block=64, seed=0)
    val_ds = BlockDataset(arrays, batch_size=64, indices=np.arange(n_train, n_train + n_val), shuffle=False)
    model = build_model(config)
    from cdiplatform.nn import train

    t = time.perf_counter()
    history = train(
        model,
        train_ds,
        val_ds,
        device="cpu",
        callback=show_epoch,
    )
    seconds = time.perf_counter() - t
    val = slice(n_train, n_train + n_val)
    pred_amp, pred_phase = predict(model, data["inputs"][val], batch_size=64)
    true_amp = data["amplitude"][val]
    support = true_amp > 0.5
    true_phase = 2 * np.pi * data["phase"][val] - np.pi
    phase_err = np.abs(np.angle(np.exp(1j * (pred_phase - true_phase))))[support]
    found = pred_amp > 0.5
    iou = (found & support).sum() / (found | support).sum()
    print(
        f"{args.objects} objects ({n_train} train, {n_val} validation), {args.epochs} epochs "
        f"in {seconds:.0f} s, threads {torch.get_num_threads()}"
    )
    tl, vl = history["train_loss"], history["val_loss"]
    print(f"train loss {tl[0]:.4f} -> {tl[-1]:.4f}; val loss {vl[0]:.4f} -> {vl[-1]:.4f}")
    print(
        f"validation: amplitude MAE {np.abs(pred_amp - true_amp).mean():.3f}, support IoU {iou:.2f}, "
        f"phase MAE in support {phase_err.mean():.2f} rad "
        f"(predicting 0: {np.abs(true_phase[support]).mean():.2f} rad)"
    )
    print(
        "note: the phase BCE has a floor near log 2 = 0.693 (soft targets near p = 0.5), so it barely moves"
    )


if __name__ == "__main__":
    main()
