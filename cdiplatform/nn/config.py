"""What a network is: its architecture, the data conventions it was trained with and its hyperparameters.

A :class:`ModelConfig` is plain data (JSON-able through :meth:`ModelConfig.to_dict`),
stored with the weights of every model so that a model is rebuilt, checked and
fed exactly as it was trained:

- the architecture (``arch``, ``ndim``, ``size``, ``widths``...),
- the input normalization (``sqrt(intensity)`` scaled to a maximum of 1 per scan),
- the output mapping of the phase channel (``phi = phase_scale * p + phase_offset``,
  radians, ``p`` in ``[0, 1]`` the sigmoid output),
- the oversampling range of the training data (linear, per axis),
- the training hyperparameters (:class:`TrainConfig`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARCHITECTURES",
    "RECIPES",
    "INPUT_NORMALIZATION",
    "ModelConfig",
    "SchedulePhase",
    "TrainConfig",
    "cdi_nn_2d_config",
    "cdi_nn_3d_config",
]

#: Architectures that :func:`cdiplatform.nn.build_model` knows.
ARCHITECTURES = ("cdi_nn_2d", "cdi_nn_3d")

#: The only input normalization implemented: ``sqrt(I) / max(sqrt(I))`` per scan.
INPUT_NORMALIZATION = "sqrt_intensity_max1"

#: Module groups of the networks that a schedule phase can train.
MODULE_GROUPS = ("encoder", "shape_decoder", "phase_decoder", "shape_net", "phase_net")

#: Loss terms that a schedule phase can weight.
LOSS_TERMS = ("amplitude", "phase", "physics")

#: Activations of the hidden convolutions.
ACTIVATIONS = ("relu", "leaky_relu")

#: Learning-rate schedules within a phase.
LR_SCHEDULES = ("constant", "cosine")

#: Weightings of the phase loss term over the grid.
PHASE_WEIGHTINGS = ("uniform", "amplitude", "support")
#: augmentations of :attr:`TrainConfig.augment`
AUGMENTATIONS = ("none", "grid", "permutations")

#: Fixed scalings a network applies to its normalized input before the first convolution.
INPUT_SCALINGS = ("linear", "log")


@dataclass(frozen=True)
class SchedulePhase:
    """One phase of a sequential training schedule.

    Parameters
    ----------
    name : str
        Label recorded in the history.
    epochs : int
        Number of epochs of this phase.
    train : tuple of str
        Module groups whose parameters are trained; all others are frozen
        (``requires_grad=False``, and in eval mode so their dropout is off).
    loss : dict of str to float
        Weights of the loss terms (``amplitude``, ``phase``, ``physics``);
        missing terms weigh 0.
    """

    name: str
    epochs: int
    train: tuple[str, ...]
    loss: dict[str, float]

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"schedule phase {self.name!r}: epochs must be >= 0, got {self.epochs}")
        for group in self.train:
            if group not in MODULE_GROUPS:
                raise ValueError(
                    f"schedule phase {self.name!r}: unknown module group {group!r}; "
                    f"known: {', '.join(MODULE_GROUPS)}"
                )
        for term in self.loss:
            if term not in LOSS_TERMS:
                raise ValueError(
                    f"schedule phase {self.name!r}: unknown loss term {term!r}; "
                    f"known: {', '.join(LOSS_TERMS)}"
                )
        object.__setattr__(self, "train", tuple(self.train))
        object.__setattr__(self, "loss", {k: float(v) for k, v in self.loss.items()})


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of a training run.

    Parameters
    ----------
    schedule : tuple of SchedulePhase
        Phases run one after the other; a fresh Adam optimizer starts each phase.
    batch_size : int
        Scans per optimizer step.
    learning_rate : float
        Adam learning rate.
    betas : tuple of float
        Adam ``(beta1, beta2)``.
    weight_decay : float
        Adam weight decay (L2).
    lr_schedule : {"constant", "cosine"}
        ``cosine``: within each phase of ``E`` epochs, epoch ``e`` runs at
        ``learning_rate * (1 + cos(pi e / E)) / 2``.
    supervised_loss : {"bce", "mae"}
        Per-pixel loss of the amplitude and phase channels: binary
        cross-entropy (CDI NN 2018) or mean absolute error (3D-CDI-NN 2021).
    phase_weighting : {"uniform", "amplitude", "support"}
        ``amplitude``: the phase term is a mean weighted by the target
        amplitude (the phase counts where there is matter), not a mean over
        the whole grid; ``support``: a plain mean over the target's support
        (amplitude above 10% of its maximum), surface voxels counting as much
        as inner ones.
    augment : {"none", "grid", "permutations"}
        Apply one random symmetry of the grid to each training batch, to
        inputs and targets alike: ``grid``, any of the axis flips about the
        centre ``N // 2`` and axis permutations (8 in 2D, 48 in 3D);
        ``permutations``, the axis permutations alone (2 in 2D, 6 in 3D). The
        diffraction of a flipped or transposed object is the flipped or
        transposed diffraction, so every augmented pair is exact; whether it
        is a plausible new sample depends on the data: a Bragg phase
        ``G . u`` with ``G`` along the grid's (1, 1, 1) is kept by every
        transpose and moved to another reflection by a flip. ``True`` and
        ``False`` (configs stored before the choice existed) read as
        ``grid`` and ``none``.
    twin_invariant : bool
        Take the supervised terms of each scan against its target or the
        target's twin ``conj(rho(-r))``, whichever is closer (see
        :func:`cdiplatform.nn.losses.loss_terms`): the two diffract identically, and
        with a fixed target the network learns a blur of both.
    seed : int
        Seeds the weight initialization and, with the epoch number, the data
        order of every epoch (so resuming reproduces it).
    num_workers : int
        DataLoader worker processes (part of the data order: keep it when resuming).
    prefetch_factor : int
        Batches each worker prepares ahead.
    """

    schedule: tuple[SchedulePhase, ...]
    batch_size: int = 256
    learning_rate: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    supervised_loss: str = "bce"
    phase_weighting: str = "uniform"
    augment: str = "none"
    twin_invariant: bool = False
    seed: int = 0
    num_workers: int = 0
    prefetch_factor: int = 4

    def __post_init__(self) -> None:
        phases = tuple(p if isinstance(p, SchedulePhase) else SchedulePhase(**p) for p in self.schedule)
        if not phases:
            raise ValueError("TrainConfig.schedule is empty")
        object.__setattr__(self, "schedule", phases)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.supervised_loss not in ("bce", "mae"):
            raise ValueError(f"supervised_loss must be 'bce' or 'mae', got {self.supervised_loss!r}")
        if self.phase_weighting not in PHASE_WEIGHTINGS:
            raise ValueError(f"phase_weighting must be one of {PHASE_WEIGHTINGS}, got {self.phase_weighting!r}")
        if isinstance(self.augment, bool):
            object.__setattr__(self, "augment", "grid" if self.augment else "none")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def epochs(self) -> int:
        """Total number of epochs over all phases."""
        return sum(p.epochs for p in self.schedule)

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based, over the whole schedule)."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        index = self.phase_of_epoch(epoch)
        start = sum(p.epochs for p in self.schedule[:index])
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (epoch - start) / self.schedule[index].epochs))

    def phase_of_epoch(self, epoch: int) -> int:
        """Index in :attr:`schedule` of the phase that runs epoch ``epoch`` (0-based)."""
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch {epoch} is outside the schedule of {self.epochs} epochs")
        end = 0
        for i, phase in enumerate(self.schedule):
            end += phase.epochs
            if epoch < end:
                return i
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture, data conventions and training hyperparameters of a network.

    Parameters
    ----------
    arch : {"cdi_nn_2d", "cdi_nn_3d"}
        ``cdi_nn_2d``: two separate encoder-decoders (shape, phase), Cherukara
        et al. 2018. ``cdi_nn_3d``: one encoder, two decoders, Chan et al. 2021.
    ndim : int
        Spatial dimensions of the grid (2 or 3).
    size : int
        Grid points per axis (input and output: ``(size,) * ndim``); must be
        divisible by ``2 ** len(widths)``.
    widths : tuple of int
        Channels of the encoder levels; each level is ``convs_per_level`` 3x3(x3)
        convolutions with ReLU then a 2x max pooling. Decoders mirror it.
    convs_per_level : int
        Convolutions per level.
    dropout : float
        Dropout probability on the input and after every hidden convolution.
    activation : {"relu", "leaky_relu"}
        Activation after every hidden convolution (leaky: slope 0.01).
    batch_norm : bool
        Batch normalization between every hidden convolution and its
        activation. Neither paper's text needs it, but without it the reduced
        3D-CDI-NN collapses to an all-zero amplitude on CPU-sized training
        sets (see docs/nn.md).
    input_normalization : str
        How network inputs are made from intensities (see :data:`INPUT_NORMALIZATION`).
    input_scaling : {"linear", "log"}
        What the network does with its normalized input ``x`` (magnitude, max 1)
        before its first convolution: nothing, or a logarithmic compression
        ``log(1 + x / input_floor) / log(1 + 1 / input_floor)``, still 0 at 0 and
        1 at 1, that lifts the weak fringes far from the Bragg peak (where the
        strain shows) to the scale of the peak. Part of the network, so every
        caller feeds it the same normalized magnitudes.
    input_floor : float
        Magnitude (relative to the maximum) below which ``log`` scaling is
        about linear.
    phase_scale, phase_offset : float
        Phase output mapping, radians: ``phi = phase_scale * p + phase_offset``.
    support_threshold : float
        Where the normalized target amplitude is at or below it, the target
        phase is set to 0 (the phase of empty space is undefined).
    oversampling : tuple of float or None
        ``(min, max)`` linear oversampling (per axis) of the training data, as
        estimated by :func:`cdiplatform.nn.estimate_oversampling`; ``None`` if unknown.
    oversampling_tolerance : float
        Factor by which a scan's oversampling may lie outside that range before
        inference refuses it.
    training : TrainConfig or None
        Hyperparameters the weights were trained with.
    """

    arch: str
    ndim: int
    size: int = 32
    widths: tuple[int, ...] = (32, 64, 128)
    convs_per_level: int = 2
    dropout: float = 0.0
    activation: str = "relu"
    batch_norm: bool = False
    input_normalization: str = INPUT_NORMALIZATION
    input_scaling: str = "linear"
    input_floor: float = 1e-3
    phase_scale: float = 2 * math.pi
    phase_offset: float = -math.pi
    support_threshold: float = 0.0
    oversampling: tuple[float, float] | None = None
    oversampling_tolerance: float = 1.25
    training: TrainConfig | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; known: {', '.join(ARCHITECTURES)}")
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {self.ndim}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths}")
        if self.size % (2 ** len(self.widths)):
            raise ValueError(
                f"size {self.size} is not divisible by 2**{len(self.widths)} (one 2x pooling per level)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.input_normalization != INPUT_NORMALIZATION:
            raise ValueError(
                f"unknown input normalization {self.input_normalization!r}; known: {INPUT_NORMALIZATION!r}"
            )
        if self.input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {self.input_scaling!r}")
        if not 0.0 < self.input_floor < 1.0:
            raise ValueError(f"input_floor must be in (0, 1), got {self.input_floor}")
        if self.oversampling is not None:
            lo, hi = (float(v) for v in self.oversampling)
            if not 0 < lo <= hi:
                raise ValueError(f"oversampling range must be 0 < min <= max, got {self.oversampling}")
            object.__setattr__(self, "oversampling", (lo, hi))
        if isinstance(self.training, dict):
            object.__setattr__(self, "training", TrainConfig(**self.training))

    @property
    def grid(self) -> tuple[int, ...]:
        """Input and output grid shape, ``(size,) * ndim``."""
        return (self.size,) * self.ndim

    def architecture(self) -> dict[str, Any]:
        """The fields that determine the weights' names and shapes."""
        return {
            "arch": self.arch,
            "ndim": self.ndim,
            "size": self.size,
            "widths": list(self.widths),
            "convs_per_level": self.convs_per_level,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
        }

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        training = data.get("training")
        if isinstance(training, dict):
            training = dict(training)
            training["schedule"] = tuple(SchedulePhase(**p) for p in training["schedule"])
            data["training"] = TrainConfig(**training)
        return cls(**data)


