"""From raw frames to the intensity cube the methods read, and to the network input.

Each step is a function that returns its result and a *record*: a plain
dict (JSON-ready) of what it did and with which numbers, kept for provenance.
:func:`prepare_scan` runs them in order:

1. :func:`correct_frames`: dark field (hot-pixel mask, or subtraction),
   white field (divide by the field normalized to its mean; its zero pixels
   masked), detector mask of hot and dead pixels (their values set to 0);
2. :func:`threshold_intensity`: values at or below a threshold set to 0;
3. :func:`find_peak` and :func:`crop_cube`: a cube of an FFT-friendly size
   (even, factors 2, 3, 5) with the Bragg peak (maximum, or centre of mass)
   at index ``N // 2`` on every axis; voxels outside the measurement are 0
   and masked;
4. :func:`bin_array`: optional binning (sums, so counts are kept);
5. the q voxel (:mod:`.geometry`) and the oversampling ratio per axis
   (:func:`cdiplatform.physics.resample.oversampling_ratio`).

:func:`network_input` then makes the 32^3 (or other) amplitude the networks
read: the cube cropped so that, once DCT-resampled, its oversampling matches
the networks' training data, square root, resampled, normalized to max 1.

Axis order everywhere: ``(z, y, x)`` = (rocking frame, detector row,
detector column), the order of the raw frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cdiplatform.ingest.errors import IngestError

__all__ = [
    "PreparedScan",
    "bin_array",
    "correct_frames",
    "crop_cube",
    "fft_size",
    "find_peak",
    "network_input",
    "prepare_scan",
    "threshold_intensity",
]


# -- detector corrections ------------------------------------------------------------------

def correct_frames(
    frames: np.ndarray,
    *,
    dark: np.ndarray | None = None,
    flat: np.ndarray | None = None,
    flat_mean: float | None = None,
    dark_mode: str = "mask",
    dark_threshold: float = 1.0,
    scan: int | str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Apply the dark and white field to raw frames.

    Parameters
    ----------
    frames : ndarray, shape ``(frame, det_y, det_x)``
        Raw counts.
    dark : ndarray, shape ``(det_y, det_x)``, optional
        Dark field over the frames' region.
    flat : ndarray, shape ``(det_y, det_x)``, optional
        White field over the frames' region.
    flat_mean : float, optional
        What the white field is normalized by; the mean of the whole sensor's
        field (``RawScan.flat_mean``); default the mean of ``flat``.
    dark_mode : {"mask", "subtract", "ignore"}
        ``"mask"``: the dark field is a hot-pixel map; pixels where it
        exceeds ``dark_threshold`` are masked. ``"subtract"``: a real dark,
        subtracted (negative results clipped to 0).
    dark_threshold : float
        Counts above which a dark pixel is hot (``"mask"`` mode).
    scan : int or str, optional
        For error messages.

    Returns
    -------
    corrected : ndarray, float32, shape ``(frame, det_y, det_x)``
        Counts after correction; masked pixels are 0.
    mask : ndarray, bool, shape ``(det_y, det_x)``
        True for pixels that are not measured (hot or dead).
    records : list of dict
        One per step done.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise IngestError(f"frames must be (frame, det_y, det_x), got shape {frames.shape}", scan=scan)
    det_shape = frames.shape[1:]
    mask = np.zeros(det_shape, dtype=bool)
    records: list[dict] = []
    gain = np.ones(det_shape, dtype=np.float64)
    offset = None

    if dark is not None:
        dark = np.asarray(dark, dtype=np.float64)
        if dark.shape != det_shape:
            raise IngestError(f"dark field shape {dark.shape} differs from the frames' {det_shape}",
                              scan=scan)
        if dark_mode == "mask":
            hot = dark > dark_threshold
            mask |= hot
            records.append({"step": "dark_field", "mode": "hot-pixel mask", "threshold": dark_threshold,
                            "hot_pixels": int(hot.sum())})
        elif dark_mode == "subtract":
            offset = dark
            records.append({"step": "dark_field", "mode": "subtract", "dark_mean": float(dark.mean())})
        elif dark_mode != "ignore":
            raise ValueError(f"dark_mode must be 'mask', 'subtract' or 'ignore', not {dark_mode!r}")

    if flat is not None:
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape != det_shape:
            raise IngestError(f"white field shape {flat.shape} differs from the frames' {det_shape}",
                              scan=scan)
        norm = float(flat.mean()) if flat_mean is None else float(flat_mean)
        if not norm > 0:
            raise IngestError("white field has no positive mean", scan=scan)
        dead = ~(flat > 0)
        mask |= dead
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(dead, 0.0, norm / flat)
        records.append({"step": "white_field", "normalized_by": norm, "dead_pixels": int(dead.sum()),
                        "gain_min": float(gain[~dead].min()) if (~dead).any() else None,
                        "gain_max": float(gain[~dead].max()) if (~dead).any() else None})

    gain = np.where(mask, 0.0, gain).astype(np.float32)
    out = np.empty(frames.shape, dtype=np.float32)
    np.copyto(out, frames, casting="unsafe")  # counts are exact in float32 below 2**24
    if offset is not None:
        out -= offset.astype(np.float32)
        negative = int((out < 0).sum())
        np.maximum(out, 0, out=out)
        records[-1 if flat is None else -2]["clipped_negative"] = negative
    out *= gain  # 0 on masked pixels
    records.append({"step": "detector_mask", "masked_pixels": int(mask.sum()),
                    "of_pixels": int(mask.size)})
    return out, mask, records


def threshold_intensity(intensity: np.ndarray, threshold: float, *, inplace: bool = False
                        ) -> tuple[np.ndarray, dict]:
    """Set values at or below ``threshold`` to 0 (photon counts; 2 at 34-ID-C).

    Returns the array and a record with the counts and voxels removed.
    """
    out = intensity if inplace else np.array(intensity, copy=True)
    low = out <= threshold
    removed = float(out[low].sum())
    n_low = int(np.count_nonzero(out[low]))
    out[low] = 0
    return out, {"step": "threshold", "threshold": float(threshold), "voxels_zeroed": n_low,
                 "counts_removed": removed, "voxels_kept": int(np.count_nonzero(out))}


# -- the cube around the peak --------------------------------------------------------------

def _smooth(n: int, primes=(2, 3, 5)) -> bool:
    for p in primes:
        while n % p == 0 and n > 1:
            n //= p
    return n == 1


def fft_size(n: int, *, up: bool = False, multiple: int = 2) -> int:
    """An FFT-friendly size near ``n``: a multiple of ``multiple`` (even by default)
    whose quotient has no prime factor above 5; the largest not above ``n``, or with
    ``up=True`` the smallest not below it."""
    if n < multiple:
        if up:
            return multiple
        raise ValueError(f"no FFT-friendly size of at most {n} (multiple of {multiple})")
    m = n - n % multiple if not up else -(-n // multiple) * multiple
    while m > 0 and not _smooth(m // multiple):
        m += multiple if up else -multiple
    return m


def find_peak(intensity: np.ndarray, *, method: str = "max") -> tuple[int, ...]:
    """Index of the Bragg peak: the brightest voxel (``"max"``) or the rounded
    intensity-weighted centre of mass (``"com"``)."""
    intensity = np.asarray(intensity)
    if method == "max":
        return tuple(int(i) for i in np.unravel_index(int(np.argmax(intensity)), intensity.shape))
    if method == "com":
        total = float(intensity.sum(dtype=np.float64))
        if not total > 0:
            raise ValueError("centre of mass of an array without positive values")
        centre = []
        for ax in range(intensity.ndim):
            other = tuple(i for i in range(intensity.ndim) if i != ax)
            profile = intensity.sum(axis=other, dtype=np.float64)
            centre.append(int(round(float((profile * np.arange(profile.size)).sum() / total))))
        return tuple(centre)
    raise ValueError(f"method must be 'max' or 'com', not {method!r}")


def crop_cube(intensity: np.ndarray, centre: Sequence[int], size: int | Sequence[int], *,
              mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Cut a box of ``size`` around ``centre``, which lands at ``size // 2``.

    Parameters
    ----------
    intensity : ndarray, shape ``(z, y, x)``
    centre : sequence of int
        Index in ``intensity`` that goes to the box centre.
    size : int or sequence of int
        Box size (one int: a cube).
    mask : ndarray of bool, optional
        Unmeasured voxels, broadcastable to ``intensity`` (a detector mask of
        shape ``(y, x)`` works).

    Returns
    -------
    box : ndarray, same dtype, shape ``size``; voxels outside ``intensity`` are 0.
    box_mask : ndarray of bool, shape ``size``: ``mask`` and the outside voxels.
    record : dict with ``start`` (index in ``intensity`` of the box's first
        voxel, may be negative), ``size`` and ``outside_voxels``.
    """
    intensity = np.asarray(intensity)
    nd = intensity.ndim
    sizes = (int(size),) * nd if np.isscalar(size) else tuple(int(s) for s in size)
    if len(sizes) != nd or len(centre) != nd:
        raise ValueError(f"size {sizes} and centre {tuple(centre)} must have {nd} values")
    starts = [int(c) - s // 2 for c, s in zip(centre, sizes)]
    box = np.zeros(sizes, dtype=intensity.dtype)
    full_mask = None if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), intensity.shape)
    box_mask = np.ones(sizes, dtype=bool)
    src, dst = [], []
    for st, s, n in zip(starts, sizes, intensity.shape):
        lo, hi = max(st, 0), min(st + s, n)
        if hi <= lo:
            raise ValueError(f"box start {starts} size {sizes} misses the array of shape {intensity.shape}")
        src.append(slice(lo, hi))
        dst.append(slice(lo - st, hi - st))
    box[tuple(dst)] = intensity[tuple(src)]
    box_mask[tuple(dst)] = False if full_mask is None else full_mask[tuple(src)]
    outside = int(np.prod(sizes)) - int(np.prod([d.stop - d.start for d in dst]))
    return box, box_mask, {"step": "crop", "centre": [int(c) for c in centre], "start": starts,
                           "size": list(sizes), "outside_voxels": outside,
                           "counts_kept": float(box.sum(dtype=np.float64))}


