"""Stage ``report``: the static HTML report of a run's benchmarks and results, at the end of a job.

One task on the driver's catalog (:func:`cdiplatform.report.build_report`),
which spreads the scan pages over the workers (a few pages a task):
a summary page and a page per scan, written beside the catalog
(``<catalog>.report`` by default), and a record node ``reports/<id>`` with
where it is and what it shows. Made again whenever the nodes it shows
changed (new scans, a retried scan), without ``--new-run``. Job file::

    [[stage]]
    stage = "report"
    inputs = { nodes = ["benchmarks/scan54", "results/scan54_orthogonal"] }
    output = "reports/scan54"
    [stage.params]
    scan_pages = 50     # at most 50 scan pages per group (the summary lists every scan); -1: all
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdiplatform.pipeline.stage import Input, TaskStage, register

__all__ = ["Report"]


@register
class Report(TaskStage):
    """The HTML report of benchmarks, results and post-processing, openable without a server."""

    name = "report"
    inputs = (Input("nodes", kinds=("benchmark", "result", "collection"), many=True),)
    output_kind = "report"
    follows_content = True

    @dataclass(frozen=True)
    class Params:
        #: folder of the site; "" : <catalog>.report beside the output catalog
        out: str = ""
        #: at most this many scan pages per group (its first scans; the summary lists them all); -1: every scan
        scan_pages: int = -1

    def validate(self, params, inputs) -> None:
        if params.scan_pages < -1:
            raise ValueError(f"report: scan_pages must be >= 0, or -1 for every scan, got {params.scan_pages}")

    def run(self, params, ctx) -> dict[str, Any]:
        from cdiplatform.report import build_report

        refs = [r["node"] for r in ctx.records["nodes"]["nodes"]]
        catalog = refs[0].rsplit(":", 1)[0]
        nodes = [r.rsplit(":", 1)[1] for r in refs]
        target = Path(ctx.writer.catalog)
        out = Path(params.out) if params.out else target.parent / f"{target.stem}.report"
        site = build_report(catalog, nodes=nodes, out=out, map_pages=ctx.map,  # scan pages on every worker
                            scan_pages=None if params.scan_pages < 0 else params.scan_pages)
        ctx.writer.write({}, {"index": str(site.index), "pages": len(site.pages), "figures": len(site.figures),
                              "notes": list(site.notes), "shows": refs}, complete=True)
        return {"index": str(site.index), "pages": len(site.pages)}
