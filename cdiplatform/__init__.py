"""cdiplatform: batch reconstruction of coherent X-ray diffraction imaging data on Dask.

>>> import cdiplatform
>>> cat = cdiplatform.open_catalog("catalogs/examples.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Catalog", "__version__", "open_catalog"]


def __getattr__(name: str):
    # the catalog (xarray, zarr) loads on first use, so that the science pieces import light
    if name in ("Catalog", "open_catalog"):
        from cdiplatform import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module 'cdiplatform' has no attribute {name!r}")
