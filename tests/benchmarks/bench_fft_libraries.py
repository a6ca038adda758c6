"""The FFT pair of the iteration by each CPU library, against the rule that picks one.

    python tests/benchmarks/bench_fft_libraries.py [--threads 2] [--rounds 5] [--grids 64x16,128x2,256x256x210]
                                                  [--no-bits]

For each grid (``ZxYxX`` or ``Nx B`` for ``N^3`` with ``B`` in a batch, complex64, unitary), on the
same array, in *rounds* that take the libraries one after the other, the pair ``fftn`` + ``ifftn``:

- ``torch``: the engine's torch pair on the CPU (block by block, each transform's own result:
  :func:`~cdiplatform.phasing.transforms.unitary_fftn` over
  :func:`~cdiplatform.phasing.transforms.transform_blocks`);
- ``pocketfft``: the engine's pocketfft pair (into a kept buffer, then in place there:
  :func:`~cdiplatform.phasing.transforms.unitary_fftn_`);
- where installed, for comparison only (the engine does not use them): ``ducc0`` (pocketfft's
  successor, into a buffer and in place), and FFTW through ``pyfftw`` in place with plans chosen by
  timing (``FFTW_MEASURE``, the time to plan printed apart) and by estimate (``FFTW_ESTIMATE``,
  planned first: an estimate takes the plans of earlier measurements of the process where there are).

It prints ns a voxel (the median over the rounds, and the spread), each library over torch, the
fastest, and what :func:`~cdiplatform.phasing.transforms.resolve_fft` picks for the grid. Unless
``--no-bits``, each library's forward transform of one fixed array is computed in two fresh
processes and their bits compared: a library whose plans depend on timings taken at run time may
give other bits in another process, so a resumed run would not compute the same way.

The script runs under the allocator and OpenMP settings of the platform's workers, as the
iteration benchmark does (``bench_phasing_iteration.with_workers_env``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from cdiplatform.phasing.transforms import resolve_fft, transform_blocks, unitary_fftn, unitary_fftn_

sys.path.insert(0, str(Path(__file__).parent))
from bench_phasing_iteration import loadavg, with_workers_env


def parse_grid(text: str) -> tuple[tuple[int, ...], int]:
    """``"64x16"`` -> ((64, 64, 64), 16); ``"256x256x210"`` -> ((256, 256, 210), 1)."""
    parts = [int(p) for p in text.split("x")]
    if len(parts) == 2:
        return (parts[0],) * 3, parts[1]
    if len(parts) == 3:
        return tuple(parts), 1
    raise SystemExit(f"grid {text!r}: expected NxB (N^3, B in a batch) or ZxYxX")


def make_array(grid: tuple[int, ...], batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (1, batch, *grid)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


class Library(NamedTuple):
    """One library's transforms of an array: ``pair()`` makes one pair (in its buffers), ``forward()``
    makes the forward transform of the array's first values and returns it; ``planning``: seconds."""

    pair: Callable[[], object]
    forward: Callable[[], np.ndarray]
    planning: float = 0.0


def libraries(x: np.ndarray, threads: int) -> dict[str, Library]:
    """Library name -> its :class:`Library` on ``x``, for torch, pocketfft and those installed."""
    src = torch.from_numpy(x)
    buf = torch.empty_like(src)
    blocks = transform_blocks(tuple(src.shape), ndim=3)
    axes = (2, 3, 4)

    def torch_pair():
        for scans, starts in blocks:
            unitary_fftn(unitary_fftn(src[scans, starts], ndim=3), ndim=3, inverse=True)

    def torch_forward():
        return torch.cat([unitary_fftn(src[s, k], ndim=3) for s, k in blocks], dim=1).numpy()

    def pocketfft_forward():
        return unitary_fftn_(src, buf, ndim=3, fft="pocketfft").numpy()

    def pocketfft_pair():
        pocketfft_forward()
        unitary_fftn_(buf, buf, ndim=3, inverse=True, fft="pocketfft")

    out = {"torch": Library(torch_pair, torch_forward), "pocketfft": Library(pocketfft_pair, pocketfft_forward)}
    try:
        import ducc0
    except ImportError:
        print("  ducc0 not installed (pip install ducc0 to compare it)")
    else:
        dbuf = np.empty_like(x)

        def ducc0_forward():
            return ducc0.fft.c2c(x, axes=axes, forward=True, inorm=1, out=dbuf, nthreads=threads)

        def ducc0_pair():
            ducc0_forward()
            ducc0.fft.c2c(dbuf, axes=axes, forward=False, inorm=1, out=dbuf, nthreads=threads)

        out["ducc0"] = Library(ducc0_pair, ducc0_forward)
    try:
        import pyfftw
    except ImportError:
        print("  pyfftw not installed (pip install pyfftw to compare FFTW)")
    else:
        for flag in ("FFTW_ESTIMATE", "FFTW_MEASURE"):  # (an estimate would take the measured plans' wisdom)
            a = pyfftw.empty_aligned(x.shape, dtype="complex64")
            t0 = time.perf_counter()
            plans = [pyfftw.FFTW(a, a, axes=axes, direction=d, flags=(flag,), threads=threads, ortho=True,
                                 normalise_idft=False) for d in ("FFTW_FORWARD", "FFTW_BACKWARD")]
            planning = time.perf_counter() - t0
            a[...] = x  # (planning by timing overwrites the arrays)

            def fftw_forward(a=a, p=plans):
                a[...] = x
                p[0]()
                return a

            out[f"fftw-{flag[5:].lower()}"] = Library(lambda p=plans: (p[0](), p[1]()), fftw_forward, planning)
    return out


