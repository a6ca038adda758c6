"""File names for scans, methods and groups that are safe on every file system and in URLs."""

from __future__ import annotations

import re
import zlib
from typing import Any

__all__ = ["safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX = 80


def safe_name(value: Any) -> str:
    """A file name (without extension) for a scan identity, method or node name.

    Integers and names made of ``A-Z a-z 0-9 . _ -`` stay as they are; anything
    else (``"34idc-2020/54"``) has each other character replaced by ``_`` and
    gets the CRC-32 of the original text appended, so that two identities never
    share a name (``"a/b"`` -> ``"a_b-<crc>"``, while ``"a_b"`` stays ``"a_b"``).

    Examples
    --------
    >>> safe_name(12)
    '12'
    >>> safe_name("34idc-2020/54")
    '34idc-2020_54-f6389b06'
    """
    text = str(value)
    slug = _UNSAFE.sub("_", text).strip(".")[:_MAX]
    if slug == text and slug:
        return slug
    return f"{slug or '_'}-{zlib.crc32(text.encode()):08x}"
