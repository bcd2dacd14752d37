"""How numbers and lists are spelled in a node's text, as in a spec and a generated module.

``integer(10000)`` is ``10_000`` (thousands grouped from 10_000, and round
thousands), ``number(0.1)`` is ``0.1``, ``widths([256, 128])`` is
``[256, 128]``. Shared by the IR's node texts and the back end's literals, so
a docstring and ``mtlc explain`` spell a value the same way. ``escape`` makes
any text from a spec safe to print in a terminal, a docstring or a comment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["integer", "number", "widths", "escape"]


def integer(n: int) -> str:
    """An int literal; thousands grouped with ``_`` from 10_000 (and round thousands)."""
    return f"{n:_}" if n >= 10_000 or (n >= 1000 and n % 1000 == 0) else str(n)


def number(x: float) -> str:
    """A float literal; a non-finite value is a checker bug, not a user's mistake."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite number {x!r} reached the emitter")
    return repr(float(x))


def widths(dims: Iterable[int]) -> str:
    """A list of layer widths as written: ``[256, 128]``."""
    return "[" + ", ".join(str(d) for d in dims) + "]"


def escape(text: str, also: str = "") -> str:
    """``text`` with unprintable characters escaped as in a Python string (a newline is ``\\n``),
    and each character of ``also`` behind a backslash (``also='\\\\"'`` for a docstring: read back
    by Python, the escaped text is ``text`` itself)."""
    return "".join(
        "\\" + ch if ch in also else ch if ch.isprintable() else repr(ch)[1:-1] for ch in text
    )
