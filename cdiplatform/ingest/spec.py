"""SPEC data files, read with silx's C reader (:mod:`silx.io.specfile`).

A SPEC file is plain text: a *file header* (``#F``, ``#E``, ``#D``, ``#O0..``
motor names, ``#o0..`` their mnemonics) followed by scans, each starting with
``#S <number> <command>`` and holding header lines (``#D`` date, ``#T``
count time, ``#P0..`` motor positions in the order of the ``#O`` names,
``#L`` column labels, ``#UIMR5``-like detector lines...) and one data row per
point.

silx indexes the file and parses it (names and labels split on two or more
spaces, ``#C`` comments and blank lines inside data, repeated scan numbers as
``54.1``/``54.2``, several file headers in one file: each scan uses the
motor names of the last header before it). This module is a thin layer that
keeps the platform's :class:`SpecFile`/:class:`SpecScan` API and adds only
what silx does not do, each named here and in ``docs/ingest.md``:

- *single-space labels of old files*: silx returns one label for
  ``#L Theta Monitor Detector``; when the labels do not match the data
  columns but the ``#L`` line split on single spaces does, those are used;
- *data columns that do not match the labels*: silx takes the number of
  columns from the first data row and drops every row that differs (printing
  ``Error on scan N line L`` on stdout), so a bad *first* row would leave the
  good rows out; this is refused with an error instead of read wrongly;
- *a file still being written*: a last line without its newline is not a
  finished row; silx drops it unless it ends in a space (then its values may
  still be cut short), and this layer drops it then too. The last scan of the
  file is :attr:`SpecScan.incomplete` while it holds fewer points than its
  command planned and no abort comment;
- *the scan command* (``ascan th -0.28 0.72 200 0.25``): parsed here
  (:func:`parse_scan_command`); silx keeps it as text.

Known limits of the library reader: rows with a wrong number of values are
dropped without a record of which ones (silx prints a line for each on
stdout); a value that is not a number in an otherwise complete row reads as 0.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from cdiplatform.ingest.errors import IngestError

__all__ = ["ScanCommand", "SpecFile", "SpecScan", "parse_scan_command"]

_SPLIT_NAMES = re.compile(r"\s{2,}")
_ABORTED_RE = re.compile(r"abort", re.IGNORECASE)
_TAIL_BYTES = 65536

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
        ``#C`` lines of the scan (inside its data too).
    aborted : bool
        A comment says the scan was aborted, or the next scan began before
        this one had its planned points.
    last : bool
        No scan follows this one in the file (as it was when read).
    path : str
        The SPEC file.
    index : int
        Position of the scan in the file, 0-based.
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
    last: bool = False
    path: str = ""
    index: int = 0
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
    def planned_points(self) -> int | None:
        """Points the scan command asked for, None for a command not understood."""
        return self.parsed_command.n_points

    @property
    def incomplete(self) -> bool:
        """The last scan of the file, still short of its planned points, not aborted.

        A scan still being recorded (or one whose recording stopped without a
        word): a scan followed by another one, an aborted scan and a scan with
        all its planned points are not incomplete.
        """
        if not self.last or self.aborted:
            return False
        planned = self.planned_points
        return planned is None or self.n_points < planned

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


class SpecFile:
    """A SPEC file, indexed once by silx; scans are parsed when asked for.

    Parameters
    ----------
    path : str or os.PathLike
        The SPEC file. It may still be being written: its last line may lack
        its newline and its last scan its last points (see
        :attr:`SpecScan.incomplete`).

    Raises
    ------
    IngestError
        If the file is missing, empty, unreadable or holds no ``#S`` line.

    Notes
    -----
    The file stays open until :meth:`close` (or the end of a ``with``
    block); a pickled SpecFile reopens the file when unpickled. Use one
    SpecFile per thread (silx's reader keeps a file position);
    :func:`~cdiplatform.ingest.read_scan` given a path opens its own.

    Examples
    --------
    >>> spec = SpecFile("example.spec")          # doctest: +SKIP
    >>> scan = spec.scan(54)                      # doctest: +SKIP
    >>> scan.column("th")[:2], scan.motor("Energy")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._open()

    # -- opening -----------------------------------------------------------------------
    def _open(self) -> None:
        from silx.io.specfile import SpecFile as SilxSpecFile

        for attempt in range(3):  # the file may grow while it is opened: retry until it holds still
            size_before, partial = self._tail()
            try:
                self._sf = SilxSpecFile(str(self.path))
            except Exception as exc:  # silx raises its own SfError types
                raise IngestError(f"SPEC file is not readable ({type(exc).__name__}: {exc})",
                                  path=self.path) from None
            if self.path.stat().st_size == size_before or attempt == 2:
                break  # (a file still growing after 3 tries: its last scan reads as incomplete)
            self._sf.close()
        self._partial_row = partial
        numbers = [int(n) for n in self._sf.list()]
        if not numbers:
            self._sf.close()
            raise IngestError("no scan (#S line) in SPEC file", path=self.path)
        orders: dict[int, int] = {}
        self._entries: list[tuple[int, int]] = []
        for number in numbers:
            orders[number] = orders.get(number, 0) + 1
            self._entries.append((number, orders[number]))
        self._counts = orders
        self._by_key = {self._key(n, o): i for i, (n, o) in enumerate(self._entries)}

    def _tail(self) -> tuple[int, bytes | None]:
        """File size, and the unterminated last line when it is a (partial) data row."""
        try:
            size = self.path.stat().st_size
            if self.path.is_dir():
                raise IngestError("expected a SPEC file, found a directory", path=self.path)
            with open(self.path, "rb") as fh:
                fh.seek(max(0, size - _TAIL_BYTES))
                tail = fh.read()
        except FileNotFoundError:
            raise IngestError("SPEC file not found", path=self.path) from None
        if size <= _TAIL_BYTES and not tail.strip():
            raise IngestError("SPEC file is empty", path=self.path)
        if tail.endswith(b"\n"):
            return size, None
        last_line = tail.rsplit(b"\n", 1)[-1].strip()
        if not last_line or last_line.startswith((b"#", b"@")):
            return size, None
        return size, last_line

    def close(self) -> None:
        """Close the file (silx keeps it open for reading scans)."""
        self._sf.close()

    def __enter__(self) -> SpecFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._open()

    # -- mapping-like interface --------------------------------------------------------
    @staticmethod
    def _key(number: int, occurrence: int) -> str:
        return str(number) if occurrence == 1 else f"{number}.{occurrence}"

    @property
    def keys(self) -> list[str]:
        """Scan keys in file order: ``"54"``, or ``"54.2"`` for a repeated number."""
        return [self._key(n, o) for n, o in self._entries]

    @property
    def numbers(self) -> list[int]:
        """Scan numbers in file order (repeated numbers appear repeatedly)."""
        return [n for n, _ in self._entries]

    @property
    def ends_mid_line(self) -> bool:
        """The file's last data row lacks its newline (the file is being written)."""
        return self._partial_row is not None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return (self.scan(k) for k in self.keys)

    def __contains__(self, scan: object) -> bool:
        key = str(scan).strip()
        key = key[:-2] if key.endswith(".1") else key
        return key in self._by_key or (isinstance(scan, int) and scan in self._counts)

    def __getitem__(self, scan: int | str) -> SpecScan:
        return self.scan(scan)

    def __repr__(self) -> str:
        return f"SpecFile({str(self.path)!r}, {len(self)} scans)"

    def _index(self, scan: int | str) -> int:
        key = str(scan).strip()
        if isinstance(scan, int) or key.isdigit():
            number = int(key)
            count = self._counts.get(number, 0)
            if count > 1:
                keys = ", ".join(repr(self._key(number, i)) for i in range(1, count + 1))
                raise IngestError(
                    f"scan number {number} appears {count} times in the SPEC file; ask for one of {keys} "
                    f"(\"{number}.1\" is the first)", path=self.path, scan=number)
            key = str(number)
        elif key.endswith(".1"):
            key = key[:-2]
        if key not in self._by_key:
            numbers = self.numbers
            raise IngestError(f"scan not in SPEC file ({len(numbers)} scans, numbers "
                              f"{min(numbers)}..{max(numbers)})", path=self.path, scan=scan)
        return self._by_key[key]

    # -- parsing -----------------------------------------------------------------------
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
            If the scan is not in the file, its number is ambiguous, it has
            data rows but no ``#L`` labels, or its data rows do not have one
            value per label.
        """
        index = self._index(scan)
        number, occurrence = self._entries[index]
        scan_id = number if occurrence == 1 else self._key(number, occurrence)
        silx_scan = self._sf[index]
        last = index == len(self._entries) - 1

        header: dict[str, str] = {}
        comments: list[str] = []
        label_line = None
        for line in silx_scan.scan_header:
            tag, _, rest = line.partition(" ")
            rest = rest.strip()
            if tag == "#C":
                comments.append(rest)
            elif tag == "#L":
                label_line = rest
            else:
                header.setdefault(tag[1:], rest)
        command = header.pop("S", "").partition(" ")[2].strip()
        date = header.pop("D", None)
        count_time = None
        try:
            count_time = float(header.get("T", "").split()[0])
        except (ValueError, IndexError):
            pass
        for key in [k for k in header if re.fullmatch(r"P\d+", k)]:
            del header[key]

        table = np.asarray(silx_scan.data, dtype=np.float64).T  # silx: (column, point)
        if table.ndim != 2:
            table = np.zeros((0, 0))
        if last and self._partial_row is not None and len(table):
            # silx kept an unterminated last line (one ending in a space): not a finished row
            try:
                values = np.array([float(w) for w in self._partial_row.split()])
            except ValueError:
                values = None
            if values is not None and values.shape == table[-1].shape and np.array_equal(values, table[-1]):
                table = table[:-1]
        if len(table):
            labels = self._labels(label_line, table.shape[1], scan_id)
        else:  # no data rows (yet)
            labels = tuple(lab for lab in _SPLIT_NAMES.split(label_line or "") if lab)
            table = np.zeros((0, len(labels)))
        data: dict[str, np.ndarray] = {}
        for i, label in enumerate(labels):  # duplicate labels: keep the first, name the others
            data[label if label not in data else f"{label}_{i}"] = np.ascontiguousarray(table[:, i])
        parsed = parse_scan_command(command)
        cut_short = not last and parsed.n_points is not None and len(table) < parsed.n_points
        return SpecScan(
            number=number,
            occurrence=occurrence,
            command=command,
            date=date,
            count_time=count_time if count_time is not None else parsed.count_time,
            motors={name.strip(): float(value)
                    for name, value in zip(silx_scan.motor_names, silx_scan.motor_positions)},
            mnemonics=self._mnemonics(silx_scan.file_header),
            labels=tuple(data),
            data=data,
            header=header,
            comments=tuple(comments),
            aborted=cut_short or any(_ABORTED_RE.search(c) for c in comments),
            last=last,
            path=str(self.path),
            index=index,
            parsed_command=parsed,
        )

    def _labels(self, label_line: str | None, n_columns: int, scan_id) -> tuple[str, ...]:
        """The ``#L`` labels of a scan whose data rows have ``n_columns`` values."""
        if label_line is None:
            raise IngestError("data rows without a #L line of column labels", path=self.path, scan=scan_id)
        labels = [lab for lab in _SPLIT_NAMES.split(label_line) if lab]
        if len(labels) == n_columns:
            return tuple(labels)
        single = label_line.split()  # old files separate labels by single spaces
        if len(single) == n_columns:
            return tuple(single)
        raise IngestError(f"the data rows have {n_columns} values but #L names {len(labels)} columns "
                          "(a bad first data row?)", path=self.path, scan=scan_id)

    @staticmethod
    def _mnemonics(file_header: list[str]) -> dict[str, str]:
        """Mnemonic to motor name, from the ``#O``/``#o`` lines of a file header."""
        names: dict[str, list[str]] = {}
        mnes: dict[str, list[str]] = {}
        for line in file_header:
            tag, _, rest = line.partition(" ")
            if re.fullmatch(r"#O\d+", tag):
                names[tag[2:]] = [n for n in _SPLIT_NAMES.split(rest.strip()) if n]
            elif re.fullmatch(r"#o\d+", tag):
                mnes[tag[2:]] = rest.split()
        return {mne: name for block, block_mnes in mnes.items()
                for mne, name in zip(block_mnes, names.get(block, []))}
