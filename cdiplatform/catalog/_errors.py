"""Errors of the catalog piece (defined with the others in :mod:`cdiplatform.errors`)."""

from cdiplatform.errors import CatalogError, CatalogFullError, CatalogLockedError, NodeNotFoundError, SchemaError

__all__ = ["CatalogError", "CatalogFullError", "CatalogLockedError", "NodeNotFoundError", "SchemaError"]
