"""Inference throughput of the full-size 3D-CDI-NN on CPU, against the matmul peak.

Run: ``python tests/benchmarks/bench_nn_inference.py [--batch-size 8] [--threads 2] [--repeats 3]``

Prints: threads, batch size, GFLOP per sample (conv multiply-adds counted as
2 FLOP by ``torch.utils.flop_counter``, and analytically), samples/s for the
memory layouts tried, the float32 4096x4096 matmul rate measured in the same
run with the same thread count, and the fraction of it that inference reaches.
Measurements are interleaved (matmul, layouts, matmul...) and the best of
``--repeats`` is reported with the median, so that a loaded machine hurts
both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from cdiplatform.nn import build_model, cdi_nn_3d_config, predict


def analytic_gflop(config) -> float:
    """Conv FLOPs per sample (2 per multiply-add); pooling, upsampling, ReLU and sigmoid left out."""
    n, k = config.size, 27
    total = 0
    c_in, side = 1, n
    for w in config.widths:  # encoder
        for i in range(config.convs_per_level):
            total += side**3 * k * (c_in if i == 0 else w) * w
        c_in, side = w, side // 2
    for _ in range(2):  # two decoders
        c, s = config.widths[-1], n // 2 ** len(config.widths)
        for w in reversed(config.widths):
            for i in range(config.convs_per_level):
                total += s**3 * k * (c if i == 0 else w) * w
            c, s = w, s * 2
        total += s**3 * k * c * 1
    return 2 * total / 1e9


def time_matmul(n: int = 4096, reps: int = 3) -> dict[str, float]:
    """GFLOP/s of a float32 n x n matmul: torch.mm (MKL sgemm) and the same product through oneDNN."""
    from torch.utils import mkldnn

    a, b = torch.randn(n, n), torch.randn(n, n)
    linear = torch.nn.Linear(n, n, bias=False)
    linear.weight.data = b.t().contiguous()
    onednn, a_onednn = mkldnn.to_mkldnn(linear), a.to_mkldnn()
    out = {}
    with torch.inference_mode():
        for name, f in {"torch.mm (MKL)": lambda: a @ b, "oneDNN matmul": lambda: onednn(a_onednn)}.items():
            f()
            t = time.perf_counter()
            for _ in range(reps):
                f()
            out[name] = 2 * n**3 * reps / (time.perf_counter() - t) / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=2, help="batches per timed run")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile (inductor, freezing; ~80 s to compile)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = cdi_nn_3d_config()
    model = build_model(config, seed=0).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.rand(1, 1, *config.grid))
    gflop = counter.get_total_flops() / 1e9
    inputs = (
        np.random.default_rng(0)
        .uniform(0, 1, (args.batch_size * args.batches, *config.grid))
        .astype(np.float32)
    )

    variants = {
        "contiguous (NCDHW)": dict(channels_last=False),
        "channels_last_3d (predict default on CPU)": dict(channels_last=True),
    }
    runs = {
        name: (lambda kw=kw: predict(model, inputs, batch_size=args.batch_size, device="cpu", **kw))
        for name, kw in variants.items()
    }
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        fmt = torch.channels_last_3d
        compiled = torch.compile(model.to(memory_format=fmt))
        batches = [
            torch.from_numpy(inputs[i : i + args.batch_size]).unsqueeze(1).contiguous(memory_format=fmt)
            for i in range(0, len(inputs), args.batch_size)
        ]

        def run_compiled():
            with torch.inference_mode():
                for x in batches:
                    compiled(x)

        t = time.perf_counter()
        run_compiled()
        print(f"torch.compile: {time.perf_counter() - t:.0f} s to compile")
        runs["torch.compile, channels_last_3d, freezing"] = run_compiled
    for run in runs.values():  # warm-up: oneDNN primitive creation
        run()
    peak: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for k, v in time_matmul().items():
            peak.setdefault(k, []).append(v)
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            rates[name].append(len(inputs) / (time.perf_counter() - t))

    print(
        f"threads: {torch.get_num_threads()}  batch size: {args.batch_size}  "
        f"model: 3D-CDI-NN full size, widths {config.widths}"
    )
    print(f"GFLOP/sample: {gflop:.2f} (flop_counter), {analytic_gflop(config):.2f} (analytic, convs only)")
    for k, v in peak.items():
        print(f"float32 4096x4096 matmul, {k}: best {max(v):.1f} GFLOP/s, median {statistics.median(v):.1f}")
    for name, r in rates.items():
        best = max(r)
        fractions = ", ".join(f"{best * gflop / max(v):.0%} of {k}" for k, v in peak.items())
        print(
            f"{name}: best {best:.2f} samples/s = {best * gflop:.1f} GFLOP/s = {fractions} "
            f"(median {statistics.median(r):.2f} samples/s)"
        )
    print(
        "not used: torch.utils.mkldnn.to_mkldnn on the model (nearest upsampling has no mkldnn-tensor kernel)"
    )


if __name__ == "__main__":
    main()
