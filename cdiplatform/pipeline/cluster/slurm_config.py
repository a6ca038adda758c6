"""SLURM cluster files in dask-jobqueue's own keys, checked key by key, and cdiplatform's section.

A file holds ``jobqueue: slurm: {...}`` exactly as dask-jobqueue's own
configuration does, so that it can also serve as ``~/.config/dask/jobqueue.yaml``,
and optionally a top-level ``cdiplatform:`` section that only cdiplatform reads
(Dask's configuration accepts any top-level key)::

    cdiplatform:
      adapt:               # adaptive scaling of this file's jobs
        minimum-jobs: 1    # kept running (and replaced when they end) even when idle
        maximum-jobs: 8    # never more, however much work waits
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdiplatform.errors import ClusterConfigError

__all__ = ["SlurmFile", "check_adapt", "load_slurm_config", "read_slurm_file"]

_TOP_KEYS = ("jobqueue", "cdiplatform")
_ADAPT_KEYS = ("minimum-jobs", "maximum-jobs")


@dataclass(frozen=True)
class SlurmFile:
    """A SLURM cluster file, read and checked.

    Attributes
    ----------
    path : pathlib.Path
    kwargs : dict
        ``SLURMCluster`` keywords from ``jobqueue.slurm`` (see :func:`load_slurm_config`).
    adapt : (int, int) or None
        ``cdiplatform.adapt``: minimum and maximum number of jobs; None when the file has none.
    """

    path: Path
    kwargs: dict[str, Any]
    adapt: tuple[int, int] | None


def load_slurm_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a SLURM cluster file in dask-jobqueue's keys into ``SLURMCluster`` keywords.

    The file holds ``jobqueue: slurm: {...}`` exactly as dask-jobqueue's own
    configuration does (``cores``, ``memory``, ``processes``, ``walltime``,
    ``interface``, ``queue``, ``account``, ``job-extra-directives``,
    ``worker-extra-args``, ``job-script-prologue``...), and optionally the
    section ``cdiplatform`` (:func:`read_slurm_file`).

    Parameters
    ----------
    path : path-like
        The YAML file.

    Returns
    -------
    dict
        Keyword arguments for ``dask_jobqueue.SLURMCluster`` (hyphens turned
        into underscores, ``name`` into ``job_name``); keys the file leaves out
        are absent, so that Dask's configuration supplies them.

    Raises
    ------
    ValueError
        The file cannot be read or parsed, lacks ``jobqueue.slurm``, or holds
        an unknown key or a value of the wrong type (the message names the
        file and the key).
    """
    return read_slurm_file(path).kwargs


