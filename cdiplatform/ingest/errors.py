"""The one error type of :mod:`cdiplatform.ingest`."""

from __future__ import annotations

import os

__all__ = ["IngestError"]


class IngestError(ValueError):
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

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        scan: int | str | None = None,
    ) -> None:
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
        return (_rebuild, (self.detail, self.path, self.scan))


def _rebuild(message, path, scan):
    return IngestError(message, path=path, scan=scan)
