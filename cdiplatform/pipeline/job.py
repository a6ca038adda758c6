"""Job files: TOML that names the stages, their parameters and the nodes they read and write.

::

    [job]
    name = "quickstart"             # part of every run id
    seed = 20261122                 # one random stream per scan derives from it
    catalog = "catalogs/quickstart.zarr"   # where outputs go (--catalog overrides)

    [[stage]]
    stage = "simulate_2d"           # a registered stage
    output = "collections/sim2d"    # node written, in the job's catalog
    [stage.params]
    n_scans = 2048

    [[stage]]
    stage = "pad"
    inputs = { collection = "collections/sim2d" }   # NODE or CATALOG:NODE
    output = "collections/sim2d_pad64"

Every problem is reported as one line naming the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdiplatform.catalog import CatalogError, check_node_path, is_node_set, node_kind
from cdiplatform.catalog.provenance import file_sha256
from cdiplatform.errors import JobError
from cdiplatform.pipeline.params import build_params, params_to_dict
from cdiplatform.pipeline.stage import SetStage, Stage, get_stage

__all__ = ["Job", "JobError", "NodeRef", "StageSpec", "load_job", "params_to_dict"]


@dataclass(frozen=True)
class NodeRef:
    """A node in a catalog; ``catalog`` None means the job's output catalog."""

    node: str
    catalog: Path | None = None

    def resolve(self, default: Path) -> tuple[Path, str]:
        return (self.catalog or default), self.node

    def __str__(self) -> str:
        return f"{self.catalog}:{self.node}" if self.catalog else self.node


@dataclass(frozen=True)
class StageSpec:
    """One ``[[stage]]`` table, checked."""

    index: int
    stage: type[Stage]
    params: Any
    #: one node per input, or a list of nodes for an input the stage declares ``many``
    inputs: dict[str, NodeRef | list[NodeRef]]
    output: str
    #: positions along ``scan`` of the inputs to read (``select = "0:64"``); all when None
    select: tuple[int | None, int | None, int | None] | None = None
    #: seconds a scan may take (``time_limit = 600``): the scans are then computed in a child process,
    #: stopped at the limit, and a scan that exceeds it fails alone with that reason; None: no limit
    time_limit: float | None = None

    @property
    def label(self) -> str:
        return f"stage[{self.index}] {self.stage.name}"


@dataclass(frozen=True)
class Job:
    """A checked job file."""

    path: Path
    name: str
    seed: int
    catalog: Path
    stages: list[StageSpec] = field(default_factory=list)
    sha256: str = ""
    #: the values of the job's variables this run used (``[job.vars]`` and ``--set``)
    variables: dict[str, Any] = field(default_factory=dict)


def _parse_ref(text: Any, *, where: str, base: Path) -> NodeRef:
    if not isinstance(text, str):
        raise JobError(f"{where}: expected a node reference string, got {text!r}")
    try:
        if ":" in text:
            cat, node = text.rsplit(":", 1)
            cat_path = Path(cat)
            return NodeRef(check_node_path(node), cat_path if cat_path.is_absolute() else base / cat_path)
        return NodeRef(check_node_path(text))
    except CatalogError as exc:
        raise JobError(f"{where}: {exc}") from None


