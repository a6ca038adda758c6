"""The errors cdiplatform raises on purpose, all from one base.

Like zarr-python's, every error is a :class:`CdipError` and also the builtin it
resembles (a bad job file is a ``ValueError``, a missing node a ``KeyError``),
so that callers can catch either. ``cdip`` prints any :class:`CdipError` as
one line, without a traceback, and exits with its :attr:`~CdipError.exit_code`.

::

    CdipError
    +-- JobError (ValueError)            a job file or a parameter that cannot work
    +-- CatalogError (ValueError)        a catalog path, node or operation
    |   +-- NodeNotFoundError (KeyError)
    |   +-- SchemaError                  a dataset that does not fit its node kind
    |   +-- CatalogLockedError           another run holds the catalog
    |   +-- CatalogFullError             the catalog's disk is full
    +-- IngestError (ValueError)         a measured file that cannot be read
    +-- ReportError (ValueError)         a report that cannot be made as asked
    +-- ClusterError                     a cluster that cannot be started or reached
        +-- ClusterConfigError (ValueError)         a bad cluster spec or SLURM file
        +-- ClusterUnreachableError (ConnectionError)  no scheduler, no sbatch
"""

from __future__ import annotations

import os

__all__ = ["CatalogError", "CatalogFullError", "CatalogLockedError", "CdipError", "ClusterConfigError", "ClusterError",
           "ClusterUnreachableError", "IngestError", "JobError", "NodeNotFoundError", "ReportError", "SchemaError"]


class CdipError(Exception):
    """Base of every error cdiplatform raises on purpose; its message is one line that names what is wrong."""

    #: exit status of ``cdip`` when this error ends a command
    exit_code: int = 2


class JobError(CdipError, ValueError):
    """A job file, or a parameter of one of its stages, that cannot run; the message names file and key."""


class CatalogError(CdipError, ValueError):
    """A catalog path, node or operation that cannot work; the message names it."""


class NodeNotFoundError(CatalogError, KeyError):
    """A node that the catalog does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SchemaError(CatalogError):
    """A dataset that does not fit the schema of the node kind it is written to."""


class CatalogLockedError(CatalogError):
    """Another run is writing into the catalog; the message names it and how to break a stale lock."""

    exit_code = 3


class CatalogFullError(CatalogError):
    """The disk of a catalog is full: the message names the catalog, its free space and what the stage needs.

    What was written stays (whole chunks); free space and run again to resume.
    """

    exit_code = 4


class IngestError(CdipError, ValueError):
    """Measured data that cannot be read or prepared as asked.

    The message names the file, the scan and what is wrong; the file and the
    scan are also kept as attributes so that a runner can record them.

    Parameters
    ----------
    message : str
        What is wrong, in words.
    path : str or os.PathLike, optional
        The file (or file pattern) at fault.
    scan : int or str, optional
        The SPEC scan number (``54``, or ``"54.2"`` for a repeated number).
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None,
                 scan: int | str | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.scan = scan
        self.detail = message
        where = []
        if self.path is not None:
            where.append(f"file {self.path}")
        if scan is not None:
            where.append(f"scan {scan}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)

    def __reduce__(self):  # keep path/scan across pickling (Dask workers)
        return (_rebuild_ingest_error, (self.detail, self.path, self.scan))


def _rebuild_ingest_error(message, path, scan):
    return IngestError(message, path=path, scan=scan)


class ClusterError(CdipError):
    """A Dask cluster that cannot be started or reached; the message says which and why."""


class ClusterConfigError(ClusterError, ValueError):
    """A cluster spec or a SLURM cluster file that cannot work; the message names the file and key."""


class ClusterUnreachableError(ClusterError, ConnectionError):
    """No scheduler answers at an address, or no SLURM to submit workers to."""


class ReportError(CdipError, ValueError):
    """A report that cannot be made as asked (a node of a kind it cannot show, an output folder that is
    not a report); the message names it."""
