"""What every phasing method writes per scan, shared by ``reconstruct`` and ``refine``.

On the collection's (phasing) grid: ``amplitude`` (max 1), ``phase`` (the
support-weighted mean phase 0), ``support``, ``chi``, ``llk``, ``iterations``;
where the collection is finer than a model grid (a zero-padded collection:
attribute ``model_grid``, or the stage's ``model_size``) the object mapped onto
it (``amplitude_model``, ``phase_model``, with the collection's per-scan grid
relation); where the collection holds the truth, ``amplitude_error`` and
``phase_error`` (:func:`cdiplatform.physics.metrics.compare_with_truth`) on
the model grid; and the time-to-accuracy record (``history_seconds``,
``history_chi`` on ``record``).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

import numpy as np

from cdiplatform.catalog.schema import GRID_DIMS
from cdiplatform.pipeline.stage import Var

__all__ = ["GRID_DIMS", "PhasingOutputs", "blank_values", "check_collection", "measured_pixels", "model_grid",
           "refuse_without_signal"]


def check_collection(ds: Any, *, stage: str) -> None:
    if "intensity" not in ds:
        raise ValueError(f"{stage}: the input collection has no 'intensity' variable")
    ndim = ds["intensity"].ndim - 1
    if ndim not in GRID_DIMS or ds["intensity"].dims[1:] != GRID_DIMS[ndim]:
        raise ValueError(f"{stage}: intensity dims {ds['intensity'].dims} are not (scan, [z,] y, x)")


def model_grid(model_size: int, ds: Any, grid: tuple[int, ...], *, stage: str) -> tuple[int, ...] | None:
    """The model grid when it is smaller than the collection's grid, else None."""
    if model_size > 0:
        model = (int(model_size),) * len(grid)
    elif "model_grid" in ds.attrs:
        model = tuple(int(v) for v in np.atleast_1d(ds.attrs["model_grid"]))
        if len(model) == 1:
            model = model * len(grid)
    else:
        return None
    if len(model) != len(grid) or any(m > n for m, n in zip(model, grid)):
        raise ValueError(f"{stage}: model grid {model} does not fit in the collection's grid {grid}")
    if model_size > 0 and "grid_relation" in ds and ds.sizes["scan"] > 0:
        recorded = tuple(json.loads(str(ds["grid_relation"].values[0]))["model_grid"])
        if recorded != model:
            raise ValueError(f"{stage}: model_size {model_size} disagrees with the collection's grid_relation "
                             f"(model grid {recorded}); leave model_size at 0 to use the recorded relation")
    return None if model == grid else model


def measured_pixels(ds: Any) -> np.ndarray | None:
    """True where a pixel was measured (``mask`` is read as True where it was not, unless its ``meaning``
    attribute says ``measured``); None without a mask."""
    if "mask" not in ds:
        return None
    mask = np.asarray(ds["mask"].values) != 0
    return mask if ds["mask"].attrs.get("meaning") == "measured" else ~mask


def refuse_without_signal(intensity: np.ndarray, index: np.ndarray) -> dict[int, str]:
    """Scans that no phasing can work on: negative values, or nothing but zeros."""
    failed = {}
    flat = intensity.reshape(len(intensity), -1)
    for i in range(len(flat)):
        if np.any(flat[i] < 0):
            failed[i] = f"scan {index[i]}: intensity has negative values"
        elif not np.any(flat[i] > 0):
            failed[i] = f"scan {index[i]}: intensity is zero everywhere"
    return failed


def blank_values(variables: dict[str, Var], n: int) -> dict[str, np.ndarray]:
    """Arrays for ``n`` scans of each variable, holding its fill value (what a failed scan keeps)."""
    from cdiplatform.catalog.run_nodes import fill_value

    return {name: np.full((n, *v.shape), fill_value(v.numpy_dtype), dtype=v.numpy_dtype)
            for name, v in variables.items()}


def _relations(ds: Any, grid: tuple[int, ...], model: tuple[int, ...] | None) -> list:
    from cdiplatform.physics.grids import GridRelation

    n = ds.sizes["scan"]
    if "grid_relation" in ds:
        return [GridRelation.from_dict(json.loads(str(r))) for r in ds["grid_relation"].values]
    if model is None:
        return [None] * n
    return [GridRelation(phasing_grid=grid, window=grid, model_grid=model)] * n


