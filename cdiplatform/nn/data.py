"""Training data: network inputs and targets, the split by crystal, and streaming.

Pure functions turn a simulated collection (intensity, amplitude, phase, one
group id per scan) into what the networks read and write:

- inputs: ``sqrt(intensity)`` scaled to a maximum of 1 per scan (:func:`make_inputs`);
- targets: amplitude scaled to a maximum of 1 per scan, and the phase channel
  ``p = (phi - phase_offset) / phase_scale`` in ``[0, 1)``, i.e. ``phi = 2 pi p - pi``
  by default (:func:`make_targets`);
- a train / validation / test split by group, so the strain-free control of a
  crystal lands in the same split as its strained copies (:func:`split_by_group`).

:class:`BlockDataset` streams batches from array-likes that support slicing
along the first axis (zarr arrays, NumPy arrays), one chunk-sized block per
read, shuffled by block and within a buffer of blocks, seeded per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cdiplatform.physics.resample import oversampling_ratio

__all__ = [
    "SPLITS",
    "BlockDataset",
    "assemble_training",
    "estimate_oversampling",
    "make_inputs",
    "make_loader",
    "make_targets",
    "phase_to_unit",
    "split_by_group",
    "unit_to_phase",
]

#: Split names in the order :func:`assemble_training` stores them (and their codes 0, 1, 2).
SPLITS = ("train", "validation", "test")


def _grid_axes(a: np.ndarray, ndim: int) -> tuple[int, ...]:
    if a.ndim < ndim + 1:
        raise ValueError(f"expected a batch of {ndim}-D scans, shape (scan, ...), got shape {a.shape}")
    return tuple(range(a.ndim - ndim, a.ndim))


def make_inputs(intensity: np.ndarray, *, ndim: int) -> np.ndarray:
    """Network inputs from intensities: ``sqrt(I)`` divided by its maximum, per scan.

    Parameters
    ----------
    intensity : ndarray, shape ``(scan, *grid)``
        Photon-like intensities ``|F|**2`` (negative values, e.g. from
        background subtraction, are clipped to 0).
    ndim : int
        Number of grid axes (2 or 3).

    Returns
    -------
    ndarray, float32, same shape, values in ``[0, 1]``, maximum 1 per scan.

    Raises
    ------
    ValueError
        If a scan has no positive finite intensity (names the scan positions).
    """
    intensity = np.asarray(intensity)
    axes = _grid_axes(intensity, ndim)
    bad_values = ~np.isfinite(intensity).all(axis=axes)
    mag = np.sqrt(np.clip(np.nan_to_num(intensity.astype(np.float64), nan=0.0, posinf=0.0), 0, None))
    peak = mag.max(axis=axes, keepdims=True)
    empty = (peak <= 0).reshape(len(mag)) | bad_values.reshape(len(mag))
    if empty.any():
        raise ValueError(
            f"scans at positions {np.flatnonzero(empty).tolist()} have no positive finite intensity; "
            "cannot normalize them"
        )
    return (mag / peak).astype(np.float32)


def phase_to_unit(phase: np.ndarray, *, scale: float = 2 * math.pi, offset: float = -math.pi) -> np.ndarray:
    """Map a phase (radians) to the network's phase channel ``p`` in ``[0, 1)``.

    The phase is first wrapped into ``[offset, offset + scale)``; the inverse
    mapping is :func:`unit_to_phase`, ``phi = scale * p + offset``.
    """
    phase = np.asarray(phase, dtype=np.float64)
    return (np.mod(phase - offset, scale) / scale).astype(np.float32)


def unit_to_phase(p, *, scale: float = 2 * math.pi, offset: float = -math.pi):
    """Phase (radians) from the network's phase channel: ``phi = scale * p + offset``."""
    return p * scale + offset


