"""Stage ``train``: a network trained on a ``training/<id>`` node, written to ``models/<id>``.

One task, on a worker with the ``GPU`` resource when the cluster has one
(else on CPU). After every epoch the whole state (weights, optimizer and
random-number states, history) replaces the model node atomically, with
``run.complete`` false; a killed training resumes from its last checkpoint
and ends with the same weights and history as an uninterrupted one (on CPU,
with ``deterministic = true``). The finished node holds the weights only,
with the configuration (architecture, every hyperparameter, the input
normalization and the oversampling of the training data), the training history
(``training_history``) and the training set's node and hash in its attributes.

Its parameters are the network's :class:`~cdiplatform.nn.ModelConfig` itself:
a ``recipe`` (``cdi_nn_2d``, ``cdi_nn_3d``, ``cdi_nn_3d_reduced``), its fields
flat (``widths``, ``batch_norm``...) and its training hyperparameters as the
table ``training`` (:class:`~cdiplatform.nn.TrainConfig`); ``epochs`` sets
the epochs of each phase of the recipe's schedule. The weights' seed is not a
parameter: it comes from the job's seed, like every random number of a run.
Job file::

    [[stage]]
    stage = "train"
    inputs = { training = "training/convex2d" }
    output = "models/cdi_nn_2d"
    [stage.params]
    recipe = "cdi_nn_2d"
    epochs = [20]
    training = { lr_schedule = "cosine", augment = "grid" }
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cdiplatform.nn.config import RECIPES, ModelConfig
from cdiplatform.pipeline.stage import Input, TaskStage, config_field, register, resolve_device

__all__ = ["Train"]

_STREAMED = ("inputs", "amplitude", "phase")


@register
class Train(TaskStage):
    """Train CDI NN (2D) or 3D-CDI-NN (3D), checkpointing into the catalog every epoch."""

    name = "train"
    inputs = (Input("training", kinds=("training",), streamed=_STREAMED),)
    output_kind = "model"
    uses_torch = True
    draws = "per stage: the weight initialization, the data order of every epoch, dropout and augmentation"

    @dataclass(frozen=True)
    class Params:
        #: the network and its training (ModelConfig); ``recipe`` names one of cdiplatform.nn.RECIPES
        model: ModelConfig = config_field(RECIPES["cdi_nn_2d"], recipes=RECIPES)
        #: epochs of each phase of the schedule (one number in 2D, four in 3D); empty: the recipe's
        epochs: list[int] = ()
        #: torch.use_deterministic_algorithms, so that a resumed training equals an uninterrupted one
        deterministic: bool = True
        #: "auto" (cuda when there is one), "cpu" or "cuda"
        device: str = "auto"

    @staticmethod
    def config(params: Any, *, oversampling: tuple[float, float] | None = None, seed: int = 0) -> ModelConfig:
        """The :class:`~cdiplatform.nn.ModelConfig` trained: the parameters' with the schedule's epochs,
        the training data's oversampling and the seed drawn from the job's."""
        model = params.model
        training = model.training
        if params.epochs:
            if len(params.epochs) != len(training.schedule):
                raise ValueError(f"{model.arch} has {len(training.schedule)} schedule phase(s), "
                                 f"epochs gives {len(params.epochs)}: {list(params.epochs)}")
            if min(params.epochs) < 0:
                raise ValueError(f"epochs must be >= 0, got {list(params.epochs)}")
            training = replace(training, schedule=tuple(replace(p, epochs=int(e))
                                                        for p, e in zip(training.schedule, params.epochs)))
        return model.replace(training=replace(training, seed=seed), oversampling=oversampling)

    def validate(self, params, inputs) -> None:
        if params.model.training is None:
            raise ValueError("the model has no training table")
        if params.model.training.seed != 0:
            raise ValueError("training.seed is not a parameter: a training's seed comes from the job's seed")
        ndim = inputs["training"].attrs.get("ndim")
        if ndim != params.model.ndim:
            raise ValueError(f"a {params.model.ndim}D {params.model.arch} cannot train on a {ndim}D training set")
        self.config(params)  # the epochs fit the schedule

    def run(self, params, ctx) -> dict[str, Any]:
        from cdiplatform.nn import BlockDataset, build_model, state_to_arrays, train, weights_hash

        ds = ctx.inputs["training"]
        arrays = ctx.streams["training"]
        ranges = ds.attrs["splits"]
        over = ds["oversampling"].values
        finite = over[np.isfinite(over)]
        oversampling = (float(finite.min()), float(finite.max())) if finite.size else None
        seed = self.seed()
        config = self.config(params, oversampling=oversampling, seed=seed)
        valid = ctx.valid["training"]
        train_idx = valid[(valid >= ranges["train"][0]) & (valid < ranges["train"][1])]
        val_idx = valid[(valid >= ranges["validation"][0]) & (valid < ranges["validation"][1])]
        batch = config.training.batch_size
        train_data = BlockDataset(arrays, batch_size=batch, indices=train_idx, shuffle=True, seed=seed)
        val_data = BlockDataset(arrays, batch_size=batch, indices=val_idx, shuffle=False, seed=seed)
        device = resolve_device(params.device)
        model = build_model(config, seed=seed)
        record = ctx.records["training"]
        base = {
            "architecture": config.arch,
            "config": config.to_dict(),
            "training_set": {"node": record["node"], "content_hash": record["content_hash"],
                             "train": len(train_idx), "validation": len(val_idx)},
            "device": device,
            "phase_mapping": {"scale": config.phase_scale, "offset": config.phase_offset},
        }
        t0 = time.perf_counter()
        timings: list[dict[str, float]] = []

        def checkpoint(arrays_: dict[str, np.ndarray], info: dict[str, Any]) -> None:
            timings.append({k: float(info[k]) for k in ("data_wait_s", "train_s", "val_s") if k in info})
            model_arrays = {k[len("model/"):]: v for k, v in arrays_.items() if k.startswith("model/")}
            ctx.writer.write(arrays_, {**base, "weights_hash": weights_hash(model_arrays),
                                       "training_history": _history(info["history"]),
                                       "epochs_done": int(info["epoch"]) + 1}, complete=False)

        history = train(model, train_data, val_data, config=config.training, device=device, callback=checkpoint,
                        resume=ctx.resume, deterministic=params.deterministic)
        weights = state_to_arrays(model)
        digest = weights_hash(weights)
        wait = sum(t.get("data_wait_s", 0.0) for t in timings)
        step = sum(t.get("train_s", 0.0) for t in timings)
        ctx.writer.write({f"model/{k}": v for k, v in weights.items()},
                         {**base, "weights_hash": digest, "training_history": _history(history),
                          "epochs_done": config.training.epochs,
                          "timing": {"seconds": time.perf_counter() - t0, "data_wait_s": wait, "train_s": step}},
                         complete=True)
        return {"weights_hash": digest, "epochs": config.training.epochs,
                "final_val_loss": (history.get("val_loss") or [float("nan")])[-1]}


def _history(history: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [float(x) for x in v] for k, v in history.items()}
