"""SLURM cluster files in dask-jobqueue's own keys, checked key by key."""

from __future__ import annotations

from cdiplatform.errors import ClusterConfigError

import os
from pathlib import Path
from typing import Any

__all__ = ["load_slurm_config"]


def load_slurm_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a SLURM cluster file in dask-jobqueue's keys into ``SLURMCluster`` keywords.

    The file holds ``jobqueue: slurm: {...}`` exactly as dask-jobqueue's own
    configuration does (``cores``, ``memory``, ``processes``, ``walltime``,
    ``interface``, ``queue``, ``account``, ``job-extra-directives``,
    ``worker-extra-args``, ``job-script-prologue``...).

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

    if not isinstance(data, dict) or set(data) != {"jobqueue"}:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ClusterConfigError(
            f"SLURM cluster file {path} must hold exactly one top-level key 'jobqueue' "
            f"(with 'slurm' under it), found {found}"
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
    return kwargs


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
