"""Convergence of gradient refinement on simulated gold crystals, against ER/HIO on the same data.

    python tests/benchmarks/bench_refine_convergence.py --crystals 4 --study optimizers
    python tests/benchmarks/bench_refine_convergence.py --crystals 6 --study threshold --start flat --noise 1e5
    python tests/benchmarks/bench_refine_convergence.py --crystals 4 --study seeded

Crystals: ``simulate_gold_pair`` (LAMMPS) strained members at 32^3, zero-padded
to 64^3 (oversampling 2 per axis), seeds ``--seed0 + k`` (not the training
job's seeds); cached in ``--cache`` (an ``.npz``) so that studies rerun without
LAMMPS. ``--noise P``: Poisson counts with the brightest pixel at ``P``
photons (0: noise-free). Starts: ``perturbed`` (the truth with 0.4 rad RMS
phase noise and 5% RMS amplitude noise per voxel), ``flat`` (the true
amplitude, phase 0), ``nn`` (the shipped reduced 3D-CDI-NN's prediction from
every other voxel of the 64^3 pattern, which is the 32^3 pattern, zero-padded
to 64^3); support: the start's amplitude above 10% of its
maximum, dilated by one voxel. Errors: ``compare_with_truth`` on the 64^3
grid. The reference is ER/HIO with random starts, ``recipe("paper_2d")``
(620 iterations ``3*(20*ER+180*HIO)+20*ER``, best of 4 starts by chi).

Studies:

- ``optimizers``: Adam and L-BFGS, complex and polar parameters, no
  shrink-wrap, no stopping rule: chi, errors and time-to-accuracy;
- ``threshold``: the default refinement (``RefineSettings()``) with
  shrink-wrap thresholds 0.05 to 0.2 (and none): where the chi stalls against ER/HIO's;
- ``stopping``: the default refinement with the stopping tolerances of ``--tolerances``
  (default 1e-3 to 3e-5);
- ``seeded``: ER/HIO from the start as a seed (no twin removal):
  the iteration at which its chi first reaches the random-start 620-iteration
  chi of the same scan, for a few short sequences.

Prints one line per configuration and ``/proc/loadavg``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from cdiplatform.phasing import phase_retrieval, recipe
from cdiplatform.phasing.refine import refine
from cdiplatform.phasing.refine_settings import RefineSettings, RefineShrinkWrap
from cdiplatform.physics.fft import far_field
from cdiplatform.physics.metrics import compare_with_truth


def gold_crystals(n: int, seed0: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and phase of ``n`` strained crystals, 32^3 padded to 64^3 (from the cache, or LAMMPS)."""
    if cache.exists():
        d = np.load(cache)
        if len(d["amplitude"]) >= n and int(d["seed"][0]) == seed0:
            amp, ph = d["amplitude"][:n, 0], d["phase"][:n, 0]
            return np.pad(amp, [(0, 0)] + [(16, 16)] * 3), np.pad(ph, [(0, 0)] + [(16, 16)] * 3)
    from cdiplatform.simulate.gold import simulate_gold_pair

    pairs = [simulate_gold_pair(seed=seed0 + k) for k in range(n)]
    amp = np.stack([p.amplitude for p in pairs])
    ph = np.stack([p.phase for p in pairs])
    np.savez(cache, amplitude=amp, phase=ph, seed=np.arange(seed0, seed0 + n))
    return np.pad(amp[:, 0], [(0, 0)] + [(16, 16)] * 3), np.pad(ph[:, 0], [(0, 0)] + [(16, 16)] * 3)


def measured_magnitudes(amp: np.ndarray, phase: np.ndarray, peak: float, seed: int) -> np.ndarray:
    """``sqrt`` of the noise-free intensity, or of Poisson counts with the brightest pixel at ``peak``."""
    intensity = np.abs(far_field(amp * np.exp(1j * phase), ndim=3)) ** 2
    if peak > 0:
        rng = np.random.default_rng(seed)
        scale = peak / intensity.reshape(len(intensity), -1).max(axis=1)
        intensity = rng.poisson(intensity * scale[:, None, None, None]).astype(np.float64)
    return np.sqrt(intensity).astype(np.float32)


