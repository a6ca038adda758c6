"""Stage ``prepare``: measured raw scans -> a collection at full resolution, ready for phase retrieval.

Per scan (:func:`cdiplatform.ingest.prepare_scan`): the dark field as a
hot-pixel mask (or subtracted), the white-field correction, the intensity
threshold, the mask of hot and dead pixels, a cube of ``size`` voxels around
the Bragg peak (its maximum or centre of mass), optional binning, the q-space
voxel of each axis from the geometry and the oversampling ratio per axis.
Every step is recorded per scan in ``steps`` (JSON). Job file::

    [[stage]]
    stage = "prepare"
    inputs = { raw = "raw/34idc-2020/*" }
    output = "collections/34idc-2020_full"
    [stage.params]
    size = 128
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, register

__all__ = ["Prepare"]


@register
class Prepare(Stage):
    """Correct, threshold, mask, crop and bin measured rocking scans onto one cube."""

    name = "prepare"
    inputs = (Input("raw", kinds=("raw",)),)
    output_kind = "collection"

    @dataclass(frozen=True)
    class Params:
        #: cube size (voxels per axis, before binning); every scan of the collection shares it
        size: int = 128
        #: "mask": pixels where dark > dark_threshold are hot; "subtract": a real dark
        dark_mode: str = "mask"
        dark_threshold: float = 1.0
        #: corrected counts at or below it become 0
        threshold: float = 2.0
        #: "max" or "com": where the cube is centred
        centring: str = "max"
        binning: tuple[int, int, int] = (1, 1, 1)
        oversampling_threshold: float = 0.02

    def validate(self, params, inputs) -> None:
        if params.dark_mode not in ("mask", "subtract"):
            raise ValueError(f"dark_mode must be 'mask' or 'subtract', got {params.dark_mode!r}")
        if params.centring not in ("max", "com"):
            raise ValueError(f"centring must be 'max' or 'com', got {params.centring!r}")
        if params.size < 8 or params.size % 2:
            raise ValueError(f"size must be an even number of at least 8, got {params.size}")
        if any(b < 1 or params.size % b for b in params.binning):
            raise ValueError(f"binning {params.binning} must divide size {params.size}")
        if not isinstance(inputs["raw"], list):
            raise ValueError("the input 'raw' must be a set of raw scans, like raw/<beamtime>/*")

    def plan(self, params, inputs) -> Plan:
        from cdiplatform.catalog.raw import raw_node

        raws = inputs["raw"]
        shape = tuple(params.size // b for b in params.binning)
        attrs = [r.attrs for r in raws]

        def per_scan(key, default=np.nan):
            return np.array([a.get(key, default) for a in attrs], dtype=float)

        pixel = np.array([a.get("pixel_size_m", [np.nan, np.nan])[0] for a in attrs], dtype=float)
        return Plan(
            n_scans=len(raws),
            chunk=1,
            variables={
                "intensity": Var(("z", "y", "x"), shape, "float32",
                                 {"units": "counts", "long_name": "corrected, thresholded intensity",
                                  "axes": "rocking frame, detector row, detector column"}),
                "mask": Var(("z", "y", "x"), shape, "bool", {"long_name": "True where nothing was measured"}),
                "oversampling": Var(("axis",), (3,), "float32", {"long_name": "oversampling ratio per axis"}),
                "q_voxel": Var(("axis",), (3,), "float64", {"units": "1/angstrom"}),
                "q_step": Var(("axis", "xyz"), (3, 3), "float64",
                              {"units": "1/angstrom", "frame": "laboratory",
                               "long_name": "q step vector of each grid axis (rows: z, y, x; "
                               "columns: laboratory x, y, z), signed, after crop and binning"}),
                "q_peak": Var(("xyz",), (3,), "float64",
                              {"units": "1/angstrom", "frame": "laboratory",
                               "long_name": "q at the grid centre (the Bragg peak): the Bragg vector G"}),
                "centre_raw": Var(("axis",), (3,), "int64", {"long_name": "cube centre in the raw frames"}),
                "steps": Var((), (), "str", {"long_name": "preparation steps (JSON)"}),
            },
            coords={
                "kind": np.array(["measured"] * len(raws), dtype=object),
                "sample": np.array([f"{a.get('beamtime', '')}/{a.get('scan', '')}" for a in attrs], dtype=object),
                "source": np.array([raw_node(a.get("beamtime", ""), a.get("scan", "")) for a in attrs], dtype=object),
                "beamtime": np.array([a.get("beamtime", "") for a in attrs], dtype=object),
                "scan_number": np.array([str(a.get("scan", "")) for a in attrs], dtype=object),
                "energy": per_scan("energy_kev"),
                "detector_distance": per_scan("camdist_mm"),
                "pixel_size": pixel,
                "rocking_step": per_scan("rocking_step_deg"),
                "axis": ("axis", np.array(["z", "y", "x"], dtype=object)),
                "xyz": ("xyz", np.array(["x", "y", "z"], dtype=object)),
            },
            attrs={"grid": list(shape), "prepared": {"dark_mode": params.dark_mode, "threshold": params.threshold,
                                                     "centring": params.centring, "binning": list(params.binning)},
                   "units": {"energy": "keV", "detector_distance": "mm", "pixel_size": "m",
                             "rocking_step": "degree"}},
        )

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        from cdiplatform.catalog.raw import raw_scan_from_dataset
        from cdiplatform.ingest import prepare_scan

        out: dict[str, list[Any]] = {k: [] for k in ("intensity", "mask", "oversampling", "q_voxel", "q_step",
                                                       "q_peak", "centre_raw", "steps")}
        for ds in inputs["raw"]:
            prepared = prepare_scan(
                raw_scan_from_dataset(ds), dark_mode=params.dark_mode, dark_threshold=params.dark_threshold,
                threshold=params.threshold, centring=params.centring, size=params.size,
                binning=params.binning, oversampling_threshold=params.oversampling_threshold,
            )
            out["intensity"].append(prepared.intensity)
            out["mask"].append(prepared.mask)
            out["oversampling"].append(prepared.oversampling)
            out["q_voxel"].append(prepared.q_voxel)
            out["q_step"].append(np.asarray(prepared.q_step, dtype=np.float64))
            out["q_peak"].append(np.asarray(prepared.extra["q_peak"], dtype=np.float64))
            out["centre_raw"].append(prepared.centre_raw)
            out["steps"].append(json.dumps(prepared.metadata(), default=float))
        values = {k: np.asarray(v, dtype=object if k == "steps" else None) for k, v in out.items()}
        return ChunkResult(values)
