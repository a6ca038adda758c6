"""Files for viewers: VTK image data (``.vti``, ParaView) and CXI (HDF5; silx, PyNX tools).

Both take one scan's arrays on an orthogonal grid, ``(z, y, x)`` in the
platform's axis order, with the voxel size and the origin in nm per array
axis ``(z, y, x)``.

- ``.vti``: written by the ``vtk`` package (``vtkXMLImageDataWriter``, zlib
  compressed, binary appended). VTK's x is the fastest axis, which is the last
  axis of a C-ordered ``(z, y, x)`` array, so the arrays go in as they are and
  spacing and origin are reversed to VTK's ``(x, y, z)``; coordinates are in
  nm. The frame's name goes in the field data.
- ``.cxi``: the CXI layout (version 1.50) with h5py: ``/entry_1/image_1/data``
  (the complex object ``amplitude * exp(i phase)``), ``.../mask`` (CXI pixel
  flags: 0 inside the support, 1 outside), ``.../support``, ``data_space =
  "real"``, ``image_size`` (m, per axis ``z, y, x``), ``process_1`` (program,
  version, date, command, note; ``configuration`` with the frame, spacing,
  origin and any geometry given), ``geometry_1`` (the frame's axes and the
  origin in m); each further real array (displacement, strain...) is an
  ``image_N`` of its own with its ``data_type`` and units, and
  ``/entry_1/data_1/data`` links to the object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["write_cxi", "write_vti"]

_M_PER_NM = 1e-9


def _grid_args(shape, spacing_nm, origin_nm) -> tuple[np.ndarray, np.ndarray]:
    spacing = np.broadcast_to(np.asarray(spacing_nm, dtype=float), (3,)).copy()
    origin = np.broadcast_to(np.asarray(origin_nm, dtype=float), (3,)).copy()
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing_nm must be 3 positive values (z, y, x), got {np.asarray(spacing_nm).tolist()}")
    if not np.all(np.isfinite(origin)):
        raise ValueError(f"origin_nm must be 3 finite values (z, y, x), got {np.asarray(origin_nm).tolist()}")
    return spacing, origin


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
    if not arrays:
        raise ValueError("no arrays to write")
    shape = None
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if a.ndim != 3:
            raise ValueError(f"array {name!r} must be one scan's (z, y, x), got shape {a.shape}")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(f"array {name!r} has shape {a.shape}, the others {shape}")
    return shape


def write_vti(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, spacing_nm: float | Sequence[float],
              origin_nm: Sequence[float] = (0.0, 0.0, 0.0), frame: str | None = None) -> None:
    """Write arrays on one regular grid to a VTK ``.vti`` file.

    Parameters
    ----------
    path : path ending in ``.vti``
    arrays : dict of name to ndarray ``(z, y, x)``, real (bool as uint8)
        Point data; complex arrays are refused (write amplitude and phase).
    spacing_nm : float or 3 floats ``(z, y, x)``
    origin_nm : 3 floats ``(z, y, x)``
        Coordinates of voxel ``(0, 0, 0)``.
    frame : str, optional
        The frame's name, kept in the file's field data.
    """
    try:
        import vtk
        from vtk.util.numpy_support import numpy_to_vtk
    except ImportError as exc:
        raise ImportError("writing .vti files needs the vtk package: pip install vtk") from exc
    path = os.fspath(path)
    if not path.endswith(".vti"):
        raise ValueError(f"a VTK image data file must end in .vti, got {path!r}")
    shape = _check_arrays(arrays)
    spacing, origin = _grid_args(shape, spacing_nm, origin_nm)
    image = vtk.vtkImageData()
    image.SetDimensions(shape[2], shape[1], shape[0])
    image.SetSpacing(*spacing[::-1])
    image.SetOrigin(*origin[::-1])
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if np.iscomplexobj(a):
            raise ValueError(f"array {name!r} is complex: write its amplitude and phase as two real arrays")
        if a.dtype == bool:
            a = a.astype(np.uint8)
        if a.dtype.kind not in "iuf":
            raise ValueError(f"array {name!r} has dtype {a.dtype}: only numbers go into a .vti file")
        flat = np.ascontiguousarray(a).ravel()  # x fastest, as VTK's point order
        vtk_arr = numpy_to_vtk(flat, deep=True)
        vtk_arr.SetName(str(name))
        image.GetPointData().AddArray(vtk_arr)
    for key, value in (("units", "nm"), ("frame", frame)):
        if value is not None:
            s = vtk.vtkStringArray()
            s.SetName(key)
            s.InsertNextValue(str(value))
            image.GetFieldData().AddArray(s)
    writer = vtk.vtkXMLImageDataWriter()
    writer.SetFileName(path)
    writer.SetInputData(image)
    writer.SetDataModeToAppended()
    writer.SetCompressorTypeToZLib()
    if writer.Write() != 1:
        raise OSError(f"vtk could not write {path}")


def _put_config(group, config: Mapping) -> None:
    for key, value in config.items():
        if isinstance(value, Mapping):
            _put_config(group.require_group(str(key)), value)
        elif value is None:
            continue
        elif isinstance(value, str):
            group.create_dataset(str(key), data=value)
        else:
            group.create_dataset(str(key), data=np.asarray(value))


def write_cxi(
    path: str | os.PathLike,
    *,
    amplitude: np.ndarray,
    phase: np.ndarray,
    support: np.ndarray,
    spacing_nm: float | Sequence[float],
    origin_nm: Sequence[float] = (0.0, 0.0, 0.0),
    frame: str,
    frame_axes=None,
    arrays: Mapping[str, np.ndarray] | None = None,
    units: Mapping[str, str] | None = None,
    configuration: Mapping | None = None,
    command: str = "",
    note: str = "",
) -> None:
    """Write one scan's reconstruction to a CXI file.

    Parameters
    ----------
    path : path ending in ``.cxi``
    amplitude, phase : ndarray ``(z, y, x)``
        The object is written as ``amplitude * exp(1j * phase)`` (complex64).
    support : bool ndarray ``(z, y, x)``
    spacing_nm, origin_nm : 3 floats ``(z, y, x)``, nm
    frame : str
        ``"laboratory"`` or ``"crystal"`` (any name is kept as given).
    frame_axes : array ``(3, 3)``, optional
        The frame's axes (rows x, y, z) in laboratory components.
    arrays : dict of name to real ndarray ``(z, y, x)``, optional
        Further images (``displacement``, ``strain``...), one ``image_N`` each.
    units : dict of name to unit, optional
        Units of ``arrays`` (``{"displacement": "nm", "strain": "1"}``).
    configuration : dict, optional
        Process information (nested dicts of numbers, strings, arrays): the
        geometry (q steps, energy...), the source node, the settings.
    command, note : str
        What made the file.
    """
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("writing .cxi files needs h5py: pip install h5py") from exc
    import datetime

    import cdiplatform

    path = os.fspath(path)
    if not path.endswith(".cxi"):
        raise ValueError(f"a CXI file must end in .cxi, got {path!r}")
    extra = dict(arrays or {})
    sup = np.asarray(support)
    if sup.dtype != bool:
        raise ValueError(f"support must be boolean, got dtype {sup.dtype}")
    shape = _check_arrays({"amplitude": amplitude, "phase": phase, "support": sup, **extra})
    spacing, origin = _grid_args(shape, spacing_nm, origin_nm)
    for name, arr in extra.items():
        if np.iscomplexobj(arr) or np.asarray(arr).dtype.kind not in "biuf":
            raise ValueError(f"array {name!r} must be real numbers, got dtype {np.asarray(arr).dtype}")
    obj = (np.asarray(amplitude, dtype=np.float64) * np.exp(1j * np.asarray(phase, dtype=np.float64)))
    mask = np.where(sup, 0, 1).astype(np.uint32)
    size_m = spacing * np.asarray(shape) * _M_PER_NM
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with h5py.File(path, "w") as f:
        f.create_dataset("cxi_version", data=150)
        entry = f.create_group("entry_1")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("start_time", data=now)
        images = [("complex object", obj.astype(np.complex64), "1"),
                  *((name, np.asarray(arr, dtype=np.float32), (units or {}).get(name, "")) for name, arr in extra.items())]
        for i, (kind, data, unit) in enumerate(images, start=1):
            img = entry.create_group(f"image_{i}")
            img.attrs["NX_class"] = "NXdata"
            d = img.create_dataset("data", data=data, compression="gzip", compression_opts=4)
            d.attrs["axes"] = "z:y:x"
            if unit:
                d.attrs["units"] = unit
            img.create_dataset("data_type", data=kind)
            img.create_dataset("data_space", data="real")
            img.create_dataset("image_size", data=size_m)
            img.create_dataset("mask", data=mask, compression="gzip", compression_opts=4)
            if i == 1:
                img.create_dataset("support", data=sup.astype(np.uint8), compression="gzip", compression_opts=4)
                proc = img.create_group("process_1")
                proc.create_dataset("program", data="cdiplatform")
                proc.create_dataset("version", data=str(getattr(cdiplatform, "__version__", "")))
                proc.create_dataset("date", data=now)
                proc.create_dataset("command", data=command)
                proc.create_dataset("note", data=note)
                conf = proc.create_group("configuration")
                _put_config(conf, {"frame": frame, "spacing_nm": spacing, "origin_nm": origin,
                                   "axes": "z, y, x (array order); vectors x, y, z", **(configuration or {})})
                geo = img.create_group("geometry_1")
                geo.create_dataset("frame", data=frame)
                geo.create_dataset("orientation", data=np.eye(3) if frame_axes is None
                                   else np.asarray(frame_axes, dtype=float))
                geo.create_dataset("translation", data=origin[::-1] * _M_PER_NM)  # (x, y, z), m
            else:
                img["geometry_1"] = h5py.SoftLink("/entry_1/image_1/geometry_1")
        data_1 = entry.create_group("data_1")
        data_1["data"] = h5py.SoftLink("/entry_1/image_1/data")
