"""``cdip catalog``: list and show nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from cdiplatform.catalog import CatalogError, open_catalog

catalog_app = typer.Typer(help="Look into a catalog.", no_args_is_help=True)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _open(path: Path):
    try:
        return open_catalog(path)
    except CatalogError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2)


@catalog_app.command("ls")
def ls(path: Annotated[Path, typer.Argument(help="catalog (.zarr)")]) -> None:
    """List the nodes of a catalog with their sizes and state."""
    cat = _open(path)
    table = Table(title=str(path))
    for col in ("node", "dims", "scans", "ok", "failed", "run / id"):
        table.add_column(col, overflow="fold")
    for node in cat.nodes():
        ds = cat.open(node)
        dims = ", ".join(f"{k}={v}" for k, v in ds.sizes.items())
        n_ok = n_failed = ""
        if "status" in ds:
            status = ds["status"].values
            n_ok, n_failed = str(int((status == 1).sum())), str(int((status == 2).sum()))
        run = cat.attrs(node).get("run", {}).get("id", "")
        table.add_row(node, dims, str(ds.sizes.get("scan", "")), n_ok, n_failed, run)
    out.print(table)


@catalog_app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="catalog (.zarr)")],
    node: Annotated[str, typer.Argument(help="node, e.g. results/quickstart-er_hio")],
    provenance: Annotated[bool, typer.Option("--provenance", help="print the full provenance")] = False,
) -> None:
    """Show a node: its dataset, its run, and the scans that failed and why."""
    cat = _open(path)
    try:
        ds = cat.open(node)
        attrs = cat.attrs(node)
    except CatalogError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2)
    shown = ds.copy()
    shown.attrs = {k: v for k, v in ds.attrs.items() if k not in ("provenance",)}
    out.print(shown)
    prov = attrs.get("provenance", {})
    if prov:
        sw = prov.get("software", {})
        out.print(f"made by {prov.get('stage', {}).get('name', '?')} in job {prov.get('job', {}).get('name', '?')}"
                  f" (run {prov.get('run_id', '?')}), cdiplatform {sw.get('version', '?')} "
                  f"{str(sw.get('commit', '?'))[:12]}{' dirty' if sw.get('dirty') else ''}, "
                  f"{prov.get('started', '?')} .. {prov.get('finished', '?')}", highlight=False)
    if provenance:
        out.print_json(json.dumps(prov, default=str))
    if "status" in ds:
        bad = cat.failed(node)
        if bad.sizes["scan"]:
            table = Table(title=f"{bad.sizes['scan']} failed scan(s)")
            table.add_column("scan")
            table.add_column("reason")
            for s, why in zip(bad["scan"].values, bad["reason"].values):
                table.add_row(str(s), str(why))
            out.print(table)
        else:
            n = int(np.sum(ds["status"].values == 1))
            out.print(f"{n} of {ds.sizes['scan']} scans ok, none failed")


@catalog_app.command("copy")
def copy(
    source: Annotated[str, typer.Argument(help="CATALOG:NODE to copy")],
    target: Annotated[Path, typer.Argument(help="catalog to copy it into (created when missing)")],
    overwrite: Annotated[bool, typer.Option(help="replace the node if the target has it")] = False,
) -> None:
    """Copy a node, with its provenance, into another catalog (a trained model into examples.zarr, say)."""
    from cdiplatform.catalog import parse_node_ref

    try:
        path, node = parse_node_ref(source)
        open_catalog(target, mode="a").copy_from(open_catalog(path), node, overwrite=overwrite)
    except CatalogError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2)
    out.print(f"copied {source} into {target}")
