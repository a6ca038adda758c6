r"""Resolution estimates: PRTF of the kept starts, FSC of independent half data sets.

Both curves live on the q grid of the objects: ``q(m) = (m - N // 2) @ q_step``
(1/angstrom; the detector grid for objects on the conjugate grid, or
:func:`orthogonal_q_step` for objects on an orthogonal grid). They are
averaged over shells of ``|q|`` (width: the longest q step) up to the sphere
inscribed in the grid, and over cones (half-angle ``cone_deg``) around each
axis of a frame, so that the resolution comes per axis.

- **PRTF** (phase retrieval transfer function) of the complex average of
  ``K`` aligned reconstructions of one data set: ``|FFT(mean obj)| / A``,
  ``A`` the measured magnitude. In a shell it is ``sum |F_mean| / sum A`` over
  the measured voxels with ``A > 0`` (the amplitude-weighted mean of the
  per-voxel ratio, which keeps voxels with no photons out). Where the phases
  of the starts agree it is 1; where they are random it falls as
  ``1 / sqrt(K)``. Resolution: where it first falls below ``1/e``. With one
  start it is trivially about 1: it needs ``keep_best > 1``. It measures the
  reproducibility of the phasing, not the information in the data.
- **FSC** between reconstructions of two statistically independent halves of
  the photons (:func:`binomial_split`): ``|sum F_a conj(F_b)| / sqrt(sum |F_a|^2
  sum |F_b|^2)`` per shell. Threshold: the 1/2-bit curve of van Heel & Schatz
  (2005), ``(0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))`` with
  ``n`` the voxels of the shell (the right one for two half data sets), or the
  fixed ``0.143`` of cryo-EM (which refers the FSC of halves to the full set).

Resolutions are **half-periods**: ``pi / q_cut`` in nm (the finest half-period
the grid holds is the voxel size at its edge). Where a curve never crosses,
the value is the half-period at the last shell and ``crossed`` is False (a
bound: the resolution is at least that good).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ResolutionCurve",
    "binomial_split",
    "fourier_shell_correlation",
    "max_shells",
    "orthogonal_q_step",
    "prtf",
    "prtf_of_average",
]

_ANGSTROM_PER_NM = 10.0
_AXES = ("z", "y", "x")


@dataclass
class ResolutionCurve:
    """A resolution curve of one scan, in shells and per axis.

    Attributes
    ----------
    q : ndarray ``(n,)``
        Shell centres, 1/angstrom.
    shell : ndarray ``(n,)``
        The curve (PRTF or FSC) per shell (NaN for an empty shell).
    threshold : ndarray ``(n,)``
        The threshold per shell (constant for PRTF and the 0.143 FSC).
    resolution_nm : float
        Half-period ``pi / q`` where the shell curve first falls below the threshold.
    crossed : bool
    axis_curves : ndarray ``(3, n)``
        The curve in the cones around the frame axes ``(z, y, x)``, binned by
        ``|q|`` like ``shell``.
    axis_resolution_nm : ndarray ``(3,)``
        Half-period per frame axis ``(z, y, x)``.
    axis_crossed : ndarray of bool ``(3,)``
    kind : str
        ``"prtf"`` or ``"fsc"``.
    """

    q: np.ndarray
    shell: np.ndarray
    threshold: np.ndarray
    resolution_nm: float
    crossed: bool
    axis_curves: np.ndarray
    axis_resolution_nm: np.ndarray
    axis_crossed: np.ndarray
    kind: str


def orthogonal_q_step(shape: Sequence[int], spacing_nm: Sequence[float]) -> np.ndarray:
    """q step matrix (1/angstrom, rows for array axes ``(z, y, x)``, components ``(x, y, z)``)
    of the FFT grid of an orthogonal grid of ``shape`` voxels of ``spacing_nm`` (z, y, x)."""
    n = np.asarray(shape, dtype=float).reshape(-1)
    h = np.asarray(spacing_nm, dtype=float).reshape(-1)
    if n.shape != (3,) or h.shape != (3,) or np.any(n < 1) or np.any(h <= 0):
        raise ValueError(f"shape and spacing_nm must be 3 positive values each, got {n.tolist()} and {h.tolist()}")
    steps = 2 * np.pi / (n * h * _ANGSTROM_PER_NM)  # along z, y, x
    out = np.zeros((3, 3))
    for a, comp in enumerate((2, 1, 0)):  # array axis z is component 2, y 1, x 0
        out[a, comp] = steps[a]
    return out


def _q_vectors(shape, q_step) -> np.ndarray:
    from cdiplatform.postprocess.orthogonal import _q_step_matrix

    s = _q_step_matrix(q_step)
    idx = np.indices(shape).reshape(3, -1).T - np.array([n // 2 for n in shape])
    return idx @ s  # (M, 3) components x, y, z


def _crossing(q: np.ndarray, curve: np.ndarray, thr: np.ndarray) -> tuple[float, bool]:
    ok = np.isfinite(curve)
    if not ok.any():
        return float("nan"), False
    qv, cv, tv = q[ok], curve[ok], thr[ok]
    below = np.nonzero(cv < tv)[0]
    if below.size == 0:
        return float(np.pi / qv[-1] / _ANGSTROM_PER_NM), False
    i = int(below[0])
    if i == 0:
        q_cut = qv[0]
    else:
        d0, d1 = cv[i - 1] - tv[i - 1], cv[i] - tv[i]
        q_cut = qv[i - 1] + (qv[i] - qv[i - 1]) * d0 / (d0 - d1)
    return float(np.pi / q_cut / _ANGSTROM_PER_NM), True


class _Shells:
    """Shell and cone bins of a q grid."""

    def __init__(self, shape, q_step, *, rotation, cone_deg: float, n_bins: int | None):
        from cdiplatform.postprocess.orthogonal import real_space_basis

        q = _q_vectors(shape, q_step)
        self.qn = np.linalg.norm(q, axis=1)
        steps = np.asarray(q_step, dtype=float)
        width = float(np.linalg.norm(steps, axis=1).max())
        # the sphere inscribed in the q parallelepiped: distance pi / |b_a| to the faces
        q_max = float(np.pi / (np.linalg.norm(real_space_basis(steps, shape), axis=1).max() * _ANGSTROM_PER_NM))
        n = max(2, int(q_max // width)) if n_bins is None else int(n_bins)
        if n < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}")
        self.edges = np.linspace(0.0, q_max, n + 1)
        self.q = 0.5 * (self.edges[1:] + self.edges[:-1])
        self.bin = np.digitize(self.qn, self.edges) - 1
        self.bin[(self.bin < 0) | (self.bin >= n)] = -1
        rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
        if rot.shape != (3, 3):
            raise ValueError(f"rotation must be a 3x3 matrix, got shape {rot.shape}")
        cosc = np.cos(np.radians(cone_deg))
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_axes = np.abs(q @ rot.T) / self.qn[:, None]  # (M, 3) against frame x, y, z
        self.cones = [(cos_axes[:, c] >= cosc) for c in (2, 1, 0)]  # array axes z, y, x

    def sums(self, values: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sums of ``values`` (flat, real or complex) over ``where`` per shell, ``(n,)``, and per cone, ``(3, n)``."""
        n = self.q.size

        def binned(sel):
            b = self.bin[sel]
            keep = b >= 0
            v = values[sel][keep]
            if np.iscomplexobj(v):
                return (np.bincount(b[keep], weights=v.real, minlength=n)
                        + 1j * np.bincount(b[keep], weights=v.imag, minlength=n))
            return np.bincount(b[keep], weights=v, minlength=n)

        return binned(where), np.stack([binned(where & cone) for cone in self.cones])

    def counts(self, where: np.ndarray) -> np.ndarray:
        b = self.bin[where]
        return np.bincount(b[b >= 0], minlength=self.q.size)


