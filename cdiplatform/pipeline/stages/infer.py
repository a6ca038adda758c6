"""Stage ``infer``: batched NN inference over a scan collection.

Reads ``intensity`` of the input collection, refuses scans whose grid,
signal or oversampling do not fit the model (recorded as failed, with the
reason), and writes ``amplitude`` (normalized, max 1), ``phase`` (radians)
and ``support`` on the collection's grid.

The model is a job input like any other (``inputs = { collection = ...,
model = "catalogs/examples.zarr:models/cdi_nn_2d" }``): resolved, hashed and
recorded by the driver, and loaded once per worker process and device, its
architecture and weights hash checked. The oversampling is estimated from
the very intensity fed to the network, with the estimator (and threshold)
that measured the model's training data
(:func:`cdiplatform.nn.estimate_oversampling`), not taken from the
collection's own ``oversampling`` record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog.schema import GRID_DIMS
from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, register, resolve_device

#: networks loaded in this worker process, by (model content hash, device)
_MODELS: dict[tuple[str, str], Any] = {}


def _model(ds: xr.Dataset, device: str):
    """The network of the model input ``ds``, loaded once per worker process and device."""
    from cdiplatform.catalog import model_from_dataset
    from cdiplatform.nn import load_model

    key = (str(ds.attrs.get("content_hash", ds.attrs["weights_hash"])), device)
    if key not in _MODELS:
        if len(_MODELS) >= 2:
            _MODELS.clear()
        weights, config, digest = model_from_dataset(ds)
        _MODELS[key] = load_model(weights, config, expected_hash=digest, device=device)
    return _MODELS[key]


@register
class Infer(Stage):
    name = "infer"
    inputs = (Input("collection", kinds=("collection",), variables=("intensity",), optional=("grid_relation",)),
              Input("model", kinds=("model",)))
    output_kind = "result"
    uses_torch = True
    method = "nn"

    @dataclass(frozen=True)
    class Params:
        #: scans per task (and per zarr chunk of the result)
        chunk: int = 256
        #: scans per forward pass
        batch_size: int = 64
        #: ``auto`` (cuda if available), ``cpu`` or ``cuda``
        device: str = "auto"
        #: normalized amplitude above which a voxel is in the support
        support_threshold: float = 0.1
        #: predict each scan once per order of its axes and average (ndim! passes; nn.predict)
        average_permutations: bool = False

    def validate(self, params: Any, inputs: dict[str, xr.Dataset]) -> None:
        ds = inputs["collection"]
        if "intensity" not in ds:
            raise ValueError("infer: the input collection has no 'intensity' variable")
        ndim = ds["intensity"].ndim - 1
        if ndim not in GRID_DIMS or ds["intensity"].dims != ("scan", *GRID_DIMS[ndim]):
            raise ValueError(f"infer: intensity dims {ds['intensity'].dims} are not (scan, [z,] y, x)")
        if params.chunk < 1 or params.batch_size < 1:
            raise ValueError("infer: chunk and batch_size must be >= 1")
        if not 0 <= params.support_threshold < 1:
            raise ValueError(f"infer: support_threshold must be in [0, 1), got {params.support_threshold}")
        from cdiplatform.catalog.models import check_model_attrs

        check_model_attrs(inputs["model"].attrs, where=str(inputs["model"].attrs.get("node", "model")))

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        intensity = inputs["collection"]["intensity"]
        dims, shape = intensity.dims[1:], intensity.shape[1:]
        grid_coords = {
            d: (d, np.asarray(inputs["collection"][d].values))
            for d in dims
            if d in inputs["collection"].coords
        }
        variables = {}
        if "grid_relation" in inputs["collection"]:  # a network input made from a phasing grid: carried along
            variables["grid_relation"] = Var((), (), "str", {"long_name": "the model grid and its phasing grid "
                                                                         "(JSON), from the collection"})
        return Plan(
            n_scans=intensity.shape[0],
            chunk=params.chunk,
            variables={
                **variables,
                "amplitude": Var(
                    dims, shape, "float32", {"long_name": "NN amplitude, normalized to max 1", "units": "1"}
                ),
                "phase": Var(dims, shape, "float32", {"long_name": "NN phase", "units": "rad"}),
                "support": Var(
                    dims,
                    shape,
                    "uint8",
                    {"long_name": f"amplitude > {params.support_threshold}", "units": "1"},
                ),
            },
            coords=grid_coords,
            attrs={"method": self.method, "model": {k: inputs["model"].attrs.get(k) for k in
                                                      ("node", "weights_hash", "architecture")}},
        )

    def compute(
        self, params: Any, inputs: dict[str, xr.Dataset], index: np.ndarray, rngs: list[np.random.Generator]
    ) -> ChunkResult:
        from cdiplatform.nn import make_inputs, predict, screen_scans

        ds = inputs["collection"]
        intensity = np.asarray(ds["intensity"].values)
        n, grid = intensity.shape[0], intensity.shape[1:]
        model = _model(inputs["model"], resolve_device(params.device))
        failed = screen_scans(model.config, intensity)
        ok = np.array([i for i in range(n) if i not in failed], dtype=np.int64)
        amplitude = np.full((n, *grid), np.nan, dtype=np.float32)
        phase = np.full((n, *grid), np.nan, dtype=np.float32)
        if len(ok):
            amp, ph = predict(model, make_inputs(intensity[ok], ndim=len(grid)), batch_size=params.batch_size,
                              average_permutations=params.average_permutations)
            amplitude[ok], phase[ok] = amp, ph
        support = (np.nan_to_num(amplitude) > params.support_threshold).astype(np.uint8)
        values = {"amplitude": amplitude, "phase": phase, "support": support}
        if "grid_relation" in ds:
            values["grid_relation"] = np.asarray(ds["grid_relation"].values, dtype=object)
        return ChunkResult(values=values, failed=failed)
