"""Stage ``benchmark``: every method compared scan by scan, against the data, the truth and a reference.

Inputs: the phasing-grid collection (the measured intensity; for simulated
data the truth) and any number of result nodes, ``methods`` (the network,
the refinement, ER/HIO, network-seeded ER/HIO...), joined on the scans'
identity; the stage sees the scans a method failed, and flags them. Per scan
and method:

- ``chi`` and ``llk`` of the method's object against the measured data on the
  phasing grid (a network's prediction mapped there first with the per-scan
  grid relation, :func:`cdiplatform.physics.grids.model_to_phasing`), the scale
  fitted (the results are normalized to a maximum of 1);
- where the truth is known, ``amplitude_error`` and ``phase_error`` after one
  alignment used for every method (:func:`cdiplatform.physics.compare.compare_objects`:
  sub-voxel shift, twin, constant phase, no ramp) on the model grid;
- ``agreement_iou`` (support intersection over union) and ``agreement_phase_rms``
  with the ``reference`` method, after the same alignment;
- ``method_seconds`` and ``iterations`` as the method recorded them, and
  ``seconds_to_target``: when the method's recorded error first fell to
  ``target_ratio`` times the reference's final one (time-to-accuracy);
- ``flag`` (``good``, ``twin`` or ``failed``) and ``flag_reason``
  (:func:`cdiplatform.physics.quality.quality_flag`, its thresholds the stage's
  parameters: ``max_chi``, ``max_support_fraction``...).

Job file::

    [[stage]]
    stage = "benchmark"
    inputs = { collection = "collections/gold_pad64", methods = ["results/nn", "results/nn_refined",
               "results/er_hio", "results/er_hio_nn"] }
    output = "benchmarks/gold"
    [stage.params]
    reference = "er_hio"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from cdiplatform.physics.quality import QualityThresholds
from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, config_field, register

__all__ = ["Benchmark"]

_FLOATS = ("chi", "llk", "amplitude_error", "phase_error", "agreement_iou", "agreement_phase_rms",
           "method_seconds", "iterations", "seconds_to_target")


def method_names(results: list[Any]) -> list[str]:
    """One name per result node: its ``method`` attribute, made unique with the node's name."""
    names = []
    for ds in results:
        name = str(ds.attrs.get("method", "method"))
        if name in names:
            name = f"{name}:{str(ds.attrs.get('node', '')).rsplit('/', 1)[-1]}"
        names.append(name)
    return names