def _parse_inputs(stage: type[Stage], raw: Any, *, where: str, base: Path) -> dict[str, NodeRef | list[NodeRef]]:
    if not isinstance(raw, dict):
        raise JobError(f"{where}: inputs must be a table of name = \"NODE\"")
    specs = {i.name: i for i in stage.input_specs()}
    names = ", ".join(specs) or "none"
    missing = [k for k, i in specs.items() if i.required and k not in raw]
    if missing:
        raise JobError(f"{where}: missing input {missing[0]!r} (the stage reads {names})")
    extra = sorted(set(raw) - set(specs))
    if extra:
        raise JobError(f"{where}: unknown input {extra[0]!r} (the stage reads {names})")
    inputs: dict[str, NodeRef | list[NodeRef]] = {}
    for name, value in raw.items():
        spec = specs[name]
        key = f"{where}: inputs.{name}"
        if spec.many:
            items = value if isinstance(value, list) else [value]
            if not items:
                raise JobError(f"{key}: names no node")
            inputs[name] = [_parse_ref(v, where=f"{key}[{i}]", base=base) for i, v in enumerate(items)]
        else:
            if isinstance(value, list):
                raise JobError(f"{key}: takes one node, not a list")
            inputs[name] = _parse_ref(value, where=key, base=base)
        for ref in inputs[name] if isinstance(inputs[name], list) else [inputs[name]]:
            kind = node_kind(ref.node)
            if spec.kinds and kind not in spec.kinds:
                raise JobError(f"{key}: {ref.node!r} is a {kind} node; the stage reads a {' or '.join(spec.kinds)} here")
            if kind == "raw" and not is_node_set(ref.node):
                raise JobError(f"{key}: name the raw scans of a beamtime as raw/<beamtime>/*, not {ref.node!r}")
    return inputs


