"""Gold crystals without LAMMPS: fcc block, clip planes, Bragg phase, voxelization, phase statistics."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cdiplatform.physics.bragg import bragg_phase, reciprocal_vector
from cdiplatform.physics.fft import far_field
from cdiplatform.physics.voxelize import voxelize_points
from cdiplatform.simulate.gold.crystal import (
    carve,
    fcc_block,
    high_symmetry_normals,
    prune_weakly_bound,
    random_crystal,
)
from cdiplatform.simulate.gold.diffraction import phase_statistics, voxelize_crystal


@pytest.mark.parametrize("cells", [1, 3, 6])
def test_fcc_block_counts_and_nearest_neighbours(cells):
    block = fcc_block(cells)
    assert block.shape == (4 * cells**3, 3)
    assert np.allclose(block.min(axis=0), -cells / 2) and np.allclose(block.max(axis=0), cells / 2 - 0.5)
    if cells > 1:
        d = np.linalg.norm(block[:, None] - block[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        assert d.min() == pytest.approx(1 / np.sqrt(2))  # fcc nearest neighbour, lattice units


@pytest.mark.parametrize("normals", ["sphere", "facets"])
def test_random_crystal_is_cut_by_its_planes_and_centred(normals):
    rng = np.random.default_rng(3)
    c = random_crystal(rng=rng, block_cells=10, n_planes=(4, 20), normals=normals)
    assert 4 <= c.n_planes <= 20
    assert np.allclose(np.linalg.norm(c.normals, axis=1), 1)
    assert np.allclose(c.positions.mean(axis=0), 0, atol=1e-9)
    block = fcc_block(10)
    cut = block[carve(block, c.normals, c.distances)]
    assert c.n_atoms == len(prune_weakly_bound(cut, min_neighbours=4)) <= len(cut) < len(block)
    neighbours = cKDTree(c.positions).query_ball_point(c.positions, r=0.75, return_length=True) - 1
    assert neighbours.min() >= 4
    # still an ideal lattice, only shifted: differences are multiples of half a lattice unit
    diff = (c.positions - c.positions[0]) * 2
    assert np.allclose(diff, np.round(diff))
    if normals == "facets":
        family = high_symmetry_normals()
        assert all(np.isclose(family @ n, 1).any() for n in c.normals)


def test_pruning_removes_dangling_atoms_only():
    block = fcc_block(4)
    dangling = np.array([[5.0, 5.0, 5.0], [-2.5, -2.5, -2.0]])  # isolated; one neighbour (a corner)
    kept = prune_weakly_bound(np.vstack([block, dangling]), min_neighbours=4)
    assert len(kept) == len(block) - 4  # and the block's 4 corner atoms (3 neighbours each)
    assert len(prune_weakly_bound(block, min_neighbours=3)) == len(block)
    assert len(prune_weakly_bound(block, min_neighbours=0)) == len(block)


def test_sphere_normals_are_uniform():
    rng = np.random.default_rng(0)
    normals = np.concatenate(
        [random_crystal(rng=rng, block_cells=4, n_planes=(20, 20), min_neighbours=0).normals
         for _ in range(100)]
    )
    assert abs(normals.mean(axis=0)).max() < 0.08  # no preferred direction
    assert np.allclose((normals**2).mean(axis=0), 1 / 3, atol=0.05)


@pytest.mark.parametrize(("hkl", "u", "expected"), [
    ((1, 1, 1), [0.1, 0.0, 0.0], -0.2 * np.pi),
    ((1, 1, 1), [0.1, 0.2, -0.05], -2 * np.pi * 0.25),
    ((0, 0, 2), [0.3, 0.3, 0.25], -np.pi),
])
def test_bragg_phase_is_minus_g_dot_u(hkl, u, expected):
    assert bragg_phase(np.array(u), hkl=hkl) == pytest.approx(expected)
    assert np.allclose(reciprocal_vector(hkl, lattice_constant=2.0), np.pi * np.array(hkl))


def test_bragg_phase_sign_matches_the_forward_fft():
    """Shifting a lattice by u turns its Bragg peak of far_field by exactly bragg_phase(u)."""
    n, period = 64, 4
    rho = (np.arange(n) % period == 0).astype(float)
    shifted = np.roll(rho, 1)  # u = 1 sample = 0.25 lattice units along x
    peak = n // 2 + n // period  # G = 2 pi / period
    turn = np.angle(far_field(shifted)[peak] / far_field(rho)[peak])
    assert turn == pytest.approx(bragg_phase(np.array([0.25, 0.0, 0.0]), hkl=(1, 0, 0)))
    assert turn == pytest.approx(-np.pi / 2)


@pytest.mark.parametrize("method", ["cic", "nearest"])
@pytest.mark.parametrize("voxel", [1.0, 2.0])
def test_voxelized_lattice_is_uniform_and_conserves_atoms(method, voxel):
    block = fcc_block(8)
    counts, _ = voxelize_points(block + 0.25, shape=(16, 16, 16), voxel_size=voxel, method=method)
    assert counts.sum() == pytest.approx(block.shape[0])
    interior = counts[counts > 0.99 * counts.max()]
    assert np.allclose(interior, 4 * voxel**3)  # 4 atoms per unit cell


def test_voxelize_averages_values_and_orders_axes_zyx():
    pos = np.array([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -3.0]])
    values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    counts, means = voxelize_points(pos, shape=(8, 8, 8), voxel_size=1.0, values=values)
    assert counts[4, 4, 6] == 2 and counts[1, 4, 4] == 1  # x -> last axis, z -> first
    assert np.allclose(means[4, 4, 6], [2.0, 3.0]) and np.allclose(means[1, 4, 4], [5.0, 6.0])
    assert counts.sum() == 3 and np.all(means[counts == 0] == 0)


def test_voxelize_refuses_points_outside_the_grid():
    with pytest.raises(ValueError, match="outside the grid"):
        voxelize_points(np.array([[0.0, 0.0, 7.9]]), shape=(16, 16, 16), voxel_size=1.0)


def test_homogeneous_strain_gives_a_phase_ramp():
    """A linear displacement is a plane phase: the plane fit leaves almost nothing."""
    rng = np.random.default_rng(5)
    c = random_crystal(rng=rng, block_cells=12)
    strain = np.array([[0.004, 0.002, 0.0], [0.002, -0.006, 0.001], [0.0, 0.001, 0.003]])
    final = c.positions @ (np.eye(3) + strain).T
    obj = voxelize_crystal(final, c.positions, shape=(32, 32, 32), voxel_size=1.0, centre=(0, 0, 0))
    stats = phase_statistics(obj.amplitude, obj.phase)
    assert stats["phase_range"] > 0.3
    assert stats["phase_residual"] < 0.02
    assert obj.counts.sum() == pytest.approx(c.n_atoms)
