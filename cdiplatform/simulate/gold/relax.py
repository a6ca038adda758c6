"""Relaxing gold crystals with LAMMPS (EAM) and straining them on a substrate.

Units: positions in and out are in lattice units (lattice constant 1); LAMMPS
works in ``metal`` units (Angstrom, eV), at the lattice constant the potential
itself gives (:func:`bulk_gold`), so that the ideal lattice is the unstrained
reference.

Why a substrate. A crystal with free surfaces carries no load: a homogeneous
strain applied to it relaxes back out in a converged minimization. Holding the
atoms of a slab along one facet fixed (the contact with a substrate) while
the crystal is strained, and relaxing the rest, leaves an inhomogeneous strain
field that decays away from the contact, as in a supported nanocrystal.

The strain is applied as a pure (symmetric) deformation ``x -> c + (1 + e)(x - c)``
of the atom positions about the centroid ``c`` of the pinned slab (so the
substrate does not also translate). The box is not deformed: it is
non-periodic (``boundary f f f``) with ``padding`` lattice units of vacuum on
each side, so that for an isolated crystal deforming the box and remapping the
atoms is the same operation, while LAMMPS's triclinic box could only express a
shear together with a rotation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cdiplatform.simulate.gold.lammps_env import (
    LammpsError,
    MinimizeReport,
    lammps_instance,
    minimize,
    run_commands,
)

__all__ = [
    "BulkGold",
    "Relaxation",
    "bulk_gold",
    "choose_pinned_facet",
    "mean_strain",
    "random_strain",
    "relax_crystal",
]

GOLD_MASS = 196.96657  # g/mol
DEFAULT_POTENTIAL = "Au_u3.eam"

Recipe = Literal["substrate", "paper"]


@dataclass(frozen=True)
class BulkGold:
    """Bulk fcc gold as the potential sees it.

    Attributes
    ----------
    lattice_constant : float
        Zero-pressure lattice constant, Angstrom.
    energy_per_atom : float
        Cohesive energy, eV/atom (negative).
    """

    lattice_constant: float
    energy_per_atom: float


@functools.cache
def bulk_gold(potential: str = DEFAULT_POTENTIAL, *, guess: float = 4.08) -> BulkGold:
    """Measure the lattice constant and energy per atom of a periodic fcc cell.

    Relaxes a periodic 4x4x4-cell block with ``fix box/relax iso 0``; cached
    per process and potential.

    Raises
    ------
    LammpsError
        With LAMMPS's message, for example when the potential file is missing.
    """
    cells = 4
    with lammps_instance(threads=1) as lmp:
        run_commands(
            lmp,
            f"""units metal
