"""A machine-readable log of a run: JSON lines beside its performance report.

One object a line, each with ``event`` and ``time`` (UTC, ISO 8601):

``run_start``    job, catalog, pid, host, command
``stage_start``  stage, node, run_id, state, scans, pending
``progress``     stage, node, done (scans finished so far in this run), ok, failed
``stage_end``    stage, node, state, scans, computed, ok, failed (scan -> reason), seconds
``run_end``      ok (bool), failed (count), seconds; or ``error`` with the message

``cdip status`` reads the newest log of a catalog; so can anything else
(``pandas.read_json(path, lines=True)``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from cdiplatform.catalog.provenance import now

__all__ = ["RunLog", "newest_log", "read_log"]


class RunLog:
    """Appends events to ``path`` (one JSON object a line), flushed at once so that another process sees them."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._t0 = time.perf_counter()

    def event(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": now(), **fields}, default=str)
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:  # a full disk: the log is a witness, never a reason for the run to fail
            pass

    def run_start(self, *, job: str, catalog: str, command: str = "") -> None:
        self.event("run_start", job=job, catalog=catalog, pid=os.getpid(), host=socket.gethostname(),
                   command=command)

    def stage_start(self, report: Any) -> None:
        self.event("stage_start", stage=report.label, node=report.node, run_id=report.run_id, state=report.state,
                   scans=report.n_scans, pending=report.pending)

    def progress(self, report: Any, done: int) -> None:
        self.event("progress", stage=report.label, node=report.node, done=done, ok=report.ok,
                   failed=len(report.failed))

    def stage_end(self, report: Any) -> None:
        self.event("stage_end", stage=report.label, node=report.node, state=report.state, scans=report.n_scans,
                   computed=report.computed, ok=report.ok, failed={str(k): v for k, v in report.failed.items()},
                   seconds=round(report.seconds, 3))

    def run_end(self, reports: list[Any] | None = None, *, error: str = "") -> None:
        fields: dict[str, Any] = {"seconds": round(time.perf_counter() - self._t0, 3)}
        if error:
            fields["error"] = error
        if reports is not None:
            fields["failed"] = sum(len(r.failed) for r in reports)
            fields["ok"] = fields["failed"] == 0
        self.event("run_end", **fields)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events of a run log (a line cut short by a kill is skipped)."""
    events = []
    for line in Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def newest_log(catalog: str | os.PathLike) -> Path | None:
    """The newest run log of a catalog (``<catalog>.reports/*.jsonl``), or None."""
    catalog = Path(catalog)
    folder = catalog.parent / f"{catalog.stem}.reports"
    logs = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return logs[-1] if logs else None