@register
class Benchmark(Stage):
    """Methods compared scan by scan: errors, time, agreement with a reference, a quality flag."""

    name = "benchmark"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity",),
                    optional=("mask", "amplitude", "phase", "grid_relation")),
              Input("methods", kinds=("result",), many=True, sees_failures=True))
    output_kind = "benchmark"
    method = "benchmark"

    @dataclass(frozen=True)
    class Params:
        #: the quality flag's thresholds (QualityThresholds: max_chi, max_support_fraction, ...)
        quality: QualityThresholds = config_field(QualityThresholds())
        #: the method every other is compared with ("" : none)
        reference: str = "er_hio"
        #: time-to-accuracy: when a method's error reaches this many times the reference's final error
        target_ratio: float = 1.1
        #: a network's support on the phasing grid: its mapped amplitude above this fraction, dilated
        support_threshold: float = 0.1
        chunk: int = 16

    def validate(self, params, inputs) -> None:
        names = method_names(inputs["methods"])
        if params.reference and params.reference not in names:
            raise ValueError(f"benchmark: reference {params.reference!r} is none of the methods {names}")
        if params.target_ratio < 1:
            raise ValueError(f"benchmark: target_ratio must be >= 1, got {params.target_ratio}")
        grid = tuple(inputs["collection"]["intensity"].shape[1:])
        for ds in inputs["methods"]:
            own = tuple(ds["amplitude"].shape[1:]) if "amplitude" in ds else None
            if own is None:
                raise ValueError(f"benchmark: {ds.attrs.get('node')} holds no amplitude: not a reconstruction")
            if own != grid and "grid_relation" not in ds and "grid_relation" not in inputs["collection"]:
                raise ValueError(f"benchmark: {ds.attrs.get('node')} is on a grid {own} that neither it nor the "
                                 f"collection relates to the phasing grid {grid} (no grid_relation)")

    def plan(self, params, inputs) -> Plan:
        names = method_names(inputs["methods"])
        m = len(names)
        long = {"chi": "sum (s|F| - A)^2 / sum A^2 on the phasing grid, scale fitted",
                "llk": "Poisson deviance per measured pixel, scale fitted",
                "amplitude_error": "mean |a - a_true|, both max 1, aligned, model grid",
                "phase_error": "RMS phase error in the common support, aligned (no ramp), model grid",
                "agreement_iou": "support intersection over union with the reference",
                "agreement_phase_rms": "RMS phase difference with the reference in the common support",
                "method_seconds": "compute time the method recorded for the scan",
                "iterations": "iterations the method ran",
                "seconds_to_target": "time at which the error reached target_ratio x the reference's final"}
        units = {"method_seconds": "s", "seconds_to_target": "s", "phase_error": "rad", "agreement_phase_rms": "rad"}
        variables = {name: Var(("method",), (m,), "float64", {"long_name": long[name], "units": units.get(name, "1")},
                               timing=name in ("method_seconds", "seconds_to_target"))
                     for name in _FLOATS}
        variables["flag"] = Var(("method",), (m,), "str", {"long_name": "good, twin or failed"})
        variables["flag_reason"] = Var(("method",), (m,), "str", {"long_name": "why failed or twin"})
        return Plan(n_scans=inputs["collection"].sizes["scan"], chunk=params.chunk, variables=variables,
                    coords={"method": ("method", np.array(names, dtype=object))},
                    attrs={"methods": {n: str(ds.attrs.get("node", "")) for n, ds in zip(names, inputs["methods"])},
                           "reference": params.reference, "target_ratio": params.target_ratio,
                           "thresholds": json.loads(json.dumps(params.quality.__dict__))})

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        collection, results = inputs["collection"], inputs["methods"]
        names = method_names(results)
        n, m = len(index), len(names)
        values: dict[str, np.ndarray] = {k: np.full((n, m), np.nan) for k in _FLOATS}
        values["flag"] = np.full((n, m), "", dtype=object)
        values["flag_reason"] = np.full((n, m), "", dtype=object)
        ref = names.index(params.reference) if params.reference else None
        for i in range(n):
            _compare_scan(i, collection, results, ref, params, values)
        return ChunkResult(values)


def _relation(datasets, i):
    """The scan's model grid and phasing grid: from the collection (zero-padded), else from any method
    that carries it (a network's result carries its network input's)."""
    from cdiplatform.physics.grids import GridRelation

    for ds in datasets:
        if "grid_relation" in ds and str(ds["grid_relation"].values[i]):
            return GridRelation.from_dict(json.loads(str(ds["grid_relation"].values[i])))
    return None


def _objects(collection, result, i, params, relation):
    """The method's object on the phasing grid, its support there, and its object on the model grid."""
    from cdiplatform.physics.grids import model_to_phasing, phasing_to_model
    from cdiplatform.physics.support import support_from_amplitude

    grid = tuple(collection["intensity"].shape[1:])
    amp = np.nan_to_num(np.asarray(result["amplitude"].values[i], dtype=np.float64))
    obj = amp * np.exp(1j * np.nan_to_num(np.asarray(result["phase"].values[i], dtype=np.float64)))
    if obj.shape == grid:
        obj_p = obj
        support = (np.asarray(result["support"].values[i]) != 0) if "support" in result else amp > 0.1 * amp.max()
        if "amplitude_model" in result:
            obj_m = np.asarray(result["amplitude_model"].values[i]) * np.exp(
                1j * np.asarray(result["phase_model"].values[i]))
        else:
            obj_m = phasing_to_model(obj_p, relation) if relation is not None else obj_p
    else:
        obj_m = obj
        obj_p = model_to_phasing(obj, relation)
        support = support_from_amplitude(np.abs(obj_p), threshold=params.support_threshold, dilation=1)
    return obj_p, support, np.nan_to_num(obj_m)


