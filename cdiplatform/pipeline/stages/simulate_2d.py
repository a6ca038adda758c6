"""Stage ``simulate_2d``: a collection of random 2D convex objects and their diffraction.

The CDI NN (2018) training-data recipe (:mod:`cdiplatform.simulate.objects2d`):
per scan, a convex object with smoothed edges centred on the grid, a smooth
random phase within ``-pi..pi`` (0 outside the object) and the far-field
intensity ``|F|**2`` of the centred, unitary FFT. Each scan draws from its own
generator, so the collection does not depend on ``chunk`` or on the workers.

Job file::

    [[stages]]
    stage = "simulate_2d"
    output = "collections/convex2d"
    [stages.params]
    n_scans = 100000
    size = 32
    chunk = 4096
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.pipeline.stage import ChunkResult, Plan, Stage, Var, config_field, register
from cdiplatform.simulate.objects2d import Convex2DRecipe

__all__ = ["Simulate2D", "collection_variables", "grid_coords"]


def grid_coords(size: int) -> dict[str, tuple[str, np.ndarray]]:
    """Grid coordinates ``y``, ``x`` of a ``size`` grid: pixel index minus ``size // 2``.

    The same numbers serve the object (real-space pixels from the object
    centre) and its intensity (reciprocal-space pixels from the zero frequency).
    """
    values = np.arange(size, dtype=np.int64) - size // 2
    return {"y": ("y", values), "x": ("x", values)}


def collection_variables(size: int) -> dict[str, Var]:
    """The data variables of a simulated 2D collection on a ``size x size`` grid."""
    shape = (size, size)
    return {
        "intensity": Var(("y", "x"), shape, "float32", {
            "units": "1",
            "long_name": "far-field intensity |F|^2 (centred unitary FFT; sums to sum(amplitude^2))",
        }),
        "amplitude": Var(("y", "x"), shape, "float32", {
            "units": "1", "long_name": "object modulus (truth), 0 outside the support",
        }),
        "phase": Var(("y", "x"), shape, "float32", {
            "units": "rad", "long_name": "object phase (truth), -pi..pi, 0 outside the support",
        }),
    }


def _text(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=object)


@register
class Simulate2D(Stage):
    """Random convex 2D objects with smooth phases and their far-field intensities."""

    name = "simulate_2d"
    output_kind = "collection"

    draws = "per scan: the object's shape and its phase field"

    @dataclass(frozen=True)
    class Params:
        #: the CDI NN (2018) recipe: its fields sit flat in [stage.params] (points_min, sigma...)
        recipe: Convex2DRecipe = config_field(Convex2DRecipe())
        #: number of objects (scans)
        n_scans: int = 1024
        #: grid size N (pixels per axis); the object centroid is at N // 2
        size: int = 32
        #: scans per task (and per zarr chunk)
        chunk: int = 512

    def validate(self, params: Any, inputs: dict[str, xr.Dataset]) -> None:
        if params.n_scans < 1:
            raise ValueError(f"simulate_2d: n_scans must be at least 1, got {params.n_scans}")
        if params.chunk < 1:
            raise ValueError(f"simulate_2d: chunk must be at least 1, got {params.chunk}")
        params.recipe.check(params.size)

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        n, size = params.n_scans, params.size
        recipe = params.recipe
        return Plan(
            n_scans=n,
            chunk=min(params.chunk, n),
            variables=collection_variables(size),
            coords={
                "kind": _text(["simulated"] * n),
                "sample": _text([f"convex2d-{i}" for i in range(n)]),
                "source": _text(["simulate_2d"] * n),
                **grid_coords(size),
            },
            attrs={
                "title": "random convex 2D objects (CDI NN 2018 recipe) and their far-field intensities",
                "grid": size,
                "model_grid": size,
                "centre_index": size // 2,
                "grid_units": "pixel index minus N // 2 (object pixels / reciprocal pixels)",
                "convention": "F = fftshift(fftn(ifftshift(obj), norm='ortho')); intensity = |F|^2",
                "recipe": json.dumps(dataclasses.asdict(recipe), sort_keys=True),
            },
        )

    def compute(
        self, params: Any, inputs: dict[str, xr.Dataset], index: np.ndarray, rngs: list[np.random.Generator]
    ) -> ChunkResult:
        from cdiplatform.simulate.objects2d import simulate_2d

        if len(rngs) != len(index):
            raise ValueError(f"simulate_2d: {len(rngs)} generators for {len(index)} scans")
        values = simulate_2d(rngs, size=params.size, recipe=params.recipe)
        peak = values["amplitude"].reshape(len(index), -1).max(axis=1)
        failed = {int(p): f"scan {int(index[p])}: empty object" for p in np.flatnonzero(~(peak > 0))}
        return ChunkResult(values=values, failed=failed)
