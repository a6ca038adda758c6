"""The ``simulate_gold`` stage: parameter checks, plan, pairs, failures, and a run through the runner."""

import numpy as np
import pytest

from cdiplatform.pipeline.stage import get_stage
from cdiplatform.testing import require

SMALL = {"block_cells": 8, "grid": 24, "voxel_size": 1.0}


@pytest.fixture(scope="module")
def stage():
    return get_stage("simulate_gold")()


def params(stage, **kw):
    return stage.Params(**{**SMALL, **kw})


def lammps_required():
    from cdiplatform.simulate.gold.lammps_env import LammpsUnavailable, load_lammps

    try:
        load_lammps()
    except LammpsUnavailable as exc:
        require(False, f"LAMMPS is not available: {exc}")


@pytest.mark.parametrize(("change", "message"), [
    ({"max_strain": 0.06}, "max_strain"),
    ({"n_planes_min": 3}, "n_planes_min"),
    ({"n_planes_max": 21}, "n_planes_max"),
    ({"grid": 16}, "the grid is too small"),
    ({"block_cells": 30, "grid": 32}, "the grid is too small"),
    ({"normals": "cubes"}, "normals"),
    ({"recipe": "anneal"}, "recipe"),
    ({"n_crystals": 0}, "n_crystals"),
])
def test_validate_refuses_bad_parameters_before_any_work(stage, change, message):
    with pytest.raises(ValueError, match=message):
        stage.validate(params(stage, **change), {})


def test_default_parameters_are_valid_and_fit_the_grid(stage):
    lammps_required()
    stage.validate(stage.Params(), {})
    p = stage.Params()
    assert p.block_cells + 2 * p.padding <= p.grid * p.voxel_size


def test_plan_makes_pairs(stage):
    plan = stage.plan(params(stage, n_crystals=3), {})
    assert plan.n_scans == 6 and plan.chunk == 2
    assert plan.coords["strained"].tolist() == [True, False] * 3
    assert plan.coords["crystal"].tolist() == [0, 0, 1, 1, 2, 2]
    assert plan.variables["intensity"].shape == (24, 24, 24)
    assert plan.variables["plane_normals"].shape == (20, 3)
    assert plan.variables["applied_strain"].shape == (3, 3)


@pytest.fixture(scope="module")
def computed(stage):
    lammps_required()
    p = params(stage, n_crystals=2)
    rngs = [np.random.default_rng([5, i]) for i in (2, 3)]
    return p, stage.compute(p, {}, np.array([2, 3]), rngs)


def test_compute_returns_the_plan_layout(stage, computed):
    p, result = computed
    assert not result.failed
    plan = stage.plan(p, {})
    assert set(result.values) == set(plan.variables)
    for name, var in plan.variables.items():
        assert result.values[name].shape == (2, *var.shape), name
        assert result.values[name].dtype == np.dtype(var.dtype), name


def test_pair_is_strained_then_control(computed):
    _, result = computed
    v = result.values
    assert np.abs(v["phase"][0]).max() > 0.1 and np.all(v["phase"][1] == 0)
    assert np.array_equal(v["amplitude"][0], v["amplitude"][1])
    assert not np.array_equal(v["intensity"][0], v["intensity"][1])
    for name in ("n_atoms", "seed", "energy_after", "applied_strain", "plane_normals"):
        np.testing.assert_array_equal(v[name][0], v[name][1])
    n = int(v["n_planes"][0])
    assert 4 <= n <= 20
    assert np.isfinite(v["plane_normals"][0, :n]).all() and np.isnan(v["plane_normals"][0, n:]).all()
    assert np.abs(v["applied_strain"][0]).max() <= 0.01
    assert v["energy_ideal"][0] > v["energy_before"][0] > -3.93


def test_crystal_rebuilds_from_its_seed(computed):
    from cdiplatform.simulate.gold import simulate_gold_pair

    _, result = computed
    pair = simulate_gold_pair(seed=int(result.values["seed"][0]), **SMALL)
    np.testing.assert_array_equal(pair.amplitude[0], result.values["amplitude"][0])
    assert pair.metadata["n_atoms"] == result.values["n_atoms"][0]


