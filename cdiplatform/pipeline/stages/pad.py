"""Stage ``pad``: the zero-padded (oversampled) variant of a simulated collection, 2D or 3D.

Each object ``amplitude * exp(i phase)`` of the input collection is placed in
the middle of a grid ``factor`` times larger (its centre ``N // 2`` at
``M // 2``), its intensity recomputed with the centred, unitary FFT, and the
truth kept, padded. The new intensity samples the same far field ``factor``
times more finely: ``intensity[..., s::factor, s::factor] == old / factor**2``
with ``s = M // 2 - factor * (N // 2)`` (so that the total, ``sum |obj|^2``,
is unchanged). This is the oversampled input that ER/HIO and the refinement need. Each scan
records its ``grid_relation`` (:class:`cdiplatform.physics.grids.GridRelation`:
the model grid is the centred crop), which every method uses to map between
the model grid and this one.

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
import json
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, register
from cdiplatform.pipeline.stages.simulate_2d import collection_variables

__all__ = ["Pad"]


@register
class Pad(Stage):
    """Zero-pad the objects of a simulated 2D collection and recompute their intensities."""

    name = "pad"
    draws = "per scan, with peak_photons: the Poisson counts of every pixel"
    inputs = (Input("collection", kinds=("collection",), variables=("amplitude", "phase")),)
    output_kind = "collection"

    @dataclass(frozen=True)
    class Params:
        #: padded size = factor * input size
        factor: int = 2
        #: Poisson noise: the expected counts at the brightest pixel (scan 54 at 64^3: about 1.2e5);
        #: 0 keeps the intensity noise-free. The truth is kept either way.
        peak_photons: float = 0.0
        #: scans per task (and per zarr chunk)
        chunk: int = 512

    def validate(self, params: Any, inputs: dict[str, xr.Dataset]) -> None:
        ds = inputs["collection"]
        if not isinstance(params.factor, int) or params.factor < 2:
            raise ValueError(f"pad: factor must be an integer >= 2, got {params.factor!r}")
        if params.chunk < 1:
            raise ValueError(f"pad: chunk must be at least 1, got {params.chunk}")
        if params.peak_photons < 0:
            raise ValueError(f"pad: peak_photons must be >= 0 (0: no noise), got {params.peak_photons}")
        for name in ("amplitude", "phase"):
            if name not in ds:
                raise ValueError(
                    f"pad: the input collection has no {name!r}; only simulated data can be padded"
                )
            if ds[name].dims not in (("scan", "y", "x"), ("scan", "z", "y", "x")):
                raise ValueError(f"pad: input {name!r} has dims {ds[name].dims}, expected (scan, [z,] y, x)")

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        ds = inputs["collection"]
        dims = ds["amplitude"].dims[1:]
        n, model = ds.sizes["scan"], tuple(ds.sizes[d] for d in dims)
        padded = tuple(params.factor * m for m in model)
        per_scan = {
            name: np.asarray(c.values)
            for name, c in ds.coords.items()
            if c.dims == ("scan",) and name != "scan"
        }
        keep = ("title", "recipe", "convention", "potential", "voxel_size", "lattice_constant", "hkl")
        attrs = {key: ds.attrs[key] for key in keep if key in ds.attrs}
        if "title" in attrs:
            attrs["title"] = f"{attrs['title']}, zero-padded {params.factor}x"
        attrs.update(
            grid=padded[0] if len(set(padded)) == 1 else list(padded),
            model_grid=int(ds.attrs.get("model_grid", model[0])) if len(set(model)) == 1 else list(model),
            padded_from=str(ds.attrs.get("node", "")),
            peak_photons=float(params.peak_photons),
            noise="Poisson, peak_photons counts expected at the brightest pixel" if params.peak_photons else "none",
            pad_factor=params.factor,
            centre_index=[p // 2 for p in padded],
            grid_units="voxel index minus N // 2 (object voxels / reciprocal voxels)",
        )
        variables = {**padded_variables(dims, padded, model),
                     "grid_relation": Var((), (), "str", {"long_name": "the model grid of this phasing grid (JSON: "
                                                                      "phasing_grid, window, model_grid)"})}
        coords = {d: (d, np.arange(p, dtype=np.int64) - p // 2) for d, p in zip(dims, padded)}
        return Plan(n_scans=n, chunk=min(params.chunk, n), variables=variables, coords={**per_scan, **coords},
                    attrs=attrs)

    def compute(
        self, params: Any, inputs: dict[str, xr.Dataset], index: np.ndarray, rngs: list[np.random.Generator]
    ) -> ChunkResult:
        from cdiplatform.physics.fft import object_intensity
        from cdiplatform.physics.grids import GridRelation, zero_pad

        ds = inputs["collection"]
        model = tuple(ds["amplitude"].shape[1:])
        amplitude = zero_pad(np.asarray(ds["amplitude"].values, dtype=np.float32), factor=params.factor)
        phase = zero_pad(np.asarray(ds["phase"].values, dtype=np.float32), factor=params.factor)
        relation = json.dumps(GridRelation.for_zero_padding(model, factor=params.factor).to_dict())
        intensity = object_intensity(amplitude, phase)
        if params.peak_photons > 0:
            peak = intensity.reshape(len(index), -1).max(axis=1).reshape((-1,) + (1,) * (intensity.ndim - 1))
            expected = intensity.astype(np.float64) * (params.peak_photons / np.where(peak > 0, peak, 1))
            intensity = np.stack([rng.poisson(e) for rng, e in zip(rngs, expected)]).astype(np.float32)
        return ChunkResult(values={"intensity": intensity, "amplitude": amplitude,
                                   "phase": phase, "grid_relation": np.full(len(index), relation, dtype=object)})


def padded_variables(dims: tuple[str, ...], shape: tuple[int, ...], model: tuple[int, ...]) -> dict[str, Var]:
    """The data variables of a zero-padded simulated collection (2D or 3D)."""
    if len(dims) == 2:
        return collection_variables(shape[0])
    attrs = {"intensity": {"units": "photons", "long_name": "far-field intensity |F|^2 of the padded object"},
             "amplitude": {"units": "1", "long_name": "object modulus (truth), zero-padded"},
             "phase": {"units": "rad", "long_name": "object phase (truth), zero-padded"}}
    return {name: Var(dims, shape, "float32", a) for name, a in attrs.items()}