def bin_array(a: np.ndarray, factors: Sequence[int], *, reduce: str = "sum") -> tuple[np.ndarray, dict]:
    """Bin by integer factors per axis, summing (``"sum"``, keeps counts) or
    or-ing (``"any"``, for masks); trailing remainders are dropped (recorded)."""
    a = np.asarray(a)
    factors = tuple(int(f) for f in factors)
    if len(factors) != a.ndim or any(f < 1 for f in factors):
        raise ValueError(f"binning factors {factors} do not fit an array of shape {a.shape}")
    trimmed = tuple(n - n % f for n, f in zip(a.shape, factors))
    core = a[tuple(slice(0, t) for t in trimmed)]
    shape = []
    for t, f in zip(trimmed, factors):
        shape += [t // f, f]
    blocks = core.reshape(shape)
    axes = tuple(range(1, 2 * a.ndim, 2))
    if reduce == "sum":
        out = blocks.sum(axis=axes, dtype=np.float64 if a.dtype.kind == "f" else None).astype(a.dtype)
    elif reduce == "any":
        out = blocks.any(axis=axes)
    else:
        raise ValueError(f"reduce must be 'sum' or 'any', not {reduce!r}")
    dropped = [n - t for n, t in zip(a.shape, trimmed)]
    return out, {"step": "binning", "factors": list(factors), "dropped": dropped}


# -- the whole preparation -----------------------------------------------------------------

@dataclass
class PreparedScan:
    """A measured scan prepared for phasing.

    Attributes
    ----------
    intensity : ndarray, float32, shape ``(z, y, x)``
        Corrected, thresholded counts (|F|^2-like), Bragg peak at ``N // 2``
        per axis; axes are rocking frame, detector row, detector column.
    mask : ndarray, bool, same shape
        True where nothing was measured (hot or dead pixels, outside the frames).
    steps : list of dict
        What was done, in order (provenance).
    centre_raw : tuple of int
        Index in the raw frames (frame, row, column) of the cube centre.
    q_voxel : tuple of float
        q step per voxel along (z, y, x), 1/angstrom (after binning).
    q_step : ndarray (3, 3)
        The signed q step vectors (rows: grid axes z, y, x; columns: lab x, y,
        z components), 1/angstrom, after binning, in xrayutilities' laboratory
        frame (:func:`~cdiplatform.ingest.geometry.q_steps`); the grid is sheared.
        ``extra["q_peak"]`` is the q vector at the cube centre (the Bragg peak).
    oversampling : ndarray (3,)
        Oversampling ratio per axis, estimated from the autocorrelation.
    """

    intensity: np.ndarray
    mask: np.ndarray
    steps: list[dict]
    centre_raw: tuple[int, int, int]
    q_voxel: tuple[float, float, float]
    q_step: np.ndarray
    oversampling: np.ndarray
    extra: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """Plain, JSON-ready metadata."""
        return {"steps": self.steps, "centre_raw": list(self.centre_raw),
                "q_voxel": list(self.q_voxel), "q_units": "1/angstrom",
                "q_step": np.asarray(self.q_step).tolist(),
                "oversampling": [float(v) for v in self.oversampling],
                "axes": ["rocking frame", "detector row", "detector column"], **self.extra}


def prepare_scan(
    raw,
    *,
    dark_mode: str = "mask",
    dark_threshold: float = 1.0,
    threshold: float = 2.0,
    centring: str = "max",
    size: int | Sequence[int] | None = None,
    binning: Sequence[int] = (1, 1, 1),
    oversampling_threshold: float = 0.02,
) -> PreparedScan:
    """Correct, threshold, crop and bin a :class:`~cdiplatform.ingest.scan.RawScan`.

    Parameters
    ----------
    raw : RawScan
    dark_mode, dark_threshold : see :func:`correct_frames`.
    threshold : float
        Corrected counts at or below it become 0 (``<= 0`` keeps everything).
    centring : {"max", "max_corrected", "com"}
        Where the cube is centred: the brightest voxel or the centre of mass.
    size : int or sequence of int, optional
        Cube size before binning; default the largest FFT-friendly size that
        fits the frames on every axis (a cube), a multiple of the binning.
    binning : sequence of 3 int
        Binning factors (z, y, x), applied after the crop.
    oversampling_threshold : float
        See :func:`cdiplatform.physics.resample.oversampling_ratio`.

    Returns
    -------
    PreparedScan
    """
    from cdiplatform.ingest.geometry import q_steps
    from cdiplatform.physics.resample import oversampling_ratio

    binning = tuple(int(b) for b in binning)
    corrected, det_mask, steps = correct_frames(raw.frames, dark=raw.dark, flat=raw.flat,
                                                flat_mean=raw.flat_mean, dark_mode=dark_mode,
                                                dark_threshold=dark_threshold, scan=raw.scan)
    if threshold > 0:
        corrected, rec = threshold_intensity(corrected, threshold, inplace=True)
        steps.append(rec)
    if not np.any(corrected > 0):
        raise IngestError(f"no signal: every voxel is 0 after the corrections and the threshold {threshold}",
                          scan=raw.scan)
    if centring == "max":
        # the Bragg peak as the detector recorded it: the brightest measured (unmasked) voxel of
        # the raw counts; the white field can move the corrected maximum by a pixel
        recorded = np.where(np.broadcast_to(det_mask, corrected.shape), 0, raw.frames)
        centre = find_peak(recorded, method="max")
    elif centring == "max_corrected":
        centre = find_peak(corrected, method="max")
    else:
        centre = find_peak(corrected, method=centring)
    steps.append({"step": "centre", "method": centring, "index": list(centre)})
    if size is None:
        step = 2 * int(np.lcm.reduce(binning))  # binned sides stay even
        if min(corrected.shape) < step:
            raise IngestError(f"frames of shape {corrected.shape} are too small to crop", scan=raw.scan)
        size = min(fft_size(n, multiple=step) for n in corrected.shape)
    box, box_mask, rec = crop_cube(corrected, centre, size, mask=det_mask)
    steps.append(rec)
    if any(b > 1 for b in binning):
        box, rec = bin_array(box, binning)
        box_mask, _ = bin_array(box_mask, binning, reduce="any")
        steps.append(rec)
    geo = q_steps(energy_kev=raw.energy_kev, delta_deg=raw.delta_deg, gamma_deg=raw.gamma_deg,
                  rocking_step_deg=raw.rocking_step, camdist_mm=raw.camdist_mm,
                  pixel_size_m=raw.detector.pixel_size, sensor_shape=raw.detector.sensor_shape,
                  pixel=(raw.region.row_start + centre[1], raw.region.col_start + centre[2]),
                  binning=binning, orientation=raw.detector.orientation)
    sigma = oversampling_ratio(box, threshold=oversampling_threshold)
    steps.append({"step": "oversampling", "ratio": [float(s) for s in sigma],
                  "threshold": oversampling_threshold})
    return PreparedScan(intensity=box.astype(np.float32, copy=False), mask=box_mask, steps=steps,
                        centre_raw=tuple(int(c) for c in centre), q_voxel=geo["q_voxel"],
                        q_step=geo["q_step"], oversampling=sigma,
                        extra={"q_angles_deg": list(geo["angles_deg"]), "q_bragg": geo["q_bragg"],
                               "q_peak": geo["q_peak"].tolist(), "q_frame": geo["frame"]})


def network_input(
    intensity: np.ndarray,
    *,
    target_oversampling: float | Sequence[float],
    oversampling: Sequence[float] | None = None,
    size: int = 32,
    oversampling_threshold: float = 0.02,
) -> tuple[np.ndarray, dict]:
    """The amplitude the networks read: ``sqrt(I)`` on a ``size``^3 grid, max 1.

    Parameters
    ----------
    intensity : ndarray, shape ``(z, y, x)``
        Prepared intensity, peak at ``N // 2`` per axis (a PreparedScan's).
    target_oversampling : float or 3 floats
        Oversampling ratio per axis of the networks' training data (measure
        it on the training intensities with ``oversampling_ratio``).
    oversampling : 3 floats, optional
        Oversampling of ``intensity`` per axis; estimated if not given.
    size : int
        Grid of the network (32).

    Returns
    -------
    amplitude : ndarray, float32, shape ``(size,)*3``, non-negative, max 1.
    record : dict: per axis the crop ``window`` taken around ``N // 2``, the
        ``factor`` window/size, the ``phasing_grid`` (shape of ``intensity``),
        the oversampling before and after
        (:meth:`cdiplatform.physics.GridRelation.from_network_input_record` reads it).

    Notes
    -----
    DCT resampling from a window of ``M`` voxels to ``size`` keeps the q range
    and multiplies the oversampling by ``size / M``; so ``M = size * sigma /
    target`` per axis. A window larger than the array is zero-padded (padding
    in q does not change the oversampling); a window smaller than ``size``
    upsamples.
    """
    from cdiplatform.physics.resample import dct_resample, oversampling_ratio

    intensity = np.asarray(intensity, dtype=np.float64)
    if intensity.ndim != 3:
        raise ValueError(f"intensity must be (z, y, x), got shape {intensity.shape}")
    if oversampling is None:
        oversampling = oversampling_ratio(intensity, threshold=oversampling_threshold)
    sigma = np.asarray(oversampling, dtype=float).reshape(-1)
    target = np.broadcast_to(np.asarray(target_oversampling, dtype=float), (3,))
    if sigma.shape != (3,) or not np.all(np.isfinite(sigma)) or np.any(sigma <= 0) or np.any(target <= 0):
        raise ValueError(f"oversampling {sigma} and target {target} must be 3 positive numbers")
    windows = [max(2, int(round(size * s / t / 2)) * 2) for s, t in zip(sigma, target)]
    centre = [n // 2 for n in intensity.shape]
    box, _, _ = crop_cube(intensity, centre, windows)
    amplitude = np.sqrt(np.maximum(box, 0.0))
    out = dct_resample(amplitude, (size,) * 3, centre=[w // 2 for w in windows])
    np.maximum(out, 0.0, out=out)  # ringing of the truncated series
    peak = out.max()
    if not peak > 0:
        raise ValueError("network input is zero everywhere")
    out /= peak
    record = {"step": "network_input", "size": size, "window": windows,
              "phasing_grid": [int(n) for n in intensity.shape],
              "factor": [w / size for w in windows],
              "oversampling_before": [float(s) for s in sigma],
              "oversampling_after": [float(s * size / w) for s, w in zip(sigma, windows)],
              "target_oversampling": [float(t) for t in target], "normalized_by": float(peak)}
    return out.astype(np.float32), record