def make_targets(
    amplitude: np.ndarray,
    phase: np.ndarray,
    *,
    ndim: int,
    phase_scale: float = 2 * math.pi,
    phase_offset: float = -math.pi,
    support_threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Network targets: amplitude scaled to maximum 1, phase mapped to ``[0, 1)``.

    Parameters
    ----------
    amplitude, phase : ndarray, shape ``(scan, *grid)``
        True object amplitude (any unit) and phase (radians).
    ndim : int
        Number of grid axes.
    phase_scale, phase_offset : float
        Phase mapping ``phi = phase_scale * p + phase_offset`` (see the model config).
    support_threshold : float
        Where the scaled amplitude is ``<= support_threshold`` the phase is
        set to 0 (undefined outside the object). With the default 0 only
        empty voxels are touched, so the targets describe exactly the object
        the diffraction came from.

    Returns
    -------
    amplitude, p : ndarray, float32, shape ``(scan, *grid)``, values in ``[0, 1]``.
    """
    amplitude = np.asarray(amplitude, dtype=np.float64)
    phase = np.asarray(phase, dtype=np.float64)
    if amplitude.shape != phase.shape:
        raise ValueError(f"amplitude shape {amplitude.shape} and phase shape {phase.shape} differ")
    axes = _grid_axes(amplitude, ndim)
    if (amplitude < 0).any():
        raise ValueError("amplitude has negative values")
    peak = amplitude.max(axis=axes, keepdims=True)
    empty = (peak <= 0).reshape(len(amplitude))
    if empty.any():
        raise ValueError(f"scans at positions {np.flatnonzero(empty).tolist()} have an all-zero amplitude")
    amp = amplitude / peak
    phase = np.where(amp > support_threshold, phase, 0.0)
    return amp.astype(np.float32), phase_to_unit(phase, scale=phase_scale, offset=phase_offset)


def split_by_group(
    groups: Sequence[Any] | np.ndarray,
    fractions: Sequence[float] | Mapping[str, float],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Split scans by group (crystal) into train / validation / test, shuffled.

    Groups are put in a random order and cut where the cumulative scan count
    crosses the fractions, so every scan of a group (a crystal's strained
    copies and its strain-free control) falls into one split and the splits
    hold about the requested fractions of the *scans*.

    Parameters
    ----------
    groups : sequence, length ``n_scans``
        Group id of every scan (any hashable values, e.g. crystal ids).
    fractions : sequence of 3 floats or dict
        Fractions for ``train, validation, test`` (or a dict with these keys);
        normalized to sum to 1.
    rng : numpy.random.Generator
        Source of the group order and of the shuffle within each split.

    Returns
    -------
    dict of str to ndarray of int64
        For each split name, the shuffled scan positions it holds.
    """
    if isinstance(fractions, Mapping):
        unknown = set(fractions) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; known: {SPLITS}")
        fractions = [float(fractions.get(name, 0.0)) for name in SPLITS]
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.shape != (3,) or (frac < 0).any() or frac.sum() <= 0:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, validation, test), got {fractions}"
        )
    frac = frac / frac.sum()
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be one id per scan (1-D), got shape {groups.shape}")
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(unique))
    # the scan-weighted middle of each group decides its split
    middle = (np.cumsum(counts[order]) - counts[order] / 2) / len(groups)
    edges = np.cumsum(frac)[:-1]
    split_of_group = np.empty(len(unique), dtype=np.int64)
    split_of_group[order] = np.searchsorted(edges, middle, side="right")
    split_of_scan = split_of_group[inverse]
    return {
        name: rng.permutation(np.flatnonzero(split_of_scan == i)).astype(np.int64)
        for i, name in enumerate(SPLITS)
    }


def estimate_oversampling(intensity: np.ndarray, *, ndim: int, threshold: float = 0.05) -> np.ndarray:
    """Linear oversampling of each scan: the geometric mean over the axes of
    :func:`cdiplatform.physics.oversampling_ratio`.

    The platform has one oversampling estimator: ``prepare`` and
    ``network_input`` record its per-axis ratios (threshold 0.02);
    ``assemble_training`` records this mean for the training range of a model
    and :func:`cdiplatform.nn.screen_scans` measures a scan the same way
    (threshold 0.05, less sensitive to the noise floor of measured data).

    Parameters
    ----------
    intensity : ndarray, shape ``(scan, *grid)``
    ndim : int
        Number of grid axes.
    threshold : float
        Fraction of the autocorrelation's central value that counts as inside
        (see :func:`cdiplatform.physics.oversampling_ratio`).

    Returns
    -------
    ndarray, float64, shape ``(scan,)``: about ``N / a`` for an object ``a``
    pixels wide on an ``N``-point grid; NaN for a scan without signal.

    Notes
    -----
    An object wider than half the grid (oversampling below 2 per axis) has an
    autocorrelation that wraps around and fills the grid; the estimate then
    saturates at about 2. It therefore tells 2x from 3x or 5x oversampling
    reliably, but not 1.5x from 2x.
    """
    intensity = np.clip(np.nan_to_num(np.asarray(intensity, dtype=np.float64)), 0, None)
    _grid_axes(intensity, ndim)
    ratios = oversampling_ratio(intensity, ndim=ndim, threshold=threshold)
    return np.exp(np.log(ratios).mean(axis=-1))


