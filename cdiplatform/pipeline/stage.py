"""What a pipeline stage is: the contract between science code and the runner.

A stage maps a science function over chunks of scans. It never touches Dask or
zarr itself: the runner (:mod:`cdiplatform.pipeline.runner`) allocates the
output node from the stage's :class:`Plan`, hands each task the input scans of
its chunk as in-memory xarray datasets, and writes what :meth:`Stage.compute`
returns into whole, chunk-aligned regions together with the bookkeeping
variables ``status``, ``reason``, ``done``, ``seconds`` and ``digest``.

Writing a stage::

    @register
    class Simulate2D(Stage):
        name = "simulate_2d"
        output_kind = "collection"

        @dataclass(frozen=True)
        class Params:
            n_scans: int = 1024
            size: int = 32

        def plan(self, params, inputs):
            return Plan(n_scans=params.n_scans, chunk=256, variables={...})

        def compute(self, params, inputs, index, rngs):
            return ChunkResult(values={"intensity": ..., ...})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import xarray as xr

__all__ = ["ChunkResult", "Plan", "Stage", "TaskStage", "Var", "get_stage", "register", "registered_stages",
           "resolve_device"]


def resolve_device(name: str) -> str:
    """A torch stage's ``device`` parameter: ``"auto"`` is ``"cuda"`` where torch sees a GPU, else ``"cpu"``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

OutputKind = Literal["collection", "result", "training"]


@dataclass(frozen=True)
class Var:
    """A data variable of a stage's output, per scan.

    Parameters
    ----------
    dims : tuple of str
        Dimensions after ``scan`` (``()`` for a per-scan scalar).
    shape : tuple of int
        Sizes of those dimensions.
    dtype : str
        NumPy dtype name; use ``"str"`` for variable-length text.
    attrs : dict
        CF-style attributes (``units``, ``long_name``).
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.dims) != len(self.shape):
            raise ValueError(f"Var dims {self.dims} and shape {self.shape} differ in length")


@dataclass(frozen=True)
class Plan:
    """The layout of a stage's output node, known before any work starts.

    Parameters
    ----------
    n_scans : int
        Length of the ``scan`` dimension of the output.
    chunk : int
        Scans per task; also the zarr chunk along ``scan``.
    variables : dict of str to Var
        Data variables the stage computes.
    coords : dict
        Coordinates known up front: per-scan ones as 1-D arrays of length
        ``n_scans`` on ``scan``, grid ones as ``(dim, values)`` tuples.
    attrs : dict
        Attributes of the output node (for example the grid or the method).
    input_index : ndarray of int, optional
        For each output scan, the position of the input scan it reads (a
        shuffle, a selection); output scan ``i`` reads input ``i`` by default.
    """

    n_scans: int
    chunk: int
    variables: dict[str, Var]
    coords: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    input_index: np.ndarray | None = None


@dataclass
class ChunkResult:
    """What one task computed for its scans.

    Parameters
    ----------
    values : dict of str to ndarray
        One array per variable of the plan, leading axis the chunk's scans.
    failed : dict of int to str
        Positions within the chunk (0-based) of scans that failed, with the
        reason; their values are ignored and stored as fill values.
    """

    values: dict[str, np.ndarray]
    failed: dict[int, str] = field(default_factory=dict)


class Stage:
    """Base class of the pipeline stages; see the module docstring."""

    name: ClassVar[str]
    #: dataclass of the stage's parameters; TOML values are checked against its field types
    Params: ClassVar[type]
    #: names of the input nodes the job must give in its ``inputs`` table
    inputs: ClassVar[tuple[str, ...]] = ()
    output_kind: ClassVar[OutputKind] = "collection"
    #: torch stages run on workers with the ``GPU`` resource when the cluster has any
    uses_torch: ClassVar[bool] = False
    #: method name stored on result nodes (``nn``, ``er_hio``...)
    method: ClassVar[str | None] = None

    def validate(self, params: Any, inputs: dict[str, xr.Dataset]) -> None:
        """Raise ``ValueError`` for parameters or inputs that cannot work, before any task runs."""

    def plan(self, params: Any, inputs: dict[str, xr.Dataset]) -> Plan:
        raise NotImplementedError

    def compute(
        self,
        params: Any,
        inputs: dict[str, xr.Dataset],
        index: np.ndarray,
        rngs: list[np.random.Generator],
    ) -> ChunkResult:
        """Compute the scans ``index`` (global scan positions, int64).

        ``inputs`` hold exactly those scans, loaded; an input given as a node
        set (``raw/<beamtime>/*``) is a list of datasets, one per scan of
        ``index``, and in :meth:`plan` the list of all members. ``rngs`` holds one random
        generator per scan, derived from the job seed and the scan position
        only, so results do not depend on chunking or on workers.
        """
        raise NotImplementedError

    @classmethod
    def param_fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls.Params)}


class TaskStage(Stage):
    """A stage that runs as one task and writes a whole node itself (a training).

    Instead of :meth:`plan` and :meth:`compute` it implements :meth:`run`,
    which receives a ``writer`` (:class:`cdiplatform.pipeline.tasks.NodeWriter`)
    to save checkpoints into its output node atomically, and the arrays of the
    last checkpoint when a killed run is resumed.
    """

    output_kind: ClassVar[str] = "model"

    def run(self, params: Any, inputs: dict[str, xr.Dataset], writer: Any,
            resume: dict[str, np.ndarray] | None) -> dict[str, Any]:
        """Do the work; return a small summary (shown and kept in the node's attributes)."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage available to job files under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"stage {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered_stages() -> dict[str, type[Stage]]:
    from cdiplatform.pipeline import stages  # noqa: F401  (imports register every stage)

    return dict(_REGISTRY)


def get_stage(name: str) -> type[Stage]:
    """A registered stage by name, or a user's own stage class given as ``"package.module:Class"``."""
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"cannot load stage {name!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Stage)):
            raise KeyError(f"{name!r} is not a Stage class")
        return cls
    known = registered_stages()
    if name not in known:
        raise KeyError(f"unknown stage {name!r}; known stages: {', '.join(sorted(known))}")
    return known[name]
