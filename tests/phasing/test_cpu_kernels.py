"""The numba kernels of one pass each against torch's eager formulas, and the rule that picks them."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from cdiplatform.phasing import PhasingSettings, ShrinkWrap
from cdiplatform.phasing.blur import GaussianBlur
from cdiplatform.phasing.cpu_kernels import (
    convolve_axis_,
    magnitude_,
    modulus_,
    numba_available,
    shrink_wrap_,
    update_,
)
from cdiplatform.phasing.engine import iterate
from cdiplatform.phasing.kernels import resolve_kernels

ZEROS = (0, 1, 0, slice(0, 2))  # where the far field is 0


@pytest.fixture(params=[(2, 3, 6, 5, 4), (9, 2, 7, 6)], ids=["few rows, 3D", "many rows, 2D"])
def arrays(request):
    """A batch of scans x starts (6 rows: each row's voxels split between threads; 18: a row a thread),
    with zeros in the far field."""
    shape = request.param
    scans = (shape[0], 1, *shape[2:])
    g = torch.Generator().manual_seed(3)
    field = torch.randn(shape, dtype=torch.complex64, generator=g)
    field[ZEROS] = 0
    amp = torch.rand(scans, generator=g)
    measured = torch.rand(scans, generator=g) > 0.3
    rho = torch.randn(shape, dtype=torch.complex64, generator=g)
    inside = torch.rand(shape, generator=g) > 0.5
    return field, amp, measured, rho, inside


def test_numba_loads_here():
    ok, why = numba_available()
    assert ok, why
    assert resolve_kernels("cpu") == "numba"


def test_starting_numba_keeps_the_callers_torch_threads():
    # numba's OpenMP pool starts with omp_set_num_threads(every core) in the thread that first runs a
    # kernel, and torch shares that OpenMP: a Dask worker of one core went on computing on every core
    code = (
        "import threading, torch\n"
        "from cdiplatform.phasing.cpu_kernels import numba_available\n"
        "seen = []\n"
        "def task():\n"
        "    torch.set_num_threads(1)\n"
        "    torch.get_num_threads()\n"  # the thread's first torch call takes the count (once a thread)
        "    numba_available()\n"
        "    seen.append(torch.get_num_threads())\n"
        "t = threading.Thread(target=task); t.start(); t.join()\n"
        "print(seen[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"} | {"NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


CALL_EVERY_KERNEL = """
import json, torch
from cdiplatform.phasing import cpu_kernels
from cdiplatform.phasing.blur import GaussianBlur
rho = torch.randn((2, 1, 6, 5, 4), dtype=torch.complex64)
amp, mag = torch.rand((2, 1, 6, 5, 4)), torch.empty((2, 1, 6, 5, 4))
inside = mag > 0.5
cpu_kernels.modulus_(rho.clone(), amp)
cpu_kernels.modulus_(rho.clone(), amp, amp > 0.2)
cpu_kernels.update_(rho.clone(), rho, inside, "HIO", 0.9)
cpu_kernels.update_(rho.clone(), rho, inside, "HIO", 0.9, magnitude=mag)
cpu_kernels.magnitude_(rho, mag)
blur = GaussianBlur(amp.shape, ndim=3, method="separable", device="cpu", one_pass=True)
blur(amp.clone(), 1.0)  # convolve_axis_ along each axis
blur.support_(amp, 1.0, 0.2, out=inside)  # shrink_wrap_
stats = {name: k.stats for name, k in cpu_kernels._kernels().items()}
print(json.dumps({name: [sum(s.cache_hits.values()), sum(s.cache_misses.values())] for name, s in stats.items()}))
"""


def test_a_second_process_loads_every_kernel_from_numbas_cache():
    # kernels defined inside a function close over the helpers they inline, and numba's cache keys a
    # function by its closure's pickled values, new in every process: each worker compiled them again
    first = subprocess.run([sys.executable, "-c", CALL_EVERY_KERNEL], capture_output=True, text=True, check=True)
    assert first.stdout  # compiled or loaded, whatever the cache held
    second = subprocess.run([sys.executable, "-c", CALL_EVERY_KERNEL], capture_output=True, text=True, check=True)
    counts = json.loads(second.stdout)
    assert {name: misses for name, (_, misses) in counts.items() if misses} == {}
    assert all(hits > 0 for hits, _ in counts.values())


@pytest.mark.parametrize("masked", [False, True])
def test_modulus_is_the_amplitude_times_the_phase_factor(arrays, masked):
    field, amp, measured, _, _ = arrays
    expected = amp * torch.sgn(field)
    if masked:
        expected = torch.where(measured, expected, field)
    out = modulus_(field.clone(), amp, measured if masked else None)
    torch.testing.assert_close(out, expected, rtol=2e-6, atol=1e-7)
    assert torch.all(out[ZEROS] == 0)  # no NaN where the far field vanishes


@pytest.mark.parametrize(
    ("rule", "outside"),
    [("ER", lambda r, y, b: torch.zeros_like(r)), ("HIO", lambda r, y, b: r - b * y),
     ("RAAR", lambda r, y, b: b * r + (1 - 2 * b) * y)],
)
@pytest.mark.parametrize("beta", [0.9, 0.75])
def test_update_keeps_the_projection_inside_and_the_rule_outside(arrays, rule, outside, beta):
    field, _, _, rho, inside = arrays
    expected = torch.where(inside, field, outside(rho, field, beta))
    out = update_(rho.clone(), field, inside, rule, beta)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rule", ["ER", "HIO", "RAAR"])
def test_an_update_that_writes_the_magnitude_writes_the_same_object_and_its_modulus(arrays, rule):
    field, _, _, rho, inside = arrays
    plain = update_(rho.clone(), field, inside, rule, 0.9)
    magnitude = torch.full(rho.shape, -1.0)
    both = update_(rho.clone(), field, inside, rule, 0.9, magnitude=magnitude)
    assert torch.equal(both, plain)
    assert torch.equal(magnitude, magnitude_(plain, torch.empty(rho.shape)))


def test_magnitude_is_the_modulus_of_every_voxel(arrays):
    _, _, _, rho, _ = arrays
    out = magnitude_(rho, torch.empty(rho.shape, dtype=torch.float32))
    torch.testing.assert_close(out, rho.abs(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("shape", "ndim"), [((2, 3, 12, 10, 9), 3), ((3, 1, 11, 16), 2), ((1, 1, 5, 40, 7), 3)])
@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_separable_blur_in_one_pass_an_axis_is_the_eager_one(shape, ndim, sigma):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    kw = {"ndim": ndim, "method": "separable", "device": "cpu"}
    eager = GaussianBlur(shape, **kw)(x.clone(), sigma)
    numba = GaussianBlur(shape, **kw, one_pass=True)(x.clone(), sigma)
    torch.testing.assert_close(numba, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("shape", "ndim"),
    [((2, 3, 12, 16, 14), 3), ((17, 1, 12, 12, 12), 3), ((1, 1, 12, 40, 14), 3), ((9, 2, 16, 16), 2),
     ((1, 2, 14, 12), 2)],
    ids=["few grids 3D", "many grids 3D", "one grid 3D", "many grids 2D", "few grids 2D"],
)
@pytest.mark.parametrize("threshold", [0.1, 0.35])
@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_shrink_wrap_in_one_call_is_the_blur_the_maximum_and_the_threshold(shape, ndim, threshold, sigma):
    x = 0.01 * torch.rand(shape, generator=torch.Generator().manual_seed(5))  # a faint background
    x[(Ellipsis, *(slice(n // 3) for n in shape[-ndim:]))] *= 100  # and an object in a corner
    blur = GaussianBlur(shape, ndim=ndim, method="separable", device="cpu", one_pass=True)
    dims = tuple(range(-ndim, 0))
    blurred = blur(x.clone(), sigma).clone()  # the axis passes one by one
    expected = blurred >= blurred.amax(dim=dims, keepdim=True) * threshold
    support = torch.zeros(shape, dtype=torch.bool)
    blur.support_(x.clone(), sigma, threshold, out=support)
    assert torch.equal(support, expected)  # bit for bit: every point sums its taps in the same order
    assert torch.equal(blur._spare, blurred)
    assert 0 < int(support.sum()) < support.numel()


def test_shrink_wrap_in_one_call_only_reads_the_magnitude():
    x = torch.rand((3, 1, 12, 10, 9), generator=torch.Generator().manual_seed(4))
    given = x.clone()
    blur = GaussianBlur(x.shape, ndim=3, method="separable", device="cpu", one_pass=True)
    blur.support_(x, 1.0, 0.2, out=torch.empty(x.shape, dtype=torch.bool))
    assert torch.equal(x, given)


@pytest.mark.parametrize("shape", [(17, 1, 12, 12, 12), (2, 1, 12, 20, 14)], ids=["many grids", "few grids"])
def test_a_grid_with_a_nan_gets_no_support_as_with_torchs_maximum(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    x[1, 0, 3, 4, 5] = float("nan")  # a start that diverged
    blur = GaussianBlur(shape, ndim=3, method="separable", device="cpu", one_pass=True)
    blurred = blur(x.clone(), 1.0).clone()
    expected = blurred >= blurred.amax(dim=(-3, -2, -1), keepdim=True) * 0.1
    support = torch.ones(shape, dtype=torch.bool)
    blur.support_(x.clone(), 1.0, 0.1, out=support)
    assert torch.equal(support, expected)
    assert not support[1].any() and support[0].any()


def test_shrink_wrap_refuses_arrays_of_other_shapes_and_bad_taps():
    x = torch.rand(2, 1, 6, 5, 4)
    taps = [(np.array([0, 1, 5]), np.ones(3, dtype=np.float32))] * 3
    with pytest.raises(ValueError, match="one shape"):
        shrink_wrap_(x, torch.empty(2, 1, 6, 5, 3), torch.empty(x.shape, dtype=torch.bool), taps, 0.1)
    with pytest.raises(ValueError, match=r"tap offsets must lie in \[0, 5\)"):
        shrink_wrap_(x, torch.empty(x.shape), torch.empty(x.shape, dtype=torch.bool), taps, 0.1)


def test_taps_outside_the_axis_are_refused(arrays):
    src = torch.rand((2, 8))
    with pytest.raises(ValueError, match=r"tap offsets must lie in \[0, 8\)"):
        convolve_axis_(src, torch.empty_like(src), -1, np.array([0, 9]), np.ones(2, dtype=np.float32))


def test_a_strided_tensor_is_refused_before_it_is_written(arrays):
    field, amp, _, _, _ = arrays
    with pytest.raises(ValueError, match="contiguous"):
        modulus_(field.transpose(-1, -2), amp.transpose(-1, -2))


@pytest.mark.parametrize(("choice", "device", "expected"), [("eager", "cpu", "eager"), ("auto", "meta", "eager")])
def test_the_rule_is_fixed_by_choice_and_device(choice, device, expected):
    assert resolve_kernels(device, choice) == expected


@pytest.mark.parametrize(
    ("choice", "device", "error", "match"),
    [("fast", "cpu", ValueError, "unknown kernels 'fast'"), ("numba", "meta", ValueError, "runs on the CPU")],
)
def test_impossible_choices_are_refused(choice, device, error, match):
    with pytest.raises(error, match=match):
        resolve_kernels(device, choice)
    with pytest.raises(ValueError, match="kernels must be"):
        PhasingSettings(kernels="fast")


def test_iterations_in_several_threads_at_once_equal_those_run_alone():
    """Dask runs tasks in threads: concurrent parallel kernels must neither abort nor mix."""
    g = torch.Generator().manual_seed(5)
    amp = torch.rand((1, 1, 24, 24, 24), generator=g)
    starts = [torch.randn((1, 2, 24, 24, 24), dtype=torch.complex64, generator=g) for _ in range(3)]
    sup = torch.zeros((1, 2, 24, 24, 24), dtype=torch.bool)
    sup[..., :8, :8, :8] = True
    settings = PhasingSettings(algorithm="10*HIO+5*ER", shrink_wrap=ShrinkWrap(start=0), twin=None, kernels="numba")
    alone = [iterate(amp, s.clone(), sup.clone(), settings, ndim=3).obj for s in starts]
    together = [None] * len(starts)

    def run(i):
        together[i] = iterate(amp, starts[i].clone(), sup.clone(), settings, ndim=3).obj

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(starts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
