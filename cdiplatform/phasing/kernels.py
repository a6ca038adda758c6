"""The elementwise steps of an iteration, eager (in place) or fused by ``torch.compile``.

Between its two FFTs an iteration is a few elementwise passes over arrays
larger than the caches, so their number is what costs. The *eager* steps
(in :func:`cdiplatform.phasing.engine.iterate`) work in place on
preallocated buffers:

- modulus projection: ``F.sgn_()`` then ``F *= A`` on the real view
  (``view_as_real``) with the amplitude stored twice a voxel (``(..., 2)``):
  two passes; with a broadcast ``(..., 1)`` amplitude the product took twice
  as long on CPU (28 against 14.5 ms at 128^3 x 2, inside an iteration);
- HIO: ``rho -= beta y`` then ``torch.where(S, y, rho, out=rho)``: two passes
  (a ``lerp`` with the support as a float weight was no faster inside an
  iteration and costs a complex array of memory);
- ER: ``rho = y S``: one pass.

The *fused* steps are pure expressions of the same quantities, compiled
once per process and shape by ``torch.compile`` into one pass each, used
when asked (``PhasingSettings(compile=True)``) for the steps where they pay
on the device (:func:`fused_steps`, a fixed rule): on this CPU the
magnitude and the separable blur (the blur 3-4 times faster than eager,
docs/phasing.md), not the modulus nor the update (inductor's loops over
interleaved complex data were 2-3 times slower than the eager passes); on
CUDA all of them, to be confirmed by ``tests/benchmarks/gpu/device_bench.py``.
:func:`compile_available` says whether a compiler is there.

On CPU the default is a third way, one pass per step written for numba
(:mod:`cdiplatform.phasing.cpu_kernels`); :func:`resolve_kernels` is the
rule that picks it (``PhasingSettings.kernels``).
"""

from __future__ import annotations

import functools
import importlib.util
import shutil

import torch

__all__ = [
    "FUSED_STEPS",
    "KERNELS",
    "TINY",
    "compile_available",
    "fused_kernels",
    "fused_steps",
    "magnitude_",
    "resolve_kernels",
]

TINY = 1e-30

#: the steps ``compile=True`` fuses, per device type: where it measurably pays (docs/phasing.md)
FUSED_STEPS = {
    "cpu": ("magnitude", "blur"),
    "cuda": ("magnitude", "blur", "modulus", "update"),
}


#: the choices of ``PhasingSettings.kernels``
KERNELS = ("auto", "eager", "numba")


def resolve_kernels(device, choice: str = "auto") -> str:
    """Which elementwise steps an iteration runs: ``"numba"`` or ``"eager"``, a fixed rule of device and install.

    ``"auto"``: the numba kernels of :mod:`cdiplatform.phasing.cpu_kernels`
    (one pass per step) on a CPU where numba and a thread-safe threading
    layer load, the eager torch passes otherwise (any GPU). Record the
    answer with the run.

    Raises
    ------
    ValueError
        ``choice`` is not one of :data:`KERNELS`, or ``"numba"`` on another device than the CPU.
    RuntimeError
        ``"numba"`` where numba cannot run here (the reason said).
    """
    if choice not in KERNELS:
        raise ValueError(f"unknown kernels {choice!r}; known: {', '.join(KERNELS)}")
    if choice == "eager":
        return "eager"
    on_cpu = torch.device(device).type == "cpu"
    if choice == "numba" and not on_cpu:
        raise ValueError(f"kernels='numba' runs on the CPU, not on {torch.device(device).type}")
    if not on_cpu:
        return "eager"
    from cdiplatform.phasing.cpu_kernels import numba_available

    ok, why = numba_available()
    if choice == "numba" and not ok:
        raise RuntimeError(f"kernels='numba' but {why}")
    return "numba" if ok else "eager"


def fused_steps(device) -> tuple[str, ...]:
    """The steps that ``compile=True`` runs fused on ``device`` (only its type counts).

    Names: ``"magnitude"`` (``|rho|`` for shrink-wrap), ``"blur"`` (the
    separable blur, one kernel an axis), ``"modulus"`` (the modulus
    projection), ``"update"`` (the ER / HIO / RAAR step).
    """
    return FUSED_STEPS.get(torch.device(device).type, FUSED_STEPS["cpu"])


def magnitude_(rho_r: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``|rho|`` of a real view ``(..., 2)`` into ``out`` ``(...)``, float32, in three passes.

    ``sqrt(re**2 + im**2)``: on CPU several times faster than ``torch.abs``
    of a complex tensor (a ``hypot`` per element); it differs from it by
    float32 rounding (at most about 5e-7 relative).
    """
    re, im = rho_r[..., 0], rho_r[..., 1]
    torch.mul(re, re, out=out)
    out.addcmul_(im, im)
    return out.sqrt_()


def compile_available(device) -> tuple[bool, str]:
    """Whether ``torch.compile`` can build kernels for ``device``, and why not.

    CPU needs a C++ compiler on the ``PATH``; CUDA needs Triton.
    """
    kind = torch.device(device).type
    if not hasattr(torch, "compile"):
        return False, "this torch has no torch.compile"
    if kind == "cpu":
        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return False, "no C++ compiler (g++, c++, clang++) on the PATH for inductor's CPU kernels"
        return True, "inductor C++ kernels"
    if kind == "cuda":
        if importlib.util.find_spec("triton") is None:
            return False, "Triton is not installed"
        return True, "inductor Triton kernels"
    return False, f"no compiled kernels for device type {kind!r}"


def _modulus(field_r, amplitude):
    mag = torch.sqrt(field_r[..., 0] * field_r[..., 0] + field_r[..., 1] * field_r[..., 1])
    field_r.copy_(field_r * (amplitude / mag.clamp_min(TINY)).unsqueeze(-1))


def _modulus_measured(field_r, amplitude, measured):
    mag = torch.sqrt(field_r[..., 0] * field_r[..., 0] + field_r[..., 1] * field_r[..., 1])
    ratio = torch.where(measured, amplitude / mag.clamp_min(TINY), 1.0)
    field_r.copy_(field_r * ratio.unsqueeze(-1))


def _hio(rho_r, field_r, inside, beta: float):
    rho_r.copy_(torch.where(inside.unsqueeze(-1), field_r, rho_r - beta * field_r))


def _raar(rho_r, field_r, inside, beta: float):
    rho_r.copy_(torch.where(inside.unsqueeze(-1), field_r, beta * rho_r + (1.0 - 2.0 * beta) * field_r))


def _er(rho_r, field_r, inside):
    rho_r.copy_(torch.where(inside.unsqueeze(-1), field_r, 0.0))


def _magnitude(rho_r, out):
    out.copy_(torch.sqrt(rho_r[..., 0] * rho_r[..., 0] + rho_r[..., 1] * rho_r[..., 1]))


@functools.lru_cache(maxsize=1)
def fused_kernels() -> dict:
    """The fused steps, compiled lazily (first call per shape), by name.

    ``modulus(field_r, amplitude)``, ``modulus_measured(field_r, amplitude,
    measured)``, ``hio(rho_r, field_r, inside, beta)``, ``raar(...)``,
    ``er(rho_r, field_r, inside)``, ``magnitude(rho_r, out)``; real views,
    bool masks, all in place.
    """
    fns = {
        "modulus": _modulus,
        "modulus_measured": _modulus_measured,
        "hio": _hio,
        "raar": _raar,
        "er": _er,
        "magnitude": _magnitude,
    }
    return {name: torch.compile(fn, dynamic=False, fullgraph=True) for name, fn in fns.items()}
