"""What a pipeline stage is: the contract between science code and the runner.

A stage maps a science function over chunks of scans. It never touches Dask
or storage itself: the runner (:mod:`cdiplatform.pipeline.runner`) resolves
and hashes its inputs, allocates the output node from the stage's
:class:`Plan`, screens out the scans that failed upstream, hands each task
the input scans of its chunk as loaded xarray datasets, and writes what
:meth:`Stage.compute` returns into whole, chunk-aligned regions.

Writing a stage::

    @register
    class Simulate2D(Stage):
        name = "simulate_2d"
        output_kind = "collection"
        draws = "per scan: the object's shape and phase"

        @dataclass(frozen=True)
        class Params:
            recipe: Convex2DRecipe = config_field(Convex2DRecipe())
            n_scans: int = 1024
            size: int = 32
            chunk: int = 512

        def plan(self, params, inputs):
            return Plan(n_scans=params.n_scans, chunk=params.chunk, variables={...})

        def compute(self, params, inputs, index, rngs):
            return ChunkResult(values={"intensity": ..., ...})

Inputs are declared with :class:`Input`: which node kinds fit, which
variables the stage reads per scan (the runner checks that they are finite
and screens out scans that failed upstream unless ``sees_failures``), and
whether a job gives one node or a list of them. The first per-scan input is
the *primary* one: the output has its scans, identities included; the other
per-scan inputs are joined to it on ``scan``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from cdiplatform.catalog import Var

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import xarray as xr

__all__ = ["ChunkResult", "Input", "Plan", "SetStage", "Stage", "TaskContext", "TaskStage", "Var", "config_field",
           "get_stage", "register", "registered_stages", "resolve_device"]


def resolve_device(name: str) -> str:
    """A torch stage's ``device`` parameter: ``"auto"`` is ``"cuda"`` where torch sees a GPU, else ``"cpu"``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


OutputKind = Literal["collection", "result", "training", "model", "benchmark", "raw"]


def config_field(default: Any, *, recipes: dict[str, Any] | None = None) -> Any:
    """Declare the science configuration of a stage's ``Params`` (one field per stage).

    A job's ``[stage.params]`` table sets it with the configuration's own
    field names, flat beside the execution settings (``chunk``, ``device``...);
    a nested dataclass field takes a sub-table (``shrink_wrap = { threshold =
    0.1 }``), or ``false`` for None. ``recipe = "<name>"`` starts from one of
    ``recipes`` and the other keys override it.
    """
    return field(default=default, metadata={"config": True, "recipes": recipes or {}})


@dataclass(frozen=True)
class Input:
    """An input a stage reads, named in the job's ``inputs`` table.

    Parameters
    ----------
    name : str
        Key in the job's ``inputs`` table.
    kinds : tuple of str
        Node kinds that fit (``collection``, ``result``, ``model``, ``training``,
        ``raw`` for a node set ``raw/<beamtime>/*``); empty: any.
    variables : tuple of str
        Variables the stage reads per scan and needs finite: a scan where one
        holds NaN or infinity fails with that reason before the stage sees it.
    optional : tuple of str
        Variables loaded too where the node has them.
    sees_failures : bool
        Hand the stage the scans that failed upstream (with their ``status``
        and ``reason``), instead of recording them as failed.
    many : bool
        The job gives a list of nodes (``methods = ["results/a", "results/b"]``);
        the stage receives a list of datasets, each joined on ``scan``.
    required : bool
        The job must name it.
    streamed : tuple of str
        Task stages only: variables handed to the stage as read-only array
        handles (``ctx.streams``), read block by block.
    joined : bool
        ``False`` (one node, not ``many``): a node with scans that is read whole, not joined on
        ``scan`` (a reference set whose scans are not the output's): every
        task receives it opened lazily, as it receives a model, and neither
        screens its scans nor checks its ``variables``; the stage does.
    """

    name: str
    kinds: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    sees_failures: bool = False
    many: bool = False
    required: bool = True
    streamed: tuple[str, ...] = ()
    joined: bool = True

    @property
    def loads_all(self) -> bool:
        return not self.variables and not self.optional


