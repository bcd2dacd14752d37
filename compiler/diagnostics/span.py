"""Where something is written in a spec: the one position type every stage shares.

It sits at the bottom of the compiler (below the syntax tree, the IR and the
diagnostics), so that every stage can point at text without importing another.
"""

from __future__ import annotations

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
