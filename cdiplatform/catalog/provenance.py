"""Provenance: what every node records about how it came to be.

Attributes written on every node (JSON values):

``software``  name, version, commit, dirty flag (from git, or from the file
              recorded when the package was built, for installed copies)
``job``       job file path, its SHA-256, job name, run id
``stage``     stage name, parameters (JSON) and their hash
``inputs``    node references and their content hashes (from the digests the
              writers recorded, never by re-reading the data)
``seed``, ``device``, ``cluster``, ``started``, ``finished``, ``history``
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["software_info", "stable_hash", "now", "history_line", "file_sha256"]


def now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def stable_hash(obj: Any) -> str:
    """SHA-256 (hex) of a JSON-serializable object, independent of key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(repo: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git work tree holding ``repo``, or None."""
    commit = _git("rev-parse", "HEAD", cwd=repo)
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=repo)
    return {"commit": commit, "dirty": bool(status)}


@lru_cache(maxsize=1)
def software_info() -> dict[str, Any]:
    """Name, version, commit and dirty flag of this copy of cdiplatform.

    A source checkout asks git; an installed copy reads ``_build_info.json``,
    written into the package when it was built (see ``setup.py``).
    """
    from cdiplatform import __version__

    package_dir = Path(__file__).resolve().parents[1]
    state = git_state(package_dir.parent) if (package_dir.parent / ".git").exists() else None
    source = "git"
    if state is None:
        source = "build"
        try:
            state = json.loads(resources.files("cdiplatform").joinpath("_build_info.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            state, source = {"commit": "unknown", "dirty": None}, "unknown"
    return {
        "name": "cdiplatform",
        "version": __version__,
        "commit": state.get("commit", "unknown"),
        "dirty": state.get("dirty"),
        "commit_source": source,
        "python": platform.python_version(),
    }


def history_line(action: str) -> str:
    """A CF-style ``history`` entry: ``<UTC time>: <action> (cdiplatform <version>)``."""
    info = software_info()
    return f"{now()}: {action} (cdiplatform {info['version']} {info['commit'][:12]})"
