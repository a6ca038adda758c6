"""How torch tasks (resource ``GPU=1``) spread over two GPU jobs on SLURM (distributed #1851).

On the single-node test SLURM (:func:`cdiplatform.testing.slurm.ensure_slurm`,
root): CPU jobs from ``jobs/slurm.yaml`` and ``--gres=gpu:1`` jobs from
``jobs/slurm_gpu.yaml`` (fit to the test node), one scheduler. ``--tasks``
tasks that sleep ``--seconds`` each and ask ``{"GPU": 1}``, as the runner's
torch chunks do, in two cases:

``both up``
    two GPU jobs already running when the tasks are submitted;
``second late``
    one GPU job running, the pool allowed a second: the adaptive loop submits
    it when the tasks wait, and it arrives after most were assigned to the
    first worker (the form #1851 takes with SLURM, where workers trickle in).

Prints the tasks run per GPU job, the wall time against the ideal (tasks x
seconds / 2), and that no task ran on the CPU job. Run::

    python tests/benchmarks/bench_slurm_gpu_spread.py [--tasks 24] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _sleep_where(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ.get("SLURM_JOB_ID", "?")


def _case(label: str, cpu: Path, gpu: Path, *, tasks: int, seconds: float) -> None:
    from distributed import wait

    from cdiplatform.pipeline.cluster import connect, task_resources

    with connect(f"slurm:{cpu},{gpu}", wait=180) as handle:
        client = handle.client
        names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        jobs = {name: str(job.job_id) for name, job in handle.cluster.workers.items()}
        cpu_jobs = {jobs[n] for n in names.values() if n.startswith("cpu")}
        resources = task_resources(client, uses_torch=True)
        t0 = time.perf_counter()
        futures = [client.submit(_sleep_where, seconds, resources=resources, pure=False) for _ in range(tasks)]
        wait(futures)
        wall = time.perf_counter() - t0
        ran = Counter(f.result() for f in futures)
        pools = handle.cluster.jobs_per_pool()
    per_job = ", ".join(f"job {j}: {n}" for j, n in sorted(ran.items()))
    print(f"{label:12s} GPU jobs {pools['gpu']}: {per_job}; wall {wall:.1f} s (ideal on 2: "
          f"{tasks * seconds / 2:.1f} s); on the CPU job: {sum(ran[j] for j in cpu_jobs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()

    from cdiplatform.testing.slurm import cluster_file_for_test_node, ensure_slurm

    info = ensure_slurm()
    print(f"SLURM node {info.node}: {info.cpus} CPUs, {info.gpus} gpu GRES; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cpu = cluster_file_for_test_node(REPO / "jobs" / "slurm.yaml", tmp / "cpu.yaml", adapt=(1, 1))
        both = cluster_file_for_test_node(REPO / "jobs" / "slurm_gpu.yaml", tmp / "gpu.yaml", adapt=(2, 2))
        _case("both up", cpu, both, tasks=args.tasks, seconds=args.seconds)
        late = cluster_file_for_test_node(REPO / "jobs" / "slurm_gpu.yaml", tmp / "gpu.yaml", adapt=(1, 2))
        _case("second late", cpu, late, tasks=args.tasks, seconds=args.seconds)
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
