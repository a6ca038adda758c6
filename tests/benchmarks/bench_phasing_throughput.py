"""Batched throughput of phase retrieval: scans per hour for S scans x K starts on one device.

    python tests/benchmarks/bench_phasing_throughput.py [--device cpu] [--threads 2] [--starts 1,4]
                                                        [--grids 64,128,scan54] [--max-voxels 2**25]

For each grid (64^3, 128^3, the scan-54 grid (256, 256, 210)) and number of
starts K, a batch of S scans, S = ``auto_batch_size(grid, n_starts=K,
device)`` capped so that S*K*voxels stays under ``--max-voxels`` (the time
of a run, not memory, is what the cap bounds on a CPU), is phased with
:func:`cdiplatform.phasing.phase_retrieval` (recipe ``cohere_scan54``:
shrink-wrap every iteration; HIO) for ``n1`` and ``n2`` iterations. Their
difference gives the cost of an iteration of the batch, the rest the fixed
cost (starts, selection, alignment, centring), and so the time of 620
iterations and the scans per hour. ``tests/benchmarks/gpu/device_bench.py``
runs the same measure on a GPU.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from bench_phasing_iteration import with_workers_env

from cdiplatform.phasing import auto_batch_size, phase_retrieval, recipe

GRIDS = {"64": (64, 64, 64), "128": (128, 128, 128), "scan54": (256, 256, 210)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    grid: tuple[int, ...],
    n_starts: int,
    device,
    *,
    max_voxels: int,
    n1: int = 5,
    n2: int = 25,
    iterations: int = 620,
) -> dict:
    """Scans per hour of ``iterations`` iterations for a batch that fits, measured on ``device``."""
    device = torch.device(device)
    auto = auto_batch_size(grid, n_starts=n_starts, device=device)
    batch = max(1, min(auto, max_voxels // (math.prod(grid) * n_starts)))
    amp = torch.from_numpy(np.random.default_rng(0).random((batch, *grid), dtype=np.float32)).to(device)

    def run(n):
        settings = recipe("cohere_scan54", algorithm=f"{n}*HIO", n_starts=n_starts)
        _sync(device)
        t0 = time.perf_counter()
        res = phase_retrieval(amp, ndim=3, settings=settings, seed=0)
        _sync(device)
        return time.perf_counter() - t0, (res.blur, res.fft)

    run(1)
    (t1, (blur, fft)), (t2, _) = run(n1), run(n2)
    per_it = (t2 - t1) / (n2 - n1)
    noisy = per_it <= 0  # a disturbed machine: fall back to the longer run alone
    if noisy:
        per_it = t2 / n2
    fixed = max(t1 - n1 * per_it, 0.0)
    return {
        "grid": list(grid),
        "starts": n_starts,
        "batch": batch,
        "auto_batch_size": auto,
        "blur": blur,
        "fft": fft,
        "s_per_iteration": per_it,
        "fixed_s": fixed,
        "scans_per_hour": batch * 3600 / (fixed + iterations * per_it),
        "iterations": iterations,
        "noisy": noisy,
    }


def table(rows: list[dict]) -> str:
    out = [
        "| grid | K | S (auto) | blur | fft | s / iteration of the batch | scans / hour (620 it.) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['grid']} | {r['starts']} | skipped: {r['skipped']} | | | | |")
            continue
        flag = " (noisy)" if r["noisy"] else ""
        out.append(
            f"| {'x'.join(map(str, r['grid']))} | {r['starts']} | {r['batch']} ({r['auto_batch_size']}) |"
            f" {r['blur']} | {r['fft']} | {r['s_per_iteration']:.3f}{flag} | {r['scans_per_hour']:.1f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--starts", default="1,4")
    ap.add_argument("--grids", default="64,128,scan54")
    ap.add_argument("--max-voxels", type=int, default=2**25)
    ap.add_argument("--n1", type=int, default=3)
    ap.add_argument("--n2", type=int, default=8)
    args = ap.parse_args()
    if args.device == "cpu":
        with_workers_env()  # as a worker of the platform runs it
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}")
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    rows = [
        throughput(GRIDS[g], int(k), args.device, max_voxels=args.max_voxels, n1=args.n1, n2=args.n2)
        for g in args.grids.split(",")
        for k in args.starts.split(",")
    ]
    print(table(rows))
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
