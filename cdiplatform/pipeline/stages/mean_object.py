"""Stage ``mean_object``: the trivial baseline, the mean object of a reference set predicted for every scan.

What a network must beat: for every scan of ``collection`` the same
prediction, the mean of the ``reference`` collection's objects (simulated,
training-like objects with their truth). Each reference object's amplitude is
normalized to a maximum of 1 before the average; the phase (radians, taken as
0 where the amplitude is 0) is averaged as it is stored (the evaluations of
docs/nn.md did both so). The mean amplitude is then scaled to a maximum of
1, as every result's is (the comparisons normalize it anyway). Only the
reference scans whose ``status`` is ok enter the mean.

The output is a result node like ``infer``'s, which ``benchmark`` reads as a
method (``mean_object``): ``amplitude``, ``phase`` and ``support`` on the
reference's grid (the model grid), the collection's per-scan
``grid_relation`` carried along where it has one (a padded collection), and
the runner's bookkeeping (``status``, ``reason``, ``seconds``: the time to read
and average the reference, shared by the scans of a chunk). A scan of the
collection whose ``intensity`` holds NaN or infinity fails, as it does in
``infer``: the baseline predicts the scans a method could have been given.

The reference is read whole by every task (:attr:`Input.joined` ``False``:
its scans are not the collection's), a block of scans at a time, so that a
reference of any size fits a task's memory.

Job file::

    [[stage]]
    stage = "mean_object"
    inputs = { collection = "collections/heldout", reference = "collections/baseline" }
    output = "results/mean_object"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog import STATUS_OK
from cdiplatform.catalog.schema import GRID_DIMS
from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, register
from cdiplatform.pipeline.stages._phasing_results import check_collection

__all__ = ["MeanObject", "mean_object"]

#: float64 bytes of one variable of the reference scans read at a time
_BLOCK_BYTES = 64 * 2**20


def mean_object(amplitude: np.ndarray, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean object of a set: amplitudes normalized per object, then averaged; phases averaged.

    Parameters
    ----------
    amplitude : ndarray, shape (n, *grid)
        Object moduli, any scale; every object needs a positive maximum.
    phase : ndarray, shape (n, *grid)
        Object phases, rad; where an amplitude is 0 its phase is taken as 0.

    Returns
    -------
    amplitude : ndarray of float64, shape grid
        The mean of ``amplitude[k] / amplitude[k].max()``, scaled to a maximum of 1.
    phase : ndarray of float64, shape grid
        The mean phase, rad.

    Raises
    ------
    ValueError
        When the set is empty, the shapes differ, or an object is not finite or has no positive amplitude.
    """
    amplitude, phase = np.asarray(amplitude), np.asarray(phase)
    total = _MeanSums.empty(amplitude.shape[1:])
    total.add(amplitude, phase, ids=np.arange(len(amplitude)))
    return total.mean()


@dataclass
class _MeanSums:
    """Running sums of the normalized amplitudes and of the phases (float64)."""

    amplitude: np.ndarray
    phase: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls, grid: tuple[int, ...]) -> _MeanSums:
        return cls(np.zeros(grid), np.zeros(grid))

    def add(self, amplitude: np.ndarray, phase: np.ndarray, *, ids: np.ndarray) -> None:
        """Add a block of objects, ``(n, *grid)`` each; ``ids`` (their scan identities) name them in errors."""
        if amplitude.shape != phase.shape or amplitude.shape[1:] != self.amplitude.shape:
            raise ValueError(f"mean_object: amplitude {amplitude.shape} and phase {phase.shape} do not hold "
                             f"objects of the grid {self.amplitude.shape}")
        n = len(amplitude)
        amp, ph = amplitude.astype(np.float64), phase.astype(np.float64)
        flat_a, flat_p = amp.reshape(n, -1), ph.reshape(n, -1)
        peak = flat_a.max(axis=1, initial=-np.inf)
        finite = np.isfinite(flat_a).all(axis=1) & np.isfinite(flat_p).all(axis=1)
        for k in np.flatnonzero(~finite | ~(peak > 0)):
            what = "holds NaN or infinite values" if not finite[k] else "has no positive amplitude"
            raise ValueError(f"mean_object: reference scan {ids[k]} {what}: it cannot enter the mean")
        self.amplitude += (amp / peak.reshape((n,) + (1,) * (amp.ndim - 1))).sum(axis=0)
        self.phase += np.where(amp > 0, ph, 0.0).sum(axis=0)
        self.count += n

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count == 0:
            raise ValueError("mean_object: no reference object to average")
        amplitude = self.amplitude / self.count
        return amplitude / amplitude.max(), self.phase / self.count


