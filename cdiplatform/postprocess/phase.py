r"""Bragg phase to displacement and strain, inside the support.

Conventions (:mod:`cdiplatform.physics.bragg`): the object is
``rho exp(i phi)`` with ``phi = -G . u``, so the displacement along the Bragg
vector is ``u_G = u . G / |G| = -phi / |G|``. ``|G|`` is taken as ``|q|`` at
the grid centre (``q_bragg``, the Bragg peak the data were centred on).

What is relative and what is absolute:

- the unwrapped phase is known up to a constant and, after
  :func:`remove_phase_ramp`, up to a linear ramp: a ramp is a shift of the
  Bragg peak, i.e. a constant strain (``u`` linear in ``r``) or a rotation of
  the lattice planes. So ``displacement`` and ``strain`` are **relative**:
  ``strain`` is the deviation from the crystal's mean lattice spacing along G
  (its least-squares mean inside the support is about 0);
- the **absolute** strain adds the mean strain against a reference lattice,
  from where the Bragg peak is: :func:`mean_strain` ``= |G_ref| / |G_mean| -
  1``, with ``G_mean`` the q at the grid centre plus the removed ramp. It is
  only as good as the detector angles, distance and energy (a 0.01 degree
  error on 2-theta is about 3e-4 of strain at 34 degrees).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "displacement_from_phase",
    "masked_gradient",
    "mean_strain",
    "remove_phase_ramp",
    "strain_along",
    "unwrap_phase_in_support",
]

_ANGSTROM_PER_NM = 10.0


def _support(support, shape) -> np.ndarray:
    sup = np.asarray(support)
    if sup.dtype != bool:
        raise ValueError(f"support must be a boolean array, got dtype {sup.dtype}")
    if sup.shape != tuple(shape):
        raise ValueError(f"support of shape {sup.shape} differs from the array's {tuple(shape)}")
    return sup


def unwrap_phase_in_support(phase, support) -> np.ndarray:
    """Unwrap a phase inside a support (scikit-image, masked).

    Parameters
    ----------
    phase : array ``(S, *grid)`` (2D or 3D grids), float, radians
        Wrapped phase (``np.angle`` of the object).
    support : bool array, same shape
        Where the phase is meaningful; outside it is ignored by the unwrapping
        (a masked array) and set to 0.

    Returns
    -------
    ndarray, float64, same shape: unwrapped phase, 0 outside the support. Each
    connected part of the support is unwrapped on its own, up to a multiple of
    ``2 pi``.
    """
    try:
        from skimage.restoration import unwrap_phase
    except ImportError as exc:
        raise ImportError("phase unwrapping needs scikit-image: pip install scikit-image") from exc
    ph = np.asarray(phase, dtype=np.float64)
    sup = _support(support, ph.shape)
    if ph.ndim not in (3, 4):
        raise ValueError(f"phase must be (scan, y, x) or (scan, z, y, x), got shape {ph.shape}")
    if not np.all(np.isfinite(ph[sup])):
        raise ValueError("phase holds NaN or infinite values inside the support")
    out = np.zeros_like(ph)
    for s in range(ph.shape[0]):
        if not sup[s].any():
            continue
        wrapped = np.ma.masked_array(np.where(sup[s], ph[s], 0.0), mask=~sup[s])
        res = unwrap_phase(wrapped)
        out[s] = np.where(sup[s], np.ma.getdata(res), 0.0)
    return out


def remove_phase_ramp(phase, support, *, coords: Sequence[np.ndarray], weights=None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove the least-squares plane ``a + k . r`` of a phase inside its support.

    Unlike :func:`cdiplatform.physics.align.remove_phase_ramp` (the far-field
    peak of a complex object), this fits an unwrapped phase directly: the
    ramp ``k`` and offset ``a`` minimise ``sum w (phi - a - k . r)**2`` over the
    support (``w = 1``, or ``weights``, e.g. the amplitude).

    Parameters
    ----------
    phase : array ``(S, *grid)``, radians, unwrapped
    support : bool array, same shape
    coords : one 1-D array per grid axis
        Coordinates of the voxel centres (nm on an orthogonal grid, or
        indices); ``k`` comes in radians per unit of them.
    weights : array, same shape, optional

    Returns
    -------
    phase : ndarray float64, the phase minus the plane, 0 outside the support
    ramp : ndarray ``(S, ndim)``, ``k`` per array axis (radians per coordinate unit)
    offset : ndarray ``(S,)``, ``a`` (the phase of the plane at coordinate 0)
    """
    ph = np.asarray(phase, dtype=np.float64)
    sup = _support(support, ph.shape)
    nd = ph.ndim - 1
    if len(coords) != nd or any(np.asarray(c).shape != (n,) for c, n in zip(coords, ph.shape[1:])):
        raise ValueError(f"coords must be {nd} 1-D arrays of sizes {ph.shape[1:]}")
    w_all = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w_all is not None and w_all.shape != ph.shape:
        raise ValueError(f"weights of shape {w_all.shape} differ from the phase's {ph.shape}")
    mesh = np.meshgrid(*[np.asarray(c, dtype=np.float64) for c in coords], indexing="ij")
    out = np.zeros_like(ph)
    ramps = np.zeros((ph.shape[0], nd))
    offsets = np.zeros(ph.shape[0])
    for s in range(ph.shape[0]):
        m = sup[s]
        if m.sum() < nd + 1:
            raise ValueError(f"support of scan {s} has {int(m.sum())} voxels: too few to fit a phase ramp")
        design = np.column_stack([np.ones(int(m.sum()))] + [g[m] for g in mesh])
        target = ph[s][m]
        if w_all is not None:
            sw = np.sqrt(np.clip(w_all[s][m], 0, None))
            coef = np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)[0]
        else:
            coef = np.linalg.lstsq(design, target, rcond=None)[0]
        plane = coef[0] + sum(k * g for k, g in zip(coef[1:], mesh))
        out[s] = np.where(m, ph[s] - plane, 0.0)
        ramps[s], offsets[s] = coef[1:], coef[0]
    return out, ramps, offsets


