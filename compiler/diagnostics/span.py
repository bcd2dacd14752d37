"""Where something is written in a spec: the one position type every stage shares.

It sits at the bottom of the compiler (below the syntax tree, the IR and the
diagnostics), so that every stage can point at text without importing another.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Span"]


class Span(BaseModel):
    """Where something is written: 1-based line and column, end exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def at(cls, file: str, line: int, column: int, width: int = 1) -> Span:
        """``width`` characters of one line from ``column``."""
        return cls(file=file, line=line, column=column, end_line=line, end_column=column + width)

    @classmethod
    def of_token(cls, file: str, token: Any) -> Span:
        """A Lark token's text, on its line (at least one column, for the end of the input)."""
        return cls.at(file, token.line, token.column, max(1, len(str(token))))

    @classmethod
    def of_meta(cls, file: str, meta: Any) -> Span:
        """What a Lark rule matched, from its ``meta`` (``propagate_positions=True``)."""
        return cls(
            file=file,
            line=meta.line,
            column=meta.column,
            end_line=meta.end_line,
            end_column=meta.end_column,
        )