@pytest.mark.parametrize(("change", "message"), [
    ({"potential": "Missing_file.eam"}, "cannot open eam potential file Missing_file.eam"),
    ({"max_iterations": 2}, "did not converge: Stopping criterion = max iterations"),
])
def test_lammps_failure_fails_the_pair_with_its_message(stage, change, message):
    lammps_required()
    p = params(stage, n_crystals=2, **change)
    rngs = [np.random.default_rng([1, i]) for i in range(4)]
    result = stage.compute(p, {}, np.arange(4), rngs)
    assert sorted(result.failed) == [0, 1, 2, 3]
    assert all(message in reason for reason in result.failed.values())


def test_control_alone_is_refused(stage):
    result = stage.compute(params(stage, n_crystals=2), {}, np.array([3]), [np.random.default_rng(0)])
    assert list(result.failed) == [0] and "whole pairs" in result.failed[0]


def test_runs_through_the_runner(tmp_path, local_client):
    lammps_required()
    from cdiplatform import open_catalog
    from cdiplatform.catalog import STATUS_OK
    from cdiplatform.pipeline.job import load_job
    from cdiplatform.pipeline.runner import run_job

    job = tmp_path / "gold.toml"
    job.write_text(
        '[job]\nname = "gold"\nseed = 3\n\n[[stage]]\nstage = "simulate_gold"\noutput = "collections/gold"\n'
        "[stage.params]\nn_crystals = 2\nblock_cells = 8\ngrid = 24\n"
    )
    (report,) = run_job(load_job(job, root=tmp_path), client=local_client, catalog=tmp_path / "c.zarr")
    assert report.ok == 4 and not report.failed
    ds = open_catalog(tmp_path / "c.zarr").open("collections/gold").load()
    assert ds["status"].values.tolist() == [STATUS_OK] * 4
    assert ds["intensity"].dims == ("scan", "z", "y", "x") and ds["intensity"].dtype == np.float32
    assert ds["strained"].values.tolist() == [True, False, True, False]
    assert ds["crystal"].values.tolist() == [0, 0, 1, 1]
    assert (ds["phase"].isel(scan=[1, 3]) == 0).all()
    assert ds["n_atoms"].values[0] == ds["n_atoms"].values[1] != ds["n_atoms"].values[2]


def test_paper_recipe_pins_nothing(stage):
    lammps_required()
    p = params(stage, n_crystals=1, recipe="paper", normals="facets")
    result = stage.compute(p, {}, np.array([0, 1]), [np.random.default_rng(9), np.random.default_rng(10)])
    assert not result.failed
    assert result.values["n_pinned"].tolist() == [0, 0]
    assert np.isnan(result.values["pinned_normal"]).all()
    assert np.abs(result.values["phase"][0]).max() > 0


def test_atom_positions_are_kept_on_request(stage):
    lammps_required()
    with pytest.raises(ValueError, match="max_atoms"):
        stage.validate(params(stage, keep_positions=True), {})
    p = params(stage, n_crystals=1, keep_positions=True, max_atoms=4 * 8**3)
    stage.validate(p, {})
    index = np.array([0, 1])
    rngs = [np.random.default_rng(5), np.random.default_rng(6)]
    out = stage.compute(p, {}, index, rngs)
    assert not out.failed
    positions, n = out.values["positions"], int(out.values["n_atoms"][0])
    assert positions.shape == (2, 2, 4 * 8**3, 3)
    assert np.isfinite(positions[0, :, :n]).all() and np.isnan(positions[0, :, n:]).all()
    np.testing.assert_array_equal(positions[0], positions[1])  # the control is the same crystal
    moved = np.linalg.norm(positions[0, 0, :n] - positions[0, 1, :n], axis=1)
    assert 0 < np.median(moved) < 0.2  # relaxed atoms stay near their lattice sites (lattice units)
    assert "positions" not in stage.plan(params(stage), {}).variables  # not kept by default
