"""A batch of reconstructions on one orthogonal grid: amplitude, phase, displacement, strain.

:func:`postprocess_scans` chains the pieces of this package for the scans of
a result node: the common grid (:func:`~.orthogonal.orthogonal_grid`), the
interpolation (:func:`~.orthogonal.to_orthogonal`), the support (the phasing
support, trimmed to the voxels whose amplitude exceeds a fraction of the
maximum), the unwrapping, the least-squares ramp and offset, the
displacement and strain along G.

Layout: every scan on the same grid (same voxel size, same extent, the
coordinates shared), each scan's crystal centred at 0 and zero-padded to the
largest one; ``(scan, z, y, x)`` arrays like every other node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cdiplatform.postprocess.orthogonal import (
    OrthogonalGrid,
    frame_rotation,
    orthogonal_grid,
    real_space_basis,
    to_orthogonal,
)
from cdiplatform.postprocess.phase import (
    displacement_from_phase,
    mean_strain,
    remove_phase_ramp,
    strain_along,
    unwrap_phase_in_support,
)

__all__ = ["PostprocessResult", "postprocess_scans"]

_ANGSTROM_PER_NM = 10.0


@dataclass
class PostprocessResult:
    """Reconstructions on one orthogonal grid (arrays ``(S, z, y, x)``).

    Attributes
    ----------
    grid : OrthogonalGrid
        Frame and coordinates (nm) of the axes ``z, y, x``.
    amplitude : float32
        ``|obj|`` interpolated (complex interpolation), 0 outside the grid.
    phase : float32
        Unwrapped Bragg phase, least-squares ramp and offset inside the support
        removed, radians, 0 outside the support. Relative.
    displacement : float32
        ``-phase / |G|`` along G, nm. Relative (the ramp took a linear part).
    strain : float32
        ``d u_G / d r_G``, dimensionless. Relative: deviation from the mean
        spacing along G.
    strain_absolute : float32 or None
        ``strain + mean_strain`` when a reference lattice was given.
    support : bool
        The phasing support interpolated, and ``amplitude >= threshold * max``.
    g_direction : ``(S, 3)``
        Unit vector of G in the grid's frame, components ``(x, y, z)``.
    q_bragg : ``(S,)``
        ``|G|``, 1/angstrom.
    ramp : ``(S, 3)``
        Removed phase ramp, radians per nm, along array axes ``(z, y, x)``.
    offset : ``(S,)``
        Removed phase offset, radians.
    mean_strain : ``(S,)``
        Mean strain along G against the reference lattice (NaN without one).
    conjugate_basis_nm : ``(S, 3, 3)``
        Real-space step of each conjugate-grid axis (rows), lab components, nm.
    """

    grid: OrthogonalGrid
    amplitude: np.ndarray
    phase: np.ndarray
    displacement: np.ndarray
    strain: np.ndarray
    strain_absolute: np.ndarray | None
    support: np.ndarray
    g_direction: np.ndarray
    q_bragg: np.ndarray
    ramp: np.ndarray
    offset: np.ndarray
    mean_strain: np.ndarray
    conjugate_basis_nm: np.ndarray


def postprocess_scans(
    obj,
    support,
    *,
    q_step,
    q_peak,
    frame: str = "laboratory",
    voxel_nm: float | Sequence[float] | None = None,
    amplitude_threshold: float = 0.2,
    margin: int = 2,
    lattice_constant: float | None = None,
    hkl: Sequence[int] | None = None,
    grid: OrthogonalGrid | None = None,
) -> PostprocessResult:
    """Bring reconstructions from their conjugate grids onto one orthogonal grid.

    Parameters
    ----------
    obj : complex array ``(S, *grid)``
        Objects on the detector-conjugate grid of their prepared scans (the
        platform's convention: ``far_field(obj)`` is the measured field), centre
        ``N // 2``.
    support : bool array ``(S, *grid)``
        Their supports.
    q_step : array ``(S, 3, 3)`` or ``(3, 3)``
        Signed q step per grid axis (rows), lab components, 1/angstrom, of the
        grid ``obj`` lives on (after crop, binning or resampling).
    q_peak : array ``(S, 3)`` or ``(3,)``
        q at the grid centre (the Bragg peak), lab frame, 1/angstrom: gives G.
    frame : {"laboratory", "crystal"}
    voxel_nm : float or 3 floats, optional
        Orthogonal voxel; default isotropic, the shortest conjugate voxel edge.
    amplitude_threshold : float
        Support voxels whose amplitude is below this fraction of the scan's
        maximum are dropped before unwrapping (their phase is noise).
    margin : int
        Empty voxels around the largest support.
    lattice_constant, hkl : optional
        Reference cubic lattice (angstrom) and reflection: adds the absolute strain.
    grid : OrthogonalGrid, optional
        A grid fixed beforehand (a stage that works in chunks of scans makes it
        once from all supports with :func:`~.orthogonal.orthogonal_grid`);
        then ``frame``, ``voxel_nm`` and ``margin`` are not used.

    Returns
    -------
    PostprocessResult
    """
    c = np.asarray(obj)
    sup = np.asarray(support)
    if c.ndim != 4 or not np.iscomplexobj(c):
        raise ValueError(f"obj must be complex (scan, z, y, x), got {c.dtype} of shape {c.shape}")
    if sup.shape != c.shape or sup.dtype != bool:
        raise ValueError(f"support must be boolean of shape {c.shape}, got {sup.dtype} of shape {sup.shape}")
    if not 0 <= amplitude_threshold < 1:
        raise ValueError(f"amplitude_threshold must be in [0, 1), got {amplitude_threshold}")
    if (lattice_constant is None) != (hkl is None):
        raise ValueError("give both lattice_constant and hkl for the absolute strain, or neither")
    n_scans, shape = c.shape[0], c.shape[1:]
    steps = np.asarray(q_step, dtype=float)
    steps = np.broadcast_to(steps, (n_scans, 3, 3)) if steps.shape == (3, 3) else steps
    peaks = np.asarray(q_peak, dtype=float)
    peaks = np.broadcast_to(peaks, (n_scans, 3)) if peaks.shape == (3,) else peaks
    if steps.shape != (n_scans, 3, 3) or peaks.shape != (n_scans, 3):
        raise ValueError(f"q_step must be (3, 3) or ({n_scans}, 3, 3) and q_peak (3,) or ({n_scans}, 3); "
                         f"got {steps.shape} and {peaks.shape}")

    if grid is None:
        grid = orthogonal_grid(sup, steps, frame=frame, q_peak=peaks, voxel_nm=voxel_nm, margin=margin)
    frame = grid.frame
    field = to_orthogonal(c, steps, grid, q_peak=peaks)
    sup_o = to_orthogonal(sup, steps, grid, q_peak=peaks)
    amp = np.abs(field)
    peak_amp = np.where(sup_o, amp, 0).reshape(n_scans, -1).max(axis=1)
    sup_o &= amp >= amplitude_threshold * peak_amp.reshape(-1, 1, 1, 1)
    empty = ~sup_o.reshape(n_scans, -1).any(axis=1)
    if empty.any():
        raise ValueError(f"the support of scan(s) {np.nonzero(empty)[0].tolist()} is empty on the orthogonal "
                         f"grid (outside it, or amplitude_threshold {amplitude_threshold} too high)")

    coords = (grid.z, grid.y, grid.x)
    phase = unwrap_phase_in_support(np.angle(field), sup_o)
    phase, ramp, offset = remove_phase_ramp(phase, sup_o, coords=coords)
    q_bragg = np.linalg.norm(peaks, axis=1)
    rots = np.stack([frame_rotation(frame, q_peak=p) for p in peaks])
    g_dir = np.einsum("sij,sj->si", rots, peaks / q_bragg[:, None])
    disp = displacement_from_phase(phase, q_bragg)
    strain = strain_along(disp, sup_o, spacing=grid.spacing_nm, direction=g_dir)
    if lattice_constant is not None:
        # the ramp k (rad/nm, frame) is a far-field shift dq = k: back to lab components, 1/angstrom
        ramp_lab = np.einsum("sji,sj->si", rots, ramp[:, ::-1]) / _ANGSTROM_PER_NM
        eps0 = mean_strain(peaks, lattice_constant=lattice_constant, hkl=hkl, ramp_q=ramp_lab)
        strain_abs = np.where(sup_o, strain + eps0.reshape(-1, 1, 1, 1), 0.0).astype(np.float32)
    else:
        eps0 = np.full(n_scans, np.nan)
        strain_abs = None
    return PostprocessResult(
        grid=grid,
        amplitude=amp.astype(np.float32),
        phase=phase.astype(np.float32),
        displacement=disp.astype(np.float32),
        strain=strain.astype(np.float32),
        strain_absolute=strain_abs,
        support=sup_o,
        g_direction=g_dir,
        q_bragg=q_bragg,
        ramp=ramp,
        offset=offset,
        mean_strain=eps0,
        conjugate_basis_nm=np.stack([real_space_basis(s, shape) for s in steps]),
    )
