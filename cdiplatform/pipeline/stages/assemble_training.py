"""Stage ``assemble_training``: a simulated collection -> a ``training/<id>`` node for the networks.

Per scan: the network input (``sqrt(intensity)``, maximum 1), the targets
(amplitude over its maximum; the phase mapped to the output range as
``phi = phase_scale * p + phase_offset``) and the linear oversampling. The
split into train, validation and test is made by group (``group`` names a
per-scan coordinate such as ``crystal``, so that a crystal's strain-free
control falls in the same split as its strained copy); the scans are
shuffled and stored split after split, so that each split is a contiguous
range that streams block by block. Job file::

    [[stage]]
    stage = "assemble_training"
    inputs = { collection = "collections/convex2d" }
    output = "training/convex2d"
    [stage.params]
    fractions = [0.8, 0.1, 0.1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, register

__all__ = ["AssembleTraining"]


@register
class AssembleTraining(Stage):
    """Network inputs, targets and a by-group split, shuffled and chunked for streaming."""

    name = "assemble_training"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity", "amplitude", "phase")),)
    output_kind = "training"
    draws = "per stage: the split into train, validation and test, and the shuffle"

    @dataclass(frozen=True)
    class Params:
        #: train, validation, test
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
        #: per-scan coordinate whose values keep scans together ("" : every scan its own group)
        group: str = ""
        #: scans per task and per zarr chunk (the streaming block)
        chunk: int = 1024
        #: where the scaled amplitude is at or below it, the phase target is 0
        support_threshold: float = 0.0

    def validate(self, params, inputs) -> None:
        ds = inputs["collection"]
        for name in ("intensity", "amplitude", "phase"):
            if name not in ds:
                raise ValueError(f"assemble_training needs a simulated collection with {name!r}")
        if params.group and params.group not in ds.coords:
            raise ValueError(f"group {params.group!r} is not a coordinate of the collection "
                             f"(it has {', '.join(sorted(map(str, ds.coords)))})")
        if min(params.fractions) < 0 or sum(params.fractions) <= 0:
            raise ValueError(f"fractions {params.fractions} must be non-negative with a positive sum")

    def plan(self, params, inputs) -> Plan:
        from cdiplatform.nn import SPLITS, split_by_group

        ds = inputs["collection"]
        n = ds.sizes["scan"]
        grid = ds["intensity"].shape[1:]
        dims = ds["intensity"].dims[1:]
        groups = ds[params.group].values if params.group else np.arange(n)
        splits = split_by_group(groups, params.fractions, self.random())
        order = np.concatenate([splits[name] for name in SPLITS]).astype(np.int64)
        code = np.concatenate([np.full(len(splits[name]), i, dtype=np.int8) for i, name in enumerate(SPLITS)])
        ranges, start = {}, 0
        for name in SPLITS:
            ranges[name] = [start, start + len(splits[name])]
            start += len(splits[name])
        coords = {"source_scan": ds["scan"].values[order], "split": code,
                  "split_name": np.asarray(SPLITS, dtype=object)[code]}
        if params.group:
            coords["group"] = np.asarray(groups)[order]
        for name in ("strained", "crystal", "sample"):
            if name in ds.coords and ds[name].dims == ("scan",) and name != params.group:
                coords[name] = ds[name].values[order]
        return Plan(
            n_scans=n,
            chunk=min(params.chunk, n),
            variables={
                "inputs": Var(dims, grid, "float32", {"long_name": "network input sqrt(intensity), max 1"}),
                "amplitude": Var(dims, grid, "float32", {"long_name": "amplitude target, max 1"}),
                "phase": Var(dims, grid, "float32", {"long_name": "phase target in output units p",
                                                     "mapping": "phi = phase_scale * p + phase_offset"}),
                "oversampling": Var((), (), "float32", {"long_name": "linear oversampling of the intensity"}),
            },
            coords=coords,
            attrs={"ndim": len(grid), "grid": list(grid), "splits": ranges,
                   "phase_scale": 2 * math.pi, "phase_offset": -math.pi,
                   "collection": ds.attrs.get("node", ""), "group": params.group},
            input_index=order,
        )

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        from cdiplatform.nn import estimate_oversampling, make_inputs, make_targets

        ds = inputs["collection"]
        ndim = ds["intensity"].ndim - 1
        intensity = ds["intensity"].values
        amp, p = make_targets(ds["amplitude"].values, ds["phase"].values, ndim=ndim,
                              support_threshold=params.support_threshold)
        return ChunkResult(
            {
                "inputs": make_inputs(intensity, ndim=ndim).astype(np.float32),
                "amplitude": np.asarray(amp, np.float32),
                "phase": np.asarray(p, np.float32),
                "oversampling": estimate_oversampling(intensity, ndim=ndim).astype(np.float32),
            }
        )
