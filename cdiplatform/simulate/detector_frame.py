"""Bragg CDI on the detector frame: a strained crystal in nm to the (frame, row, column) intensity.

The inverse of :mod:`cdiplatform.postprocess.orthogonal`. A crystal is given on
a regular laboratory grid (xrayutilities' lab axes, arrays ``(z, y, x)``, voxel
``spacing_nm``, its centre voxel ``n // 2`` at the origin) as a density and a
displacement field; a rocking scan's geometry as the signed q step matrix of
its (frame, row, column) grid and the q at the grid centre
(:func:`cdiplatform.ingest.geometry.q_steps`, or :func:`scan_geometry`). The
object is sampled on the detector-conjugate grid (voxel ``n`` at ``r(n) =
(n - N // 2) @ B``, ``B`` from
:func:`cdiplatform.postprocess.orthogonal.conjugate_positions`) by trilinear
interpolation of the density and of the displacement (never of a wrapped
phase), given the Bragg phase ``phi = -G . u`` with ``G = q_peak``, and
transformed with the platform's far field: ``I = |far_field(rho exp(i phi))|**2``.

This is the linear (small-angle) model of the q grid that reconstructions
also assume: the q of frame ``f``, row ``r``, column ``c`` is ``q_peak + ((f, r,
c) - N // 2) @ q_step``; the curvature of the Ewald sphere over the few
hundredths of 1/angstrom a cube spans is neglected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["detector_frame_object", "polyhedron_density", "scan_geometry", "simulate_detector_frame"]

_ANGSTROM_PER_NM = 10.0


def scan_geometry(
    *,
    energy_kev: float = 9.0,
    delta_deg: float = 32.174,
    gamma_deg: float = 12.6346,
    camdist_mm: float = 500.0,
    pixel_size_m: Sequence[float] = (55e-6, 55e-6),
    rocking_step_deg: float = 0.005,
    pixel: Sequence[float] | None = None,
    sensor_shape: Sequence[int] = (512, 512),
    binning: Sequence[int] = (1, 1, 1),
) -> dict:
    """q steps (lab frame) of a 34-ID-C rocking scan; the defaults are scan 54's.

    Scan 54 (Au(111), APS 34-ID-C): 9 keV, Delta 32.174, Gamma 12.6346 degrees,
    camdist 500 mm, 55 um Timepix pixels, Theta steps of 0.005 degree. The
    Bragg peak sits at ``pixel`` (row, column of the 512 x 512 sensor; default
    the sensor centre). Returns :func:`cdiplatform.ingest.geometry.q_steps`'s
    dict (``q_step`` (3, 3), ``q_peak`` (3,), ``q_bragg``...).
    """
    from cdiplatform.ingest.geometry import q_steps

    return q_steps(energy_kev=energy_kev, delta_deg=delta_deg, gamma_deg=gamma_deg,
                   rocking_step_deg=rocking_step_deg, camdist_mm=camdist_mm, pixel_size_m=pixel_size_m,
                   sensor_shape=sensor_shape, pixel=pixel, binning=binning)


def polyhedron_density(shape: Sequence[int], *, spacing_nm: float | Sequence[float], normals,
                       distances_nm, centre_nm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A convex polyhedron ``{r : (r - c) . n_k <= d_k}`` on a regular grid, edges soft over one voxel.

    Parameters
    ----------
    shape : 3 ints, ``(nz, ny, nx)``
    spacing_nm : float or 3 floats ``(z, y, x)``
    normals : array ``(K, 3)``, facet normals, components ``(x, y, z)`` (normalized here)
    distances_nm : array ``(K,)``, distance of each facet from the centre, nm
    centre_nm : 3 floats ``(x, y, z)``, nm

    Returns
    -------
    ndarray float32 ``shape``, 1 inside, 0 outside, a linear ramp one voxel
    wide across each facet (limits aliasing of the sharp edge).
    """
    spacing = np.broadcast_to(np.asarray(spacing_nm, dtype=float), (3,))
    nrm = np.asarray(normals, dtype=float)
    dist = np.asarray(distances_nm, dtype=float).reshape(-1)
    if nrm.ndim != 2 or nrm.shape[1] != 3 or nrm.shape[0] != dist.size or dist.size < 4:
        raise ValueError(f"need at least 4 facets: normals (K, 3) and distances (K,), got {nrm.shape} and {dist.shape}")
    if np.any(spacing <= 0):
        raise ValueError(f"spacing_nm must be positive, got {spacing.tolist()}")
    nrm = nrm / np.linalg.norm(nrm, axis=1, keepdims=True)
    axes = [(np.arange(n) - n // 2) * h for n, h in zip(shape, spacing)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    pos = np.stack([xx, yy, zz], axis=-1) - np.asarray(centre_nm, dtype=float)
    # signed distance outside the worst facet, in voxels (the voxel edge along that facet's normal)
    h_along = np.abs(nrm[:, ::-1]) @ spacing  # (K,), spacing (z, y, x) vs normal (x, y, z)
    excess = ((pos @ nrm.T) - dist) / h_along
    return np.clip(0.5 - excess.max(axis=-1), 0.0, 1.0).astype(np.float32)


def _lab_grid_index(positions_nm: np.ndarray, shape: Sequence[int], spacing: np.ndarray) -> np.ndarray:
    """Fractional array indices ``(3, M)`` (z, y, x) of lab positions ``(M, 3)`` (x, y, z) on a centred grid."""
    centre = np.array([n // 2 for n in shape], dtype=float)
    zyx = positions_nm[:, ::-1]
    return (zyx / spacing + centre).T


def detector_frame_object(
    density,
    displacement_nm=None,
    *,
    spacing_nm: float | Sequence[float],
    q_step,
    q_peak,
    shape: Sequence[int],
) -> np.ndarray:
    """The complex object on the detector-conjugate grid of a rocking scan.

    Parameters
    ----------
    density : array ``(S, nz, ny, nx)``, real, non-negative
        Crystal density on a regular laboratory grid, centre voxel ``n // 2`` at 0.
    displacement_nm : array ``(S, nz, ny, nx, 3)``, optional
        Displacement, components ``(x, y, z)``, nm; none: an unstrained crystal.
    spacing_nm : float or 3 floats ``(z, y, x)``
        Voxel size of the laboratory grid, nm.
    q_step : array ``(3, 3)``
        Signed q step of the detector grid's axes (frame, row, column) in lab
        components, 1/angstrom (``scan_geometry()["q_step"]``).
    q_peak : array ``(3,)``
        q at the detector grid's centre, lab frame, 1/angstrom; used as ``G``.
    shape : 3 ints
        Detector grid (frames, rows, columns).

    Returns
    -------
    ndarray complex64 ``(S, *shape)``: ``rho exp(-i G . u)``, centre ``N // 2``.
    """
    from scipy.ndimage import map_coordinates

    from cdiplatform.postprocess.orthogonal import conjugate_positions

    rho = np.asarray(density, dtype=np.float64)
    if rho.ndim != 4:
        raise ValueError(f"density must be (scan, z, y, x), got shape {rho.shape}")
    if not np.all(np.isfinite(rho)) or np.any(rho < 0):
        raise ValueError("density must be finite and non-negative")
    u = None
    if displacement_nm is not None:
        u = np.asarray(displacement_nm, dtype=np.float64)
        if u.shape != rho.shape + (3,):
            raise ValueError(f"displacement_nm must have shape {rho.shape + (3,)}, got {u.shape}")
    spacing = np.broadcast_to(np.asarray(spacing_nm, dtype=float), (3,))
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing_nm must be positive, got {np.asarray(spacing_nm).tolist()}")
    g = np.asarray(q_peak, dtype=float).reshape(-1)
    if g.shape != (3,) or not np.linalg.norm(g) > 0:
        raise ValueError(f"q_peak must be a non-zero 3-vector, got {np.asarray(q_peak).tolist()}")
    det_shape = tuple(int(n) for n in shape)
    idx = _lab_grid_index(conjugate_positions(det_shape, q_step), rho.shape[1:], spacing)
    out = np.empty((rho.shape[0],) + det_shape, dtype=np.complex64)
    g_nm = g * _ANGSTROM_PER_NM
    for s in range(rho.shape[0]):
        amp = map_coordinates(rho[s], idx, order=1, mode="constant", cval=0.0)
        if u is None:
            phase = 0.0
        else:
            comps = [map_coordinates(u[s, ..., c], idx, order=1, mode="nearest") for c in range(3)]
            phase = -(g_nm[0] * comps[0] + g_nm[1] * comps[1] + g_nm[2] * comps[2])
        out[s] = (amp * np.exp(1j * phase)).reshape(det_shape)
    return out


def simulate_detector_frame(
    density,
    displacement_nm=None,
    *,
    spacing_nm: float | Sequence[float],
    q_step,
    q_peak,
    shape: Sequence[int],
    total_photons: float | None = None,
    rngs: Sequence[np.random.Generator] | None = None,
    return_object: bool = False,
):
    """Diffraction intensity of strained crystals on a rocking scan's (frame, row, column) grid.

    Parameters
    ----------
    density, displacement_nm, spacing_nm, q_step, q_peak, shape
        As :func:`detector_frame_object` (crystals of 100-300 nm on a grid of
        a few nm; the detector grid must hold them: ``N_a |b_a|`` exceeds the
        crystal, twice for oversampling 2).
    total_photons : float, optional
        Scale each scan's intensity to this many photons in all (before noise).
    rngs : list of numpy.random.Generator, optional
        One per scan: Poisson noise (needs ``total_photons``). Without them the
        intensity is noise-free.
    return_object : bool
        Also return the conjugate-grid object (the exact answer phase
        retrieval should find, up to its ambiguities).

    Returns
    -------
    intensity : ndarray float32 ``(S, *shape)``, photons when scaled (integers
        when noisy); Bragg peak of the unstrained crystal at ``N // 2``.
    obj : ndarray complex64 ``(S, *shape)``, only with ``return_object``.
    """
    from cdiplatform.physics.fft import far_field

    obj = detector_frame_object(density, displacement_nm, spacing_nm=spacing_nm, q_step=q_step,
                                q_peak=q_peak, shape=shape)
    intensity = np.abs(far_field(obj, ndim=3)).astype(np.float64) ** 2
    if rngs is not None and total_photons is None:
        raise ValueError("Poisson noise (rngs) needs total_photons: a photon count to scale to")
    if rngs is not None and len(rngs) != obj.shape[0]:
        raise ValueError(f"got {len(rngs)} random generators for {obj.shape[0]} scans")
    if total_photons is not None:
        if not total_photons > 0:
            raise ValueError(f"total_photons must be positive, got {total_photons}")
        sums = intensity.reshape(obj.shape[0], -1).sum(axis=1)
        if np.any(sums <= 0):
            raise ValueError("a crystal has no density on the detector-conjugate grid (outside its field of view?)")
        intensity *= (total_photons / sums).reshape(-1, 1, 1, 1)
        if rngs is not None:
            intensity = np.stack([rng.poisson(i).astype(np.float64) for rng, i in zip(rngs, intensity)])
    intensity = intensity.astype(np.float32)
    return (intensity, obj) if return_object else intensity
