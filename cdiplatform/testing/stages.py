"""Small stages for testing the runner (name them in a job as ``cdiplatform.testing.stages:Squares``).

They are cheap and deterministic, so that tests can kill, resume and compare
runs, make chosen scans fail, and see which worker ran a torch stage.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var

__all__ = ["Noisy", "Squares", "WhereTorchRuns"]


class Squares(Stage):
    """``value = scan**2 + noise`` per scan, plus a small random grid, with optional failures.

    ``fail`` lists scans that always fail; ``fail_file`` names a file whose
    lines are scans that fail while the file exists (remove it to let a resume
    retry them); ``sleep`` slows each chunk down, to kill a run halfway;
    ``unwritable`` lists scans whose ``value`` comes back as text, which the
    chunk holding them cannot store (its write fails, as a full disk would);
    ``hang`` lists scans whose computation never returns.
    """

    name = "testing_squares"
    output_kind = "result"
    method = "testing"

    @dataclass(frozen=True)
    class Params:
        n_scans: int = 40
        chunk: int = 8
        size: int = 4
        sleep: float = 0.0
        fail: list[int] = field(default_factory=list)
        fail_file: str = ""
        unwritable: list[int] = field(default_factory=list)
        hang: list[int] = field(default_factory=list)

    def validate(self, params, inputs) -> None:
        if params.n_scans < 1:
            raise ValueError(f"n_scans must be positive, got {params.n_scans}")

    def plan(self, params, inputs) -> Plan:
        return Plan(
            n_scans=params.n_scans,
            chunk=params.chunk,
            variables={
                "value": Var((), (), "float64"),
                "grid": Var(("y", "x"), (params.size, params.size), "float32"),
                "note": Var((), (), "str"),
            },
            coords={"y": ("y", np.arange(params.size)), "x": ("x", np.arange(params.size))},
        )

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        time.sleep(params.sleep)
        if set(params.hang) & {int(s) for s in index}:
            while True:  # a call that never returns, as a stuck minimization would
                time.sleep(3600)
        failing = set(params.fail)
        if params.fail_file and Path(params.fail_file).exists():
            failing |= {int(s) for s in Path(params.fail_file).read_text().split()}
        value = index.astype(np.float64) ** 2 + np.array([r.random() for r in rngs])
        grid = np.stack([r.standard_normal((params.size, params.size)) for r in rngs]).astype(np.float32)
        note = np.array([f"scan {s}" for s in index], dtype=object)
        if set(params.unwritable) & {int(s) for s in index}:
            value = value.astype(object)
            value[[int(s) in params.unwritable for s in index]] = "not a number"
        if len(index) == 1 and int(index[0]) in failing:
            raise ValueError(f"scan {int(index[0])} is listed to fail")
        failed = {p: f"scan {int(s)} is listed to fail" for p, s in enumerate(index) if int(s) in failing}
        return ChunkResult({"value": value, "grid": grid, "note": note}, failed=failed)


class WhereTorchRuns(Stage):
    """Records the process id, SLURM job id (-1 outside SLURM) and working directory of the worker that ran
    each scan.

    It is a torch stage: on a cluster with GPU workers its tasks must land there.
    """

    name = "testing_where_torch_runs"
    output_kind = "result"
    method = "testing"
    uses_torch = True

    @dataclass(frozen=True)
    class Params:
        n_scans: int = 8
        chunk: int = 1

    def plan(self, params, inputs) -> Plan:
        return Plan(n_scans=params.n_scans, chunk=params.chunk,
                    variables={"pid": Var((), (), "int64"), "slurm_job_id": Var((), (), "int64"),
                               "cwd": Var((), (), "str")})

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        job = int(os.environ.get("SLURM_JOB_ID", -1))
        return ChunkResult({"pid": np.full(len(index), os.getpid(), dtype=np.int64),
                            "slurm_job_id": np.full(len(index), job, dtype=np.int64),
                            "cwd": np.array([os.getcwd()] * len(index), dtype=object)})


class Noisy(Stage):
    """Reads ``value`` of a result made by :class:`Squares` (its primary input, joined on ``scan``) and adds
    noise drawn from each scan's generator; with a second input ``other``, adds its ``value`` too (a join
    on the scans' identities: a scan ``other`` lacks fails)."""

    name = "testing_noisy"
    output_kind = "result"
    method = "testing"
    draws = "per scan: one uniform number"
    inputs = (Input("source", variables=("value",)), Input("other", variables=("value",), required=False))

    @dataclass(frozen=True)
    class Params:
        chunk: int = 4

    def plan(self, params, inputs) -> Plan:
        n = inputs["source"].sizes["scan"]
        return Plan(n_scans=n, chunk=params.chunk, variables={"value": Var((), (), "float64")})

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        value = np.asarray(inputs["source"]["value"].values) + np.array([r.random() for r in rngs])
        if "other" in inputs:
            value = value + np.asarray(inputs["other"]["value"].values)
        return ChunkResult({"value": value})
