"""Work that can be stopped: a call run in a child process, killed when it exceeds its time limit.

A LAMMPS minimization or a torch call that never returns cannot be
interrupted inside a worker's thread; a scan with a time limit is therefore
computed in a child process (``python -m cdiplatform.pipeline.isolation``,
its input and output passed as pickles through files), which is killed when
the limit is reached. A plain subprocess rather than :mod:`multiprocessing`,
because Dask's worker processes are daemons, which may not have children of
their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["ScanTimeout", "call_in_child"]


class ScanTimeout(TimeoutError):
    """A call exceeded its time limit and its process was killed."""


def call_in_child(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``fn(*args)`` in a child process; raises :class:`ScanTimeout` after ``timeout`` seconds, or the
    exception the call raised."""
    import cloudpickle

    with tempfile.TemporaryDirectory(prefix="cdip-child-") as folder:
        given, taken = Path(folder) / "in.pkl", Path(folder) / "out.pkl"
        given.write_bytes(cloudpickle.dumps((fn, args)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.Popen([sys.executable, "-m", "cdiplatform.pipeline.isolation", str(given), str(taken)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ScanTimeout(f"exceeded its time limit of {timeout:g} s (its process was stopped)") from None
        if not taken.exists():
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            raise RuntimeError(f"the child process ended with status {proc.returncode} "
                               f"{(tail or [''])[0]}".rstrip())
        ok, value = cloudpickle.loads(taken.read_bytes())
    if not ok:
        raise value
    return value


def _main(given: str, taken: str) -> None:
    import cloudpickle

    fn, args = cloudpickle.loads(Path(given).read_bytes())
    try:
        result = (True, fn(*args))
    except Exception as exc:  # noqa: BLE001 - handed back to the caller
        result = (False, exc)
    Path(taken).write_bytes(cloudpickle.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
