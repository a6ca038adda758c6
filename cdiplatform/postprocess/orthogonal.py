r"""From the detector-conjugate grid to a regular orthogonal grid in nm.

A prepared scan samples reciprocal space on the (frame, row, column) grid
``q(m) = q_peak + sum_a (m_a - N_a // 2) s_a``: ``s_a`` is the signed q step
of grid axis ``a`` (a row of the 3x3 ``q_step`` matrix, components ``(x, y,
z)``, 1/angstrom; :func:`cdiplatform.ingest.geometry.q_steps`). Phase
retrieval returns an object ``obj(n)`` whose centred FFT (kernel
``exp(-2 pi i m . n / N)``, :mod:`cdiplatform.physics.fft`) is the measured
field. It equals the continuous transform ``sum rho(r) exp(-i dq . r)`` when
voxel ``n`` sits at

.. math:: r(n) = \sum_a (n_a - N_a // 2)\, b_a, \qquad
          s_a \cdot b_c = \frac{2 \pi}{N_a} \delta_{ac},

i.e. ``B = 2 pi diag(1/N) S^-T`` (:func:`real_space_basis`): the inverse
transpose of the q step matrix, with ``2 pi`` and the grid size per axis.
Conversely a position ``r`` is at the fractional index
``n_a = N_a // 2 + N_a (s_a . r) / (2 pi)``, which is what
:func:`to_orthogonal` interpolates at. The determinant of ``S`` (hence of
``B``) carries the handedness: using the step lengths alone would mirror the
crystal when it is negative and shear it always.

Frames (:func:`frame_rotation`). Vectors are in xrayutilities' laboratory
frame (beam along z, y the axis of Theta and Delta) unless a frame is named:

- ``"laboratory"``: those axes, the crystal as it sits at the rocking angle of
  the grid centre;
- ``"crystal"``: ``z_c`` along the Bragg vector ``G`` (the q at the grid
  centre), ``y_c`` the lab ``y`` made orthogonal to it, ``x_c = y_c x z_c``. A
  proper rotation of the lab frame, so the handedness is kept.

Orthogonal arrays are ``(z, y, x)`` in the named frame (axis 0 along z, as the
rest of the platform), coordinates in nm with the grid centre ``n // 2`` at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FRAMES",
    "OrthogonalGrid",
    "conjugate_positions",
    "frame_rotation",
    "orthogonal_grid",
    "real_space_basis",
    "to_orthogonal",
    "voxel_sizes_nm",
]

#: frames an orthogonal grid can be expressed in
FRAMES = ("laboratory", "crystal")
_ANGSTROM_PER_NM = 10.0


def _q_step_matrix(q_step, *, what: str = "q_step") -> np.ndarray:
    s = np.asarray(q_step, dtype=float)
    if s.shape != (3, 3):
        raise ValueError(f"{what} must be a 3x3 matrix (rows: grid axes, columns: x, y, z), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{what} holds NaN or infinite values")
    det = np.linalg.det(s)
    scale = np.prod(np.linalg.norm(s, axis=1))
    if not scale > 0 or abs(det) < 1e-9 * scale:
        raise ValueError(f"{what} is singular (its three q steps are not independent): {s.tolist()}")
    return s


def _shape3(shape) -> np.ndarray:
    n = np.asarray(shape, dtype=int).reshape(-1)
    if n.shape != (3,) or np.any(n < 1):
        raise ValueError(f"grid shape must be 3 positive sizes, got {tuple(np.asarray(shape).tolist())}")
    return n


def real_space_basis(q_step, shape: Sequence[int]) -> np.ndarray:
    """Real-space step vector of each axis of the grid conjugate to a q grid.

    Parameters
    ----------
    q_step : array (3, 3)
        Signed q step of each grid axis (rows), components ``(x, y, z)``, 1/angstrom.
    shape : 3 ints
        Grid size ``N`` per axis (after crop and binning).

    Returns
    -------
    ndarray (3, 3), float64
        Row ``a``: the position change, in nm, for one step along grid axis
        ``a``; ``b_a . s_c = 2 pi delta_ac / N_a``. Its determinant has the
        sign of ``q_step``'s.
    """
    s = _q_step_matrix(q_step)
    n = _shape3(shape)
    return 2.0 * np.pi * np.linalg.inv(s).T / n[:, None] / _ANGSTROM_PER_NM


def voxel_sizes_nm(q_step, shape: Sequence[int]) -> np.ndarray:
    """Edge lengths (nm) of the conjugate-grid voxel, one per grid axis: ``|b_a|``."""
    return np.linalg.norm(real_space_basis(q_step, shape), axis=1)


def frame_rotation(frame: str, *, q_peak=None) -> np.ndarray:
    """Rotation from laboratory components to the components of ``frame``.

    Parameters
    ----------
    frame : {"laboratory", "crystal"}
    q_peak : array (3,), optional
        The Bragg vector (q at the grid centre), lab frame; needed for ``"crystal"``.

    Returns
    -------
    ndarray (3, 3)
        Rows: the frame's unit axes ``x_f, y_f, z_f`` in lab components, so
        ``v_frame = R @ v_lab``; ``det R = +1``.
    """
    if frame == "laboratory":
        return np.eye(3)
    if frame != "crystal":
        raise ValueError(f"frame must be one of {FRAMES}, not {frame!r}")
    if q_peak is None:
        raise ValueError("the crystal frame needs q_peak, the Bragg vector at the grid centre")
    g = np.asarray(q_peak, dtype=float).reshape(-1)
    if g.shape != (3,) or not np.all(np.isfinite(g)) or not np.linalg.norm(g) > 0:
        raise ValueError(f"q_peak must be a non-zero 3-vector, got {np.asarray(q_peak).tolist()}")
    z = g / np.linalg.norm(g)
    ref = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
    y = ref - (ref @ z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.stack([x, y, z])


@dataclass(frozen=True)
class OrthogonalGrid:
    """A regular grid in a named frame.

    Attributes
    ----------
    frame : str
    z, y, x : ndarray (n,), float64
        Coordinates of the voxel centres along each array axis, nm; index
        ``n // 2`` is at 0 (the conjugate grid's centre).
    """

    frame: str
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.size, self.y.size, self.x.size)

    @property
    def spacing_nm(self) -> np.ndarray:
        """Voxel size per array axis ``(z, y, x)``, nm."""
        return np.array([c[1] - c[0] if c.size > 1 else np.nan for c in (self.z, self.y, self.x)])

    @property
    def origin_nm(self) -> np.ndarray:
        """Coordinates ``(z, y, x)`` of voxel ``(0, 0, 0)``, nm."""
        return np.array([self.z[0], self.y[0], self.x[0]])


def conjugate_positions(shape: Sequence[int], q_step, where=None) -> np.ndarray:
    """Laboratory positions of conjugate-grid voxels: ``(n - N // 2) @ B``.

    Parameters
    ----------
    shape : 3 ints, the conjugate grid
    q_step : array (3, 3), signed q steps (lab, 1/angstrom)
    where : bool array ``shape``, optional
        Only these voxels (in C order); all by default.

    Returns
    -------
    ndarray ``(M, 3)``, components ``(x, y, z)``, nm.
    """
    return _positions(shape, real_space_basis(q_step, shape), where)


def _positions(shape: Sequence[int], basis: np.ndarray, where=None) -> np.ndarray:
    idx = np.argwhere(where) if where is not None else np.indices(shape).reshape(3, -1).T
    centre = np.array([n // 2 for n in shape])
    return (idx - centre) @ basis


def orthogonal_grid(
    supports,
    q_step,
    *,
    frame: str = "laboratory",
    q_peak=None,
    voxel_nm: float | Sequence[float] | None = None,
    margin: int = 2,
) -> OrthogonalGrid:
    """One orthogonal grid that holds the supports of a batch of scans.

    Parameters
    ----------
    supports : bool array ``(S, *grid)``
        Supports on each scan's conjugate grid (centre ``N // 2``).
    q_step : array ``(S, 3, 3)`` or ``(3, 3)``
        Signed q steps per scan, lab frame, 1/angstrom.
    frame : {"laboratory", "crystal"}
    q_peak : array ``(S, 3)`` or ``(3,)``, optional
        Bragg vector per scan (needed for ``"crystal"``).
    voxel_nm : float or 3 floats ``(z, y, x)``, optional
        Voxel size; default isotropic, the shortest conjugate voxel edge
        (:func:`voxel_sizes_nm`) over all scans and axes, so that no scan is
        sampled more coarsely than its data along any grid axis.
    margin : int
        Empty voxels kept around the largest support, per side.

    Returns
    -------
    OrthogonalGrid
        Symmetric about 0 on each axis, wide enough for every scan's support.
    """
    sup = np.asarray(supports, dtype=bool)
    if sup.ndim != 4:
        raise ValueError(f"supports must be (scan, z, y, x), got shape {sup.shape}")
    n_scans, grid = sup.shape[0], sup.shape[1:]
    steps = _batch(q_step, n_scans, (3, 3), "q_step")
    peaks = None if q_peak is None else _batch(q_peak, n_scans, (3,), "q_peak")
    if margin < 0:
        raise ValueError(f"margin must be a number of voxels >= 0, got {margin}")
    if voxel_nm is None:
        voxel = np.full(3, min(voxel_sizes_nm(s, grid).min() for s in steps))
    else:
        voxel = np.broadcast_to(np.asarray(voxel_nm, dtype=float), (3,)).copy()
        if not np.all(np.isfinite(voxel)) or np.any(voxel <= 0):
            raise ValueError(f"voxel_nm must be positive, got {np.asarray(voxel_nm).tolist()}")
    half = np.zeros(3)  # largest |coordinate| per frame axis (x, y, z)
    for s in range(n_scans):
        if not sup[s].any():
            raise ValueError(f"support of scan {s} is empty")
        rot = frame_rotation(frame, q_peak=None if peaks is None else peaks[s])
        basis = real_space_basis(steps[s], grid) @ rot.T  # rows b_a in frame components
        pos = _positions(grid, basis, sup[s])
        # interpolation reaches half a conjugate voxel past the support's voxel centres
        half = np.maximum(half, np.abs(pos).max(axis=0) + 0.5 * np.abs(basis).sum(axis=0))
    axes = []
    for h, v in zip(half[::-1], voxel):  # frame (x, y, z) -> array axes (z, y, x)
        k = int(np.ceil(h / v)) + margin
        axes.append((np.arange(2 * k + 1) - k) * v)
    return OrthogonalGrid(frame=frame, z=axes[0], y=axes[1], x=axes[2])


def _batch(a, n: int, tail: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.shape == tail:
        arr = np.broadcast_to(arr, (n,) + tail)
    if arr.shape != (n,) + tail:
        raise ValueError(f"{what} must have shape {tail} or {(n,) + tail}, got {arr.shape}")
    return arr


def to_orthogonal(
    values,
    q_step,
    grid: OrthogonalGrid,
    *,
    q_peak=None,
    order: int = 1,
) -> np.ndarray:
    """Interpolate arrays on conjugate grids onto an orthogonal grid.

    Parameters
    ----------
    values : array ``(S, *conjugate_grid)``, complex, real or bool
        Per scan, values on the conjugate grid (centre ``N // 2``). Complex
        values are interpolated as real and imaginary parts (never amplitude
        and wrapped phase); booleans as 0/1, then thresholded at 1/2.
    q_step : array ``(S, 3, 3)`` or ``(3, 3)``
        Signed q steps (lab frame, 1/angstrom).
    grid : OrthogonalGrid
        Target grid (:func:`orthogonal_grid`); its ``frame`` names the axes.
    q_peak : array ``(S, 3)`` or ``(3,)``, optional
        Bragg vector per scan, needed when ``grid.frame == "crystal"``.
    order : int
        Spline order of :func:`scipy.ndimage.map_coordinates` (1: trilinear,
        no overshoot). Points outside the conjugate grid get 0.

    Returns
    -------
    ndarray ``(S, *grid.shape)``: complex64, float32 or bool after ``values``.
    """
    from scipy.ndimage import map_coordinates

    vals = np.asarray(values)
    if vals.ndim != 4:
        raise ValueError(f"values must be (scan, z, y, x) on the conjugate grid, got shape {vals.shape}")
    n_scans, shape = vals.shape[0], vals.shape[1:]
    steps = _batch(q_step, n_scans, (3, 3), "q_step")
    peaks = None if q_peak is None else _batch(q_peak, n_scans, (3,), "q_peak")
    zz, yy, xx = np.meshgrid(grid.z, grid.y, grid.x, indexing="ij")
    frame_pos = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)  # frame components (x, y, z)
    n = np.asarray(shape, dtype=float)
    centre = np.array([s // 2 for s in shape], dtype=float)
    if vals.dtype == bool:
        out = np.empty((n_scans,) + grid.shape, dtype=bool)
    elif np.iscomplexobj(vals):
        out = np.empty((n_scans,) + grid.shape, dtype=np.complex64)
    else:
        out = np.empty((n_scans,) + grid.shape, dtype=np.float32)
    for s in range(n_scans):
        rot = frame_rotation(grid.frame, q_peak=None if peaks is None else peaks[s])
        lab = frame_pos @ rot  # v_lab = R^T v_frame
        _q_step_matrix(steps[s])
        frac = centre[:, None] + n[:, None] * (steps[s] @ lab.T) * _ANGSTROM_PER_NM / (2 * np.pi)
        v = vals[s]
        if v.dtype == bool:
            res = map_coordinates(v.astype(np.float32), frac, order=order, mode="constant", cval=0.0) >= 0.5
        elif np.iscomplexobj(v):
            res = (map_coordinates(v.real.astype(np.float64), frac, order=order, mode="constant")
                   + 1j * map_coordinates(v.imag.astype(np.float64), frac, order=order, mode="constant"))
        else:
            res = map_coordinates(v.astype(np.float64), frac, order=order, mode="constant")
        out[s] = res.reshape(grid.shape)
    return out
