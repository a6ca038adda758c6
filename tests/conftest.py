"""Fixtures shared by every piece's tests.

A test whose precondition is missing (LAMMPS, the shared data, SLURM) skips,
except under CI (``CI=true``) where it fails: use :func:`cdiplatform.testing.require`
(also given as the ``require`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdiplatform.testing import require as _require

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The reduced real scan (APS 34-ID-C, Au(111), scan 54), next to the repository.
SHARED_SCAN = REPO_ROOT.parent / "shared" / "data" / "aps34idc-au111-scan54"


@pytest.fixture(scope="session")
def require() -> Callable[[bool, str], None]:
    """``require(condition, why)``: skip if ``condition`` is false, fail under ``CI=true``."""
    return _require


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real scan folder ``<repo>/../shared/data/aps34idc-au111-scan54``."""
    _require(SHARED_SCAN.is_dir(), f"shared data {SHARED_SCAN} not found")
    return SHARED_SCAN


@pytest.fixture(scope="session")
def slurm():
    """A running single-node SLURM (started if needed); its :class:`SlurmInfo`."""
    from cdiplatform.testing.slurm import SlurmError, ensure_slurm

    try:
        info = ensure_slurm()
    except SlurmError as exc:
        _require(False, f"no SLURM: {exc}")
        raise  # unreachable: require skipped or failed
    return info


@pytest.fixture(scope="session")
def local_client() -> Iterator:
    """A ``distributed.Client`` on a LocalCluster of 2 worker processes, 1 thread each, with a dashboard."""
    from cdiplatform.pipeline.cluster import connect

    with connect("local", workers=2, threads_per_worker=1) as handle:
        yield handle.client
