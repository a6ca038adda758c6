"""Simulated data: 2D convex objects (CDI NN, 2018) and 3D gold crystals (3D-CDI-NN, 2021).

Science code only: functions take generators (one per scan) and return NumPy
arrays batched along the first axis.
"""

from cdiplatform.simulate.objects2d import (
    Convex2DRecipe,
    object_intensity,
    random_objects_2d,
    simulate_2d,
    zero_pad,
)

from cdiplatform.simulate.detector_frame import (
    detector_frame_object,
    polyhedron_density,
    scan_geometry,
    simulate_detector_frame,
)
from cdiplatform.simulate.gold import (
    LammpsError,
    bulk_gold,
    random_crystal,
    relax_crystal,
    simulate_gold_pair,
    voxelize_crystal,
)

__all__ = [
    "Convex2DRecipe",
    "LammpsError",
    "bulk_gold",
    "detector_frame_object",
    "object_intensity",
    "polyhedron_density",
    "random_crystal",
    "random_objects_2d",
    "relax_crystal",
    "scan_geometry",
    "simulate_detector_frame",
    "simulate_2d",
    "simulate_gold_pair",
    "voxelize_crystal",
    "zero_pad",
]
