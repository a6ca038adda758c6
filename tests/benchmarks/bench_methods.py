"""Every method on held-out simulated gold crystals (with and without Poisson noise) and on scan 54.

The network alone (nn), the network refined by gradient descent (nn_refined), refined after a short
ER/HIO from its guess (nn_hio_refined), ER/HIO from the guess (er_hio_nn), and ER/HIO from random starts
(er_hio: best of 4, 620 iterations, the papers' baseline) go through one job (the platform's own stages)
on a LocalCluster of 2 workers of one thread each (every time is one core's). The crystals are 40 new
LAMMPS crystals (another seed than the shipped model's training set), zero-padded to 64^3; strained
crystals are reported apart from their strain-free controls. Scan 54 runs at the 64^3 grid of
catalogs/examples.zarr, and, with --scan54-128, at the 128^3 grid of jobs/scan54.toml.

    python tests/benchmarks/bench_methods.py --out /tmp/bench-methods          # ~40 min on 2 quiet cores
    python tests/benchmarks/bench_methods.py --crystals 6 --controls 2 --out /tmp/bm   # a first look

Prints, per condition and method, the median errors and seconds per scan and the ratios to ER/HIO
(target, strained with noise: errors <= 1.1 x ER/HIO's in <= 1/5 of its time); writes the
time-to-accuracy figure (docs/figures/time_to_accuracy.png with --figure).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "catalogs" / "examples.zarr"
METHODS = ("nn", "nn_refined", "nn_hio_refined", "er_hio_nn", "er_hio")


def chain(label: str, collection: str, nn: str) -> str:
    """The methods and the benchmark on one phasing-grid collection."""
    return f"""
[[stage]]
stage = "refine"
inputs = {{ collection = "{collection}", seed = "{nn}" }}
output = "results/{label}_nn_refined"
[stage.params]
chunk = 2

[[stage]]
stage = "refine"
inputs = {{ collection = "{collection}", seed = "{nn}" }}
output = "results/{label}_nn_hio_refined"
[stage.params]
warmup = "180*HIO+20*ER"
chunk = 2

[[stage]]
stage = "reconstruct"
inputs = {{ collection = "{collection}", seed = "{nn}" }}
output = "results/{label}_er_hio_nn"
[stage.params]
algorithm = "180*HIO+120*ER"
n_starts = 1
average_last = 0
record_every = 10
chunk = 2

[[stage]]
stage = "reconstruct"
inputs = {{ collection = "{collection}" }}
output = "results/{label}_er_hio"
[stage.params]
recipe = "paper_2d"
record_every = 20
chunk = 2

[[stage]]
stage = "benchmark"
inputs = {{ collection = "{collection}", methods = ["{nn}", "results/{label}_nn_refined",
           "results/{label}_nn_hio_refined", "results/{label}_er_hio_nn", "results/{label}_er_hio"] }}
output = "benchmarks/{label}"
"""


def job_text(crystals: int, controls: int, photons: float, scan54_128: bool) -> str:
    text = f"""
[job]
name = "bench_methods"
seed = 4242

[[stage]]
stage = "simulate_gold"
output = "collections/heldout"
[stage.params]
n_crystals = {crystals}

[[stage]]
stage = "infer"
inputs = {{ collection = "collections/heldout", model = "{EXAMPLES}:models/cdi_nn_3d_reduced" }}
output = "results/heldout_nn"
[stage.params]
chunk = 8
"""
    for noise, peak in (("clean", 0.0), ("noisy", photons)):
        for kind, select in (("strained", f"0:{2 * crystals}:2"), ("control", f"1:{2 * controls}:2")):
            if kind == "control" and controls == 0:
                continue
            label = f"{kind}_{noise}"
            text += f"""
[[stage]]
stage = "pad"
inputs = {{ collection = "collections/heldout" }}
select = "{select}"
output = "collections/{label}"
[stage.params]
peak_photons = {peak}
chunk = 8
""" + chain(label, f"collections/{label}", "results/heldout_nn")
    text += f"""
[[stage]]
stage = "infer"
inputs = {{ collection = "{EXAMPLES}:collections/scan54_32", model = "{EXAMPLES}:models/cdi_nn_3d_reduced" }}
output = "results/scan54_nn"
""" + chain("scan54_64", f"{EXAMPLES}:collections/scan54_64", "results/scan54_nn")
    if scan54_128:
        data = ROOT.parent / "shared" / "data" / "aps34idc-au111-scan54"
        text += f"""
