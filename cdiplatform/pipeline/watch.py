"""Live processing during a beamtime: run a job again each time a scan is complete.

The job must have an ``ingest_spec`` stage. The watcher polls that stage's
SPEC file; a scan of its selection becomes *ready* once it is complete
(:func:`cdiplatform.ingest.scan_state`: the SPEC file says it ended, and every
frame file exists with a size that held still between two polls; an aborted
scan is complete with the points it has). Each time new scans are ready, the
job runs with its selection narrowed to the ready scans: the ingest stage
reads the new ones, and every later stage grows its nodes by them, leaving
the others untouched. The watcher holds the catalog's lock from start to
stop, so no other run writes meanwhile.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from cdiplatform.errors import JobError
from cdiplatform.pipeline.job import Job

__all__ = ["ScanWatcher", "watch_job"]


class ScanWatcher:
    """Which scans of a SPEC file are ready, poll after poll (frame sizes remembered between polls).

    Parameters
    ----------
    spec, frames : str
        The SPEC file and the frame pattern of the ingest stage.
    selection : list of int, optional
        Scan numbers to watch for; None: every scan the file holds or will hold.
    """

    def __init__(self, spec: str, frames: str, selection: list[int] | None) -> None:
        self.spec, self.frames, self.selection = spec, frames, selection
        self.sizes: dict[str, dict[str, int]] = {}
        self.ready: list[str] = []
        self.states: dict[str, Any] = {}

    def _candidates(self) -> list[str]:
        from cdiplatform.ingest.spec import SpecFile

        if self.selection is not None:
            return [str(s) for s in self.selection]
        try:
            with SpecFile(self.spec) as spec:
                return list(spec.keys)
        except Exception:  # noqa: BLE001 - no scan written yet
            return []

    def poll(self) -> list[str]:
        """The scans that became ready since the last poll, in file order."""
        from cdiplatform.ingest import scan_state

        new = []
        for scan in self._candidates():
            if scan in self.ready:
                continue
            state = scan_state(self.spec, scan, self.frames, previous_sizes=self.sizes.get(scan))
            self.sizes[scan] = state.frame_sizes
            self.states[scan] = state
            if state.complete:
                new.append(scan)
        self.ready.extend(new)
        return new


def _ingest_stage(job: Job) -> int:
    from cdiplatform.pipeline.stages.ingest import IngestSpec

    found = [i for i, s in enumerate(job.stages) if s.stage is IngestSpec]
    if len(found) != 1:
        raise JobError(f"{job.path}: --watch needs exactly one ingest_spec stage, the job has {len(found)}")
    return found[0]


def with_scans(job: Job, scans: list[str]) -> Job:
    """The job with its ingest stage's selection replaced by ``scans``."""
    i = _ingest_stage(job)
    spec = job.stages[i]
    stages = list(job.stages)
    stages[i] = dataclasses.replace(spec, params=dataclasses.replace(spec.params, scans=",".join(scans)))
    return dataclasses.replace(job, stages=stages)


def watch_job(job: Job, *, run: Callable[[Job], Any], poll: float = 10.0,
              stop: Callable[[], bool] = lambda: False, on_poll: Callable[[ScanWatcher, list[str]], None] | None = None,
              ) -> ScanWatcher:
    """Poll the job's SPEC file every ``poll`` seconds; ``run(job)`` each time scans become ready.

    ``run`` receives the job narrowed to the scans ready so far (it takes the
    catalog's lock itself, or the caller holds it). Returns when ``stop()`` is
    true (checked after each poll), or on KeyboardInterrupt.
    """
    from cdiplatform.pipeline.stages.ingest import parse_scan_list

    params = job.stages[_ingest_stage(job)].params
    watcher = ScanWatcher(str(Path(params.spec)), params.frames, parse_scan_list(params.scans))
    try:
        while True:
            new = watcher.poll()
            if on_poll:
                on_poll(watcher, new)
            if new:
                run(with_scans(job, watcher.ready))
            if stop():
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        pass
    return watcher
