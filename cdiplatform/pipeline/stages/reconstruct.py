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

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.phasing.recipes import RECIPES
from cdiplatform.phasing.settings import PhasingSettings
from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, config_field, register, resolve_device

_GRID_DIMS = {2: ("y", "x"), 3: ("z", "y", "x")}



def _model_grid(params: Any, ds: xr.Dataset, grid: tuple[int, ...]) -> tuple[int, ...] | None:
    """The model grid when it is smaller than the collection's grid, else None."""
    if params.model_size > 0:
        model = (int(params.model_size),) * len(grid)
    elif "model_grid" in ds.attrs:
        value = ds.attrs["model_grid"]
        model = tuple(int(v) for v in np.atleast_1d(value))
        if len(model) == 1:
            model = model * len(grid)
    else:
        return None
    if len(model) != len(grid) or any(m > n for m, n in zip(model, grid)):
        raise ValueError(f"reconstruct: model grid {model} does not fit in the collection's grid {grid}")
    return None if model == grid else model


def _relations(ds: xr.Dataset, grid: tuple[int, ...], model: tuple[int, ...] | None) -> list:
    """Per scan, how the model grid sits in the collection's grid: the collection's own ``grid_relation``
    records (a padded collection's), else a centred crop to ``model``."""
    from cdiplatform.physics.grids import GridRelation

    n = ds.sizes["scan"]
    if "grid_relation" in ds:
        return [GridRelation.from_dict(json.loads(str(r))) for r in ds["grid_relation"].values]
    if model is None:
        return [None] * n
    return [GridRelation(phasing_grid=grid, window=grid, model_grid=model)] * n


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
        if "intensity" not in ds:
            raise ValueError("reconstruct: the input collection has no 'intensity' variable")
        ndim = ds["intensity"].ndim - 1
        if ndim not in _GRID_DIMS or ds["intensity"].dims[1:] != _GRID_DIMS[ndim]:
            raise ValueError(f"reconstruct: intensity dims {ds['intensity'].dims} are not (scan, [z,] y, x)")
        if params.chunk < 1 or params.batch_size < 0:
            raise ValueError(f"reconstruct: chunk must be >= 1 and batch_size >= 0, got {params.chunk}, "
                             f"{params.batch_size}")
        if "seed" in inputs:
            from cdiplatform.pipeline.stages._seeding import check_seed

            check_seed(ds, inputs["seed"], stage="reconstruct")
        _model_grid(params, ds, tuple(ds["intensity"].shape[1:]))

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        ds = inputs["collection"]
        self.validate(params, inputs)
        intensity = ds["intensity"]
        dims, shape = intensity.dims[1:], tuple(intensity.shape[1:])
        def var(dims_, shape_, dtype, long_name, units="1"):
            return Var(dims_, shape_, dtype, {"long_name": long_name, "units": units})

        variables = {
            "amplitude": var(dims, shape, "float32", "ER/HIO amplitude, normalized to max 1"),
            "phase": var(dims, shape, "float32", "ER/HIO phase", "rad"),
            "support": var(dims, shape, "uint8", "final shrink-wrap support"),
            "chi": var((), (), "float64", "sum (|F|-A)^2 / sum A^2 over measured pixels"),
            "llk": var((), (), "float64", "Poisson deviance per measured pixel"),
            "iterations": Var((), (), "int32", {"long_name": "iterations run"}),
            "blur": Var((), (), "str", {"long_name": "how the shrink-wrap blurred: fft or separable "
                                                    "(a rule of device and grid, kept with the run)"}),
        }
        records = _records(params.phasing)
        if records:
            variables["history_seconds"] = var(("record",), (len(records),), "float64",
                                               "time to each recorded iteration (best start)", "s")
            variables["history_chi"] = var(("record",), (len(records),), "float64",
                                           "reciprocal-space error at each recorded iteration (best start)")
        model = _model_grid(params, ds, shape)
        if model is not None:
            mdims = tuple(f"{d}_model" for d in dims)
            crop = "on the model grid (centred crop)"
            variables["amplitude_model"] = var(mdims, model, "float32", f"amplitude {crop}")
            variables["phase_model"] = var(mdims, model, "float32", f"phase {crop}", "rad")
        if "amplitude" in ds and "phase" in ds:
            where = "model grid" if model is not None else "grid"
            variables["amplitude_error"] = var(
                (), (), "float64", f"mean |a - a_true| over the {where}, both max 1, aligned"
            )
            variables["phase_error"] = var(
                (), (), "float64", "RMS phase error inside the true support, aligned", "rad"
            )
        coords = {d: (d, np.asarray(ds[d].values)) for d in dims if d in ds.coords}
        if records:
            coords["record"] = ("record", np.asarray(records, dtype=np.int64), {"long_name": "iteration"})
        attrs = {
            "method": "er_hio_nn" if "seed" in inputs else self.method,
            "algorithm": str(params.phasing.algorithm),
            "batch_size": params.batch_size or "auto: cdiplatform.phasing.auto_batch_size(grid, n_starts, device)",
            "model_grid": list(model) if model is not None else list(shape),
        }
        return Plan(
            n_scans=intensity.shape[0], chunk=params.chunk, variables=variables, coords=coords, attrs=attrs
        )

    def compute(
        self, params: Any, inputs: dict[str, xr.Dataset], index: np.ndarray, rngs: list[np.random.Generator]
    ) -> ChunkResult:
        from cdiplatform.physics.align import remove_phase_offset
        from cdiplatform.physics.metrics import compare_with_truth, poisson_llk

        ds = inputs["collection"]
        intensity = np.asarray(ds["intensity"].values, dtype=np.float32)
        n, grid = intensity.shape[0], intensity.shape[1:]
        ndim = len(grid)
        measured = None
        if "mask" in ds:
            mask = np.asarray(ds["mask"].values) != 0
            measured = mask if ds["mask"].attrs.get("meaning") == "measured" else ~mask
        model = _model_grid(params, ds, grid)

        failed: dict[int, str] = {}
        flat = intensity.reshape(n, -1)
        for i in range(n):
            if np.any(flat[i] < 0):
                failed[i] = f"scan {index[i]}: intensity has negative values"
            elif not np.any(flat[i] > 0):
                failed[i] = f"scan {index[i]}: intensity is zero everywhere"
        ok = np.array([i for i in range(n) if i not in failed], dtype=np.int64)

        out = {
            "amplitude": np.full((n, *grid), np.nan, np.float32),
            "phase": np.full((n, *grid), np.nan, np.float32),
            "support": np.zeros((n, *grid), np.uint8),
            "chi": np.full(n, np.nan),
            "llk": np.full(n, np.nan),
            "iterations": np.zeros(n, np.int32),
            "blur": np.full(n, "", dtype=object),
        }
        records = _records(params.phasing)
        if records:
            out["history_seconds"] = np.full((n, len(records)), np.nan)
            out["history_chi"] = np.full((n, len(records)), np.nan)
        if model is not None:
            out["amplitude_model"] = np.full((n, *model), np.nan, np.float32)
            out["phase_model"] = np.full((n, *model), np.nan, np.float32)
        has_truth = "amplitude" in ds and "phase" in ds
        if has_truth:
            out["amplitude_error"] = np.full(n, np.nan)
            out["phase_error"] = np.full(n, np.nan)
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

        from cdiplatform.physics.grids import phasing_to_model

        relations = _relations(ds, grid, model)
        llk = poisson_llk(res.obj, intensity[ok], ndim=ndim, measured=meas_ok)
        for j, i in enumerate(ok):
            obj = remove_phase_offset(res.obj[j], weight=res.support[j])
            amp = np.abs(obj)
            peak = amp.max() if amp.max() > 0 else 1.0
            out["amplitude"][i] = amp / peak
            out["phase"][i] = np.angle(obj)
            out["support"][i] = res.support[j]
            out["chi"][i] = res.error[j]
            out["llk"][i] = llk[j]
            out["iterations"][i] = res.iterations
            out["blur"][i] = res.blur or ""
            if "history_chi" in out:
                out["history_seconds"][i] = hist_seconds[j]
                out["history_chi"][i] = hist_errors[j, :, int(res.best[j, 0])]
            cmp_obj = obj
            if model is not None:
                cmp_obj = phasing_to_model(obj, relations[i])
                out["amplitude_model"][i] = np.abs(cmp_obj) / peak
                out["phase_model"][i] = np.angle(cmp_obj)
            if has_truth:
                truth = np.asarray(ds["amplitude"].values[i]) * np.exp(1j * np.asarray(ds["phase"].values[i]))
                if model is not None:
                    truth = phasing_to_model(truth, relations[i])
                ta, tp = np.abs(truth), np.angle(truth)
                if np.any(ta > 0):
                    c = compare_with_truth(cmp_obj, ta, tp)
                    out["amplitude_error"][i] = c.amplitude_error
                    out["phase_error"][i] = c.phase_error
        return ChunkResult(values=out, failed=failed)
