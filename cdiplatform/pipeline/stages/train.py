"""Stage ``train``: a network trained on a ``training/<id>`` node, written to ``models/<id>``.

One task, on a worker with the ``GPU`` resource when the cluster has one
(else on CPU). After every epoch the whole state (weights, optimizer and
random-number states, history) replaces the model node atomically, with
``run.complete`` false; a killed training resumes from its last checkpoint
and ends with the same weights and history as an uninterrupted one (on CPU,
with ``deterministic = true``). The finished node holds the weights only,
with the configuration (architecture, every hyperparameter, the input
normalization and the oversampling of the training data), the training history
(``training_history``) and the training set's node and hash in its attributes. Job file::

    [[stage]]
    stage = "train"
    inputs = { training = "training/convex2d" }
    output = "models/cdi_nn_2d"
    [stage.params]
    arch = "cdi_nn_2d"
    epochs = [20]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cdiplatform.pipeline.stage import TaskStage, register, resolve_device

__all__ = ["Train"]

ARCHS = ("cdi_nn_2d", "cdi_nn_3d")


def model_config(params: Any, *, oversampling: tuple[float, float] | None):
    """The :class:`~cdiplatform.nn.ModelConfig` that ``params`` describe."""
    from cdiplatform.nn import cdi_nn_2d_config, cdi_nn_3d_config

    training: dict[str, Any] = {"learning_rate": params.learning_rate, "lr_schedule": params.lr_schedule,
                                "augment": params.augment, "phase_weighting": params.phase_weighting,
                                "twin_invariant": params.twin_invariant,
                                "seed": params.seed,
                                "num_workers": params.num_workers}
    if params.batch_size:
        training["batch_size"] = params.batch_size
    if params.supervised_loss:
        training["supervised_loss"] = params.supervised_loss
    if params.arch == "cdi_nn_2d":
        config = cdi_nn_2d_config(epochs=params.epochs[0], **training)
    else:
        config = cdi_nn_3d_config(reduced=params.reduced, epochs=tuple(params.epochs),
                                  physics_weight=params.physics_weight, **training)
    changes: dict[str, Any] = {"oversampling": oversampling, "batch_norm": params.batch_norm,
                               "activation": params.activation, "input_scaling": params.input_scaling}
    if params.widths:
        changes["widths"] = tuple(params.widths)
    if params.dropout is not None:
        changes["dropout"] = params.dropout
    return config.replace(**changes)


@register
class Train(TaskStage):
    """Train CDI NN (2D) or 3D-CDI-NN (3D), checkpointing into the catalog every epoch."""

    name = "train"
    inputs = ("training",)
    output_kind = "model"
    uses_torch = True

    @dataclass(frozen=True)
    class Params:
        #: "cdi_nn_2d" (2018, two networks) or "cdi_nn_3d" (2021, one encoder, two decoders)
        arch: str = "cdi_nn_2d"
        #: epochs; for cdi_nn_3d one number per phase of the sequential schedule (4)
        epochs: list[int] = (20,)
        #: 3D: widths 8-16-32 instead of 64-128-256 (trains on a CPU)
        reduced: bool = False
        #: encoder widths; empty: the paper's (or the reduced) widths
        widths: list[int] = ()
        #: 0: the paper's batch (256 in 2D, 32 in 3D)
        batch_size: int = 0
        learning_rate: float = 1e-3
        #: "constant" or "cosine" (decays to 0 over each phase of the schedule)
        lr_schedule: str = "constant"
        #: a random symmetry of the grid per training batch (exact for diffraction data): "none",
        #: "grid" (flips and transposes) or "permutations" (transposes alone)
        augment: str = "none"
        #: "bce" or "mae"; empty: the paper's (BCE in 2D, MAE in 3D)
        supervised_loss: str = ""
        #: "uniform", "amplitude" (the phase loss weighted by the target amplitude) or "support"
        #: (a plain mean over the target's support, amplitude above 10% of its maximum)
        phase_weighting: str = "uniform"
        #: supervised terms against the target or its twin conj(rho(-r)), whichever is closer
        #: (the two diffract identically; with a fixed target the network learns a blur of both)
        twin_invariant: bool = False
        #: batch normalization after every hidden convolution
        batch_norm: bool = False
        #: "relu" or "leaky_relu"
        activation: str = "relu"
        #: "linear" or "log": the network compresses its normalized input logarithmically first
        input_scaling: str = "linear"
        #: dropout on the input and hidden convolutions; unset: the paper's (0 in 2D, 0.1 in 3D)
        dropout: float | None = None
        #: weight of the physics-aware term (3D)
        physics_weight: float = 1.0
        seed: int = 0
        #: DataLoader worker processes (part of the data order)
        num_workers: int = 0
        #: torch.use_deterministic_algorithms, so that a resumed training equals an uninterrupted one
        deterministic: bool = True
        #: "auto" (cuda when there is one), "cpu" or "cuda"
        device: str = "auto"

    def validate(self, params, inputs) -> None:
        if params.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {params.arch!r}")
        want = 1 if params.arch == "cdi_nn_2d" else 4
        if len(params.epochs) != want or min(params.epochs) < 0:
            raise ValueError(f"{params.arch} takes {want} epoch count(s), got {list(params.epochs)}")
        ndim = inputs["training"].attrs.get("ndim")
        if ndim != (2 if params.arch == "cdi_nn_2d" else 3):
            raise ValueError(f"{params.arch} cannot train on a {ndim}D training set")
        model_config(params, oversampling=None)  # every hyperparameter checked before the task starts

    def run(self, params, inputs, writer, resume) -> dict[str, Any]:
        from cdiplatform.catalog import open_catalog, parse_node_ref
        from cdiplatform.nn import BlockDataset, build_model, state_to_arrays, train, weights_hash

        ds = inputs["training"]
        cat_path, node = parse_node_ref(ds.attrs["node"])
        cat = open_catalog(cat_path)
        arrays = {name: cat.array(node, name) for name in ("inputs", "amplitude", "phase")}
        ranges = ds.attrs["splits"]
        over = ds["oversampling"].values
        finite = over[np.isfinite(over)]
        oversampling = (float(finite.min()), float(finite.max())) if finite.size else None
        config = model_config(params, oversampling=oversampling)
        ok = ds["status"].values == 1
        train_idx = np.flatnonzero(ok[ranges["train"][0]:ranges["train"][1]]) + ranges["train"][0]
        val_idx = np.flatnonzero(ok[ranges["validation"][0]:ranges["validation"][1]]) + ranges["validation"][0]
        batch = config.training.batch_size
        train_data = BlockDataset(arrays, batch_size=batch, indices=train_idx, shuffle=True, seed=params.seed)
        val_data = BlockDataset(arrays, batch_size=batch, indices=val_idx, shuffle=False, seed=params.seed)
        device = resolve_device(params.device)
        model = build_model(config, seed=params.seed)
        base = {
            "architecture": config.arch,
            "config": config.to_dict(),
            "training_set": {"node": ds.attrs["node"], "content_hash": cat.content_hash(node),
                             "train": len(train_idx), "validation": len(val_idx)},
            "device": device,
            "phase_mapping": {"scale": config.phase_scale, "offset": config.phase_offset},
        }
        t0 = time.perf_counter()
        timings: list[dict[str, float]] = []

        def checkpoint(arrays_: dict[str, np.ndarray], info: dict[str, Any]) -> None:
            timings.append({k: float(info[k]) for k in ("data_wait_s", "train_s", "val_s") if k in info})
            model_arrays = {k[len("model/"):]: v for k, v in arrays_.items() if k.startswith("model/")}
            writer.write(arrays_, {**base, "weights_hash": weights_hash(model_arrays),
                                   "training_history": _history(info["history"]), "epochs_done": int(info["epoch"]) + 1},
                         complete=False)

        history = train(model, train_data, val_data, config=config.training, device=device, callback=checkpoint,
                        resume=resume, deterministic=params.deterministic)
        weights = state_to_arrays(model)
        digest = weights_hash(weights)
        wait = sum(t.get("data_wait_s", 0.0) for t in timings)
        step = sum(t.get("train_s", 0.0) for t in timings)
        writer.write({f"model/{k}": v for k, v in weights.items()},
                     {**base, "weights_hash": digest, "training_history": _history(history),
                      "epochs_done": config.training.epochs,
                      "timing": {"seconds": time.perf_counter() - t0, "data_wait_s": wait, "train_s": step}},
                     complete=True)
        return {"weights_hash": digest, "epochs": config.training.epochs,
                "final_val_loss": (history.get("val_loss") or [float("nan")])[-1]}


def _history(history: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [float(x) for x in v] for k, v in history.items()}
