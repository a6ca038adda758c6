"""Cost of one phase-retrieval iteration against the FFT pair it needs, and peak memory.

    python tests/benchmarks/bench_phasing_iteration.py [--threads 2] [--rounds 12] [--cases 64,128,scan54]
                                                       [--iterations 10] [--compile] [--no-memory]

For each case (64^3 with 16 in a batch, 128^3 with 2, the scan-54 grid
(256, 256, 210) with 1), on the same arrays in the same run, in *rounds*:
each round times, one after the other,

- the floor: the engine's ``fftn`` + ``ifftn`` pair on CPU (complex64,
  unitary, block by block, each transform's own result and no copy:
  :func:`~cdiplatform.phasing.transforms.unitary_fftn` over
  :func:`~cdiplatform.phasing.transforms.transform_blocks`; for a grid
  above 32 MiB, pocketfft's pair in place, the library the engine's rule
  takes there, :func:`~cdiplatform.phasing.transforms.resolve_fft`), and beside it,
  for reference, the pair into a preallocated buffer (the engine's before
  2026-12-03 afternoon, :func:`~cdiplatform.phasing.transforms.unitary_fftn_`,
  which copies every result once more) and as single torch calls (which
  fault a fresh temporary in on every call from 32 MiB up);
- a plain HIO iteration of the engine (target <= 1.1x the pair);
- an HIO iteration with Gaussian shrink-wrap at every iteration (sigma 1),
  once with each blur (``fft``, ``separable``; target <= 1.5x the pair for
  the one the rule picks, marked ``*``);
- with ``--compile``, HIO + shrink-wrap with the fused steps too.

An iteration's cost is the difference between runs of ``1 + n`` and ``1``
iterations divided by ``n`` (set-up and the final error cancel). Each
round's figures are divided by that round's pair, so a change of the
machine's load between rounds cancels; the table gives the median ratio over
the rounds, its spread (the interquartile range) and the medians of the
first and the second half of the rounds: when those two differ by more than
10%, take more rounds (or a quieter machine). The load average is printed
before and after. The script runs under the allocator and OpenMP settings of the
platform's workers (:func:`~cdiplatform.pipeline.cluster.threads.worker_env`,
executing itself again with them where they are missing).

Peak memory: a fresh subprocess runs 20 iterations of HIO + shrink-wrap +
averaging on one 128^3 scan and reports the growth of its resident set
(sampled every 0.2 ms by a thread) over the data it was given, in complex64
arrays of the grid (target <= 12).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cdiplatform.phasing import PhasingSettings, ShrinkWrap, resolve_blur
from cdiplatform.phasing.engine import iterate
from cdiplatform.phasing.transforms import resolve_fft, transform_blocks, unitary_fftn, unitary_fftn_

CASES = {"64": ((64, 64, 64), 16), "128": ((128, 128, 128), 2), "scan54": ((256, 256, 210), 1)}


def sync(device) -> None:
    """Wait for the device (CUDA runs asynchronously), so that a host clock reads its time."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_data(grid, batch, *, seed=0, device="cpu"):
    """Random amplitude, start and a box support of a batch, ``(batch, 1, *grid)``, on ``device``."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    amp = torch.rand((batch, 1) + grid, generator=g).to(device)
    rho = torch.randn((batch, 1) + grid, dtype=torch.complex64, generator=g).to(device)
    sup = torch.zeros((batch, 1) + grid, dtype=torch.bool, device=device)
    sup[(Ellipsis, *tuple(slice(n // 4, 3 * n // 4) for n in grid))] = True
    return amp, rho, sup


def fft_pair_seconds(rho, buf, n, *, how=None):
    """Seconds of one unitary ``fftn`` + ``ifftn`` pair of ``rho`` (mean of ``n``): ``"blocks"`` the
    engine's on CPU (block by block, no copy), ``"buffer"`` into ``buf`` in bounded calls (the
    engine's on other devices, where it is one call: the default there), ``"single"`` into ``buf``
    in one torch call each, ``"pocketfft"`` both in place in ``buf`` (the engine's library on CPU
    for grids above 32 MiB, :func:`~cdiplatform.phasing.transforms.resolve_fft`)."""
    dims = (-3, -2, -1)
    how = how or ("blocks" if rho.device.type == "cpu" else "buffer")
    blocks = transform_blocks(tuple(rho.shape), ndim=3)
    sync(rho.device)
    t0 = time.perf_counter()
    for _ in range(n):
        if how == "pocketfft":
            unitary_fftn_(buf, buf, ndim=3, fft="pocketfft")
            unitary_fftn_(buf, buf, ndim=3, inverse=True, fft="pocketfft")
        elif how == "single":
            torch.fft.fftn(rho, dim=dims, norm="ortho", out=buf)
            torch.fft.ifftn(buf, dim=dims, norm="ortho", out=buf)
        elif how == "buffer":
            unitary_fftn_(rho, buf, ndim=3)
            unitary_fftn_(buf, buf, ndim=3, inverse=True)
        else:
            for scans, starts in blocks:
                unitary_fftn(unitary_fftn(rho[scans, starts], ndim=3), ndim=3, inverse=True)
    sync(rho.device)
    return (time.perf_counter() - t0) / n


def iteration_seconds(amp, rho0, sup0, shrink: ShrinkWrap | None, n: int, compile_: bool = False) -> float:
    """Seconds of one HIO iteration of the engine: runs of ``1 + n`` and 1 iterations, differenced."""

    def run(k):
        s = PhasingSettings(algorithm=f"{k}*HIO", shrink_wrap=shrink, twin=None, compile=compile_)
        rho, sup = rho0.clone(), sup0.clone()
        sync(rho.device)
        t0 = time.perf_counter()
        iterate(amp, rho, sup, s, ndim=3)
        sync(rho.device)
        return time.perf_counter() - t0

    return (run(1 + n) - run(1)) / n


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


_MEMORY_CHILD = r"""
import json, resource, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from cdiplatform.phasing import PhasingSettings, ShrinkWrap
from cdiplatform.phasing.engine import iterate
grid = (128, 128, 128)
torch.manual_seed(0)
amp = torch.rand((1, 1) + grid)  # no temporaries, so the baseline below is not a stale high-water mark
rho = torch.empty((1, 1) + grid, dtype=torch.complex64)
torch.view_as_real(rho).uniform_()
sup = torch.zeros((1, 1) + grid, dtype=torch.bool); sup[..., 32:96, 32:96, 32:96] = True
# warm up the FFT plans and the allocator on a tiny grid, then take the baseline
small = PhasingSettings(algorithm="2*HIO", shrink_wrap=ShrinkWrap(start=0), twin=None, average_last=1)
cut = (Ellipsis, slice(8), slice(8), slice(8))
iterate(amp[cut].clone(), rho[cut].clone(), sup[cut].clone(), small, ndim=3)
import os, threading
page = os.sysconf("SC_PAGE_SIZE")
def rss_kib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page // 1024
base = rss_kib()
sampled = [base]
running = True
def sample():  # the current resident set every 0.2 ms: a peak that no earlier high-water mark hides
    while running:
        sampled.append(rss_kib())
        threading.Event().wait(0.0002)
