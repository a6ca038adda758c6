"""A test oracle: cohere's preprocessing of a 34-ID-C Timepix scan, rebuilt here.

Not part of the product (it reproduces another tool's quirks, a chip seam
among them): tests and benchmarks use it so that our phasing engine can be measured beside the peer on the *same*
array, :func:`make_peer_amplitude` repeats the peer's preprocessing of a
34-ID-C Timepix scan (see ``/work/shared/peers/cohere-core.md``). Its facts,
checked on scan 54 (maximum 121,942 after correction at frame 99; 280,031
voxels above the threshold; shape (256, 256, 210)):

- the peer reads TIFF images transposed, ``(column, row)``; its white-field
  "rows 255-256, columns 0-254" are therefore, in the files' own
  orientation, **columns 255-256 of rows 0-254** (the seam between Timepix
  chips), set to 0;
- ``Imult`` is the mean of that seam-zeroed white field (14,688.1 here,
  not the raw field's 14,693.4); pixels below ``mean - 3 std`` are set to
  0, and so are pixels where the dark field is above 1;
- each frame is divided by the field (over the detector region) and
  multiplied by ``Imult``; pixels where dark > 1 and non-finite values
  (division by the zeroed field) become 0; frames are stacked float32;
- values ``<= intensity_threshold`` (2) become 0; each axis is zero-padded
  to the next even length that ``scipy.fft.next_fast_len`` accepts (the
  padding split ``added // 2`` before, the rest after); the maximum is
  rolled to ``shape // 2``; the amplitude is ``sqrt``.

The peer's axis order is ``(det_x, det_y, frame)`` (transposed images,
frames stacked last); ``layout="ours"`` gives ``(frame, det_y, det_x)``.
"""

from __future__ import annotations

import numpy as np

from cdiplatform.errors import IngestError

__all__ = ["make_peer_amplitude", "next_fast_even"]


def next_fast_even(n: int) -> int:
    """Smallest even length ``>= n`` that ``scipy.fft.next_fast_len`` returns unchanged."""
    import scipy.fft

    m = scipy.fft.next_fast_len(int(n))
    while m % 2:
        m = scipy.fft.next_fast_len(m + 1)
    return m


def make_peer_amplitude(
    raw,
    *,
    white_full: np.ndarray | None = None,
    dark_full: np.ndarray | None = None,
    threshold: float = 2.0,
    layout: str = "peer",
) -> tuple[np.ndarray, dict]:
    """The peer's amplitude for a scan read with :func:`~cdiplatform.ingest.read_scan`.

    Parameters
    ----------
    raw : RawScan
        The scan (its raw frames and detector region are used).
    white_full, dark_full : ndarray, shape of the sensor, optional
        Whole-sensor white and dark fields in the files' orientation; read
        from ``raw.sources["flat"]`` / ``["dark"]`` when not given.
    threshold : float
        The peer's ``intensity_threshold``.
    layout : {"peer", "ours"}
        ``"peer"``: ``(det_x, det_y, frame)``, the array the peer phases;
        ``"ours"``: ``(frame, det_y, det_x)``, the same values transposed.

    Returns
    -------
    amplitude : ndarray, float32
    record : dict with ``imult``, ``max_corrected`` (and its frame, row,
        column), ``voxels_kept``, ``pad`` (before, after per axis of the
        returned layout), ``roll`` and ``shape``.
    """
    from cdiplatform.ingest.frames import read_field

    if layout not in ("peer", "ours"):
        raise ValueError(f"layout must be 'peer' or 'ours', not {layout!r}")
    if white_full is None:
        if not raw.sources.get("flat"):
            raise IngestError("the peer's preprocessing needs the white field", scan=raw.scan)
        white_full = read_field(raw.sources["flat"], kind="white", region=raw.region, scan=raw.scan)
    if dark_full is None:
        if not raw.sources.get("dark"):
            raise IngestError("the peer's preprocessing needs the dark field", scan=raw.scan)
        dark_full = read_field(raw.sources["dark"], kind="dark", region=raw.region, scan=raw.scan)

    white = np.array(white_full, dtype=np.float32)  # the peer works on the file's float32
    white[0:255, 255:257] = 0  # its [255:257, 0:255] in the transposed orientation
    imult = np.float32(np.average(white))
    wstd = np.float32(np.std(white))
    white = np.where(white < imult - 3 * wstd, np.float32(0), white)
    white = np.where(dark_full > 1, np.float32(0), white)
    rows, cols = raw.region.slices
    w_roi, hot = white[rows, cols], np.asarray(dark_full)[rows, cols] > 1

    with np.errstate(divide="ignore", invalid="ignore"):
        corrected = raw.frames / w_roi * imult  # float64, like the peer's frame arithmetic
    corrected = np.where(hot, 0.0, corrected)
    corrected = np.where(np.isfinite(corrected), corrected, 0.0).astype(np.float32)
    peak = np.unravel_index(int(np.argmax(corrected)), corrected.shape)
    max_corrected = float(corrected[peak])

    data = corrected.transpose(2, 1, 0) if layout == "peer" else corrected
    data = np.where(data <= threshold, np.float32(0), data)
    kept = int(np.count_nonzero(data))
    pads = []
    for n in data.shape:
        added = next_fast_even(n) - n
        pads.append((added // 2, added - added // 2))
    data = np.pad(data, pads)
    argmax = np.unravel_index(int(np.argmax(data)), data.shape)
    roll = tuple(int(n // 2 - i) for n, i in zip(data.shape, argmax))
    data = np.roll(data, roll, axis=tuple(range(data.ndim)))
    amplitude = np.sqrt(data).astype(np.float32)
    return amplitude, {
        "imult": float(imult),
        "max_corrected": max_corrected,
        "max_corrected_at": [int(i) for i in peak],
        "voxels_kept": kept,
        "pad": [list(p) for p in pads],
        "roll": list(roll),
        "shape": list(amplitude.shape),
        "layout": "(det_x, det_y, frame)" if layout == "peer" else "(frame, det_y, det_x)",
    }
