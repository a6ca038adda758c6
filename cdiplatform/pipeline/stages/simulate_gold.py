"""Stage ``simulate_gold``: LAMMPS-relaxed strained gold crystals (3D Bragg CDI).

One task per crystal. Scans come in pairs: scan ``2k`` is crystal ``k``
strained on its substrate, scan ``2k + 1`` the same crystal with the strain
field removed (phase zero, same amplitude), its control. Both carry the
``crystal`` id ``k`` so that training splits can keep pairs together, and the
same per-crystal facts (atoms, planes, strain, energies...).

The crystal's randomness comes from the generator of its strained scan
``2k``: a seed is drawn from it and stored, and
:func:`cdiplatform.simulate.gold.simulate_gold_pair` rebuilds the crystal from
that seed alone. A LAMMPS failure (its own message) or a crystal that does
not fit the grid fails both scans of the pair; the others land.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cdiplatform.pipeline.stage import ChunkResult, Plan, Stage, Var, register

__all__ = ["SimulateGold"]

MAX_PLANES = 20
MAX_STRAIN_BOUND = 0.05
_PAIR_FAILED = (
    "the control scan is computed only together with its strained scan {strained}; "
    "chunks must hold whole pairs"
)


@register
class SimulateGold(Stage):
    """Strained gold crystals relaxed with LAMMPS, with their unstrained controls."""

    name = "simulate_gold"
    output_kind = "collection"
    inputs = ()
    draws = "per crystal, from its strained scan's generator: the seed that builds, strains and relaxes it"

    @dataclass(frozen=True)
    class Params:
        """Parameters (the ``[stage.params]`` table); lengths in lattice units.

        n_crystals: crystals to make (the collection holds twice as many scans).
        block_cells: edge of the fcc block the crystals are cut from, unit cells
            (4 * block_cells**3 atoms before cutting; the paper uses ~50).
        n_planes_min, n_planes_max: inclusive range of the number of clip planes (4..20).
        plane_distance_min, plane_distance_max: range of the plane distances from the
            block centre, fractions of the block's half edge.
        normals: "sphere" (uniform) or "facets" ({100}, {110}, {111} families).
        max_strain: bound of each applied strain component (<= 0.05).
        recipe: "substrate" (pinned facet, converged) or "paper" (loose second minimization).
        prerelax: relax the free crystal before straining it.
        pin_depth: thickness of the pinned slab along the contact facet.
        grid: grid points per axis; voxel_size: voxel edge (paper: ~2).
        potential: EAM file; ftol: force-norm tolerance, eV/A; max_iterations: per minimization.
        loose_etol: energy tolerance of the paper recipe's second minimization.
        padding: vacuum around the crystal, in the LAMMPS box and in the grid.
        min_style: LAMMPS minimizer; threads: OpenMP threads per crystal.
        """

        n_crystals: int = 20
        block_cells: int = 16
        n_planes_min: int = 4
        n_planes_max: int = 20
        plane_distance_min: float = 0.5
        plane_distance_max: float = 1.0
        normals: str = "sphere"
        max_strain: float = 0.01
        recipe: str = "substrate"
        prerelax: bool = True
        pin_depth: float = 2.0
        grid: int = 32
        voxel_size: float = 1.0
        potential: str = "Au_u3.eam"
        ftol: float = 1e-2
        max_iterations: int = 5000
        loose_etol: float = 1e-4
        padding: float = 5.0
        min_style: str = "cg"
        threads: int = 1
        #: keep the relaxed and reference atom positions (NaN-padded to max_atoms, zstd-compressed)
        keep_positions: bool = False
        max_atoms: int = 0

    def validate(self, params, inputs) -> None:
        p = params
        if p.keep_positions and p.max_atoms < 1:
            raise ValueError("keep_positions needs max_atoms, the most atoms a crystal may have "
                             f"(a block of {p.block_cells} cells holds {4 * p.block_cells ** 3})")
        problems = []
        if p.n_crystals < 1:
            problems.append(f"n_crystals must be >= 1, got {p.n_crystals}")
        if not 4 <= p.n_planes_min <= p.n_planes_max <= MAX_PLANES:
            problems.append(f"need 4 <= n_planes_min <= n_planes_max <= {MAX_PLANES}, "
                            f"got {p.n_planes_min}..{p.n_planes_max}")
        if not 0 < p.plane_distance_min <= p.plane_distance_max:
            problems.append(f"need 0 < plane_distance_min <= plane_distance_max, "
                            f"got {p.plane_distance_min}..{p.plane_distance_max}")
        if p.normals not in ("sphere", "facets"):
            problems.append(f"normals must be 'sphere' or 'facets', got {p.normals!r}")
        if p.recipe not in ("substrate", "paper"):
            problems.append(f"recipe must be 'substrate' or 'paper', got {p.recipe!r}")
        if not 0 <= p.max_strain <= MAX_STRAIN_BOUND:
            problems.append(f"max_strain must be within [0, {MAX_STRAIN_BOUND}], got {p.max_strain}")
        if p.block_cells < 2:
            problems.append(f"block_cells must be >= 2, got {p.block_cells}")
        if p.pin_depth <= 0:
            problems.append(f"pin_depth must be positive, got {p.pin_depth}")
        if p.grid < 4 or p.voxel_size <= 0:
            problems.append(f"need grid >= 4 and voxel_size > 0, got grid={p.grid}, "
                            f"voxel_size={p.voxel_size}")
        elif p.padding < 0 or p.block_cells * (1 + p.max_strain) + 2 * p.padding > p.grid * p.voxel_size:
            need = p.block_cells * (1 + p.max_strain) + 2 * p.padding
            problems.append(
                f"a crystal from a {p.block_cells}-cell block strained by {p.max_strain} with "
                f"{p.padding} lattice units of padding per side needs {need:.1f} lattice units, more than "
                f"the grid's {p.grid} x {p.voxel_size} = {p.grid * p.voxel_size:.1f}: the grid is too small"
            )
        if p.ftol <= 0 or p.max_iterations < 1 or p.loose_etol <= 0:
            problems.append("ftol and loose_etol must be positive and max_iterations >= 1")
        if p.threads < 1:
            problems.append(f"threads must be >= 1, got {p.threads}")
        if problems:
            raise ValueError(f"simulate_gold: {'; '.join(problems)}")
        from cdiplatform.simulate.gold.lammps_env import LammpsUnavailable, load_lammps

        try:
            load_lammps()
        except LammpsUnavailable as exc:
            raise ValueError(f"simulate_gold needs LAMMPS: {exc}") from exc

    def plan(self, params, inputs) -> Plan:
        n = 2 * params.n_crystals
        g = params.grid
        variables = _variables(g)
        if params.keep_positions:
            variables["positions"] = _var(("state", "atom", "xyz"), (2, params.max_atoms, 3), "float32",
                                          "relaxed (state 0) and reference (state 1) atom positions, NaN-padded",
                                          "lattice")
        scan = np.arange(n)
        axis = (np.arange(g) - g // 2) * params.voxel_size
        coords = {
            "kind": np.full(n, "simulated", dtype=object),
            "source": np.full(n, f"lammps:{params.potential}", dtype=object),
            "sample": np.array([f"gold_crystal_{k}" for k in scan // 2], dtype=object),
            "strained": scan % 2 == 0,
            "crystal": scan // 2,
            "z": ("z", axis),
            "y": ("y", axis),
            "x": ("x", axis),
        }
        attrs = {
            "description": "LAMMPS-relaxed gold crystals on a substrate; scan 2k strained, 2k+1 its control",
            "reflection": "111",
            "phase_convention": "phi = -G.u, forward FFT kernel exp(-i q.r) (cdiplatform.physics.bragg)",
            "grid": g,
            "voxel_size": params.voxel_size,
            "length_units": "lattice units (lattice constant of the potential, ~4.08 angstrom)",
            "params": asdict(params),
        }
        return Plan(n_scans=n, chunk=2, variables=variables, coords=coords, attrs=attrs)

    def compute(self, params, inputs, index, rngs) -> ChunkResult:
        from cdiplatform.simulate.gold.diffraction import simulate_gold_pair
        from cdiplatform.simulate.gold.lammps_env import LammpsError

        index = np.asarray(index, dtype=np.int64)
        values = {
            name: np.full((len(index), *var.shape), np.nan if var.dtype.startswith("float") else 0,
                          dtype=var.dtype)
            for name, var in self.plan(params, inputs).variables.items()
        }
        failed: dict[int, str] = {}
        ranges = ("n_crystals", "n_planes_min", "n_planes_max", "plane_distance_min", "plane_distance_max")
        kwargs = {k: v for k, v in asdict(params).items() if k not in ranges + ("max_atoms",)}
        kwargs["n_planes"] = (params.n_planes_min, params.n_planes_max)
        kwargs["plane_distance"] = (params.plane_distance_min, params.plane_distance_max)
        for crystal in np.unique(index // 2):
            where = np.flatnonzero(index // 2 == crystal)
            strained_at = np.flatnonzero(index == 2 * crystal)
            if strained_at.size == 0:
                for pos in where:
                    failed[int(pos)] = _PAIR_FAILED.format(strained=2 * crystal)
                continue
            seed = int(rngs[int(strained_at[0])].integers(2**63 - 1))
            try:
                pair = simulate_gold_pair(seed=seed, **kwargs)
            except (LammpsError, ValueError) as err:
                reason = f"crystal {crystal} (seed {seed}): {err}"
                for pos in where:
                    failed[int(pos)] = reason
                continue
            meta = pair.metadata
            if params.keep_positions and meta["n_atoms"] > params.max_atoms:
                for pos in where:
                    failed[int(pos)] = f"crystal {crystal} has {meta['n_atoms']} atoms, over max_atoms {params.max_atoms}"
                continue
            per_crystal = {
                "n_atoms": meta["n_atoms"],
                "n_planes": meta["n_planes"],
                "plane_normals": _pad(meta["plane_normals"], (MAX_PLANES, 3)),
                "plane_distances": _pad(meta["plane_distances"], (MAX_PLANES,)),
                "applied_strain": meta["strain"],
                "residual_strain": meta["mean_strain"],
                "pinned_normal": meta["pinned_normal"],
                "n_pinned": meta["n_pinned"],
                "energy_ideal": meta["energy_ideal"],
                "energy_before": meta["energy_before"],
                "energy_after": meta["energy_after"],
                "iterations": meta["iterations"],
                "lattice_constant": meta["lattice_constant"],
                "phase_range": meta["phase_range"],
                "phase_residual": meta["phase_residual"],
                "seed": seed,
            }
            for pos in where:
                member = int(index[pos] % 2)  # 0 strained, 1 control
                values["intensity"][pos] = pair.intensity[member]
                values["amplitude"][pos] = pair.amplitude[member]
                values["phase"][pos] = pair.phase[member]
                for name, value in per_crystal.items():
                    values[name][pos] = value
                if params.keep_positions:
                    values["positions"][pos, :, : meta["n_atoms"]] = pair.positions
        return ChunkResult(values=values, failed=failed)


def _pad(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[tuple(slice(0, s) for s in np.shape(array))] = array
    return out


def _var(dims: tuple[str, ...], shape: tuple[int, ...], dtype: str, long_name: str,
         units: str | None = None) -> Var:
    attrs = {"long_name": long_name}
    if units is not None:
        attrs["units"] = units
    return Var(dims, shape, dtype, attrs)


def _variables(g: int) -> dict[str, Var]:
    grid, zyx, tensor = (g, g, g), ("z", "y", "x"), (("strain_row", "strain_col"), (3, 3))
    return {
        "intensity": _var(zyx, grid, "float32", "diffraction intensity |F|^2 around (111)", "photons"),
        "amplitude": _var(zyx, grid, "float32", "atom density normalized by its maximum", "1"),
        "phase": _var(zyx, grid, "float32", "Bragg phase -G.u of (111), unwrapped, zero outside", "rad"),
        "n_atoms": _var((), (), "int64", "atoms in the crystal"),
        "n_planes": _var((), (), "int64", "clip planes"),
        "plane_normals": _var(("plane", "xyz"), (MAX_PLANES, 3), "float64",
                              "clip plane unit normals (x, y, z), NaN-padded", "1"),
        "plane_distances": _var(("plane",), (MAX_PLANES,), "float64",
                                "clip plane distances from the block centre, NaN-padded", "lattice"),
        "applied_strain": _var(*tensor, "float64", "applied homogeneous strain tensor", "1"),
        "residual_strain": _var(*tensor, "float64",
                                "strain of the best affine fit of relaxed to ideal positions", "1"),
        "pinned_normal": _var(("xyz",), (3,), "float64",
                              "outward normal of the pinned (substrate) facet", "1"),
        "n_pinned": _var((), (), "int64", "atoms held fixed"),
        "energy_ideal": _var((), (), "float64", "energy of the ideal cut crystal", "eV/atom"),
        "energy_before": _var((), (), "float64", "energy before straining (relaxed free crystal)", "eV/atom"),
        "energy_after": _var((), (), "float64", "energy after the strained relaxation", "eV/atom"),
        "iterations": _var((), (), "int64", "minimizer iterations"),
        "lattice_constant": _var((), (), "float64", "lattice constant of the potential", "angstrom"),
        "phase_range": _var((), (), "float64", "phase max - min of the strained crystal", "rad"),
        "phase_residual": _var((), (), "float64",
                               "rms phase residual after a plane fit (strained crystal)", "rad"),
        "seed": _var((), (), "int64", "seed rebuilding the crystal"),
    }
