"""The resolution variables of a result node: PRTF and FSC curves per scan, and their resolutions.

``reconstruct`` computes them (:mod:`cdiplatform.postprocess.resolution`) on
the collection's q grid, ``postprocess`` carries them into its node. Per scan,
for ``kind`` ``prtf`` or ``fsc``:

- ``<kind>`` and ``<kind>_q`` on ``shell``: the curve averaged over shells of
  ``|q|`` and the shell centres (1/angstrom), NaN-padded to
  :func:`~cdiplatform.postprocess.resolution.max_shells` of the grid (the
  shells a scan has depend on its q step); ``fsc_threshold`` on ``shell``
  (the 1/2-bit curve; the PRTF's is a constant ``1/e``);
- ``<kind>_resolution`` on ``axis`` (z, y, x) and ``<kind>_resolution_shell``:
  half-periods ``pi / q_cut`` (nm) where the curve in the cone (30 degrees)
  around each axis z, y, x of the frame of ``q_step`` (the laboratory frame
  for a prepared collection), and in the whole shells, first falls below its
  threshold;
- ``<kind>_crossed`` on ``axis`` and ``<kind>_crossed_shell``: whether it
  fell below (False: the resolution is a bound, the half-period at the last shell).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cdiplatform.pipeline.stage import Var

__all__ = ["AXES", "KINDS", "RESOLUTION_VARIABLES", "check_q_step", "has_q_step", "put_curve", "q_steps",
           "resolution_names", "resolution_variables"]

KINDS = ("prtf", "fsc")
AXES = ("z", "y", "x")
_WHAT = {"prtf": "PRTF of the complex average of the kept starts",
         "fsc": "FSC of the reconstructions of two binomial halves of the photons"}


def resolution_names(kind: str) -> tuple[str, ...]:
    """The variables of one kind of curve (``prtf`` or ``fsc``), in the order a node lists them."""
    extra = ("fsc_threshold",) if kind == "fsc" else ()
    return (kind, f"{kind}_q", *extra, f"{kind}_resolution", f"{kind}_resolution_shell", f"{kind}_crossed",
            f"{kind}_crossed_shell")


#: every resolution variable a result node may hold (what ``postprocess`` carries)
RESOLUTION_VARIABLES = tuple(name for kind in KINDS for name in resolution_names(kind))


def resolution_variables(kind: str, n_shells: int) -> dict[str, Var]:
    """The :class:`Var` of each variable of one kind, for a grid of ``n_shells`` shells at most."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    what = _WHAT[kind]
    threshold = "1/2-bit threshold" if kind == "fsc" else "1/e"
    shell, axis = ("shell",), ("axis",)
    out = {
        kind: Var(shell, (n_shells,), "float64",
                  {"long_name": f"{what}, per shell of |q| (NaN past the scan's last shell)", "units": "1"}),
        f"{kind}_q": Var(shell, (n_shells,), "float64", {"long_name": "shell centre |q|", "units": "1/angstrom"}),
    }
    if kind == "fsc":
        out["fsc_threshold"] = Var(shell, (n_shells,), "float64",
                                   {"long_name": "1/2-bit threshold (van Heel & Schatz 2005) per shell",
                                    "units": "1"})
    out.update({
        f"{kind}_resolution": Var(axis, (3,), "float64",
                                  {"long_name": f"half-period where the {kind.upper()} in the cone around each "
                                                f"axis of the q_step frame (z, y, x) first falls below the "
                                                f"{threshold}", "units": "nm"}),
        f"{kind}_resolution_shell": Var((), (), "float64",
                                        {"long_name": f"half-period where the {kind.upper()} of whole shells "
                                                      f"first falls below the {threshold}", "units": "nm"}),
        f"{kind}_crossed": Var(axis, (3,), "bool",
                               {"long_name": f"the {kind.upper()} fell below the {threshold} (False: "
                                             f"{kind}_resolution is a bound)"}),
        f"{kind}_crossed_shell": Var((), (), "bool", {"long_name": f"the shell {kind.upper()} fell below the "
                                                                   f"{threshold}"}),
    })
    return out


def put_curve(out: dict[str, np.ndarray], i: int, curve: Any) -> None:
    """A :class:`~cdiplatform.postprocess.ResolutionCurve` into scan ``i`` of ``out`` (NaN-padded)."""
    kind, n = curve.kind, curve.q.size
    width = out[kind].shape[1]
    if n > width:
        raise ValueError(f"a {kind} curve of {n} shells does not fit the node's {width}")
    out[kind][i, :n] = curve.shell
    out[f"{kind}_q"][i, :n] = curve.q
    if kind == "fsc":
        out["fsc_threshold"][i, :n] = curve.threshold
    out[f"{kind}_resolution"][i] = curve.axis_resolution_nm
    out[f"{kind}_resolution_shell"][i] = curve.resolution_nm
    out[f"{kind}_crossed"][i] = curve.axis_crossed
    out[f"{kind}_crossed_shell"][i] = curve.crossed


def has_q_step(ds: Any) -> bool:
    """Whether a collection records its q steps (a ``q_step`` variable or attribute)."""
    return "q_step" in ds.variables or "q_step" in ds.attrs


def _q_step_attribute(ds: Any) -> np.ndarray:
    value = ds.attrs["q_step"]
    return np.asarray(json.loads(value) if isinstance(value, str) else value, dtype=np.float64)


def check_q_step(ds: Any, *, stage: str) -> None:
    """Refuse a ``q_step`` of another layout than :func:`q_steps` reads (without loading the values)."""
    where = ds.attrs.get("node", "the collection")
    if "q_step" in ds.variables:
        var = ds["q_step"]
        if var.dims != ("scan", "axis", "xyz") or var.shape[1:] != (3, 3):
            raise ValueError(f"{stage}: q_step of {where} has dims {var.dims} and shape {var.shape}, "
                             f"not (scan, axis=3, xyz=3)")
    elif "q_step" in ds.attrs and _q_step_attribute(ds).shape != (3, 3):
        raise ValueError(f"{stage}: the q_step attribute of {where} is not a 3x3 matrix")


def q_steps(ds: Any) -> np.ndarray | None:
    """The signed q step of each grid axis per scan, ``(scan, 3, 3)`` (1/angstrom, rows z, y, x; columns
    laboratory x, y, z): the ``q_step`` variable (``prepare``, carried by ``network_input``), else a
    ``q_step`` attribute shared by every scan; None without either. Scans without one hold NaN.
    The layout is :func:`check_q_step`'s."""
    if "q_step" in ds.variables:
        return np.asarray(ds["q_step"].values, dtype=np.float64)
    if "q_step" in ds.attrs:
        return np.broadcast_to(_q_step_attribute(ds), (ds.sizes["scan"], 3, 3)).copy()
    return None
