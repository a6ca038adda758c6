"""Stage ``network_input``: a prepared 3D collection resampled to the networks' 32^3 grid.

Per scan (:func:`cdiplatform.ingest.network_input`): ``sqrt(intensity)``
resampled with an orthonormal DCT-II truncated per axis, the window of each
axis chosen so that its oversampling matches ``target_oversampling`` (the
oversampling the networks were trained with, recorded with the model),
normalized to a maximum of 1. The collection stores ``intensity`` as the
square of that amplitude, so that ``sqrt(intensity)`` is the network input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, register

__all__ = ["NetworkInput"]

_COPIED = ("kind", "sample", "source", "beamtime", "scan_number", "energy", "detector_distance", "pixel_size",
           "rocking_step")


@register
class NetworkInput(Stage):
    """Resample prepared scans onto the model grid with matched oversampling."""

    name = "network_input"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity",),
                    optional=("oversampling", "q_step", "q_peak")),)
    output_kind = "collection"

    @dataclass(frozen=True)
    class Params:
        size: int = 32
        #: oversampling ratio per axis of the networks' training data; one number or three
        target_oversampling: list[float] = (2.0,)
        oversampling_threshold: float = 0.02
        chunk: int = 16

    def validate(self, params, inputs) -> None:
        ds = inputs["collection"]
        if ds["intensity"].ndim != 4:
            raise ValueError(f"network_input reads 3D collections, this one has dims {ds['intensity'].dims}")
        if len(params.target_oversampling) not in (1, 3) or min(params.target_oversampling) <= 0:
            raise ValueError(f"target_oversampling must be 1 or 3 positive numbers, got {params.target_oversampling}")

    def plan(self, params, inputs) -> Plan:
        ds = inputs["collection"]
        n = params.size
        coords = {k: ds[k].values for k in _COPIED if k in ds.coords}
        return Plan(
            n_scans=ds.sizes["scan"],
            chunk=params.chunk,
            variables={
                "intensity": Var(("z", "y", "x"), (n, n, n), "float32",
                                 {"long_name": "network input squared: sqrt(intensity) is the amplitude, max 1"}),
                "oversampling": Var(("axis",), (3,), "float32", {"long_name": "oversampling after resampling"}),
                "resampling": Var((), (), "str", {"long_name": "resampling record (JSON)"}),
                "grid_relation": Var((), (), "str", {"long_name": "this model grid and the phasing grid it was "
                                                                 "made from (JSON: phasing_grid, window, model_grid)"}),
                **({"q_step": Var(("axis", "xyz"), (3, 3), "float64",
                                  {"units": "1/angstrom", "frame": "laboratory",
                                   "long_name": "q step of each axis of this grid (the source's times window/size)"}),
                    "q_peak": Var(("xyz",), (3,), "float64", {"units": "1/angstrom", "frame": "laboratory",
                                                              "long_name": "q at the grid centre"})}
                   if "q_step" in ds and "q_peak" in ds else {}),
            },
            coords=coords | {"axis": ("axis", np.array(["z", "y", "x"], dtype=object)),
                             **({"xyz": ("xyz", np.array(["x", "y", "z"], dtype=object))} if "q_step" in ds else {})},
            attrs={"grid": [n, n, n], "model_grid": n,
                   "target_oversampling": list(params.target_oversampling)},
        )

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        from cdiplatform.ingest import network_input

        ds = inputs["collection"]
        target = list(params.target_oversampling)
        target = target * 3 if len(target) == 1 else target
        from cdiplatform.physics.grids import GridRelation

        amps, overs, records, relations = [], [], [], []
        for i in range(len(index)):
            intensity = ds["intensity"].values[i]
            sigma = ds["oversampling"].values[i] if "oversampling" in ds else None
            amp, rec = network_input(intensity, target_oversampling=target, oversampling=sigma, size=params.size,
                                     oversampling_threshold=params.oversampling_threshold)
            amps.append(amp)
            overs.append(rec["oversampling_after"])
            records.append(json.dumps(rec))
            relations.append(json.dumps(GridRelation.from_network_input_record(
                rec, phasing_grid=intensity.shape).to_dict()))
        amp = np.asarray(amps, dtype=np.float32)
        geometry = {}
        if "q_step" in ds and "q_peak" in ds:  # the q range is kept: each step grows by window / size
            factors = np.array([json.loads(r)["factor"] for r in records])
            geometry = {"q_step": np.asarray(ds["q_step"].values) * factors[:, :, None],
                        "q_peak": np.asarray(ds["q_peak"].values)}
        return ChunkResult({**geometry, "intensity": amp**2, "oversampling": np.asarray(overs, np.float32),
                            "resampling": np.asarray(records, dtype=object),
                            "grid_relation": np.asarray(relations, dtype=object)})
