"""Small synthetic objects for the phasing tests (independent of the simulate piece)."""

import numpy as np
import pytest

from cdiplatform.physics.fft import far_field
from cdiplatform.testing.threads import one_torch_thread  # noqa: F401 - autouse: one torch thread per test


def smooth_convex_object(rng: np.random.Generator, size: int, grid: int, ndim: int = 2) -> np.ndarray:
    """A smooth, asymmetric convex object of about ``size`` pixels with a smooth phase, centred in ``grid``.

    An ellipse (ellipsoid) cut by a random plane through its inside, so that
    the amplitude is not centro-symmetric, with soft edges and a sinusoidal phase.
    """
    axes = np.meshgrid(*[np.arange(grid) - grid // 2] * ndim, indexing="ij")
    radii = rng.uniform(0.35, 0.45, ndim) * size
    r2 = sum((a / r) ** 2 for a, r in zip(axes, radii))
    normal = rng.normal(size=ndim)
    normal /= np.linalg.norm(normal)
    cut = sum(n * a for n, a in zip(normal, axes)) / (0.2 * size) + 1.0
    amp = np.clip(np.minimum(1.5 * (1.0 - r2), cut), 0.0, 1.0)
    k = rng.uniform(-1, 1, ndim) * 2 * np.pi / size
    phase = 1.2 * np.sin(sum(ki * a for ki, a in zip(k, axes)) + rng.uniform(0, 2 * np.pi))
    phase = np.where(amp > 0, phase, 0.0)
    return amp * np.exp(1j * phase)


@pytest.fixture
def make_object():
    """The generator of smooth convex test objects, ``make_object(rng, size, grid, ndim=2)``."""
    return smooth_convex_object


@pytest.fixture
def objects_2d():
    """Eight 16-pixel objects on a 32x32 grid (oversampling 2) and their magnitudes."""
    rng = np.random.default_rng(1234)
    obj = np.stack([smooth_convex_object(rng, 16, 32) for _ in range(8)]).astype(np.complex64)
    return obj, np.abs(far_field(obj, ndim=2)).astype(np.float32)


def strained_crystal(rng: np.random.Generator, size: int, ndim: int = 3, strain: float = 3.0):
    """A faceted ellipsoid of about ``size`` voxels with a smooth quadratic phase, zero-padded to ``2 * size``.

    The amplitude is an ellipsoid with soft edges cut by three random facets
    (so not centro-symmetric); the phase a random quadratic form plus a ramp,
    of ``strain`` rad scale across the crystal. Returns ``(amplitude, phase)``,
    float64 arrays of the padded grid, centre at ``N // 2``.
    """
    grid = 2 * size
    axes = np.meshgrid(*[np.arange(grid) - grid // 2] * ndim, indexing="ij")
    radii = rng.uniform(0.32, 0.42, ndim) * size
    amp = np.clip(3.0 * (1.0 - sum((a / r) ** 2 for a, r in zip(axes, radii))), 0.0, 1.0)
    for _ in range(3):
        normal = rng.normal(size=ndim)
        normal /= np.linalg.norm(normal)
        amp = np.minimum(amp, np.clip(rng.uniform(0.2, 0.35) * size - sum(n * a for n, a in zip(normal, axes)), 0, 1))
    quad = rng.normal(size=(ndim, ndim))
    ramp = rng.normal(size=ndim)
    x = [a / size for a in axes]
    phase = strain * (sum((quad[i, j] + quad[j, i]) / 2 * x[i] * x[j] for i in range(ndim) for j in range(ndim))
                      + 0.5 * sum(r * xi for r, xi in zip(ramp, x)))
    return amp, np.where(amp > 0, phase, 0.0)


@pytest.fixture
def make_crystal():
    """The generator of strained test crystals, ``make_crystal(rng, size, ndim=3, strain=3.0)``."""
    return strained_crystal


@pytest.fixture(scope="session")
def crystals_3d():
    """Three strained 16^3 crystals on 32^3 grids: amplitude, phase (truth) and far-field magnitudes (float32)."""
    rng = np.random.default_rng(20261130)
    amp, phase = map(np.stack, zip(*[strained_crystal(rng, 16) for _ in range(3)]))
    magnitude = np.abs(far_field(amp * np.exp(1j * phase), ndim=3)).astype(np.float32)
    return amp, phase, magnitude