[[stage]]
stage = "ingest_spec"
output = "raw/34idc-2020/*"
[stage.params]
spec = "{data / 'example.spec'}"
frames = "{data / 'frames' / 'Staff20-1a_S{scan:04d}_{point:05d}.tif'}"
scans = "54"
dark = "{data / 'dark.tif'}"
flat = "{data / 'whitefield.tif'}"

[[stage]]
stage = "prepare"
inputs = {{ raw = "raw/34idc-2020/*" }}
output = "collections/scan54_128"
[stage.params]
size = 128

[[stage]]
stage = "network_input"
inputs = {{ collection = "collections/scan54_128" }}
output = "collections/scan54_128_32"
[stage.params]
target_oversampling = [2.35]

[[stage]]
stage = "infer"
inputs = {{ collection = "collections/scan54_128_32", model = "{EXAMPLES}:models/cdi_nn_3d_reduced" }}
output = "results/scan54_128_nn"
""" + chain("scan54_128", "collections/scan54_128", "results/scan54_128_nn")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crystals", type=int, default=40)
    parser.add_argument("--controls", type=int, default=10, help="strain-free controls, reported apart")
    parser.add_argument("--photons", type=float, default=1.2e5, help="expected counts at the brightest pixel")
    parser.add_argument("--out", type=Path, required=True, help="folder of the job's catalog")
    parser.add_argument("--scan54-128", action="store_true")
    parser.add_argument("--figure", type=Path, help="write the time-to-accuracy figure here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    job = args.out / "bench_methods.toml"
    job.write_text(job_text(args.crystals, args.controls, args.photons, args.scan54_128))
    print(f"load average before: {os.getloadavg()}")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "cdiplatform.cli.main", "run", str(job), "--catalog",
                          str(args.out / "methods.zarr"), "--workers", "2"], env={**os.environ, "COLUMNS": "160"})
    print(f"job: {time.perf_counter() - t0:.0f} s (exit {run.returncode}); load average after: {os.getloadavg()}")
    from cdiplatform import open_catalog
    from cdiplatform.pipeline.stages.benchmark import summary_rows

    cat = open_catalog(args.out / "methods.zarr")
    for node in cat.nodes("benchmark"):
        ds = cat.open(node).load()
        rows = {r["method"]: r for r in summary_rows(ds)}
        ref = rows.get("er_hio")
        print(f"\n{node} ({ds.sizes['scan']} scans): medians, and ratios to er_hio")
        print(f"  {'method':16s} {'chi':>9s} {'amp err':>9s} {'phase err':>10s} {'seconds':>8s}   "
              f"{'chi/':>6s} {'amp/':>6s} {'phase/':>7s} {'time/':>6s}  flags good/twin/failed")
        for name, r in rows.items():
            ratio = [r[k] / ref[k] if ref and ref[k] else float("nan") for k in ("chi", "amplitude_error",
                                                                                 "phase_error", "seconds")]
            print(f"  {name:16s} {r['chi']:9.3g} {r['amplitude_error']:9.3g} {r['phase_error']:10.3g} "
                  f"{r['seconds']:8.2f}   {ratio[0]:6.2f} {ratio[1]:6.2f} {ratio[2]:7.2f} {ratio[3]:6.3f}  "
                  f"{r['good']}/{r['twin']}/{r['failed']}")
    if args.figure:
        time_to_accuracy_figure(cat, args.figure)


def time_to_accuracy_figure(cat, path: Path) -> None:
    """Median chi against seconds for every iterative method, strained crystals with noise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, label in zip(axes, ("strained_clean", "strained_noisy")):
        for method in METHODS[1:]:
            node = f"results/{label}_{method}"
            if node not in cat:
                continue
            ds = cat.open(node).load()
            if "history_chi" not in ds:
                continue
            secs, chis = ds["history_seconds"].values, ds["history_chi"].values
            grid = np.linspace(0, np.nanmax(secs), 60)
            curves = [np.interp(grid, s[np.isfinite(s)], c[np.isfinite(s)], right=np.nan)
                      for s, c in zip(secs, chis) if np.isfinite(s).sum() > 1]
            if curves:
                ax.semilogy(grid, np.nanmedian(curves, axis=0), label=method)
        ax.set_title(label.replace("_", ", "))
        ax.set_xlabel("seconds (one core)")
        ax.set_ylabel("chi (median over crystals)")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
