"""Build hook: record the git commit and dirty flag inside the built package.

An installed copy has no ``.git``; ``cdiplatform.catalog.provenance`` reads
``_build_info.json`` to still know which commit it was built from.
"""

import json
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class BuildPyWithCommit(build_py):
    def run(self) -> None:
        super().run()
        info = {
            "commit": _git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        }
        target = Path(self.build_lib) / "cdiplatform" / "_build_info.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(info))


setup(cmdclass={"build_py": BuildPyWithCommit})