def cdi_nn_2d_config(
    *, epochs: int = 50, widths: tuple[int, ...] = (32, 64, 128), **training: Any
) -> ModelConfig:
    """CDI NN (Cherukara et al. 2018): 32x32, widths 32-64-128, BCE, Adam, batch 256.

    The shape and phase networks are independent, so training them together
    on the sum of their losses is training each on its own.
    """
    train = TrainConfig(
        schedule=(
            SchedulePhase(
                "shape_and_phase", epochs, ("shape_net", "phase_net"), {"amplitude": 1.0, "phase": 1.0}
            ),
        ),
        **{"batch_size": 256, "supervised_loss": "bce", **training},
    )
    return ModelConfig(arch="cdi_nn_2d", ndim=2, size=32, widths=widths, dropout=0.0, training=train)


def cdi_nn_3d_config(
    *,
    reduced: bool = False,
    epochs: tuple[int, int, int, int] = (20, 20, 20, 20),
    physics_weight: float = 1.0,
    **training: Any,
) -> ModelConfig:
    """3D-CDI-NN (Chan et al. 2021): 32^3, widths 64-128-256, dropout 10%, MAE + physics-aware loss.

    ``reduced=True`` gives widths 8-16-32 (trains on a CPU). The schedule is
    the paper's: encoder + shape decoder; phase decoder alone; encoder + phase
    decoder; everything together.
    """
    shape = {"amplitude": 1.0, "physics": 0.0}
    phase = {"phase": 1.0, "physics": physics_weight}
    everything = {"amplitude": 1.0, "phase": 1.0, "physics": physics_weight}
    schedule = (
        SchedulePhase("encoder_shape", epochs[0], ("encoder", "shape_decoder"), shape),
        SchedulePhase("phase_decoder", epochs[1], ("phase_decoder",), phase),
        SchedulePhase("encoder_phase", epochs[2], ("encoder", "phase_decoder"), phase),
        SchedulePhase("all", epochs[3], ("encoder", "shape_decoder", "phase_decoder"), everything),
    )
    train = TrainConfig(schedule=schedule, **{"batch_size": 32, "supervised_loss": "mae", **training})
    widths = (8, 16, 32) if reduced else (64, 128, 256)
    return ModelConfig(arch="cdi_nn_3d", ndim=3, size=32, widths=widths, dropout=0.1, training=train)


#: the networks of the papers by name, for ``recipe = "..."`` in a ``train`` stage
RECIPES: dict[str, ModelConfig] = {
    "cdi_nn_2d": cdi_nn_2d_config(epochs=20),
    "cdi_nn_3d": cdi_nn_3d_config(),
    "cdi_nn_3d_reduced": cdi_nn_3d_config(reduced=True),
}
