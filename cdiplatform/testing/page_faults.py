"""Page faults of the engine's FFT pair: whether freed temporaries come back without faulting in again."""

from __future__ import annotations

import resource

import torch

from cdiplatform.phasing.transforms import unitary_fftn_

__all__ = ["fft_pair_page_faults"]


def fft_pair_page_faults(shape: tuple[int, ...], *, pairs: int = 3, warm_up: int = 3,
                         fft: str = "torch") -> tuple[float, int]:
    """Minor page faults of one ``unitary_fftn_`` pair (forward, then inverse in place) in this process.

    Parameters
    ----------
    shape : tuple of int
        ``(S, K, *grid)`` of a complex64 array, 3D grid.
    pairs : int
        Pairs counted.
    warm_up : int
        Pairs run before counting: in a fresh process the heap grows during the
        first pairs (faults that a process pays once, not every pair).
    fft : {"torch", "pocketfft"}
        The library (:func:`~cdiplatform.phasing.transforms.resolve_fft`).

    Returns
    -------
    (float, int)
        Faults per pair in the steady state, and the pages of one array of ``shape``:
        a pair that maps its temporaries afresh faults about one array's pages a transform.
    """
    x = torch.randn(shape, dtype=torch.complex64)
    out = torch.empty_like(x)

    def pair() -> None:
        unitary_fftn_(x, out, ndim=3, fft=fft)
        unitary_fftn_(out, out, ndim=3, inverse=True, fft=fft)

    for _ in range(warm_up):
        pair()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(pairs):
        pair()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / pairs
    return faults, x.numel() * x.element_size() // resource.getpagesize()
