"""``cdip status CATALOG``: what a running or finished run has done, from another terminal.

It reads the catalog (never takes its lock), the lock file (who is writing)
and the newest run log (which stages, in which order, how far).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdiplatform.cli._console import out, say, text


def _counts(cat, node: str) -> tuple[int, int, int, int]:
    """(scans, ok, failed, pending) of a node as it stands now."""
    from cdiplatform.catalog import STATUS_FAILED, STATUS_OK, is_node_set

    if is_node_set(node):
        group = node[:-2]
        members = cat.group_attrs(group).get("members", {})
        ok = sum(1 for m in members.values() if m.get("state") == "ok")
        failed = sum(1 for m in members.values() if m.get("state") == "failed")
        return len(members), ok, failed, 0
    if node not in cat:
        return 0, 0, 0, 0
    state = cat.run_state(node)
    if state is None:
        complete = bool(cat.attrs(node).get("run", {}).get("complete", False))
        return 1, int(complete), 0, int(not complete)
    done, status = state
    ok = int((status == STATUS_OK).sum())
    failed = int((status == STATUS_FAILED).sum())
    return len(status), ok, failed, int(len(status) - ok - failed)


def status(catalog: Annotated[Path, typer.Argument(help="catalog (.zarr)")],
           failures: Annotated[int, typer.Option(help="failed scans to list per node")] = 10) -> None:
    """Show what the running (or the last) run on a catalog has done: per stage done, failed, pending."""
    from cdiplatform.catalog import is_node_set, open_catalog
    from cdiplatform.catalog.lock import read_lock
    from cdiplatform.pipeline.runlog import newest_log, read_log

    cat = open_catalog(catalog)
    holder = read_lock(catalog)
    if holder:
        say(f"running: job {holder.get('job')} (pid {holder.get('pid')} on {holder.get('host')}, since "
            f"{holder.get('started')}): {holder.get('command', '')}")
    else:
        say("no run is writing this catalog")
    log = newest_log(catalog)
    events = read_log(log) if log else []
    stages: dict[str, dict] = {}
    for e in events:
        if e["event"] in ("stage_start", "stage_end", "progress"):
            entry = stages.setdefault(e["node"], {"stage": e["stage"], "state": "running"})
            if e["event"] == "stage_end":
                entry["state"] = e["state"] if e["state"] == "complete" else "done"
                entry["seconds"] = e.get("seconds")
    ended = next((e for e in reversed(events) if e["event"] == "run_end"), None)
    if log:
        what = ("ended" + (f" with an error: {ended['error']}" if ended.get("error") else "")) if ended else (
            "in progress" if holder else "stopped before its end (killed?): run it again to resume")
        say(f"last run: {log.name}, {what}")
    nodes = list(stages) or [n for n in cat.nodes() if cat.attrs(n).get("run")]
    table = Table(title=text(f"{catalog}"))
    for col in ("stage", "node", "scans", "ok", "failed", "pending", "state"):
        table.add_column(col, overflow="fold")
    for node in nodes:
        n, ok, failed, pending = _counts(cat, node)
        entry = stages.get(node, {"stage": "", "state": ""})
        table.add_row(*(text(v) for v in (entry["stage"], node, n, ok, failed, pending, entry["state"])))
    out.print(table)
    for node in nodes:
        if is_node_set(node) or node not in cat or cat.run_state(node) is None:
            continue
        bad = cat.failed(node)
        if bad.sizes["scan"]:
            say(f"{node}: {bad.sizes['scan']} failed", style="red")
            for scan, why in list(zip(bad["scan"].values, bad["reason"].values))[:failures]:
                say(f"  scan {scan}: {why}")
    for node in nodes:
        if is_node_set(node):
            members = cat.group_attrs(node[:-2]).get("members", {})
            bad = [(m, r.get("reason", "")) for m, r in members.items() if r.get("state") == "failed"]
            if bad:
                say(f"{node}: {len(bad)} failed", style="red")
                for m, why in bad[:failures]:
                    say(f"  scan {m}: {why}")