def _curve(kind, shells: _Shells, shell, axes, thr_shell, thr_axes) -> ResolutionCurve:
    res, crossed = _crossing(shells.q, shell, thr_shell)
    ax = [_crossing(shells.q, axes[a], thr_axes[a]) for a in range(3)]
    return ResolutionCurve(q=shells.q, shell=shell, threshold=thr_shell, resolution_nm=res, crossed=crossed,
                           axis_curves=axes, axis_resolution_nm=np.array([r for r, _ in ax]),
                           axis_crossed=np.array([c for _, c in ax]), kind=kind)


def max_shells(shape: Sequence[int]) -> int:
    """The most shells a curve of a grid of ``shape`` voxels can have, whatever its q step.

    The shells are one longest q step wide up to the sphere inscribed in the
    grid; its distance to the faces of axis ``a`` is at most ``N_a / 2`` steps
    of axis ``a``, so at most ``min(shape) / 2`` longest steps (equal on an
    orthogonal grid of equal steps, fewer on a sheared one):
    ``max(2, min(shape) // 2)``. A curve stored beside others of the same grid
    but of another q step fits in this many, NaN-padded.
    """
    n = np.asarray(shape, dtype=int).reshape(-1)
    if n.size == 0 or np.any(n < 1):
        raise ValueError(f"shape must be positive sizes, got {tuple(np.asarray(shape).tolist())}")
    return max(2, int(n.min()) // 2)


def prtf_of_average(
    average,
    magnitude,
    *,
    q_step,
    measured=None,
    rotation=None,
    cone_deg: float = 30.0,
    n_bins: int | None = None,
) -> list[ResolutionCurve]:
    """Phase retrieval transfer function of complex averages of aligned starts.

    The PRTF needs only the average: the caller averages ``K >= 2`` starts,
    aligned on each other (shift, twin, phase offset), for example the
    ``keep_best`` kept starts that :func:`cdiplatform.phasing.phase_retrieval`
    averages. The average of one start gives a PRTF of about 1: meaningless.

    Parameters
    ----------
    average : complex array ``(S, *grid)``
        Per scan, the complex average of the aligned starts, centre ``N // 2``
        (any whole-pixel roll of it gives the same PRTF), on the scale of the
        data (the starts' far fields match ``magnitude``).
    magnitude : array ``(S, *grid)``
        Measured magnitude ``sqrt(I)`` on the far-field grid, zero frequency at ``N // 2``.
    q_step : array ``(S, 3, 3)`` or ``(3, 3)``
        Signed q step of the grid's axes, 1/angstrom.
    measured : bool array ``(S, *grid)``, optional
        True where ``magnitude`` was measured.
    rotation : array ``(3, 3)``, optional
        Frame axes (rows, lab components) for the per-axis curves; lab axes by default.
    cone_deg : float
        Half-angle of the cones around each axis, degrees.
    n_bins : int, optional
        Shells; default one per longest q step up to the inscribed sphere
        (at most :func:`max_shells`).

    Returns
    -------
    list of ResolutionCurve, one per scan (threshold ``1/e``).
    """
    from cdiplatform.physics.fft import far_field

    avg = np.asarray(average)
    mag = np.asarray(magnitude, dtype=np.float64)
    if avg.ndim != 4 or mag.shape != avg.shape:
        raise ValueError(f"average must be (scan, z, y, x) and magnitude (scan, z, y, x) of the same grid; "
                         f"got {avg.shape} and {mag.shape}")
    if not np.all(np.isfinite(mag)) or np.any(mag < 0):
        raise ValueError("magnitude must be finite and non-negative")
    meas = np.ones(mag.shape, dtype=bool) if measured is None else np.asarray(measured, dtype=bool)
    if meas.shape != mag.shape:
        raise ValueError(f"measured of shape {meas.shape} differs from magnitude {mag.shape}")
    steps = np.asarray(q_step, dtype=float)
    steps = np.broadcast_to(steps, (mag.shape[0], 3, 3)) if steps.shape == (3, 3) else steps
    out = []
    for s in range(mag.shape[0]):
        shells = _Shells(mag.shape[1:], steps[s], rotation=rotation, cone_deg=cone_deg, n_bins=n_bins)
        f_mean = np.abs(far_field(avg[s], ndim=3)).ravel()
        a = mag[s].ravel()
        where = meas[s].ravel() & (a > 0)
        (top, top_axes), (bottom, bottom_axes) = shells.sums(f_mean, where), shells.sums(a, where)
        with np.errstate(invalid="ignore", divide="ignore"):
            shell, axes = top / bottom, top_axes / bottom_axes
        thr = np.full(shells.q.size, np.exp(-1.0))
        out.append(_curve("prtf", shells, shell, axes, thr, np.broadcast_to(thr, (3, thr.size))))
    return out


def prtf(
    objects,
    magnitude,
    *,
    q_step,
    measured=None,
    rotation=None,
    cone_deg: float = 30.0,
    n_bins: int | None = None,
) -> list[ResolutionCurve]:
    """Phase retrieval transfer function of the complex average of kept starts.

    Parameters
    ----------
    objects : complex array ``(S, K, *grid)``
        Per scan, the ``K >= 2`` kept starts, already aligned on each other (shift,
        twin, phase offset: :func:`cdiplatform.physics.align.align`), centre ``N // 2``.
    magnitude : array ``(S, *grid)``
        Measured magnitude ``sqrt(I)`` on the far-field grid, zero frequency at ``N // 2``.
    q_step, measured, rotation, cone_deg, n_bins
        As :func:`prtf_of_average`, which this calls on the mean over ``K``.

    Returns
    -------
    list of ResolutionCurve, one per scan (threshold ``1/e``).
    """
    objs = np.asarray(objects)
    mag_shape = np.shape(magnitude)
    if objs.ndim != 5 or mag_shape != objs.shape[:1] + objs.shape[2:]:
        raise ValueError(f"objects must be (scan, start, z, y, x) and magnitude (scan, z, y, x) of the same "
                         f"grid; got {objs.shape} and {mag_shape}")
    if objs.shape[1] < 2:
        raise ValueError("the PRTF needs at least 2 kept starts (keep_best > 1); with one it is trivially 1")
    return prtf_of_average(objs.mean(axis=1), magnitude, q_step=q_step, measured=measured, rotation=rotation,
                           cone_deg=cone_deg, n_bins=n_bins)


def binomial_split(counts, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split photon counts into two statistically independent halves.

    Each voxel's ``n`` photons go to half A with probability 1/2 (``a ~
    Binomial(n, 1/2)``, ``b = n - a``); for Poisson counts the halves are
    independent Poisson data sets of half the mean. Non-integer counts (a
    white-field-corrected intensity) are rounded to whole photons first, so
    ``a + b`` is the rounded array.

    Parameters
    ----------
    counts : array, any shape, finite, non-negative
    rng : numpy.random.Generator (one per scan)

    Returns
    -------
    (half_a, half_b) : arrays of ``counts``' shape, float32 (int64 for integer input).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    c = np.asarray(counts)
    if c.dtype.kind not in "biuf":
        raise ValueError(f"counts must be numbers, got dtype {c.dtype}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("counts must be finite and non-negative photon counts")
    n = np.rint(c).astype(np.int64)
    a = rng.binomial(n, 0.5)
    b = n - a
    if c.dtype.kind in "biu":
        return a, b
    return a.astype(np.float32), b.astype(np.float32)


def _half_bit(n: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 1.0 / np.sqrt(n)
        return np.where(n > 0, (0.2071 + 1.9102 * r) / (1.2071 + 0.9102 * r), np.nan)


def fourier_shell_correlation(
    obj_a,
    obj_b,
    *,
    q_step,
    threshold: str | float = "half-bit",
    rotation=None,
    cone_deg: float = 30.0,
    n_bins: int | None = None,
) -> list[ResolutionCurve]:
    """Fourier shell correlation of reconstructions from two independent halves of the data.

    Parameters
    ----------
    obj_a, obj_b : complex arrays ``(S, *grid)``
        Per scan, the reconstruction of each half (:func:`binomial_split`),
        aligned on each other (shift, twin, phase offset), centre ``N // 2``.
        Two reconstructions of the *same* counts measure reproducibility, not
        resolution.
    q_step : array ``(S, 3, 3)`` or ``(3, 3)``
        Signed q step of the objects' far-field grid, 1/angstrom.
    threshold : "half-bit", or a float (0.143)
    rotation, cone_deg, n_bins
        As :func:`prtf`.

    Returns
    -------
    list of ResolutionCurve, one per scan.
    """
    from cdiplatform.physics.fft import far_field

    a, b = np.asarray(obj_a), np.asarray(obj_b)
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(f"obj_a and obj_b must be (scan, z, y, x) of one shape, got {a.shape} and {b.shape}")
    if isinstance(threshold, str):
        if threshold != "half-bit":
            raise ValueError(f"threshold must be 'half-bit' or a number such as 0.143, not {threshold!r}")
    elif not 0 < float(threshold) < 1:
        raise ValueError(f"a fixed FSC threshold must be in (0, 1), got {threshold}")
    steps = np.asarray(q_step, dtype=float)
    steps = np.broadcast_to(steps, (a.shape[0], 3, 3)) if steps.shape == (3, 3) else steps
    out = []
    for s in range(a.shape[0]):
        shells = _Shells(a.shape[1:], steps[s], rotation=rotation, cone_deg=cone_deg, n_bins=n_bins)
        fa = far_field(a[s], ndim=3).ravel()
        fb = far_field(b[s], ndim=3).ravel()
        every = np.ones(fa.shape, dtype=bool)
        cross, cross_axes = shells.sums(fa * np.conj(fb), every)
        pa, pa_axes = shells.sums(np.abs(fa) ** 2, every)
        pb, pb_axes = shells.sums(np.abs(fb) ** 2, every)
        with np.errstate(invalid="ignore", divide="ignore"):
            shell = np.abs(cross) / np.sqrt(pa * pb)
            axes = np.abs(cross_axes) / np.sqrt(pa_axes * pb_axes)
        if threshold == "half-bit":
            thr = _half_bit(shells.counts(every).astype(float))
            thr_axes = np.stack([_half_bit(shells.counts(cone).astype(float)) for cone in shells.cones])
        else:
            thr = np.full(shells.q.size, float(threshold))
            thr_axes = np.broadcast_to(thr, (3, thr.size))
        out.append(_curve("fsc", shells, shell, axes, thr, thr_axes))
    return out
