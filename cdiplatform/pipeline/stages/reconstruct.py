"""Stage ``reconstruct``: ER / HIO / RAAR phase retrieval over a scan collection.

Reads ``intensity`` (and ``mask`` where the collection has one) of the input
collection, phases every scan of a chunk together in one batch with
``n_starts`` random starts each (:func:`cdiplatform.phasing.phase_retrieval`),
and writes per scan:

- ``amplitude`` (normalized to a maximum of 1), ``phase`` (radians, weighted
  mean phase 0), ``support`` (uint8) on the collection's grid;
- ``chi`` (reciprocal-space error, :func:`cdiplatform.physics.metrics.chi_square`),
  ``llk`` (Poisson deviance per pixel), ``iterations``; ``blur``,
  ``kernels`` and ``fft``, how the shrink-wrap blurred, how the elementwise
  steps ran and which library transformed (rules of device, grid and
  install, kept with the run);
- where the collection is finer than the model grid (a zero-padded
  collection: attribute ``model_grid``, or the parameter ``model_size``):
  ``amplitude_model`` and ``phase_model`` on dims ``y_model, x_model``
  (``z_model`` in 3D), mapped with the collection's per-scan ``grid_relation``
  (:func:`cdiplatform.physics.grids.phasing_to_model`; a centred crop for
  zero-padded data);
- where the collection holds the truth (``amplitude``, ``phase``):
  ``amplitude_error`` and ``phase_error`` after alignment, on the model grid
  when there is one;
- for a 3D collection with its signed q steps (``q_step``, recorded by
  ``prepare``) and ``keep_best > 1``: the phase retrieval transfer function
  of the complex average of the kept, aligned starts against the measured
  magnitude ``sqrt(intensity)`` over the measured pixels
  (:func:`cdiplatform.postprocess.resolution.prtf_of_average`): ``prtf`` and
  ``prtf_q`` on ``shell`` (NaN-padded to
  :func:`~cdiplatform.postprocess.resolution.max_shells` of the grid),
  ``prtf_resolution`` and ``prtf_crossed`` on ``axis`` (half-periods in nm
  where the PRTF falls below 1/e in the cones around the z, y, x axes of the
  q steps' frame), ``prtf_resolution_shell`` and
  ``prtf_crossed_shell`` (the same of whole shells); with ``fsc = true`` the
  same of the Fourier shell correlation of two binomial halves of the photons
  (``fsc``, ``fsc_q``, ``fsc_threshold``, ``fsc_resolution``...). Layout:
  :mod:`cdiplatform.pipeline.stages._resolution`. Where they do not apply
  (``keep_best = 1``, 2D, no ``q_step``) the node has no such variables;
  a scan whose ``q_step`` is not finite, or whose halves failed to phase,
  holds NaN in them.

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
from cdiplatform.pipeline.stage import (
    ChunkResult,
    Input,
    Plan,
    Stage,
    Var,
    config_field,
    register,
    resolve_device,
)
from cdiplatform.pipeline.stages._phasing_results import (
    PhasingOutputs,
    blank_values,
    check_collection,
    measured_pixels,
    model_grid,
    refuse_without_signal,
)
from cdiplatform.pipeline.stages._resolution import (
    AXES,
    check_q_step,
    has_q_step,
    put_curve,
    q_steps,
    resolution_variables,
)
from cdiplatform.postprocess.resolution import max_shells


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
                           compiled=parts[0].compiled, kernels=parts[0].kernels, fft=parts[0].fft)
    return result, size, seconds.reshape(n, -1), errors


def _resolution_variables(params, ds) -> dict[str, Var]:
    """The resolution variables of the node, decided at plan time: the PRTF with ``keep_best > 1``, the
    FSC with ``fsc``, both only for a 3D collection with its q steps; none otherwise."""
    if ds["intensity"].ndim != 4 or not has_q_step(ds):
        return {}
    kinds = (("prtf",) if params.phasing.keep_best > 1 else ()) + (("fsc",) if params.fsc else ())
    shells = max_shells(ds["intensity"].shape[1:])
    return {name: var for kind in kinds for name, var in resolution_variables(kind, shells).items()}


def _finite_steps(steps: np.ndarray, rows) -> list[int]:
    return [j for j, i in enumerate(rows) if np.all(np.isfinite(steps[i]))]


def _put_prtf(out, rows, obj, intensity, measured, steps) -> None:
    """The PRTF of each scan's average (``obj[j]``, scan ``rows[j]`` of the chunk) into ``out``."""
    from cdiplatform.postprocess.resolution import prtf_of_average

    for j in _finite_steps(steps, rows):
        i = rows[j]
        try:
            (curve,) = prtf_of_average(obj[j:j + 1], np.sqrt(intensity[i:i + 1]), q_step=steps[i],
                                       measured=None if measured is None else measured[i:i + 1])
        except ValueError:  # a singular q step (the only thing left to refuse): the scan keeps NaN
            continue
        put_curve(out, int(i), curve)


