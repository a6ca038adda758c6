"""Figures and numbers of a simulated gold collection (phase and residual-strain distributions).

    python tools/report_gold.py --collection catalogs/quickstart.zarr:collections/gold32

Writes ``docs/figures/gold_distributions.png`` (phase values inside the
crystals, per-crystal phase range, plane-fit residual and residual strain:
:func:`cdiplatform.report.figures.gold_distributions`, the figure ``cdip report``
shows for a gold collection) and prints the numbers quoted in ``docs/simulate_gold.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from cdiplatform.catalog import open_catalog, parse_node_ref
    from cdiplatform.report.figures import gold_distributions

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
    figure = gold_distributions(
        phase_inside=np.concatenate(inside), phase_range=ds["phase_range"].values[strained],
        phase_residual=ds["phase_residual"].values[strained], residual_strain=residual,
        path=args.out / "gold_distributions.png",
        title=f"{int(strained.sum())} LAMMPS-relaxed gold crystals on a substrate (111 Bragg phase)", dpi=100)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
