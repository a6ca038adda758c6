"""Supports: from an amplitude to a starting support, and how compact a support is.

- :func:`support_from_amplitude`: the voxels above a fraction of each scan's
  maximum amplitude, dilated by a few voxels (a starting support for
  refinement or seeded phasing from a mapped network prediction);
- :func:`support_components`: the connected pieces of a support and the
  share of its voxels in the largest one (what the quality flag reads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage

__all__ = ["SupportComponents", "support_components", "support_from_amplitude"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def support_from_amplitude(
    amplitude,
    *,
    threshold: float = 0.1,
    dilation: int = 1,
    ndim: int | None = None,
) -> np.ndarray:
    """Threshold each amplitude at a fraction of its maximum, then dilate.

    Parameters
    ----------
    amplitude : array (or tensor), shape ``(..., *grid)``
        Amplitudes, or complex objects (their modulus is used).
    threshold : float
        Fraction of each scan's maximum, in ``[0, 1)``.
    dilation : int
        Voxels added around the thresholded region (that many binary
        dilations with the face-connected cross, a diamond of radius
        ``dilation``); 0 keeps the threshold alone.
    ndim : int, optional
        Grid axes (the last ``ndim``); by default every axis but the first.

    Returns
    -------
    ndarray of bool, same shape. An all-zero scan gives an empty support.
    """
    a = np.abs(_np(amplitude)).astype(np.float64)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if not isinstance(dilation, int | np.integer) or dilation < 0:
        raise ValueError(f"dilation must be a whole number >= 0, got {dilation!r}")
    ndim = a.ndim - 1 if ndim is None else ndim
    if not 1 <= ndim <= a.ndim:
        raise ValueError(f"ndim={ndim} does not fit an array of shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("amplitude holds NaN or infinite values")
    axes = tuple(range(a.ndim - ndim, a.ndim))
    peak = a.max(axis=axes, keepdims=True)
    out = (a > threshold * peak) & (peak > 0)
    if dilation:
        cross = scipy.ndimage.generate_binary_structure(ndim, 1)
        structure = cross.reshape((1,) * (a.ndim - ndim) + cross.shape)
        out = scipy.ndimage.binary_dilation(out, structure=structure, iterations=int(dilation))
    return out


@dataclass(frozen=True)
class SupportComponents:
    """Connected pieces of one support (voxels that share a face, an edge or a corner).

    Attributes
    ----------
    voxels : int
        Voxels in the support.
    fraction : float
        ``voxels`` over the grid's voxels.
    n_components : int
        Connected pieces holding at least ``min_share`` of the support.
    largest_share : float
        Share of the support's voxels in its largest piece (0 when empty).
    """

    voxels: int
    fraction: float
    n_components: int
    largest_share: float


def support_components(support, *, min_share: float = 0.05) -> SupportComponents:
    """Count the significant connected pieces of one support (no batch axes).

    Parameters
    ----------
    support : bool array, shape ``grid``
    min_share : float
        A piece counts when it holds at least this share of the support's
        voxels (specks of a few voxels do not).
    """
    s = _np(support).astype(bool)
    if s.ndim < 1:
        raise ValueError("support must have at least one axis")
    total = int(s.sum())
    if total == 0:
        return SupportComponents(voxels=0, fraction=0.0, n_components=0, largest_share=0.0)
    labels, _n = scipy.ndimage.label(s, structure=np.ones((3,) * s.ndim, bool))
    sizes = np.bincount(labels.ravel())[1:]
    return SupportComponents(
        voxels=total,
        fraction=total / s.size,
        n_components=int((sizes >= min_share * total).sum()),
        largest_share=float(sizes.max() / total),
    )
