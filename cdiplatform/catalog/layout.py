"""The catalog's on-disk layout: which groups hold which kind of node.

A catalog is one zarr v3 hierarchy (``catalogs/<name>.zarr``)::

    raw/<beamtime>/<scan>     a measured scan as it came (dims frame, det_y, det_x)
    collections/<id>          scans on one grid (dims scan, [z,] y, x)
    results/<run>             one method's results on a collection's grid
    models/<id>               trained networks: weights as arrays, config in attributes
    training/<id>             assembled training sets with their split
    benchmarks/<id>           methods compared scan by scan (dims scan, method)
    reports/<id>              the record of an HTML report written beside the catalog

Every node is a zarr group that ``xarray.open_zarr(path, group=node)`` reads.
"""

from __future__ import annotations

from typing import Literal

from cdiplatform.catalog._errors import CatalogError

__all__ = ["KINDS", "NodeKind", "node_kind", "check_node_path"]

NodeKind = Literal["raw", "collection", "result", "model", "training", "benchmark", "report"]

#: top-level group -> (node kind, depth of a node below the group)
KINDS: dict[str, tuple[NodeKind, int]] = {
    "raw": ("raw", 2),
    "collections": ("collection", 1),
    "results": ("result", 1),
    "models": ("model", 1),
    "training": ("training", 1),
    "benchmarks": ("benchmark", 1),
    "reports": ("report", 1),
}

#: marks the root group of a catalog, with the layout version
FORMAT_ATTR = "cdiplatform_catalog"
FORMAT_VERSION = 1


def check_node_path(node: str) -> str:
    """Normalize ``node`` (``collections/sim2d``) and check it fits the layout."""
    parts = [p for p in node.strip("/").split("/") if p]
    if not parts or parts[0] not in KINDS:
        raise CatalogError(
            f"node {node!r} is not in the catalog layout: it must start with one of "
            f"{', '.join(k + '/' for k in KINDS)}"
        )
    depth = KINDS[parts[0]][1]
    if len(parts) != depth + 1:
        shape = "/".join([parts[0]] + ["<name>"] * depth)
        raise CatalogError(f"node {node!r} does not have the form {shape}")
    for p in parts[1:]:
        if p.startswith(".") or any(c in p for c in " \\:"):
            raise CatalogError(f"node {node!r}: the name {p!r} may not start with '.' or hold spaces, ':' or '\\'")
    return "/".join(parts)


def node_kind(node: str) -> NodeKind:
    """The kind of the node at ``node``."""
    return KINDS[check_node_path(node).split("/")[0]][0]
