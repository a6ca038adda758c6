"""A quality flag per scan and method: ``good``, ``twin`` or ``failed`` (with the reason).

The checks, in this order (the first that fails gives the reason):

1. the reciprocal-space error ``chi`` is finite and at most ``max_chi``;
2. the support is not empty (at least ``min_support_voxels``);
3. it has not exploded: at most ``max_support_fraction`` of the grid;
4. it is compact: at most ``max_components`` connected pieces holding
   ``component_share`` of its voxels or more, and the largest piece holds at
   least ``min_largest_share`` of them.

A reconstruction that passes is ``twin`` when its comparison with the truth
(or the reference method) took the twin ``conj(rho(-r))`` and the twin
correlated better by more than ``twin_margin`` (an object that is nearly its
own twin, as a centro-symmetric crystal with a flat phase, is not called
twin), and ``good`` otherwise. The numbers behind the defaults are in
docs/benchmark.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cdiplatform.physics.compare import Comparison
from cdiplatform.physics.support import support_components

__all__ = ["FLAGS", "QualityThresholds", "quality_flag"]

#: the flags, in the order a summary counts them
FLAGS = ("good", "twin", "failed")


@dataclass(frozen=True)
class QualityThresholds:
    """Thresholds of :func:`quality_flag`.

    Attributes
    ----------
    max_chi : float
        Largest acceptable ``sum (|F| - A)**2 / sum A**2``.
    min_support_voxels : int
        Fewer voxels in the support: ``empty support``.
    max_support_fraction : float
        A support holding more of the grid has exploded.
    component_share : float
        A connected piece counts when it holds this share of the support.
    max_components : int
        Most pieces that count.
    min_largest_share : float
        Least share of the support in its largest piece.
    twin_margin : float
        Least relative excess of the twin's correlation peak over the
        object's (:attr:`cdiplatform.physics.compare.Comparison.twin_margin`)
        for the flag ``twin``.
    """

    max_chi: float = 0.1
    min_support_voxels: int = 1
    max_support_fraction: float = 0.3
    component_share: float = 0.05
    max_components: int = 1
    min_largest_share: float = 0.9
    twin_margin: float = 0.02

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"quality thresholds: {what}")

        need(self.max_chi > 0, f"max_chi must be positive, got {self.max_chi}")
        need(self.min_support_voxels >= 1, f"min_support_voxels must be >= 1, got {self.min_support_voxels}")
        need(0 < self.max_support_fraction <= 1, f"max_support_fraction must be in (0, 1], got {self.max_support_fraction}")
        need(0 < self.component_share <= 1, f"component_share must be in (0, 1], got {self.component_share}")
        need(self.max_components >= 1, f"max_components must be >= 1, got {self.max_components}")
        need(0 <= self.min_largest_share <= 1, f"min_largest_share must be in [0, 1], got {self.min_largest_share}")
        need(self.twin_margin >= 0, f"twin_margin must be >= 0, got {self.twin_margin}")


def quality_flag(
    *,
    chi: float,
    support,
    comparison: Comparison | None = None,
    thresholds: QualityThresholds = QualityThresholds(),
) -> tuple[str, str]:
    """The flag of one scan and method, and its reason.

    Parameters
    ----------
    chi : float
        Reciprocal-space error of the method's object against the measured
        data (:func:`cdiplatform.physics.metrics.chi_square`, scale fitted for
        objects of arbitrary scale).
    support : bool array, shape ``grid``
        The method's final support (for a network: its amplitude thresholded,
        :func:`cdiplatform.physics.support.support_from_amplitude`).
    comparison : Comparison, optional
        Of this object with the truth (simulated data) or with the reference
        method's object (:func:`cdiplatform.physics.compare.compare_objects`);
        without it no scan is called ``twin``.
    thresholds : QualityThresholds

    Returns
    -------
    (flag, reason) : one of :data:`FLAGS`, and a short sentence (``""`` for ``good``).
    """
    t = thresholds
    chi = float(chi)
    if not math.isfinite(chi):
        return "failed", "chi is not finite"
    if chi > t.max_chi:
        return "failed", f"chi {chi:.3g} above {t.max_chi:g}"
    parts = support_components(support, min_share=t.component_share)
    if parts.voxels < t.min_support_voxels:
        return "failed", f"empty support ({parts.voxels} voxels)"
    if parts.fraction > t.max_support_fraction:
        return "failed", f"exploded support ({parts.fraction:.0%} of the grid, above {t.max_support_fraction:.0%})"
    if parts.n_components > t.max_components:
        return "failed", f"support not compact ({parts.n_components} pieces of {t.component_share:.0%} or more)"
    if parts.largest_share < t.min_largest_share:
        return "failed", (f"support not compact (largest piece {parts.largest_share:.0%} of it, "
                          f"below {t.min_largest_share:.0%})")
    if comparison is not None and comparison.twinned and comparison.twin_margin > t.twin_margin:
        return "twin", f"matches only as its twin (correlation {comparison.twin_margin:.1%} higher)"
    return "good", ""
