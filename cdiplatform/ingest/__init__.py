"""Measured data: readers (SPEC, TIFF frames, NPY/NPZ, HDF5/CXI), the completeness
rule of a scan being recorded, detector corrections, the cube around the Bragg
peak and the network input.

Science code only: functions take and return NumPy arrays and plain metadata
(dataclasses, dicts); nothing here knows about Dask, zarr or xarray.
Array axes of a rocking scan are ``(frame, det_y, det_x)``: rocking point,
detector row, detector column; a prepared cube keeps that order as
``(z, y, x)``.
"""

from cdiplatform.ingest.arrays import read_intensity
from cdiplatform.ingest.detectors import DETECTORS, Detector, get_detector
from cdiplatform.ingest.errors import IngestError
from cdiplatform.ingest.frames import Region, frame_files, read_field, read_frames, read_tiff
from cdiplatform.ingest.geometry import q_steps, q_steps_approx
from cdiplatform.ingest.live import ScanState, scan_state
from cdiplatform.ingest.prepare import (
    PreparedScan,
    bin_array,
    correct_frames,
    crop_cube,
    fft_size,
    find_peak,
    network_input,
    prepare_scan,
    threshold_intensity,
)
from cdiplatform.ingest.scan import RawScan, read_scan
from cdiplatform.ingest.spec import SpecFile, SpecScan

__all__ = [
    "DETECTORS",
    "Detector",
    "IngestError",
    "PreparedScan",
    "RawScan",
    "Region",
    "ScanState",
    "SpecFile",
    "SpecScan",
    "bin_array",
    "correct_frames",
    "crop_cube",
    "fft_size",
    "find_peak",
    "frame_files",
    "get_detector",
    "network_input",
    "prepare_scan",
    "q_steps",
    "q_steps_approx",
    "read_field",
    "read_frames",
    "read_intensity",
    "read_scan",
    "read_tiff",
    "scan_state",
    "threshold_intensity",
]
