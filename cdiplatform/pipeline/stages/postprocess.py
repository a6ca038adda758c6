"""Stage ``postprocess``: reconstructions onto an orthogonal grid in nm, with displacement and strain.

Reads a result node (amplitude, phase, support on the grid of a collection:
the phasing grid, or a network's model grid) and that collection's geometry
(``q_step``, the signed q step of each grid axis, and ``q_peak``, recorded by
``prepare`` and carried by ``network_input``), joined on ``scan``. Per scan
(:func:`cdiplatform.postprocess.postprocess_scans`): the object interpolated
onto a regular grid of the named frame (``laboratory``, or ``crystal`` with
the Bragg vector along z), the phase unwrapped inside the support with its
ramp and offset removed, the displacement along G (``u = -phi / |G|``, nm)
and the strain along G, relative (and absolute when a reference lattice is
given).

The resolution of the reconstruction, where its result node holds it (the
PRTF and FSC variables ``reconstruct`` writes: ``prtf``, ``prtf_q``,
``prtf_resolution``..., ``fsc``...; :mod:`cdiplatform.pipeline.stages._resolution`),
is carried into the output as it is: a property of the reconstruction on the
q grid it was phased on, not of the orthogonal grid, kept beside the strain.

Layout: every scan on the same grid of the node, fixed by the parameters
(``voxel_nm`` and ``size`` voxels per axis, centred on the crystal), so that a
scan's result depends on that scan alone and the node grows like any other.
Job file::

    [[stage]]
    stage = "postprocess"
    inputs = { result = "results/scan54_er_hio", collection = "catalogs/examples.zarr:collections/scan54_64" }
    output = "results/scan54_orthogonal"
    [stage.params]
    voxel_nm = 10.0
    size = 64
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cdiplatform.pipeline.stage import ChunkResult, Input, Plan, Stage, Var, register
from cdiplatform.pipeline.stages._resolution import RESOLUTION_VARIABLES

__all__ = ["Postprocess"]

FRAMES = ("laboratory", "crystal")


@register
class Postprocess(Stage):
    """Orthogonal frame (nm voxels), unwrapped phase, displacement and strain of reconstructions."""

    name = "postprocess"
    inputs = (Input("result", kinds=("result",), variables=("amplitude", "phase"),
                    optional=("support", *RESOLUTION_VARIABLES)),
              Input("collection", kinds=("collection",), variables=("q_step", "q_peak")))
    output_kind = "result"
    method = "postprocess"

    @dataclass(frozen=True)
    class Params:
        #: "laboratory" (xrayutilities' lab frame) or "crystal" (z along the Bragg vector)
        frame: str = "laboratory"
        #: voxel edge of the orthogonal grid, nm
        voxel_nm: float = 10.0
        #: voxels per axis of the orthogonal grid (its extent is size * voxel_nm)
        size: int = 64
        #: support voxels below this fraction of the maximum amplitude are left out of the phase
        amplitude_threshold: float = 0.2
        #: a reference cubic lattice constant (angstrom) and the reflection, for the absolute strain
        #: (0 and empty: the strain is relative to the crystal's mean spacing)
        lattice_constant: float = 0.0
        hkl: list[int] = ()
        chunk: int = 4

    def validate(self, params, inputs) -> None:
        if params.frame not in FRAMES:
            raise ValueError(f"postprocess: frame must be one of {FRAMES}, got {params.frame!r}")
        if params.voxel_nm <= 0 or params.size < 4:
            raise ValueError(f"postprocess: need voxel_nm > 0 and size >= 4, got {params.voxel_nm}, {params.size}")
        if bool(params.lattice_constant) != bool(params.hkl):
            raise ValueError("postprocess: give both lattice_constant and hkl for the absolute strain, or neither")
        result, collection = inputs["result"], inputs["collection"]
        where = result.attrs.get("node", "the result")
        for name in ("amplitude", "phase"):
            if name not in result:
                raise ValueError(f"postprocess: {where} has no {name!r}: not a reconstruction")
        if result["amplitude"].dims != ("scan", "z", "y", "x"):
            raise ValueError(f"postprocess: {where} is not 3D (dims {result['amplitude'].dims})")
        for name in ("q_step", "q_peak"):
            if name not in collection:
                raise ValueError(f"postprocess: {collection.attrs.get('node', 'the collection')} has no {name!r}: "
                                 f"a result without geometry (prepared measured scans record it)")
        grid = tuple(collection[d].size for d in ("z", "y", "x") if d in collection.dims)
        if grid and grid != tuple(result["amplitude"].shape[1:]):
            raise ValueError(f"postprocess: the result's grid {tuple(result['amplitude'].shape[1:])} is not the "
                             f"collection's {grid}: name the collection the result was made from")

    def _grid(self, params):
        from cdiplatform.postprocess import OrthogonalGrid

        axis = (np.arange(params.size) - params.size // 2) * float(params.voxel_nm)
        return OrthogonalGrid(params.frame, axis, axis.copy(), axis.copy())

    @staticmethod
    def _carried(result) -> dict[str, Var]:
        """The resolution variables of the input result node, as they are there."""
        out = {}
        for name in RESOLUTION_VARIABLES:
            if name in result.data_vars and result[name].dims[:1] == ("scan",):
                var = result[name]
                attrs = {k: v for k, v in var.attrs.items() if k in ("long_name", "units")}
                attrs["source"] = "the result node (the reconstruction's q grid), carried"
                out[name] = Var(var.dims[1:], tuple(var.shape[1:]), str(var.dtype), attrs)
        return out

    def plan(self, params, inputs) -> Plan:
        n, s = inputs["result"].sizes["scan"], params.size
        grid = self._grid(params)
        zyx = ("z", "y", "x")

        def var(dims, shape, dtype, long_name, units="1"):
            return Var(dims, shape, dtype, {"long_name": long_name, "units": units})

        variables = {
            "amplitude": var(zyx, (s,) * 3, "float32", "amplitude on the orthogonal grid, max 1"),
            "phase": var(zyx, (s,) * 3, "float32", "Bragg phase, unwrapped, ramp and offset removed (relative)",
                         "rad"),
            "displacement": var(zyx, (s,) * 3, "float32", "displacement along G, u = -phase / |G| (relative)", "nm"),
            "strain": var(zyx, (s,) * 3, "float32", "strain along G, du/dr, relative to the mean spacing"),
            "support": var(zyx, (s,) * 3, "uint8", "support on the orthogonal grid"),
            "g_direction": var(("xyz",), (3,), "float64", "unit Bragg vector in the grid's frame"),
            "q_bragg": var((), (), "float64", "|G|", "1/angstrom"),
            "phase_ramp": var(("axis",), (3,), "float64", "phase ramp removed, per array axis", "rad/nm"),
            "phase_offset": var((), (), "float64", "phase offset removed", "rad"),
            "conjugate_voxel": var(("axis", "xyz"), (3, 3), "float64",
                                   "real-space step of each detector-conjugate axis (laboratory frame)", "nm"),
        }
        if params.lattice_constant:
            variables["strain_absolute"] = var(zyx, (s,) * 3, "float32", "strain along G against the reference "
                                                                        f"lattice a = {params.lattice_constant} A")
            variables["mean_strain"] = var((), (), "float64", "mean strain along G against the reference lattice")
        variables.update(self._carried(inputs["result"]))
        return Plan(
            n_scans=n, chunk=params.chunk, variables=variables,
            coords={"z": ("z", grid.z, {"units": "nm"}), "y": ("y", grid.y, {"units": "nm"}),
                    "x": ("x", grid.x, {"units": "nm"}),
                    "axis": ("axis", np.array(["z", "y", "x"], dtype=object)),
                    "xyz": ("xyz", np.array(["x", "y", "z"], dtype=object))},
            attrs={"frame": params.frame, "voxel_nm": float(params.voxel_nm),
                   "source": str(inputs["result"].attrs.get("node", "")),
                   "strain": "relative (the phase ramp removed the mean strain)" + (
                       "; strain_absolute against the reference lattice" if params.lattice_constant else "")},
        )

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        from cdiplatform.postprocess import postprocess_scans

        result, collection = inputs["result"], inputs["collection"]
        amp = np.asarray(result["amplitude"].values, dtype=np.float64)
        obj = amp * np.exp(1j * np.asarray(result["phase"].values, dtype=np.float64))
        support = (np.asarray(result["support"].values) != 0) if "support" in result else amp > 0.1
        out = postprocess_scans(obj, support, q_step=np.asarray(collection["q_step"].values),
                                q_peak=np.asarray(collection["q_peak"].values), grid=self._grid(params),
                                amplitude_threshold=params.amplitude_threshold,
                                lattice_constant=params.lattice_constant or None, hkl=tuple(params.hkl) or None)
        peak = out.amplitude.reshape(len(index), -1).max(axis=1).reshape(-1, 1, 1, 1)
        values = {
            "amplitude": (out.amplitude / np.where(peak > 0, peak, 1)).astype(np.float32),
            "phase": out.phase, "displacement": out.displacement, "strain": out.strain,
            "support": out.support.astype(np.uint8), "g_direction": out.g_direction, "q_bragg": out.q_bragg,
            "phase_ramp": out.ramp, "phase_offset": out.offset, "conjugate_voxel": out.conjugate_basis_nm,
        }
        if params.lattice_constant:
            values["strain_absolute"] = out.strain_absolute
            values["mean_strain"] = out.mean_strain
        for name, var in self._carried(result).items():
            values[name] = np.asarray(result[name].values, dtype=var.numpy_dtype)
        return ChunkResult(values)
