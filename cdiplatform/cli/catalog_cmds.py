"""``cdip catalog``: list and show nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from cdiplatform.catalog import node_kind, open_catalog
from cdiplatform.cli._console import out, say, text

catalog_app = typer.Typer(help="Look into a catalog.", no_args_is_help=True)


def _open(path: Path):
    return open_catalog(path)


def _dims(ds) -> str:
    """A node's dimensions; a model's many per-array dimensions as a count of arrays."""
    if "scan" not in ds.dims and len(ds.sizes) > 6:
        return f"{len(ds.data_vars)} arrays"
    return ", ".join(f"{k}={v}" for k, v in ds.sizes.items())


@catalog_app.command("ls")
def ls(path: Annotated[Path, typer.Argument(help="catalog (.zarr)")]) -> None:
    """List the nodes of a catalog with their sizes and state."""
    cat = _open(path)
    table = Table(title=text(path))
    for col in ("node", "dims", "scans", "ok", "failed", "run / id"):
        table.add_column(col, overflow="fold")
    for node in cat.nodes():
        ds = cat.open(node)
        dims = f"{len(ds.data_vars)} arrays" if node_kind(node) == "model" else _dims(ds)
        n_ok = n_failed = ""
        if "status" in ds:
            status = ds["status"].values
            n_ok, n_failed = str(int((status == 1).sum())), str(int((status == 2).sum()))
        run = cat.attrs(node).get("run", {}).get("id", "")
        table.add_row(*(text(v) for v in (node, dims, ds.sizes.get("scan", ""), n_ok, n_failed, run)))
    out.print(table)


@catalog_app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="catalog (.zarr)")],
    node: Annotated[str, typer.Argument(help="node, e.g. results/quickstart-er_hio")],
    provenance: Annotated[bool, typer.Option("--provenance", help="print the full provenance")] = False,
) -> None:
    """Show a node: its dataset, its run, and the scans that failed and why."""
    cat = _open(path)
    ds = cat.open(node)
    attrs = cat.attrs(node)
    shown = ds.copy()
    shown.attrs = {k: v for k, v in ds.attrs.items() if k not in ("provenance",)}
    out.print(shown)
    prov = attrs.get("provenance", {})
    if prov:
        sw = prov.get("software", {})
        say(f"made by {prov.get('stage', {}).get('name', '?')} in job {prov.get('job', {}).get('name', '?')}"
            f" (run {prov.get('run_id', '?')}), cdiplatform {sw.get('version', '?')} "
            f"{str(sw.get('commit', '?'))[:12]}{' dirty' if sw.get('dirty') else ''}, "
            f"{prov.get('started', '?')} .. {prov.get('finished', '?')}")
    if provenance:
        out.print_json(json.dumps(prov, default=str))
    if "status" in ds:
        bad = cat.failed(node)
        if bad.sizes["scan"]:
            table = Table(title=f"{bad.sizes['scan']} failed scan(s)")
            table.add_column("scan")
            table.add_column("reason", overflow="fold")
            for scan, why in zip(bad["scan"].values, bad["reason"].values):
                table.add_row(text(scan), text(why))
            out.print(table)
        else:
            n = int(np.sum(ds["status"].values == 1))
            say(f"{n} of {ds.sizes['scan']} scans ok, none failed")


@catalog_app.command("copy")
def copy(
    source: Annotated[str, typer.Argument(help="CATALOG:NODE to copy")],
    target: Annotated[Path, typer.Argument(help="catalog to copy it into (created when missing)")],
    overwrite: Annotated[bool, typer.Option(help="replace the node if the target has it")] = False,
) -> None:
    """Copy a node, with its provenance, into another catalog (a trained model into examples.zarr, say)."""
    from cdiplatform.catalog import parse_node_ref

    path, node = parse_node_ref(source)
    source_catalog = open_catalog(path)  # checked before the target is made
    open_catalog(target, mode="a").copy_from(source_catalog, node, overwrite=overwrite)
    say(f"copied {source} into {target}")
