"""A beamtime end to end: scans per hour on 1 and 2 workers, time per stage, the runner's overhead.

A synthetic beamtime is written as a real one (:mod:`cdiplatform.testing.beamtime`): a SPEC file with the
34-ID-C geometry of scan 54 and one TIFF per rocking point, each scan the far field of a faceted gold
crystal of 100-300 nm with a quadratic displacement field, computed on the detector frame of that
geometry (:func:`cdiplatform.simulate.detector_frame.simulate_detector_frame`), with Poisson noise at
scan 54's counts. With ../shared, the real scan 54 is one scan of that beamtime: its SPEC lines are
appended to the file, its frames linked beside the synthetic ones, and the synthetic frames are recorded
on its detector (its dark and white fields). The whole beamtime goes through the packaged beamtime job
(``cdip reprocess``: ingest, prepare at 64^3, network input, the network, and the rest of the chain) in
one run per worker count, each from an empty catalog, the worker counts side by side in each round.

Run (on a quiet machine; it prints the load average):

    python tests/benchmarks/bench_beamtime.py                 # 23 synthetic scans + scan 54, 2 rounds of 1 and 2 workers
    python tests/benchmarks/bench_beamtime.py --scans 6 --quick --rounds 1

Figures: wall time and scans per hour per worker count and round, the scaling efficiency t1 / (2 t2)
(of the medians, and round by round), each stage's wall time (stages run side by side where their
inputs allow, so these overlap) and its share of the scans' own compute time (which every node records
per scan in ``seconds``), and the rest of the wall time beyond compute / workers (processes and cluster
starting, ingest, the report, the runner, idle workers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "aps34idc-au111-scan54"
FRAMES, SIDE = 80, 128  # rocking points, detector region side (pixels) of a synthetic scan


def synthetic_crystal(rng: np.random.Generator, grid: int = 96, spacing: float = 5.0):
    """A faceted crystal of 100-300 nm (random {111} and {100} facets) and a quadratic displacement, nm."""
    from cdiplatform.simulate.detector_frame import polyhedron_density

    size = rng.uniform(100, 300)
    normals = np.array([[1, 1, 1], [-1, -1, -1], [1, -1, 1], [-1, 1, -1], [1, 1, -1], [-1, -1, 1], [1, -1, -1],
                        [-1, 1, 1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    distances = size / 2 * rng.uniform(0.8, 1.0, len(normals))
    density = polyhedron_density((grid,) * 3, spacing_nm=spacing, normals=normals, distances_nm=distances)
    axes = [(np.arange(grid) - grid // 2) * spacing for _ in range(3)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    k = rng.uniform(-2e-5, 2e-5, 3)  # 1/nm: strain gradients of a few 1e-3 over the crystal
    u = np.stack([k[0] * x * z, k[1] * y * x, k[2] * z * y], axis=-1)  # components (x, y, z), nm
    return density, u, spacing


def write_synthetic_beamtime(folder: Path, n: int, seed: int = 0, *, real: Path | None = DATA):
    """``n`` synthetic scans (numbers 100, 101, ...) and, when ``real`` holds it, the real scan 54: one beamtime.

    With the real data, the synthetic scans are recorded on its detector: its dark and white fields are
    the beamtime's, each synthetic frame carries the white field's pixel response (counts times the
    white field over its mean, so that the ingest's flat-field division undoes it), and scan 54 is
    appended to the SPEC file as it stands in ``example.spec`` (the motor tables are the same), its
    frames linked under the beamtime's frame pattern.
    """
    import tifffile

    from cdiplatform.simulate.detector_frame import scan_geometry, simulate_detector_frame
    from cdiplatform.testing.beamtime import BeamtimeWriter, SyntheticScan

    rng = np.random.default_rng(seed)
    geo = scan_geometry(pixel=(256, 256))
    writer = BeamtimeWriter(folder, sensor_shape=(512, 512))
    writer.write_file_header()
    with_real = real is not None and real.is_dir()
    if with_real:
        dark, white = tifffile.imread(real / "dark.tif"), tifffile.imread(real / "whitefield.tif")
        writer.write_fields(dark=dark, white=white)
        response = white / white[white > 0].mean()
    else:
        writer.write_fields()
        response = np.ones(writer.sensor_shape)
    total = 46_155_653 * (FRAMES * SIDE * SIDE) / (201 * 256 * 256)  # scan 54's counts per voxel
    origin = (256 - SIDE // 2, 256 - SIDE // 2)
    region = response[origin[0]:origin[0] + SIDE, origin[1]:origin[1] + SIDE]
    for i in range(n):
        density, u, spacing = synthetic_crystal(rng)
        counts = simulate_detector_frame(density[None], u[None], spacing_nm=spacing, q_step=geo["q_step"],
                                         q_peak=geo["q_peak"], shape=(FRAMES, SIDE, SIDE), total_photons=total,
                                         rngs=[rng])[0]
        counts = np.rint(counts * region).astype(np.int32)
        writer.write_scan(SyntheticScan(100 + i, counts, region_origin=origin))
    if with_real:
        lines = (real / "example.spec").read_text().splitlines()
        first = lines.index(next(line for line in lines if line.split()[:2] == ["#S", "54"]))
        last = next((k for k in range(first + 1, len(lines)) if lines[k].startswith("#S ")), len(lines))
        with open(writer.spec, "a", encoding="ascii") as fh:
            fh.write("\n".join(lines[first:last]).rstrip() + "\n\n")
        for frame in sorted((real / "frames").glob("Staff20-1a_S0054_*.tif")):
            point = int(frame.stem.rsplit("_", 1)[1])
            link = Path(writer.frame_pattern.format(scan=54, point=point))
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(frame.resolve())
    return writer.files, n + int(with_real)


def reprocess(spec, frames, catalog, workers, *, dark, flat, quick=False):
    args = [sys.executable, "-m", "cdiplatform.cli.main", "reprocess", str(spec), "--frames", frames,
            "--scans", "all", "--beamtime", "bench", "--catalog", str(catalog), "--workers", str(workers),
            "--threads", "1", "--dark", str(dark), "--flat", str(flat)]
    if quick:
        args += ["--set", "algorithm=20*ER+80*HIO+20*ER", "--set", "starts=1"]
    env = {**os.environ, "COLUMNS": "200"}
    t0 = time.perf_counter()
    run = subprocess.run(args, check=False, capture_output=True, text=True, env=env)
    if run.returncode != 0:  # a failed scan too: every scan of the benchmark must phase
        raise SystemExit(run.stdout + run.stderr)
    return time.perf_counter() - t0


def stage_figures(catalog: Path) -> dict[str, dict[str, float]]:
    """Per stage of the last runs: wall seconds (run log) and the scans' own compute seconds (nodes)."""
    from cdiplatform import open_catalog
    from cdiplatform.pipeline.runlog import read_log

    cat = open_catalog(catalog)
    figures: dict[str, dict[str, float]] = {}
    for log in sorted((catalog.parent / f"{catalog.stem}.reports").glob("*.jsonl")):
        for e in read_log(log):
            if e["event"] != "stage_end" or e["state"] == "complete":
                continue
            name = e["stage"].split()[-1]
            entry = figures.setdefault(name, {"wall": 0.0, "compute": 0.0, "scans": 0})
            entry["wall"] += e["seconds"]
            entry["scans"] += e["computed"]
            node = e["node"]
            if node in cat and cat.run_state(node) is not None:
                entry["compute"] += float(np.nansum(cat.open(node)["seconds"].values))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", type=int, default=23, help="synthetic scans (scan 54 comes on top)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of runs, each worker count once a round, side by side (for the noise)")
    parser.add_argument("--keep", type=Path, help="write here instead of a temporary folder")
    parser.add_argument("--quick", action="store_true", help="a short ER/HIO (for a first look)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="cdip-bench-beamtime-"))
    print(f"load average before: {os.getloadavg()}")
    t0 = time.perf_counter()
    shutil.rmtree(work / "beamtime", ignore_errors=True)
    files, n = write_synthetic_beamtime(work / "beamtime", args.scans)
    print(f"wrote {args.scans} synthetic scans ({FRAMES} x {SIDE} x {SIDE})"
          f"{' and linked the real scan 54' if n > args.scans else ''} in {time.perf_counter() - t0:.1f} s")
    counts = [int(w) for w in args.workers.split(",")]
    walls: dict[int, list[float]] = {w: [] for w in counts}
    rows = {}
    for round_ in range(args.rounds):
        for workers in counts:
            catalog = work / f"w{workers}" / "bt.zarr"
            shutil.rmtree(catalog.parent, ignore_errors=True)
            wall = reprocess(files.spec, files.frame_pattern, catalog, workers, dark=files.dark, flat=files.white,
                             quick=args.quick)
            walls[workers].append(wall)
            rows[workers] = {"wall_s": walls[workers], "scans": n, "stages": stage_figures(catalog)}
            print(f"round {round_ + 1}, {workers} worker(s): {n} scans in {wall:.1f} s = {3600 * n / wall:.0f} scans/hour"
                  f" (load average {os.getloadavg()[0]:.2f})")
    print(f"load average after: {os.getloadavg()}")
    median = {w: float(np.median(v)) for w, v in walls.items()}
    for workers in counts:
        print(f"{workers} worker(s): median {median[workers]:.1f} s = {3600 * n / median[workers]:.0f} scans/hour")
    if 1 in walls and 2 in walls:
        each = [w1 / (2 * w2) for w1, w2 in zip(walls[1], walls[2])]
        print(f"scaling efficiency, 2 workers against 1: {median[1] / (2 * median[2]):.2f} of the medians; "
              f"round by round {', '.join(f'{e:.2f}' for e in each)} (target >= 0.85)")
    for workers, row in rows.items():
        # stages that read none of each other's outputs run side by side: their walls overlap, so the
        # shares are of the compute, and the overhead is the whole run's
        compute = sum(s["compute"] for s in row["stages"].values())
        wall = row["wall_s"][-1]
        print(f"\n{workers} worker(s), the last round: per stage (wall s from start to end, overlapping; "
              "the scans' compute s; its share)")
        for name, s in row["stages"].items():
            print(f"  {name:15s} {s['wall']:8.1f} {s['compute']:9.1f} {s['compute'] / compute:6.1%}")
        rest = wall - compute / workers
        print(f"  whole run: {wall:.1f} s, compute {compute:.1f} s / {workers} = {compute / workers:.1f} s; "
              f"the rest (processes and cluster starting, ingest, report, the runner, idle workers): {rest:.1f} s")
    (work / "bench_beamtime.json").write_text(json.dumps(rows, indent=1, default=float))
    print(f"\nfigures in {work / 'bench_beamtime.json'}")


if __name__ == "__main__":
    main()
