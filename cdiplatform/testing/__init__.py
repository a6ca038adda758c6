"""Helpers for testing cdiplatform and code built on it (like ``zarr.testing``).

:func:`require` skips a test whose precondition is missing, but fails it under
continuous integration (environment variable ``CI=true``), where every
precondition must hold. :mod:`cdiplatform.testing.slurm` starts a real
single-node SLURM for tests of the SLURM path. :mod:`cdiplatform.testing.beamtime`
writes a synthetic beamtime as a real one (SPEC file, TIFF frames, fields).
"""

from cdiplatform.testing.require import in_ci, require
from cdiplatform.testing.slurm import SlurmError, SlurmInfo, ensure_slurm, stop_slurm

__all__ = ["SlurmError", "SlurmInfo", "ensure_slurm", "in_ci", "require", "stop_slurm"]
