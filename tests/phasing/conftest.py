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