@dataclass(frozen=True)
class Plan:
    """The layout of a stage's output node, known before any work starts.

    Parameters
    ----------
    n_scans : int
        Length of the ``scan`` dimension; for a stage with a primary input,
        that input's scans (after ``select`` and ``input_index``).
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
        For each output scan, the position of the primary input's scan it
        reads (a shuffle); output scan ``i`` reads input scan ``i`` by default.
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
    """Base class of the pipeline stages; see the module docstring.

    Parameters
    ----------
    seed : numpy.random.SeedSequence, optional
        The stage's own random stream (the runner derives it from the job's
        seed and the output node); :meth:`random` draws from it.
    """

    name: ClassVar[str]
    #: dataclass of the stage's parameters; TOML values are checked against its field types
    Params: ClassVar[type]
    #: the inputs the job gives in its ``inputs`` table (an :class:`Input`, or a bare name for "any node")
    inputs: ClassVar[tuple[Input | str, ...]] = ()
    output_kind: ClassVar[OutputKind] = "collection"
    #: torch stages run on workers with the ``GPU`` resource when the cluster has any
    uses_torch: ClassVar[bool] = False
    #: method name stored on result nodes (``nn``, ``er_hio``...)
    method: ClassVar[str | None] = None
    #: what the stage draws at random, for the provenance ("" when it draws nothing)
    draws: ClassVar[str] = ""

    def __init__(self, *, seed: np.random.SeedSequence | None = None) -> None:
        self._seed = seed

    @classmethod
    def input_specs(cls) -> tuple[Input, ...]:
        return tuple(i if isinstance(i, Input) else Input(i) for i in cls.inputs)

    def random(self) -> np.random.Generator:
        """A generator of the stage's own stream (a split, a shuffle, weights); the same on every call."""
        if self._seed is None:
            raise RuntimeError(f"stage {self.name} was made without a seed; the runner gives it one")
        return np.random.default_rng(self._seed)

    def seed(self) -> int:
        """The stage's own stream as one 63-bit integer (for libraries seeded by a number, like torch)."""
        return int(self.random().integers(2**63 - 1))

    def validate(self, params: Any, inputs: dict[str, Any]) -> None:
        """Raise ``ValueError`` for parameters or inputs that cannot work, before any task runs."""

    def plan(self, params: Any, inputs: dict[str, Any]) -> Plan:
        raise NotImplementedError

    def compute(
        self,
        params: Any,
        inputs: dict[str, Any],
        index: np.ndarray,
        rngs: list[np.random.Generator],
    ) -> ChunkResult:
        """Compute the scans ``index`` (their identities: the output's ``scan`` values).

        ``inputs`` hold exactly those scans, loaded (a node-set input is a
        list of datasets, one per scan; a ``many`` input a list of datasets,
        each holding those scans; a whole input such as a model the node,
        lazily). ``rngs`` holds one generator per scan, derived from the job
        seed, the output node and the scan's identity only, so results do not
        depend on chunking, on workers or on the stage's place in the job.
        """
        raise NotImplementedError

    @classmethod
    def param_fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls.Params)}


def _map_here(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    return [fn(item) for item in items]


@dataclass
class TaskContext:
    """What a task stage's :meth:`TaskStage.run` receives besides its parameters.

    Attributes
    ----------
    inputs : dict of str to xarray.Dataset
        The input nodes, opened lazily.
    streams : dict of str to dict of str to array
        Per input, the ``streamed`` variables as read-only array handles
        (``.shape``, ``.chunks``, ``a[start:stop]``).
    valid : dict of str to ndarray of int
        Per input with per-scan status, the positions of the scans that are ok.
    records : dict of str to dict
        Per input, what the run recorded of it (node, content hash).
    writer : NodeWriter
        Replaces the output node atomically (checkpoints, the final node).
    resume : dict of str to ndarray, optional
        The arrays of the last checkpoint when a killed run is resumed.
    map : callable
        ``map(fn, items)``: ``[fn(item) for item in items]`` in order, as
        tasks spread over the cluster's workers when the stage runs on one
        (``fn`` and the items travel pickled; the task's thread waits
        without holding a worker's slot), else one after the other.
    """

    inputs: dict[str, Any]
    streams: dict[str, dict[str, Any]]
    valid: dict[str, np.ndarray]
    records: dict[str, dict[str, Any]]
    writer: Any
    resume: dict[str, np.ndarray] | None = None
    map: Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]] = _map_here


class TaskStage(Stage):
    """A stage that runs as one task and writes a whole node itself (a training).

    Instead of :meth:`plan` and :meth:`compute` it implements :meth:`run`.
    """

    output_kind: ClassVar[str] = "model"
    #: a view of its inputs' current content (a report): its identity follows their content hashes, and
    #: it is made again, without --new-run, whenever they change (a beamtime that grew)
    follows_content: ClassVar[bool] = False

    def run(self, params: Any, ctx: TaskContext) -> dict[str, Any]:
        """Do the work; return a small summary (shown and kept in the node's attributes)."""
        raise NotImplementedError


class SetStage(Stage):
    """A stage whose output is a node set, ``raw/<beamtime>/*``: one whole node per member, one task each.

    It implements :meth:`members` (which members the parameters name, in
    order; the driver calls it) and :meth:`make` (one member's dataset; a
    task calls it). Each member is written whole and atomically; a member
    already written by the same run is done, one that failed is tried again
    at the next run, and a new member (a scan recorded since) is simply one
    more task: the run's identity leaves the selection of members out
    (:attr:`selection`), so that a selection can grow.
    """

    output_kind: ClassVar[str] = "raw"
    #: the parameter that selects the members (left out of the run's identity)
    selection: ClassVar[str] = ""

    def members(self, params: Any, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        """``(member name, reason)`` for every member the parameters select, in order; a non-empty
        reason fails that member without a task (a scan the SPEC file does not hold, say)."""
        raise NotImplementedError

    def make(self, params: Any, member: str, *, beamtime: str) -> tuple[xr.Dataset, dict[str, Any], dict[str, Any]]:
        """``(dataset, attributes, encoding)`` of the member ``raw/<beamtime>/<member>`` (runs on a
        worker; raises for a bad member)."""
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