def assemble_training(
    intensity: np.ndarray,
    amplitude: np.ndarray,
    phase: np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    *,
    ndim: int,
    fractions: Sequence[float] | Mapping[str, float] = (0.8, 0.1, 0.1),
    rng: np.random.Generator,
    phase_scale: float = 2 * math.pi,
    phase_offset: float = -math.pi,
    support_threshold: float = 0.0,
) -> dict[str, np.ndarray]:
    """A training set: inputs, targets and split, ordered train, validation, test, each shuffled.

    Each split is a contiguous run of scans, so a :class:`BlockDataset` reads
    it as a range. Arguments as in :func:`make_inputs`, :func:`make_targets`
    and :func:`split_by_group`.

    Returns
    -------
    dict with ``inputs``, ``amplitude``, ``phase`` (float32, ``(n, *grid)``;
    ``phase`` is the unit phase channel ``p``), ``split`` (int8 code into
    :data:`SPLITS`), ``source`` (int64 position of each scan in the input
    arrays) and ``oversampling`` (float64, per scan, see :func:`estimate_oversampling`).
    """
    splits = split_by_group(groups, fractions, rng)
    order = np.concatenate([splits[name] for name in SPLITS])
    code = np.concatenate([np.full(len(splits[name]), i, dtype=np.int8) for i, name in enumerate(SPLITS)])
    intensity = np.asarray(intensity)[order]
    amp, p = make_targets(
        np.asarray(amplitude)[order],
        np.asarray(phase)[order],
        ndim=ndim,
        phase_scale=phase_scale,
        phase_offset=phase_offset,
        support_threshold=support_threshold,
    )
    return {
        "inputs": make_inputs(intensity, ndim=ndim),
        "amplitude": amp,
        "phase": p,
        "split": code,
        "source": order.astype(np.int64),
        "oversampling": estimate_oversampling(intensity, ndim=ndim),
    }


def _import_torch():
    import torch

    return torch


try:  # the Dataset base class; torch is a hard dependency of the nn piece
    from torch.utils.data import IterableDataset as _IterableDataset
except ImportError:  # pragma: no cover
    _IterableDataset = object


