"""Errors of the catalog piece (defined with the others in :mod:`cdiplatform.errors`)."""

from cdiplatform.errors import CatalogError, CatalogLockedError, NodeNotFoundError, SchemaError

__all__ = ["CatalogError", "CatalogLockedError", "NodeNotFoundError", "SchemaError"]
