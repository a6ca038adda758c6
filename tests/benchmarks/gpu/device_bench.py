"""The phasing engine on one device, arrays only: FFT floor, iterations, throughput, scan 54, the peer.

    python tests/benchmarks/gpu/device_bench.py [--quick] [--device cuda] [--carry .gpu-carry]
                                                [--sections floor,iteration,throughput,scan54,peer]
                                                [--budget 480] [--out DIR]

Written for the lent GPU machine (README.md beside this file): it needs
torch, numpy and scipy only (no dask, zarr, xarray), imports
``cdiplatform.phasing`` from the checkout, and prints a markdown table at
the end; the full figures go to ``DIR/device_bench.json`` (``$OUT`` when set).
``--quick`` runs every section on small arrays in a minute on a CPU.

Sections:

``floor``
    one unitary complex64 ``fftn`` + ``ifftn`` pair per case (the FFT floor);
``iteration``
    plain HIO, and HIO with shrink-wrap every iteration with each blur
    (``fft``, ``separable``), eager and with the fused steps
    (``compile=True``) when a compiler works: seconds per iteration and the
    ratio to the pair, the median over interleaved rounds;
``throughput``
    ``phase_retrieval`` (recipe ``cohere_scan54``, shrink-wrap every
    iteration) of S scans x K starts, S from ``auto_batch_size`` (capped by
    the time budget): per-iteration cost, and scans per hour for 620 iterations;
``scan54``
    the real scan-54 array (``CARRY/scan54_amplitude.npz``, the peer's
    preprocessing), 620 iterations with the peer's settings, 3 seeds: time and chi;
``peer``
    cohere-core (``CARRY/cohere_core-*.whl`` installed with ``--no-deps``, its
    other needs are on that machine) on the same array and device, backends
    ``torch`` (and ``cp``, cupy, where importable): time and our chi of its result.

Device time is short: every section checks ``--budget`` (seconds since the
start) and is skipped, and said so, when it would not fit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from cdiplatform.phasing import (
    ShrinkWrap,
    phase_retrieval,
    recipe,
    resolve_blur,
)
from cdiplatform.phasing.kernels import compile_available

sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
from bench_phasing_iteration import fft_pair_seconds, iteration_seconds, make_data, sync
from bench_phasing_throughput import table as throughput_table
from bench_phasing_throughput import throughput

T0 = time.perf_counter()
FULL_ALGORITHM = "3*(20*ER+180*HIO)+20*ER"


def elapsed() -> float:
    return time.perf_counter() - T0


def timed(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def cases(quick: bool, device: torch.device) -> dict[str, tuple[tuple[int, ...], int]]:
    if quick:
        return {"32^3 x 8": ((32, 32, 32), 8), "48^3 x 2": ((48, 48, 48), 2)}
    out = {
        "64^3 x 16": ((64, 64, 64), 16),
        "128^3 x 2": ((128, 128, 128), 2),
        "scan54 x 1": ((256, 256, 210), 1),
    }
    if device.type == "cuda":  # batches that fill a GPU
        out.update({"64^3 x 256": ((64, 64, 64), 256), "128^3 x 32": ((128, 128, 128), 32)})
    return out


def section_floor(args, device, report):
    rows = {}
    for name, (grid, batch) in cases(args.quick, device).items():
        _, rho, _ = make_data(grid, batch, device=device)
        buf = torch.empty_like(rho)
        fft_pair_seconds(rho, buf, 2)
        times = [fft_pair_seconds(rho, buf, 5) for _ in range(5)]
        voxels = math.prod(grid) * batch
        sec = float(np.median(times))
        # bytes of a pass: read + write a complex64 array; a pair is several passes for the library
        rows[name] = {"pair_ms": sec * 1e3, "voxels": voxels, "mvoxel_pairs_per_s": voxels / sec / 1e6}
        del rho, buf
    report["floor"] = rows


def section_iteration(args, device, report):
    comp_ok, comp_why = compile_available(device)
    report["compile"] = {"available": comp_ok, "why": comp_why}
    rounds = 3 if args.quick else 5
    n = 2 if args.quick else 4
    rows = {}
    for i, (name, (grid, batch)) in enumerate(cases(args.quick, device).items()):
        if elapsed() > args.budget * 0.45:
            rows[name] = {"skipped": "time budget"}
            continue
        amp, rho, sup = make_data(grid, batch, device=device)
        buf = torch.empty_like(rho)
        variants = {"HIO": (None, False)}
        for blur in ("fft", "separable"):
            variants[f"HIO+SW {blur}"] = (ShrinkWrap(start=0, blur=blur), False)
        if comp_ok and i < args.compile_cases:  # compiling costs seconds per shape
            variants["HIO compiled"] = (None, True)
            for blur in ("fft", "separable"):
                variants[f"HIO+SW {blur} compiled"] = (ShrinkWrap(start=0, blur=blur), True)
        for shrink, comp in variants.values():  # warm-up, compilation
            iteration_seconds(amp, rho, sup, shrink, 1, comp)
        ratios = {k: [] for k in variants}
        seconds = {k: [] for k in variants}
        for _ in range(rounds):
            p = fft_pair_seconds(rho, buf, 5)
            for k, (shrink, comp) in variants.items():
                s = iteration_seconds(amp, rho, sup, shrink, n, comp)
                seconds[k].append(s)
                ratios[k].append(s / p)
        rows[name] = {
            "rule": resolve_blur(device, grid),
            **{
                k: {"ms": float(np.median(seconds[k])) * 1e3, "x_pair": float(np.median(ratios[k]))}
                for k in variants
            },
        }
        del amp, rho, sup, buf
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["iteration"] = rows


def section_throughput(args, device, report):
    grids = {"64^3": (64, 64, 64), "128^3": (128, 128, 128), "scan54": (256, 256, 210)}
    if args.quick:
        grids = {"32^3": (32, 32, 32), "48^3": (48, 48, 48)}
    n1, n2 = (2, 6) if args.quick else (5, 25)
    rows = []
    for grid in grids.values():
        for k in (1, 4):
            if elapsed() > args.budget * 0.65:
                rows.append({"grid": list(grid), "starts": k, "skipped": "time budget"})
                continue
            rows.append(throughput(grid, k, device, max_voxels=args.max_voxels, n1=n1, n2=n2))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    report["throughput"] = rows


def load_scan54(args, device) -> np.ndarray | None:
    path = Path(args.carry) / "scan54_amplitude.npz"
    if not path.exists():
        return None
    with np.load(path) as z:
        amp = np.zeros(tuple(z["shape"]), dtype=np.float32)
        amp.reshape(-1)[z["index"]] = z["value"]
    if args.quick:  # a centred 64^3 crop (the crystal fits)
        c = [n // 2 for n in amp.shape]
        amp = np.ascontiguousarray(amp[c[0] - 32 : c[0] + 32, c[1] - 32 : c[1] + 32, c[2] - 32 : c[2] + 32])
    return amp


def _algorithm(args) -> str:
    return "4*ER+32*HIO+4*ER" if args.quick else FULL_ALGORITHM


def section_scan54(args, device, report):
    from cdiplatform.physics.metrics import chi_square

    amp = load_scan54(args, device)
    if amp is None:
        report["scan54"] = {"skipped": f"no {Path(args.carry) / 'scan54_amplitude.npz'} (see README.md)"}
        return
    rows = []
    for seed in (0, 1, 2):
        if elapsed() > args.budget * 0.8:
            rows.append({"seed": seed, "skipped": "time budget"})
            continue
        settings = recipe("cohere_scan54", algorithm=_algorithm(args))
        amp_t = torch.from_numpy(amp[None]).to(device)
        res = None

        def run(settings=settings, amp_t=amp_t, seed=seed):
            nonlocal res
            res = phase_retrieval(amp_t, ndim=3, settings=settings, seed=seed)

        seconds = timed(run, device)
        rows.append(
            {
                "seed": seed,
                "seconds": seconds,
                "iterations": res.iterations,
                "blur": res.blur,
                "chi": float(chi_square(res.obj[0], amp, fit_scale=True)),
                "support_voxels": int(res.support.sum()),
            }
        )
    done = [r for r in rows if "seconds" in r]
    report["scan54"] = {
        "shape": list(amp.shape),
        "algorithm": _algorithm(args),
        "runs": rows,
        "median_seconds": float(np.median([r["seconds"] for r in done])) if done else None,
        "median_chi": float(np.median([r["chi"] for r in done])) if done else None,
    }


def section_peer(args, device, report):
    from cdiplatform.physics.metrics import chi_square

    try:
        import cohere_core.utilities.utils as ut
        from cohere_core.controller import phasing
    except ImportError as exc:
        report["peer"] = {"skipped": f"cohere_core not importable: {exc}"}
        return
    amp = load_scan54(args, device)
    conf = Path(args.carry) / "config_rec"
    if amp is None or not conf.exists():
        report["peer"] = {"skipped": f"no scan54_amplitude.npz or config_rec in {args.carry}"}
        return
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "device_bench_peer"
    work.mkdir(parents=True, exist_ok=True)
    amp_path = work / "amplitude.npy"
    np.save(amp_path, amp)
    backends = ["torch"]
    if device.type == "cuda":
        try:
            import cupy  # noqa: F401

            backends.append("cp")
        except ImportError:
            pass
    rows = {}
    for backend in backends:
        if elapsed() > args.budget * 0.95:
            rows[backend] = {"skipped": "time budget"}
            continue
        pars = ut.read_config(str(conf))
        pars["algorithm_sequence"] = _algorithm(args)
        dev = (device.index or 0) if device.type == "cuda" else -1  # cohere: a GPU id, or -1
        try:
            worker = phasing.create_rec(pars, str(amp_path), backend, dev)
            sync(device)
            t = time.perf_counter()
            worker.iterate()
            sync(device)
            seconds = time.perf_counter() - t
            img = worker.ds_image
            obj = np.asarray(
                img.get() if hasattr(img, "get") else (img.cpu() if hasattr(img, "cpu") else img)
            )
            # cohere's reciprocal space is the inverse FFT: its object is the conjugate of ours
            rows[backend] = {
                "seconds": seconds,
                "chi": float(chi_square(np.conj(obj).astype(np.complex64), amp, fit_scale=True)),
            }
        except Exception as exc:  # noqa: BLE001 - report the peer's failure, keep ours
            rows[backend] = {"failed": repr(exc)[:300]}
    report["peer"] = {"algorithm": _algorithm(args), "backends": rows}


def markdown(report) -> str:
    lines = [f"device: {report['device']}, torch {report['torch']}, compile: {report.get('compile')}"]
    if "floor" in report:
        lines += ["", "| case | FFT pair ms | Mvoxel pairs/s |", "| --- | --- | --- |"]
        lines += [
            f"| {k} | {v['pair_ms']:.2f} | {v['mvoxel_pairs_per_s']:.1f} |"
            for k, v in report["floor"].items()
        ]
    if "iteration" in report:
        names = sorted(
            {k for row in report["iteration"].values() for k in row if k not in ("rule", "skipped")}
        )
        lines += ["", "| case | rule | " + " | ".join(names) + " |", "| --- " * (len(names) + 2) + "|"]
        for case, row in report["iteration"].items():
            if "skipped" in row:
                lines.append(f"| {case} | skipped: {row['skipped']} |")
                continue
            cells = [f"{row[n]['x_pair']:.2f}x ({row[n]['ms']:.2f} ms)" if n in row else "-" for n in names]
            lines.append(f"| {case} | {row['rule']} | " + " | ".join(cells) + " |")
    if "throughput" in report:
        lines += ["", throughput_table(report["throughput"])]
    if "scan54" in report:
        s = report["scan54"]
        if "skipped" in s:
            lines += ["", f"scan 54: skipped: {s['skipped']}"]
        else:
            lines += [
                "",
                f"scan 54 {s['shape']}, {s['algorithm']}: ours median {s['median_seconds']:.1f} s,"
                f" chi {s['median_chi']:.5f} (3 seeds: "
                + ", ".join(f"{r['seconds']:.1f} s / {r['chi']:.5f}" for r in s["runs"] if "seconds" in r)
                + ")",
            ]
    if "peer" in report:
        p = report["peer"]
        if "skipped" in p:
            lines.append(f"peer: skipped: {p['skipped']}")
        else:
            for b, r in p["backends"].items():
                lines.append(f"peer cohere {b}: {r}")
            ours = report.get("scan54", {}).get("median_seconds")
            for b, r in p["backends"].items():
                if ours and "seconds" in r:
                    lines.append(f"speed-up over cohere {b}: {r['seconds'] / ours:.2f}x")
    lines.append(f"total {elapsed():.0f} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small arrays, a minute on a CPU")
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1")
    ap.add_argument(
        "--carry", default=str(ROOT / ".gpu-carry"), help="folder with the scan-54 array and wheels"
    )
    ap.add_argument("--sections", default="floor,iteration,throughput,scan54,peer")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds; later sections are skipped past it")
    ap.add_argument("--max-voxels", type=int, default=2**27, help="cap of S*K*voxels in the throughput runs")
    ap.add_argument("--compile-cases", type=int, default=2, help="time the fused steps on the first N cases")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    if args.quick:
        args.max_voxels = min(args.max_voxels, 2**20)
        args.compile_cases = min(args.compile_cases, 1)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    report = {"device": name, "torch": torch.__version__, "quick": args.quick, "budget_s": args.budget}
    for section in args.sections.split(","):
        t = elapsed()
        globals()[f"section_{section}"](args, device, report)
        report.setdefault("section_seconds", {})[section] = elapsed() - t
        print(f"[{elapsed():6.1f} s] {section} done", flush=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "device_bench.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))


if __name__ == "__main__":
    main()
