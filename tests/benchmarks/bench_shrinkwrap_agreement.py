"""Support agreement: the separable shrink-wrap blur against the FFT Gaussian, on the same |rho|.

    python tests/benchmarks/bench_shrinkwrap_agreement.py [--cases crystals,scan54_32,scan54]
                                                          [--iterations 620] [--full] [--threads 2]

For each case a run with the settings of the peer (recipe ``cohere_scan54``:
``3*(20*ER+180*HIO)+20*ER``, shrink-wrap every iteration, threshold 0.1,
sigma 1) goes with today's FFT blur; at checkpoints its current ``|rho|`` is
blurred both ways and thresholded, and the voxels whose support differs are
counted (the FFT support's size beside them). ``--full`` also runs the whole
sequence once with each blur from the same start and compares the final
supports and chis (HIO amplifies any difference, so this measures the
method's effect on a result, not the blur's).

Cases:

- ``crystals``: 4 simulated gold crystals (``random_crystal``, 20 cells,
  unrelaxed, a smooth displacement field for the phase), voxelized on
  64^3 at one lattice unit a voxel;
- ``scan54_32``: the committed 32^3 scan-54 collection of catalogs/examples.zarr;
- ``scan54``: the full (256, 256, 210) array of the peer's preprocessing
  (``/tmp/peer-out/amplitude.npy``; ``bench_phasing_peer.py --prepare`` writes it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cdiplatform.phasing import recipe
from cdiplatform.phasing.algorithm import AlgorithmSequence
from cdiplatform.phasing.blur import GaussianBlur
from cdiplatform.phasing.engine import iterate
from cdiplatform.phasing.kernels import magnitude_
from cdiplatform.phasing.retrieval import initial_support
from cdiplatform.phasing.settings import ShrinkWrap

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 400, 500, 619)


def crystals(n: int = 4, grid: int = 64, seed: int = 0) -> np.ndarray:
    from cdiplatform.physics.fft import far_field
    from cdiplatform.simulate import random_crystal, voxelize_crystal

    out = []
    for s in range(n):
        rng = np.random.default_rng([seed, s])
        c = random_crystal(rng=rng, block_cells=20, normals="facets", n_planes=(6, 14))
        pos = c.positions
        k = rng.normal(size=3) * 2 * np.pi / 30
        u = 0.15 * np.sin(pos @ k + rng.uniform(0, 2 * np.pi))[:, None] * np.array([1.0, 1.0, 1.0])
        obj = voxelize_crystal(pos + u, pos, shape=(grid,) * 3, voxel_size=1.0)
        out.append(obj.amplitude * np.exp(1j * obj.phase))
    return np.abs(far_field(np.stack(out), ndim=3)).astype(np.float32)


def scan54_32() -> np.ndarray:
    import xarray as xr

    ds = xr.open_zarr(ROOT / "catalogs" / "examples.zarr", group="collections/scan54_32", consolidated=False)
    return np.sqrt(np.asarray(ds["intensity"].values, dtype=np.float32))


def scan54() -> np.ndarray:
    path = Path("/tmp/peer-out/amplitude.npy")
    if not path.exists():
        raise SystemExit(f"{path} is missing: run tests/benchmarks/bench_phasing_peer.py --prepare")
    return np.load(path)[None]


def _segment(ops: list[str]) -> AlgorithmSequence:
    steps: list[tuple[str, int]] = []
    for op in ops:
        if steps and steps[-1][0] == op:
            steps[-1] = (op, steps[-1][1] + 1)
        else:
            steps.append((op, 1))
    return AlgorithmSequence(steps=tuple(steps))


def _start(amp: np.ndarray, settings, seed: int):
    """Unshifted amplitude, random start and box support, as phase_retrieval makes them."""
    dims = tuple(range(-3, 0))
    a = torch.from_numpy(amp)
    sup = initial_support(a, settings, ndim=3)
    amp_u = torch.fft.ifftshift(a, dim=dims).unsqueeze(1).contiguous()
    sup_u = torch.fft.ifftshift(sup, dim=dims).unsqueeze(1).contiguous()
    rng = np.random.default_rng(seed)
    rho = rng.random(amp_u.shape, dtype=np.float32) * np.exp(
        2j * np.pi * rng.random(amp_u.shape, dtype=np.float32)
    )
    rho = torch.from_numpy(rho.astype(np.complex64)) * sup_u
    norm = amp_u.square().sum(dim=dims, keepdim=True).sqrt()
    rho *= norm / rho.abs().square().sum(dim=dims, keepdim=True).sqrt()
    return amp_u, rho.contiguous(), sup_u


def compare_supports(rho: torch.Tensor, threshold: float, sigma: float, tolerances) -> dict:
    mag = torch.empty(rho.shape, dtype=torch.float32)
    magnitude_(torch.view_as_real(rho), mag)
    dims = (-3, -2, -1)

    def support(method, tol=0.0):
        b = GaussianBlur(rho.shape, ndim=3, method=method, device="cpu", tolerance=tol)(mag.clone(), sigma)
        return b >= threshold * b.amax(dim=dims, keepdim=True)

    ref = support("fft")
    out = {"support": int(ref.sum())}
    for tol in tolerances:
        if tol == 0 and max(rho.shape[-3:]) > 64:
            out[tol] = None  # every tap: n passes an axis, too slow for the large grid
        else:
            out[tol] = int((support("separable", tol) != ref).sum())
    return out


def checkpoint_run(amp: np.ndarray, n_iter: int, tolerances, seed: int = 0) -> list[tuple[int, dict]]:
    settings = recipe("cohere_scan54", shrink_wrap=ShrinkWrap(blur="fft"))
    ops = settings.algorithm.operators()[:n_iter]
    amp_u, rho, sup = _start(amp, settings, seed)
    sw = settings.shrink_wrap
    rows, done = [], 0
    for cp in [c for c in CHECKPOINTS if c < n_iter] + [n_iter]:
        if cp > done:
            first = done == 0
            seg = settings.__class__(
                algorithm=_segment(ops[done:cp]),
                beta=settings.beta,
                shrink_wrap=sw if first else ShrinkWrap(threshold=sw.threshold, sigma=sw.sigma, start=0),
                twin=settings.twin if first else None,
            )
            iterate(amp_u, rho, sup, seg, ndim=3)
            done = cp
        rows.append((cp, compare_supports(rho, sw.threshold, sw.sigma, tolerances)))
    return rows


def full_runs(amp: np.ndarray, n_iter: int, seed: int = 0) -> dict:
    from cdiplatform.phasing import phase_retrieval

    ops = recipe("cohere_scan54").algorithm.operators()[:n_iter]
    # the control: the FFT blur on the amplitude changed by one float32 ulp in random voxels
    ulp = np.random.default_rng(seed).choice([-1.0, 0.0, 1.0], size=amp.shape).astype(np.float32)
    nudged = np.nextafter(amp, np.where(ulp > 0, np.inf, -np.inf)).astype(np.float32)
    nudged = np.where(ulp == 0, amp, np.maximum(nudged, 0)).astype(np.float32)
    out = {}
    for name, blur, a in (("fft", "fft", amp), ("separable", "separable", amp), ("fft 1 ulp", "fft", nudged)):
        s = recipe("cohere_scan54", algorithm=str(_segment(ops)), shrink_wrap=ShrinkWrap(blur=blur))
        t0 = time.perf_counter()
        res = phase_retrieval(a, ndim=3, settings=s, seed=seed)
        out[name] = (res, time.perf_counter() - t0)
    ref = out["fft"][0]

    def differ(res):
        return [int(v) for v in (res.support != ref.support).reshape(len(amp), -1).sum(1)]

    return {
        "differ": differ(out["separable"][0]),
        "differ_control": differ(out["fft 1 ulp"][0]),
        "support_fft": [int(v) for v in ref.support.reshape(len(amp), -1).sum(1)],
        "chi": {k: np.round(v[0].error, 5).tolist() for k, v in out.items()},
        "seconds": {k: round(v[1], 1) for k, v in out.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="crystals,scan54_32,scan54")
    ap.add_argument("--iterations", type=int, default=620)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tolerances = (1e-3, 1e-4, 0.0)  # 0: all taps, the float32 rounding floor
    loaders = {"crystals": crystals, "scan54_32": scan54_32, "scan54": scan54}
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for case in args.cases.split(","):
        amp = loaders[case]()
        print(
            f"\n{case}: amplitude {amp.shape}; voxels whose support differs from the FFT blur's (sum over scans)"
        )
        print(
            f"{'iteration':>9} {'FFT support':>12} " + " ".join(f"{'tol ' + str(t):>10}" for t in tolerances)
        )
        for it, row in checkpoint_run(amp, args.iterations, tolerances):
            cells = ("-" if row[t] is None else str(row[t]) for t in tolerances)
            print(f"{it:9d} {row['support']:12d} " + " ".join(f"{c:>10}" for c in cells))
        if args.full:
            f = full_runs(amp, args.iterations)
            print(
                f"full runs ({args.iterations} iterations) from the same start: final supports differ from"
                f" the FFT blur's in {f['differ']} voxels (separable) and {f['differ_control']} (FFT blur,"
                f" amplitude changed by 1 ulp) of {f['support_fft']}; chi {f['chi']}; seconds {f['seconds']}"
            )
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
