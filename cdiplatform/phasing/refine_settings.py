"""The settings of a gradient refinement (:func:`cdiplatform.phasing.refine.refine`), validated on creation.

Defaults are the measured choices of ``docs/refinement.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdiplatform.phasing.forward import LOSSES

__all__ = ["OPTIMIZERS", "PARAMETRIZATIONS", "RefineSettings", "RefineShrinkWrap"]

#: optimizers :func:`cdiplatform.phasing.refine.refine` knows
OPTIMIZERS = ("adam", "lbfgs")
#: ``"complex"``: the real and imaginary parts per voxel; ``"polar"``: amplitude and phase per voxel
PARAMETRIZATIONS = ("complex", "polar")


@dataclass(frozen=True)
class RefineShrinkWrap:
    """Shrink-wrap during refinement, per scan (the public 3D-CDI-NN example's rule).

    Every ``period`` iterations of a scan, if its loss fell by at least
    ``min_improvement`` (a fraction) below the loss that triggered its last
    support update (or its starting loss), its support becomes ``blur(|obj * support|, sigma) >=
    threshold * max`` of that scan.

    Parameters
    ----------
    threshold : float
        Fraction (0, 1) of the maximum of the blurred amplitude.
    sigma : float
        Gaussian standard deviation, pixels.
    period : int
        Iterations between two chances of an update.
    min_improvement : float
        Relative loss decrease in [0, 1) required since the last update.
    """

    threshold: float = 0.08
    sigma: float = 1.0
    period: int = 50
    min_improvement: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"shrink-wrap threshold must be in (0, 1), not {self.threshold}")
        if not self.sigma > 0:
            raise ValueError(f"shrink-wrap sigma must be positive, not {self.sigma}")
        if self.period < 1:
            raise ValueError(f"shrink-wrap period must be at least 1, not {self.period}")
        if not 0.0 <= self.min_improvement < 1.0:
            raise ValueError(f"shrink-wrap min_improvement must be in [0, 1), not {self.min_improvement}")


@dataclass(frozen=True)
class RefineSettings:
    """Everything that defines a refinement run apart from the data and the start.

    Parameters
    ----------
    loss : {"amplitude", "poisson"}
        Gaussian on magnitudes, or Poisson on intensities; either with the
        scale fitted in closed form per scan (:mod:`cdiplatform.phasing.forward`).
    optimizer : {"adam", "lbfgs"}
    parametrization : {"complex", "polar"}
        What the optimizer moves: the real and imaginary parts of every voxel,
        or its amplitude and phase.
    learning_rate : float
        Adam: the step size, in units of the start's maximum amplitude (and
        radians for a phase). L-BFGS: the size of the first step (a
        steepest-descent step whose largest component is ``learning_rate``);
        later steps take the curvature's scale and a line search.
    max_iterations : int
        At most this many steps per scan.
    tolerance : float
        A scan stops when its loss fell by less than this fraction over the
        last ``window`` steps (0: never by this rule).
    window : int
        Steps the stopping rule looks back; it also waits this many steps
        after every support update.
    memory : int
        L-BFGS: the number of (step, gradient change) pairs kept per scan.
    betas : (float, float)
        Adam's moment decay rates.
    shrink_wrap : RefineShrinkWrap or None
    record_every : int
        Record (iteration, seconds, chi) every this many steps (0: only the
        start and the end).
    """

    loss: str = "amplitude"
    optimizer: str = "lbfgs"
    parametrization: str = "polar"
    learning_rate: float = 0.01
    max_iterations: int = 1000
    tolerance: float = 3e-3
    window: int = 20
    memory: int = 5
    betas: tuple[float, float] = (0.9, 0.999)
    shrink_wrap: RefineShrinkWrap | None = field(default_factory=RefineShrinkWrap)
    record_every: int = 10

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown refinement loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"unknown parametrization {self.parametrization!r}; known: {', '.join(PARAMETRIZATIONS)}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, not {self.learning_rate}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, not {self.max_iterations}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), not {self.tolerance}")
        if self.window < 1 or self.memory < 1:
            raise ValueError(f"window and memory must be at least 1, not {self.window} and {self.memory}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), not {self.betas}")
        if self.record_every < 0:
            raise ValueError(f"record_every must be >= 0, not {self.record_every}")
        if self.shrink_wrap is not None and not isinstance(self.shrink_wrap, RefineShrinkWrap):
            raise ValueError(f"shrink_wrap must be a RefineShrinkWrap or None, not {type(self.shrink_wrap).__name__}")