def nn_prediction(mag: np.ndarray, model_ref: str) -> np.ndarray:
    """The shipped network's prediction from the 32^3 pattern, zero-padded to the 64^3 grid (complex).

    Zero-padding the object twice over interpolates its far field, so the 32^3
    pattern the network was trained on is every other voxel of the 64^3 one
    (centre 32 -> 16).
    """
    from cdiplatform.catalog import load_model_arrays
    from cdiplatform.nn import load_model, make_inputs, predict

    weights, config, _ = load_model_arrays(model_ref)
    model = load_model(weights, config)
    amp, phase = predict(model, make_inputs(mag[:, ::2, ::2, ::2].astype(np.float64) ** 2, ndim=3))
    return np.pad(amp * np.exp(1j * phase), [(0, 0)] + [(16, 16)] * 3)


def starts(amp: np.ndarray, phase: np.ndarray, kind: str, seed: int, mag=None,
           model_ref: str = "catalogs/examples.zarr:models/cdi_nn_3d_reduced") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "perturbed":
        obj = amp * (1 + 0.05 * rng.normal(size=amp.shape)) * np.exp(1j * (phase + 0.4 * rng.normal(size=amp.shape)))
    elif kind == "nn":
        obj = nn_prediction(mag, model_ref)
    else:
        obj = amp.astype(np.complex128)
    support = np.stack([binary_dilation(np.abs(o) > 0.1 * np.abs(o).max(), iterations=1) for o in obj])
    return obj.astype(np.complex64), support


