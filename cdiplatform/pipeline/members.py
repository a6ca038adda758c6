"""What one task of a :class:`~cdiplatform.pipeline.stage.SetStage` does: make one member, write it whole.

The member (``raw/<beamtime>/<scan>``) is written into a staging folder beside
the catalog and renamed into place, so a killed task leaves no half-written
scan; its provenance carries the run's hash, which tells a later run that it
is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cdiplatform.catalog import open_catalog
from cdiplatform.catalog.provenance import history_line, now
from cdiplatform.pipeline.chunks import failure_reason
from cdiplatform.pipeline.randomness import stage_seed_sequence

__all__ = ["MemberOutcome", "MemberTask", "run_member"]


@dataclass(frozen=True)
class MemberTask:
    stage: type
    params: Any
    catalog: str
    node: str  # raw/<beamtime>/<member>
    member: str
    provenance: dict[str, Any]  # the run's, member-independent
    run: dict[str, Any]  # {"id", "hash"}
    replace: bool  # a member of another run (or a failed one) is replaced
    seed: int
    stream: int


@dataclass
class MemberOutcome:
    member: str
    node: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def run_member(task: MemberTask) -> MemberOutcome:
    """Make and write one member; a member that cannot be made is a failed outcome, never an exception."""
    t0 = time.perf_counter()
    stage = task.stage(seed=stage_seed_sequence(task.seed, task.stream))
    started = now()
    try:
        ds, attrs, encoding = stage.make(task.params, task.member, beamtime=task.node.split("/")[1])
    except Exception as exc:  # noqa: BLE001 - one bad scan never stops the batch
        return MemberOutcome(task.member, task.node, False, failure_reason(exc), time.perf_counter() - t0)
    attrs = dict(attrs)
    attrs["provenance"] = {**task.provenance, "started": started, "finished": now(),
                           "inputs": attrs.get("sources", {})}
    attrs["run"] = {**task.run, "complete": True}
    attrs["history"] = history_line(f"{stage.name}: {task.member} written by run {task.run['id']}")
    open_catalog(task.catalog, mode="a").write(task.node, ds, attrs=attrs, overwrite=task.replace,
                                               encoding=encoding)
    extra = {"aborted": bool(attrs.get("aborted", False))}
    return MemberOutcome(task.member, task.node, True, seconds=time.perf_counter() - t0, extra=extra)
