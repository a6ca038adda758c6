"""cdiplatform: batch reconstruction of coherent X-ray diffraction imaging data on Dask."""

__version__ = "0.1.0"

from cdiplatform.catalog import Catalog, open_catalog  # noqa: E402

__all__ = ["Catalog", "__version__", "open_catalog"]
