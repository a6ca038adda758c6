"""Faceted gold crystals: an fcc block cut by random clip planes.

Coordinates are in lattice units (lattice constant 1), columns ``(x, y, z)``,
along the cubic axes of the crystal. A clip plane is a unit normal ``n`` and a
distance ``d`` from the block's geometric centre; it keeps the atoms with
``r . n <= d``. After cutting, positions are shifted so that the crystal's
centroid sits at the origin (the grid centre ``N // 2`` once voxelized); the
positions stay those of an ideal lattice, only offset.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "Crystal",
    "FCC_BASIS",
    "carve",
    "fcc_block",
    "high_symmetry_normals",
    "prune_weakly_bound",
    "random_crystal",
    "random_normals",
]

#: the four atoms of the conventional fcc cell, lattice units
FCC_BASIS = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])

NormalFamily = Literal["sphere", "facets"]


@dataclass(frozen=True)
class Crystal:
    """An ideal-lattice crystal before relaxation.

    Attributes
    ----------
    positions : ndarray, shape (n_atoms, 3)
        Ideal lattice positions, lattice units, centroid at the origin.
    normals : ndarray, shape (n_planes, 3)
        Unit normals of the clip planes.
    distances : ndarray, shape (n_planes,)
        Distances of the clip planes from the block centre, lattice units.
    block_cells : int
        Edge of the fcc block it was cut from, in unit cells.
    offset : ndarray, shape (3,)
        Shift applied to centre it: block-centred coordinates are
        ``positions - offset``.
    """

    positions: np.ndarray
    normals: np.ndarray
    distances: np.ndarray
    block_cells: int
    offset: np.ndarray

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_planes(self) -> int:
        return int(self.normals.shape[0])

    def facet_atoms(self, plane: int, *, depth: float) -> np.ndarray:
        """Boolean mask of the atoms within ``depth`` lattice units of clip plane ``plane``."""
        centred = self.positions - self.offset
        height = centred @ self.normals[plane]
        return height >= self.distances[plane] - depth


def fcc_block(cells: int) -> np.ndarray:
    """Atoms of a cube of ``cells**3`` fcc unit cells, centred on the origin.

    Parameters
    ----------
    cells : int
        Unit cells per edge.

    Returns
    -------
    ndarray, shape (4 * cells**3, 3)
        Positions in lattice units; the block spans ``[-cells/2, cells/2)`` per axis.
    """
    if cells < 1:
        raise ValueError(f"an fcc block needs at least one cell per edge, got {cells}")
    grid = np.stack(np.meshgrid(*(np.arange(cells),) * 3, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    return (grid + FCC_BASIS).reshape(-1, 3) - cells / 2.0


def random_normals(n: int, *, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors uniform on the sphere (normalized Gaussian triples), shape (n, 3)."""
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def high_symmetry_normals() -> np.ndarray:
    """The 26 unit normals of the {100}, {110} and {111} families, shape (26, 3)."""
    vecs = [v for v in itertools.product((-1, 0, 1), repeat=3) if any(v)]
    vecs = np.array(vecs, dtype=float)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def carve(positions: np.ndarray, normals: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Mask of the positions inside every clip plane (``r . n <= d``), shape (n_atoms,)."""
    return np.all(positions @ np.asarray(normals).T <= np.asarray(distances), axis=1)


def prune_weakly_bound(positions: np.ndarray, *, min_neighbours: int) -> np.ndarray:
    """Remove, repeatedly, the atoms with fewer than ``min_neighbours`` fcc nearest neighbours.

    Parameters
    ----------
    positions : ndarray, shape (n_atoms, 3)
        Ideal fcc positions, lattice units (nearest neighbours at ``1/sqrt(2)``).
    min_neighbours : int
        Coordination below which an atom is removed.

    Returns
    -------
    ndarray, shape (n_kept, 3)
    """
    from scipy.spatial import cKDTree

    kept = np.asarray(positions)
    while min_neighbours > 0 and kept.shape[0]:
        counts = cKDTree(kept).query_ball_point(kept, r=0.75, return_length=True) - 1
        weak = counts < min_neighbours
        if not weak.any():
            break
        kept = kept[~weak]
    return kept


def random_crystal(
    *,
    rng: np.random.Generator,
    block_cells: int = 20,
    n_planes: tuple[int, int] = (4, 20),
    plane_distance: tuple[float, float] = (0.5, 1.0),
    normals: NormalFamily = "sphere",
    min_neighbours: int = 4,
) -> Crystal:
    """Cut a random faceted crystal out of an fcc block.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (the only one).
    block_cells : int
        Edge of the fcc block, unit cells (``4 * block_cells**3`` atoms before cutting).
    n_planes : (int, int)
        Inclusive range of the number of clip planes, drawn uniformly.
    plane_distance : (float, float)
        Range of the plane distances from the block centre, as fractions of
        the block's half edge, drawn uniformly.
    normals : {"sphere", "facets"}
        Plane normals uniform on the sphere, or drawn (without repetition)
        from the {100}, {110}, {111} families.
    min_neighbours : int
        Atoms left with fewer nearest neighbours than this (out of 12) by the
        cut, at sharp corners and edges, are removed, repeatedly until none
        is left: barely bound, they would wander off during relaxation. 0
        keeps every atom.

    Returns
    -------
    Crystal
    """
    lo, hi = n_planes
    if not 1 <= lo <= hi:
        raise ValueError(f"n_planes must be an increasing pair of positive counts, got {n_planes}")
    dlo, dhi = plane_distance
    if not 0 < dlo <= dhi:
        raise ValueError(
            f"plane_distance must be an increasing pair of positive fractions, got {plane_distance}"
        )
    count = int(rng.integers(lo, hi + 1))
    if normals == "sphere":
        chosen = random_normals(count, rng=rng)
    elif normals == "facets":
        family = high_symmetry_normals()
        if count > len(family):
            raise ValueError(f"only {len(family)} high-symmetry normals, asked for {count} planes")
        chosen = family[rng.choice(len(family), size=count, replace=False)]
    else:
        raise ValueError(f"normals must be 'sphere' or 'facets', got {normals!r}")
    half = block_cells / 2.0
    distances = rng.uniform(dlo, dhi, size=count) * half
    block = fcc_block(block_cells)
    inside = prune_weakly_bound(block[carve(block, chosen, distances)], min_neighbours=min_neighbours)
    if inside.shape[0] == 0:
        raise ValueError(
            f"the clip planes and the pruning removed every atom of the {block_cells}-cell block"
        )
    offset = -inside.mean(axis=0)
    return Crystal(
        positions=inside + offset,
        normals=chosen,
        distances=distances,
        block_cells=block_cells,
        offset=offset,
    )