def _compare_scan(i, collection, results, ref, params, values) -> None:
    from cdiplatform.physics.compare import compare_objects
    from cdiplatform.physics.grids import phasing_to_model
    from cdiplatform.physics.metrics import chi_square, poisson_llk
    from cdiplatform.physics.quality import quality_flag

    intensity = np.asarray(collection["intensity"].values[i], dtype=np.float64)
    measured = None
    if "mask" in collection:
        mask = np.asarray(collection["mask"].values[i]) != 0
        measured = mask if collection["mask"].attrs.get("meaning") == "measured" else ~mask
    relation = _relation([collection, *results], i)
    objects: list[Any] = [None] * len(results)
    for k, res in enumerate(results):
        if int(res["status"].values[i]) != 1:
            values["flag"][i, k] = "failed"
            values["flag_reason"][i, k] = str(res["reason"].values[i]) or "the method failed this scan"
            continue
        objects[k] = _objects(collection, res, i, params, relation)
    truth_m = None
    if "amplitude" in collection and "phase" in collection:
        truth = np.asarray(collection["amplitude"].values[i]) * np.exp(1j * np.asarray(collection["phase"].values[i]))
        truth_m = phasing_to_model(truth, relation) if relation is not None else truth
    ref_chi = np.nan
    for k, res in enumerate(results):
        if objects[k] is None:
            continue
        obj_p, support, obj_m = objects[k]
        chi = float(chi_square(obj_p, np.sqrt(np.maximum(intensity, 0)), measured=measured, fit_scale=True))
        values["chi"][i, k] = chi
        values["llk"][i, k] = float(poisson_llk(obj_p, intensity, measured=measured, fit_scale=True))
        if k == ref:
            ref_chi = chi
        cmp_truth = compare_objects(obj_m, truth_m) if truth_m is not None else None
        if cmp_truth is not None:
            values["amplitude_error"][i, k] = cmp_truth.amplitude_error
            values["phase_error"][i, k] = cmp_truth.phase_error
        cmp_ref = None
        if ref is not None and objects[ref] is not None:
            cmp_ref = compare_objects(obj_m, objects[ref][2])
            values["agreement_iou"][i, k] = cmp_ref.overlap
            values["agreement_phase_rms"][i, k] = cmp_ref.phase_error
        values["method_seconds"][i, k] = float(res["seconds"].values[i])
        if "iterations" in res:
            values["iterations"][i, k] = float(res["iterations"].values[i])
        flag, reason = quality_flag(chi=chi, support=support, comparison=cmp_truth or cmp_ref,
                                    thresholds=params.quality)
        values["flag"][i, k], values["flag_reason"][i, k] = flag, reason
    if np.isfinite(ref_chi):
        target = params.target_ratio * ref_chi
        for k, res in enumerate(results):
            if objects[k] is None:
                continue
            if "history_chi" in res and "history_seconds" in res:
                chis = np.asarray(res["history_chi"].values[i], dtype=float)
                secs = np.asarray(res["history_seconds"].values[i], dtype=float)
                hit = np.flatnonzero(chis <= target)
                if len(hit):
                    values["seconds_to_target"][i, k] = secs[hit[0]]
            elif values["chi"][i, k] <= target:
                values["seconds_to_target"][i, k] = values["method_seconds"][i, k]


def summary_rows(ds) -> list[dict[str, Any]]:
    """Per method of a benchmark node: scans, median errors and seconds, and the flags counted."""
    rows = []
    for k, name in enumerate(ds["method"].values.tolist()):
        ok = np.asarray(ds["status"].values) == 1
        flags = np.asarray(ds["flag"].values)[ok, k].tolist()

        def med(var):
            v = np.asarray(ds[var].values, dtype=float)[ok, k]
            v = v[np.isfinite(v)]
            return float(np.median(v)) if v.size else float("nan")

        rows.append({"method": name, "scans": int(ok.sum()), "chi": med("chi"), "amplitude_error": med("amplitude_error"),
                     "phase_error": med("phase_error"), "seconds": med("method_seconds"),
                     "good": flags.count("good"), "twin": flags.count("twin"), "failed": flags.count("failed")})
    return rows