def displacement_from_phase(phase, q_bragg) -> np.ndarray:
    """Displacement along G in nm: ``u = -phi / |G|``.

    Parameters
    ----------
    phase : array ``(S, ...)``, radians (unwrapped)
    q_bragg : float or array ``(S,)``
        ``|G|`` in 1/angstrom (the q at the Bragg peak).

    Returns
    -------
    ndarray float64, same shape as ``phase``, nm.
    """
    ph = np.asarray(phase, dtype=np.float64)
    g = np.asarray(q_bragg, dtype=np.float64).reshape(-1)
    if g.size == 1:
        g = np.full(ph.shape[0], g[0])
    if g.shape != (ph.shape[0],) or not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError(f"q_bragg must be positive, one per scan ({ph.shape[0]}), got {np.asarray(q_bragg).tolist()}")
    g_nm = g * _ANGSTROM_PER_NM
    return -ph / g_nm.reshape((-1,) + (1,) * (ph.ndim - 1))


def masked_gradient(values, support, *, spacing: Sequence[float]) -> np.ndarray:
    """Derivative along each axis using only voxels of the support.

    Central differences where both neighbours are in the support, one-sided
    (forward or backward) where only one is (the surface), 0 where neither is
    (and outside the support).

    Parameters
    ----------
    values : array ``(S, *grid)``
    support : bool array, same shape
    spacing : one float per grid axis (coordinate units per voxel)

    Returns
    -------
    ndarray float64 ``(S, ndim, *grid)``: ``d values / d coordinate_axis``.
    """
    v = np.asarray(values, dtype=np.float64)
    sup = _support(support, v.shape)
    nd = v.ndim - 1
    h = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if h.shape != (nd,) or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"spacing must be {nd} positive numbers, got {np.asarray(spacing).tolist()}")
    grad = np.zeros((v.shape[0], nd) + v.shape[1:])
    for ax in range(nd):
        a = ax + 1
        pad = [(0, 0)] * v.ndim
        pad[a] = (1, 1)
        vp = np.pad(v, pad)
        mp = np.pad(sup, pad)
        n = v.shape[a]
        after = tuple(slice(2, n + 2) if i == a else slice(None) for i in range(v.ndim))
        before = tuple(slice(0, n) if i == a else slice(None) for i in range(v.ndim))
        fwd_ok = sup & mp[after]
        bwd_ok = sup & mp[before]
        fwd = (vp[after] - v) / h[ax]
        bwd = (v - vp[before]) / h[ax]
        g = np.where(fwd_ok & bwd_ok, 0.5 * (fwd + bwd), np.where(fwd_ok, fwd, np.where(bwd_ok, bwd, 0.0)))
        grad[:, ax] = g
    return grad


