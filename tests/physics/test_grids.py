import json

import numpy as np
import pytest
import torch

from cdiplatform.physics.fft import diffraction_intensity, object_intensity
from cdiplatform.physics.grids import (
    INTERPOLATIONS,
    GridRelation,
    centred_crop,
    model_to_phasing,
    phasing_to_model,
    zero_pad,
)

SCAN54 = GridRelation((64, 64, 64), (88, 68, 54), (32, 32, 32))  # examples.zarr:collections/scan54_32


def _errors(got, want):
    """Relative L2 of the field, and phase RMS (rad) where |want| > 0.1 max."""
    a = np.abs(want)
    s = a > 0.1 * a.max()
    return (np.linalg.norm(got - want) / np.linalg.norm(want),
            float(np.sqrt(np.mean(np.angle(got[s] * np.conj(want[s])) ** 2))))


def _lowpass(x, relation):
    """The model field without the frequencies the phasing grid cannot hold (the best any mapping can keep)."""
    d = relation.ndim
    axes = tuple(range(x.ndim - d, x.ndim))
    f = np.fft.fftn(x, axes=axes)
    for ax, p, m, n in zip(axes, relation.phasing_grid, relation.window, relation.model_grid):
        nu, cut = np.abs(np.fft.fftfreq(n)), 0.5 * min(1.0, p / m)
        w = np.where(nu < cut - 1e-9, 1.0, np.where(np.isclose(nu, cut), 0.5, 0.0))
        shape = [1] * x.ndim
        shape[ax] = n
        f = f * w.reshape(shape)
    return np.fft.ifftn(f, axes=axes)


# ----------------------------------------------------------------- the record


def test_relation_reads_the_network_input_record_and_round_trips_through_json():
    record = json.loads('{"step": "network_input", "size": 32, "window": [88, 68, 54], '
                        '"factor": [2.75, 2.125, 1.6875]}')
    rel = GridRelation.from_network_input_record(record, phasing_grid=(64, 64, 64))
    assert rel == SCAN54
    assert rel.voxel_ratio == pytest.approx((64 / 88, 64 / 68, 64 / 54))
    assert not rel.is_zero_padding
    assert GridRelation.from_dict(json.loads(json.dumps(rel.to_dict()))) == rel
    assert GridRelation.from_network_input_record({**record, "phasing_grid": [64, 64, 64]}) == rel
    with pytest.raises(ValueError, match="phasing_grid"):
        GridRelation.from_network_input_record(record)
    with pytest.raises(ValueError, match="differs"):
        GridRelation.from_network_input_record({**record, "phasing_grid": [64, 64, 64]}, phasing_grid=(32, 32, 32))


def test_network_input_records_the_phasing_grid():
    from cdiplatform.ingest import network_input

    rng = np.random.default_rng(0)
    obj = zero_pad(np.abs(np.random.default_rng(1).normal(size=(1, 12, 10, 8))), factor=4)[0]
    intensity = diffraction_intensity(obj) + rng.uniform(0, 1e-6, obj.shape)
    _, record = network_input(intensity, target_oversampling=2.0, oversampling=(4.0, 4.8, 6.0), size=16)
    rel = GridRelation.from_network_input_record(json.loads(json.dumps(record)))
    assert rel.phasing_grid == intensity.shape and rel.model_grid == (16, 16, 16)
    assert rel.window == tuple(record["window"])


@pytest.mark.parametrize("bad", [
    {'phasing_grid': (64, 64), 'window': (64, 64, 64), 'model_grid': (32, 32, 32)},
    {'phasing_grid': (64,), 'window': (0,), 'model_grid': (32,)},
    {'phasing_grid': (64.5,), 'window': (64,), 'model_grid': (32,)},
])
def test_bad_relations_are_refused(bad):
    with pytest.raises(ValueError):
        GridRelation(**bad)


def test_zero_padding_relation():
    rel = GridRelation.for_zero_padding((32, 30), factor=2)
    assert rel == GridRelation((64, 60), (64, 60), (32, 30)) and rel.is_zero_padding
    assert rel.voxel_ratio == (1.0, 1.0)
    with pytest.raises(ValueError, match="factor"):
        GridRelation.for_zero_padding((32,), factor=1.5)


