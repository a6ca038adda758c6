"""Reading the report's HTML in tests: elements and their attributes (the standard library's parser)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

#: small enough for seconds, large enough for every feature (a failed scan, NaN-padded histories)
SIZES = {"n_scans": 3, "size": 12, "records": 10}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def elements(page: Path, tag: str, **match: str) -> list[dict[str, str]]:
    """Attributes of every ``tag`` element of a page whose attributes hold ``match`` (``cls`` for class)."""
    parser = _Elements()
    parser.feed(Path(page).read_text(encoding="utf-8"))
    want = {("class" if k == "cls" else k.replace("_", "-")): v for k, v in match.items()}
    return [a for t, a in parser.found
            if t == tag and all(v in a.get(k, "").split() if k == "class" else a.get(k) == v for k, v in want.items())]
