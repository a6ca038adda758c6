"""Build the committed ``catalogs/examples.zarr``: a reduced copy of the real scan 54.

Run from the repository root, with ``../shared/data/aps34idc-au111-scan54`` present::

    python tools/build_examples.py

It writes ``raw/34idc-2020/54`` (the frames cut to a box around the Bragg peak,
with the dark and white fields cut alike and the whole white field's mean kept
for the normalization), then runs ``jobs/examples.toml`` (``prepare`` and
``network_input``) into the same catalog, so that every node has its
provenance. The trained models are added by the training jobs
(``jobs/train_*.toml --catalog catalogs/examples.zarr``).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "aps34idc-au111-scan54"
BEAMTIME = "34idc-2020"


def reduced_scan(frames: int, side: int):
    """Scan 54 cut to ``frames`` rocking points and ``side`` x ``side`` pixels around its peak."""
    from cdiplatform.ingest import Region, read_scan

    raw = read_scan(DATA / "example.spec", 54,
                    str(DATA / "frames" / "Staff20-1a_S{scan:04d}_{point:05d}.tif"),
                    dark=DATA / "dark.tif", flat=DATA / "whitefield.tif")
    peak = np.unravel_index(int(np.argmax(raw.frames)), raw.frames.shape)
    z0 = int(np.clip(peak[0] - frames // 2, 0, raw.n_frames - frames))
    r0 = int(np.clip(peak[1] - side // 2, 0, raw.frames.shape[1] - side))
    c0 = int(np.clip(peak[2] - side // 2, 0, raw.frames.shape[2] - side))
    zs, rs, cs = slice(z0, z0 + frames), slice(r0, r0 + side), slice(c0, c0 + side)
    region = Region(raw.region.row_start + r0, raw.region.row_start + r0 + side,
                    raw.region.col_start + c0, raw.region.col_start + c0 + side)
    angles = raw.rocking_angles[zs]
    return dataclasses.replace(
        raw,
        frames=np.ascontiguousarray(raw.frames[zs, rs, cs]),
        columns={k: v[zs] for k, v in raw.columns.items()},
        dark=None if raw.dark is None else raw.dark[rs, cs],
        flat=None if raw.flat is None else raw.flat[rs, cs],
        region=region,
        rocking_start=float(angles[0]),
        rocking_stop=float(angles[-1]),
        command=f"{raw.command}  [reduced: points {z0}..{z0 + frames - 1}, region {region.as_tuple()}]",
    )


def main() -> None:
    from cdiplatform.catalog import open_catalog
    from cdiplatform.catalog.provenance import history_line, now, software_info
    from cdiplatform.pipeline.cluster import connect
    from cdiplatform.catalog.raw import raw_scan_dataset
    from cdiplatform.pipeline.job import load_job
    from cdiplatform.pipeline.runner import run_job

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", type=Path, default=ROOT / "catalogs" / "examples.zarr")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--side", type=int, default=128)
    args = parser.parse_args()

    raw = reduced_scan(args.frames, args.side)
    ds = raw_scan_dataset(raw, beamtime=BEAMTIME)
    attrs = dict(ds.attrs)
    attrs.update(
        reduced_from=f"{DATA.name}: scan 54, 201 frames of 256 x 256",
        license="BSD 2-Clause, APS cohere_examples; notice in catalogs/examples.LICENSE",
        provenance={"software": software_info(), "stage": {"name": "tools/build_examples.py",
                                                           "params": {"frames": args.frames, "side": args.side}},
                    "inputs": attrs.get("sources", {}), "started": now(), "finished": now()},
        history=history_line("reduced copy of scan 54 written by tools/build_examples.py"),
    )
    cat = open_catalog(args.catalog, mode="a")
    chunk = (min(16, ds.sizes["frame"]), ds.sizes["det_y"], ds.sizes["det_x"])
    cat.write(f"raw/{BEAMTIME}/54", ds, attrs=attrs, overwrite=True, encoding={"frames": {"chunks": chunk}})
    shutil.copyfile(DATA / "LICENSE", args.catalog.parent / "examples.LICENSE")
    job = load_job(ROOT / "jobs" / "examples.toml", root=ROOT)
    with connect("local", workers=1, dashboard=False) as handle:
        for report in run_job(job, client=handle.client, catalog=args.catalog, new_run=True):
            print(report.label, report.node, report.state, f"ok={report.ok}", f"failed={len(report.failed)}")


if __name__ == "__main__":
    main()
