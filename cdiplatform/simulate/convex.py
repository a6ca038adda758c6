"""Convex polygons, batched: hull of point sets, exact centroid, rasterization.

Every function works on a batch of point sets at once, without a Python loop
over the batch. Points are given in pixel coordinates ``(y, x)`` of a grid whose
pixel ``(i, j)`` has its centre at ``(i, j)``; a pixel belongs to a polygon when
its centre does (Gauss digitization), so a rasterized convex polygon is a
digitally convex set: the lattice points of its own convex hull are exactly
its pixels.

The hull is described by a successor index per point (``successor[b, i]`` is
the next hull vertex counter-clockwise in the ``(x, y)`` plane, or ``i`` itself
for a point that is not a hull vertex), so that sums over hull edges are plain
sums over points, and a degenerate "edge" ``i -> i`` contributes nothing.
"""

from __future__ import annotations

import numpy as np

__all__ = ["convex_hull_successors", "polygon_area_centroid", "rasterize_convex"]


def _cross(d: np.ndarray, e: np.ndarray) -> np.ndarray:
    """z-component of ``d x e`` for ``(..., 2)`` vectors stored as ``(y, x)``."""
    return d[..., 1] * e[..., 0] - d[..., 0] * e[..., 1]


def _neighbours(alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Previous and next ``alive`` position of every position, cyclically, ``(B, n)`` each."""
    n = alive.shape[1]
    twice = np.concatenate([alive, alive], axis=1)
    pos = np.arange(2 * n)[None, :]
    after = np.minimum.accumulate(np.where(twice, pos, 3 * n)[:, ::-1], axis=1)[:, ::-1]
    before = np.maximum.accumulate(np.where(twice, pos, -1), axis=1)
    return before[:, n - 1 : 2 * n - 1] % n, after[:, 1 : n + 1] % n


def convex_hull_successors(points: np.ndarray, *, valid: np.ndarray | None = None) -> np.ndarray:
    """Convex hull of each point set, as the successor of each hull vertex.

    The points are sorted by angle around their mean (inside the hull), which
    makes a star-shaped polygon; its reflex and flat vertices, which are never
    hull vertices, are dropped round after round (all of a round at once, at
    most ``n`` rounds of ``O(B n)`` work) until the polygon is convex.

    Parameters
    ----------
    points : ndarray, shape ``(B, n, 2)``
        Point coordinates ``(y, x)`` in pixels, float.
    valid : ndarray of bool, shape ``(B, n)``, optional
        Which points take part; all by default. Each set needs at least three
        valid points that are not collinear.

    Returns
    -------
    ndarray of int64, shape ``(B, n)``
        ``successor[b, i]``: index of the next hull vertex after ``i``, going
        counter-clockwise in the ``(x, y)`` plane; ``i`` itself when point ``i``
        is not a hull vertex (or is not valid). Points lying on a hull edge
        are not vertices.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, n, 2), got {points.shape}")
    n_sets, n = points.shape[:2]
    valid = np.ones((n_sets, n), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (n_sets, n):
        raise ValueError(f"valid has shape {valid.shape}, points {points.shape}")
    count = valid.sum(axis=1)
    if (count < 3).any():
        raise ValueError(f"point set {int(np.argmax(count < 3))} has fewer than 3 valid points")

    mean = (points * valid[..., None]).sum(axis=1) / count[:, None]
    rel = points - mean[:, None, :]
    angle = np.where(valid, np.arctan2(rel[..., 0], rel[..., 1]), np.inf)
    order = np.argsort(angle, axis=1, kind="stable")
    ring = np.take_along_axis(points, order[..., None], axis=1)
    alive = np.take_along_axis(valid, order, axis=1)
    for _ in range(n + 1):
        before, after = _neighbours(alive)
        back = ring - np.take_along_axis(ring, before[..., None], axis=1)
        ahead = np.take_along_axis(ring, after[..., None], axis=1) - ring
        drop = alive & (_cross(back, ahead) <= 0)
        if not drop.any():
            break
        alive &= ~drop
    successor = np.broadcast_to(np.arange(n), (n_sets, n)).copy()
    nxt = np.where(alive, np.take_along_axis(order, after, axis=1), order)
    np.put_along_axis(successor, order, nxt, axis=1)
    return successor


def polygon_area_centroid(points: np.ndarray, successor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area and centroid of convex polygons given by :func:`convex_hull_successors`.

    Parameters
    ----------
    points : ndarray, shape ``(B, n, 2)``
        Vertex coordinates ``(y, x)`` in pixels.
    successor : ndarray of int, shape ``(B, n)``
        Hull successors.

    Returns
    -------
    area : ndarray, shape ``(B,)``
        Area in square pixels (positive).
    centroid : ndarray, shape ``(B, 2)``
        Centroid ``(y, x)`` of the polygon (of its area, not of its vertices),
        in pixels.
    """
    points = np.asarray(points, dtype=np.float64)
    nxt = np.take_along_axis(points, successor[..., None], axis=1)
    cr = _cross(points, nxt)  # x_i y_j - x_j y_i
    area2 = cr.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = ((points + nxt) * cr[..., None]).sum(axis=1) / (3.0 * area2[:, None])
    return 0.5 * area2, centroid


def rasterize_convex(points: np.ndarray, successor: np.ndarray, *, size: int) -> np.ndarray:
    """Pixels of a ``size x size`` grid whose centres lie in each convex polygon.

    Vectorized scan-line rasterization: every hull edge bounds, on each row,
    the columns from the left or from the right, so a row's pixels inside are
    one interval ``lower <= x <= upper``.

    Parameters
    ----------
    points : ndarray, shape ``(B, n, 2)``
        Vertex coordinates ``(y, x)`` in pixels.
    successor : ndarray of int, shape ``(B, n)``
        Hull successors, from :func:`convex_hull_successors`.
    size : int
        Grid size ``N``.

    Returns
    -------
    ndarray of bool, shape ``(B, N, N)``
        ``True`` at pixels ``(y, x)`` whose centre is inside or on the polygon.
    """
    points = np.asarray(points, dtype=np.float64)
    nxt = np.take_along_axis(points, successor[..., None], axis=1)
    dy = (nxt[..., 0] - points[..., 0])[:, :, None]
    dx = (nxt[..., 1] - points[..., 1])[:, :, None]
    y0 = points[..., 0][:, :, None]
    x0 = points[..., 1][:, :, None]
    grid = np.arange(size, dtype=np.float64)
    # inside edge i -> j:  dx (y - y0) - dy (x - x0) >= 0,  i.e.  a x + s(y) >= 0
    a = -dy  # (B, n, 1): the sign of a says which side an edge bounds, on every row
    s = dx * (grid[None, None, :] - y0) + dy * x0  # (B, n, N)
    bound = -s / np.where(a == 0, 1.0, a)
    # per-edge offsets (0 or inf) keep each edge to its side; cheaper than np.where on (B, n, N)
    lower = (bound + np.where(a > 0, 0.0, -np.inf)).max(axis=1)  # (B, N)
    upper = (bound + np.where(a < 0, 0.0, np.inf)).min(axis=1)
    # an edge along a row (a == 0) keeps that row whole or empties it; a non-vertex (i -> i) keeps it
    row_ok = (s + np.where(a == 0, 0.0, np.inf)).min(axis=1) >= 0
    lower[~row_ok] = np.inf
    return (grid[None, None, :] >= lower[:, :, None]) & (grid[None, None, :] <= upper[:, :, None])
