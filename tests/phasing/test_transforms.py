"""The iteration's transforms in calls of bounded size: the same result as one call, and memory reused."""

import numpy as np
import pytest
import torch

from cdiplatform.phasing import transforms
from cdiplatform.phasing.transforms import IN_PLACE_BYTES, resolve_fft, unitary_fftn_
from cdiplatform.testing.page_faults import fft_pair_page_faults


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize(("shape", "ndim", "bound"), [
    ((3, 5, 8, 8, 8), 3, 3 * 8**3 * 8),   # 15 rows, 3 a call (the last call 3 too)
    ((2, 3, 8, 8, 8), 3, 4 * 8**3 * 8),   # 6 rows, 4 then 2
    ((4, 3, 16, 16), 2, 16 * 16 * 8),     # 2D, a row a call
    ((1, 1, 16, 16, 16), 3, 1024),        # one row larger than the bound: one call
])
def test_calls_of_bounded_size_give_the_transform_of_one_call(monkeypatch, shape, ndim, bound, in_place, inverse):
    monkeypatch.setattr(transforms, "CALL_BYTES", bound)
    x = torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    dims = tuple(range(-ndim, 0))
    expected = (torch.fft.ifftn if inverse else torch.fft.fftn)(x, dim=dims, norm="ortho")
    out = x.clone() if in_place else torch.empty_like(x)
    src = out if in_place else x
    assert unitary_fftn_(src, out, ndim=ndim, inverse=inverse) is out
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize(("shape", "ndim"), [((2, 3, 8, 6, 10), 3), ((1, 2, 12, 9), 2)])
@pytest.mark.parametrize("into_out", [True, False])  # scipy's call into a buffer, or a copy and the public API
def test_pocketfft_gives_torchs_transform(monkeypatch, shape, ndim, in_place, inverse, into_out):
    copies = []
    if not into_out:
        monkeypatch.setattr(transforms, "_pocketfft_c2c", lambda: None)
        copyto = np.copyto
        monkeypatch.setattr(np, "copyto", lambda *a, **k: (copies.append(1), copyto(*a, **k)))
    x = torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    dims = tuple(range(-ndim, 0))
    expected = (torch.fft.ifftn if inverse else torch.fft.fftn)(x, dim=dims, norm="ortho")
    out = x.clone() if in_place else torch.empty_like(x)
    src = out if in_place else x
    before = src.clone()
    assert unitary_fftn_(src, out, ndim=ndim, inverse=inverse, fft="pocketfft") is out
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    if not in_place:
        assert torch.equal(src, before)  # the source is left as it was
    assert len(copies) == (0 if in_place or into_out else 1)  # in place, the fallback copies nothing


@pytest.mark.parametrize(("device", "grid", "choice", "expected"), [
    ("cpu", (256, 256, 210), "auto", "pocketfft"),   # the scan-54 grid, 110 MB
    ("cpu", (168, 168, 168), "auto", "pocketfft"),   # 38 MB
    ("cpu", (160, 160, 160), "auto", "torch"),       # 32.8 MB, under 32 MiB
    ("cpu", (64, 64, 64), "auto", "torch"),
    ("cpu", (64, 64, 64), "pocketfft", "pocketfft"),
    ("cpu", (256, 256, 210), "torch", "torch"),
    ("cuda", (256, 256, 210), "auto", "torch"),
])
def test_the_fft_rule_is_a_function_of_device_and_grid(device, grid, choice, expected):
    assert resolve_fft(device, grid, choice=choice) == expected


def test_the_fft_rule_refuses_what_cannot_run():
    with pytest.raises(ValueError, match="unknown fft 'fftw'"):
        resolve_fft("cpu", (8, 8), choice="fftw")
    with pytest.raises(ValueError, match="runs on the CPU, not on cuda"):
        resolve_fft("cuda", (8, 8), choice="pocketfft")


def test_a_grid_above_the_mmap_threshold_is_transformed_in_place_without_faulting_in():
    """A single 168^3 grid (38 MB) is one torch call whose result glibc maps afresh every time (a
    grid's pages a transform); pocketfft works in the buffer and faults almost nothing."""
    shape = (1, 1, 168, 168, 168)
    assert 8 * 168**3 > IN_PLACE_BYTES
    torch_faults, pages = fft_pair_page_faults(shape, pairs=2, warm_up=1)
    pocket_faults, _ = fft_pair_page_faults(shape, pairs=2, warm_up=1, fft="pocketfft")
    assert torch_faults > pages / 2
    assert pocket_faults < pages / 20


def test_a_batch_of_32_mib_is_transformed_without_faulting_its_temporaries_in_again():
    """A pair of 16 x 64^3 (32 MiB) in one torch call maps a fresh temporary each time; in bounded
    calls glibc hands back the same memory, so the steady state hardly faults."""
    faults, pages = fft_pair_page_faults((16, 1, 64, 64, 64))
    assert faults < pages / 10


@pytest.mark.parametrize(("shape", "ndim", "grids_a_call", "expected"), [
    ((5, 2, 8, 8, 8), 3, 4, [(0, 2, 0, 2), (2, 4, 0, 2), (4, 5, 0, 2)]),  # two scans of 2 starts a block
    ((2, 3, 8, 8, 8), 3, 2, [(0, 1, 0, 2), (0, 1, 2, 3), (1, 2, 0, 2), (1, 2, 2, 3)]),  # a scan's starts split
    ((2, 2, 16, 16), 2, 0.5, [(0, 1, 0, 1), (0, 1, 1, 2), (1, 2, 0, 1), (1, 2, 1, 2)]),  # a grid above the bound
    ((3, 1, 8, 8, 8), 3, 100, [(0, 3, 0, 1)]),  # the whole batch in one
])
def test_transform_blocks_cover_the_batch_in_contiguous_blocks_of_bounded_size(
    monkeypatch, shape, ndim, grids_a_call, expected
):
    grid_bytes = 8 * int(torch.tensor(shape[-ndim:]).prod())
    monkeypatch.setattr(transforms, "CALL_BYTES", int(grids_a_call * grid_bytes))
    blocks = transforms.transform_blocks(shape, ndim=ndim)
    assert [(s.start, s.stop, k.start, k.stop) for s, k in blocks] == expected
    x = torch.zeros(shape[:2] + (1,))
    for s, k in blocks:
        assert x[s, k].is_contiguous()
        x[s, k] += 1
    assert torch.equal(x, torch.ones_like(x))  # every start exactly once
