"""Input pipeline: time the training loop waits for data, as a fraction of step time.

Run: ``python tests/benchmarks/bench_nn_input.py [--scans 384] [--workers 0 1 2] [--threads 1]``

Writes an assembled 3D training set (inputs, amplitude, phase; float32,
32^3, zarr v3 with its default compression, chunks of 32 scans) to a
temporary directory, streams it with :class:`cdiplatform.nn.BlockDataset`
through DataLoader worker processes with prefetching, and trains the reduced
3D-CDI-NN for one epoch per worker count. Prints, per worker count, the
seconds spent waiting for the next batch and the epoch's total, and their
ratio (target: at most 10%).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from cdiplatform.nn import BlockDataset, build_model, cdi_nn_3d_config, train


def write_training_set(path: Path, n: int, size: int = 32, chunk: int = 32) -> dict[str, zarr.Array]:
    """Random but well-formed arrays: what matters here is bytes to read and decompress."""
    rng = np.random.default_rng(0)
    out = {}
    for name in ("inputs", "amplitude", "phase"):
        z = zarr.create_array(
            path / f"{name}.zarr",
            shape=(n, size, size, size),
            chunks=(chunk, size, size, size),
            dtype="float32",
        )
        for start in range(0, n, chunk):
            z[start : start + chunk] = rng.uniform(0, 1, (min(chunk, n - start), size, size, size)).astype(
                np.float32
            )
        out[name] = zarr.open_array(path / f"{name}.zarr", mode="r")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        arrays = write_training_set(Path(tmp), args.scans)
        mb = sum(a.nbytes for a in arrays.values()) / 2**20
        print(
            f"training set: {args.scans} scans, {mb:.0f} MiB uncompressed, "
            f"written in {time.perf_counter() - t:.1f} s"
        )
        print(
            f"torch threads: {torch.get_num_threads()}  batch size: {args.batch_size}  "
            "model: reduced 3D-CDI-NN"
        )
        for workers in args.workers:
            config = cdi_nn_3d_config(
                reduced=True,
                epochs=(1, 0, 0, 0),
                batch_size=args.batch_size,
                num_workers=workers,
                prefetch_factor=4,
            )
            data = BlockDataset(arrays, batch_size=args.batch_size, seed=0)
            seen: dict = {}
            train(
                build_model(config),
                data,
                device="cpu",
                callback=lambda ckpt, info, seen=seen: seen.update(info),
            )
            wait, total = seen["data_wait_s"], seen["train_s"]
            steps = data.n_batches(workers)
            print(
                f"workers={workers}: {steps} steps, {total / steps * 1e3:.0f} ms/step, waiting for data "
                f"{wait / steps * 1e3:.1f} ms/step = {wait / total:.1%} of step time"
            )


if __name__ == "__main__":
    main()
