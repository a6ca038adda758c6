"""``cdip report``: a static HTML report of a catalog's benchmarks and results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdiplatform.cli._console import err, say


def report(
    catalog: Annotated[Path, typer.Argument(help="catalog (.zarr)", metavar="CATALOG")],
    nodes: Annotated[list[str] | None, typer.Argument(
        help="benchmarks/..., results/... or collections/... nodes (default: every benchmark and result)",
        show_default=False, metavar="[NODES]...")] = None,
    out: Annotated[Path | None, typer.Option(
        metavar="DIR",
        help="folder of the site (default: <catalog>.report beside the catalog); an earlier report there is replaced",
    )] = None,
    scan_pages: Annotated[int | None, typer.Option(
        metavar="N", help="at most N scan pages per group, its first scans (default: every scan)")] = None,
) -> None:
    """Write the HTML report of a catalog: a summary page and a page per scan, openable without a server."""
    from cdiplatform.report import build_report

    target = out or catalog.parent / f"{catalog.stem}.report"
    site = build_report(catalog, nodes=nodes or None, out=target, scan_pages=scan_pages)
    for note in site.notes:
        say(note, prefix="missing: ", prefix_style="yellow", console=err)
    say(f"{site.index} ({len(site.pages)} pages, {len(site.figures)} figures)", prefix="report: ",
        prefix_style="bold")
