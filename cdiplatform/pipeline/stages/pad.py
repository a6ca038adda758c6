"""Stage ``pad``: the zero-padded (oversampled) variant of a simulated collection.

Each object ``amplitude * exp(i phase)`` of the input collection is placed in
the middle of a grid ``factor`` times larger (its centre ``N // 2`` at
``M // 2``), its intensity recomputed with the centred, unitary FFT, and the
truth kept, padded. The new intensity samples the same far field ``factor``
times more finely: ``intensity[..., s::factor, s::factor] == old / factor**2``
with ``s = M // 2 - factor * (N // 2)`` (so that the total, ``sum |obj|^2``,
is unchanged). This is the oversampled input that ER/HIO need.

Job file::

    [[stages]]
    stage = "pad"
    output = "collections/convex2d-pad2"
    inputs = { collection = "collections/convex2d" }
    [stages.params]
    factor = 2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, register
from cdiplatform.pipeline.stages.simulate_2d import collection_variables, grid_coords

__all__ = ["Pad"]


@register
class Pad(Stage):
    """Zero-pad the objects of a simulated 2D collection and recompute their intensities."""

    name = "pad"
    inputs = (Input("collection", kinds=("collection",), variables=("amplitude", "phase")),)
    output_kind = "collection"

    @dataclass(frozen=True)
    class Params:
        #: padded size = factor * input size
        factor: int = 2
        #: scans per task (and per zarr chunk)
        chunk: int = 512

    def validate(self, params: Any, inputs: dict[str, xr.Dataset]) -> None:
        ds = inputs["collection"]
        if not isinstance(params.factor, int) or params.factor < 2:
            raise ValueError(f"pad: factor must be an integer >= 2, got {params.factor!r}")
        if params.chunk < 1:
            raise ValueError(f"pad: chunk must be at least 1, got {params.chunk}")
        for name in ("amplitude", "phase"):
            if name not in ds:
                raise ValueError(
                    f"pad: the input collection has no {name!r}; only simulated data can be padded"
                )
            if ds[name].dims != ("scan", "y", "x"):
                raise ValueError(f"pad: input {name!r} has dims {ds[name].dims}, expected ('scan', 'y', 'x')")
        if ds.sizes["y"] != ds.sizes["x"]:
            raise ValueError(f"pad: input grid is {ds.sizes['y']} x {ds.sizes['x']}, expected square")

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        ds = inputs["collection"]
        n, size = ds.sizes["scan"], ds.sizes["y"]
        padded = params.factor * size
        per_scan = {
            name: np.asarray(c.values)
            for name, c in ds.coords.items()
            if c.dims == ("scan",) and name != "scan"
        }
        attrs = {
            key: ds.attrs[key] for key in ("title", "recipe", "convention") if key in ds.attrs
        }
        if "title" in attrs:
            attrs["title"] = f"{attrs['title']}, zero-padded {params.factor}x"
        attrs.update(
            grid=padded,
            model_grid=int(ds.attrs.get("model_grid", size)),
            padded_from=str(ds.attrs.get("node", "")),
            pad_factor=params.factor,
            centre_index=padded // 2,
            grid_units="pixel index minus N // 2 (object pixels / reciprocal pixels)",
        )
        return Plan(
            n_scans=n,
            chunk=min(params.chunk, n),
            variables=collection_variables(padded),
            coords={**per_scan, **grid_coords(padded)},
            attrs=attrs,
        )

    def compute(
        self, params: Any, inputs: dict[str, xr.Dataset], index: np.ndarray, rngs: list[np.random.Generator]
    ) -> ChunkResult:
        from cdiplatform.simulate.objects2d import object_intensity, zero_pad

        ds = inputs["collection"]
        amplitude = np.asarray(ds["amplitude"].values, dtype=np.float32)
        phase = np.asarray(ds["phase"].values, dtype=np.float32)
        amplitude = zero_pad(amplitude, factor=params.factor)
        phase = zero_pad(phase, factor=params.factor)
        return ChunkResult(
            values={"intensity": object_intensity(amplitude, phase), "amplitude": amplitude, "phase": phase})
