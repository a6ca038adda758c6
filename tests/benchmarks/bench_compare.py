"""The comparison rules of the method benchmark, measured: grid mapping, alignment, quality flags.

    python tests/benchmarks/bench_compare.py [--crystals 12] [--er-3d 10] [--n-2d 512] [--er-2d 32] \
        [--cache /tmp/bench_compare] [--threads 2]

Data (cached as .npz under ``--cache``, so a rerun only evaluates):

- ``--crystals`` LAMMPS gold crystals (strained and their flat-phase
  controls, seeds 424242 + 7919 k, not the shipped model's training seeds),
  32^3, and each strained crystal voxelized again with its centre moved by
  a random sub-voxel offset (the oracle of a correct object off by a
  fraction of a voxel: its errors should be near 0);
- the shipped reduced 3D-CDI-NN (``catalogs/examples.zarr:models/cdi_nn_3d_reduced``)
  on all of them; ER/HIO (``3*(20*ER+180*HIO)+20*ER``, shrink-wrap 0.1,
  best of 2 starts) on the first ``--er-3d``, zero-padded to 64^3, cropped
  back to the model grid;
- ``--n-2d`` simulated 2D objects, the shipped CDI NN on them, and ER/HIO
  (``paper_2d``, 4 starts, padded to 64^2) on the first ``--er-2d``.

Printed: (1) round trips model -> phasing -> model of the crystals, Fourier
against spline, at the ratios of scan 54 and others, with the best any
mapping can do (the ideal low-pass to the phasing grid's band); (2) median
errors against the truth under each alignment rule; (3) twin margins,
support fractions and pieces, chi; (4) the flags of each method with the
default thresholds; (5) the network's prediction on the measured scan 54
mapped to its phasing grid with the exact per-axis ratio, or as if
zero-padded, or with one window for all axes: chi against the data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _cached(path: Path, make):
    if path.exists():
        return dict(np.load(path))
    out = make()
    np.savez(path, **out)
    return out


def crystals(n: int) -> dict[str, np.ndarray]:
    from cdiplatform.simulate.gold.diffraction import simulate_gold_pair, voxelize_crystal

    rng = np.random.default_rng(5)
    amp, phase, off_amp, off_phase, offsets = [], [], [], [], []
    for k in range(n):
        pair = simulate_gold_pair(seed=424242 + 7919 * k, keep_positions=True)
        amp.append(pair.amplitude)
        phase.append(pair.phase)
        final, ref = pair.positions
        off = rng.uniform(-0.5, 0.5, 3)
        moved = voxelize_crystal(final, ref, shape=pair.amplitude.shape[1:], centre=tuple(off))
        off_amp.append(moved.amplitude)
        off_phase.append(moved.phase)
        offsets.append(off)
    return {"amplitude": np.concatenate(amp), "phase": np.concatenate(phase), "off_amplitude": np.array(off_amp),
            "off_phase": np.array(off_phase), "offsets": np.array(offsets)}


def network(model_ref: str, intensity: np.ndarray, ndim: int) -> dict[str, np.ndarray]:
    from cdiplatform.catalog import load_model_arrays
    from cdiplatform.nn import load_model, make_inputs, predict

    weights, config, digest = load_model_arrays(model_ref)
    model = load_model(weights, config, expected_hash=digest)
    t0 = time.perf_counter()
    a, p = predict(model, make_inputs(intensity, ndim=ndim), batch_size=64)
    return {"obj": a * np.exp(1j * p), "seconds": np.array(time.perf_counter() - t0)}


def er_hio(amplitude: np.ndarray, phase: np.ndarray, *, ndim: int, starts: int, seed: int) -> dict[str, np.ndarray]:
    from cdiplatform.phasing import phase_retrieval, recipe
    from cdiplatform.physics.fft import object_intensity
    from cdiplatform.physics.grids import zero_pad

    a2, p2 = zero_pad(amplitude, factor=2), zero_pad(phase, factor=2)
    magnitude = np.sqrt(object_intensity(a2, p2))
    settings = recipe("paper_2d", n_starts=starts)
    objs, sups, chis = [], [], []
    t0 = time.perf_counter()
    batch = 1 if ndim == 3 else 16
    for lo in range(0, len(amplitude), batch):
        hi = min(lo + batch, len(amplitude))
        res = phase_retrieval(magnitude[lo:hi], ndim=ndim, settings=settings,
                              rngs=[np.random.default_rng([seed, i]) for i in range(lo, hi)])
        objs.append(res.obj)
        sups.append(res.support)
        chis.append(res.error)
    return {"obj": np.concatenate(objs), "support": np.concatenate(sups), "chi": np.concatenate(chis),
            "seconds": np.array(time.perf_counter() - t0)}


def round_trips(truth: np.ndarray) -> None:
    from cdiplatform.physics.grids import INTERPOLATIONS, GridRelation, model_to_phasing, phasing_to_model

    def errors(got, want):
        a = np.abs(want)
        s = a > 0.1 * a.max()
        return (np.linalg.norm(got - want) / np.linalg.norm(want),
                np.mean(np.abs(np.abs(got) / np.abs(got).max() - a / a.max())),
                np.sqrt(np.mean(np.angle(got[s] * np.conj(want[s])) ** 2)))

    def lowpass(x, rel):  # the best a mapping can do: the model field without what the phasing grid cannot hold
        f = np.fft.fftn(x, axes=(1, 2, 3))
        for ax, (p, m, n) in enumerate(zip(rel.phasing_grid, rel.window, rel.model_grid)):
            nu, cut = np.abs(np.fft.fftfreq(n)), 0.5 * min(1.0, p / m)
            w = np.where(nu < cut - 1e-9, 1.0, np.where(np.isclose(nu, cut), 0.5, 0.0))
            shape = [1, 1, 1, 1]
            shape[ax + 1] = n
            f = f * w.reshape(shape)
        return np.fft.ifftn(f, axes=(1, 2, 3))

    print("\n(1) round trip model -> phasing -> model of the crystals (medians: relative L2 of the field, "
          "amplitude MAE (max 1), phase RMS in the support, rad)")
    relations = [GridRelation((64,) * 3, (88, 68, 54), (32,) * 3), GridRelation((64,) * 3, (54,) * 3, (32,) * 3),
                 GridRelation((64,) * 3, (88,) * 3, (32,) * 3), GridRelation((128,) * 3, (176, 136, 108), (32,) * 3)]
    for rel in relations:
        ideal = lowpass(truth, rel)
        e = np.median([errors(ideal[i], truth[i]) for i in range(len(truth))], axis=0)
        print(f"  P {rel.phasing_grid[0]} window {rel.window}: ideal low-pass   {e[0]:.4f} {e[1]:.5f} {e[2]:.4f}")
        for method in INTERPOLATIONS:
            t0 = time.perf_counter()
            back = phasing_to_model(model_to_phasing(truth, rel, method=method), rel, method=method)
            sec = time.perf_counter() - t0
            e = np.median([errors(back[i], truth[i]) for i in range(len(truth))], axis=0)
            vs = np.median([errors(back[i], ideal[i])[0] for i in range(len(truth))])
            print(f"  {'':28s}{method:8s} {e[0]:.4f} {e[1]:.5f} {e[2]:.4f}  (vs ideal {vs:.4f}; "
                  f"{sec / len(truth) * 1e3:.0f} ms a scan both ways)")


def alignments(cases: dict) -> None:
    from cdiplatform.physics.compare import ComparisonRules, compare_objects

    rules = {
        "whole voxel, true support": ComparisonRules(subpixel=False, phase_region="reference"),
        "sub-voxel on object, true support": ComparisonRules(shift_side="object", phase_region="reference"),
        "sub-voxel on truth, true support": ComparisonRules(shift_side="reference", phase_region="reference"),
        "whole voxel, common support": ComparisonRules(subpixel=False),
        "sub-voxel on object, common": ComparisonRules(shift_side="object"),
        "sub-voxel on truth, common": ComparisonRules(shift_side="reference"),
        "sub-voxel on smoother, common (default)": ComparisonRules(),
        "sub-voxel on smoother, weighted": ComparisonRules(phase_region="weighted"),
    }
    print("\n(2) median errors against the truth by alignment rule: phase (rad) strained/controls "
          "(2D: all), amplitude MAE")
    print("  " + " " * 40 + " | ".join(f"{k:>22s}" for k in cases))
    for name, rule in rules.items():
        cells = []
        for objs, truth, groups in cases.values():
            c = [compare_objects(objs[i], truth[i], rules=rule) for i in range(len(objs))]
            ph = np.array([x.phase_error for x in c])
            am = np.median([x.amplitude_error for x in c])
            if groups is None:
                cells.append(f"{np.median(ph):.3f} {am:.4f}")
            else:
                cells.append(f"{np.median(ph[groups]):.3f}/{np.median(ph[~groups]):.3f} {am:.4f}")
        print(f"  {name:40s}" + " | ".join(f"{c:>22s}" for c in cells))


def flags(methods: dict) -> None:
    """``methods``: name -> (objects on the model grid, truth, supports on the phasing grid, chi)."""
    from cdiplatform.physics.compare import compare_objects
    from cdiplatform.physics.quality import FLAGS, quality_flag
    from cdiplatform.physics.support import support_components

    print("\n(3) per method: twin margin (min, median of the twinned; median, max of the others), chi, "
          "support fraction of the phasing grid, share of its largest piece; (4) flags, default thresholds")
    for name, (objs, truth, supports, chis) in methods.items():
        comps = [compare_objects(objs[i], truth[i]) for i in range(len(objs))]
        margins = np.array([c.twin_margin for c in comps])
        tw = np.array([c.twinned for c in comps])
        parts = [support_components(s) for s in supports]
        result = [quality_flag(chi=chis[i], support=supports[i], comparison=comps[i]) for i in range(len(objs))]
        counts = {f: sum(r[0] == f for r in result) for f in FLAGS}
        reasons = sorted({r[1] for r in result if r[0] == "failed"})[:3]

        def pct(x, q):
            return np.round(np.percentile(x, q), 3).tolist() if len(x) else "-"

        print(f"  {name:10s} n {len(objs):4d}  twin margin {pct(margins[tw], [0, 50])} / {pct(margins[~tw], [50, 100])}"
              f"  chi median {np.median(chis):.2e} max {np.max(chis):.2e}"
              f"  support fraction {min(p.fraction for p in parts):.3f}-{max(p.fraction for p in parts):.3f}"
              f"  largest piece min {min(p.largest_share for p in parts):.3f}")
        print(f"  {'':10s} flags {counts} {reasons}")


def scan54() -> None:
    """The shipped 3D network on the measured scan 54 (32^3), mapped to its 64^3 phasing grid three ways."""
    import json

    import cdiplatform
    from cdiplatform.physics.grids import INTERPOLATIONS, GridRelation, model_to_phasing
    from cdiplatform.physics.metrics import chi_square

    cat = cdiplatform.open_catalog(str(ROOT / "catalogs" / "examples.zarr"))
    small, big = cat.open("collections/scan54_32", chunks=None), cat.open("collections/scan54_64", chunks=None)
    magnitude = np.sqrt(np.maximum(big["intensity"].values[0].astype(np.float64), 0.0))
    mask = big["mask"].values[0] != 0
    measured = mask if big["mask"].attrs.get("meaning") == "measured" else ~mask
    pred = network("catalogs/examples.zarr:models/cdi_nn_3d_reduced",
                   small["intensity"].values.astype(np.float64), 3)["obj"][0]
    exact = GridRelation.from_network_input_record(json.loads(str(small["resampling"].values[0])),
                                                   phasing_grid=magnitude.shape)
    print(f"\n(5) scan 54: the network's prediction on the phasing grid, chi (scale fitted) against the measured "
          f"64^3 magnitudes; record {exact.to_dict()}")
    for name, rel in (("exact per-axis ratio", exact),
                      ("as if zero-padded (ratio 1)", GridRelation.for_zero_padding((32,) * 3, factor=2)),
                      ("one window for all axes (70)", GridRelation((64,) * 3, (70,) * 3, (32,) * 3))):
        chis = [float(chi_square(model_to_phasing(pred, rel, method=m), magnitude, measured=measured,
                                 fit_scale=True)) for m in INTERPOLATIONS]
        print(f"  {name:32s} " + "  ".join(f"{m} {c:.4f}" for m, c in zip(INTERPOLATIONS, chis)))


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crystals", type=int, default=12)
    ap.add_argument("--er-3d", type=int, default=10)
    ap.add_argument("--n-2d", type=int, default=512)
    ap.add_argument("--er-2d", type=int, default=32)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/bench_compare"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)

    from cdiplatform.physics.fft import object_intensity
    from cdiplatform.physics.grids import GridRelation, phasing_to_model
    from cdiplatform.simulate import simulate_2d

    gold = _cached(args.cache / f"gold{args.crystals}.npz", lambda: crystals(args.crystals))
    truth3 = gold["amplitude"] * np.exp(1j * gold["phase"])
    inten3 = object_intensity(gold["amplitude"], gold["phase"])
    strained = np.arange(len(truth3)) % 2 == 0
    nn3 = _cached(args.cache / f"nn3_{args.crystals}.npz",
                  lambda: network("catalogs/examples.zarr:models/cdi_nn_3d_reduced", inten3, 3))
    n_er = min(args.er_3d, len(truth3))
    er3 = _cached(args.cache / f"er3_{args.crystals}_{n_er}.npz",
                  lambda: er_hio(gold["amplitude"][:n_er], gold["phase"][:n_er], ndim=3, starts=2, seed=7))
    sim = simulate_2d([np.random.default_rng(np.random.SeedSequence(987654321, spawn_key=(i,)))
                       for i in range(args.n_2d)])
    truth2 = sim["amplitude"] * np.exp(1j * sim["phase"])
    nn2 = _cached(args.cache / f"nn2_{args.n_2d}.npz",
                  lambda: network("catalogs/examples.zarr:models/cdi_nn_2d", sim["intensity"], 2))
    n_er2 = min(args.er_2d, args.n_2d)
    er2 = _cached(args.cache / f"er2_{args.n_2d}_{n_er2}.npz",
                  lambda: er_hio(sim["amplitude"][:n_er2], sim["phase"][:n_er2], ndim=2, starts=4, seed=8))
    to_model3 = GridRelation.for_zero_padding((32,) * 3, factor=2)
    to_model2 = GridRelation.for_zero_padding((32,) * 2, factor=2)
    er3_model = phasing_to_model(er3["obj"], to_model3)
    er2_model = phasing_to_model(er2["obj"], to_model2)
    print(f"{len(truth3)} crystals ({strained.sum()} strained), NN 3D {float(nn3['seconds']):.1f} s, "
          f"ER/HIO 3D {n_er} scans {float(er3['seconds']):.0f} s; 2D: {args.n_2d} objects, ER/HIO {n_er2} "
          f"{float(er2['seconds']):.0f} s")

    round_trips(truth3)
    offset_truth = gold["off_amplitude"] * np.exp(1j * gold["off_phase"])
    alignments({
        "NN 3D": (nn3["obj"], truth3, strained),
        "ER/HIO 3D": (er3_model, truth3[:n_er], strained[:n_er]),
        "offset truth 3D": (offset_truth, truth3[strained], None),
        "NN 2D": (nn2["obj"], truth2, None),
        "ER/HIO 2D": (er2_model, truth2[:n_er2], None),
    })
    # chi and supports on the phasing grid (the padded one) for every method; the network's support is
    # its amplitude mapped there and thresholded at 0.1 of its maximum
    from cdiplatform.physics.grids import model_to_phasing
    from cdiplatform.physics.metrics import chi_square
    from cdiplatform.physics.support import support_from_amplitude

    def nn_case(pred, truth, relation, ndim):
        mapped = model_to_phasing(pred, relation)
        padded = model_to_phasing(truth, relation)
        chi = chi_square(mapped, np.sqrt(object_intensity(np.abs(padded), np.angle(padded))), ndim=ndim,
                         fit_scale=True)
        return pred, truth, support_from_amplitude(mapped, threshold=0.1, dilation=0), chi

    flags({
        "NN 3D": nn_case(nn3["obj"], truth3, to_model3, 3),
        "ER/HIO 3D": (er3_model, truth3[:n_er], er3["support"], er3["chi"]),
        "NN 2D": nn_case(nn2["obj"], truth2, to_model2, 2),
        "ER/HIO 2D": (er2_model, truth2[:n_er2], er2["support"], er2["chi"]),
    })
    scan54()
    with open("/proc/loadavg") as f:
        print("load average:", f.read().strip())


if __name__ == "__main__":
    main()
