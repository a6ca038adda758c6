"""Stage ``reconstruct``: ER / HIO / RAAR phase retrieval over a scan collection.

Reads ``intensity`` (and ``mask`` where the collection has one) of the input
collection, phases every scan of a chunk together in one batch with
``n_starts`` random starts each (:func:`cdiplatform.phasing.phase_retrieval`),
and writes per scan:

- ``amplitude`` (normalized to a maximum of 1), ``phase`` (radians, weighted
  mean phase 0), ``support`` (uint8) on the collection's grid;
- ``chi`` (reciprocal-space error, :func:`cdiplatform.physics.metrics.chi_square`),
  ``llk`` (Poisson deviance per pixel), ``iterations``;
- where the collection is finer than the model grid (a zero-padded
  collection: attribute ``model_grid``, or the parameter ``model_size``):
  ``amplitude_model`` and ``phase_model`` on dims ``y_model, x_model``
  (``z_model`` in 3D), mapped with the collection's per-scan ``grid_relation``
  (:func:`cdiplatform.physics.grids.phasing_to_model`; a centred crop for
  zero-padded data);
- where the collection holds the truth (``amplitude``, ``phase``):
  ``amplitude_error`` and ``phase_error`` after alignment, on the model grid
  when there is one.

``mask`` is read as True (non-zero) where a pixel is *bad* (not measured),
unless its attribute ``meaning`` is ``"measured"``. Scans with NaN, infinite
or negative intensity are recorded as failed. Its parameters are the
:class:`~cdiplatform.phasing.PhasingSettings` themselves (or a named recipe,
``recipe = "cohere_scan54"``), beside ``chunk``, ``device`` and ``model_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.phasing.recipes import RECIPES
from cdiplatform.phasing.settings import PhasingSettings
from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, config_field, register, resolve_device
from cdiplatform.pipeline.stages._phasing_results import (
    PhasingOutputs,
    check_collection,
    measured_pixels,
    model_grid,
    refuse_without_signal,
)




def _records(settings) -> list[int]:
    """The iterations at which the engine records the error (``record_every``; and the last one)."""
    every, n = settings.record_every, settings.algorithm.n_iterations
    return sorted({i for i in range(0, n, every)} | {n - 1}) if every else []


def _phase_in_batches(amplitude, params, *, ndim, measured, rngs, device, start, support):
    """phase_retrieval over batches of ``batch_size`` scans (0: cdiplatform.phasing.auto_batch_size), joined.

    Returns the joined result, the batch size, and per scan the recorded times ``(S, R)`` and errors
    ``(S, R, K)`` of its own batch. A scan's result does not depend on its batch.
    """
    from cdiplatform.phasing import PhasingResult, auto_batch_size, phase_retrieval

    n, grid = len(amplitude), amplitude.shape[1:]
    size = params.batch_size or auto_batch_size(grid, n_starts=params.phasing.n_starts, device=device)
    size = max(1, min(size, n))
    parts = []
    for b in range(0, n, size):
        sl = slice(b, b + size)
        seeded = {} if start is None else {"start": start[sl], "support": support[sl]}
        parts.append(phase_retrieval(amplitude[sl], ndim=ndim, settings=params.phasing, rngs=rngs[sl], device=device,
                                     measured=None if measured is None else measured[sl], **seeded))
    joined = {name: np.concatenate([getattr(p, name) for p in parts])
              for name in ("obj", "support", "error", "start_errors", "best")}
    seconds = np.concatenate([np.tile([h[1] for h in p.history], (len(p.obj), 1)) for p in parts])
    errors = (np.concatenate([np.stack([h[2] for h in p.history], axis=1) for p in parts]) if parts[0].history
              else np.zeros((n, 0, params.phasing.n_starts)))
    result = PhasingResult(**joined, iterations=parts[0].iterations, history=[], blur=parts[0].blur,
                           compiled=parts[0].compiled)
    return result, size, seconds.reshape(n, -1), errors


@register
class Reconstruct(Stage):
    name = "reconstruct"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity",),
                    optional=("mask", "amplitude", "phase", "grid_relation")),
              Input("seed", kinds=("result",), variables=("amplitude", "phase"), optional=("grid_relation",),
                    required=False))
    output_kind = "result"
    uses_torch = True
    method = "er_hio"

    draws = "per scan: the random starts (amplitude and phase of every voxel)"

    @dataclass(frozen=True)
    class Params:
        #: the phase retrieval (PhasingSettings): algorithm, beta, shrink_wrap = {...}, twin = {...},
        #: average_last, initial_support, support_fraction, n_starts, keep_best...; ``recipe`` names one
        #: of cdiplatform.phasing.RECIPES (default: paper_2d)
        phasing: PhasingSettings = config_field(RECIPES["paper_2d"], recipes=RECIPES)
        #: model grid size when the collection has no ``model_grid`` attribute (0: none)
        model_size: int = 0
        #: ``auto`` (cuda if available), ``cpu`` or ``cuda``
        device: str = "auto"
        #: scans phased together on one device (0: automatic, from the grid and the device's memory,
        #: cdiplatform.phasing.auto_batch_size); the chunk is the unit of writing and resuming
        batch_size: int = 0
        #: a seeded start (the ``seed`` input): the support is the seed's amplitude above this fraction
        #: of its maximum, dilated by ``seed_dilation`` voxels
        seed_support_threshold: float = 0.1
        seed_dilation: int = 1
        #: scans per task (and per zarr chunk of the result)
        chunk: int = 64

    def validate(self, params: Any, inputs: dict[str, xr.Dataset]) -> None:
        ds = inputs["collection"]
        check_collection(ds, stage="reconstruct")
        if params.chunk < 1 or params.batch_size < 0:
            raise ValueError(f"reconstruct: chunk must be >= 1 and batch_size >= 0, got {params.chunk}, "
                             f"{params.batch_size}")
        if "seed" in inputs:
            from cdiplatform.pipeline.stages._seeding import check_seed

            check_seed(ds, inputs["seed"], stage="reconstruct")
        model_grid(params.model_size, ds, tuple(ds["intensity"].shape[1:]), stage="reconstruct")

    def _outputs(self, params: Any, ds: xr.Dataset) -> PhasingOutputs:
        grid = tuple(ds["intensity"].shape[1:])
        return PhasingOutputs(ds, model=model_grid(params.model_size, ds, grid, stage="reconstruct"),
                              records=len(_records(params.phasing)), label="ER/HIO")

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        ds = inputs["collection"]
        outputs = self._outputs(params, ds)
        variables = {**outputs.variables(),
                     "blur": Var((), (), "str", {"long_name": "how the shrink-wrap blurred: fft or separable "
                                                             "(a rule of device and grid, kept with the run)"})}
        coords = {d: (d, np.asarray(ds[d].values)) for d in outputs.dims if d in ds.coords}
        records = _records(params.phasing)
        if records:
            coords["record"] = ("record", np.asarray(records, dtype=np.int64), {"long_name": "iteration"})
        attrs = {
            "method": "er_hio_nn" if "seed" in inputs else self.method,
            "algorithm": str(params.phasing.algorithm),
            "batch_size": params.batch_size or "auto: cdiplatform.phasing.auto_batch_size(grid, n_starts, device)",
            "model_grid": list(outputs.model) if outputs.model is not None else list(outputs.grid),
        }
        return Plan(n_scans=ds.sizes["scan"], chunk=params.chunk, variables=variables, coords=coords, attrs=attrs)

    def compute(
        self, params: Any, inputs: dict[str, xr.Dataset], index: np.ndarray, rngs: list[np.random.Generator]
    ) -> ChunkResult:
        from cdiplatform.physics.metrics import poisson_llk

        ds = inputs["collection"]
        intensity = np.asarray(ds["intensity"].values, dtype=np.float32)
        n, ndim = intensity.shape[0], intensity.ndim - 1
        measured = measured_pixels(ds)
        outputs = self._outputs(params, ds)
        out = outputs.blank(n)
        out["blur"] = np.full(n, "", dtype=object)
        failed = refuse_without_signal(intensity, index)
        ok = np.array([i for i in range(n) if i not in failed], dtype=np.int64)
        if len(ok) == 0:
            return ChunkResult(values=out, failed=failed)

        meas_ok = None if measured is None else measured[ok]
        device = resolve_device(params.device)
        start = start_support = None
        if "seed" in inputs:
            from cdiplatform.pipeline.stages._seeding import seed_objects

            start, start_support = seed_objects(ds, inputs["seed"], support_threshold=params.seed_support_threshold,
                                                dilation=params.seed_dilation)
            start, start_support = start[ok], start_support[ok]
        try:
            res, _, hist_seconds, hist_errors = _phase_in_batches(
                np.sqrt(intensity[ok]), params, ndim=ndim, measured=meas_ok, rngs=[rngs[i] for i in ok],
                device=device, start=start, support=start_support)
        except (FloatingPointError, RuntimeError) as exc:
            for i in ok:
                failed[int(i)] = f"scan {index[i]}: phase retrieval failed: {exc}"
            return ChunkResult(values=out, failed=failed)

        llk = poisson_llk(res.obj, intensity[ok], ndim=ndim, measured=meas_ok)
        for j, i in enumerate(ok):
            outputs.put(out, i, res.obj[j], res.support[j], chi=res.error[j], llk=llk[j], iterations=res.iterations)
            out["blur"][i] = res.blur or ""
            if "history_chi" in out:
                out["history_seconds"][i] = hist_seconds[j]
                out["history_chi"][i] = hist_errors[j, :, int(res.best[j, 0])]
        return ChunkResult(values=out, failed=failed)
