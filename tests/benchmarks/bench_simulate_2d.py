"""Throughput of the 2D simulation (CDI NN 2018 recipe): objects + diffraction per second.

Run ``python tests/benchmarks/bench_simulate_2d.py [--batch 4096] [--repeats 5] [--size 32]``.
One process, one generator per scan (made as the runner makes them, not
timed), the whole batch per call. Prints the samples per second by wall clock
and by this process's CPU time (the latter is what a busy machine distorts
least), the time of each step, and the thread counts in use. Goal: 20,000
samples per second (32 x 32, with diffraction) on 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np


def _timed(module, name: str, totals: dict[str, float]) -> None:
    func = getattr(module, name)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--pad", type=int, default=1)
    args = parser.parse_args()

    import torch

    from cdiplatform.pipeline.randomness import scan_rngs
    from cdiplatform.simulate import objects2d

    torch.set_num_threads(2)
    print(f"cores visible: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
          f"scipy.fft workers: all cores (-1), torch threads (unused here): {torch.get_num_threads()}")

    steps: dict[str, float] = {}
    for name in ("_uniforms", "_random_shapes", "_random_phases", "object_intensity"):
        _timed(objects2d, name, steps)

    objects2d.simulate_2d(scan_rngs(0, 0, np.arange(64)), size=args.size, pad=args.pad)  # warm up
    steps.clear()
    wall, cpu = [], []
    for r in range(args.repeats):
        rngs = scan_rngs(r, 0, np.arange(args.batch))
        w0, c0 = time.perf_counter(), time.process_time()
        objects2d.simulate_2d(rngs, size=args.size, pad=args.pad)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)

    n = args.batch
    grid = args.size * args.pad
    print(f"simulate_2d: batch {n}, object {args.size}x{args.size}, intensity {grid}x{grid}, "
          f"{args.repeats} repeats")
    print(f"  wall: best {n / min(wall):,.0f} samples/s, median {n / np.median(wall):,.0f} samples/s "
          f"({min(wall) * 1e3:.0f} ms best per batch)")
    print(f"  cpu : best {n / min(cpu):,.0f} samples/s of CPU time "
          f"({min(cpu) * 1e3:.0f} ms per batch, all threads)")
    for name, total in steps.items():
        print(f"  {name:<18} {total / args.repeats * 1e3:7.1f} ms per batch (wall)")
    goal = 20_000
    print(f"  goal {goal:,} samples/s: {'met' if n / min(wall) >= goal else 'NOT met'} (best wall)")


if __name__ == "__main__":
    main()
