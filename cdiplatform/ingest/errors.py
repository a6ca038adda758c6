"""The one error type of :mod:`cdiplatform.ingest` (defined with the others in :mod:`cdiplatform.errors`)."""

from cdiplatform.errors import IngestError

__all__ = ["IngestError"]
