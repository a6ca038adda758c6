"""Random 2D test objects and their diffraction: the CDI NN (2018) training recipe.

An object is a random convex shape (the convex hull of random points), value 1
inside and 0 outside (at pixel centres), its edges smoothed by a Gaussian of
``sigma`` pixels, its centroid at the grid centre ``N // 2``; its phase mixes sine gratings and
Gaussians, scaled to a random peak-to-peak of up to ``2 pi`` inside the object,
centred on 0 (so within ``-pi..pi``) and 0 outside. Its intensity is
``|far_field(amplitude * exp(i phase))|**2`` with the platform's centred,
unitary FFT (:mod:`cdiplatform.physics.fft`).

Randomness: one generator per object. Each object's random numbers are one
``rng.random(k)`` call on its own generator, with ``k`` and the meaning of every
number fixed by the :class:`Convex2DRecipe`; everything after that is
vectorized over the batch and computed per object (no reduction or matrix
product mixes objects), so an object's values depend only on its generator:
the same seeds give bit-identical objects whatever the batch or chunking.

Shapes: the ``n`` points are drawn one per angular sector of ``2 pi / n``
(jittered) over an annulus ``R/2..R`` squeezed along a random direction, so
that the hull surrounds its centre and is never a sliver. The polygon is
moved so that its exact area centroid is at ``N // 2`` and scaled about it
to fit ``max_radius`` (and ``min_area``). The centroid of its pixels can
still miss the centre by sampling: the few objects whose amplitude centroid
misses it by more than 0.3 pixel are moved by the sub-pixel offset (of a
9 x 9 grid within half a pixel) that centres them best, which keeps every
amplitude centroid within about 0.3 pixel of ``N // 2``.

Where "inside" ends: the smoothed amplitude is set to exactly 0 where it falls
below ``support_threshold`` (0.01 by default, about 2.3 pixels outside the
sharp edge for ``sigma = 1``), so the object's support is ``amplitude > 0`` and
the phase is 0 exactly where the amplitude is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cdiplatform.physics.fft import object_intensity
from cdiplatform.physics.grids import zero_pad
from cdiplatform.simulate.convex import convex_hull_successors, polygon_area_centroid, rasterize_convex
from cdiplatform.simulate.phase_fields import grating_gaussian_field, scale_phase

__all__ = ["Convex2DRecipe", "object_intensity", "random_objects_2d", "simulate_2d", "zero_pad"]


@dataclass(frozen=True)
class Convex2DRecipe:
    """The knobs of the random 2D objects; lengths are fractions of the grid size ``N``.

    Parameters
    ----------
    points_min, points_max : int
        Number of random points whose convex hull is the shape (inclusive
        range, >= 3); one point per angular sector, so 3 gives triangles.
    radius_min, radius_max : float
        Outer radius ``R`` of the annulus ``R/2..R`` the points are drawn in
        (uniformly over its area), fraction of ``N``.
    aspect_min, aspect_max : float
        The disc is squeezed by this factor (0 < aspect <= 1) along a random
        direction, which gives elongated shapes.
    max_radius : float
        After centring, a shape whose farthest vertex lies beyond
        ``max_radius * N`` from the centre is scaled down about its centroid.
        With the default 0.35 and ``sigma = 1`` the support stays within about
        ``0.42 N`` of the centre: the object fits in the grid with a margin, and
        the grid zero-padded to ``2 N`` is oversampled more than twice per axis.
    min_area : float
        A shape smaller than ``min_area * N**2`` is scaled up about its
        centroid (but never beyond ``max_radius``), so no object is a sliver.
    sigma : float
        Standard deviation of the Gaussian that smooths the edges, pixels
        (0: sharp edges).
    support_threshold : float
        Amplitude below which the object is "outside": amplitude and phase are
        set to exactly 0 there.
    gratings_max, gaussians_max : int
        Each object's phase has ``0..gratings_max`` sine gratings and
        ``0..gaussians_max`` Gaussians (uniform counts; at least one component:
        when both counts come out 0 the object gets one Gaussian, or one
        grating when ``gaussians_max`` is 0).
    period_min, period_max : float
        Period of the gratings, fraction of ``N``.
    width_min, width_max : float
        Standard deviation of the Gaussians (independently along ``y`` and
        ``x``), fraction of ``N``; their centres are uniform within
        ``radius_max * N`` of the grid centre on each axis.
    ptp_min, ptp_max : float
        Peak-to-peak of the phase inside the object, fraction of ``2 pi``
        (uniform); the phase is centred on 0 so it stays within ``-pi..pi``.
    """

    points_min: int = 4
    points_max: int = 12
    radius_min: float = 0.2
    radius_max: float = 0.35
    aspect_min: float = 0.5
    aspect_max: float = 1.0
    max_radius: float = 0.35
    min_area: float = 0.05
    sigma: float = 1.0
    support_threshold: float = 0.01
    gratings_max: int = 2
    gaussians_max: int = 3
    period_min: float = 0.25
    period_max: float = 1.5
    width_min: float = 0.05
    width_max: float = 0.25
    ptp_min: float = 0.0
    ptp_max: float = 1.0

    def check(self, size: int) -> None:
        """Raise ``ValueError`` naming the first knob that cannot work on a ``size`` grid."""

        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"Convex2DRecipe: {what} (got {self})")

        need(isinstance(size, int | np.integer) and size >= 8, f"size must be an integer >= 8, got {size!r}")
        need(3 <= self.points_min <= self.points_max, "need 3 <= points_min <= points_max")
        need(0 < self.radius_min <= self.radius_max, "need 0 < radius_min <= radius_max")
        need(0 < self.aspect_min <= self.aspect_max <= 1, "need 0 < aspect_min <= aspect_max <= 1")
        need(0 < self.max_radius < 0.5, "need 0 < max_radius < 0.5")
        need(0 <= self.min_area < math.pi * self.max_radius**2, "need 0 <= min_area < pi max_radius^2")
        need(self.sigma >= 0, "need sigma >= 0")
        need(0 < self.support_threshold < 0.5, "need 0 < support_threshold < 0.5")
        need(self.gratings_max >= 0 and self.gaussians_max >= 0, "component counts must be >= 0")
        need(self.gratings_max + self.gaussians_max >= 1, "need at least one phase component")
        need(0 < self.period_min <= self.period_max, "need 0 < period_min <= period_max")
        need(0 < self.width_min <= self.width_max, "need 0 < width_min <= width_max")
        need(0 <= self.ptp_min <= self.ptp_max <= 1, "need 0 <= ptp_min <= ptp_max <= 1")

    @property
    def n_uniforms(self) -> int:
        """How many uniform numbers one object draws from its generator."""
        return 4 + 2 * self.points_max + 3 + 4 * self.gratings_max + 5 * self.gaussians_max


class _Columns:
    """Hands out consecutive columns of the per-object uniform numbers."""

    def __init__(self, u: np.ndarray):
        self._u = u
        self._at = 0

    def take(self, n: int | None = None) -> np.ndarray:
        width = 1 if n is None else n
        cols = self._u[:, self._at : self._at + width]
        self._at += width
        return cols[:, 0] if n is None else cols


def _uniforms(rngs: Sequence[np.random.Generator], k: int) -> np.ndarray:
    if isinstance(rngs, np.random.Generator):
        raise TypeError("rngs must be a sequence of generators, one per object, not a single generator")
    rows = []
    for i, rng in enumerate(rngs):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rngs[{i}] is a {type(rng).__name__}, not a numpy.random.Generator")
        rows.append(rng.random(k))
    return np.stack(rows) if rows else np.empty((0, k))


def _count(u: np.ndarray, low: int, high: int) -> np.ndarray:
    """Uniform integers in ``low..high`` (inclusive) from uniforms in ``[0, 1)``."""
    return np.minimum(low + np.floor(u * (high - low + 1)).astype(np.int64), high)


def _between(u: np.ndarray, low: float, high: float) -> np.ndarray:
    return low + u * (high - low)


@functools.lru_cache(maxsize=16)
def _smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """``G`` with ``G @ m @ G.T`` the Gaussian filter of ``m`` (zero outside, truncated at 4 sigma)."""
    if sigma == 0:
        g = np.eye(size, dtype=np.float32)
    else:
        radius = int(4.0 * sigma + 0.5)
        taps = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
        kernel /= kernel.sum()
        offset = np.arange(size)[:, None] - np.arange(size)[None, :]
        g = np.where(np.abs(offset) <= radius, kernel[np.clip(offset + radius, 0, 2 * radius)], 0.0)
        g = g.astype(np.float32)
    g.setflags(write=False)
    return g


def _random_shapes(cols: _Columns, size: int, recipe: Convex2DRecipe) -> np.ndarray:
    """Amplitudes ``(B, N, N)`` of smoothed convex shapes centred on ``N // 2``."""
    r = recipe
    centre = size // 2
    n_points = _count(cols.take(), r.points_min, r.points_max)
    radius = size * _between(cols.take(), r.radius_min, r.radius_max)
    aspect = _between(cols.take(), r.aspect_min, r.aspect_max)
    tilt = np.pi * cols.take()
    # point k in angular sector k of n (jittered, at least a fifth of a sector
    # apart from its neighbours) and uniform over the annulus R/2..R: the hull
    # surrounds the centre and is never a sliver
    sector = np.arange(r.points_max)[None, :] + 0.5 + 0.8 * (cols.take(r.points_max) - 0.5)
    theta = 2.0 * np.pi * sector / n_points[:, None]
    rho = radius[:, None] * np.sqrt(0.25 + 0.75 * cols.take(r.points_max))
    along, across = rho * np.cos(theta), aspect[:, None] * rho * np.sin(theta)
    cos_t, sin_t = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
    points = np.stack([along * sin_t + across * cos_t, along * cos_t - across * sin_t], axis=-1)
    valid = np.arange(r.points_max)[None, :] < n_points[:, None]

    successor = convex_hull_successors(points, valid=valid)
    area, centroid = polygon_area_centroid(points, successor)
    points = points - centroid[:, None, :]  # centroid at the origin, exactly up to rounding
    vertex = successor != np.arange(r.points_max)[None, :]
    reach = np.where(vertex, np.hypot(points[..., 0], points[..., 1]), 0.0).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        grow = np.sqrt(r.min_area * size**2 / area)
        limit = r.max_radius * size / reach
    scale = np.minimum(np.maximum(grow, 1.0), limit)
    points = points * scale[:, None, None] + centre

    def amplitudes(pts: np.ndarray, succ: np.ndarray) -> np.ndarray:
        mask = rasterize_convex(pts, succ, size=size).astype(np.float32)
        g = _smoothing_matrix(size, float(r.sigma))
        amp = np.matmul(np.matmul(g, mask), g.T)  # Gaussian filter; one small product per object
        np.minimum(amp, np.float32(1), out=amp)
        amp *= amp >= r.support_threshold
        return amp

    return _recentre(amplitudes(points, successor), points, successor, amplitudes)


