"""The terminal of ``cdip``: messages printed as text (never as rich markup), errors as one line.

Messages carry file names, node paths and failure reasons that hold square
brackets (``oversampling [nan nan nan] ... [prepare.py:441]``); rich would
read those as markup and drop them, so every message goes through
:class:`rich.text.Text`.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from cdiplatform.errors import CdipError

__all__ = ["CdipGroup", "err", "fail", "out", "say", "text"]

out = Console(highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def text(value: Any, style: str | None = None) -> Text:
    """A value as plain text (a table cell, a message), never parsed as markup."""
    return Text(str(value), style=style or "")


def say(message: str, *, style: str | None = None, prefix: str = "", prefix_style: str = "",
        console: Console | None = None) -> None:
    """Print ``prefix`` (styled) then ``message`` as text, never folded at the terminal's width (a path
    or a node name stays whole, to copy and to grep)."""
    line = Text(prefix, style=prefix_style) + Text(message, style=style or "") if prefix else text(message, style)
    (console or out).print(line, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: <message>`` on stderr, as one line of text, and exit with ``code``."""
    say(message, prefix="error: ", prefix_style="bold red", console=err)
    raise typer.Exit(code)


class CdipGroup(TyperGroup):
    """The command group of ``cdip``: an error the platform raises on purpose ends the command with one
    line and its exit code, never a traceback."""

    def invoke(self, ctx):  # noqa: D102
        try:
            return super().invoke(ctx)
        except CdipError as exc:
            say(str(exc), prefix="error: ", prefix_style="bold red", console=err)
            raise typer.Exit(exc.exit_code) from None
