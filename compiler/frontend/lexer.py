"""The lexical layer of the front end: what is screened before parsing, and the bracket post-lexer.

``screen`` rejects text that is not a spec at all (too large, binary
content); ``Brackets`` drops newlines inside ``( )`` and ``[ ]`` and tracks the
open brackets, raising ``BracketError`` on an unmatched closer or nesting
deeper than ``MAX_NESTING``. Both the parser and the syntax-error translator
use these, so they live below both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from lark import Token

from mtlc.diagnostics import Reporter, Span

__all__ = ["screen", "Brackets", "BracketError", "MAX_SOURCE_CHARS", "MAX_TOKENS", "MAX_NESTING"]

MAX_SOURCE_CHARS = 1_000_000
MAX_TOKENS = 100_000  # a few thousand statements; keeps the worst parse to seconds
MAX_NESTING = 32
_TOKEN = re.compile(r"#[^\n]*|\w+|[^\w\s]")

_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB"}
_CLOSERS = {"RPAR": "(", "RSQB": "["}


class BracketError(Exception):
    """Raised by the post-lexer: an unmatched closer, or brackets nested too deeply."""

    def __init__(self, token: Token, opener: Token | None, too_deep: bool = False) -> None:
        super().__init__(str(token))
        self.token, self.opener, self.too_deep = token, opener, too_deep


class Brackets:
    """Post-lexer: drops newlines inside ( ) and [ ], tracks the open brackets."""

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.open: list[Token] = []

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.open = []
        for token in stream:
            if token.type in _OPENERS:
                self.open.append(token)
                if len(self.open) > MAX_NESTING:
                    raise BracketError(token, None, too_deep=True)
            elif token.type in _CLOSERS:
                if not self.open or _OPENERS[self.open[-1].type] != token.type:
                    raise BracketError(token, self.open[-1] if self.open else None)
                self.open.pop()
            elif token.type == "_NL" and self.open:
                continue
            yield token


def screen(text: str, filename: str, reporter: Reporter) -> None:
    """Reject what is not a spec at all: too large (characters or tokens), or binary content."""
    start = Span.at(filename, 1, 1, 0)
    if len(text) > MAX_SOURCE_CHARS:
        reporter.error(
            "MTL012",
            start,
            f"the spec is {len(text):,} characters long; at most {MAX_SOURCE_CHARS:,} are allowed",
            label="spec starts here",
        )
        return
    tokens = sum(1 for match in _TOKEN.finditer(text) if not match.group().startswith("#"))
    if tokens > MAX_TOKENS:
        reporter.error(
            "MTL012",
            start,
            f"the spec has about {tokens:,} tokens; at most {MAX_TOKENS:,} are allowed",
            label="spec starts here",
        )
        return
    for index, char in enumerate(text):
        if char in "\t\n\f" or (char.isprintable() and char != "\ufffd"):
            continue
        if unicodedata.category(char) == "Zs":  # a no-break or other space is text, not control
            continue
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
        what = "a NUL byte" if char == "\0" else f"the control character {ascii(char)}"
        if char == "\ufffd":
            what = "a character that could not be decoded (U+FFFD)"
        reporter.error(
            "MTL013",
            Span.at(filename, line, column),
            f"the spec contains {what}: is it a text file?",
            label="here",
            help="a .mtl spec is UTF-8 text",
        )
        return
