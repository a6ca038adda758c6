"""A previous result as the start of another method: mapped onto the phasing grid, with a support.

Shared by the stages that start from a result (``reconstruct`` seeded by a
network, ``refine``): the result is on its own grid (a network's model grid,
or the phasing grid itself); the grid relation comes from the phasing
collection (a zero-padded collection records it) or from the result (a
network's result carries its network input's).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["check_seed", "seed_objects"]


def _relations(collection: Any, seed: Any, n: int) -> list:
    from cdiplatform.physics.grids import GridRelation

    for ds in (collection, seed):
        if "grid_relation" in ds:
            return [GridRelation.from_dict(json.loads(str(r))) for r in ds["grid_relation"].values]
    return [None] * n


def check_seed(collection: Any, seed: Any, *, stage: str) -> None:
    """Refuse, before any task runs, a seed that cannot be brought onto the collection's grid."""
    where = seed.attrs.get("node", "the seed")
    for name in ("amplitude", "phase"):
        if name not in seed:
            raise ValueError(f"{stage}: the seed {where} has no {name!r}: not a reconstruction")
    grid = tuple(collection["intensity"].shape[1:])
    own = tuple(seed["amplitude"].shape[1:])
    if len(own) != len(grid):
        raise ValueError(f"{stage}: the seed's grid {own} and the collection's {grid} differ in dimensions")
    if own != grid and "grid_relation" not in collection and "grid_relation" not in seed:
        raise ValueError(f"{stage}: the seed's grid {own} is not the collection's {grid}, and neither records "
                         f"a grid_relation to map one onto the other")


def seed_objects(collection: Any, seed: Any, *, support_threshold: float = 0.1,
                 dilation: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The seed's objects on the collection's grid (complex, ``(S, *grid)``) and their starting supports."""
    from cdiplatform.physics.grids import model_to_phasing
    from cdiplatform.physics.support import support_from_amplitude

    grid = tuple(collection["intensity"].shape[1:])
    amp = np.nan_to_num(np.asarray(seed["amplitude"].values, dtype=np.float64))
    obj = amp * np.exp(1j * np.nan_to_num(np.asarray(seed["phase"].values, dtype=np.float64)))
    if obj.shape[1:] != grid:
        relations = _relations(collection, seed, len(obj))
        obj = np.stack([model_to_phasing(o, r) for o, r in zip(obj, relations)])
    support = support_from_amplitude(np.abs(obj), threshold=support_threshold, dilation=dilation)
    return obj.astype(np.complex64), np.asarray(support, dtype=bool)
