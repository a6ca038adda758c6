"""Runner overhead per task: a stage of 1,000 one-scan chunks whose compute is trivial.

Prints the wall time of the whole stage on a LocalCluster of 2 workers and
the overhead per task: (wall - compute / workers) / tasks, where ``compute``
is the time spent inside the stage's own function (recorded per scan by the
runner). Target: at most 20 ms per task. Run::

    python tests/benchmarks/bench_runner_overhead.py [--tasks 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from cdiplatform.catalog import open_catalog
    from cdiplatform.pipeline.cluster import connect, thread_report
    from cdiplatform.pipeline.job import load_job
    from cdiplatform.pipeline.runner import run_job

    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        job_path = Path(tmp) / "overhead.toml"
        job_path.write_text(
            '[job]\nname = "overhead"\n[[stage]]\nstage = "cdiplatform.testing.stages:Squares"\n'
            f'output = "results/sq"\n[stage.params]\nn_scans = {args.tasks}\nchunk = 1\nsize = 4\n'
        )
        job = load_job(job_path, root=Path(tmp))
        with connect("local", workers=args.workers, dashboard=False) as handle:
            threads = {a: r["torch"] for a, r in thread_report(handle.client).items()}
            t0 = time.perf_counter()
            (report,) = run_job(job, client=handle.client, catalog=Path(tmp) / "c.zarr")
            wall = time.perf_counter() - t0
        compute = float(np.nansum(open_catalog(Path(tmp) / "c.zarr").open("results/sq")["seconds"].values))
    per_task = (wall - compute / args.workers) / args.tasks
    print(f"workers={args.workers} torch threads per worker={sorted(set(threads.values()))}")
    print(f"tasks={args.tasks} ok={report.ok} wall={wall:.2f} s compute={compute:.2f} s")
    print(f"overhead per task: {per_task * 1e3:.1f} ms (target <= 20 ms)")


if __name__ == "__main__":
    main()
