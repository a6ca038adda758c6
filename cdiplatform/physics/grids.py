"""How a network's model grid relates to the phasing grid, and the mapping both ways.

The record
----------
A network reads an ``N`` voxel (per axis) input that ``network_input`` made by
keeping a window of ``M`` reciprocal-space voxels (centred at ``P // 2``) of
a prepared spectrum of ``P`` voxels, and resampling that window to ``N``
voxels over the same q range. The network's real-space voxel is therefore
``P / M`` phasing-grid voxels on each axis (its field of view ``N * P / M``
phasing voxels). :class:`GridRelation` holds ``(P, M, N)`` per axis, as
exact integers read from the records, never an oversampling estimate.

Zero-padded simulated data (the ``pad`` stage, factor ``f``) are the special
case ``P = f * N``, ``M = P``: a model voxel is a phasing voxel, and the
mapping is a centred zero pad (model -> phasing) or a centred crop.

The mapping
-----------
:func:`model_to_phasing` and :func:`phasing_to_model` resample a field
(complex: the object, never its wrapped phase) along each axis by the exact
ratio, model index ``N // 2`` on phasing index ``P // 2``. Sample ``j`` of
the output sits at input position ``c_in + (j - c_out) * s`` (``s`` the
output voxel in input voxels: ``M / P`` towards the phasing grid, ``P / M``
back), which is a whole number on axes where ``M == P``: those axes are an
exact crop or zero pad, bit for bit. Other axes are interpolated by one of

- ``"fourier"`` (default): the band-limited (trigonometric) interpolant of
  the input, truncated to the coarser of the two grids' bands (so a coarser
  output is low-passed, not aliased), evaluated at the output positions; the
  input's period is its field of view, outside which the output is 0. It is
  Fourier zero-padding (or truncation) generalized to any ratio;
- ``"spline"``: the cubic B-spline through the input samples (zero outside
  the grid), evaluated at the output positions (no low-pass filter).

Either is a real ``(n_out, n_in)`` matrix per axis applied to the real and
imaginary parts alike; values are kept (a constant stays that constant), not
sums. Which round-trips better was measured (docs/benchmark.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "INTERPOLATIONS",
    "GridRelation",
    "centred_crop",
    "model_to_phasing",
    "phasing_to_model",
    "zero_pad",
]

ArrayT = TypeVar("ArrayT")

#: interpolation methods of :func:`model_to_phasing` and :func:`phasing_to_model`
INTERPOLATIONS = ("fourier", "spline")


def _int_tuple(values: Any, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in np.atleast_1d(np.asarray(values)))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be whole numbers, got {values!r}") from None
    if not all(float(v) == i for v, i in zip(np.atleast_1d(np.asarray(values, dtype=float)), out)):
        raise ValueError(f"{what} must be whole numbers, got {values!r}")
    return out


@dataclass(frozen=True)
class GridRelation:
    """The model grid of a network and the phasing grid of the same scan.

    Attributes
    ----------
    phasing_grid : tuple of int
        ``P`` per axis: voxels of the prepared (phasing) grid.
    window : tuple of int
        ``M`` per axis: reciprocal-space voxels of the phasing grid (centred
        at ``P // 2``) that the model grid's q range covers; may exceed ``P``
        (the window was zero-padded in q).
    model_grid : tuple of int
        ``N`` per axis: voxels of the network's grid.

    Notes
    -----
    JSON-friendly: :meth:`to_dict` gives plain lists, :meth:`from_dict`
    reads them back.
    """

    phasing_grid: tuple[int, ...]
    window: tuple[int, ...]
    model_grid: tuple[int, ...]

    def __post_init__(self) -> None:
        fields = {}
        for name in ("phasing_grid", "window", "model_grid"):
            fields[name] = _int_tuple(getattr(self, name), name)
            object.__setattr__(self, name, fields[name])
        lengths = {len(v) for v in fields.values()}
        if len(lengths) != 1:
            raise ValueError(f"grid relation needs as many values per field, got {fields}")
        if not 1 <= lengths.pop() <= 3:
            raise ValueError(f"grid relation needs 1 to 3 axes, got {fields}")
        if min(min(v) for v in fields.values()) < 1:
            raise ValueError(f"grid relation sizes must be positive, got {fields}")

    @property
    def ndim(self) -> int:
        return len(self.model_grid)

    @property
    def voxel_ratio(self) -> tuple[float, ...]:
        """``P / M`` per axis: a model-grid voxel measured in phasing-grid voxels (real space)."""
        return tuple(p / m for p, m in zip(self.phasing_grid, self.window))

    @property
    def is_zero_padding(self) -> bool:
        """True when the voxels are the same (``M == P``): the mapping is a centred crop or pad."""
        return self.window == self.phasing_grid

    def to_dict(self) -> dict[str, list[int]]:
        """``{"phasing_grid": [...], "window": [...], "model_grid": [...]}`` (for JSON)."""
        return {"phasing_grid": list(self.phasing_grid), "window": list(self.window),
                "model_grid": list(self.model_grid)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> GridRelation:
        """Read :meth:`to_dict`'s record (extra keys are ignored)."""
        missing = [k for k in ("phasing_grid", "window", "model_grid") if k not in record]
        if missing:
            raise ValueError(f"grid relation record lacks {missing}: {dict(record)}")
        return cls(record["phasing_grid"], record["window"], record["model_grid"])

    @classmethod
    def from_network_input_record(
        cls, record: Mapping[str, Any], *, phasing_grid: Sequence[int] | None = None
    ) -> GridRelation:
        """The relation of one scan from :func:`cdiplatform.ingest.network_input`'s record.

        Parameters
        ----------
        record : mapping
            The record (``window`` per axis, ``size``; ``phasing_grid`` when
            the record has it).
        phasing_grid : sequence of int, optional
            Shape of the prepared intensity the window was cut from; needed
            for records written before they held it.
        """
        if "window" not in record or "size" not in record:
            raise ValueError(f"not a network_input record (no 'window' and 'size'): {dict(record)}")
        window = _int_tuple(record["window"], "window")
        grid = record.get("phasing_grid", phasing_grid)
        if grid is None:
            raise ValueError("the network_input record holds no 'phasing_grid': pass phasing_grid=")
        grid = _int_tuple(grid, "phasing_grid")
        if phasing_grid is not None and _int_tuple(phasing_grid, "phasing_grid") != grid:
            raise ValueError(f"phasing_grid {tuple(phasing_grid)} differs from the record's {grid}")
        size = _int_tuple(record["size"], "size")
        model = size * len(window) if len(size) == 1 else size
        return cls(grid, window, model)

    @classmethod
    def for_zero_padding(cls, model_grid: Sequence[int], *, factor: int) -> GridRelation:
        """The relation of an object zero-padded ``factor`` times (:func:`zero_pad`): ``P = M = f N``."""
        if not isinstance(factor, int | np.integer) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        model = _int_tuple(model_grid, "model_grid")
        padded = tuple(int(factor) * n for n in model)
        return cls(padded, padded, model)


# ---------------------------------------------------------------- zero padding and cropping


def _grid_ndim(shape: tuple[int, ...], ndim: int | None) -> int:
    ndim = len(shape) - 1 if ndim is None else ndim
    if not 1 <= ndim <= len(shape):
        raise ValueError(f"ndim={ndim} does not fit an array of shape {shape}")
    return ndim


def _zeros_like(array, shape: tuple[int, ...]):
    if type(array).__module__.startswith("torch"):
        import torch

        return torch.zeros(shape, dtype=array.dtype, device=array.device)
    return np.zeros(shape, dtype=array.dtype)


def _placement(small: tuple[int, ...], big: tuple[int, ...]) -> tuple[slice, ...]:
    """Where a grid ``small`` sits in ``big`` with index ``n // 2`` on ``m // 2``."""
    return tuple(slice(m // 2 - n // 2, m // 2 - n // 2 + n) for n, m in zip(small, big))


def zero_pad(array: ArrayT, *, factor: int = 2, ndim: int | None = None) -> ArrayT:
    """Zero-pad the last ``ndim`` axes to ``factor`` times their size, keeping the centre.

    The sample at index ``N // 2`` (the object centre of the platform's
    convention) lands at ``M // 2`` with ``M = factor * N``, so the padded
    object is still centred and its far field is the original one sampled
    ``factor`` times more finely.

    Parameters
    ----------
    array : ndarray or torch.Tensor, shape ``(..., N1, ..., Nndim)``
        Amplitude, phase or complex object (any dtype; padding is 0).
    factor : int
        Padding factor (>= 1).
    ndim : int, optional
        Number of trailing axes to pad; by default every axis but the first
        (the ``scan`` axis): 2 for ``(scan, y, x)``, 3 for ``(scan, z, y, x)``.

    Returns
    -------
    Array of the same kind, dtype and device, shape ``(..., factor * N1, ..., factor * Nndim)``.
    """
    if not isinstance(factor, int | np.integer) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if not type(array).__module__.startswith("torch"):
        array = np.asarray(array)
    shape = tuple(array.shape)
    ndim = _grid_ndim(shape, ndim)
    lead, grid = shape[: len(shape) - ndim], shape[len(shape) - ndim :]
    padded = tuple(int(factor) * n for n in grid)
    out = _zeros_like(array, lead + padded)
    out[(Ellipsis, *_placement(grid, padded))] = array
    return out


def centred_crop(array: ArrayT, shape: Sequence[int]) -> ArrayT:
    """The centred window ``shape`` of the last ``len(shape)`` axes (index ``n // 2`` of it on ``N // 2``).

    The inverse of :func:`zero_pad`. Returns a view (NumPy) or a view tensor.
    """
    shape = _int_tuple(shape, "shape")
    grid = tuple(array.shape[len(array.shape) - len(shape) :])
    if len(shape) > len(array.shape) or any(n > g for n, g in zip(shape, grid)):
        raise ValueError(f"cannot crop a grid {tuple(array.shape)} to {shape}")
    return array[(Ellipsis, *_placement(shape, grid))]


# ---------------------------------------------------------------- the mapping


@lru_cache(maxsize=64)
def _fourier_matrix(n_in: int, n_out: int, step: float) -> np.ndarray:
    """``(n_out, n_in)`` band-limited interpolation, output sample ``j`` at ``(j - n_out//2) * step`` from the centre."""
    c_in, c_out = n_in // 2, n_out // 2
    x = (np.arange(n_out) - c_out) * step  # output positions relative to the input centre, input voxels
    rel = x[:, None] - (np.arange(n_in) - c_in)[None, :]
    # frequencies k / n_in, k = -n_in//2 ... ; keep |k / n_in| <= the coarser grid's Nyquist 1 / (2 max(1, step))
    k = np.arange(n_in) - n_in // 2
    nyquist = 0.5 / max(1.0, step)
    nu = np.abs(k) / n_in
    weight = np.where(nu < nyquist - 1e-12, 1.0, 0.0)
    weight = np.where(np.abs(nu - nyquist) <= 1e-12, 0.5, weight)  # the Nyquist term split between +-k
    if n_in % 2 == 0 and nyquist >= 0.5 - 1e-12:
        # the lone -n_in/2 term stands for both +-n_in/2 of the real (cosine) interpolant
        weight[0] = 1.0
    m = (np.cos(2 * np.pi * rel[:, :, None] * k[None, None, :] / n_in) * weight).sum(axis=2) / n_in
    inside = (x >= -c_in - 0.5) & (x < n_in - c_in - 0.5)  # one period of the input: its field of view
    m[~inside] = 0.0
    return m


@lru_cache(maxsize=64)
def _spline_matrix(n_in: int, n_out: int, step: float) -> np.ndarray:
    import scipy.ndimage

    c_in, c_out = n_in // 2, n_out // 2
    x = c_in + (np.arange(n_out) - c_out) * step
    eye = np.eye(n_in)
    cols = [scipy.ndimage.map_coordinates(eye[i], x[None, :], order=3, mode="grid-constant", cval=0.0)
            for i in range(n_in)]
    return np.stack(cols, axis=1)


def _axis_operator(n_in: int, n_out: int, step: float, method: str) -> np.ndarray | str | None:
    """A matrix, or ``"shift"`` (``step == 1``: an exact centred crop or pad), or None (the identity)."""
    if step == 1.0:
        return None if n_in == n_out else "shift"
    if method == "fourier":
        return _fourier_matrix(n_in, n_out, step)
    return _spline_matrix(n_in, n_out, step)


def _apply(x, matrices: list, grids_in: tuple[int, ...], grids_out: tuple[int, ...]):
    """Apply per-axis operators to the last ``len(matrices)`` axes of ``x`` (NumPy or torch)."""
    is_torch = type(x).__module__.startswith("torch")
    dtype = None if is_torch else x.dtype
    d = len(matrices)
    # the whole-voxel axes first: one crop/pad (exact)
    mid = tuple(n_out if isinstance(op, str) else n_in for op, n_in, n_out in zip(matrices, grids_in, grids_out))
    if mid != grids_in:
        lead = tuple(x.shape[: x.ndim - d])
        big = tuple(max(a, b) for a, b in zip(grids_in, mid))
        padded = _zeros_like(x, lead + big)
        padded[(Ellipsis, *_placement(grids_in, big))] = x
        x = padded[(Ellipsis, *_placement(mid, big))]
    for a, op in enumerate(matrices):
        if op is None or isinstance(op, str):
            continue
        ax = x.ndim - d + a
        if is_torch:
            import torch

            m = torch.as_tensor(op, device=x.device,
                                dtype=x.real.dtype if x.is_complex() else x.dtype)
            if x.is_complex():
                m = m.to(x.dtype)
            x = torch.movedim(torch.tensordot(m, torch.movedim(x, ax, 0), dims=([1], [0])), 0, ax)
        else:
            x = np.moveaxis(np.tensordot(op, np.moveaxis(x, ax, 0), axes=(1, 0)), 0, ax).astype(dtype, copy=False)
    if is_torch:
        return x.contiguous()
    return np.ascontiguousarray(x)


def _map(obj, relation: GridRelation, method: str, *, to_phasing: bool):
    if not isinstance(relation, GridRelation):
        raise ValueError(f"relation must be a GridRelation, got {type(relation).__name__}")
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}; choose one of {INTERPOLATIONS}")
    if not type(obj).__module__.startswith("torch"):
        obj = np.asarray(obj)
        if not (np.issubdtype(obj.dtype, np.floating) or np.issubdtype(obj.dtype, np.complexfloating)):
            obj = obj.astype(np.float64)
    d = relation.ndim
    src = relation.model_grid if to_phasing else relation.phasing_grid
    dst = relation.phasing_grid if to_phasing else relation.model_grid
    grid = tuple(obj.shape[obj.ndim - d :]) if obj.ndim >= d else tuple(obj.shape)
    if obj.ndim < d or grid != src:
        side = "model" if to_phasing else "phasing"
        raise ValueError(f"expected the {side} grid {src} on the last axes, got shape {tuple(obj.shape)}")
    ops = []
    for n_in, n_out, p, m in zip(src, dst, relation.phasing_grid, relation.window):
        step = m / p if to_phasing else p / m  # output voxel in input voxels
        ops.append(_axis_operator(n_in, n_out, 1.0 if m == p else step, method))
    return _apply(obj, ops, src, dst)


def model_to_phasing(obj: ArrayT, relation: GridRelation, *, method: str = "fourier") -> ArrayT:
    """Map fields from the model grid onto the phasing grid.

    Parameters
    ----------
    obj : ndarray or torch.Tensor, shape ``(..., *relation.model_grid)``
        Complex objects (or real fields), centre at ``N // 2``; leading axes
        are batch axes.
    relation : GridRelation
        The scan's grids (one relation for the whole batch).
    method : ``"fourier"`` or ``"spline"``
        Interpolation on axes where a model voxel is not a phasing voxel.

    Returns
    -------
    Same kind, device and dtype (integers become float64), shape
    ``(..., *relation.phasing_grid)`` (interpolated in float64 for NumPy); model index
    ``N // 2`` on ``P // 2``, zero outside the model's field of view. With
    ``M == P`` on every axis it equals :func:`zero_pad` (or a centred crop)
    exactly.
    """
    return _map(obj, relation, method, to_phasing=True)


def phasing_to_model(obj: ArrayT, relation: GridRelation, *, method: str = "fourier") -> ArrayT:
    """Map fields from the phasing grid onto the model grid (the inverse of :func:`model_to_phasing`).

    Parameters
    ----------
    obj : ndarray or torch.Tensor, shape ``(..., *relation.phasing_grid)``
    relation : GridRelation
    method : ``"fourier"`` or ``"spline"``

    Returns
    -------
    Same kind, shape ``(..., *relation.model_grid)``; with ``M == P`` on every
    axis it is exactly :func:`centred_crop` (or a zero pad).
    """
    return _map(obj, relation, method, to_phasing=False)
