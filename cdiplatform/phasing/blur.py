"""The Gaussian blur of shrink-wrap, two ways, and the rule that picks one.

Shrink-wrap thresholds ``|rho|`` blurred by a Gaussian of ``sigma`` pixels.
The blur is periodic (the grid is a torus, as the FFT sees it) and either

``"fft"``
    a multiplication by the Gaussian's transfer function
    ``exp(-2 pi**2 sigma**2 |f|**2)`` between an ``rfftn`` / ``irfftn`` pair
    (the reference: what the engine always did);
``"separable"``
    the *same* filter as a real-space convolution, one grid axis after the
    other. Along an axis of ``n`` points the filter's kernel is the inverse
    DFT of the 1-D transfer function (:func:`periodic_gaussian_kernel`), and
    the transfer function is a product over axes, so the separable
    convolution with the full kernels equals the FFT blur exactly. The
    kernels are cut where their weight falls below ``TAP_TOLERANCE`` of the
    central one (:func:`gaussian_taps`): 7 taps per axis for sigma 1, each
    one pass over the array, no transform.

Which is faster depends on the device and the size, so the choice is a fixed
rule of (device type, grid, sigma), never a timing taken at run time
(:func:`resolve_blur`): a resumed run blurs the same way. The rule's table
comes from ``tests/benchmarks/bench_phasing_iteration.py`` (CPU) and
``tests/benchmarks/gpu/device_bench.py`` (CUDA); see docs/phasing.md.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from cdiplatform.phasing.cpu_kernels import convolve_axis_, shrink_wrap_

__all__ = [
    "BLUR_METHODS",
    "TAP_TOLERANCE",
    "GaussianBlur",
    "gaussian_taps",
    "gaussian_transfer",
    "periodic_gaussian_kernel",
    "resolve_blur",
]

#: the blur methods a run can ask for (``"auto"`` resolves to one of them)
BLUR_METHODS = ("fft", "separable")

#: kernel weights below this fraction of the central weight are dropped by ``"separable"``
TAP_TOLERANCE = 1e-3

#: on CPU, ``"separable"`` while the kernels of all axes hold at most this many taps together
#: (sigma 1: 7 per axis, 21 in 3D; sigma 2: 15 per axis); measured in docs/phasing.md
CPU_SEPARABLE_MAX_TAPS = 30


def gaussian_transfer(grid: tuple[int, ...], sigma: float, *, device, half: bool = True) -> torch.Tensor:
    """Fourier transform of a unit-sum Gaussian of std ``sigma`` pixels, unshifted layout.

    Returns the real ``exp(-2 pi**2 sigma**2 |f|**2)`` on the ``rfftn`` half
    grid (``half=True``) or the full grid, with ``f`` in cycles per pixel,
    float32.
    """
    out = None
    for axis, n in enumerate(grid):
        if half and axis == len(grid) - 1:
            f = torch.fft.rfftfreq(n, device=device, dtype=torch.float64)
        else:
            f = torch.fft.fftfreq(n, device=device, dtype=torch.float64)
        g = torch.exp(-2.0 * math.pi**2 * sigma**2 * f**2)
        shape = [1] * len(grid)
        shape[axis] = -1
        g = g.reshape(shape)
        out = g if out is None else out * g
    return out.to(torch.float32)


def periodic_gaussian_kernel(n: int, sigma: float) -> np.ndarray:
    """The periodic kernel of the FFT blur along an axis of ``n`` points, float64 ``(n,)``.

    ``k[m]`` is the weight of the point ``m`` pixels away (index ``m`` for
    ``+m``, ``n - m`` for ``-m``): the inverse DFT of the 1-D transfer
    function, real and symmetric. Convolving every axis with it is the FFT
    blur. For sigma 1 it is about 0.399, 0.242, 0.054, 0.005 at 0-3 pixels,
    then a tail of alternating sign below 2.3e-4 (the transfer function is
    cut at the Nyquist frequency, where it is still 0.7%).
    """
    if n < 1 or sigma <= 0:
        raise ValueError(f"need n >= 1 and sigma > 0, not n={n}, sigma={sigma}")
    f = np.fft.fftfreq(n)
    return np.fft.ifft(np.exp(-2.0 * np.pi**2 * sigma**2 * f**2)).real


@functools.lru_cache(maxsize=256)
def gaussian_taps(n: int, sigma: float, *, tolerance: float = TAP_TOLERANCE) -> tuple[tuple[int, float], ...]:
    """The taps that ``"separable"`` keeps along an axis of ``n`` points.

    Returns
    -------
    tuple of (int, float)
        ``(offset, weight)`` for the offsets ``m`` in ``[0, n)`` (periodic)
        where ``|k[m]| >= tolerance * k[0]`` (:func:`periodic_gaussian_kernel`),
        offset 0 first. ``tolerance=0`` keeps all ``n``: the FFT blur exactly.
    """
    k = periodic_gaussian_kernel(n, sigma)
    keep = np.nonzero(np.abs(k) >= tolerance * k[0])[0]
    return tuple((int(m), float(k[m])) for m in keep)


def _device_type(device) -> str:
    return torch.device(device).type if not isinstance(device, torch.device) else device.type


def resolve_blur(device, grid: tuple[int, ...], *, sigma: float = 1.0, method: str = "auto") -> str:
    """The blur method a run uses: ``method`` itself, or the rule's choice for ``"auto"``.

    The rule (measured in docs/phasing.md, fixed here, no timing at run time):

    - CPU: ``"separable"`` while the kernels of the grid's axes hold at most
      :data:`CPU_SEPARABLE_MAX_TAPS` taps together (sigma up to about 2 in
      3D, 4 in 2D), ``"fft"`` for wider Gaussians, where the passes cost more
      than the transforms;
    - CUDA and other devices: ``"fft"`` until ``tests/benchmarks/gpu/device_bench.py``
      has measured the separable blur there.

    Parameters
    ----------
    device : str or torch.device
        Where the run computes (only its type counts).
    grid : tuple of int
        The grid, without the batch axes.
    sigma : float
        The widest Gaussian of the run, pixels (the first of a decreasing schedule).
    method : {"auto", "fft", "separable"}

    Returns
    -------
    str
        ``"fft"`` or ``"separable"``.
    """
    if method != "auto":
        if method not in BLUR_METHODS:
            raise ValueError(f"unknown blur method {method!r}; known: auto, {', '.join(BLUR_METHODS)}")
        return method
    if _device_type(device) != "cpu":
        return "fft"
    taps = sum(len(gaussian_taps(int(n), float(sigma))) for n in grid)
    return "separable" if taps <= CPU_SEPARABLE_MAX_TAPS else "fft"


class GaussianBlur:
    """Periodic Gaussian blur of real arrays ``(..., *grid)`` on preallocated buffers.

    Parameters
    ----------
    shape : tuple of int
        Shape of the arrays to blur, grid last (``(S, K, *grid)``).
    ndim : int
        Number of grid axes (the last ``ndim`` of ``shape``).
    method : {"fft", "separable"}
    device : str or torch.device
    tolerance : float
        Of ``"separable"``: the taps kept (:func:`gaussian_taps`); 0 keeps
        them all, which is the FFT blur to float32 rounding.
    compiled : bool
        Of ``"separable"``: one kernel per axis built by ``torch.compile``
        (all taps of an axis in one pass) instead of a pass per tap; the same
        result to float32 rounding.
    one_pass : bool
        Of ``"separable"`` on CPU: one numba pass per axis
        (:func:`cdiplatform.phasing.cpu_kernels.convolve_axis_`); the same
        result to float32 rounding. Takes precedence over ``compiled``.

    Notes
    -----
    Buffers: ``"fft"`` holds the half spectrum, complex64 ``(..., n // 2 + 1)``
    (about half a complex array of the grid); ``"separable"`` a spare real
    float32 array of ``shape`` (half a complex array). Calling the object
    blurs its argument in place or into the spare, and returns whichever
    holds the result.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        ndim: int,
        method: str,
        device,
        tolerance: float = TAP_TOLERANCE,
        compiled: bool = False,
        one_pass: bool = False,
    ) -> None:
        if method not in BLUR_METHODS:
            raise ValueError(f"unknown blur method {method!r}; known: {', '.join(BLUR_METHODS)}")
        self.shape = tuple(shape)
        self.ndim = ndim
        self.grid = self.shape[-ndim:]
        self.method = method
        self.device = torch.device(device)
        self.tolerance = tolerance
        self.one_pass = one_pass and method == "separable"
        self.compiled = compiled and method == "separable" and not self.one_pass
        self.dims = tuple(range(-ndim, 0))
        if method == "fft":
            half = self.shape[:-1] + (self.grid[-1] // 2 + 1,)
            self._hat = torch.empty(half, dtype=torch.complex64, device=self.device)
            self._hat_r = torch.view_as_real(self._hat)
        else:
            self._spare = torch.empty(self.shape, dtype=torch.float32, device=self.device)
        self._sigma: float | None = None
        self._transfer: torch.Tensor | None = None
        self._taps: list[tuple[tuple[int, float], ...]] = []

    def _prepare(self, sigma: float) -> None:
        if sigma == self._sigma:
            return
        if self.method == "fft":
            self._transfer = gaussian_transfer(self.grid, sigma, device=self.device).unsqueeze(-1)
        else:
            self._taps = [gaussian_taps(int(n), float(sigma), tolerance=self.tolerance) for n in self.grid]
            # the compiled kernel specializes on the offsets (they change rarely with sigma), not the weights
            self._offsets = tuple(tuple(m for m, _ in taps) for taps in self._taps)
            self._weights = [
                torch.tensor([w for _, w in taps], dtype=torch.float32, device=self.device)
                for taps in self._taps
            ]
            self._numpy_taps = [(np.array(offs, dtype=np.int64), w.cpu().numpy())
                                for offs, w in zip(self._offsets, self._weights)]
        self._sigma = sigma

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """Blur ``x`` (float32 of ``shape``; overwritten) by ``sigma`` pixels; returns the result."""
        self._prepare(sigma)
        if self.method == "fft":
            torch.fft.rfftn(x, dim=self.dims, out=self._hat)
            self._hat_r.mul_(self._transfer)
            torch.fft.irfftn(self._hat, s=self.grid, dim=self.dims, out=x)
            return x
        if self.compiled:
            _compiled_separable()(x, self._offsets, self._weights, self._spare)
            return self._spare
        src, dst = x, self._spare
        for axis, taps, (offsets, weights) in zip(self.dims, self._taps, self._numpy_taps):
            if self.one_pass:
                convolve_axis_(src, dst, axis, offsets, weights)
            else:
                _convolve_axis(src, dst, axis, taps)
            src, dst = dst, src
        return src

    def support_(self, x: torch.Tensor, sigma: float, threshold: float, *, out: torch.Tensor) -> torch.Tensor:
        """The shrink-wrap support: ``out <- blur(x, sigma) >= threshold * max``, the maximum per grid.

        ``x`` float32 of ``shape``, overwritten (only read with ``one_pass``); ``out`` bool of
        ``shape``. With ``one_pass`` (numba, CPU) one call blurs, takes each grid's maximum and
        thresholds (:func:`cdiplatform.phasing.cpu_kernels.shrink_wrap_`), the blurred arrays never
        written out between the steps; otherwise the blur, ``amax`` and ``>=``. The same support
        either way, bit for bit.
        """
        self._prepare(sigma)
        if self.one_pass:
            return shrink_wrap_(x, self._spare, out, self._numpy_taps, threshold)
        blurred = self(x, sigma)
        peak = blurred.amax(dim=self.dims, keepdim=True)
        return torch.ge(blurred, peak.mul_(threshold), out=out)


def _convolve_axis(src: torch.Tensor, dst: torch.Tensor, axis: int, taps) -> None:
    """``dst[i] = sum_m w_m src[(i - m) mod n]`` along ``axis``: one pass per tap, no copies."""
    n = src.shape[axis]
    (m0, w0), rest = taps[0], taps[1:]
    assert m0 == 0
    torch.mul(src, w0, out=dst)
    for m, w in rest:
        dst.narrow(axis, m, n - m).add_(src.narrow(axis, 0, n - m), alpha=w)
        dst.narrow(axis, 0, m).add_(src.narrow(axis, n - m, m), alpha=w)


def _separable(x, offsets, weights, out):
    for axis, offs, w in zip(range(-len(offsets), 0), offsets, weights):
        y = x * w[0]
        for i in range(1, len(offs)):
            y = y + w[i] * torch.roll(x, offs[i], axis)
        x = y
    out.copy_(x)


@functools.lru_cache(maxsize=1)
def _compiled_separable():
    return torch.compile(_separable, dynamic=False, fullgraph=True)