t = threading.Thread(target=sample, daemon=True); t.start()
s = PhasingSettings(algorithm="10*HIO+10*ER", shrink_wrap=ShrinkWrap(start=0), twin=None, average_last=10)
out = iterate(amp, rho, sup, s, ndim=3)
running = False; t.join()
print(json.dumps({"base_kib": base, "peak_kib": max(sampled), "blur": out.blur}))
"""


def peak_memory_arrays(threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(threads)], capture_output=True, text=True, check=True
    )
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    complex_bytes = 128**3 * 8
    # the data given to the engine (amplitude, rho, support) already sit in the baseline
    growth = (rec["peak_kib"] - rec["base_kib"]) * 1024
    given = 128**3 * (4 + 8 + 1)
    rec["growth_complex_arrays"] = growth / complex_bytes
    rec["total_complex_arrays"] = (growth + given) / complex_bytes
    return rec


def measure_case(grid, batch, *, rounds: int, n: int, compile_: bool) -> dict:
    amp, rho, sup = make_data(grid, batch)
    buf = torch.empty_like(rho)
    sw = ShrinkWrap(threshold=0.1, sigma=1.0, start=0)
    variants = {
        "HIO": (None, False),
        "HIO+SW fft": (ShrinkWrap(threshold=0.1, sigma=1.0, start=0, blur="fft"), False),
        "HIO+SW separable": (ShrinkWrap(threshold=0.1, sigma=1.0, start=0, blur="separable"), False),
    }
    if compile_:
        variants["HIO+SW compiled"] = (sw, True)
        iteration_seconds(amp, rho, sup, sw, 1, True)  # compile outside the rounds
    fft_pair_seconds(rho, buf, 2)  # plans
    for shrink, comp in variants.values():
        iteration_seconds(amp, rho, sup, shrink, 1, comp)  # warm-up
    library = resolve_fft("cpu", grid)
    pair, buffered, single, torch_pair, ratios = [], [], [], [], {k: [] for k in variants}
    seconds = {k: [] for k in variants}
    for _ in range(rounds):
        single.append(fft_pair_seconds(rho, buf, n, how="single"))
        buffered.append(fft_pair_seconds(rho, buf, n, how="buffer"))
        torch_pair.append(fft_pair_seconds(rho, buf, n))
        p = torch_pair[-1] if library == "torch" else fft_pair_seconds(rho, buf, n, how="pocketfft")
        pair.append(p)
        for name, (shrink, comp) in variants.items():
            seconds[name].append(iteration_seconds(amp, rho, sup, shrink, n, comp))
            ratios[name].append(seconds[name][-1] / p)
    half = rounds // 2
    stats = {}
    for name, r in ratios.items():
        r = np.asarray(r)
        q1, q3 = np.percentile(r, [25, 75])
        first, second = np.median(r[:half]), np.median(r[half:])
        stats[name] = {
            "median": float(np.median(r)),
            "iqr": (float(q1), float(q3)),
            "halves": (float(first), float(second)),
            "halves_differ": float(abs(first - second) / max(np.median(r), 1e-12)),
            "ms": float(np.median(seconds[name])) * 1e3,
        }
    return {"pair_ms": float(np.median(pair)) * 1e3, "buffered_ms": float(np.median(buffered)) * 1e3,
            "single_calls_ms": float(np.median(single)) * 1e3, "torch_blocks_ms": float(np.median(torch_pair)) * 1e3,
            "fft": library, "ratios": stats}


def with_workers_env() -> dict[str, str]:
    """Run this script again under the allocator and OpenMP settings of the platform's workers
    (:func:`~cdiplatform.pipeline.cluster.threads.worker_env`), if not yet.

    Without them glibc maps every transform temporary of 32 MiB or more afresh, and smaller ones
    depending on the sizes freed before (measured here: 16,000 page faults a pair of 16 x 64^3 in
    blocks of 16 MiB after smaller blocks had run), and OpenMP's threads spin for milliseconds after
    each numba kernel beside pocketfft's: the engine would be timed as no worker runs it. Returns
    those settings (once they are this process's).
    """
    from cdiplatform.pipeline.cluster.threads import worker_env  # dask's package: not on a GPU machine

    env = worker_env()
    if all(os.environ.get(k) == v for k, v in env.items()):
        return env
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **env})


def main() -> None:
    env = with_workers_env()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=10, help="n: iterations timed per measurement")
    ap.add_argument("--cases", default="64,128,scan54")
    ap.add_argument("--compile", action="store_true", help="also time the fused (torch.compile) steps")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, rounds {args.rounds}, "
          f"environment {' '.join(f'{k}={v}' for k, v in env.items())} (the workers')")
    print(f"load average before: {loadavg()}")
    results = {}
    for case in args.cases.split(","):
        grid, batch = CASES[case]
        results[case] = measure_case(
            grid, batch, rounds=args.rounds, n=args.iterations, compile_=args.compile
        )
        rule = resolve_blur("cpu", grid)
        name = f"{'x'.join(map(str, grid))} x {batch}"
        r = results[case]
        print(f"\n{name}: FFT pair {r['pair_ms']:.1f} ms by {r['fft']} (median; torch in blocks"
              f" {r['torch_blocks_ms']:.1f} ms, into a buffer {r['buffered_ms']:.1f} ms, as single torch calls"
              f" {r['single_calls_ms']:.1f} ms); the rule's blur: {rule}")
        print(f"{'variant':>18} {'x pair':>7} {'IQR':>13} {'halves':>13} {'differ':>7} {'ms':>8}")
        for variant, st in results[case]["ratios"].items():
            mark = "*" if variant.endswith(rule) else " "
            print(
                f"{variant:>17}{mark} {st['median']:7.2f} {st['iqr'][0]:6.2f}-{st['iqr'][1]:<6.2f}"
                f" {st['halves'][0]:6.2f}/{st['halves'][1]:<6.2f} {st['halves_differ'] * 100:6.1f}% {st['ms']:8.1f}"
            )
    print(f"\nload average after: {loadavg()}")
    if not args.no_memory:
        mem = peak_memory_arrays(args.threads)
        print(
            f"peak memory, one 128^3 reconstruction (HIO+ER, shrink-wrap {mem['blur']}, averaging): "
            f"growth {mem['growth_complex_arrays']:.1f}"
            f" + given {mem['total_complex_arrays'] - mem['growth_complex_arrays']:.1f}"
            f" = {mem['total_complex_arrays']:.1f} complex64 arrays of the grid (target <= 12)"
        )


if __name__ == "__main__":
    main()
