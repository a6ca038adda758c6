"""The raw-scan layout: ``raw/<beamtime>/<scan>``, a measured rocking scan as it was recorded.

Dims ``frame, det_y, det_x``: ``frames`` (counts as recorded), the SPEC data
columns per point (``spec`` on ``frame, spec_column``), the rocking angle as a
coordinate, the dark and white fields cut to the frames' region; the geometry
(energy, detector angles and distance, rocking motor and step, pixel size,
region, sources) in attributes. :func:`raw_scan_dataset` and
:func:`raw_scan_from_dataset` convert between that layout and
:class:`cdiplatform.ingest.RawScan`, so that nothing else needs to know it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["measured_scan_id", "raw_node", "raw_scan_dataset", "raw_scan_from_dataset"]


def measured_scan_id(beamtime: str, scan: Any) -> str:
    """The identity of a measured scan, ``"<beamtime>/<scan>"``: never changes, whatever else is ingested."""
    return f"{beamtime}/{scan}"


def raw_node(beamtime: str, scan: Any) -> str:
    """The node that holds a measured scan as recorded."""
    return f"raw/{beamtime}/{scan}"


def raw_scan_dataset(raw: Any, *, beamtime: str) -> xr.Dataset:
    """A :class:`~cdiplatform.ingest.RawScan` as the catalog's raw-scan layout.

    Dims ``frame, det_y, det_x``: ``frames`` (counts as recorded), the SPEC
    columns as ``spec`` on ``(frame, spec_column)``, the rocking angle as
    coordinate, the dark and white fields cropped to the region; geometry in
    attributes.
    """
    n = raw.n_frames
    data: dict[str, Any] = {"frames": (("frame", "det_y", "det_x"), raw.frames, {"units": "counts"})}
    labels = list(raw.columns)
    if labels:
        table = np.stack([np.asarray(raw.columns[k], dtype=np.float64) for k in labels], axis=1)
        data["spec"] = (("frame", "spec_column"), table,
                        {"long_name": "SPEC data columns per rocking point (#L labels on spec_column)"})
    if raw.dark is not None:
        data["dark"] = (("det_y", "det_x"), raw.dark.astype(np.float32), {"long_name": "dark field, cropped"})
    if raw.flat is not None:
        data["flat"] = (("det_y", "det_x"), raw.flat.astype(np.float32), {"long_name": "white field, cropped"})
    coords = {
        "frame": ("frame", np.arange(n)),
        "rocking_angle": ("frame", np.asarray(raw.rocking_angles, dtype=np.float64),
                          {"units": "degree", "motor": raw.rocking_motor}),
    }
    if labels:
        coords["spec_column"] = ("spec_column", np.asarray(labels, dtype=object))
    meta = raw.metadata()
    attrs = {"beamtime": beamtime, "kind": "measured", **{k: v for k, v in meta.items() if k != "motors"},
             "motors": meta.get("motors", {})}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def raw_scan_from_dataset(ds: xr.Dataset) -> Any:
    """The inverse of :func:`raw_scan_dataset`: a catalog raw scan as a :class:`~cdiplatform.ingest.RawScan`."""
    from cdiplatform.ingest import Detector, RawScan, Region

    a = ds.attrs
    columns = ({str(k): ds["spec"].values[:, i] for i, k in enumerate(ds["spec_column"].values)}
               if "spec" in ds else {})
    detector = Detector(name=a.get("detector", "unknown"), pixel_size=tuple(a.get("pixel_size_m", (55e-6, 55e-6))),
                        sensor_shape=tuple(a.get("sensor_shape", ds["frames"].shape[1:])),
                        orientation=tuple(a.get("detector_orientation", ("y-", "x+"))))
    region = a.get("region") or [0, ds.sizes["det_y"], 0, ds.sizes["det_x"]]
    return RawScan(
        frames=ds["frames"].values,
        columns=columns,
        scan=a.get("scan", ""),
        energy_kev=float(a.get("energy_kev", np.nan)),
        delta_deg=float(a.get("delta_deg", np.nan)),
        gamma_deg=float(a.get("gamma_deg", np.nan)),
        camdist_mm=float(a.get("camdist_mm", np.nan)),
        rocking_motor=a.get("rocking_motor", "frame"),
        rocking_mnemonic=a.get("rocking_mnemonic", ""),
        rocking_start=float(a.get("rocking_start_deg", 0.0)),
        rocking_stop=float(a.get("rocking_stop_deg", 0.0)),
        rocking_step=float(a.get("rocking_step_deg", np.nan)),
        count_time_s=float(a.get("count_time_s", np.nan)),
        detector=detector,
        region=Region(*region),
        dark=ds["dark"].values.astype(np.float64) if "dark" in ds else None,
        flat=ds["flat"].values.astype(np.float64) if "flat" in ds else None,
        flat_mean=a.get("flat_mean"),
        sources=a.get("sources", {}),
        motors=a.get("motors", {}),
        date=a.get("date"),
        command=a.get("command", ""),
        aborted=bool(a.get("aborted", False)),
    )
