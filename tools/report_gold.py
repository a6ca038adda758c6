"""Figures and numbers of a simulated gold collection (phase and residual-strain distributions).

    python tools/report_gold.py --collection catalogs/quickstart.zarr:collections/gold32

Writes ``docs/figures/gold_distributions.png`` (phase values inside the
crystals, per-crystal phase range, plane-fit residual and residual strain) and
prints the numbers quoted in ``docs/simulate_gold.md``.
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

    from cdiplatform.catalog import open_catalog, parse_node_ref

    parser = argparse.ArgumentParser()
    parser.add_argument("--collection", default="catalogs/quickstart.zarr:collections/gold32")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    path, node = parse_node_ref(args.collection)
    ds = open_catalog(path).open(node, chunks=None).load()
    ok = ds["status"].values == 1
    strained = ds["strained"].values & ok
    amp, phase = ds["amplitude"].values, ds["phase"].values
    inside = [phase[i][amp[i] > 0.1] for i in np.flatnonzero(strained)]
    residual = ds["residual_strain"].values[strained]
    trace = np.trace(residual, axis1=1, axis2=2)
    shear = np.abs(residual[:, [0, 0, 1], [1, 2, 2]]).max(axis=1)
    summary = {
        "collection": args.collection,
        "crystals": int(strained.sum()),
        "atoms": [int(ds["n_atoms"].values[strained].min()), int(ds["n_atoms"].values[strained].max())],
        "phase_range_rad": np.percentile(ds["phase_range"].values[strained], [0, 50, 100]).round(2).tolist(),
        "phase_plane_residual_rad": np.percentile(ds["phase_residual"].values[strained], [0, 50, 100]).round(3).tolist(),
        "residual_strain_trace": np.percentile(trace, [0, 50, 100]).round(5).tolist(),
        "residual_max_shear": np.percentile(shear, [0, 50, 100]).round(5).tolist(),
        "control_phase_max_abs": float(np.abs(phase[~ds["strained"].values & ok]).max()),
    }
    print(json.dumps(summary, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
    axes[0].hist(np.concatenate(inside), bins=60)
    axes[0].set_xlabel("phase inside the crystals (rad)")
    axes[1].hist(ds["phase_range"].values[strained], bins=12)
    axes[1].set_xlabel("phase range per crystal (rad)")
    axes[2].hist(ds["phase_residual"].values[strained], bins=12)
    axes[2].set_xlabel("phase residual after a plane fit (rad)")
    axes[3].hist(trace, bins=12, alpha=0.7, label="trace")
    axes[3].hist(shear, bins=12, alpha=0.7, label="max |shear|")
    axes[3].set_xlabel("residual strain")
    axes[3].legend()
    for ax in axes:
        ax.set_ylabel("count")
    fig.suptitle(f"{int(strained.sum())} LAMMPS-relaxed gold crystals on a substrate (111 Bragg phase)")
    fig.tight_layout()
    fig.savefig(args.out / "gold_distributions.png", dpi=100)
    print(f"figure: {args.out / 'gold_distributions.png'}")


if __name__ == "__main__":
    main()
