"""The catalog: the only piece that knows the on-disk layout.

>>> import cdiplatform
>>> cat = cdiplatform.open_catalog("catalogs/examples.zarr")  # doctest: +SKIP
>>> cat.nodes("collection")  # doctest: +SKIP
"""

from cdiplatform.catalog._catalog import Catalog, is_node_set, open_catalog, parse_node_ref
from cdiplatform.catalog._errors import CatalogError, CatalogLockedError, NodeNotFoundError, SchemaError
from cdiplatform.catalog.layout import NodeKind, check_node_path, node_kind
from cdiplatform.catalog.models import load_model_arrays, model_from_dataset, read_model, write_model
from cdiplatform.catalog.run_nodes import STATUS_FAILED, STATUS_MEANINGS, STATUS_OK, STATUS_PENDING, Var

__all__ = [
    "STATUS_FAILED",
    "STATUS_MEANINGS",
    "STATUS_OK",
    "STATUS_PENDING",
    "Catalog",
    "CatalogError",
    "CatalogLockedError",
    "NodeKind",
    "NodeNotFoundError",
    "SchemaError",
    "Var",
    "check_node_path",
    "is_node_set",
    "load_model_arrays",
    "model_from_dataset",
    "node_kind",
    "open_catalog",
    "parse_node_ref",
    "read_model",
    "write_model",
]
