import math

import numpy as np
import pytest
import zarr

from cdiplatform.nn import (
    BlockDataset,
    assemble_training,
    estimate_oversampling,
    make_inputs,
    make_loader,
    make_targets,
    phase_to_unit,
    split_by_group,
    unit_to_phase,
)
from cdiplatform.physics import oversampling_ratio


@pytest.mark.parametrize("ndim", [2, 3])
def test_make_inputs_is_sqrt_scaled_to_max_one(ndim):
    rng = np.random.default_rng(0)
    intensity = rng.uniform(0, 100, (3, *(8,) * ndim)).astype(np.float32)
    intensity[1] *= 1000
    x = make_inputs(intensity, ndim=ndim)
    assert x.dtype == np.float32 and x.shape == intensity.shape
    np.testing.assert_allclose(x.reshape(3, -1).max(1), 1.0, rtol=1e-6)
    ratio = x[0] / np.sqrt(intensity[0])
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)


def test_make_inputs_refuses_empty_scan_and_names_it():
    intensity = np.ones((3, 4, 4))
    intensity[2] = 0
    with pytest.raises(ValueError, match=r"positions \[2\]"):
        make_inputs(intensity, ndim=2)


@pytest.mark.parametrize("phi", [-math.pi, -1.0, 0.0, 2.5, math.pi - 1e-3, 3 * math.pi / 2])
def test_phase_mapping_round_trip_mod_2pi(phi):
    p = phase_to_unit(np.array([phi]))
    assert 0 <= p[0] < 1
    back = unit_to_phase(p.astype(np.float64))
    assert abs(np.angle(np.exp(1j * (back[0] - phi)))) < 1e-5


def test_make_targets_scale_and_phase_outside_object(objects):
    rng = np.random.default_rng(1)
    amp, phase, _ = objects(4, size=16, ndim=2, rng=rng)
    phase = np.where(amp > 0, phase, 3.0)  # junk phase outside the object
    a, p = make_targets(amp, phase, ndim=2)
    np.testing.assert_allclose(a.reshape(4, -1).max(1), 1.0)
    assert np.all(p[amp == 0] == np.float32(0.5))  # phase 0 -> p = 0.5
    inside = amp > 0
    np.testing.assert_allclose(
        np.exp(1j * unit_to_phase(p[inside].astype(float))), np.exp(1j * phase[inside]), atol=1e-5
    )


def test_split_by_group_keeps_groups_together_and_fractions():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(200), 2)  # a strained copy and its control per crystal
    splits = split_by_group(groups, (0.8, 0.1, 0.1), rng)
    allidx = np.concatenate(list(splits.values()))
    assert sorted(allidx.tolist()) == list(range(400))
    sets = {k: set(groups[v].tolist()) for k, v in splits.items()}
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    assert abs(len(splits["train"]) - 320) <= 4 and abs(len(splits["test"]) - 40) <= 4
    assert not np.all(np.diff(splits["train"]) > 0)  # shuffled


def test_split_by_group_is_reproducible_and_seed_dependent():
    groups = np.arange(50)
    a = split_by_group(groups, {"train": 0.6, "validation": 0.2, "test": 0.2}, np.random.default_rng(3))
    b = split_by_group(groups, {"train": 0.6, "validation": 0.2, "test": 0.2}, np.random.default_rng(3))
    c = split_by_group(groups, {"train": 0.6, "validation": 0.2, "test": 0.2}, np.random.default_rng(4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    with pytest.raises(ValueError, match="unknown split"):
        split_by_group(groups, {"training": 1.0}, np.random.default_rng(0))


@pytest.mark.parametrize("ndim,extent", [(2, 0.5), (2, 0.33), (3, 0.5)])
def test_estimate_oversampling(objects, ndim, extent):
    rng = np.random.default_rng(5)
    _, _, intensity = objects(3, size=32, ndim=ndim, rng=rng, extent=extent)
    sigma = estimate_oversampling(intensity, ndim=ndim)
    # radii are drawn in [0.7, 1] x extent * size / 2: oversampling within [1, 1/0.7] / extent
    assert np.all(sigma > 0.9 / extent) and np.all(sigma < 1.6 / extent)
    # one estimator: the same as the per-axis ratios that prepare records, averaged geometrically
    per_axis = oversampling_ratio(intensity, ndim=ndim, threshold=0.05)
    np.testing.assert_allclose(sigma, np.prod(per_axis, axis=-1) ** (1 / ndim))


def test_estimate_oversampling_without_signal_is_nan():
    assert np.isnan(estimate_oversampling(np.zeros((1, 8, 8)), ndim=2)).all()


def test_assemble_training_orders_splits_contiguously(objects):
    rng = np.random.default_rng(6)
    amp, phase, intensity = objects(20, size=8, ndim=2, rng=rng)
    out = assemble_training(intensity, amp, phase, np.arange(20) // 2, ndim=2, rng=np.random.default_rng(0))
    assert np.all(np.diff(out["split"]) >= 0)
    assert sorted(out["source"].tolist()) == list(range(20))
    np.testing.assert_allclose(out["inputs"], make_inputs(intensity[out["source"]], ndim=2))


def _epoch_ids(ds, epoch, workers):
    loader = make_loader(ds, epoch=epoch, num_workers=workers, prefetch_factor=2)
    batches = [b["id"].numpy() for b in loader]
    return batches


@pytest.mark.parametrize("workers", [0, 2])
def test_block_dataset_each_scan_once_per_epoch_and_seeded(workers):
    n = 103
    arrays = {"id": np.arange(n, dtype=np.float32), "x": np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2)}
    ds = BlockDataset(arrays, batch_size=8, block=10, seed=7, buffer_blocks=2)
    e0 = _epoch_ids(ds, 0, workers)
    assert sorted(np.concatenate(e0).astype(int).tolist()) == list(range(n))
    assert all(len(b) <= 8 for b in e0) and sum(len(b) < 8 for b in e0) <= max(workers, 1)
    assert len(e0) == ds.n_batches(workers)
    e0_again = _epoch_ids(ds, 0, workers)
    e1 = _epoch_ids(ds, 1, workers)
    assert all(np.array_equal(a, b) for a, b in zip(e0, e0_again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(e0, e1, strict=False))


@pytest.mark.parametrize("workers", [0, 2])
def test_block_dataset_reads_a_subset_from_zarr_by_chunk(tmp_path, workers):
    z = zarr.create_array(tmp_path / "a.zarr", shape=(50, 3), chunks=(16, 3), dtype="float32")
    z[:] = np.repeat(np.arange(50, dtype=np.float32)[:, None], 3, axis=1)
    ds = BlockDataset({"x": z}, batch_size=4, indices=np.arange(5, 40), shuffle=False)
    assert ds.block == 16
    got = np.concatenate([b["x"][:, 0].numpy() for b in make_loader(ds, num_workers=workers)])
    np.testing.assert_array_equal(np.sort(got), np.arange(5, 40))
    if workers == 0:
        np.testing.assert_array_equal(got, np.arange(5, 40))  # unshuffled: in order


def test_block_dataset_checks_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        BlockDataset({"a": np.zeros(3), "b": np.zeros(4)}, batch_size=2)
