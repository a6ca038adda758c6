"""The settings of a phase retrieval, as plain frozen dataclasses.

They are what a recipe names and what the ``reconstruct`` stage's parameters
fill in; the engine (:mod:`cdiplatform.phasing.engine`) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdiplatform.phasing.algorithm import AlgorithmSequence, parse_algorithm
from cdiplatform.phasing.blur import BLUR_METHODS
from cdiplatform.phasing.kernels import KERNELS
from cdiplatform.phasing.transforms import FFTS

__all__ = ["ShrinkWrap", "TwinRemoval", "PhasingSettings"]


@dataclass(frozen=True)
class ShrinkWrap:
    """Gaussian shrink-wrap: support = blur(|rho|, sigma) >= threshold * max(blur).

    Parameters
    ----------
    threshold : float
        Fraction (0, 1) of the maximum of the blurred amplitude, per reconstruction.
    sigma : float
        Gaussian standard deviation in pixels at the first update.
    sigma_final : float, optional
        When given, sigma goes geometrically from ``sigma`` to ``sigma_final``
        over the updates (a schedule); constant otherwise.
    period : int
        Update every ``period`` iterations.
    start : int
        First iteration (0-based) with an update; cohere's trigger ``[1, 1]``
        is ``start=1, period=1``.
    stop : int, optional
        No update at or after this iteration.
    blur : {"auto", "fft", "separable"}
        How the Gaussian blur is computed (:mod:`cdiplatform.phasing.blur`):
        between an FFT pair, or as a separable real-space convolution that
        gives the same support up to a few voxels at the threshold; ``"auto"``
        resolves it by a fixed rule of device and grid (:func:`~cdiplatform.phasing.blur.resolve_blur`),
        and the run reports the method it used.
    """

    threshold: float = 0.1
    sigma: float = 1.0
    sigma_final: float | None = None
    period: int = 1
    start: int = 1
    stop: int | None = None
    blur: str = "auto"

    def __post_init__(self) -> None:
        if self.blur != "auto" and self.blur not in BLUR_METHODS:
            raise ValueError(
                f"shrink-wrap blur must be one of auto, {', '.join(BLUR_METHODS)}; not {self.blur!r}"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"shrink-wrap threshold must be in (0, 1), not {self.threshold}")
        if self.sigma <= 0 or (self.sigma_final is not None and self.sigma_final <= 0):
            raise ValueError(f"shrink-wrap sigma must be positive, not {self.sigma}/{self.sigma_final}")
        if self.period < 1 or self.start < 0:
            raise ValueError(f"shrink-wrap period must be >= 1 and start >= 0 ({self.period}, {self.start})")

    def iterations(self, n_iterations: int) -> list[int]:
        """The iterations (0-based) at which the support is updated."""
        stop = n_iterations if self.stop is None else min(self.stop, n_iterations)
        return list(range(self.start, stop, self.period))

    def sigma_at(self, update: int, n_updates: int) -> float:
        """Sigma of the ``update``-th update out of ``n_updates``."""
        if self.sigma_final is None or n_updates <= 1:
            return self.sigma
        frac = update / (n_updates - 1)
        return float(self.sigma * (self.sigma_final / self.sigma) ** frac)


@dataclass(frozen=True)
class TwinRemoval:
    """Zero the object outside one half of each of the first two grid axes, once.

    Breaks the centro-symmetry between an object and its twin early in the
    run (cohere's ``twin_trigger`` / ``twin_halves``).

    Parameters
    ----------
    iteration : int
        The 0-based iteration after whose update the halves are cut.
    halves : tuple of int
        Per axis, 0 keeps the lower half (indices below ``(N + 1) // 2`` in
        the centred layout), 1 the upper half.
    """

    iteration: int = 2
    halves: tuple[int, ...] = (0, 0)

    def __post_init__(self) -> None:
        if any(h not in (0, 1) for h in self.halves):
            raise ValueError(f"twin halves must be 0 or 1, not {self.halves}")


@dataclass(frozen=True)
class PhasingSettings:
    """Everything that defines a phase-retrieval run (apart from the data).

    Parameters
    ----------
    algorithm : str or AlgorithmSequence
        For example ``"3*(20*ER+180*HIO)+20*ER"``.
    beta : float
        Feedback of HIO and RAAR.
    shrink_wrap : ShrinkWrap or None
    positivity : bool
        For real, non-negative objects: the projection keeps the real part
        only and treats points whose real part is negative as outside the support.
    twin : TwinRemoval or None
    average_last : int
        Average the object over the final ``average_last`` iterations (0: the last iterate).
    initial_support : {"box", "autocorrelation"}
        ``"box"``: a centred box of ``support_fraction`` of each axis;
        ``"autocorrelation"``: the blurred autocorrelation |IFFT(A**2)| above
        ``support_threshold`` of its maximum.
    support_fraction : float
    support_threshold : float
    n_starts : int
        Random starts per scan, run together in one batch.
    keep_best : int
        Starts with the smallest reciprocal-space error that are aligned and averaged.
    seed_phase_noise : float
        With a seeded start (``phase_retrieval(..., start=)``): the RMS, in
        radians, of the Gaussian phase noise added to every voxel of each start
        drawn from the seed (each scan's own generator). 0: no noise.
    seed_amplitude_noise : float
        Likewise, the relative RMS of a Gaussian factor ``1 + noise * N(0, 1)``
        on every voxel's amplitude. With both at 0 every start of a seed is
        the seed itself, so only ``n_starts = 1`` is accepted there.
    record_every : int
        Record the reciprocal-space error and the elapsed time every this many
        iterations (0: never); the device is synchronized only then.
    compile : bool
        Run the steps where it pays on the device (on CPU the magnitude and
        the separable blur of shrink-wrap; on CUDA also the modulus
        projection and the update) as kernels fused by ``torch.compile``
        (:mod:`cdiplatform.phasing.kernels`) instead of eager in-place
        passes; the same results to float32 rounding. Off by default: the
        first run of a process on a new grid spends seconds compiling, and it
        needs a compiler (a C++ compiler on CPU, Triton on CUDA). Where the
        numba kernels run (``kernels``), they take every step's place and
        nothing is compiled.
    kernels : {"auto", "eager", "numba"}
        How the modulus projection, the update and shrink-wrap's magnitude
        run: ``"numba"``, one parallel pass each on the CPU
        (:mod:`cdiplatform.phasing.cpu_kernels`); ``"eager"``, torch's
        in-place passes (two each); ``"auto"``, numba on a CPU where it
        loads and eager elsewhere (:func:`~cdiplatform.phasing.kernels.resolve_kernels`,
        a fixed rule; the answer is recorded with the run). Equal to float32 rounding.
    fft : {"auto", "torch", "pocketfft"}
        The library of the iteration's transforms: ``"torch"``, or
        ``"pocketfft"`` (``scipy.fft``'s library, into a kept buffer with no
        temporary; CPU only); ``"auto"``,
        pocketfft on a CPU for a grid of more than 32 MiB (256 x 256 x 210
        complex64 is 110 MB), where torch faults a fresh result in at every
        call, and torch otherwise
        (:func:`~cdiplatform.phasing.transforms.resolve_fft`, a fixed rule;
        the answer is recorded with the run). Equal to float32 rounding.
    """

    algorithm: str | AlgorithmSequence = "3*(20*ER+180*HIO)+20*ER"
    beta: float = 0.9
    shrink_wrap: ShrinkWrap | None = field(default_factory=ShrinkWrap)
    positivity: bool = False
    twin: TwinRemoval | None = field(default_factory=TwinRemoval)
    average_last: int = 0
    initial_support: str = "box"
    support_fraction: float = 0.5
    support_threshold: float = 0.1
    n_starts: int = 1
    keep_best: int = 1
    seed_phase_noise: float = 0.0
    seed_amplitude_noise: float = 0.0
    record_every: int = 0
    compile: bool = False
    kernels: str = "auto"
    fft: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", parse_algorithm(self.algorithm))
        if self.kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {', '.join(map(repr, KERNELS))}, not {self.kernels!r}")
        if self.fft not in FFTS:
            raise ValueError(f"fft must be one of {', '.join(map(repr, FFTS))}, not {self.fft!r}")
        if not 0.0 < self.beta <= 1.0:
            raise ValueError(f"beta must be in (0, 1], not {self.beta}")
        if self.initial_support not in ("box", "autocorrelation"):
            raise ValueError(
                f"initial_support must be 'box' or 'autocorrelation', not {self.initial_support!r}"
            )
        if not 0.0 < self.support_fraction <= 1.0:
            raise ValueError(f"support_fraction must be in (0, 1], not {self.support_fraction}")
        if self.n_starts < 1 or not 1 <= self.keep_best <= self.n_starts:
            raise ValueError(
                f"need n_starts >= 1 and 1 <= keep_best <= n_starts, not {self.n_starts}, {self.keep_best}"
            )
        if not 0 <= self.average_last <= self.algorithm.n_iterations:
            raise ValueError(
                f"average_last={self.average_last} must be between 0 and the "
                f"{self.algorithm.n_iterations} iterations"
            )
        if not (self.seed_phase_noise >= 0 and self.seed_amplitude_noise >= 0):
            raise ValueError(
                f"seed noise must be >= 0, not phase {self.seed_phase_noise}, amplitude {self.seed_amplitude_noise}"
            )
