"""Catalog region writes from 2 Dask workers against one plain zarr write of the same array.

Both write the same float32 array (``--scans`` x 64 x 64, zstd as the catalog
does) from memory: the plain write is one ``zarr`` assignment in this
process; the catalog write allocates a node from a template and has 2 worker
processes write whole, chunk-aligned regions (:meth:`Catalog.write_region`),
the chunks scattered to the workers before the clock starts. Target: the
region writes reach at least 70% of the plain write's bandwidth. Run::

    python tests/benchmarks/bench_catalog_writes.py [--scans 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _write(path: str, node: str, start: int, block: np.ndarray) -> int:
    import xarray as xr

    from cdiplatform.catalog import open_catalog

    cat = open_catalog(path, mode="a")
    cat.write_region(node, xr.Dataset({"intensity": (("scan", "y", "x"), block)}),
                     scans=slice(start, start + len(block)))
    return block.nbytes


def main() -> None:
    import dask.array as da
    import xarray as xr
    import zarr

    from cdiplatform.catalog import open_catalog
    from cdiplatform.pipeline.cluster import connect

    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=8192)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, c = args.scans, args.chunk
    data = np.random.default_rng(0).random((n, 64, 64), dtype=np.float32)
    mb = data.nbytes / 2**20
    plain_times, region_times = [], []
    with tempfile.TemporaryDirectory() as tmp, connect("local", workers=2, dashboard=False) as handle:
        client = handle.client
        blocks = [client.scatter(data[s:s + c], direct=True) for s in range(0, n, c)]
        for r in range(args.repeats):
            plain = Path(tmp) / f"plain{r}.zarr"
            t0 = time.perf_counter()
            arr = zarr.create_array(plain, shape=data.shape, chunks=(c, 64, 64), dtype="float32")
            arr[:] = data
            plain_times.append(time.perf_counter() - t0)

            path = Path(tmp) / f"cat{r}.zarr"
            open_catalog(path, mode="a")  # a catalog, so that write_region accepts it
            template = xr.Dataset(
                {"intensity": (("scan", "y", "x"), da.zeros(data.shape, dtype="float32", chunks=(c, 64, 64)))},
                coords={"scan": np.arange(n)}, attrs={"training": True},
            )
            template.to_zarr(path, group="training/bench", mode="w-", compute=False, consolidated=False)
            t0 = time.perf_counter()
            futures = [client.submit(_write, str(path), "training/bench", i * c, b, pure=False)
                       for i, b in enumerate(blocks)]
            client.gather(futures)
            region_times.append(time.perf_counter() - t0)
            np.testing.assert_array_equal(zarr.open_array(path / "training" / "bench" / "intensity")[:], data)
            shutil.rmtree(plain)
            shutil.rmtree(path)
    plain_bw, region_bw = mb / min(plain_times), mb / min(region_times)
    print(f"array {data.shape} float32, {mb:.0f} MiB, chunks of {c} scans; best of {args.repeats}")
    print(f"plain zarr write (1 process):        {plain_bw:7.1f} MiB/s")
    print(f"catalog region writes (2 workers):   {region_bw:7.1f} MiB/s")
    print(f"ratio: {region_bw / plain_bw:.2f} (target >= 0.70)")


if __name__ == "__main__":
    main()
