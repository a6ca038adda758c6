"""The report: a static HTML site of a catalog's benchmarks, results and post-processing.

>>> from cdiplatform.report import build_report
>>> site = build_report("catalogs/quickstart.zarr", out="catalogs/quickstart.report")  # doctest: +SKIP
>>> site.index  # doctest: +SKIP
PosixPath('catalogs/quickstart.report/index.html')

:func:`build_report` reads benchmark nodes (``scan x method``), the result
nodes they name, the post-processing nodes made from those, and the
collections (truth, scan metadata), and writes a summary page and a page per
scan with figures by matplotlib (:mod:`cdiplatform.report.figures`) and HTML
from the package's jinja2 templates. What is missing is listed, never fatal.
"""

from cdiplatform.report.names import safe_name
from cdiplatform.report.site import ReportSite, build_report

__all__ = ["ReportSite", "build_report", "safe_name"]