class PhasingOutputs:
    """The variables of a phasing result (:meth:`variables`), and filling them scan by scan (:meth:`put`)."""

    def __init__(self, ds: Any, *, model: tuple[int, ...] | None, records: int, label: str) -> None:
        self.ds, self.model, self.records, self.label = ds, model, records, label
        intensity = ds["intensity"]
        self.dims, self.grid = intensity.dims[1:], tuple(intensity.shape[1:])
        self.truth = "amplitude" in ds and "phase" in ds

    @cached_property
    def relations(self) -> list:
        """Per scan, how the model grid sits in the collection's (its ``grid_relation``, else a centred crop)."""
        return _relations(self.ds, self.grid, self.model)

    def variables(self) -> dict[str, Var]:
        def var(dims_, shape_, dtype, long_name, units="1"):
            return Var(dims_, shape_, dtype, {"long_name": long_name, "units": units})

        dims, grid, label = self.dims, self.grid, self.label
        out = {
            "amplitude": var(dims, grid, "float32", f"{label} amplitude, normalized to max 1"),
            "phase": var(dims, grid, "float32", f"{label} phase", "rad"),
            "support": var(dims, grid, "uint8", "final support"),
            "chi": var((), (), "float64", "sum (|F|-A)^2 / sum A^2 over measured pixels"),
            "llk": var((), (), "float64", "Poisson deviance per measured pixel"),
            "iterations": Var((), (), "int32", {"long_name": "iterations run"}),
        }
        if self.records:
            out["history_seconds"] = Var(("record",), (self.records,), "float64",
                                         {"long_name": "time of each record", "units": "s"}, timing=True)
            out["history_chi"] = var(("record",), (self.records,), "float64", "reciprocal-space error of each record")
        if self.model is not None:
            mdims = tuple(f"{d}_model" for d in dims)
            out["amplitude_model"] = var(mdims, self.model, "float32", "amplitude on the model grid")
            out["phase_model"] = var(mdims, self.model, "float32", "phase on the model grid", "rad")
        if self.truth:
            where = "model grid" if self.model is not None else "grid"
            out["amplitude_error"] = var((), (), "float64", f"mean |a - a_true| over the {where}, both max 1, aligned")
            out["phase_error"] = var((), (), "float64", "RMS phase error in the common support, aligned", "rad")
        return out

    def blank(self, n: int) -> dict[str, np.ndarray]:
        """Arrays for ``n`` scans, holding the fill values (for the scans that fail)."""
        return blank_values(self.variables(), n)

    def put(self, out: dict[str, np.ndarray], i: int, obj: np.ndarray, support: np.ndarray, *, chi: float,
            llk: float, iterations: int) -> None:
        """Scan ``i``'s object (on the phasing grid, any scale and offset) into ``out``."""
        from cdiplatform.physics.align import remove_phase_offset
        from cdiplatform.physics.grids import phasing_to_model
        from cdiplatform.physics.metrics import compare_with_truth

        obj = remove_phase_offset(obj, weight=support)
        amp = np.abs(obj)
        peak = amp.max() if amp.max() > 0 else 1.0
        out["amplitude"][i] = amp / peak
        out["phase"][i] = np.angle(obj)
        out["support"][i] = support
        out["chi"][i], out["llk"][i], out["iterations"][i] = chi, llk, iterations
        relations = self.relations
        cmp_obj = obj
        if self.model is not None:
            cmp_obj = phasing_to_model(obj, relations[i])
            out["amplitude_model"][i] = np.abs(cmp_obj) / peak
            out["phase_model"][i] = np.angle(cmp_obj)
        if self.truth:
            truth = np.asarray(self.ds["amplitude"].values[i]) * np.exp(1j * np.asarray(self.ds["phase"].values[i]))
            if self.model is not None:
                truth = phasing_to_model(truth, relations[i])
            if np.any(np.abs(truth) > 0):
                c = compare_with_truth(cmp_obj, np.abs(truth), np.angle(truth))
                out["amplitude_error"][i] = c.amplitude_error
                out["phase_error"][i] = c.phase_error
