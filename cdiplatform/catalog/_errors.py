"""Errors of the catalog piece."""

from __future__ import annotations

__all__ = ["CatalogError", "NodeNotFoundError", "SchemaError"]


class CatalogError(ValueError):
    """A catalog path, node or operation that cannot work; the message names it."""


class NodeNotFoundError(CatalogError, KeyError):
    """A node that the catalog does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SchemaError(CatalogError):
    """A dataset that does not fit the schema of the node kind it is written to."""
