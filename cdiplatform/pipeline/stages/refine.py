"""Stage ``refine`` (method ``nn_refined``): a network's guess refined against the measured data.

Inputs: the phasing-grid collection and a result to start from (the
network's, ``seed``), joined on ``scan``; a scan whose seed failed fails with
that reason. The seed is mapped onto the phasing grid with the per-scan grid
relation (its complex field, by the exact per-axis voxel ratio) and
thresholded into a dilated starting support; then, optionally, a short ER/HIO
from it (``warmup``, for example ``"180*HIO+20*ER"``: no twin removal, no box
support; method ``nn_hio_refined``), and the gradient refinement
(:func:`cdiplatform.phasing.refine`: the platform's forward model with its
analytic backward, the overall scale solved in closed form, L-BFGS or Adam per
scan, shrink-wrap when the loss improved). Its parameters are the
:class:`~cdiplatform.phasing.RefineSettings` themselves (``loss``,
``optimizer``, ``max_iterations``, ``shrink_wrap = {...}``...), beside the
execution settings. The result is written like every phasing result (see
:mod:`._phasing_results`), with the time-to-accuracy record of the refinement
(after the warm-up's time). Job file::

    [[stage]]
    stage = "refine"
    inputs = { collection = "collections/gold_pad64", seed = "results/gold_nn" }
    output = "results/gold_nn_refined"
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cdiplatform.phasing.refine_settings import RefineSettings
from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, config_field, register, resolve_device
from cdiplatform.pipeline.stages._phasing_results import (
    PhasingOutputs,
    check_collection,
    measured_pixels,
    model_grid,
    refuse_without_signal,
)

__all__ = ["Refine"]


def _records(settings: RefineSettings) -> int:
    """Rows of the time-to-accuracy record: every ``record_every`` step, the start and the end."""
    every = settings.record_every or settings.max_iterations
    return settings.max_iterations // every + 2


@register
class Refine(Stage):
    """Gradient (AD) refinement of a start (a network's guess) against the measured magnitudes."""

    name = "refine"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity",),
                    optional=("mask", "amplitude", "phase", "grid_relation")),
              Input("seed", kinds=("result",), variables=("amplitude", "phase"), optional=("grid_relation",)))
    output_kind = "result"
    uses_torch = True
    method = "nn_refined"

    @dataclass(frozen=True)
    class Params:
        #: the refinement (RefineSettings): loss, optimizer, parametrization, learning_rate,
        #: max_iterations, tolerance, shrink_wrap = {threshold, sigma, period, min_improvement}...
        refine: RefineSettings = config_field(RefineSettings())
        #: a short ER/HIO from the seed before the gradient refinement ("" : none)
        warmup: str = ""
        #: the starting support: the mapped seed's amplitude above this fraction, dilated
        seed_support_threshold: float = 0.1
        seed_dilation: int = 1
        #: model grid size when the collection has no ``model_grid`` attribute (0: none)
        model_size: int = 0
        device: str = "auto"
        #: scans per task (and per zarr chunk of the result); each is refined as its own problem
        chunk: int = 8

    def validate(self, params, inputs) -> None:
        from cdiplatform.pipeline.stages._seeding import check_seed

        ds = inputs["collection"]
        check_collection(ds, stage="refine")
        check_seed(ds, inputs["seed"], stage="refine")
        if params.warmup:
            from cdiplatform.phasing import parse_algorithm

            parse_algorithm(params.warmup)
        if params.chunk < 1:
            raise ValueError(f"refine: chunk must be >= 1, got {params.chunk}")
        model_grid(params.model_size, ds, tuple(ds["intensity"].shape[1:]), stage="refine")

    def _outputs(self, params, ds) -> PhasingOutputs:
        grid = tuple(ds["intensity"].shape[1:])
        return PhasingOutputs(ds, model=model_grid(params.model_size, ds, grid, stage="refine"),
                              records=_records(params.refine), label="refined")

    def plan(self, params, inputs) -> Plan:
        ds = inputs["collection"]
        outputs = self._outputs(params, ds)
        variables = {**outputs.variables(),
                     "stop": Var((), (), "str", {"long_name": "why the refinement stopped: converged, stalled "
                                                             "or max_iterations"}),
                     "evaluations": Var((), (), "int32", {"long_name": "loss and gradient evaluations"})}
        coords = {d: (d, np.asarray(ds[d].values)) for d in outputs.dims if d in ds.coords}
        return Plan(n_scans=ds.sizes["scan"], chunk=params.chunk, variables=variables, coords=coords,
                    attrs={"method": "nn_hio_refined" if params.warmup else self.method,
                           "warmup": params.warmup,
                           "model_grid": list(outputs.model) if outputs.model is not None else list(outputs.grid),
                           "seed": str(inputs["seed"].attrs.get("node", ""))})

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        from cdiplatform.phasing import PhasingSettings, phase_retrieval, refine
        from cdiplatform.pipeline.stages._seeding import seed_objects

        ds = inputs["collection"]
        intensity = np.asarray(ds["intensity"].values, dtype=np.float32)
        n = len(index)
        outputs = self._outputs(params, ds)
        out = outputs.blank(n)
        out["stop"] = np.full(n, "", dtype=object)
        out["evaluations"] = np.zeros(n, np.int32)
        failed = refuse_without_signal(intensity, index)
        ok = np.array([i for i in range(n) if i not in failed], dtype=np.int64)
        if len(ok) == 0:
            return ChunkResult(out, failed)
        measured = measured_pixels(ds)
        meas = None if measured is None else measured[ok]
        device = resolve_device(params.device)
        amplitude = np.sqrt(np.maximum(intensity[ok], 0))
        start, support = seed_objects(ds, inputs["seed"], support_threshold=params.seed_support_threshold,
                                      dilation=params.seed_dilation)
        start, support = start[ok], support[ok]
        warm = np.zeros(len(ok))
        if params.warmup:
            t0 = time.perf_counter()
            res = phase_retrieval(amplitude, ndim=amplitude.ndim - 1, settings=PhasingSettings(algorithm=params.warmup),
                                  measured=meas, rngs=[rngs[i] for i in ok], device=device, start=start,
                                  support=support, centre=False)
            start, support = res.obj, res.support
            warm[:] = (time.perf_counter() - t0) / len(ok)
        res = refine(amplitude, start, support, settings=params.refine, measured=meas, device=device)
        for j, i in enumerate(ok):
            outputs.put(out, i, res.obj[j], res.support[j], chi=res.chi[j], llk=res.llk[j],
                        iterations=int(res.iterations[j]))
            out["stop"][i] = res.status[j]
            out["evaluations"][i] = int(res.evaluations[j])
            rows = np.asarray(res.time_history[j], dtype=float)[: outputs.records]
            out["history_seconds"][i, : len(rows)] = rows[:, 1] + warm[j]
            out["history_chi"][i, : len(rows)] = rows[:, 2]
        return ChunkResult(out, failed)