def forward_hashes(grid: tuple[int, ...], batch: int, threads: int, names: list[str]) -> dict[str, str]:
    """Each library's forward transform of :func:`make_array`, hashed (run in a fresh process)."""
    torch.set_num_threads(threads)
    libs = libraries(make_array(grid, batch), threads)
    return {name: hashlib.sha1(np.ascontiguousarray(libs[name].forward()).tobytes()).hexdigest()[:12]
            for name in names}


def measure(grid, batch, *, rounds: int, threads: int, n: int = 5) -> list[str]:
    """Print the table of one grid; returns the libraries measured."""
    x = make_array(grid, batch)
    libs = libraries(x, threads)
    for lib in libs.values():
        lib.pair()  # warm: plans, caches, page faults
    times = {name: [] for name in libs}
    for _ in range(rounds):
        for name, lib in libs.items():
            t0 = time.perf_counter()
            for _ in range(n):
                lib.pair()
            times[name].append((time.perf_counter() - t0) / n)
    voxels = x.size
    ref = float(np.median(times["torch"]))
    rule = resolve_fft("cpu", grid)
    fastest = min(times, key=lambda k: np.median(times[k]))
    print(f"\n{'x'.join(map(str, grid))} x {batch} ({x.nbytes / 2**20:.0f} MiB): the rule picks {rule},"
          f" the fastest here is {fastest}")
    print(f"{'library':>15} {'ns/voxel':>9} {'spread':>13} {'/ torch':>8} {'ms':>8} {'planning':>9}")
    for name, ts in times.items():
        ns = np.array(ts) / voxels * 1e9
        mark = "*" if name == rule else " "
        print(f"{name:>14}{mark} {np.median(ns):9.2f} {ns.min():6.2f}-{ns.max():<6.2f} "
              f"{np.median(ts) / ref:8.2f} {np.median(ts) * 1e3:8.1f} {libs[name].planning:8.2f}s")
    return list(libs)


def main() -> None:
    with_workers_env()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--grids", default="64x16,128x2,256x256x210")
    ap.add_argument("--no-bits", action="store_true", help="skip the bits of two fresh processes")
    ap.add_argument("--hashes", nargs=2, help=argparse.SUPPRESS)  # (internal: GRID NAMES, hashes as JSON)
    args = ap.parse_args()
    if args.hashes:
        grid, batch = parse_grid(args.hashes[0])
        print(json.dumps(forward_hashes(grid, batch, args.threads, args.hashes[1].split(","))))
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, rounds {args.rounds}, load average before:"
          f" {loadavg()}")
    names = []
    for text in args.grids.split(","):
        names = measure(*parse_grid(text), rounds=args.rounds, threads=args.threads)
    print(f"\nload average after: {loadavg()}")
    if args.no_bits:
        return
    print("\nbits of the forward transform in two fresh processes:")
    for text in args.grids.split(","):
        runs = [json.loads(subprocess.run(
            [sys.executable, __file__, "--threads", str(args.threads), "--hashes", text, ",".join(names)],
            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
        same = {name: runs[0][name] == runs[1].get(name) for name in runs[0]}
        print(f"  {text}: " + ", ".join(f"{name} {'same' if ok else 'DIFFER'}" for name, ok in same.items()))


if __name__ == "__main__":
    main()
