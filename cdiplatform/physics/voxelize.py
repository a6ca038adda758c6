"""Point clouds (atoms) onto a regular grid: counts and per-voxel averages.

Positions are given with columns ``(x, y[, z])``; grids are indexed
``[z,] y, x`` (the catalog's dimension order), so column ``j`` of a position
maps to grid axis ``ndim - 1 - j``. The voxel with index ``N // 2`` on every
axis is centred on ``centre``; voxel ``i`` is centred at
``centre + (i - N // 2) * voxel_size``.

Two deposition schemes:

- ``"cic"`` (cloud in cell, the default): each point spreads a unit weight
  over the ``2**ndim`` nearest voxel centres, linearly in each axis. Counts
  are conserved exactly and vary smoothly as atoms move, so a lattice whose
  period divides the voxel size deposits a uniform density.
- ``"nearest"``: each point counts fully in the voxel that contains it.

A per-voxel average of a per-point value (a displacement, say) is the
weighted mean ``sum(w v) / sum(w)`` with the same weights; it is zero where
no point deposits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["voxelize_points"]

Method = Literal["cic", "nearest"]


def voxelize_points(
    positions: np.ndarray,
    *,
    shape: Sequence[int],
    voxel_size: float,
    centre: Sequence[float] | None = None,
    values: np.ndarray | None = None,
    method: Method = "cic",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Deposit points on a grid: counts, and the weighted mean of their values.

    Parameters
    ----------
    positions : ndarray, shape (n_points, ndim)
        Point coordinates, columns ``(x, y[, z])``, in the units of ``voxel_size``.
    shape : sequence of int
        Grid shape, ``([nz,] ny, nx)``.
    voxel_size : float
        Voxel edge, in position units.
    centre : sequence of float, optional
        Position (``(x, y[, z])``) of the centre of voxel ``N // 2``; the origin by default.
    values : ndarray, shape (n_points,) or (n_points, k), optional
        Per-point values to average per voxel.
    method : {"cic", "nearest"}
        Deposition scheme (see the module docstring).

    Returns
    -------
    counts : ndarray, shape ``shape``
        Number of points per voxel (fractional for ``"cic"``); sums to ``n_points``.
    means : ndarray, shape ``shape`` or ``shape + (k,)``, or None
        Weighted mean of ``values`` per voxel, 0 where ``counts == 0``;
        None without ``values``.

    Raises
    ------
    ValueError
        When points fall outside the grid (the grid is too small), or on
        inconsistent shapes.
    """
    pos = np.asarray(positions, dtype=float)
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if pos.ndim != 2 or pos.shape[1] != ndim:
        raise ValueError(f"positions must have shape (n_points, {ndim}) for a {ndim}-D grid, got {pos.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    centre = np.zeros(ndim) if centre is None else np.asarray(centre, dtype=float)
    vals = None
    if values is not None:
        vals = np.asarray(values, dtype=float)
        if vals.shape[0] != pos.shape[0]:
            raise ValueError(f"values has {vals.shape[0]} rows for {pos.shape[0]} points")
        vals = vals.reshape(pos.shape[0], -1)

    # continuous grid index per axis, in grid-axis order ([z,] y, x)
    g = ((pos - centre) / voxel_size)[:, ::-1] + np.array([s // 2 for s in shape])
    size = int(np.prod(shape))
    strides = np.array([int(np.prod(shape[a + 1 :])) for a in range(ndim)])

    if method == "nearest":
        idx = np.floor(g + 0.5).astype(np.int64)
        corners = [(idx, np.ones(pos.shape[0]))]
        low, high = idx, idx
    elif method == "cic":
        base = np.floor(g).astype(np.int64)
        frac = g - base
        corners = []
        for offset in np.ndindex(*(2,) * ndim):
            off = np.array(offset)
            w = np.prod(np.where(off == 1, frac, 1.0 - frac), axis=1)
            corners.append((base + off, w))
        low, high = base, base + 1
    else:
        raise ValueError(f"method must be 'cic' or 'nearest', got {method!r}")

    outside = np.any((low < 0) | (high >= np.array(shape)), axis=1)
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} of {pos.shape[0]} points fall outside the grid {shape} "
            f"of voxel {voxel_size} centred at {centre.tolist()}; the grid is too small"
        )

    counts = np.zeros(size)
    sums = None if vals is None else np.zeros((vals.shape[1], size))
    for idx, w in corners:
        flat = idx @ strides
        counts += np.bincount(flat, weights=w, minlength=size)
        if sums is not None:
            for k in range(vals.shape[1]):
                sums[k] += np.bincount(flat, weights=w * vals[:, k], minlength=size)
    counts = counts.reshape(shape)
    if sums is None:
        return counts, None
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums.reshape((-1,) + shape) / counts, 0.0)
    means = np.moveaxis(means, 0, -1)
    if values is not None and np.asarray(values).ndim == 1:
        means = means[..., 0]
    return counts, means
