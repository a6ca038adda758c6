"""Cost of one phase-retrieval iteration against the FFT pair it needs, and peak memory.

    python tests/benchmarks/bench_phasing_iteration.py [--threads N] [--repeats R]

For each case (64^3 with 16 in a batch, 128^3 with 2), on the same arrays in
the same run:

- the floor: one ``fftn`` + ``ifftn`` pair (complex64, unitary, preallocated output);
- an HIO iteration of the engine (targets: <= 1.5x the pair);
- an HIO iteration with Gaussian shrink-wrap at every iteration (target <= 2.5x).

An iteration's cost is the difference between runs of ``n2`` and ``n1``
iterations divided by ``n2 - n1`` (so set-up and the final error cost cancel);
each figure is the fastest of ``repeats`` runs (the machine is shared: the
minimum is the least disturbed).

Peak memory: a fresh subprocess runs 20 iterations of HIO + shrink-wrap +
averaging on one 128^3 scan and reports the growth of its resident set (sampled every
0.2 ms by a thread) over the data it was given, in complex64 arrays of the grid (target <= 12).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from cdiplatform.phasing import PhasingSettings, ShrinkWrap
from cdiplatform.phasing.engine import iterate

CASES = [((64, 64, 64), 16), ((128, 128, 128), 2)]


def _data(grid, batch, seed=0):
    rng = np.random.default_rng(seed)
    amp = torch.from_numpy(rng.random((batch, 1) + grid, dtype=np.float32))
    rho = torch.from_numpy((rng.random((batch, 1) + grid, dtype=np.float32) + 0j).astype(np.complex64))
    sup = torch.zeros((batch, 1) + grid, dtype=torch.bool)
    sup[(Ellipsis,) + tuple(slice(n // 4, 3 * n // 4) for n in grid)] = True
    return amp, rho, sup


def _time(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def fft_pair_seconds(rho, repeats, n=5):
    dims = (-3, -2, -1)
    buf = torch.empty_like(rho)

    def run():
        for _ in range(n):
            torch.fft.fftn(rho, dim=dims, norm="ortho", out=buf)
            torch.fft.ifftn(buf, dim=dims, norm="ortho", out=buf)

    run()
    return _time(run, repeats) / n


def iteration_seconds(amp, rho0, sup0, shrink, repeats, n1=2, n2=7):
    def run(n):
        s = PhasingSettings(
            algorithm=f"{n}*HIO",
            shrink_wrap=ShrinkWrap(threshold=0.1, sigma=1.0, start=0) if shrink else None,
            twin=None,
        )
        rho, sup = rho0.clone(), sup0.clone()
        t0 = time.perf_counter()
        iterate(amp, rho, sup, s, ndim=3)
        return time.perf_counter() - t0

    run(n1)
    t1 = min(run(n1) for _ in range(repeats))
    t2 = min(run(n2) for _ in range(repeats))
    return (t2 - t1) / (n2 - n1)


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
maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sampled = [base]
running = True
def sample():  # the current resident set every 0.2 ms: a peak that no earlier high-water mark hides
    while running:
        sampled.append(rss_kib())
        threading.Event().wait(0.0002)
t = threading.Thread(target=sample, daemon=True); t.start()
s = PhasingSettings(algorithm="10*HIO+10*ER", shrink_wrap=ShrinkWrap(start=0), twin=None, average_last=10)
iterate(amp, rho, sup, s, ndim=3)
running = False; t.join()
peak = max(sampled)
print(json.dumps({"base_kib": base, "peak_kib": peak, "maxrss_before_kib": maxrss_before}))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu")
    print(f"{'case':>16} {'fft pair':>10} {'HIO':>10} {'ratio':>6} {'HIO+SW':>10} {'ratio':>6}")
    for grid, batch in CASES:
        amp, rho, sup = _data(grid, batch)
        pair = fft_pair_seconds(rho, args.repeats)
        hio = iteration_seconds(amp, rho, sup, False, args.repeats)
        hsw = iteration_seconds(amp, rho, sup, True, args.repeats)
        name = f"{grid[0]}^3 x {batch}"
        print(
            f"{name:>16} {pair * 1e3:8.1f}ms {hio * 1e3:8.1f}ms {hio / pair:6.2f}"
            f" {hsw * 1e3:8.1f}ms {hsw / pair:6.2f}"
        )
    mem = peak_memory_arrays(args.threads)
    print(
        f"peak memory, one 128^3 reconstruction (HIO+ER, shrink-wrap, averaging): "
        f"growth {mem['growth_complex_arrays']:.1f}"
        f" + given {mem['total_complex_arrays'] - mem['growth_complex_arrays']:.1f}"
        f" = {mem['total_complex_arrays']:.1f} complex64 arrays of the grid (target <= 12)"
    )
    print(f"KiB: resident set before {mem['base_kib']}, sampled peak {mem['peak_kib']}")
    _ = resource  # noqa: F841


if __name__ == "__main__":
    main()