class BlockDataset(_IterableDataset):
    """Batches streamed from array-likes, reading one chunk-sized block at a time.

    Parameters
    ----------
    arrays : mapping of str to array-like
        Same length along the first axis; each supports ``.shape`` and
        ``a[start:stop]`` (zarr arrays opened by the catalog, NumPy arrays).
        Must be picklable when DataLoader worker processes are used.
    batch_size : int
        Scans per yielded batch.
    indices : array of int, optional
        Scan positions to use (default all); read block by block, so dense
        ranges (a split of an assembled training set) cost one read per block.
    block : int, optional
        Scans per read; default the first array's chunk along ``scan`` when it
        has ``.chunks``, else 256.
    shuffle : bool
        Shuffle the block order and the scans within a buffer of
        ``buffer_blocks`` blocks, seeded by ``(seed, epoch, worker)``.
    seed : int
    buffer_blocks : int
        Blocks mixed together before batches are cut (more = better mixing, more memory).
    drop_last : bool
        Drop the last, smaller batch of each worker.
    transform : callable, optional
        ``transform(dict of ndarray) -> dict of ndarray`` applied to every block
        after reading (for example :func:`make_inputs` on raw intensities).

    Notes
    -----
    Yields dicts of float32 CPU tensors ``(batch, *grid)``. Use it with
    ``DataLoader(dataset, batch_size=None)`` (see :func:`make_loader`); each
    worker process reads a disjoint subset of the blocks. The batches of an
    epoch depend only on ``(seed, epoch, number of workers)``: call
    :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        *,
        batch_size: int,
        indices: np.ndarray | None = None,
        block: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        buffer_blocks: int = 4,
        drop_last: bool = False,
        transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    ) -> None:
        if not arrays:
            raise ValueError("BlockDataset needs at least one array")
        lengths = {name: int(a.shape[0]) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays differ in length along the first axis: {lengths}")
        n = next(iter(lengths.values()))
        if block is None:
            chunks = getattr(next(iter(arrays.values())), "chunks", None)
            block = int(chunks[0]) if chunks else 256
        if block < 1 or batch_size < 1:
            raise ValueError(f"block ({block}) and batch_size ({batch_size}) must be >= 1")
        idx = (
            np.arange(n, dtype=np.int64)
            if indices is None
            else np.unique(np.asarray(indices, dtype=np.int64))
        )
        if len(idx) and (idx[0] < 0 or idx[-1] >= n):
            raise ValueError(f"indices out of range for arrays of length {n}")
        self.arrays = dict(arrays)
        self.batch_size = int(batch_size)
        self.block = int(block)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.buffer_blocks = max(1, int(buffer_blocks))
        self.drop_last = drop_last
        self.transform = transform
        self.epoch = 0
        # blocks: (start, stop, positions within the block), aligned to the storage chunks
        block_id = idx // self.block
        self._blocks = [
            (int(b * self.block), int(min((b + 1) * self.block, n)), idx[block_id == b] - b * self.block)
            for b in np.unique(block_id)
        ]
        self.n_scans = len(idx)

    def set_epoch(self, epoch: int) -> None:
        """Select the data order of epoch ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def n_batches(self, num_workers: int = 0) -> int:
        """Number of batches an epoch yields with ``num_workers`` workers."""
        workers = max(1, num_workers)
        total = 0
        for w in range(workers):
            n = sum(len(b[2]) for b in self._blocks[w::workers])
            total += n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return total

    def _read(self, start: int, stop: int, pick: np.ndarray) -> dict[str, np.ndarray]:
        full = len(pick) == stop - start
        out = {}
        for name, a in self.arrays.items():
            block = np.asarray(a[start:stop])
            out[name] = block if full else block[pick]
        return self.transform(out) if self.transform is not None else out

    def __iter__(self):
        torch = _import_torch()
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        order = np.arange(len(self._blocks))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        mine = order[worker::workers]
        rng = np.random.default_rng([self.seed, self.epoch, worker, workers])
        buffer: list[dict[str, np.ndarray]] = []
        rest: dict[str, np.ndarray] | None = None
        for k, b in enumerate(mine):
            buffer.append(self._read(*self._blocks[b]))
            if len(buffer) < self.buffer_blocks and k < len(mine) - 1:
                continue
            pool = {
                name: np.concatenate(([rest[name]] if rest else []) + [blk[name] for blk in buffer])
                for name in buffer[0]
            }
            buffer = []
            size = len(next(iter(pool.values())))
            perm = rng.permutation(size) if self.shuffle else np.arange(size)
            n_full = size // self.batch_size
            last = k == len(mine) - 1
            for i in range(n_full):
                sel = perm[i * self.batch_size : (i + 1) * self.batch_size]
                yield {
                    name: torch.from_numpy(np.ascontiguousarray(v[sel], dtype=np.float32))
                    for name, v in pool.items()
                }
            tail = perm[n_full * self.batch_size :]
            rest = {name: v[tail] for name, v in pool.items()} if len(tail) else None
            if last and rest is not None and not self.drop_last:
                yield {
                    name: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                    for name, v in rest.items()
                }


def make_loader(
    dataset: BlockDataset,
    *,
    epoch: int = 0,
    num_workers: int = 0,
    prefetch_factor: int = 4,
    pin_memory: bool = False,
):
    """A DataLoader over ``dataset`` for one epoch, with worker processes and prefetching.

    The dataset yields whole batches (``batch_size=None`` here). Worker seeds
    come from a generator seeded by ``(dataset.seed, epoch)``, so the global
    torch RNG is not consumed and a resumed training sees the same data.
    """
    torch = _import_torch()
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(
        int(np.random.SeedSequence([dataset.seed, epoch]).generate_state(1)[0])
    )
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=False)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
        **kwargs,
    )
