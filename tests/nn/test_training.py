import numpy as np
import pytest
import torch

from cdiplatform.nn import (
    BlockDataset,
    ModelConfig,
    SchedulePhase,
    TrainConfig,
    apply_phase,
    assemble_training,
    build_model,
    cdi_nn_3d_config,
    train,
)


def _tiny_3d(epochs=(1, 1, 1, 1), *, model=None, **kw):
    config = cdi_nn_3d_config(epochs=epochs, batch_size=4, learning_rate=3e-3, seed=3, **kw)
    return config.replace(size=8, widths=(2, 4), **(model or {}))


#: the plain paper network, and the options the reduced 3D model trains with
VARIANTS = {
    "plain": {},
    "batchnorm_leaky_augment_cosine_twin": {
        "model": {"batch_norm": True, "activation": "leaky_relu"},
        "augment": "grid",
        "lr_schedule": "cosine",
        "phase_weighting": "amplitude",
        "twin_invariant": True,
    },
}


def _data(objects, *, ndim, size, n=24, seed=0):
    amp, phase, intensity = objects(n, size=size, ndim=ndim, rng=np.random.default_rng(seed))
    t = assemble_training(
        intensity,
        amp,
        phase,
        np.arange(n),
        ndim=ndim,
        fractions=(0.75, 0.25, 0),
        rng=np.random.default_rng(1),
    )
    arrays = {k: t[k] for k in ("inputs", "amplitude", "phase")}
    n_train = int((t["split"] == 0).sum())
    train_ds = BlockDataset(arrays, batch_size=4, indices=np.arange(n_train), block=8, seed=11)
    val_ds = BlockDataset(arrays, batch_size=8, indices=np.arange(n_train, n), shuffle=False)
    return train_ds, val_ds


def test_apply_phase_freezes_the_right_groups():
    model = build_model(_tiny_3d())
    schedule = model.config.training.schedule
    expected = [
        {"encoder", "shape_decoder"},
        {"phase_decoder"},
        {"encoder", "phase_decoder"},
        {"encoder", "shape_decoder", "phase_decoder"},
    ]
    for phase, trained in zip(schedule, expected, strict=True):
        params = apply_phase(model, phase)
        for name, module in model.groups.items():
            assert all(p.requires_grad == (name in trained) for p in module.parameters()), (phase.name, name)
            assert module.training == (name in trained)
        assert len(params) == sum(len(list(model.groups[g].parameters())) for g in trained)
    with pytest.raises(ValueError, match="does not have"):
        apply_phase(model, SchedulePhase("x", 1, ("shape_net",), {"amplitude": 1}))


def test_schedule_changes_only_the_trained_groups(objects):
    model = build_model(_tiny_3d(epochs=(0, 1, 0, 0)))  # one epoch of "phase decoder alone"
    train_ds, _ = _data(objects, ndim=3, size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, train_ds, device="cpu")
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"phase_decoder"}


@pytest.mark.parametrize("kill_after", [1, 3, 5])  # mid-phase, at a phase boundary, in the last phase
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resume_from_checkpoint_equals_uninterrupted(objects, kill_after, variant):
    config = _tiny_3d(epochs=(2, 1, 1, 2), **VARIANTS[variant])
    train_ds, val_ds = _data(objects, ndim=3, size=8)

    full = build_model(config)
    history_full = train(full, train_ds, val_ds, device="cpu", deterministic=True)

    saved = {}

    class Killed(Exception):
        pass

    def kill(ckpt, info):
        saved.update(ckpt)
        assert all(isinstance(v, np.ndarray) and v.dtype != object for v in ckpt.values())
        if info["epoch"] + 1 == kill_after:
            raise Killed

    first = build_model(config)
    with pytest.raises(Killed):
        train(first, train_ds, val_ds, device="cpu", callback=kill, deterministic=True)
    torch.manual_seed(12345)  # a new process would have another global RNG state
    np.random.seed(5)
    resumed = build_model(config, seed=99)  # initial weights do not matter when resuming
    history_resumed = train(resumed, train_ds, val_ds, device="cpu", resume=saved, deterministic=True)

    assert history_resumed == history_full
    assert len(history_full["train_loss"]) == 6 and "val_physics" in history_full
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_resume_with_worker_processes_equals_uninterrupted(objects):
    config = ModelConfig(
        arch="cdi_nn_2d",
        ndim=2,
        size=8,
        widths=(2, 4),
        training=TrainConfig(
            schedule=(SchedulePhase("all", 3, ("shape_net", "phase_net"), {"amplitude": 1, "phase": 1}),),
            batch_size=4,
            num_workers=2,
            prefetch_factor=2,
            seed=1,
        ),
    )
    train_ds, val_ds = _data(objects, ndim=2, size=8)
    full = build_model(config)
    h_full = train(full, train_ds, val_ds, device="cpu", deterministic=True)
    saved = {}

    def keep(ckpt, info):
        if info["epoch"] == 0:
            saved.update(ckpt)

    train(build_model(config), train_ds, val_ds, device="cpu", callback=keep, deterministic=True)
    resumed = build_model(config, seed=7)
    assert train(resumed, train_ds, val_ds, device="cpu", resume=saved, deterministic=True) == h_full
    assert all(
        torch.equal(a, b)
        for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True)
    )