# ----------------------------------------------------------------- zero padding: exact crop and pad


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 33, 31), (2, 16, 15, 17)])
@pytest.mark.parametrize("factor", [1, 2, 3])
@pytest.mark.parametrize("method", INTERPOLATIONS)
def test_zero_padding_mapping_is_exactly_the_centred_pad_and_crop(shape, factor, method):
    rng = np.random.default_rng(2)
    x = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    rel = GridRelation.for_zero_padding(shape[1:], factor=factor)
    up = model_to_phasing(x, rel, method=method)
    assert up.dtype == x.dtype and np.array_equal(up, zero_pad(x, factor=factor))
    assert np.array_equal(phasing_to_model(up, rel, method=method), x)
    assert np.array_equal(phasing_to_model(up, rel), centred_crop(up, shape[1:]))


def test_exact_axes_stay_exact_beside_interpolated_ones():
    rel = GridRelation((64, 48), (64, 66), (32, 32))  # axis 0 a pad, axis 1 resampled
    x = np.zeros((32, 32))
    x[10, 16] = 1.0
    y = model_to_phasing(x, rel)
    assert np.array_equal(y[:, :].any(axis=1), np.arange(64) == 10 + 16)  # only row 26 touched, no blur
    assert y[26].argmax() == 24


def test_zero_pad_in_3d_samples_the_far_field_more_finely(make_crystal):
    rng = np.random.default_rng(3)
    obj = np.stack([make_crystal(rng, 16, size=7) for _ in range(2)])
    amp, phase = np.abs(obj).astype(np.float32), np.angle(obj).astype(np.float32)
    big_amp, big_phase = zero_pad(amp, factor=2), zero_pad(phase, factor=2)  # ndim: all axes but the scan axis
    assert big_amp.shape == (2, 32, 32, 32)
    assert np.array_equal(centred_crop(big_amp, (16, 16, 16)), amp)
    plain, padded = object_intensity(amp, phase), object_intensity(big_amp, big_phase)
    s = 32 // 2 - 2 * (16 // 2)
    np.testing.assert_allclose(padded[:, s::2, s::2, s::2] * 8, plain, rtol=1e-4, atol=1e-6 * plain.max())
    np.testing.assert_allclose(padded.sum(axis=(1, 2, 3)), plain.sum(axis=(1, 2, 3)), rtol=1e-5)
    t = zero_pad(torch.from_numpy(amp), factor=2)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), big_amp)


def test_centred_crop_refuses_a_larger_window():
    with pytest.raises(ValueError, match="cannot crop"):
        centred_crop(np.zeros((4, 4)), (5, 4))


# ----------------------------------------------------------------- interpolated mapping


