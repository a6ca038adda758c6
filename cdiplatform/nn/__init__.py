"""Neural networks for phase retrieval: CDI NN (2D, 2018) and 3D-CDI-NN (3D, 2021).

Science code only: NumPy arrays and torch tensors in and out, batched along
the first axis; nothing here knows about Dask or zarr. See ``docs/nn.md``.
"""

from cdiplatform.nn.augment import apply_symmetry, n_symmetries
from cdiplatform.nn.config import (
    RECIPES,
    ModelConfig,
    SchedulePhase,
    TrainConfig,
    cdi_nn_2d_config,
    cdi_nn_3d_config,
)
from cdiplatform.nn.data import (
    SPLITS,
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
from cdiplatform.nn.inference import average_objects, load_model, predict, screen_scans
from cdiplatform.nn.losses import physics_loss, supervised_loss, twin_targets
from cdiplatform.nn.networks import CDINN2D, CDINN3D, CDINetwork, build_model
from cdiplatform.nn.training import apply_phase, train
from cdiplatform.nn.weights import WeightsMismatchError, load_arrays, state_to_arrays, weights_hash

__all__ = [
    "CDINN2D",
    "CDINN3D",
    "SPLITS",
    "BlockDataset",
    "CDINetwork",
    "ModelConfig",
    "SchedulePhase",
    "TrainConfig",
    "WeightsMismatchError",
    "apply_phase",
    "apply_symmetry",
    "assemble_training",
    "average_objects",
    "build_model",
    "RECIPES",
    "cdi_nn_2d_config",
    "cdi_nn_3d_config",
    "estimate_oversampling",
    "load_arrays",
    "load_model",
    "make_inputs",
    "make_loader",
    "make_targets",
    "n_symmetries",
    "phase_to_unit",
    "physics_loss",
    "predict",
    "screen_scans",
    "split_by_group",
    "state_to_arrays",
    "supervised_loss",
    "train",
    "twin_targets",
    "unit_to_phase",
    "weights_hash",
]
