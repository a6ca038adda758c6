"""Benchmark of the gold-crystal simulation (``simulate_gold``).

Run ``python tests/benchmarks/bench_gold.py [--crystals N] [--paper]``. Prints:

1. pipeline overhead per crystal: the whole stage (crystal, LAMMPS, voxels,
   FFT, metadata), in process and through the runner (Dask LocalCluster, one
   worker, zarr writes), against the bare LAMMPS minimization
   (:func:`relax_crystal`) of the same crystals in the same run;
2. throughput, crystals per hour, at default size with 2 worker processes;
3. speed-up from 1 to 2 worker processes (same job, fresh catalogs);
4. with ``--paper``: one relaxation of a crystal cut from a 50-cell
   (500,000-atom) block, the paper's size (minutes to hours on a loaded machine).

Times are wall clock and CPU (``process_time``) where a single process does
the work; the machine's load average is printed with them, since other jobs
share the cores. LAMMPS runs one thread per crystal (``threads = 1``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
JOB_SEED = 7
sys.path.insert(0, str(REPO))


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def crystals_for(seeds, params):
    """The crystals the stage would build from these seeds, with pinned facet and strain."""
    from cdiplatform.simulate.gold.crystal import random_crystal
    from cdiplatform.simulate.gold.relax import choose_pinned_facet, random_strain

    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        c = random_crystal(
            rng=rng, block_cells=params.block_cells, n_planes=(params.n_planes_min, params.n_planes_max),
            plane_distance=(params.plane_distance_min, params.plane_distance_max), normals=params.normals,
        )
        _, pinned = choose_pinned_facet(c, rng=rng, depth=params.pin_depth)
        out.append((c, pinned, random_strain(rng=rng, max_strain=params.max_strain)))
    return out


def job_file(folder: Path, n: int, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f'[job]\nname = "{name}"\nseed = {JOB_SEED}\n\n[[stage]]\nstage = "simulate_gold"\n'
        f'output = "collections/gold"\n[stage.params]\nn_crystals = {n}\n'
    )
    return path


def run_with_workers(n_crystals: int, workers: int, folder: Path) -> tuple[float, float]:
    """Wall time of the job on ``workers`` local worker processes, and the CPU time they spent."""
    from cdiplatform.pipeline.cluster import connect
    from cdiplatform.pipeline.job import load_job
    from cdiplatform.pipeline.runner import run_job

    job = load_job(job_file(folder, n_crystals, f"bench{workers}"), root=folder)
    with connect("local", workers=workers, threads_per_worker=1, dashboard=False) as handle:
        # warm the workers (imports, LAMMPS load, bulk constants) outside the timing
        warm = load_job(job_file(folder, 1, f"warm{workers}"), root=folder)
        run_job(warm, client=handle.client, catalog=folder / f"warm{workers}.zarr")
        cpu0 = sum(handle.client.run(time.process_time).values())
        t = time.perf_counter()
        (report,) = run_job(job, client=handle.client, catalog=folder / f"w{workers}.zarr")
        wall = time.perf_counter() - t
        cpu = sum(handle.client.run(time.process_time).values()) - cpu0
    assert report.ok == 2 * n_crystals, report.failed
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crystals", type=int, default=8, help="crystals per measurement (default 8)")
    ap.add_argument("--paper", action="store_true", help="also time one paper-size relaxation")
    ap.add_argument("--skip-cluster", action="store_true", help="in-process measurements only")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from cdiplatform.pipeline.stages.simulate_gold import SimulateGold
    from cdiplatform.simulate.gold.relax import bulk_gold, relax_crystal

    stage = SimulateGold()
    params = stage.Params()
    print(f"simulate_gold defaults: block_cells={params.block_cells}, grid={params.grid}, "
          f"voxel={params.voxel_size}, ftol={params.ftol}, threads={params.threads}; torch threads 1")
    bulk_gold()

    # 1. overhead in process: the stage's compute against the bare minimization of the same crystals
    from cdiplatform.pipeline.randomness import scan_rngs, stream_key

    n = args.crystals
    # the generators the runner hands the tasks of job_file(): same crystals everywhere
    stream = stream_key("collections/gold")  # the output node of job_file()
    rngs = scan_rngs(JOB_SEED, stream, np.arange(2 * n))
    seeds = [int(r.integers(2**63 - 1)) for r in scan_rngs(JOB_SEED, stream, np.arange(0, 2 * n, 2))]
    prepared = crystals_for(seeds, params)
    bare_wall = bare_cpu = 0.0
    atoms = []
    for c, pinned, strain in prepared:
        t, cpu = time.perf_counter(), time.process_time()
        relax_crystal(c.positions, strain=strain, pinned=pinned, ftol=params.ftol, padding=params.padding)
        bare_wall += time.perf_counter() - t
        bare_cpu += time.process_time() - cpu
        atoms.append(c.n_atoms)
    t, cpu = time.perf_counter(), time.process_time()
    for k in range(n):
        result = stage.compute(params, {}, np.array([2 * k, 2 * k + 1]), rngs[2 * k: 2 * k + 2])
        assert not result.failed, result.failed
        assert result.values["seed"][0] == seeds[k]
    stage_wall = time.perf_counter() - t
    stage_cpu = time.process_time() - cpu
    print(f"\n[1] {n} crystals, {np.mean(atoms):.0f} atoms on average ({min(atoms)}..{max(atoms)}); {load()}")
    print(f"    bare LAMMPS minimization : {bare_wall / n:6.2f} s wall, {bare_cpu / n:6.2f} s CPU / crystal")
    print(f"    stage.compute (pair)     : {stage_wall / n:6.2f} s wall, "
          f"{stage_cpu / n:6.2f} s CPU / crystal")
    print(f"    in-process overhead      : {100 * (stage_cpu / bare_cpu - 1):+.1f} % CPU, "
          f"{100 * (stage_wall / bare_wall - 1):+.1f} % wall  (target <= 15 %)")
    # the same overhead measured directly: everything the stage adds around LAMMPS
    from cdiplatform.physics.fft import diffraction_intensity
    from cdiplatform.simulate.gold.diffraction import phase_statistics, voxelize_crystal
    from cdiplatform.simulate.gold.relax import mean_strain

    c, pinned, strain = prepared[0]
    relaxed = relax_crystal(c.positions, strain=strain, pinned=pinned, ftol=params.ftol)
    repeats = 5
    cpu = time.process_time()
    for _ in range(repeats):
        crystals_for(seeds[:1], params)
        obj = voxelize_crystal(relaxed.final, relaxed.reference, shape=(params.grid,) * 3,
                               voxel_size=params.voxel_size, centre=(0, 0, 0))
        diffraction_intensity(np.stack([obj.complex_object, obj.amplitude]), ndim=3)
        phase_statistics(obj.amplitude, obj.phase)
        mean_strain(relaxed.reference, relaxed.final)
    extra = (time.process_time() - cpu) / repeats
    print(f"    non-LAMMPS work (crystal, voxels, FFT, statistics), measured alone: {extra:.3f} s CPU per "
          f"crystal of {c.n_atoms} atoms = {100 * extra / (bare_cpu / n):.1f} % of a mean minimization")

    if not args.skip_cluster:
        with tempfile.TemporaryDirectory(prefix="bench-gold-") as tmp:
            folder = Path(tmp)
            wall1, cpu1 = run_with_workers(n, 1, folder)
            print(f"\n[1b] runner, 1 worker: {wall1 / n:6.2f} s wall, {cpu1 / n:6.2f} s worker CPU / crystal")
            over_cpu, over_wall = 100 * (cpu1 / bare_cpu - 1), 100 * (wall1 / bare_wall - 1)
            print(f"    against bare minimization of the same crystals: {over_cpu:+.1f} % CPU, "
                  f"{over_wall:+.1f} % wall (target <= 15 %); {load()}")
            wall2, cpu2 = run_with_workers(n, 2, folder)
            print(f"\n[2] throughput, 2 workers: {3600 * n / wall2:.0f} crystals/hour "
                  f"({wall2:.1f} s for {n} crystals; 20 crystals ~{20 * wall2 / n:.0f} s); {load()}")
            print(f"\n[3] speed-up 1 -> 2 workers: {wall1 / wall2:.2f} wall (target >= 1.7); {load()}")
            print(f"    cores the workers obtained (worker CPU / wall): {cpu1 / wall1:.2f} with 1 worker, "
                  f"{cpu2 / wall2:.2f} with 2")
            print(f"    CPU-normalized speed-up 2 * CPU(1 worker) / CPU(2 workers): {2 * cpu1 / cpu2:.2f} "
                  "(what the wall speed-up would be with a free core per worker)")

    if args.paper:
        from cdiplatform.simulate.gold.crystal import random_crystal
        from cdiplatform.simulate.gold.relax import choose_pinned_facet, random_strain

        rng = np.random.default_rng(2021)
        c = random_crystal(rng=rng, block_cells=50, plane_distance=(0.8, 1.0))
        _, pinned = choose_pinned_facet(c, rng=rng)
        strain = random_strain(rng=rng)
        t, cpu = time.perf_counter(), time.process_time()
        r = relax_crystal(c.positions, strain=strain, pinned=pinned)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"\n[4] paper size: {c.n_atoms} atoms cut from a 500,000-atom block: {wall:.0f} s wall, "
              f"{cpu:.0f} s CPU, {r.iterations} iterations; {load()}")


if __name__ == "__main__":
    main()
