"""The catalog's one content-hash scheme.

Every scan a run writes gets a digest, a 64-bit BLAKE2b of its values
(:func:`digest_values`, recorded in the per-scan ``digest`` variable: the
per-chunk manifest); a node's content hash is the SHA-256 of its digests in
scan order (:func:`combine_digests`). A node written whole (a raw scan, a
model, a training set copied in) is hashed the same way as a single record of
all its variables (:func:`dataset_hash`), and the hash is stored in its
``content_hash`` attribute. Content hashes therefore never need the data to
be read again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["combine_digests", "dataset_hash", "digest_values"]


def _update(h: Any, name: str, value: Any) -> None:
    a = np.asarray(value)
    h.update(name.encode())
    if a.dtype.kind in "OUT":
        h.update(json.dumps(np.asarray(a, dtype=object).tolist(), default=str).encode())
    else:
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())


def digest_values(values: Mapping[str, Any]) -> np.uint64:
    """64-bit BLAKE2b of named arrays (the values of one scan), independent of their order."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(values):
        _update(h, name, values[name])
    return np.frombuffer(h.digest(), dtype="<u8")[0]


def combine_digests(digests: Iterable[Any]) -> str:
    """A node's content hash: SHA-256 (hex) of its per-scan digests, in order."""
    return hashlib.sha256(np.asarray(list(digests), dtype="<u8").tobytes()).hexdigest()


def dataset_hash(variables: Mapping[str, Any]) -> str:
    """Content hash of a node written whole: its variables (data and coordinates) as one record."""
    return combine_digests([digest_values(variables)])
