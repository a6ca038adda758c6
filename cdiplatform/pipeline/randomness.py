"""Where every random number of a run comes from.

One rule for every stage: randomness derives from the job's ``seed`` and the
stage's output node (its *stream*), both covered by the run hash, never from
the stage's position in the job. Per scan, a generator from
``SeedSequence(seed, spawn_key=(stream, *scan_key(scan)))`` with the scan's
identity (so results do not depend on chunking, workers, batch, or on other
scans being added); per stage (a split, a shuffle, a network's weights), one
from ``SeedSequence(seed, spawn_key=(stream,))``.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["RULE", "scan_key", "scan_rngs", "stage_seed_sequence", "stream_key"]

#: the rule, as the provenance states it
RULE = ("per scan: SeedSequence(seed, spawn_key=(stream, *scan_key(scan))); "
        "per stage: SeedSequence(seed, spawn_key=(stream,)); stream = crc32 of the output node")


def stream_key(output: str) -> int:
    """The stream of a stage: a stable 32-bit key of its output node."""
    return zlib.crc32(output.encode())


def scan_key(scan: Any) -> tuple[int, ...]:
    """Spawn-key words of a scan's identity: ``(0, n)`` for an integer, ``(1, w0..w3)`` for text."""
    if isinstance(scan, (int, np.integer)):
        value = int(scan)
        if value < 0:
            raise ValueError(f"a scan identity must be non-negative, got {value}")
        return (0, value)
    words = np.frombuffer(hashlib.blake2b(str(scan).encode(), digest_size=16).digest(), dtype="<u4")
    return (1, *(int(w) for w in words))


def scan_rngs(seed: int, stream: int, scans: Iterable[Any]) -> list[np.random.Generator]:
    """One generator per scan, from the job seed, the stage stream and the scan's identity only."""
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, *scan_key(s)))) for s in scans]


def stage_seed_sequence(seed: int, stream: int) -> np.random.SeedSequence:
    """The stage's own stream (for what is drawn once per stage rather than per scan)."""
    return np.random.SeedSequence(seed, spawn_key=(stream,))