@pytest.mark.parametrize("method", INTERPOLATIONS)
@pytest.mark.parametrize("relation", [SCAN54, GridRelation((48, 40), (66, 30), (32, 32))])
def test_centre_is_preserved_and_positions_scale_by_the_voxel_ratio(method, relation):
    d = relation.ndim
    axes = np.meshgrid(*[np.arange(n) - n // 2 for n in relation.model_grid], indexing="ij")
    offset = [2.0, -3.0, 1.0][:d]
    blob = np.exp(-sum((a - o) ** 2 for a, o in zip(axes, offset)) / (2 * 2.0**2))
    centred = np.exp(-sum(a**2 for a in axes) / (2 * 2.0**2))
    for x, off in ((centred, [0.0] * d), (blob, offset)):
        y = model_to_phasing(x, relation, method=method)
        coords = np.meshgrid(*[np.arange(n) - n // 2 for n in relation.phasing_grid], indexing="ij")
        centroid = [float((c * y).sum() / y.sum()) for c in coords]
        want = [o * r for o, r in zip(off, relation.voxel_ratio)]
        np.testing.assert_allclose(centroid, want, atol=0.02)
        if not any(off):
            assert np.unravel_index(np.argmax(y), y.shape) == tuple(n // 2 for n in relation.phasing_grid)
        back = phasing_to_model(y, relation, method=method)
        assert np.unravel_index(np.argmax(back), back.shape) == np.unravel_index(np.argmax(x), x.shape)


@pytest.mark.parametrize("method", INTERPOLATIONS)
def test_smooth_phase_is_preserved_without_wrapping_artefacts(method):
    rel = GridRelation((64, 64), (88, 54), (32, 32))
    yy, xx = np.meshgrid(np.arange(32) - 16, np.arange(32) - 16, indexing="ij")
    amp = np.exp(-(yy**2 + xx**2) / (2 * 5.0**2))
    phase = 0.9 * yy - 0.6 * xx  # wraps through -pi..pi several times across the object
    y = model_to_phasing(amp * np.exp(1j * phase), rel, method=method)
    py, px = np.meshgrid(np.arange(64) - 32, np.arange(64) - 32, indexing="ij")
    ry, rx = rel.voxel_ratio
    want_phase = 0.9 * py / ry - 0.6 * px / rx  # the same field at the phasing voxels
    want_amp = np.exp(-((py / ry) ** 2 + (px / rx) ** 2) / (2 * 5.0**2))
    inside = want_amp > 0.1
    diff = np.angle(y[inside] * np.exp(-1j * want_phase[inside]))
    tol = 5e-3 if method == "fourier" else 0.05
    assert np.abs(diff).max() < tol
    np.testing.assert_allclose(np.abs(y), want_amp, atol=5 * tol)


@pytest.mark.parametrize("ndim", [2, 3])
def test_round_trip_model_phasing_model_on_a_crystal(make_crystal, ndim):
    """Stated errors: within 0.04 (Fourier; spline 0.06) relative L2 of the ideal low-pass, phase RMS below 0.05 rad."""
    rng = np.random.default_rng(4)
    grid = 32
    obj = np.stack([make_crystal(rng, grid, ndim=ndim) for _ in range(2)])
    relations = {2: [GridRelation((64, 64), (88, 54), (32, 32)), GridRelation((64, 64), (54, 68), (32, 32))],
                 3: [SCAN54]}[ndim]
    for rel in relations:
        ideal = _lowpass(obj, rel)
        for method, tol_ideal in (("fourier", 0.04), ("spline", 0.06)):
            back = phasing_to_model(model_to_phasing(obj, rel, method=method), rel, method=method)
            for i in range(len(obj)):
                rel_l2, phase_rms = _errors(back[i], obj[i])
                assert _errors(back[i], ideal[i])[0] < tol_ideal, (rel, method)
                assert phase_rms < 0.05 and rel_l2 < 0.1, (rel, method, rel_l2, phase_rms)


def test_upsampling_round_trip_is_near_exact(make_crystal):
    rel = GridRelation((64, 64, 64), (54, 54, 54), (32, 32, 32))  # every phasing voxel finer than a model voxel
    obj = make_crystal(np.random.default_rng(5), 32)
    rel_l2, phase_rms = _errors(phasing_to_model(model_to_phasing(obj, rel), rel), obj)
    assert rel_l2 < 0.02 and phase_rms < 0.01


def test_mapping_is_batched_and_runs_on_tensors(make_crystal):
    rng = np.random.default_rng(6)
    obj = np.stack([make_crystal(rng, 32, ndim=2) for _ in range(3)]).astype(np.complex64)
    rel = GridRelation((64, 64), (88, 54), (32, 32))
    each = np.stack([model_to_phasing(o, rel) for o in obj])
    batch = model_to_phasing(obj, rel)
    assert batch.dtype == np.complex64 and np.array_equal(batch, each)
    t = model_to_phasing(torch.from_numpy(obj), rel)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.complex64
    np.testing.assert_allclose(t.numpy(), batch, atol=1e-5)
    back = phasing_to_model(t, rel)
    assert tuple(back.shape) == (3, 32, 32)


def test_mapping_refuses_bad_input():
    with pytest.raises(ValueError, match="model grid"):
        model_to_phasing(np.zeros((2, 31, 32, 32)), SCAN54)
    with pytest.raises(ValueError, match="phasing grid"):
        phasing_to_model(np.zeros((32, 32, 32)), SCAN54)
    with pytest.raises(ValueError, match="unknown interpolation"):
        model_to_phasing(np.zeros((32, 32, 32)), SCAN54, method="linear")
    with pytest.raises(ValueError, match="GridRelation"):
        model_to_phasing(np.zeros((32, 32, 32)), {"window": [88, 68, 54]})