def read_slurm_file(path: str | os.PathLike[str]) -> SlurmFile:
    """Read and check a SLURM cluster file: its ``jobqueue.slurm`` keywords and its ``cdiplatform`` section.

    Raises
    ------
    ValueError
        As :func:`load_slurm_config`; also an unknown key in ``cdiplatform``, or
        an ``adapt`` whose bounds are not integers with 0 <= minimum <= maximum, 1 <= maximum.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterConfigError(f"cannot read SLURM cluster file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ClusterConfigError(f"invalid YAML in SLURM cluster file {path}{at}: {problem}") from None

    if not isinstance(data, dict) or "jobqueue" not in data or not set(data) <= set(_TOP_KEYS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ClusterConfigError(
            f"SLURM cluster file {path} must hold the top-level key 'jobqueue' (with 'slurm' under it) "
            f"and optionally 'cdiplatform', found {found}"
        )
    jq = data["jobqueue"]
    if not isinstance(jq, dict) or "slurm" not in jq or set(jq) != {"slurm"}:
        found = sorted(jq) if isinstance(jq, dict) else type(jq).__name__
        raise ClusterConfigError(f"SLURM cluster file {path}: 'jobqueue' must hold only 'slurm', found {found}")
    conf = jq["slurm"] or {}
    if not isinstance(conf, dict):
        raise ClusterConfigError(f"SLURM cluster file {path}: 'jobqueue.slurm' must be a mapping")

    known = _jobqueue_slurm_keys()
    kwargs: dict[str, Any] = {}
    for key, value in conf.items():
        if key not in known:
            raise ClusterConfigError(
                f"SLURM cluster file {path}: unknown key 'jobqueue.slurm.{key}' "
                f"(dask-jobqueue knows: {', '.join(sorted(known))})"
            )
        _check_value(path, key, value)
        kwargs["job_name" if key == "name" else key.replace("-", "_")] = value
    return SlurmFile(path, kwargs, _adapt_section(path, data.get("cdiplatform")))


def _adapt_section(path: Path, section: Any) -> tuple[int, int] | None:
    if section is None:
        return None
    if not isinstance(section, dict) or not set(section) <= {"adapt"}:
        found = sorted(section) if isinstance(section, dict) else type(section).__name__
        raise ClusterConfigError(f"SLURM cluster file {path}: 'cdiplatform' may hold only 'adapt', found {found}")
    adapt = section.get("adapt")
    if adapt is None:
        return None
    if not isinstance(adapt, dict) or set(adapt) != set(_ADAPT_KEYS):
        found = sorted(adapt) if isinstance(adapt, dict) else repr(adapt)
        raise ClusterConfigError(
            f"SLURM cluster file {path}: cdiplatform.adapt must hold minimum-jobs and maximum-jobs, found {found}")
    return check_adapt((adapt["minimum-jobs"], adapt["maximum-jobs"]), where=f"SLURM cluster file {path}: "
                       "cdiplatform.adapt")


def check_adapt(bounds: Any, *, where: str = "adapt") -> tuple[int, int]:
    """``(minimum, maximum)`` jobs of adaptive scaling, checked: integers, 0 <= minimum <= maximum, maximum >= 1.

    Raises
    ------
    ClusterConfigError (a ValueError)
        Naming ``where`` and the bad bounds.
    """
    ok = (isinstance(bounds, (tuple, list)) and len(bounds) == 2
          and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds))
    if not ok or not 0 <= bounds[0] <= bounds[1] or bounds[1] < 1:
        raise ClusterConfigError(
            f"{where} must be (minimum, maximum) jobs, integers with 0 <= minimum <= maximum and maximum >= 1, "
            f"got {bounds!r}")
    return int(bounds[0]), int(bounds[1])


def _jobqueue_slurm_keys() -> set[str]:
    import dask
    import dask_jobqueue  # noqa: F401  (loads jobqueue's defaults into dask.config)

    return set(dask.config.get("jobqueue.slurm")) | {"header-skip"}


_INT_KEYS = ("cores", "processes", "death-timeout", "job-cpu")
_LIST_KEYS = ("job-extra-directives", "worker-extra-args", "job-script-prologue", "job-directives-skip")
_STR_KEYS = ("walltime", "queue", "account", "interface", "name", "python", "log-directory", "shebang")


def _check_value(path: Path, key: str, value: Any) -> None:
    from dask.utils import parse_bytes

    where = f"SLURM cluster file {path}: jobqueue.slurm.{key}"
    if value is None:
        return
    if key in _INT_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ClusterConfigError(f"{where} must be a positive integer, got {value!r}")
    if key in _LIST_KEYS and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        raise ClusterConfigError(f"{where} must be a list of strings, got {value!r}")
    if key in _STR_KEYS and not isinstance(value, str):
        raise ClusterConfigError(f"{where} must be a string, got {value!r}")
    if key in ("memory", "job-mem"):
        try:
            parse_bytes(str(value))
        except ValueError:
            raise ClusterConfigError(f"{where} is not a memory size like '4GiB', got {value!r}") from None
    if key == "scheduler-options" and not isinstance(value, dict):
        raise ClusterConfigError(f"{where} must be a mapping, got {value!r}")
