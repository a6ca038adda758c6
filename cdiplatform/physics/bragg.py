r"""The Bragg phase of a displacement field, written down once.

Derivation. Near a Bragg reflection ``G``, an atom ``j`` at its ideal
position ``r_j`` displaced by ``u_j`` scatters with the amplitude

.. math:: A(q) = \sum_j f\, e^{-i q \cdot (r_j + u_j)},

where the kernel ``exp(-i q . r)`` is that of the forward FFT of
:mod:`cdiplatform.physics.fft`. Write ``q = G + dq``. Because ``G . r_j`` is a
multiple of ``2 pi`` on the lattice, and ``dq . u_j`` is negligible next to
``G . u_j`` (``|dq| << |G|``, ``|u| << lattice constant``),

.. math:: A(G + dq) \approx \sum_j f\, e^{-i G \cdot u_j}\, e^{-i dq \cdot r_j}
          = \mathrm{FT}\left[\rho(r)\, e^{i \phi(r)}\right](dq),
          \qquad \phi(r) = -G \cdot u(r).

So the complex object whose centred FFT is the diffraction around ``G`` is
``rho * exp(i phi)`` with ``phi = -G . u``. The sign is a convention tied to the
transform: with ``exp(+i q . r)`` it would be ``+G . u``; swapping it conjugates
the object and flips the diffraction pattern (``q -> -q``).

For a cubic crystal with lattice constant ``a`` and reflection ``(h, k, l)``,
``G = 2 pi (h, k, l) / a``, so in lattice units (``a = 1``) the (111) phase is
``phi = -2 pi (u_x + u_y + u_z)``.

The phase must be computed from an averaged *displacement*, never by
averaging phases: ``phi`` wraps modulo ``2 pi`` and a mean of wrapped values
is meaningless.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bragg_phase", "reciprocal_vector"]


def reciprocal_vector(hkl: Sequence[int], *, lattice_constant: float = 1.0) -> np.ndarray:
    """Reciprocal-lattice vector ``G = 2 pi (h, k, l) / a`` of a cubic lattice.

    Parameters
    ----------
    hkl : sequence of 3 ints
        Miller indices of the reflection.
    lattice_constant : float
        Cubic lattice constant ``a``; ``G`` comes in radians per unit of ``a``.

    Returns
    -------
    ndarray, shape (3,)
        Components along ``(x, y, z)``.
    """
    hkl = np.asarray(hkl, dtype=float)
    if hkl.shape != (3,) or not np.any(hkl):
        raise ValueError(f"hkl must be three Miller indices, not all zero; got {hkl.tolist()}")
    if not lattice_constant > 0:
        raise ValueError(f"lattice_constant must be positive, got {lattice_constant}")
    return 2.0 * np.pi * hkl / lattice_constant


def bragg_phase(
    displacement: np.ndarray,
    *,
    hkl: Sequence[int] = (1, 1, 1),
    lattice_constant: float = 1.0,
) -> np.ndarray:
    """Bragg phase ``phi = -G . u`` of a displacement field.

    Parameters
    ----------
    displacement : ndarray, shape (..., 3)
        Displacement ``u`` with components ``(u_x, u_y, u_z)`` on the last
        axis, in the units of ``lattice_constant`` (lattice units by default).
    hkl : sequence of 3 ints
        Reflection, (111) by default.
    lattice_constant : float
        Cubic lattice constant in the units of ``displacement``.

    Returns
    -------
    ndarray, shape (...)
        Phase in radians, not wrapped.
    """
    u = np.asarray(displacement)
    if u.shape[-1:] != (3,):
        raise ValueError(f"displacement must have 3 components on its last axis, got shape {u.shape}")
    g = reciprocal_vector(hkl, lattice_constant=lattice_constant)
    return -(u @ g)
