"""From relaxed atoms to Bragg CDI data: voxelized object and its diffraction.

The complex object on the model grid is ``shape * exp(i phi)``:

- ``shape``: atom number density (cloud-in-cell counts of the *relaxed*
  positions) divided by its maximum;
- ``phi``: the (111) Bragg phase ``-G . u`` of the displacement
  ``u = final - reference`` averaged per voxel with the same weights
  (:func:`cdiplatform.physics.bragg.bragg_phase`); the displacement is
  averaged, never the wrapped phase. The amplitude-weighted mean phase is
  removed (a global phase is not measurable), and the phase is zero outside
  the crystal. It is left unwrapped.

The crystal's centroid sits at the grid centre ``N // 2``; the intensity is
``|far_field(object)|**2`` (:mod:`cdiplatform.physics.fft`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cdiplatform.physics.bragg import bragg_phase
from cdiplatform.physics.fft import diffraction_intensity
from cdiplatform.physics.voxelize import voxelize_points

__all__ = [
    "GoldObject",
    "GoldPair",
    "phase_statistics",
    "simulate_gold_pair",
    "voxelize_crystal",
]


@dataclass(frozen=True)
class GoldObject:
    """A crystal on the model grid.

    Attributes
    ----------
    amplitude : ndarray, shape (nz, ny, nx), float
        Atom density normalized by its maximum (0..1).
    phase : ndarray, shape (nz, ny, nx), float
        Bragg phase, radians, unwrapped, zero outside the crystal.
    counts : ndarray, shape (nz, ny, nx), float
        Atoms per voxel (cloud-in-cell, sums to the number of atoms).
    """

    amplitude: np.ndarray
    phase: np.ndarray
    counts: np.ndarray

    @property
    def complex_object(self) -> np.ndarray:
        return self.amplitude * np.exp(1j * self.phase)


def voxelize_crystal(
    final: np.ndarray,
    reference: np.ndarray,
    *,
    shape: Sequence[int] = (32, 32, 32),
    voxel_size: float = 1.0,
    hkl: Sequence[int] = (1, 1, 1),
    centre: Sequence[float] | None = None,
) -> GoldObject:
    """Voxelize relaxed atoms into amplitude and Bragg phase.

    Parameters
    ----------
    final, reference : ndarray, shape (n_atoms, 3)
        Relaxed and ideal positions, lattice units, columns ``(x, y, z)``.
    shape : sequence of 3 ints
        Grid ``(nz, ny, nx)``.
    voxel_size : float
        Voxel edge, lattice units (the paper uses about 2).
    hkl : sequence of 3 ints
        Reflection whose phase is recorded.
    centre : sequence of 3 floats, optional
        Position of voxel ``N // 2``; the centroid of the reference by default.

    Returns
    -------
    GoldObject

    Raises
    ------
    ValueError
        When atoms fall outside the grid.
    """
    final = np.asarray(final, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if final.shape != reference.shape or final.ndim != 2 or final.shape[1] != 3:
        raise ValueError(f"final {final.shape} and reference {reference.shape} must both be (n_atoms, 3)")
    centre = reference.mean(axis=0) if centre is None else centre
    counts, u = voxelize_points(
        final, shape=shape, voxel_size=voxel_size, centre=centre, values=final - reference
    )
    amplitude = counts / counts.max()
    phase = bragg_phase(u, hkl=hkl)
    inside = counts > 0
    phase = np.where(inside, phase - np.average(phase[inside], weights=amplitude[inside]), 0.0)
    return GoldObject(amplitude=amplitude, phase=phase, counts=counts)


def phase_statistics(amplitude: np.ndarray, phase: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Range of a phase field and its departure from a plane (a homogeneous strain).

    A homogeneous strain gives a linear displacement, hence a phase that is a
    plane (a ramp) in space; what a plane fit leaves is the inhomogeneous part.

    Parameters
    ----------
    amplitude, phase : ndarray, shape (nz, ny, nx)
        Object; statistics over voxels with ``amplitude >= threshold``.
    threshold : float
        Support threshold on the normalized amplitude.

    Returns
    -------
    dict
        ``phase_range`` (max - min, rad), ``phase_residual`` (rms of the
        amplitude-weighted plane-fit residual, rad).
    """
    support = amplitude >= threshold
    if support.sum() < 4:
        raise ValueError(f"fewer than 4 voxels above amplitude {threshold}; cannot fit a plane")
    coords = np.argwhere(support).astype(float)
    values = phase[support]
    w = np.sqrt(amplitude[support])
    design = np.hstack([coords, np.ones((coords.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(design * w[:, None], values * w, rcond=None)
    residual = values - design @ coef
    return {
        "phase_range": float(values.max() - values.min()),
        "phase_residual": float(np.sqrt(np.average(residual**2, weights=amplitude[support]))),
    }


@dataclass(frozen=True)
class GoldPair:
    """A strained crystal and its control (same crystal, phase zero).

    Attributes
    ----------
    amplitude, phase, intensity : ndarray, shape (2, nz, ny, nx), float32
        Index 0 the strained crystal, 1 its control.
    metadata : dict
        Per-crystal facts (see :func:`simulate_gold_pair`).
    """

    amplitude: np.ndarray
    phase: np.ndarray
    intensity: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    #: relaxed and reference atom positions (2, n_atoms, 3), lattice units, when asked for
    positions: np.ndarray | None = None


def simulate_gold_pair(
    *,
    seed: int,
    block_cells: int = 16,
    n_planes: tuple[int, int] = (4, 20),
    plane_distance: tuple[float, float] = (0.5, 1.0),
    normals: str = "sphere",
    max_strain: float = 0.01,
    recipe: str = "substrate",
    pin_depth: float = 2.0,
    grid: int = 32,
    voxel_size: float = 1.0,
    hkl: Sequence[int] = (1, 1, 1),
    potential: str = "Au_u3.eam",
    ftol: float = 1e-2,
    max_iterations: int = 5000,
    loose_etol: float = 1e-4,
    padding: float = 5.0,
    prerelax: bool = True,
    min_style: str = "cg",
    threads: int = 1,
    keep_positions: bool = False,
) -> GoldPair:
    """Build, relax, strain and voxelize one crystal; return it with its control.

    Every random choice (planes, pinned facet, strain) comes from
    ``numpy.random.default_rng(seed)``, so a crystal is reproduced from its seed.

    Parameters
    ----------
    seed : int
        Seed of the crystal.
    block_cells, n_planes, plane_distance, normals
        See :func:`cdiplatform.simulate.gold.crystal.random_crystal`.
    max_strain : float
        Bound of each applied strain component (dimensionless).
    recipe, potential, ftol, max_iterations, loose_etol, padding, prerelax, min_style, threads
        See :func:`cdiplatform.simulate.gold.relax.relax_crystal`.
    pin_depth : float
        Thickness of the pinned slab along the contact facet, lattice units.
    keep_positions : bool
        Also return the relaxed and reference atom positions (``GoldPair.positions``).
    grid : int
        Grid points per axis.
    voxel_size : float
        Voxel edge, lattice units.
    hkl : sequence of 3 ints
        Reflection.

    Returns
    -------
    GoldPair
        ``metadata`` holds ``n_atoms``, ``n_planes``, ``plane_normals`` (n, 3),
        ``plane_distances`` (n,), ``strain`` (3, 3), ``pinned_normal`` (3,),
        ``n_pinned``, ``energy_ideal``, ``energy_before``, ``energy_after``
        (eV/atom), ``iterations``, ``mean_strain`` (3, 3, residual strain of
        the relaxed crystal: best affine fit against the ideal lattice),
        ``phase_range``, ``phase_residual`` (rad, strained member) and ``seed``.

    Raises
    ------
    LammpsError
        From LAMMPS (its message) or a minimization that did not converge.
    ValueError
        When the crystal does not fit the grid.
    """
    from cdiplatform.simulate.gold.crystal import random_crystal
    from cdiplatform.simulate.gold.relax import choose_pinned_facet, mean_strain, random_strain, relax_crystal

    rng = np.random.default_rng(seed)
    crystal = random_crystal(
        rng=rng, block_cells=block_cells, n_planes=n_planes, plane_distance=plane_distance, normals=normals
    )
    plane, pinned = choose_pinned_facet(crystal, rng=rng, depth=pin_depth)
    strain = random_strain(rng=rng, max_strain=max_strain)
    relaxed = relax_crystal(
        crystal.positions,
        strain=strain,
        pinned=pinned,
        recipe=recipe,
        potential=potential,
        ftol=ftol,
        max_iterations=max_iterations,
        loose_etol=loose_etol,
        padding=padding,
        prerelax=prerelax,
        min_style=min_style,
        threads=threads,
    )
    obj = voxelize_crystal(
        relaxed.final, relaxed.reference,
        shape=(grid,) * 3, voxel_size=voxel_size, hkl=hkl, centre=(0.0, 0.0, 0.0)
    )
    amplitude = np.stack([obj.amplitude, obj.amplitude])
    phase = np.stack([obj.phase, np.zeros_like(obj.phase)])
    intensity = diffraction_intensity(amplitude * np.exp(1j * phase), ndim=3)
    stats = phase_statistics(obj.amplitude, obj.phase)
    metadata = {
        "n_atoms": crystal.n_atoms,
        "n_planes": crystal.n_planes,
        "plane_normals": crystal.normals,
        "plane_distances": crystal.distances,
        "strain": strain,
        # the paper recipe pins nothing: no contact facet
        "pinned_normal": crystal.normals[plane] if relaxed.pinned.any() else np.full(3, np.nan),
        "n_pinned": int(relaxed.pinned.sum()),
        "energy_ideal": relaxed.energy_ideal,
        "energy_before": relaxed.energy_before,
        "energy_after": relaxed.energy_after,
        "iterations": relaxed.iterations,
        "mean_strain": mean_strain(relaxed.reference, relaxed.final),
        "lattice_constant": relaxed.lattice_constant,
        "seed": int(seed),
        **stats,
    }
    return GoldPair(
        amplitude=amplitude.astype(np.float32),
        phase=phase.astype(np.float32),
        intensity=intensity.astype(np.float32),
        metadata=metadata,
        positions=np.stack([relaxed.final, relaxed.reference]).astype(np.float32) if keep_positions else None,
    )
