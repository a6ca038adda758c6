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

# 3D gold crystals (LAMMPS): the lead exports the public API of cdiplatform.simulate.gold here.

__all__ = ["Convex2DRecipe", "object_intensity", "random_objects_2d", "simulate_2d", "zero_pad"]
