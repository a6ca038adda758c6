"""The batched iteration loop: ER, HIO and RAAR with Gaussian shrink-wrap.

Internally every array lives in the *unshifted* FFT layout (zero frequency and
object centre at index 0), so an iteration is a bare ``fftn``/``ifftn`` pair
with no ``fftshift`` copies (in calls whose temporaries the allocator reuses:
:func:`~cdiplatform.phasing.transforms.unitary_fftn_` into a buffer, or with
the numba kernels block by block without one; grids above 32 MiB on the CPU
by pocketfft with no temporary, :func:`~cdiplatform.phasing.transforms.resolve_fft`); the data are shifted once
on the way in and the result once on the way out. All buffers are allocated
once, on the device of the data, and the iteration updates them in place. The transforms are
unitary (``norm="ortho"``), so the object comes out on the platform's scale
(:mod:`cdiplatform.physics.fft`).

Buffers, in complex64 arrays of the grid (8 bytes a voxel) per start (``S K``
of them) or per scan (``S``):

================  ========  ================================================
buffer            arrays    what
================  ========  ================================================
``rho``           1         current object, complex64, ``(S, K, *grid)`` (given)
``field``         1         its far field, then ``P_M rho`` (in place; eager steps
                            only: with numba, the transforms' own results for
                            one block of at most 16 MiB at a time, two alive;
                            with pocketfft, one spare block, both transforms there)
``support``       1/8       bool (given; written by shrink-wrap)
``magnitude``     1/2       ``|rho|``, float32, then blurred (shrink-wrap)
blur              1/2       the blur's own: half spectrum (``"fft"``) or a
                            spare float32 array (``"separable"``)
``average``       1         sum of the last iterates (only with ``average_last``)
``amplitude``     1/2 / S   measured magnitudes, float32, ``(S, 1, *grid)`` (given)
``amplitude2``    1 / S     the same twice a voxel, ``(S, 1, *grid, 2)`` (eager
                            modulus; shared by the K starts)
``ratio``         1/2       ``A / |F|`` (only with a ``measured`` mask)
================  ========  ================================================

So 3.1 arrays per start (4.1 with averaging), plus 1.5 per scan, with
shrink-wrap; the numba kernels (``kernels="numba"``, the CPU's default) need
2.1 (3.1) per start plus two blocks (at most 32 MiB, or two grids where one
grid is larger), and neither they nor a fused modulus (``compile=True`` on
CUDA) need ``amplitude2`` or ``ratio``. Passes over memory per HIO
iteration: the FFT pair, then one for the modulus projection and one for
the update with the numba kernels of
:mod:`cdiplatform.phasing.cpu_kernels` (two and two eager); shrink-wrap
adds, eager, the magnitude (three passes over a real array), the blur
(``"separable"``: one pass per tap and axis, 21 for sigma 1 in 3D;
``"fft"``: an ``rfftn`` / ``irfftn`` pair and one product), the maximum and
the threshold; with numba and the separable blur, the update writes
``|rho|`` in its own pass and one call blurs, takes the maximum and
thresholds (:func:`~cdiplatform.phasing.cpu_kernels.shrink_wrap_`: one
read of the magnitude, the support written, the planes between in the
cache).

``S`` is the number of scans and ``K`` the number of random starts per scan.
The iteration follows cohere's order: shrink-wrap from the current object,
far field, modulus projection, back to real space, the ER/HIO/RAAR update,
twin removal, averaging.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from cdiplatform.phasing import cpu_kernels
from cdiplatform.phasing.blur import GaussianBlur, gaussian_transfer, resolve_blur
from cdiplatform.phasing.kernels import (
    TINY,
    compile_available,
    fused_kernels,
    fused_steps,
    magnitude_,
    resolve_kernels,
)
from cdiplatform.phasing.settings import PhasingSettings
from cdiplatform.phasing.transforms import resolve_fft, transform_blocks, unitary_fftn, unitary_fftn_

__all__ = ["IterationResult", "gaussian_transfer", "iterate", "time_to_error"]

_TINY = TINY


@dataclass
class IterationResult:
    """Raw output of :func:`iterate`, still in the unshifted layout.

    Attributes
    ----------
    obj : torch.Tensor, complex64, ``(S, K, *grid)``
        Final object per start (the average of the last iterates when asked).
    support : torch.Tensor, bool, ``(S, K, *grid)``
    error : torch.Tensor, float64, ``(S, K)``
        Reciprocal-space error of ``obj`` (see :func:`fourier_error`).
    history : list of (int, float, ndarray)
        ``(iteration, seconds, error (S, K))`` recorded every ``record_every``
        iterations and at the last: the error of the iterate entering that
        iteration, and the seconds of iterating until then (the device
        synchronized; the time spent computing the recorded errors left out).
    blur : str or None
        The shrink-wrap blur method used (``"fft"`` or ``"separable"``;
        None without shrink-wrap): record it with the run.
    compiled : tuple of str
        The steps that ran fused by ``torch.compile`` (``settings.compile``;
        which ones is a rule of the device, :func:`~cdiplatform.phasing.kernels.fused_steps`);
        empty when all ran eager. Record it with the run.
    kernels : str
        How the modulus projection, the update and the magnitude ran:
        ``"numba"`` or ``"eager"`` (:func:`~cdiplatform.phasing.kernels.resolve_kernels`).
        Record it with the run.
    fft : str
        The transforms' library, ``"torch"`` or ``"pocketfft"``
        (:func:`~cdiplatform.phasing.transforms.resolve_fft`). Record it with the run.
    """

    obj: torch.Tensor
    support: torch.Tensor
    error: torch.Tensor
    history: list[tuple[int, float, np.ndarray]]
    blur: str | None = None
    compiled: tuple[str, ...] = ()
    kernels: str = "eager"
    fft: str = "torch"


def time_to_error(
    history: list[tuple[int, float, np.ndarray]], error: float
) -> tuple[np.ndarray, np.ndarray]:
    """When each start first reached ``error``: (iteration, seconds), each ``(S, K)``.

    Reads a ``history`` of ``(iteration, seconds, error (S, K))`` (``record_every``);
    starts that never got to ``error`` or below get iteration -1 and seconds NaN.
    The resolution is that of the records.
    """
    if not history:
        raise ValueError("the history is empty: run with record_every > 0")
    errs = np.stack([h[2] for h in history])  # (records, S, K)
    reached = errs <= error
    first = np.argmax(reached, axis=0)
    ok = reached.any(axis=0)
    its = np.array([h[0] for h in history])[first]
    secs = np.array([h[1] for h in history], dtype=np.float64)[first]
    return np.where(ok, its, -1), np.where(ok, secs, np.nan)


def _grid_dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


def _twin_keep(grid: tuple[int, ...], halves: tuple[int, ...], device) -> torch.Tensor:
    """Bool mask, unshifted layout, of the part the twin removal keeps."""
    keep = np.ones(grid, dtype=bool)
    for axis, h in enumerate(halves[: len(grid)]):
        half = (grid[axis] + 1) // 2
        sl = [slice(None)] * len(grid)
        sl[axis] = slice(half, None) if h == 0 else slice(None, half)
        keep[tuple(sl)] = False
    return torch.from_numpy(np.fft.ifftshift(keep)).to(device)


def fourier_error(
    field: torch.Tensor, amplitude: torch.Tensor, measured: torch.Tensor | None, ndim: int
) -> torch.Tensor:
    """``sum (|F| - A)**2 / sum A**2`` over the measured pixels, per batch item (float64)."""
    dims = _grid_dims(ndim)
    diff = field.abs().sub_(amplitude).square_()
    a2 = amplitude.square()
    if measured is not None:
        diff.mul_(measured)
        a2 = a2 * measured
    num = diff.sum(dim=dims, dtype=torch.float64)
    den = a2.sum(dim=dims, dtype=torch.float64).clamp_min(_TINY)
    return num / den


def _numba_iteration(
    rho: torch.Tensor, amplitude: torch.Tensor, measured: torch.Tensor | None, support: torch.Tensor,
    rule: str, beta: float, blocks: list[tuple[slice, slice]], *, ndim: int,
    positive: torch.Tensor | None, magnitude: torch.Tensor | None, errors: np.ndarray | None,
    spare: torch.Tensor | None = None,
) -> float:
    """One iteration after shrink-wrap with the numba kernels (CPU), block by block, ``rho`` in place.

    Per block of :func:`~cdiplatform.phasing.transforms.transform_blocks`: the far field (the
    transform's own result, no copy; with ``spare``, a buffer of the largest block, there by
    pocketfft, the inverse in place), the modulus projection in place, the inverse transform, the update from it
    (with ``|rho|`` into ``magnitude`` when given). With ``errors`` (``(S, K)``), the Fourier error
    of the iterate entering is written into it. Returns the seconds spent on errors.
    """
    seconds = 0.0
    for scans, starts in blocks:
        block = rho[scans, starts]
        a = amplitude[scans]
        m = None if measured is None else measured[scans]
        field = _block_fft(block, ndim, spare)
        if errors is not None:
            t0 = time.perf_counter()
            errors[scans, starts] = fourier_error(field, a, m, ndim).numpy()
            seconds += time.perf_counter() - t0
        cpu_kernels.modulus_(field, a, m)
        field = _block_fft(field, ndim, spare, inverse=True)  # P_M rho of the block
        inside = support[scans, starts]
        if positive is not None:  # a real, non-negative object
            field.imag.zero_()
            p = positive[scans, starts]
            torch.ge(field.real, 0.0, out=p)
            inside = p.logical_and_(inside)
        cpu_kernels.update_(block, field, inside, rule, beta,
                            magnitude=None if magnitude is None else magnitude[scans, starts])
    return seconds


def _block_fft(block: torch.Tensor, ndim: int, spare: torch.Tensor | None, *, inverse: bool = False) -> torch.Tensor:
    """``fftn(block)`` (or ``ifftn``): torch's own result, or with ``spare`` by pocketfft into its first
    ``block.numel()`` voxels (in place when ``block`` already lies there)."""
    if spare is None:
        return unitary_fftn(block, ndim=ndim, inverse=inverse)
    out = spare.view(-1)[: block.numel()].view(block.shape)
    return unitary_fftn_(block, out, ndim=ndim, inverse=inverse, fft="pocketfft")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def iterate(
    amplitude: torch.Tensor,
    rho: torch.Tensor,
    support: torch.Tensor,
    settings: PhasingSettings,
    *,
    ndim: int,
    measured: torch.Tensor | None = None,
) -> IterationResult:
    """Run the algorithm sequence on a batch, in place, in the unshifted layout.

    Parameters
    ----------
    amplitude : torch.Tensor, float32, ``(S, 1, *grid)``
        Measured magnitudes (``sqrt`` of the intensity), unshifted.
    rho : torch.Tensor, complex64, ``(S, K, *grid)``
        Starting objects; overwritten.
    support : torch.Tensor, bool, ``(S, K, *grid)``
        Starting supports; overwritten by shrink-wrap.
    settings : PhasingSettings
        ``settings.shrink_wrap.blur`` is resolved here for the data's device
        and grid (:func:`~cdiplatform.phasing.blur.resolve_blur`);
        ``settings.compile`` asks for the fused steps that pay on the device
        (:func:`~cdiplatform.phasing.kernels.fused_steps`); ``settings.fft``
        is resolved for the device and grid
        (:func:`~cdiplatform.phasing.transforms.resolve_fft`).
    ndim : int
        2 or 3.
    measured : torch.Tensor, bool, ``(S, 1, *grid)``, optional
        True where the magnitude was measured; elsewhere the far field keeps
        its current value.

    Returns
    -------
    IterationResult

    Raises
    ------
    RuntimeError
        When ``settings.compile`` is set and no compiler is available here.
    """
    grid = tuple(rho.shape[-ndim:])
    device = rho.device
    seq = settings.algorithm
    n_iter = seq.n_iterations
    beta = float(settings.beta)
    fusing: tuple[str, ...] = ()
    fused = {}
    if settings.compile:
        ok, why = compile_available(device)
        if not ok:
            raise RuntimeError(f"compile=True but torch.compile cannot build kernels here: {why}")
        fusing = fused_steps(device)
        fused = fused_kernels()
    one_pass = resolve_kernels(device, settings.kernels) == "numba"
    if one_pass:  # numba runs every step torch.compile would fuse
        fusing = ()
    fft = resolve_fft(device, grid, choice=settings.fft)

    # numba: far fields of blocks of the batch, the transforms' own results (pocketfft: in a spare
    # block); eager: one buffer
    field = None if one_pass else torch.empty_like(rho)
    blocks = transform_blocks(tuple(rho.shape), ndim=ndim) if one_pass else []
    spare = None
    if one_pass and fft == "pocketfft":
        spare = torch.empty(max(rho[s, k].numel() for s, k in blocks), dtype=rho.dtype)
    average = torch.zeros_like(rho) if settings.average_last > 0 else None
    avg_from = n_iter - settings.average_last

    sw = settings.shrink_wrap
    sw_iters: dict[int, float] = {}
    if sw is not None:
        its = sw.iterations(n_iter)
        sw_iters = {it: sw.sigma_at(k, len(its)) for k, it in enumerate(its)}
    blur_method = magnitude = blur = None
    if sw_iters:
        blur_method = resolve_blur(device, grid, sigma=max(sw_iters.values()), method=sw.blur)
        magnitude = torch.empty(rho.shape, dtype=torch.float32, device=device)
        blur = GaussianBlur(
            rho.shape, ndim=ndim, method=blur_method, device=device, compiled="blur" in fusing,
            one_pass=one_pass,
        )

    ratio = unmeasured = None
    if measured is not None and "modulus" not in fusing and not one_pass:
        ratio = torch.empty(rho.shape, dtype=torch.float32, device=device)
        unmeasured = ~measured
    positive = torch.empty(rho.shape, dtype=torch.bool, device=device) if settings.positivity else None
    twin_keep = None
    if settings.twin is not None and settings.twin.iteration < n_iter:
        twin_keep = _twin_keep(grid, settings.twin.halves, device)

    # real views (last axis: real, imaginary); the eager modulus multiplies by the amplitude
    # stored twice a voxel (amplitude2): a broadcast (..., 1) operand costs twice the time on CPU
    rho_r = torch.view_as_real(rho)
    field_r = None if field is None else torch.view_as_real(field)
    amplitude2 = None
    if "modulus" not in fusing and measured is None and not one_pass:
        amplitude2 = amplitude.unsqueeze(-1).expand(*amplitude.shape, 2).contiguous()
    ratio_r = None if ratio is None else ratio.unsqueeze(-1)

    history: list[tuple[int, float, np.ndarray]] = []
    record = settings.record_every
    _synchronize(device)
    t_start = time.perf_counter()
    t_recording = 0.0
    it = 0
    magnitude_of_rho = False  # whether ``magnitude`` holds |rho| of the current object
    for op, count in seq.steps:
        for _ in range(count):
            # -- shrink-wrap from the current object
            if it in sw_iters:
                if not magnitude_of_rho:  # (with numba, the last update wrote |rho| in its pass)
                    if one_pass:
                        cpu_kernels.magnitude_(rho, magnitude)
                    elif "magnitude" not in fusing:
                        magnitude_(rho_r, magnitude)
                    else:
                        fused["magnitude"](rho_r, magnitude)
                blur.support_(magnitude, sw_iters[it], sw.threshold, out=support)  # may overwrite magnitude

            if one_pass:  # transforms, projection and update block by block, no far-field buffer
                magnitude_of_rho = (it + 1) in sw_iters  # the next shrink-wrap's |rho| in the same pass
                errors = None
                if record and (it % record == 0 or it == n_iter - 1):
                    errors = np.empty(rho.shape[:2])
                    history.append((it, time.perf_counter() - t_start - t_recording, errors))
                t_recording += _numba_iteration(
                    rho, amplitude, measured, support, op, beta, blocks, ndim=ndim, positive=positive,
                    magnitude=magnitude if magnitude_of_rho else None, errors=errors, spare=spare,
                )
            else:
                # -- modulus projection in reciprocal space
                unitary_fftn_(rho, field, ndim=ndim, fft=fft)
                if record and (it % record == 0 or it == n_iter - 1):
                    _synchronize(device)
                    t_record = time.perf_counter()
                    err = fourier_error(field, amplitude, measured, ndim).cpu().numpy()
                    history.append((it, t_record - t_start - t_recording, err))
                    t_recording += time.perf_counter() - t_record
                if "modulus" in fusing:
                    if measured is None:
                        fused["modulus"](field_r, amplitude)
                    else:
                        fused["modulus_measured"](field_r, amplitude, measured)
                elif measured is None:
                    field.sgn_()
                    field_r.mul_(amplitude2)
                else:
                    torch.abs(field, out=ratio)
                    ratio.clamp_min_(_TINY)
                    torch.div(amplitude, ratio, out=ratio)
                    ratio.masked_fill_(unmeasured, 1.0)
                    field_r.mul_(ratio_r)
                unitary_fftn_(field, field, ndim=ndim, inverse=True, fft=fft)  # field now holds P_M rho

                # -- real-space update
                inside = support
                if positive is not None:  # a real, non-negative object
                    field.imag.zero_()
                    torch.ge(field.real, 0.0, out=positive)
                    positive.logical_and_(support)
                    inside = positive
                if "update" in fusing:
                    if op == "ER":
                        fused["er"](rho_r, field_r, inside)
                    elif op == "HIO":
                        fused["hio"](rho_r, field_r, inside, beta)
                    else:
                        fused["raar"](rho_r, field_r, inside, beta)
                elif op == "ER":
                    torch.mul(field_r, inside.unsqueeze(-1), out=rho_r)
                elif op == "HIO":  # inside P_M rho, outside rho - beta P_M rho
                    rho.sub_(field, alpha=beta)
                    torch.where(inside, field, rho, out=rho)
                else:  # RAAR: inside P_M rho, outside beta rho + (1 - 2 beta) P_M rho
                    rho.mul_(beta).add_(field, alpha=1.0 - 2.0 * beta)
                    torch.where(inside, field, rho, out=rho)

            if twin_keep is not None and it == settings.twin.iteration:
                rho.mul_(twin_keep)
                magnitude_of_rho = False
            if average is not None and it >= avg_from:
                average.add_(rho)
            it += 1

    obj = rho if average is None else average.div_(settings.average_last)
    if one_pass:
        error = torch.empty(obj.shape[:2], dtype=torch.float64)
        for scans, starts in blocks:
            error[scans, starts] = fourier_error(
                _block_fft(obj[scans, starts], ndim, spare), amplitude[scans],
                None if measured is None else measured[scans], ndim,
            )
    else:
        unitary_fftn_(obj, field, ndim=ndim, fft=fft)
        error = fourier_error(field, amplitude, measured, ndim)
    return IterationResult(
        obj=obj, support=support, error=error, history=history, blur=blur_method, compiled=fusing,
        kernels="numba" if one_pass else "eager", fft=fft,
    )
