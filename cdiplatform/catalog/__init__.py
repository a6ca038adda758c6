"""The catalog: the only piece that knows the on-disk layout.

>>> import cdiplatform
>>> cat = cdiplatform.open_catalog("catalogs/examples.zarr")  # doctest: +SKIP
>>> cat.nodes("collection")  # doctest: +SKIP
"""

from cdiplatform.catalog._catalog import (
    STATUS_FAILED,
    STATUS_MEANINGS,
    STATUS_OK,
    STATUS_PENDING,
    Catalog,
    open_catalog,
    parse_node_ref,
)
from cdiplatform.catalog._errors import CatalogError, NodeNotFoundError, SchemaError
from cdiplatform.catalog.layout import NodeKind, check_node_path, node_kind
from cdiplatform.catalog.models import load_model_arrays, read_model, write_model

__all__ = [
    "STATUS_FAILED",
    "STATUS_MEANINGS",
    "STATUS_OK",
    "STATUS_PENDING",
    "Catalog",
    "CatalogError",
    "NodeKind",
    "NodeNotFoundError",
    "SchemaError",
    "check_node_path",
    "load_model_arrays",
    "node_kind",
    "open_catalog",
    "parse_node_ref",
    "read_model",
    "write_model",
]
