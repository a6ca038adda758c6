"""Small simulated crystals for the physics tests: faceted, with a strain-like phase."""

import numpy as np
import pytest

from cdiplatform.testing.threads import one_torch_thread  # noqa: F401 - autouse: one torch thread per test


def faceted_crystal(rng: np.random.Generator, grid: int, *, ndim: int = 3, size: float = 11.0,
                    strain: float = 1.0, edge: float = 0.7) -> np.ndarray:
    """A crystal about ``size`` voxels across, centred at ``grid // 2``, as a complex object.

    Its amplitude is the intersection of random half-spaces (a polyhedron),
    edges softened over about ``edge`` voxels (as a voxelized atom density
    is), and its phase a smooth displacement-like field: a ramp plus a bump,
    ``strain`` radians of scale (0 gives a flat-phase control).
    """
    axes = np.meshgrid(*[np.arange(grid, dtype=float) - grid // 2] * ndim, indexing="ij")
    normals = rng.normal(size=(4 * ndim, ndim))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    dist = rng.uniform(0.35, 0.5, len(normals)) * size
    depth = np.min([d - sum(n[k] * axes[k] for k in range(ndim)) for n, d in zip(normals, dist)], axis=0)
    amp = np.clip(0.5 + depth / (2 * edge), 0.0, 1.0)
    k = rng.normal(size=ndim)
    r2 = sum(a**2 for a in axes)
    phase = strain * (0.15 * sum(ki * a for ki, a in zip(k, axes)) + 1.2 * np.exp(-r2 / (2 * (0.3 * size) ** 2)))
    phase = np.where(amp > 0, phase, 0.0)
    return amp * np.exp(1j * phase)


@pytest.fixture
def make_crystal():
    """``make_crystal(rng, grid, ndim=3, size=11, strain=1, edge=0.7)``: see :func:`faceted_crystal`."""
    return faceted_crystal