#: sub-pixel moves tried on a shape whose amplitude misses the centre by more than _CENTRE_TOLERANCE
_NUDGES = np.stack(np.meshgrid(*2 * [np.linspace(-0.5, 0.5, 9)], indexing="ij"), axis=-1).reshape(-1, 2)
_CENTRE_TOLERANCE = 0.3


def _centroids(amplitude: np.ndarray) -> np.ndarray:
    """Centroids ``(y, x)`` of ``(B, N, N)`` images, pixels (the centre for an empty image)."""
    size = amplitude.shape[-1]
    grid = np.arange(size, dtype=np.float64)
    rows, cols = amplitude.sum(axis=2), amplitude.sum(axis=1)  # (B, N) each
    total = rows.sum(axis=1, dtype=np.float64)
    rows, cols = (rows * grid).sum(axis=1), (cols * grid).sum(axis=1)  # per-object sums, not BLAS
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.stack([rows, cols], axis=1) / total[:, None]
    return np.where(total[:, None] > 0, centroid, float(size // 2))


def _recentre(
    amplitude: np.ndarray,
    points: np.ndarray,
    successor: np.ndarray,
    make: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Redraw the objects whose amplitude centroid misses ``N // 2`` by pixel sampling.

    The polygon's area centroid is at the centre, but the centroid of its
    pixels can miss it by up to about half a pixel for a few shapes; those are
    moved by the sub-pixel offset (of ``_NUDGES``) that centres them best.
    """
    size = amplitude.shape[-1]
    centre = size // 2
    miss = np.abs(_centroids(amplitude) - centre).max(axis=1)
    fix = np.flatnonzero(miss > _CENTRE_TOLERANCE)
    if len(fix) == 0:
        return amplitude
    k = len(_NUDGES)
    block = max(1, 2**22 // (k * size * size))  # objects per round of trials: bounded memory
    for start in range(0, len(fix), block):
        some = fix[start : start + block]
        moved = points[some][:, None, :, :] + _NUDGES[None, :, None, :]  # (F, K, n, 2)
        trials = make(moved.reshape(len(some) * k, *points.shape[1:]), np.repeat(successor[some], k, axis=0))
        trial_miss = np.abs(_centroids(trials) - centre).max(axis=1).reshape(len(some), k)
        trial_miss = np.concatenate([miss[some, None], trial_miss], axis=1)  # keep the original when best
        best = trial_miss.argmin(axis=1)
        choose = np.flatnonzero(best > 0)
        amplitude[some[choose]] = trials.reshape(len(some), k, size, size)[choose, best[choose] - 1]
    return amplitude


def _random_phases(cols: _Columns, support: np.ndarray, recipe: Convex2DRecipe) -> np.ndarray:
    r = recipe
    size = support.shape[-1]
    peak_to_peak = 2.0 * np.pi * _between(cols.take(), r.ptp_min, r.ptp_max)
    n_gratings = _count(cols.take(), 0, r.gratings_max)
    n_gaussians = _count(cols.take(), 0, r.gaussians_max)
    none = (n_gratings + n_gaussians) == 0
    if r.gaussians_max > 0:
        n_gaussians = np.where(none, 1, n_gaussians)
    else:
        n_gratings = np.where(none, 1, n_gratings)

    kg, kh = r.gratings_max, r.gaussians_max
    used_g = np.arange(kg)[None, :] < n_gratings[:, None]
    used_h = np.arange(kh)[None, :] < n_gaussians[:, None]
    spread = r.radius_max * size
    field = grating_gaussian_field(
        size=size,
        grating_direction=np.pi * cols.take(kg),
        grating_period=size * _between(cols.take(kg), r.period_min, r.period_max),
        grating_offset=2.0 * np.pi * cols.take(kg),
        grating_weight=np.where(used_g, cols.take(kg), 0.0),
        gaussian_centre=spread * (2.0 * cols.take(2 * kh) - 1.0).reshape(-1, kh, 2),
        gaussian_width=size * _between(cols.take(2 * kh), r.width_min, r.width_max).reshape(-1, kh, 2),
        gaussian_weight=np.where(used_h, 2.0 * cols.take(kh) - 1.0, 0.0),
        dtype=np.float32,
    )
    phase = scale_phase(field, support, peak_to_peak)
    pi = np.float32(np.pi)  # rounds up: |phase| <= pi holds in float32
    return np.clip(phase, -pi, pi)


def random_objects_2d(
    rngs: Sequence[np.random.Generator],
    *,
    size: int = 32,
    recipe: Convex2DRecipe | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random convex objects with smooth random phases, one per generator.

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator, length ``B``
        One generator per object; object ``i`` draws only from ``rngs[i]``
        (``recipe.n_uniforms`` numbers, in a single call).
    size : int
        Grid size ``N`` (pixels per axis); the object centroid sits at ``N // 2``.
    recipe : Convex2DRecipe, optional
        The generator's knobs; the defaults by default.

    Returns
    -------
    amplitude : ndarray of float32, shape ``(B, N, N)``
        In ``[0, 1]``: 1 inside, smoothed edges, exactly 0 outside the support.
    phase : ndarray of float32, shape ``(B, N, N)``
        Radians, within ``[-pi, pi]``, exactly 0 where ``amplitude == 0``.
    """
    recipe = Convex2DRecipe() if recipe is None else recipe
    recipe.check(size)
    cols = _Columns(_uniforms(rngs, recipe.n_uniforms))

    amplitude = _random_shapes(cols, size, recipe)
    phase = _random_phases(cols, amplitude > 0, recipe)
    return amplitude, phase


def simulate_2d(
    rngs: Sequence[np.random.Generator],
    *,
    size: int = 32,
    pad: int = 1,
    recipe: Convex2DRecipe | None = None,
) -> dict[str, np.ndarray]:
    """Random 2D objects and their diffraction intensities.

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator, length ``B``
        One generator per object (see :func:`random_objects_2d`).
    size : int
        Grid size ``N`` of the objects.
    pad : int
        Zero-padding factor: 2 gives the oversampled variant on a ``2 N`` grid
        (truth padded too). The objects do not depend on ``pad``.
    recipe : Convex2DRecipe, optional
        The generator's knobs.

    Returns
    -------
    dict with ``intensity``, ``amplitude``, ``phase``: float32, shape ``(B, M, M)``, ``M = pad * N``
        The intensity is computed from the float32 amplitude and phase, so a
        collection's stored truth reproduces its stored intensity exactly.
    """
    amplitude, phase = random_objects_2d(rngs, size=size, recipe=recipe)
    if pad != 1:
        amplitude, phase = zero_pad(amplitude, factor=pad), zero_pad(phase, factor=pad)
    return {"intensity": object_intensity(amplitude, phase), "amplitude": amplitude, "phase": phase}

