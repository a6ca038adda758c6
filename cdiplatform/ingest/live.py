"""When a scan being recorded is complete enough to process (live processing, ``--watch``).

The rule (also in ``docs/ingest.md``): a scan is complete when

1. the SPEC file says it ended: it holds the next scan's ``#S`` header, or
   the scan holds all the points its command planned, or an abort comment
   (an aborted scan is complete with the points it has, and marked aborted;
   so is a scan that the next header cut short without a comment); and
2. the frame file of every recorded point exists, with a size that did not
   change since the previous poll (the caller keeps the sizes of one poll,
   :attr:`ScanState.frame_sizes`, and passes them to the next).

A scan is never complete at the first poll that sees frame files: two polls
are needed to see their sizes hold still.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cdiplatform.ingest.errors import IngestError
from cdiplatform.ingest.spec import SpecFile

__all__ = ["ScanState", "scan_state"]


@dataclass(frozen=True)
class ScanState:
    """What a poll saw of one scan.

    Attributes
    ----------
    scan : int or str
        The scan asked for (``54`` or ``"54.2"``).
    complete : bool
        The scan can be read and processed (the module's rule).
    aborted : bool
        The scan ended short of its planned points (an abort comment, or the
        next scan's header came first): :attr:`SpecScan.aborted`.
    points_recorded : int
        Data rows in the SPEC file so far (a row still being written is not one).
    points_planned : int or None
        Points the scan command asked for; None for a command not understood.
    frames_present : int
        Frame files found for the recorded points.
    reason : str
        Why it is (not) complete, in words, for logs.
    frame_sizes : dict of str to int
        Size in bytes of each frame file found, by path: pass it as
        ``previous_sizes`` at the next poll.
    """

    scan: int | str
    complete: bool
    aborted: bool
    points_recorded: int
    points_planned: int | None
    frames_present: int
    reason: str
    frame_sizes: dict[str, int] = field(default_factory=dict, repr=False)


def scan_state(spec_path: str | os.PathLike, scan_number: int | str, frame_pattern: str, *,
               previous_sizes: Mapping[str, int] | None = None) -> ScanState:
    """Poll one scan: is it complete, by the rule of this module?

    Parameters
    ----------
    spec_path : str or os.PathLike
        The beamtime's SPEC file, possibly still being written.
    scan_number : int or str
        Scan number, or ``"54.2"`` for the second scan numbered 54.
    frame_pattern : str
        Frame files, a ``str.format`` pattern with ``scan`` and ``point``
        (0-based) fields, as for :func:`~cdiplatform.ingest.read_scan`.
    previous_sizes : mapping of str to int, optional
        :attr:`ScanState.frame_sizes` of the previous poll of this scan;
        without it the frames cannot be seen to hold still, so the scan is
        not complete yet.

    Returns
    -------
    ScanState
        A scan not (yet) in the SPEC file, or a SPEC file without any scan
        yet, is a state that is not complete.

    Raises
    ------
    IngestError
        The SPEC file does not exist, the scan number is ambiguous (repeated
        in the file: ask for ``"54.2"``), or the frame pattern lacks its
        ``{point}`` field.
    """
    path = Path(spec_path)
    if not path.is_file():
        raise IngestError("SPEC file not found", path=path, scan=scan_number)
    if "{point" not in frame_pattern:
        raise IngestError("frame pattern has no {point} field", path=frame_pattern, scan=scan_number)
    try:
        spec = SpecFile(path)
    except IngestError as exc:  # no scan written yet, or an empty new file
        return _waiting(scan_number, f"no scan in the SPEC file yet ({exc.detail})")
    with spec:
        if scan_number not in spec:
            return _waiting(scan_number, f"not in the SPEC file yet ({len(spec)} scans so far)")
        scan = spec.scan(scan_number)

    recorded, planned, aborted = scan.n_points, scan.planned_points, scan.aborted
    spec_done = not scan.last or aborted or (planned is not None and recorded >= planned)

    sizes: dict[str, int] = {}
    missing: list[str] = []
    for point in range(recorded):
        frame = frame_pattern.format(scan=scan.number, point=point)
        try:
            sizes[frame] = os.stat(frame).st_size
        except FileNotFoundError:
            missing.append(frame)
    changed = [f for f, size in sizes.items() if previous_sizes is None or previous_sizes.get(f) != size]

    points = f"{recorded} of {planned if planned is not None else '?'} points"
    if not spec_done:
        reason = f"recording: {points}, no next scan yet"
    elif missing:
        reason = f"{'aborted' if aborted else 'ended'} at {points}; waiting for {len(missing)} " \
                 f"frame files (first: {missing[0]})"
    elif changed:
        reason = f"{'aborted' if aborted else 'ended'} at {points}; " + (
            "frame sizes not seen at an earlier poll yet" if previous_sizes is None else
            f"{len(changed)} frame files new or changed since the last poll (first: {changed[0]})")
    else:
        how = "aborted" if aborted else "ended"
        reason = f"complete: {how} at {points}, {len(sizes)} frame files steady"
    return ScanState(
        scan=scan_number,
        complete=spec_done and not missing and not changed,
        aborted=aborted,
        points_recorded=recorded,
        points_planned=planned,
        frames_present=len(sizes),
        reason=reason,
        frame_sizes=sizes,
    )


def _waiting(scan_number: int | str, reason: str) -> ScanState:
    return ScanState(scan=scan_number, complete=False, aborted=False, points_recorded=0,
                     points_planned=None, frames_present=0, reason=reason)
