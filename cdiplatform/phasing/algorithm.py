"""Algorithm strings: the iteration sequence in the notation users know.

A sequence is written the way cohere's ``algorithm_sequence`` writes it::

    3*(20*ER+180*HIO)+20*ER      # 620 iterations
    50*RAAR + 100*ER
    ER                           # one iteration

Grammar (spaces ignored, operator names case-insensitive)::

    sequence := term ("+" term)*
    term     := INT "*" term | atom
    atom     := NAME | "(" sequence ")"
    NAME     := ER | HIO | RAAR

It parses into an :class:`AlgorithmSequence`: the run-length encoded list of
``(operator, count)`` that the engine walks through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OPERATORS", "AlgorithmSequence", "parse_algorithm"]

#: projection operators the engine knows
OPERATORS = ("ER", "HIO", "RAAR")

#: guard against strings that would run for ever by mistake
MAX_ITERATIONS = 1_000_000

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_]+)|(\*\*|[*+()]))")


@dataclass(frozen=True)
class AlgorithmSequence:
    """A parsed algorithm string.

    Attributes
    ----------
    steps : tuple of (str, int)
        Run-length encoded operators in order, adjacent equal operators merged.
    text : str
        The string it was parsed from.
    """

    steps: tuple[tuple[str, int], ...]
    text: str = ""

    @property
    def n_iterations(self) -> int:
        """Total number of iterations."""
        return sum(n for _, n in self.steps)

    def operators(self) -> list[str]:
        """The operator of every iteration, in order (length :attr:`n_iterations`)."""
        return [op for op, n in self.steps for _ in range(n)]

    def __str__(self) -> str:
        return "+".join(f"{n}*{op}" for op, n in self.steps)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if m is None or m.end() == pos:
                raise self.error(f"unexpected character {stripped[pos:].lstrip()[:1]!r}", pos)
            if m.group(1):
                self.tokens.append(("int", m.group(1), m.start(1)))
            elif m.group(2):
                self.tokens.append(("name", m.group(2), m.start(2)))
            else:
                if m.group(3) == "**":
                    raise self.error("'**' (PyNX operator powers) is not supported; write 20*ER", m.start(3))
                self.tokens.append(("op", m.group(3), m.start(3)))
            pos = m.end()
        self.i = 0

    def error(self, what: str, pos: int | None = None) -> ValueError:
        where = f" at position {pos}" if pos is not None else ""
        return ValueError(f"bad algorithm string {self.text!r}{where}: {what}")

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self):
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end")
        self.i += 1
        return tok

    def sequence(self) -> list[tuple[str, int]]:
        steps = self.term()
        while (tok := self.peek()) is not None and tok[:2] == ("op", "+"):
            self.take()
            steps = steps + self.term()
        return steps

    def term(self) -> list[tuple[str, int]]:
        tok = self.peek()
        if tok is not None and tok[0] == "int":
            self.take()
            count = int(tok[1])
            if count < 1:
                raise self.error(f"repeat count {count} must be at least 1", tok[2])
            star = self.take()
            if star[:2] != ("op", "*"):
                raise self.error(f"expected '*' after {count}, found {star[1]!r}", star[2])
            inner = self.term()
            if sum(n for _, n in inner) * count > MAX_ITERATIONS:
                raise self.error(f"more than {MAX_ITERATIONS} iterations")
            return inner * count
        return self.atom()

    def atom(self) -> list[tuple[str, int]]:
        tok = self.take()
        if tok[0] == "name":
            name = tok[1].upper()
            if name not in OPERATORS:
                raise self.error(f"unknown operator {tok[1]!r}; known: {', '.join(OPERATORS)}", tok[2])
            return [(name, 1)]
        if tok[:2] == ("op", "("):
            inner = self.sequence()
            close = self.peek()
            if close is None:
                raise self.error("expected ')' before the end (unbalanced parentheses)")
            self.take()
            if close[:2] != ("op", ")"):
                raise self.error(f"expected ')', found {close[1]!r}", close[2])
            return inner
        raise self.error(f"expected an operator or '(', found {tok[1]!r}", tok[2])


def parse_algorithm(text: str | AlgorithmSequence) -> AlgorithmSequence:
    """Parse an algorithm string such as ``"3*(20*ER+180*HIO)+20*ER"``.

    Parameters
    ----------
    text : str or AlgorithmSequence
        The algorithm string (an already parsed sequence is returned as is).

    Returns
    -------
    AlgorithmSequence

    Raises
    ------
    ValueError
        For an empty string, unknown operators, unbalanced parentheses, zero
        counts or trailing characters; the message names the position.
    """
    if isinstance(text, AlgorithmSequence):
        return text
    if not isinstance(text, str):
        raise ValueError(f"algorithm must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ValueError("bad algorithm string '': empty")
    parser = _Parser(text)
    steps = parser.sequence()
    if (tok := parser.peek()) is not None:
        raise parser.error(f"unexpected {tok[1]!r}", tok[2])
    merged: list[tuple[str, int]] = []
    for op, n in steps:
        if merged and merged[-1][0] == op:
            merged[-1] = (op, merged[-1][1] + n)
        else:
            merged.append((op, n))
    return AlgorithmSequence(steps=tuple(merged), text=text)