def _ok(reference: xr.Dataset) -> np.ndarray:
    """Per scan of the reference, whether it is ok (every scan where it has no ``status``)."""
    if "status" not in reference:
        return np.ones(reference.sizes["scan"], dtype=bool)
    return np.asarray(reference["status"].values) == STATUS_OK


def reference_mean(reference: xr.Dataset) -> tuple[np.ndarray, np.ndarray, int]:
    """The mean object (:func:`mean_object`) of a reference collection's ok scans, read a block at a time
    (``_BLOCK_BYTES`` per variable).

    Parameters
    ----------
    reference : xarray.Dataset
        ``amplitude`` and ``phase`` on ``(scan, *grid)``, and ``status`` where the node has it; may be lazy.

    Returns
    -------
    amplitude, phase : ndarray of float64, shape grid
        As :func:`mean_object`.
    count : int
        Reference scans averaged.
    """
    ok = _ok(reference)
    scans = np.asarray(reference["scan"].values)
    grid = tuple(reference["amplitude"].shape[1:])
    total = _MeanSums.empty(grid)
    block = max(1, _BLOCK_BYTES // (8 * int(np.prod(grid))))
    for lo in range(0, len(ok), block):
        rows = np.flatnonzero(ok[lo:lo + block])
        if len(rows) == 0:
            continue
        part = reference[["amplitude", "phase"]].isel(scan=slice(lo, lo + block))
        total.add(np.asarray(part["amplitude"].values)[rows], np.asarray(part["phase"].values)[rows],
                  ids=scans[lo + rows])
    amplitude, phase = total.mean()
    return amplitude, phase, total.count


@register
class MeanObject(Stage):
    """The mean object of a reference collection as the prediction for every scan (a baseline method)."""

    name = "mean_object"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity",), optional=("grid_relation",)),
              Input("reference", kinds=("collection",), joined=False))
    output_kind = "result"
    method = "mean_object"

    @dataclass(frozen=True)
    class Params:
        #: normalized mean amplitude above which a voxel is in the support (as ``infer``'s)
        support_threshold: float = 0.1
        #: scans per task (and per zarr chunk of the result); every task reads the whole reference
        chunk: int = 1024

    def validate(self, params: Any, inputs: dict[str, xr.Dataset]) -> None:
        collection, reference = inputs["collection"], inputs["reference"]
        check_collection(collection, stage="mean_object")
        ndim = collection["intensity"].ndim - 1
        for name in ("amplitude", "phase"):
            if name not in reference:
                raise ValueError(f"mean_object: the reference {reference.attrs.get('node', '')} has no {name!r}: "
                                 "it needs objects with their truth (a simulated collection)")
        if reference["amplitude"].dims != ("scan", *GRID_DIMS[ndim]) or \
                reference["phase"].dims != reference["amplitude"].dims:
            raise ValueError(f"mean_object: reference amplitude dims {reference['amplitude'].dims} and phase dims "
                             f"{reference['phase'].dims} are not the collection's (scan, {', '.join(GRID_DIMS[ndim])})")
        grid = tuple(collection["intensity"].shape[1:])
        model = tuple(reference["amplitude"].shape[1:])
        if model != grid and "grid_relation" not in collection:
            raise ValueError(f"mean_object: the reference's grid {model} is not the collection's {grid}, and the "
                             "collection relates no model grid to it (no grid_relation)")
        if not 0 <= params.support_threshold < 1:
            raise ValueError(f"mean_object: support_threshold must be in [0, 1), got {params.support_threshold}")
        if params.chunk < 1:
            raise ValueError(f"mean_object: chunk must be at least 1, got {params.chunk}")
        if not _ok(reference).any():
            raise ValueError(f"mean_object: the reference {reference.attrs.get('node', '')} has no scan that is ok")

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        collection, reference = inputs["collection"], inputs["reference"]
        dims, shape = reference["amplitude"].dims[1:], tuple(reference["amplitude"].shape[1:])
        variables = {}
        if "grid_relation" in collection:
            variables["grid_relation"] = Var((), (), "str", {"long_name": "the model grid and its phasing grid "
                                                                         "(JSON), from the collection"})
        variables.update({
            "amplitude": Var(dims, shape, "float32", {"long_name": "mean of the reference's amplitudes (each max 1), "
                                                                   "normalized to max 1", "units": "1"}),
            "phase": Var(dims, shape, "float32", {"long_name": "mean of the reference's phases", "units": "rad"}),
            "support": Var(dims, shape, "uint8", {"long_name": f"amplitude > {params.support_threshold}",
                                                  "units": "1"}),
        })
        coords = {d: (d, np.asarray(reference[d].values)) for d in dims if d in reference.coords}
        n = collection.sizes["scan"]
        return Plan(n_scans=n, chunk=min(params.chunk, n), variables=variables, coords=coords,
                    attrs={"method": self.method,
                           "reference": {"node": str(reference.attrs.get("node", "")),
                                         "scans": int(_ok(reference).sum()),
                                         "rule": "mean over the reference's ok scans of amplitude / its max and of "
                                                 "phase (0 where the amplitude is 0); the mean amplitude scaled "
                                                 "to max 1"}})

    def compute(
        self, params: Any, inputs: dict[str, xr.Dataset], index: np.ndarray, rngs: list[np.random.Generator]
    ) -> ChunkResult:
        from cdiplatform.physics.grids import GridRelation

        n = len(index)
        grid = tuple(inputs["reference"]["amplitude"].shape[1:])
        try:
            amplitude, phase, _ = reference_mean(inputs["reference"])
        except ValueError as exc:  # the reference is the same for every scan: all fail, with its reason
            empty = {"amplitude": np.full((n, *grid), np.nan, np.float32),
                     "phase": np.full((n, *grid), np.nan, np.float32), "support": np.zeros((n, *grid), np.uint8)}
            if "grid_relation" in inputs["collection"]:
                empty["grid_relation"] = np.full(n, "", dtype=object)
            return ChunkResult(values=empty, failed={p: str(exc) for p in range(n)})
        values = {"amplitude": np.broadcast_to(amplitude.astype(np.float32), (n, *grid)).copy(),
                  "phase": np.broadcast_to(phase.astype(np.float32), (n, *grid)).copy(),
                  "support": np.broadcast_to((amplitude > params.support_threshold).astype(np.uint8),
                                             (n, *grid)).copy()}
        failed: dict[int, str] = {}
        if "grid_relation" in inputs["collection"]:
            relations = np.asarray(inputs["collection"]["grid_relation"].values, dtype=object)
            measured = tuple(inputs["collection"]["intensity"].shape[1:])
            for p, text in enumerate(relations):
                if not str(text):
                    if measured != grid:
                        failed[p] = (f"scan {index[p]}: no grid_relation relates the reference's grid {grid} "
                                     f"to its grid {measured}")
                    continue
                model = GridRelation.from_dict(json.loads(str(text))).model_grid
                if model != grid:
                    failed[p] = (f"scan {index[p]}: its model grid {model} (grid_relation) is not the reference's "
                                 f"grid {grid}")
            values["grid_relation"] = relations
        return ChunkResult(values=values, failed=failed)
