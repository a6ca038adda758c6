"""What SPEC does not record about a detector: pixel size, sensor shape, orientation.

A small table, extended by adding an entry to :data:`DETECTORS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdiplatform.ingest.errors import IngestError

__all__ = ["DETECTORS", "Detector", "get_detector"]


@dataclass(frozen=True)
class Detector:
    """A pixel detector.

    Attributes
    ----------
    name : str
        Canonical name.
    pixel_size : tuple of float
        Pixel pitch along (rows, columns), metres.
    sensor_shape : tuple of int
        Full sensor size (rows, columns), pixels; a region of interest
        (``#UIMR5``) is a part of it.
    orientation : tuple of str
        Lab direction of increasing row and column index in xrayutilities
        notation (``"y-"``: row index grows downwards), for the q-space grid.
    aliases : tuple of str
        Other names accepted by :func:`get_detector` (such as the EPICS
        prefix written in ``#UIMDET``).
    """

    name: str
    pixel_size: tuple[float, float]
    sensor_shape: tuple[int, int]
    orientation: tuple[str, str] = ("y-", "x+")
    aliases: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """Plain metadata (JSON-ready)."""
        return {
            "detector": self.name,
            "pixel_size_m": list(self.pixel_size),
            "sensor_shape": list(self.sensor_shape),
            "detector_orientation": list(self.orientation),
        }


#: Known detectors by canonical name. The APS 34-ID-C Timepix (a quad of 256 x 256
#: chips, 55 um pixels) is written ``34idcTIM2`` in the SPEC ``#UIMDET`` line.
DETECTORS: dict[str, Detector] = {
    "timepix": Detector(
        name="timepix",
        pixel_size=(55e-6, 55e-6),
        sensor_shape=(512, 512),
        orientation=("y-", "x+"),
        aliases=("34idcTIM2", "34idcTIM2:", "tim2", "timepix_34idc"),
    ),
}


def get_detector(name: str | Detector) -> Detector:
    """Look a detector up by name or alias (case-insensitive).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    if isinstance(name, Detector):
        return name
    wanted = name.strip().lower()
    for det in DETECTORS.values():
        if wanted == det.name.lower() or wanted in (a.lower() for a in det.aliases):
            return det
    known = ", ".join(sorted(DETECTORS))
    raise IngestError(f"unknown detector {name!r}; known detectors: {known} "
                      "(add an entry to cdiplatform.ingest.detectors.DETECTORS)")
