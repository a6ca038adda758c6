"""One run at a time writes into a catalog: the lock file ``<catalog>.lock`` beside it.

A run takes the lock before it writes and gives it back when it ends; a
second run on the same catalog is refused at once with a message naming the
running one. A run that crashed (killed, machine rebooted) leaves its lock
file behind: on the same machine it is recognised as stale (its process is
gone) and taken over; from another machine it cannot be checked, so the
message says how to break it (``--break-lock``). Reading a catalog (``cdip
catalog``, ``cdip status``, xarray) never needs the lock.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from cdiplatform.catalog.provenance import now
from cdiplatform.errors import CatalogLockedError

__all__ = ["RunLock", "check_unlocked", "lock_path", "read_lock"]


def lock_path(catalog: str | os.PathLike) -> Path:
    """The lock file of a catalog: ``<catalog>.lock`` beside it (never inside the zarr hierarchy)."""
    catalog = Path(catalog).resolve()
    return catalog.parent / f"{catalog.name}.lock"


def read_lock(catalog: str | os.PathLike) -> dict[str, Any] | None:
    """Who holds the catalog's lock (``pid``, ``host``, ``job``, ``started``, ``command``), or None."""
    try:
        return json.loads(lock_path(catalog).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return {"pid": None, "host": "?", "job": "?", "started": "?", "command": "unreadable lock file"}


def _start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - no such process (or no psutil)
        return None


def _alive(holder: dict[str, Any]) -> bool | None:
    """True / False on this machine; None when the holder is on another machine (cannot be told)."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    started = _start_time(pid)
    return started is not None and abs(started - float(holder.get("process_start", started))) < 1.0


def check_unlocked(catalog: str | os.PathLike, *, break_lock: bool = False) -> None:
    """Raise :class:`CatalogLockedError` now if a live run (or one that cannot be shown gone) holds the
    catalog, as taking the lock would; writes nothing."""
    holder = read_lock(catalog)
    if holder is None:
        return
    alive = _alive(holder)
    if alive is False or (alive is None and break_lock):
        return
    RunLock(catalog, job="?", break_lock=break_lock)._refuse(holder, alive)


class RunLock:
    """The lock of one run on one catalog; a context manager.

    Parameters
    ----------
    catalog : path
    job : str
        The job's name, shown to a run that is refused.
    command : str
        What runs (for the message and ``cdip status``).
    break_lock : bool
        Take the lock even when its holder cannot be shown to be gone (another machine's).
    """

    def __init__(self, catalog: str | os.PathLike, *, job: str, command: str = "", break_lock: bool = False) -> None:
        self.catalog = Path(catalog)
        self.path = lock_path(catalog)
        self.record = {"pid": os.getpid(), "host": socket.gethostname(), "job": job, "command": command,
                       "started": now(), "process_start": _start_time(os.getpid())}
        self.break_lock = break_lock
        self.broke: dict[str, Any] | None = None
        self.held = False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.catalog)
                if holder is None:
                    continue  # released meanwhile
                if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                    raise CatalogLockedError(f"{self.catalog}: this process already runs job {holder.get('job')} "
                                             f"on it")
                alive = _alive(holder)
                if alive is False or (alive is None and self.break_lock):
                    self.broke = holder
                    self.path.unlink(missing_ok=True)
                    continue
                self._refuse(holder, alive)
            with os.fdopen(fd, "w") as f:
                json.dump(self.record, f)
            self.held = True
            return self
        raise CatalogLockedError(f"{self.catalog}: could not take its lock {self.path}")

    def _refuse(self, holder: dict[str, Any], alive: bool | None) -> None:
        where = f"pid {holder.get('pid')} on {holder.get('host')}"
        hint = (f"if that run is gone, pass --break-lock (or remove {self.path})" if alive is None
                else "wait for it to end, or stop it")
        raise CatalogLockedError(f"{self.catalog} is being written by job {holder.get('job')} ({where}, since "
                                 f"{holder.get('started')}): {hint}")

    def release(self) -> None:
        if self.held:
            holder = read_lock(self.catalog)
            if holder and holder.get("pid") == self.record["pid"] and holder.get("host") == self.record["host"]:
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
