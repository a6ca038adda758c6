"""Ingest speed on the real scan: frames per second, read + correct vs a plain tifffile read.

Run: ``python tests/benchmarks/bench_ingest.py [--repeats 5]``

Everything runs in this one process, one thread (same process count for every
line); the file cache is warmed by a first, untimed pass, so the figures are
of parsing and arithmetic, not of the disk. Lines:

- ``tifffile.imread``: the plain read of the 201 frames (a list of arrays);
- ``tifffile.imread + np.stack``: the same into one array;
- ``read_frames fast=False``: our checked read, every file parsed by tifffile;
- ``read_frames``: our checked read with the direct path for uniform frames;
- ``read_scan``: SPEC parse + frames + dark/white fields;
- ``read_scan + correct_frames``: the above plus dark/white correction (the
  ingest's "read + correct");
- ``prepare_scan``: threshold, crop 200^3, q grid, oversampling (once).

(The catalog write is added by the lead.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "aps34idc-au111-scan54"


def _timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up (file cache, imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"shared data not found: {DATA}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    import tifffile

    from cdiplatform.ingest import correct_frames, prepare_scan, read_frames, read_scan
    from cdiplatform.ingest.frames import frame_files

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    pattern = str(DATA / "frames" / "Staff20-1a_S{scan:04d}_{point:05d}.tif")
    files = frame_files(pattern, 54, 201)
    n = len(files)

    def plain():
        return [tifffile.imread(f) for f in files]

    def plain_stack():
        return np.stack([tifffile.imread(f) for f in files])

    def ours_slow():
        return read_frames(files, scan=54, fast=False)

    def ours_fast():
        return read_frames(files, scan=54)

    def scan_only():
        return read_scan(DATA / "example.spec", 54, pattern, dark=DATA / "dark.tif",
                         flat=DATA / "whitefield.tif")

    def scan_and_correct():
        raw = scan_only()
        return correct_frames(raw.frames, dark=raw.dark, flat=raw.flat, flat_mean=raw.flat_mean)

    import tempfile

    from cdiplatform.catalog import open_catalog
    from cdiplatform.catalog.raw import raw_scan_dataset

    workdir = tempfile.mkdtemp()

    def ingest_into_catalog():
        # what `cdip ingest spec` does per scan (read, write zstd-compressed into raw/<beamtime>/<scan>),
        # plus the detector correction that `prepare` applies
        raw = scan_only()
        correct_frames(raw.frames, dark=raw.dark, flat=raw.flat, flat_mean=raw.flat_mean)
        ds = raw_scan_dataset(raw, beamtime="bench")
        cat = open_catalog(Path(workdir) / "bench.zarr", mode="a")
        cat.write("raw/bench/54", ds, attrs=dict(ds.attrs), overwrite=True,
                  encoding={"frames": {"chunks": (16, 256, 256)}})

    print(f"scan 54: {n} frames of 256 x 256 int32, 1 process, 1 thread "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), median of {args.repeats}")
    print(f"{'what':34s} {'seconds':>9s} {'frames/s':>10s}")
    rows = [("tifffile.imread", plain), ("tifffile.imread + np.stack", plain_stack),
            ("read_frames fast=False", ours_slow), ("read_frames", ours_fast),
            ("read_scan", scan_only), ("read_scan + correct_frames", scan_and_correct),
            ("ingest into the catalog", ingest_into_catalog)]
    results = {}
    for name, fn in rows:
        seconds, value = _timed(fn, args.repeats)
        results[name] = seconds
        print(f"{name:34s} {seconds:9.4f} {n / seconds:10.0f}")
    ratio = results["tifffile.imread"] / results["read_scan + correct_frames"]
    print(f"read + correct vs plain tifffile read: {ratio:.2f}x the frame rate")
    ratio = results["tifffile.imread"] / results["ingest into the catalog"]
    print(f"ingest (read, correct, compressed write into the catalog) vs plain tifffile read: "
          f"{ratio:.2f}x the frame rate (target >= 0.70)")

    raw = scan_only()
    t0 = time.perf_counter()
    prepared = prepare_scan(raw)
    print(f"{'prepare_scan (once, incl. xrayutilities import)':34s} {time.perf_counter() - t0:9.4f}"
          f"  cube {prepared.intensity.shape}, oversampling {np.round(prepared.oversampling, 2).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