def test_training_lowers_the_loss(objects):
    config = ModelConfig(
        arch="cdi_nn_2d",
        ndim=2,
        size=16,
        widths=(4, 8),
        training=TrainConfig(
            schedule=(SchedulePhase("all", 8, ("shape_net", "phase_net"), {"amplitude": 1, "phase": 1}),),
            batch_size=8,
            learning_rate=1e-2,
            seed=0,
        ),
    )
    train_ds, val_ds = _data(objects, ndim=2, size=16, n=64)
    history = train(build_model(config), train_ds, val_ds, device="cpu")
    assert history["train_amplitude"][-1] < 0.8 * history["train_amplitude"][0]


def test_checkpoint_survives_a_zarr_round_trip(objects, tmp_path):
    import zarr

    config = _tiny_3d(epochs=(1, 0, 0, 1))
    train_ds, _ = _data(objects, ndim=3, size=8)
    saved = {}
    full = build_model(config)
    history_full = train(
        full, train_ds, device="cpu", callback=lambda c, i: saved.update(c) if i["epoch"] == 0 else None
    )
    root = zarr.open_group(tmp_path / "ckpt.zarr", mode="w")
    for key, value in saved.items():
        root.create_array(key, shape=value.shape, dtype=value.dtype)[...] = value
    back = zarr.open_group(tmp_path / "ckpt.zarr", mode="r")
    loaded = {key: np.asarray(back[key][...]) for key in saved}
    for key, value in saved.items():
        assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value), key
    resumed = build_model(config, seed=5)
    assert train(resumed, train_ds, device="cpu", resume=loaded) == history_full
    assert all(
        torch.equal(a, b)
        for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True)
    )


def test_cosine_schedule_sets_the_learning_rate_per_epoch():
    config = TrainConfig(
        schedule=(SchedulePhase("a", 4, ("encoder",), {"amplitude": 1}), SchedulePhase("b", 2, ("encoder",), {})),
        learning_rate=1e-3,
        lr_schedule="cosine",
    )
    lrs = [config.learning_rate_at(e) for e in range(6)]
    np.testing.assert_allclose(lrs, [1e-3, 0.5e-3 * (1 + np.cos(np.pi / 4)), 0.5e-3, 0.5e-3 * (1 - np.cos(np.pi / 4)),
                                     1e-3, 0.5e-3])
    assert TrainConfig(schedule=config.schedule).learning_rate_at(5) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(schedule=config.schedule, lr_schedule="step")


@pytest.mark.parametrize("given, read", [(True, "grid"), (False, "none"), ("permutations", "permutations")])
def test_augment_reads_the_flags_of_stored_configs(given, read):
    schedule = (SchedulePhase("a", 1, ("encoder",), {"amplitude": 1}),)
    config = TrainConfig(schedule=schedule, augment=given)
    assert config.augment == read
    assert TrainConfig(**{**config.__dict__, "augment": config.augment}) == config
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(schedule=schedule, augment="flips")


@pytest.mark.parametrize("device, warn_only", [("cpu", False), ("cuda", True)])
def test_deterministic_mode_only_warns_on_a_gpu(device, warn_only):
    # CUDA has no deterministic max_pool3d backward: a GPU training must warn, not fail
    from cdiplatform.nn.training import _deterministic

    def state():
        return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()

    before = state()
    with _deterministic(True, torch.device(device)):
        assert state() == (True, warn_only)
    assert state() == before
