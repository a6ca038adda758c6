"""Ingest speed on the real scan: SPEC parse, frame reads, read + correct, catalog write.

Run: ``python tests/benchmarks/bench_ingest.py [--repeats 7] [--baseline-ref e384167] [--only spec]``

Everything runs in this one process, one thread; the file cache is warmed by
a first, untimed pass, so the figures are of parsing and arithmetic, not of
the disk. Competing readers are timed *interleaved* (one call of each per
round, ``--repeats`` rounds) and compared by the ratio of their medians, so
that a load change on a shared machine hits both alike; the load average is
printed before and after.

Sections:

1. SPEC, the real ``example.spec`` (4 MB, 498 scans): open + scan 54, and
   open + every scan, for ``SpecFile`` (silx underneath), silx alone,
   xrayutilities' ``SPECFile`` (open + scan 54) and the hand-written parser
   the platform had before (``cdiplatform/ingest/spec.py`` at
   ``--baseline-ref``, loaded from git; skipped if git or the ref is missing);
2. frames, the 201 TIFFs of scan 54: ``read_frames`` with its hand-written
   direct-read path vs ``fast=False`` (every file through tifffile, same
   checks), and a plain ``tifffile.imread`` loop;
3. ``read_scan`` (and with ``fast=False``), ``read_scan + correct_frames``,
   the ingest into a catalog (what ``cdip ingest spec`` does per scan), and
   ``prepare_scan`` once.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "aps34idc-au111-scan54"
#: the last commit with the hand-written SPEC parser
BASELINE_REF = "e384167"


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" (")[0].strip()
    except OSError:
        return "n/a"


def _baseline(ref: str, relpath: str, name: str):
    """A module of the repository at git ``ref``, or None."""
    try:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{relpath}"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed one call of each per round."""
    for fn in fns.values():
        fn()  # warm-up: file cache, imports
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _print(medians: dict[str, float], unit_count: int | None = None, unit: str = "") -> None:
    for name, seconds in medians.items():
        rate = f" {unit_count / seconds:10.0f} {unit}/s" if unit_count else ""
        print(f"  {name:44s} {seconds * 1e3:9.2f} ms{rate}")


def bench_spec(repeats: int, ref: str) -> None:
    import xrayutilities as xu
    from silx.io.specfile import SpecFile as SilxSpecFile

    from cdiplatform.ingest import SpecFile

    path = DATA / "example.spec"
    old = _baseline(ref, "cdiplatform/ingest/spec.py", "handwritten_spec")

    def ours_54():
        with SpecFile(path) as spec:
            return spec.scan(54)

    def ours_all():
        with SpecFile(path) as spec:
            return [scan.n_points for scan in spec]

    def silx_54():
        sf = SilxSpecFile(str(path))
        data = sf["54.1"].data
        sf.close()
        return data

    def xu_54():
        scan = xu.io.SPECFile(path.name, path=str(path.parent)).scan54
        scan.ReadData()
        return scan.data

    fns = {"SpecFile (silx) open + scan 54": ours_54, "silx.io.specfile alone, open + scan 54": silx_54,
           "xrayutilities SPECFile open + scan 54": xu_54}
    if old is not None:
        fns["hand-written parser open + scan 54"] = lambda: old.SpecFile(path).scan(54)
    fns["SpecFile (silx) open + all 498 scans"] = ours_all
    if old is not None:
        fns["hand-written parser open + all 498 scans"] = lambda: [s.n_points for s in old.SpecFile(path)]
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # xrayutilities prints a line per read
        medians = _interleaved(fns, repeats)
    print(f"SPEC file {path.name} ({path.stat().st_size / 1e6:.1f} MB, 498 scans), median of {repeats}:")
    _print(medians)
    if old is not None:
        for what in ("scan 54", "all 498 scans"):
            ratio = medians[f"hand-written parser open + {what}"] / medians[f"SpecFile (silx) open + {what}"]
            print(f"  hand-written / SpecFile (silx), open + {what}: {ratio:.2f}")
    else:
        print(f"  (hand-written parser not found at git ref {ref}: not compared)")
    ratio = medians["xrayutilities SPECFile open + scan 54"] / medians["SpecFile (silx) open + scan 54"]
    print(f"  xrayutilities / SpecFile (silx), open + scan 54: {ratio:.2f}")


def bench_frames(repeats: int, files: list[Path]) -> None:
    import tifffile

    from cdiplatform.ingest import read_frames

    fns = {"read_frames (direct path)": lambda: read_frames(files, scan=54),
           "read_frames fast=False (tifffile)": lambda: read_frames(files, scan=54, fast=False),
           "tifffile.imread loop + np.stack": lambda: np.stack([tifffile.imread(f) for f in files])}
    medians = _interleaved(fns, repeats)
    print(f"frames of scan 54 ({len(files)} TIFFs of 256 x 256 int32), median of {repeats}, interleaved:")
    _print(medians, len(files), "frames")
    fast, slow = medians["read_frames (direct path)"], medians["read_frames fast=False (tifffile)"]
    print(f"  tifffile / direct path: {slow / fast:.2f} ({(slow - fast) / len(files) * 1e3:.3f} ms a frame)")


def bench_scan(repeats: int, pattern: str, n_frames: int) -> None:
    from cdiplatform.ingest import correct_frames, prepare_scan, read_scan

    def scan_only():
        return read_scan(DATA / "example.spec", 54, pattern, dark=DATA / "dark.tif",
                         flat=DATA / "whitefield.tif")

    def scan_and_correct():
        raw = scan_only()
        return correct_frames(raw.frames, dark=raw.dark, flat=raw.flat, flat_mean=raw.flat_mean)

    def scan_tifffile():
        return read_scan(DATA / "example.spec", 54, pattern, dark=DATA / "dark.tif",
                         flat=DATA / "whitefield.tif", fast=False)

    fns = {"read_scan": scan_only, "read_scan fast=False (tifffile)": scan_tifffile,
           "read_scan + correct_frames": scan_and_correct}
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

    fns["ingest into the catalog"] = ingest_into_catalog
    medians = _interleaved(fns, repeats)
    print(f"scan 54 end to end, median of {repeats}:")
    _print(medians, n_frames, "frames")
    raw = scan_only()
    t0 = time.perf_counter()
    prepared = prepare_scan(raw)
    print(f"  {'prepare_scan (once, incl. xrayutilities import)':44s} {(time.perf_counter() - t0) * 1e3:9.2f} ms"
          f"  cube {prepared.intensity.shape}, oversampling {np.round(prepared.oversampling, 2).tolist()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline-ref", default=BASELINE_REF,
                        help="git ref of the hand-written SPEC parser to compare with")
    parser.add_argument("--only", choices=["spec", "frames", "scan"], help="run one section")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"shared data not found: {DATA}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    from cdiplatform.ingest.frames import frame_files

    pattern = str(DATA / "frames" / "Staff20-1a_S{scan:04d}_{point:05d}.tif")
    files = frame_files(pattern, 54, 201)
    print(f"1 process, 1 thread (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"load average before: {_loadavg()}")
    if args.only in (None, "spec"):
        bench_spec(args.repeats, args.baseline_ref)
    if args.only in (None, "frames"):
        bench_frames(args.repeats, files)
    if args.only in (None, "scan"):
        bench_scan(args.repeats, pattern, len(files))
    print(f"load average after: {_loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
