"""Exact augmentation of diffraction data: the symmetries of the grid.

Flipping an object about the grid centre ``N // 2`` (``r -> -r``) flips its
far field about the same centre (``q -> -q``), and transposing two axes of the
object transposes those of the far field; so an (input, amplitude, phase)
training triple stays a true triple when the same operation is applied to all
three. With the platform's centring, the flip about ``N // 2`` is
``i -> 2 (N // 2) - i``: reverse, then, on an even grid, roll by one.

A symmetry is numbered ``k`` in ``range(n_symmetries(ndim))``: ``k % ndim!``
picks the axis permutation, the bits of ``k // ndim!`` the flipped axes;
:func:`inversion` is the number of ``r -> -r`` (every axis flipped), the
reflection that with complex conjugation makes the twin of an object.
"""

from __future__ import annotations

import itertools
import math

import torch

__all__ = ["apply_symmetry", "inversion", "n_symmetries", "random_symmetry"]


def n_symmetries(ndim: int) -> int:
    """Number of grid symmetries: ``ndim! * 2**ndim`` (8 in 2D, 48 in 3D)."""
    return math.factorial(ndim) * 2**ndim


def inversion(ndim: int) -> int:
    """Number of the symmetry ``r -> -r`` about the grid centre (no transpose, every axis flipped)."""
    return math.factorial(ndim) * (2**ndim - 1)


def apply_symmetry(x: torch.Tensor, k: int, *, ndim: int) -> torch.Tensor:
    """Symmetry ``k`` applied to the last ``ndim`` axes of ``x`` (any leading axes)."""
    if not 0 <= k < n_symmetries(ndim):
        raise ValueError(f"symmetry {k} is outside 0..{n_symmetries(ndim) - 1} for {ndim} axes")
    lead = x.ndim - ndim
    perms = list(itertools.permutations(range(lead, x.ndim)))
    n_perm = len(perms)
    x = x.permute(*range(lead), *perms[k % n_perm])
    flips = k // n_perm
    for j in range(ndim):
        if flips >> j & 1:
            axis = lead + j
            x = torch.flip(x, (axis,))
            if x.shape[axis] % 2 == 0:  # i -> 2 (N // 2) - i = (N - i) mod N
                x = torch.roll(x, 1, axis)
    return x


def random_symmetry(
    tensors: tuple[torch.Tensor, ...], *, ndim: int, group: str = "grid"
) -> tuple[torch.Tensor, ...]:
    """One symmetry, drawn from the global torch RNG, applied to every tensor alike.

    ``group``: ``"grid"`` draws from all :func:`n_symmetries`, ``"permutations"``
    from the ``ndim!`` axis permutations alone (the symmetries numbered below ``ndim!``).
    """
    sizes = {"grid": n_symmetries(ndim), "permutations": math.factorial(ndim)}
    if group not in sizes:
        raise ValueError(f"group must be one of {tuple(sizes)}, got {group!r}")
    k = int(torch.randint(sizes[group], (1,)))
    return tuple(apply_symmetry(t, k, ndim=ndim) for t in tensors)