def _put_fsc(out, rows, params, intensity, measured, rngs, device, steps) -> None:
    """The FSC of each scan (``rows`` of the chunk) into ``out``: its photons split into two binomial halves
    by its own generator, each half phased like the whole, half B aligned on half A."""
    from cdiplatform.physics.align import align
    from cdiplatform.postprocess.resolution import binomial_split, fourier_shell_correlation

    rows = [rows[j] for j in _finite_steps(steps, rows)]
    if not rows:
        return
    halves = [binomial_split(intensity[i], rngs[i]) for i in rows]
    meas = None if measured is None else measured[rows]
    phased = []
    for h in range(2):
        try:
            res, *_ = _phase_in_batches(np.sqrt(np.stack([pair[h] for pair in halves])), params, ndim=3,
                                        measured=meas, rngs=[rngs[i] for i in rows], device=device, start=None,
                                        support=None)
        except (FloatingPointError, RuntimeError):  # the scans keep NaN: the reconstruction itself is fine
            return
        phased.append(res.obj)
    obj_a = phased[0]
    obj_b = np.stack([align(phased[1][j], obj_a[j]).obj for j in range(len(rows))])
    for j, i in enumerate(rows):
        try:
            (curve,) = fourier_shell_correlation(obj_a[j:j + 1], obj_b[j:j + 1], q_step=steps[i])
        except ValueError:  # a singular q step
            continue
        put_curve(out, int(i), curve)


@register
class Reconstruct(Stage):
    name = "reconstruct"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity",),
                    optional=("mask", "amplitude", "phase", "grid_relation", "q_step")),
              Input("seed", kinds=("result",), variables=("amplitude", "phase"), optional=("grid_relation",),
                    required=False))
    output_kind = "result"
    uses_torch = True
    method = "er_hio"

    draws = ("per scan: the random starts (amplitude and phase of every voxel); with fsc, then the binomial "
             "split of the photons and the random starts of each half")

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
        #: also the Fourier shell correlation (3D collections with ``q_step`` only): each scan's photons
        #: split into two binomial halves (the scan's own random stream), each phased with the same
        #: settings, half B aligned on half A; ``fsc``, ``fsc_resolution``... beside the PRTF. It triples
        #: the phasing cost.
        fsc: bool = False
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
        if params.fsc:
            where = ds.attrs.get("node", "the collection")
            if ds["intensity"].ndim != 4:
                raise ValueError(f"reconstruct: fsc = true needs a 3D collection; {where} is 2D")
            if not has_q_step(ds):
                raise ValueError(f"reconstruct: fsc = true needs the collection's q steps; {where} has no 'q_step' "
                                 f"(prepared measured scans record it)")
            if "seed" in inputs:
                raise ValueError("reconstruct: fsc = true needs random starts; with a seed both halves would "
                                 "start from one guess made from all the data")
        if _resolution_variables(params, ds):
            check_q_step(ds, stage="reconstruct")

    def _outputs(self, params: Any, ds: xr.Dataset) -> PhasingOutputs:
        grid = tuple(ds["intensity"].shape[1:])
        return PhasingOutputs(ds, model=model_grid(params.model_size, ds, grid, stage="reconstruct"),
                              records=len(_records(params.phasing)), label="ER/HIO")

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        ds = inputs["collection"]
        outputs = self._outputs(params, ds)
        variables = {**outputs.variables(),
                     "blur": Var((), (), "str", {"long_name": "how the shrink-wrap blurred: fft or separable "
                                                             "(a rule of device and grid, kept with the run)"}),
                 "kernels": Var((), (), "str", {"long_name": "how the elementwise steps ran: numba (one pass "
                                                            "each, CPU) or eager (torch), a rule of device and "
                                                            "install (cdiplatform.phasing.kernels.resolve_kernels)"}),
                     "fft": Var((), (), "str", {"long_name": "the transforms' library: torch or pocketfft (scipy.fft's, "
                                                        "into a kept buffer), a rule of device and grid "
                                                        "(cdiplatform.phasing.transforms.resolve_fft)"})}
        coords = {d: (d, np.asarray(ds[d].values)) for d in outputs.dims if d in ds.coords}
        resolution = _resolution_variables(params, ds)
        variables.update(resolution)
        if resolution:
            coords["axis"] = ("axis", np.array(AXES, dtype=object))
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
        out["kernels"] = np.full(n, "", dtype=object)
        out["fft"] = np.full(n, "", dtype=object)
        resolution = _resolution_variables(params, ds)
        out.update(blank_values(resolution, n))
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
            out["kernels"][i] = res.kernels
            out["fft"][i] = res.fft
            if "history_chi" in out:
                out["history_seconds"][i] = hist_seconds[j]
                out["history_chi"][i] = hist_errors[j, :, int(res.best[j, 0])]
        steps = q_steps(ds) if resolution else None
        if "prtf" in resolution:
            _put_prtf(out, ok, res.obj, intensity, measured, steps)
        if "fsc" in resolution:
            _put_fsc(out, ok, params, intensity, measured, rngs, device, steps)
        return ChunkResult(values=out, failed=failed)