def strain_along(displacement, support, *, spacing: Sequence[float], direction) -> np.ndarray:
    """Strain ``d u_G / d r`` along a direction (the Bragg vector) inside the support.

    Parameters
    ----------
    displacement : array ``(S, z, y, x)``, nm
        Displacement along G on an orthogonal grid.
    support : bool array, same shape
    spacing : 3 floats, nm per voxel along array axes ``(z, y, x)``
    direction : array ``(S, 3)`` or ``(3,)``
        Unit vector of G in the grid's frame, components ``(x, y, z)``.

    Returns
    -------
    ndarray float64, same shape: dimensionless strain, 0 outside the support.
    """
    u = np.asarray(displacement, dtype=np.float64)
    if u.ndim != 4:
        raise ValueError(f"displacement must be (scan, z, y, x), got shape {u.shape}")
    d = np.asarray(direction, dtype=np.float64)
    if d.shape == (3,):
        d = np.broadcast_to(d, (u.shape[0], 3))
    if d.shape != (u.shape[0], 3) or not np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6):
        raise ValueError(f"direction must be unit vectors (x, y, z), one per scan, got {np.asarray(direction).tolist()}")
    grad = masked_gradient(u, support, spacing=spacing)  # (S, 3 [z, y, x], ...)
    comps = d[:, ::-1]  # (x, y, z) -> array axes (z, y, x)
    return np.einsum("sa,sa...->s...", comps, grad)


def mean_strain(q_peak, *, lattice_constant: float, hkl: Sequence[int], ramp_q=None) -> np.ndarray:
    """Mean strain along G against a reference cubic lattice: ``|G_ref| / |G_mean| - 1``.

    Parameters
    ----------
    q_peak : array ``(S, 3)`` or ``(3,)``, 1/angstrom
        q at the grid centre (where the data were centred: the Bragg peak).
    lattice_constant : float
        Reference cubic lattice constant, angstrom (gold: 4.0782).
    hkl : 3 ints
        The reflection.
    ramp_q : array ``(S, 3)``, optional
        The removed phase ramp as a q offset (1/angstrom, same frame as
        ``q_peak``): the crystal's peak sits at ``q_peak + ramp_q``.

    Returns
    -------
    ndarray ``(S,)``: positive when the crystal's spacing exceeds the reference's.
    """
    from cdiplatform.physics.bragg import reciprocal_vector

    g_ref = float(np.linalg.norm(reciprocal_vector(hkl, lattice_constant=lattice_constant)))
    q = np.atleast_2d(np.asarray(q_peak, dtype=np.float64))
    if q.shape[1:] != (3,):
        raise ValueError(f"q_peak must be (scan, 3) vectors, got shape {np.asarray(q_peak).shape}")
    if ramp_q is not None:
        q = q + np.asarray(ramp_q, dtype=np.float64).reshape(q.shape)
    return g_ref / np.linalg.norm(q, axis=1) - 1.0
