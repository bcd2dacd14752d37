"""Parse: the text of a spec becomes its AST (``mtlc.frontend.syntax.Spec``).

``parse(source, filename)`` screens the text (size, binary content; see
``mtlc.frontend.lexer``), runs the LALR parser of ``grammar/mtl.lark`` and
builds the AST with a span on every node. Lark's exceptions are translated
here, once, into diagnostics (see ``mtlc.frontend.syntax_errors``); nothing
else in mtlc sees them.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import threading
import warnings
from functools import lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark import __version__ as LARK_VERSION
from lark.exceptions import UnexpectedInput, VisitError

from mtlc.diagnostics import Reporter, Span
from mtlc.files import cache_root
from mtlc.frontend import syntax as s
from mtlc.frontend.lexer import (
    MAX_NESTING,
    MAX_SOURCE_CHARS,
    MAX_TOKENS,
    BracketError,
    Brackets,
    screen,
)
from mtlc.frontend.syntax_errors import translate

__all__ = ["parse", "MAX_SOURCE_CHARS", "MAX_TOKENS", "MAX_NESTING"]

_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _parser() -> tuple[Lark, Brackets]:
    grammar = resources.files("mtlc.grammar").joinpath("mtl.lark").read_text(encoding="utf-8")
    brackets = Brackets()
    lark = Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        postlex=brackets,
        propagate_positions=True,
        maybe_placeholders=True,
        cache=_table_cache(grammar),
    )
    return lark, brackets


def _table_cache(grammar: str) -> str | bool:
    """Where Lark keeps the LALR tables of ``grammar`` between runs (``False``: build them).

    Building the tables is most of ``mtlc check``'s own work. They go to a
    per-user folder, never the package's (which may be read-only) nor a shared
    temporary folder (the file is a pickle, so only its owner should write
    it): ``grammar/`` under :func:`mtlc.files.cache_root` (``$MTLC_CACHE``,
    default ``~/.cache/mtlc``, as for ``mtlc.cli.datasets``).
    ``MTLC_GRAMMAR_CACHE=0`` turns it off. Lark checks the file against the
    grammar, its options and its own version before using it, and carries on
    without it, silently, when it cannot read or write it.
    """
    if os.environ.get("MTLC_GRAMMAR_CACHE", "1") == "0":
        return False
    root = os.path.join(cache_root(), "grammar")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
    except OSError:
        return False
    key = f"{grammar}{LARK_VERSION}{sys.version_info[:2]}".encode()
    return os.path.join(root, f"mtl-{hashlib.sha256(key).hexdigest()[:16]}.lark")


def parse(source: str, filename: str = "spec.mtl") -> s.Spec:
    """Parse the text of a spec into its AST.

    Args:
        source: the spec's text.
        filename: the name used in spans and diagnostics.

    Raises:
        SpecError: the text is not a spec (too large, binary) or has a syntax error;
            a syntax error stops the parse, so there is one diagnostic then.
    """
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    reporter = Reporter(text)
    screen(text, filename, reporter)
    reporter.raise_if_errors()
    lark, brackets = _parser()
    with _LOCK:
        try:
            tree = lark.parse(text + "\n")
        except (UnexpectedInput, BracketError) as error:
            translate(error, list(brackets.open), text, filename, lark, reporter)
            reporter.raise_if_errors()
            raise  # pragma: no cover - translate always reports
    try:
        statements = _Build(filename, reporter).transform(tree)
    except VisitError as error:  # pragma: no cover - a bug in _Build, not a user's mistake
        raise error.orig_exc from None
    reporter.raise_if_errors()
    return s.Spec(filename=filename, source=text, statements=tuple(statements))


@v_args(meta=True)
class _Build(Transformer):
    """Lark tree -> AST, with spans. String escapes are decoded (and checked) here."""

    def __init__(self, filename: str, reporter: Reporter) -> None:
        super().__init__()
        self.filename, self.reporter = filename, reporter

    def _span(self, meta: Any) -> Span:
        return Span.of_meta(self.filename, meta)

    def _name(self, token: Token) -> s.Name:
        return s.Name(str(token), Span.of_token(self.filename, token))

    def _kind(self, value: s.Name | s.Call) -> s.Call:  # the grammar's `kind`
        if isinstance(value, s.Name):
            return s.Call(value, (), (), value.span, parens=False)
        return value

    # -- statements ---------------------------------------------------------------

    def start(self, meta, children):
        return [child for child in children if child is not None]

    def model_stmt(self, meta, children):
        name, description = children
        return s.ModelStmt(self._name(name), description, self._span(meta))

    def feature_stmt(self, meta, children):
        name, kind = children
        return s.FeatureStmt(self._name(name), self._kind(kind), self._span(meta))

    def group_stmt(self, meta, children):
        name, members = children
        return s.GroupStmt(self._name(name), members, self._span(meta))

    def expert_stmt(self, meta, children):
        name, count, block = children
        number = None
        if count is not None:
            value = _int(str(count)[1:])
            number = s.Number(value, str(count), Span.of_token(self.filename, count))
        return s.ExpertStmt(self._name(name), number, block, self._span(meta))

    def tower_stmt(self, meta, children):
        name, block = children
        return s.TowerStmt(self._name(name), block, self._span(meta))

    def gate_stmt(self, meta, children):
        name, gate, sources = children
        return s.GateStmt(self._name(name), gate, sources, self._span(meta))

    def transfer_stmt(self, meta, children):
        name, transfer = children
        return s.TransferStmt(self._name(name), transfer, self._span(meta))

    def task_stmt(self, meta, children):
        name, kind, body = children
        return s.TaskStmt(self._name(name), self._kind(kind), body, self._span(meta))

    def task_body(self, meta, children):
        return tuple(children)

    def constrain_stmt(self, meta, children):
        left, right, weight = children
        return s.ConstrainStmt(self._name(left), self._name(right), weight, self._span(meta))

    def weighting_stmt(self, meta, children):
        (kind,) = children
        return s.WeightingStmt(self._kind(kind), self._span(meta))

    # -- values -------------------------------------------------------------------

    def call(self, meta, children):
        func, *rest = children
        rest = [child for child in rest if child is not None]
        args = tuple(child for child in rest if not isinstance(child, s.Keyword))
        keywords = tuple(child for child in rest if isinstance(child, s.Keyword))
        return s.Call(self._name(func), args, keywords, self._span(meta))

    def keyword(self, meta, children):
        name, value = children
        return s.Keyword(self._name(name), value, self._span(meta))

    def list(self, meta, children):
        items = tuple(child for child in children if child is not None)
        return s.List(items, self._span(meta))

    def name_ref(self, meta, children):
        return self._name(children[0])

    def string(self, meta, children):
        token = children[0]
        span = Span.of_token(self.filename, token)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                value = ast.literal_eval(str(token))
        except (SyntaxError, ValueError, Warning):
            self.reporter.error(
                "MTL004",
                span,
                "this string has an invalid escape sequence",
                label="invalid escape",
                help="escapes are those of Python strings; write `\\\\` for a backslash",
            )
            value = ""
        return s.String(value, span)

    def int(self, meta, children):
        return s.Number(_int(str(children[0])), str(children[0]), self._span(meta))

    def float(self, meta, children):
        return s.Number(float(str(children[0])), str(children[0]), self._span(meta))

    def neg_int(self, meta, children):
        return s.Number(-_int(str(children[0])), "-" + str(children[0]), self._span(meta))

    def neg_float(self, meta, children):
        return s.Number(-float(str(children[0])), "-" + str(children[0]), self._span(meta))


def _int(digits: str) -> int | float:
    """The integer written; ``inf`` when it has too many digits to be a sane value."""
    try:
        return int(digits)
    except ValueError:
        return float("inf")
