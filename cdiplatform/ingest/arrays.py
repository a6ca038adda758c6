"""Generic intensity arrays: NPY, NPZ and HDF5/CXI files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cdiplatform.ingest.errors import IngestError
from cdiplatform.ingest.frames import _check_values

__all__ = ["CXI_DATASET", "read_intensity"]

#: where a CXI file keeps its diffraction data
CXI_DATASET = "/entry_1/data_1/data"

_HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf", ".cxi", ".nxs"}
#: the first bytes of a .npy file (format spec) and of a .npz file (a zip archive)
_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}


def read_intensity(path: str | os.PathLike, *, dataset: str | None = None, ndim: int | None = 3,
                   scan: int | str | None = None, allow_negative: bool = False,
                   require_signal: bool = True, what: str = "intensity") -> np.ndarray:
    """Read an intensity array (photon counts or |F|^2) from NPY, NPZ or HDF5/CXI.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``, ``.npz`` or an HDF5 file (``.h5``, ``.hdf5``, ``.cxi``, ``.nxs``).
    dataset : str, optional
        NPZ: the array's name (default: the only array of the file, else
        ``"data"`` or ``"intensity"``). HDF5: the dataset path (default
        ``/entry_1/data_1/data``, the CXI location).
    ndim : int or None
        Number of dimensions expected (3 for ``(z, y, x)`` data); a leading
        axis of length 1 is dropped. ``None`` accepts any.
    scan : int or str, optional
        Scan id for error messages.
    allow_negative : bool
        Accept negative values.
    require_signal : bool
        Refuse an array that is 0 everywhere (a scan without signal); a
        dark field may be all zero.
    what : str
        What the array is, for error messages.

    Returns
    -------
    ndarray, the file's real dtype (float or integer), C-contiguous.

    Raises
    ------
    IngestError
        Missing, empty or unreadable file; a ``.npy``/``.npz`` name on a file
        that is not one; NPZ or HDF5 without the expected array; complex,
        non-numeric or wrongly shaped data; NaN or negative values; no
        signal (all zero, unless ``require_signal=False``).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IngestError(f"{what} file not found", path=path, scan=scan) from None
    if size == 0:
        raise IngestError(f"{what} file is empty (0 bytes)", path=path, scan=scan)
    suffix = path.suffix.lower()
    if suffix in _MAGIC:
        with open(path, "rb") as fh:
            head = fh.read(len(_MAGIC[suffix]))
        if head != _MAGIC[suffix]:
            raise IngestError(f"not a NumPy {suffix} file: it starts with {head!r}, not "
                              f"{_MAGIC[suffix]!r}", path=path, scan=scan)
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if dataset is None:
                    if len(names) == 1:
                        dataset = names[0]
                    else:
                        dataset = next((n for n in ("data", "intensity") if n in names), None)
                if dataset is None or dataset not in names:
                    listed = ", ".join(names) or "none"
                    raise IngestError(f"NPZ file has no array {dataset!r} (arrays: {listed}); "
                                      "name one with dataset=", path=path, scan=scan)
                arr = npz[dataset]
        elif suffix in _HDF5_SUFFIXES:
            arr = _read_hdf5(path, dataset or CXI_DATASET, scan)
        else:
            raise IngestError(f"unknown {what} file type {suffix!r} (expected .npy, .npz, "
                              f"{', '.join(sorted(_HDF5_SUFFIXES))})", path=path, scan=scan)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"{what} file is not readable ({type(exc).__name__}: {exc})",
                          path=path, scan=scan) from exc
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":
        raise IngestError(f"{what} has dtype {arr.dtype}; expected real numbers "
                          "(take |F|^2 of complex data first)", path=path, scan=scan)
    if ndim is not None:
        while arr.ndim > ndim and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != ndim:
            raise IngestError(f"{what} has shape {arr.shape}; expected {ndim} dimensions",
                              path=path, scan=scan)
    if arr.size == 0:
        raise IngestError(f"{what} array is empty (shape {arr.shape})", path=path, scan=scan)
    _check_values(arr, path, scan, allow_negative=allow_negative, what=what)
    if require_signal and not arr.any():
        raise IngestError(f"no signal: {what} of shape {arr.shape} is 0 everywhere", path=path, scan=scan)
    return np.ascontiguousarray(arr)


def _read_hdf5(path: Path, dataset: str, scan) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as h5:
        if dataset not in h5:
            found = []
            h5.visititems(lambda name, obj: found.append("/" + name)
                          if isinstance(obj, h5py.Dataset) else None)
            listed = ", ".join(found[:8]) + (" ..." if len(found) > 8 else "")
            raise IngestError(f"HDF5 file has no dataset {dataset} (datasets: {listed or 'none'}); "
                              "name one with dataset=", path=path, scan=scan)
        obj = h5[dataset]
        if not isinstance(obj, h5py.Dataset):
            raise IngestError(f"{dataset} in the HDF5 file is a group, not a dataset",
                              path=path, scan=scan)
        return obj[()]
