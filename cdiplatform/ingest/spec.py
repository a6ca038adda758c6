"""SPEC data files: many scans per file, indexed once, parsed on demand.

A SPEC file is plain text. A *file header* (``#F``, ``#E``, ``#D``, ``#O0..``
motor names, ``#o0..`` their mnemonics) is followed by scans; each scan starts
with ``#S <number> <command>`` and holds header lines (``#D`` date, ``#T``
count time, ``#P0..`` motor positions in the order of the ``#O`` names, ``#L``
column labels, ``#UIMR5``-like detector lines...) and then one data row per
point. Column labels and motor names are separated by two or more spaces
(single spaces occur inside names such as ``pm detector``).

The format's quirks handled here:

- comments (``#C``) and other ``#`` lines between data rows, blank lines;
- aborted scans (``#C ... Scan aborted after 7 points.``): fewer rows than
  the command asked for; :attr:`SpecScan.aborted` says so;
- data rows with too few or too many values, or values that are not numbers
  (an interrupted write): skipped, and listed in :attr:`SpecScan.skipped_rows`;
- repeated scan numbers (a new file header restarting the numbering): a scan
  is then named ``"54.2"`` (its second occurrence), and asking for plain
  ``54`` is an error that says so;
- several file headers in one file (``newfile`` with the same name): each
  scan uses the motor names of the last header before it.

:class:`SpecFile` reads the file once and indexes the scan offsets (a 4 MB
file with 498 scans takes a few milliseconds); :meth:`SpecFile.scan` parses
only the scan asked for.
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from cdiplatform.ingest.errors import IngestError

__all__ = ["ScanCommand", "SpecFile", "SpecScan", "parse_scan_command"]

# one pass over the bytes finds scan starts, file headers and motor-name blocks
_MARKS_RE = re.compile(rb"\n#(?:S[ \t]+(\S+)|([FE])[ \t]|(O)0[ \t])")
_SPLIT_NAMES = re.compile(r"\s{2,}")
_ABORTED_RE = re.compile(r"abort", re.IGNORECASE)

#: scan commands whose arguments are ``motor start stop [motor start stop ...] intervals time``
_MOTOR_SCANS = {
    "ascan": 1, "dscan": 1, "lup": 1,
    "a2scan": 2, "d2scan": 2,
    "a3scan": 3, "d3scan": 3,
    "a4scan": 4, "d4scan": 4,
}


@dataclass(frozen=True)
class ScanCommand:
    """A scan command line such as ``ascan  th -0.279996 0.720004  200 0.25``.

    Attributes
    ----------
    kind : str
        The macro name (``ascan``, ``dscan``, ``a2scan``, ``timescan``...).
    motors : tuple of (str, float, float)
        ``(mnemonic, start, stop)`` per scanned motor, in the units of the
        motor (degrees for angles); empty for commands not understood.
        For relative scans (``dscan``, ``lup``) start and stop are offsets.
    intervals : int or None
        Number of intervals; the scan asks for ``intervals + 1`` points.
    count_time : float or None
        Counting time per point, seconds (negative in SPEC means monitor counts).
    relative : bool
        True for ``dscan``-like commands.
    """

    kind: str
    motors: tuple[tuple[str, float, float], ...] = ()
    intervals: int | None = None
    count_time: float | None = None
    relative: bool = False

    @property
    def n_points(self) -> int | None:
        """Points the command asked for (``intervals + 1``), None if unknown."""
        return None if self.intervals is None else self.intervals + 1

    def step(self, motor: int = 0) -> float | None:
        """Step of scanned motor ``motor`` per point, in its units."""
        if not self.motors or not self.intervals:
            return None
        _, start, stop = self.motors[motor]
        return (stop - start) / self.intervals


def parse_scan_command(command: str) -> ScanCommand:
    """Parse a ``#S`` command string (without the scan number).

    Commands other than the ``ascan`` family are returned with their kind
    only; nothing raises for an unknown command.
    """
    words = command.split()
    if not words:
        return ScanCommand(kind="")
    kind, args = words[0], words[1:]
    n_motors = _MOTOR_SCANS.get(kind)
    if n_motors is None or len(args) < 3 * n_motors + 2:
        return ScanCommand(kind=kind)
    try:
        motors = tuple(
            (args[3 * i], float(args[3 * i + 1]), float(args[3 * i + 2])) for i in range(n_motors)
        )
        intervals = int(float(args[3 * n_motors]))
        count_time = float(args[3 * n_motors + 1])
    except ValueError:
        return ScanCommand(kind=kind)
    return ScanCommand(
        kind=kind,
        motors=motors,
        intervals=intervals,
        count_time=count_time,
        relative=kind.startswith("d") or kind == "lup",
    )


@dataclass(frozen=True)
class SpecScan:
    """One scan of a SPEC file, parsed.

    Attributes
    ----------
    number : int
        The number after ``#S``.
    occurrence : int
        1 for the first scan with this number in the file, 2 for the next...
    command : str
        The command as written after the number.
    date : str or None
        The scan's ``#D`` line, as written.
    count_time : float or None
        From ``#T`` (seconds), else from the command.
    motors : dict of str to float
        Motor positions at the start of the scan (``#P`` values under the
        ``#O`` names of the file header).
    mnemonics : dict of str to str
        Motor mnemonic to motor name (``th`` -> ``Theta``), from ``#o``.
    labels : tuple of str
        Column labels (``#L``), in order.
    data : dict of str to ndarray
        One float64 array per column, shape ``(n_points,)``.
    header : dict of str to str
        Every other header line of the scan by its key without ``#``
        (``"UIMR5": "0 256 0 256 1"``, ``"Q": ...``); the first one wins.
    comments : tuple of str
        ``#C`` lines inside the scan.
    aborted : bool
        A comment says the scan was aborted.
    skipped_rows : tuple of int
        File line numbers (1-based) of data rows that could not be read.
    path : str
        The SPEC file.
    line : int
        File line number (1-based) of the ``#S`` line.
    """

    number: int
    occurrence: int
    command: str
    date: str | None
    count_time: float | None
    motors: dict[str, float]
    mnemonics: dict[str, str]
    labels: tuple[str, ...]
    data: dict[str, np.ndarray]
    header: dict[str, str]
    comments: tuple[str, ...] = ()
    aborted: bool = False
    skipped_rows: tuple[int, ...] = ()
    path: str = ""
    line: int = 0
    parsed_command: ScanCommand = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.parsed_command is None:
            object.__setattr__(self, "parsed_command", parse_scan_command(self.command))

    @property
    def key(self) -> str:
        """``"54"``, or ``"54.2"`` for the second scan numbered 54."""
        return str(self.number) if self.occurrence == 1 else f"{self.number}.{self.occurrence}"

    @property
    def scan_id(self) -> int | str:
        """The number (int) when it is unique so far in the file, else the key (``"54.2"``)."""
        return self.number if self.occurrence == 1 else self.key

    @property
    def n_points(self) -> int:
        """Number of data rows read."""
        return len(next(iter(self.data.values()))) if self.data else 0

    @property
    def date_iso(self) -> str | None:
        """The ``#D`` date in ISO 8601 (no time zone: SPEC records none), None if unreadable."""
        if not self.date:
            return None
        try:
            return datetime.strptime(" ".join(self.date.split()), "%a %b %d %H:%M:%S %Y").isoformat()
        except ValueError:
            return None

    def motor_name(self, name: str) -> str:
        """The motor name for a name or a mnemonic (``th`` -> ``Theta``)."""
        if name in self.motors:
            return name
        if name in self.mnemonics:
            return self.mnemonics[name]
        lowered = {m.lower(): m for m in self.motors}
        if name.lower() in lowered:
            return lowered[name.lower()]
        raise IngestError(f"no motor {name!r} (known: {', '.join(self.motors)})",
                          path=self.path, scan=self.scan_id)

    def motor(self, name: str) -> float:
        """Position of a motor, by name or mnemonic (case-insensitive fallback)."""
        return self.motors[self.motor_name(name)]

    def column(self, name: str) -> np.ndarray:
        """A data column by its label, or by a motor mnemonic (``th`` -> ``Theta``)."""
        if name in self.data:
            return self.data[name]
        if name in self.mnemonics and self.mnemonics[name] in self.data:
            return self.data[self.mnemonics[name]]
        lowered = {k.lower(): k for k in self.data}
        if name.lower() in lowered:
            return self.data[lowered[name.lower()]]
        raise IngestError(f"no data column {name!r} (columns: {', '.join(self.labels)})",
                          path=self.path, scan=self.scan_id)


@dataclass(frozen=True)
class _Entry:
    number: int
    occurrence: int
    start: int  # byte offset of the #S line
    stop: int  # byte offset where the scan ends
    line: int


class SpecFile:
    """A SPEC file, indexed once; scans are parsed when asked for.

    Parameters
    ----------
    path : str or os.PathLike
        The SPEC file.

    Raises
    ------
    IngestError
        If the file is missing, empty or holds no ``#S`` line.

    Examples
    --------
    >>> spec = SpecFile("example.spec")          # doctest: +SKIP
    >>> scan = spec.scan(54)                      # doctest: +SKIP
    >>> scan.column("th")[:2], scan.motor("Energy")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._raw = self.path.read_bytes()
        except FileNotFoundError:
            raise IngestError("SPEC file not found", path=self.path) from None
        except IsADirectoryError:
            raise IngestError("expected a SPEC file, found a directory", path=self.path) from None
        if not self._raw.strip():
            raise IngestError("SPEC file is empty", path=self.path)
        self._index()

    # -- index -------------------------------------------------------------------------
    def _index(self) -> None:
        raw = b"\n" + self._raw  # offsets below are into self._raw (the newline is index -1)
        scan_starts: list[tuple[int, bytes]] = []
        header_starts: list[int] = []
        self._motor_blocks = []
        for m in _MARKS_RE.finditer(raw):
            start = m.start()  # the newline before the mark in `raw` == the mark in self._raw
            if m.group(1) is not None:
                scan_starts.append((start, m.group(1)))
            elif m.group(2) is not None:
                header_starts.append(start)
            else:
                self._motor_blocks.append(start)
        raw = self._raw
        if not scan_starts:
            raise IngestError("no scan (#S line) in SPEC file", path=self.path)
        self._motor_cache: dict[int, tuple[list[list[str]], list[list[str]]]] = {}
        boundaries = sorted({s for s, _ in scan_starts} | set(header_starts) | {len(raw)})
        entries: list[_Entry] = []
        seen: dict[int, int] = {}
        # line numbers: count newlines incrementally
        line, pos = 1, 0
        for start, token in scan_starts:
            line += raw.count(b"\n", pos, start)
            pos = start
            try:
                number = int(float(token))
            except ValueError:
                continue  # a '#S' line without a number is not a scan
            stop = boundaries[bisect.bisect_right(boundaries, start)]
            seen[number] = seen.get(number, 0) + 1
            entries.append(_Entry(number, seen[number], start, stop, line))
        self._entries = entries
        self._by_key = {self._key(e): e for e in entries}
        self._counts = seen

    @staticmethod
    def _key(entry: _Entry) -> str:
        return str(entry.number) if entry.occurrence == 1 else f"{entry.number}.{entry.occurrence}"

    # -- mapping-like interface --------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """Scan keys in file order: ``"54"``, or ``"54.2"`` for a repeated number."""
        return [self._key(e) for e in self._entries]

    @property
    def numbers(self) -> list[int]:
        """Scan numbers in file order (repeated numbers appear repeatedly)."""
        return [e.number for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return (self.scan(k) for k in self.keys)

    def __contains__(self, scan: object) -> bool:
        return str(scan) in self._by_key or (isinstance(scan, int) and scan in self._counts)

    def __getitem__(self, scan: int | str) -> SpecScan:
        return self.scan(scan)

    def __repr__(self) -> str:
        return f"SpecFile({str(self.path)!r}, {len(self)} scans)"

    def _entry(self, scan: int | str) -> _Entry:
        key = str(scan).strip()
        if isinstance(scan, int) or key.isdigit():
            number = int(key)
            count = self._counts.get(number, 0)
            if count > 1:
                keys = ", ".join(repr(f"{number}.{i}") if i > 1 else repr(str(number))
                                 for i in range(1, count + 1))
                raise IngestError(
                    f"scan number {number} appears {count} times in the SPEC file; ask for one of {keys} "
                    f"(\"{number}.1\" is the first)", path=self.path, scan=number)
            key = str(number)
        elif key.endswith(".1"):
            key = key[:-2]
        if key not in self._by_key:
            numbers = self.numbers
            span = f"{min(numbers)}..{max(numbers)}" if numbers else "none"
            raise IngestError(f"scan not in SPEC file ({len(numbers)} scans, numbers {span})",
                              path=self.path, scan=scan)
        return self._by_key[key]

    # -- parsing -----------------------------------------------------------------------
    def _motor_names(self, offset: int) -> tuple[list[list[str]], list[list[str]]]:
        """``#O`` names and ``#o`` mnemonics of the last file header before ``offset``."""
        i = bisect.bisect_right(self._motor_blocks, offset) - 1
        if i < 0:
            return [], []
        if i not in self._motor_cache:
            start = self._motor_blocks[i]
            names: dict[int, list[str]] = {}
            mnes: dict[int, list[str]] = {}
            for line in self._raw[start:start + 65536].decode("latin-1").splitlines():
                if not line.startswith("#"):
                    if line.strip():
                        break
                    continue
                tag, _, rest = line.partition(" ")
                if re.fullmatch(r"#O\d+", tag):
                    names[int(tag[2:])] = [n for n in _SPLIT_NAMES.split(rest.strip()) if n]
                elif re.fullmatch(r"#o\d+", tag):
                    mnes[int(tag[2:])] = rest.split()
                elif tag.startswith("#S"):
                    break
            self._motor_cache[i] = (
                [names[k] for k in sorted(names)],
                [mnes[k] for k in sorted(mnes)],
            )
        return self._motor_cache[i]

    def scan(self, scan: int | str) -> SpecScan:
        """Parse one scan.

        Parameters
        ----------
        scan : int or str
            The scan number (``54``) or key (``"54.2"`` for the second scan
            numbered 54).

        Raises
        ------
        IngestError
            If the scan is not in the file, its number is ambiguous, or it
            has data rows but no ``#L`` labels.
        """
        entry = self._entry(scan)
        key = self._key(entry)
        text = self._raw[entry.start:entry.stop].decode("latin-1")
        lines = text.splitlines()
        first = lines[0][2:].strip()
        command = first.split(None, 1)[1].strip() if len(first.split(None, 1)) > 1 else ""

        names, mnes = self._motor_names(entry.start)
        positions: dict[int, list[float]] = {}
        header: dict[str, str] = {}
        comments: list[str] = []
        labels: list[str] | None = None
        rows: list[list[float]] = []
        raw_rows: list[tuple[int, list[str]]] = []
        label_line: str | None = None
        skipped: list[int] = []
        date = None
        count_time = None
        n_declared = None
        for offset, line in enumerate(lines[1:], start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("@"):
                continue  # blank lines, MCA data
            if stripped.startswith("#"):
                tag, _, rest = stripped.partition(" ")
                rest = rest.strip()
                key_name = tag[1:]
                if key_name == "L":
                    labels = [lab for lab in _SPLIT_NAMES.split(rest) if lab]
                    label_line = rest
                elif key_name == "C":
                    comments.append(rest)
                elif key_name == "D" and date is None:
                    date = rest
                elif key_name == "T" and count_time is None:
                    try:
                        count_time = float(rest.split()[0])
                    except (ValueError, IndexError):
                        pass
                elif key_name == "N":
                    try:
                        n_declared = int(rest.split()[0])
                    except (ValueError, IndexError):
                        pass
                elif re.fullmatch(r"P\d+", key_name):
                    vals = []
                    for word in rest.split():
                        try:
                            vals.append(float(word))
                        except ValueError:
                            vals.append(float("nan"))
                    positions[int(key_name[1:])] = vals
                else:
                    header.setdefault(key_name, rest)
                continue
            # a data row
            if labels is None:
                skipped.append(entry.line + offset)
                continue
            raw_rows.append((entry.line + offset, stripped.split()))

        if labels is not None and raw_rows and label_line is not None:
            # old files separate labels by single spaces: if no row fits the two-space
            # labels but rows fit the single-space ones, use those
            single = label_line.split()
            if (len(single) != len(labels)
                    and not any(len(w) == len(labels) for _, w in raw_rows)
                    and any(len(w) == len(single) for _, w in raw_rows)):
                labels = single
        for line_no, words in raw_rows:
            if len(words) != len(labels):
                skipped.append(line_no)
                continue
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                skipped.append(line_no)

        if labels is None and skipped:
            raise IngestError("data rows without a #L line of column labels",
                              path=self.path, scan=entry.number if entry.occurrence == 1 else key)
        labels = labels or []
        if n_declared is not None and labels and n_declared != len(labels):
            comments.append(f"(reader) #N {n_declared} differs from {len(labels)} #L labels")
        table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(labels))
        data = {lab: np.ascontiguousarray(table[:, i]) for i, lab in enumerate(labels)}
        if len(set(labels)) != len(labels):  # duplicate labels: keep the first, name the others
            data = {}
            for i, lab in enumerate(labels):
                name = lab if lab not in data else f"{lab}_{i}"
                data[name] = np.ascontiguousarray(table[:, i])
            labels = list(data)

        motors: dict[str, float] = {}
        for block, vals in positions.items():
            block_names = names[block] if block < len(names) else []
            for j, val in enumerate(vals):
                name = block_names[j] if j < len(block_names) else f"P{block}[{j}]"
                motors[name] = val
        mnemonics: dict[str, str] = {}
        for block, block_mnes in enumerate(mnes):
            block_names = names[block] if block < len(names) else []
            for mne, name in zip(block_mnes, block_names):
                mnemonics[mne] = name

        parsed = parse_scan_command(command)
        if count_time is None:
            count_time = parsed.count_time
        return SpecScan(
            number=entry.number,
            occurrence=entry.occurrence,
            command=command,
            date=date,
            count_time=count_time,
            motors=motors,
            mnemonics=mnemonics,
            labels=tuple(labels),
            data=data,
            header=header,
            comments=tuple(comments),
            aborted=any(_ABORTED_RE.search(c) for c in comments),
            skipped_rows=tuple(skipped),
            path=str(self.path),
            line=entry.line,
            parsed_command=parsed,
        )