def _parse_select(text: Any, *, where: str) -> tuple[int | None, int | None, int | None] | None:
    if text is None:
        return None
    parts = str(text).split(":") if isinstance(text, str) else []
    try:
        if not 2 <= len(parts) <= 3:
            raise ValueError
        values = tuple(int(p) if p.strip() else None for p in parts) + (None,) * (3 - len(parts))
    except ValueError:
        raise JobError(f"{where}: expected positions along scan as \"start:stop\" or \"start:stop:step\", "
                       f"got {text!r}") from None
    return values


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_override(text: str) -> tuple[str, Any]:
    """``name=value`` (``--set``): the value read as a TOML value where it is one, else as text."""
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
        raise JobError(f"--set {text!r}: expected NAME=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return name.strip(), parsed


def _substitute(value: Any, variables: dict[str, Any], *, path: Path) -> Any:
    """``${name}`` in every string of the job, from ``[job.vars]`` and ``--set``."""
    if isinstance(value, dict):
        return {k: _substitute(v, variables, path=path) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, path=path) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in _VAR.findall(value):
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise JobError(f"{path}: ${{{name}}} is not a variable of the job (its [job.vars]: {known})")
    whole = _VAR.fullmatch(value)
    if whole:  # the value itself, with its type
        return variables[whole.group(1)]
    return _VAR.sub(lambda m: str(variables[m.group(1)]), value)


def load_job(path: str | Path, *, root: Path | None = None, overrides: dict[str, Any] | None = None) -> Job:
    """Read and check a job file.

    Parameters
    ----------
    path : path-like
        The TOML file.
    root : path, optional
        Folder that relative catalog paths start from; the current directory by default.
    overrides : dict, optional
        Values of the job's variables (``[job.vars]``, used as ``${name}``), as ``cdip run --set`` gives them.
    """
    path = Path(path)
    base = Path.cwd() if root is None else Path(root)
    try:
        text = path.read_text()
    except OSError as exc:
        raise JobError(f"{path}: cannot read the job file ({exc.strerror or exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"{path}: not valid TOML ({exc})") from None
    head = doc.get("job")
    variables = dict(head.get("vars", {})) if isinstance(head, dict) else {}
    unknown_vars = sorted(set(overrides or {}) - set(variables))
    if unknown_vars:
        raise JobError(f"{path}: --set {unknown_vars[0]}: not a variable of the job "
                       f"(its [job.vars]: {', '.join(sorted(variables)) or 'none'})")
    variables.update(overrides or {})
    if isinstance(head, dict):
        head.pop("vars", None)
    doc = _substitute(doc, variables, path=path)
    return job_from_document(doc, path=path, base=base, sha256=file_sha256(path), variables=variables)


def job_from_document(doc: dict[str, Any], *, path: Path, base: Path, sha256: str,
                      variables: dict[str, Any] | None = None) -> Job:
    """A checked job from a parsed document (a job file's tables; see :func:`load_job`)."""
    unknown = sorted(set(doc) - {"job", "stage"})
    if unknown:
        raise JobError(f"{path}: unknown table {unknown[0]!r} (expected [job] and [[stage]])")
    head = doc.get("job")
    if not isinstance(head, dict):
        raise JobError(f"{path}: missing the [job] table")
    for key in ("name",):
        if key not in head:
            raise JobError(f"{path}: [job] misses the key {key!r}")
    extra = sorted(set(head) - {"name", "seed", "catalog", "description"})
    if extra:
        raise JobError(f"{path}: [job] has the unknown key {extra[0]!r}")
    name = head["name"]
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise JobError(f"{path}: job.name must be a word of letters, digits, '-' and '_', got {name!r}")
    seed = head.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise JobError(f"{path}: job.seed must be a non-negative integer, got {seed!r}")
    catalog = Path(head.get("catalog", f"catalogs/{name}.zarr"))
    if not catalog.is_absolute():
        catalog = base / catalog

    tables = doc.get("stage", [])
    if not isinstance(tables, list) or not tables:
        raise JobError(f"{path}: the job names no [[stage]]")
    specs = []
    outputs: set[str] = set()
    for i, table in enumerate(tables):
        where = f"{path}: stage[{i}]"
        extra = sorted(set(table) - {"stage", "params", "inputs", "output", "description", "select", "time_limit"})
        if extra:
            raise JobError(f"{where}: unknown key {extra[0]!r}")
        if "stage" not in table:
            raise JobError(f"{where}: missing the key 'stage'")
        try:
            stage = get_stage(table["stage"])
        except KeyError as exc:
            raise JobError(f"{where}: {exc.args[0]}") from None
        where = f"{path}: stage[{i}] {stage.name}"
        params = build_params(stage, table.get("params", {}), where=f"{where}: params")
        inputs = _parse_inputs(stage, table.get("inputs", {}), where=where, base=base)
        if "output" not in table:
            raise JobError(f"{where}: missing the key 'output'")
        try:
            output = check_node_path(str(table["output"]))
        except CatalogError as exc:
            raise JobError(f"{where}: output: {exc}") from None
        if is_node_set(output) != issubclass(stage, SetStage):
            wants = "a node set raw/<beamtime>/*" if issubclass(stage, SetStage) else "one node"
            raise JobError(f"{where}: output {output!r}: {stage.name} writes {wants}")
        if node_kind(output) != stage.output_kind:
            raise JobError(f"{where}: output {output!r} is a {node_kind(output)} node; "
                           f"{stage.name} writes a {stage.output_kind}")
        if output in outputs:
            raise JobError(f"{where}: output {output!r} is written by an earlier stage too")
        outputs.add(output)
        select = _parse_select(table.get("select"), where=f"{where}: select")
        limit = table.get("time_limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0):
            raise JobError(f"{where}: time_limit must be a positive number of seconds per scan, got {limit!r}")
        specs.append(StageSpec(index=i, stage=stage, params=params, inputs=inputs, output=output, select=select,
                               time_limit=None if limit is None else float(limit)))
    return Job(path=path, name=name, seed=seed, catalog=catalog, stages=specs, sha256=sha256,
               variables=dict(variables or {}))


def one_stage_job(stage: str, *, params: dict[str, Any], output: str, catalog: Path, name: str,
                  origin: str) -> Job:
    """A job of one stage, made by a command rather than read from a file (``cdip ingest``), checked alike."""
    from cdiplatform.catalog.provenance import stable_hash

    doc = {"job": {"name": name, "catalog": str(catalog)},
           "stage": [{"stage": stage, "output": output, "params": params}]}
    return job_from_document(doc, path=Path(origin), base=Path.cwd(), sha256=stable_hash(doc))
