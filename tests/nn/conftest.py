"""Tiny synthetic objects for the nn tests: centred ellipses/ellipsoids with a smooth phase."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.physics.fft import diffraction_intensity
from cdiplatform.testing.threads import one_torch_thread  # noqa: F401 - autouse: one torch thread per test


def synthetic_objects(n: int, *, size: int, ndim: int, rng: np.random.Generator, extent: float = 0.5):
    """``(amplitude, phase, intensity)``, each ``(n, *(size,) * ndim)``: objects ~``extent * size`` across."""
    axes = np.meshgrid(*[np.arange(size) - size // 2] * ndim, indexing="ij")
    amplitude = np.zeros((n, *(size,) * ndim))
    phase = np.zeros_like(amplitude)
    for i in range(n):
        radii = size * extent / 2 * rng.uniform(0.7, 1.0, ndim)
        r2 = sum((a / r) ** 2 for a, r in zip(axes, radii, strict=True))
        inside = r2 <= 1
        amplitude[i] = inside * rng.uniform(0.5, 2.0)
        coef = rng.normal(0, 0.5, ndim)
        phase[i] = np.where(
            inside,
            sum(c * a / size * 4 for c, a in zip(coef, axes, strict=True)) + rng.normal(0, 0.5) * r2,
            0,
        )
        phase[i] = np.angle(np.exp(1j * phase[i]))
    intensity = diffraction_intensity(amplitude * np.exp(1j * phase), ndim=ndim)
    return amplitude.astype(np.float32), phase.astype(np.float32), intensity.astype(np.float32)


@pytest.fixture
def objects():
    """The :func:`synthetic_objects` factory."""
    return synthetic_objects