atom_style atomic
boundary p p p
lattice fcc {guess}
region box block 0 {cells} 0 {cells} 0 {cells}
create_box 1 box
create_atoms 1 box
mass 1 {GOLD_MASS}
pair_style eam
pair_coeff 1 1 {potential}
thermo_style custom step pe fnorm fmax lx
fix relax all box/relax iso 0.0 vmax 0.001""",
        )
        minimize(lmp, etol=0.0, ftol=1e-10, max_iterations=1000, require_convergence=False)
        n = lmp.get_natoms()
        return BulkGold(
            lattice_constant=float(lmp.get_thermo("lx")) / cells,
            energy_per_atom=float(lmp.get_thermo("pe")) / n,
        )


def random_strain(*, rng: np.random.Generator, max_strain: float = 0.01) -> np.ndarray:
    """A random symmetric strain tensor mixing compression, tension and shear.

    Each of the six independent components is uniform in ``[-max_strain, max_strain]``.

    Returns
    -------
    ndarray, shape (3, 3)
        Symmetric, dimensionless, ``|e_ij| <= max_strain``.
    """
    if not 0 <= max_strain:
        raise ValueError(f"max_strain must be >= 0, got {max_strain}")
    e = np.zeros((3, 3))
    iu = np.triu_indices(3)
    e[iu] = rng.uniform(-max_strain, max_strain, size=6)
    return np.triu(e) + np.triu(e, 1).T


def choose_pinned_facet(crystal, *, rng: np.random.Generator, depth: float = 2.0) -> tuple[int, np.ndarray]:
    """Pick the facet the crystal sits on, weighted by the atoms in its slab.

    Clip planes that do not touch the crystal have no atoms within ``depth``
    of them and are never chosen; larger facets are more likely.

    Returns
    -------
    plane : int
        Index of the clip plane.
    mask : ndarray of bool, shape (n_atoms,)
        The atoms to hold fixed.
    """
    masks = [crystal.facet_atoms(p, depth=depth) for p in range(crystal.n_planes)]
    weights = np.array([m.sum() for m in masks], dtype=float)
    if weights.sum() == 0:
        raise ValueError("no clip plane touches the crystal; cannot pin a facet")
    plane = int(rng.choice(len(masks), p=weights / weights.sum()))
    return plane, masks[plane]


def mean_strain(reference: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Symmetric strain of the affine map that best fits ``final`` from ``reference``.

    Least squares over atoms of ``final = A reference + b``; returns
    ``(A + A.T) / 2 - 1``, shape (3, 3).
    """
    design = np.hstack([reference, np.ones((reference.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(design, final, rcond=None)
    a = coef[:3].T
    return 0.5 * (a + a.T) - np.eye(3)


@dataclass(frozen=True)
class Relaxation:
    """A relaxed crystal.

    Attributes
    ----------
    reference : ndarray, shape (n_atoms, 3)
        Ideal lattice positions, lattice units.
    final : ndarray, shape (n_atoms, 3)
        Relaxed positions, lattice units, same atom order.
    pinned : ndarray of bool, shape (n_atoms,)
        Atoms held fixed during the strained relaxation.
    strain : ndarray, shape (3, 3)
        Applied strain tensor.
    energy_ideal, energy_before, energy_after : float
        Energy per atom (eV/atom) of the ideal cut crystal, before straining
        (after relaxing it free when it was, else the ideal one), and at the end.
    iterations : int
        Minimizer iterations, both minimizations together.
    lattice_constant : float
        Angstrom per lattice unit.
    """

    reference: np.ndarray
    final: np.ndarray
    pinned: np.ndarray
    strain: np.ndarray
    energy_ideal: float
    energy_before: float
    energy_after: float
    iterations: int
    lattice_constant: float

    @property
    def displacement(self) -> np.ndarray:
        """``final - reference``, lattice units, shape (n_atoms, 3)."""
        return self.final - self.reference


def _setup(lmp, positions_A: np.ndarray, types: np.ndarray, *, padding_A: float, potential: str) -> None:
    lo = positions_A.min(axis=0) - padding_A
    hi = positions_A.max(axis=0) + padding_A
    run_commands(
        lmp,
        f"""units metal
atom_style atomic
atom_modify map array sort 0 0.0
boundary f f f
region box block {lo[0]} {hi[0]} {lo[1]} {hi[1]} {lo[2]} {hi[2]} units box
create_box 2 box
mass * {GOLD_MASS}
pair_style eam
pair_coeff 1 1 {potential}
pair_coeff 2 2 {potential}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
thermo_style custom step pe fnorm fmax
thermo_modify lost error""",
    )
    n = positions_A.shape[0]
    created = lmp.create_atoms(n, np.arange(1, n + 1), types, positions_A.ravel())
    if created != n:
        raise LammpsError(f"LAMMPS created {created} of {n} atoms")
    run_commands(lmp, "group pinned type 2\nrun 0")


def _positions(lmp, n: int) -> np.ndarray:
    x = lmp.numpy.extract_atom("x")[:n]
    ids = lmp.numpy.extract_atom("id")[:n]
    out = np.empty((n, 3))
    out[ids - 1] = x
    return out


def _set_positions(lmp, positions: np.ndarray) -> None:
    n = positions.shape[0]
    x = lmp.numpy.extract_atom("x")[:n]
    ids = lmp.numpy.extract_atom("id")[:n]
    x[:] = positions[ids - 1]


def relax_crystal(
    positions: np.ndarray,
    *,
    strain: np.ndarray | None = None,
    pinned: np.ndarray | None = None,
    recipe: Recipe = "substrate",
    potential: str = DEFAULT_POTENTIAL,
    ftol: float = 1e-2,
    max_iterations: int = 5000,
    loose_etol: float = 1e-4,
    padding: float = 5.0,
    min_style: str = "cg",
    prerelax: bool = True,
    threads: int = 1,
) -> Relaxation:
    """Relax a crystal, strain it and relax again.

    Parameters
    ----------
    positions : ndarray, shape (n_atoms, 3)
        Ideal lattice positions, lattice units.
    strain : ndarray, shape (3, 3), optional
        Symmetric strain to apply after the first relaxation; none by default.
    pinned : ndarray of bool, shape (n_atoms,), optional
        Atoms held fixed during the second relaxation (``recipe="substrate"``);
        the strain is applied about their centroid. Ignored by the paper
        recipe, which strains about the crystal's centroid.
    recipe : {"substrate", "paper"}
        ``"substrate"``: (relax free if ``prerelax``), strain, relax to
        convergence with the pinned atoms fixed. ``"paper"`` (Chan et al. 2021): relax free, strain
        about the centroid, then a second minimization with the loose energy
        tolerance ``loose_etol`` and nothing pinned.
    potential : str
        EAM file in ``LAMMPS_POTENTIALS``.
    ftol : float
        Convergence tolerance on the global force norm, eV/Angstrom.
    max_iterations : int
        Iteration cap of each minimization; reaching it is a failure.
    loose_etol : float
        Relative energy tolerance of the paper recipe's second minimization.
    padding : float
        Vacuum around the crystal in the (non-periodic) box, lattice units.
    min_style : str
        LAMMPS minimizer (``cg``, ``fire``...).
    prerelax : bool
        Substrate recipe: relax the free crystal before straining it (the
        default). Off: the ideal cut crystal is strained and relaxed once (about
        half the cost), the pinned slab staying at its strained ideal
        positions. The paper recipe always relaxes first.
    threads : int
        OpenMP threads for LAMMPS.

    Returns
    -------
    Relaxation

    Raises
    ------
    LammpsError
        LAMMPS's own message (lost atoms, missing potential file) or a
        minimization that did not converge.
    """
    positions = np.asarray(positions, dtype=float)
    n = positions.shape[0]
    strain = np.zeros((3, 3)) if strain is None else np.asarray(strain, dtype=float)
    if strain.shape != (3, 3) or not np.allclose(strain, strain.T):
        raise ValueError("strain must be a symmetric 3x3 tensor")
    if recipe not in ("substrate", "paper"):
        raise ValueError(f"recipe must be 'substrate' or 'paper', got {recipe!r}")
    pinned = np.zeros(n, dtype=bool) if pinned is None else np.asarray(pinned, dtype=bool)
    if pinned.shape != (n,):
        raise ValueError(f"pinned must be a mask of {n} atoms, got shape {pinned.shape}")
    if recipe == "substrate" and not pinned.any() and np.any(strain):
        raise ValueError("the substrate recipe needs pinned atoms to hold a strain")

    a0 = bulk_gold(potential).lattice_constant
    if recipe == "paper":
        pinned = np.zeros(n, dtype=bool)  # the paper recipe holds nothing
    types = np.where(pinned, 2, 1).astype(np.int32)
    with lammps_instance(threads=threads) as lmp:
        _setup(lmp, positions * a0, types, padding_A=padding * a0, potential=potential)
        run_commands(lmp, f"min_style {min_style}")
        energy_ideal = float(lmp.get_thermo("pe")) / n
        iterations = 0
        energy_before = energy_ideal
        if prerelax or recipe == "paper":
            first = minimize(lmp, ftol=ftol, max_iterations=max_iterations)
            energy_before = first.energy_end / n
            iterations = first.iterations
        relaxed = _positions(lmp, n)
        centre = relaxed[pinned].mean(axis=0) if pinned.any() else relaxed.mean(axis=0)
        _set_positions(lmp, centre + (relaxed - centre) @ (np.eye(3) + strain).T)
        second: MinimizeReport
        if recipe == "substrate":
            run_commands(lmp, "fix pin pinned setforce 0.0 0.0 0.0")
            second = minimize(lmp, ftol=ftol, max_iterations=max_iterations)
        else:
            second = minimize(lmp, etol=loose_etol, ftol=0.0, max_iterations=max_iterations)
        final = _positions(lmp, n) / a0
    return Relaxation(
        reference=positions,
        final=final,
        pinned=pinned,
        strain=strain,
        energy_ideal=energy_ideal,
        energy_before=energy_before,
        energy_after=second.energy_end / n,
        iterations=iterations + second.iterations,
        lattice_constant=a0,
    )
