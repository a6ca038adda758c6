"""Skip a test when a precondition is missing, except under CI where it must fail."""

from __future__ import annotations

import os

__all__ = ["in_ci", "require"]


def in_ci() -> bool:
    """Whether we run under continuous integration (environment variable ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require(condition: bool, why: str) -> None:
    """Go on only if ``condition`` holds: otherwise skip the test, or fail it under CI.

    Parameters
    ----------
    condition : bool
        The precondition (LAMMPS importable, shared data present, SLURM up...).
    why : str
        What is missing, shown as the skip or failure reason.
    """
    if condition:
        return
    import pytest

    if in_ci():
        pytest.fail(f"{why} (CI=true: missing preconditions fail instead of skipping)", pytrace=False)
    pytest.skip(why)
