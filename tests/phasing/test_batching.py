import pytest
import torch

from cdiplatform.phasing import auto_batch_size
from cdiplatform.phasing.batching import (
    ARRAYS_PER_SCAN,
    ARRAYS_PER_START,
    MAX_BATCH,
    MEMORY_FRACTION,
    batch_bytes,
    device_memory_bytes,
)

GIB = 2**30


def test_the_rule_is_the_documented_formula():
    grid = (64, 64, 64)
    per_scan = 64**3 * 8 * (ARRAYS_PER_START * 4 + ARRAYS_PER_SCAN)
    assert batch_bytes(grid, n_starts=4) == per_scan
    assert batch_bytes(grid, n_starts=4, batch=3) == 3 * per_scan
    want = int(MEMORY_FRACTION["cuda"] * 80 * GIB // per_scan)
    assert auto_batch_size(grid, n_starts=4, device="cuda", memory_bytes=80 * GIB) == want == 936
    assert auto_batch_size(grid, n_starts=4, device="cpu", memory_bytes=24 * GIB) == 87
    assert auto_batch_size((256, 256, 210), n_starts=1, device="cuda", memory_bytes=80 * GIB) == 56
    # complex128 doubles the bytes
    assert (
        auto_batch_size(grid, n_starts=4, device="cpu", memory_bytes=24 * GIB, dtype=torch.complex128) == 43
    )


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_more_memory_more_scans_more_starts_fewer(device):
    sizes = [
        auto_batch_size((128, 128, 128), n_starts=k, device=device, memory_bytes=40 * GIB) for k in (1, 2, 4)
    ]
    assert sizes[0] > sizes[1] > sizes[2] >= 1
    more = auto_batch_size((128, 128, 128), n_starts=4, device=device, memory_bytes=80 * GIB)
    assert more >= 2 * sizes[2] - 1
    assert auto_batch_size((256, 256, 256), n_starts=8, device=device, memory_bytes=GIB) == 1  # never 0
    assert auto_batch_size((8, 8), n_starts=1, device=device, memory_bytes=80 * GIB) == MAX_BATCH


def test_bad_arguments_and_the_host_memory():
    with pytest.raises(ValueError, match="n_starts >= 1"):
        auto_batch_size((64, 64), n_starts=0, device="cpu")
    with pytest.raises(ValueError, match="positive sizes"):
        auto_batch_size((64, 0), n_starts=1, device="cpu")
    with pytest.raises(ValueError, match="memory_bytes must be positive"):
        auto_batch_size((64, 64), n_starts=1, device="cpu", memory_bytes=0)
    host = device_memory_bytes("cpu")
    assert host > GIB
    assert auto_batch_size((64, 64, 64), n_starts=4, device="cpu") == auto_batch_size(
        (64, 64, 64), n_starts=4, device="cpu", memory_bytes=host
    )
