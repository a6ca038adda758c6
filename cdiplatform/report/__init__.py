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
:func:`benchmark_error_histograms` draws one benchmark's error histograms,
as its summary page shows them, into a single PNG (the figures of docs/nn.md).
"""

from cdiplatform.report.names import safe_name
from cdiplatform.report.site import ReportSite, benchmark_error_histograms, build_report

__all__ = ["ReportSite", "benchmark_error_histograms", "build_report", "safe_name"]