def errors(obj, amp, phase, *, subpixel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    cmp = [compare_with_truth(obj[i], amp[i], phase[i], subpixel=subpixel) for i in range(len(amp))]
    return np.array([c.phase_error for c in cmp]), np.array([c.amplitude_error for c in cmp])


def phase_both(obj, amp, phase) -> str:
    """Phase errors after a sub-pixel and after a whole-pixel alignment (the second for objects on the truth's grid)."""
    return f"phase {fmt(errors(obj, amp, phase)[0])} whole-pixel {fmt(errors(obj, amp, phase, subpixel=False)[0])}"


def fmt(values, spec=".3f") -> str:
    return "[" + " ".join(format(v, spec) for v in values) + "]"


def time_to(history: list[np.ndarray], target: np.ndarray) -> list[float]:
    """Per scan, the first recorded seconds at which chi <= target (nan if never)."""
    out = []
    for h, t in zip(history, target):
        hit = np.flatnonzero(h[:, 2] <= t)
        out.append(float(h[hit[0], 1]) if hit.size else float("nan"))
    return out


def study_optimizers(args, mag, amp, phase, reference):
    start, support = starts(amp, phase, args.start, 1, mag)
    print("start:", phase_both(start, amp, phase))
    configs = [("adam", "complex", 0.01), ("adam", "polar", 0.01), ("adam", "polar", 0.003),
               ("lbfgs", "complex", 0.01), ("lbfgs", "polar", 0.01)]
    for opt, par, lr in configs:
        st = RefineSettings(optimizer=opt, parametrization=par, learning_rate=lr, max_iterations=args.iterations,
                            tolerance=0, shrink_wrap=None, record_every=10, loss=args.loss)
        t = time.perf_counter()
        res = refine(mag, start, support, settings=st)
        sec = (time.perf_counter() - t) / len(mag)
        ae = errors(res.obj, amp, phase)[1]
        reach = np.array(time_to(res.time_history, 1.1 * reference["chi"])) / len(mag)
        print(f"{opt:5s} {par:7s} lr={lr:<6} {sec:6.1f} s/scan  chi/ER-HIO {fmt(res.chi / reference['chi'], '.2f')}"
              f"  {phase_both(res.obj, amp, phase)} amp {fmt(ae, '.4f')}  s/scan to 1.1x ER/HIO chi "
              f"{fmt(reach, '.2f')}", flush=True)


def study_threshold(args, mag, amp, phase, reference):
    start, support = starts(amp, phase, args.start, 1, mag)
    print("start:", phase_both(start, amp, phase))
    for thr in [None, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2]:
        sw = None if thr is None else RefineShrinkWrap(threshold=thr)
        st = replace(RefineSettings(), shrink_wrap=sw, max_iterations=args.iterations, loss=args.loss)
        t = time.perf_counter()
        res = refine(mag, start, support, settings=st)
        sec = (time.perf_counter() - t) / len(mag)
        ae = errors(res.obj, amp, phase)[1]
        print(f"threshold {thr!s:5s} {sec:6.1f} s/scan it {res.iterations.tolist()} chi/ER-HIO "
              f"{fmt(res.chi / reference['chi'], '.2f')} {phase_both(res.obj, amp, phase)} amp {fmt(ae, '.4f')} "
              f"support/true {fmt(res.support.sum(axis=(1, 2, 3)) / (amp > 0).sum(axis=(1, 2, 3)), '.2f')}",
              flush=True)


def study_stopping(args, mag, amp, phase, reference):
    start, support = starts(amp, phase, args.start, 1, mag)
    print("start:", phase_both(start, amp, phase))
    for tol in args.tolerances:
        st = replace(RefineSettings(), tolerance=tol, max_iterations=args.iterations, loss=args.loss)
        t = time.perf_counter()
        res = refine(mag, start, support, settings=st)
        sec = (time.perf_counter() - t) / len(mag)
        ae = errors(res.obj, amp, phase)[1]
        print(f"tolerance {tol:<6g} {sec:6.1f} s/scan it {res.iterations.tolist()} chi/ER-HIO "
              f"{fmt(res.chi / reference['chi'], '.2f')} {phase_both(res.obj, amp, phase)} amp {fmt(ae, '.4f')}",
              flush=True)


def study_seeded(args, mag, amp, phase, reference):
    start, support = starts(amp, phase, args.start, 1, mag)
    print("start:", phase_both(start, amp, phase))
    for algorithm in ["300*ER", "20*HIO+280*ER", "50*HIO+250*ER", "180*HIO+120*ER"]:
        settings = recipe("paper_2d", algorithm=algorithm, n_starts=1, average_last=0, record_every=1)
        t = time.perf_counter()
        res = phase_retrieval(mag, ndim=3, settings=settings, start=start, support=support, seed=0)
        sec = (time.perf_counter() - t) / len(mag)
        chis = np.stack([entry[-1][:, 0] for entry in res.history])  # (iterations, S); the error is last
        reach = [int(np.argmax(chis[:, s] <= reference["chi"][s])) if np.any(chis[:, s] <= reference["chi"][s])
                 else -1 for s in range(len(mag))]
        ae = errors(res.obj, amp, phase)[1]
        print(f"seeded {algorithm:15s} {sec:5.1f} s/scan  first iteration at ER/HIO's chi {reach}  "
              f"chi/ER-HIO {fmt(res.error / reference['chi'], '.2f')} {phase_both(res.obj, amp, phase)} "
              f"amp {fmt(ae, '.4f')}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crystals", type=int, default=4)
    ap.add_argument("--seed0", type=int, default=880000)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cdip_gold64.npz"))
    ap.add_argument("--noise", type=float, default=0.0, help="Poisson peak counts (0: noise-free)")
    ap.add_argument("--start", choices=["perturbed", "flat", "nn"], default="perturbed")
    ap.add_argument("--study", choices=["optimizers", "threshold", "stopping", "seeded"], default="optimizers")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--loss", default="amplitude")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tolerances", type=lambda text: [float(v) for v in text.split(",")],
                    default=[1e-3, 3e-4, 1e-4, 3e-5], help="the stopping study's tolerances, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    amp, phase = gold_crystals(args.crystals, args.seed0, args.cache)
    mag = measured_magnitudes(amp, phase, args.noise, seed=1)
    ref_cache = args.cache.with_name(f"{args.cache.stem}_erhio_{args.crystals}_{args.noise:g}.npz")
    if ref_cache.exists():  # ER/HIO is the slow part: computed once per crystals and noise
        ref = dict(np.load(ref_cache))
    else:
        t = time.perf_counter()
        res = phase_retrieval(mag, ndim=3, settings=recipe("paper_2d"), seed=0)
        ref = {"chi": res.error, "obj": res.obj, "seconds": np.array((time.perf_counter() - t) / len(mag))}
        np.savez(ref_cache, **ref)
    ref_sec = float(ref["seconds"])
    ae = errors(ref["obj"], amp, phase)[1]
    reference = {"chi": ref["chi"]}
    print(f"{args.crystals} crystals, noise {args.noise:g}, start {args.start}, loss {args.loss}, "
          f"{args.threads} thread(s)")
    print(f"ER/HIO 4 x 620 {ref_sec:6.1f} s/scan  chi {fmt(ref['chi'], '.2e')} {phase_both(ref['obj'], amp, phase)} amp {fmt(ae, '.4f')}",
          flush=True)
    {"optimizers": study_optimizers, "threshold": study_threshold, "stopping": study_stopping,
     "seeded": study_seeded}[args.study](
        args, mag, amp, phase, reference)
    print("loadavg:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
