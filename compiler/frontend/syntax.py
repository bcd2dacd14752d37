"""The AST of a ``.mtl`` spec: what was written, where, before any checking.

``mtlc.frontend.parser`` builds it; ``mtlc.check`` reads it. Every value and statement
carries the ``Span`` of its text, so a diagnostic can point at exactly what is
wrong. Calls (``mlp(...)``, ``softmax(...)``, ``sparse(...)``, ``binary(...)``)
are kept general here (a name, positional and keyword arguments); the checker
decides which calls and options exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtlc.diagnostics.span import Span

__all__ = [
    "STATEMENT_WORDS",
    "Name",
    "Number",
    "String",
    "List",
    "Keyword",
    "Call",
    "Value",
    "ModelStmt",
    "FeatureStmt",
    "GroupStmt",
    "ExpertStmt",
    "TowerStmt",
    "GateStmt",
    "TransferStmt",
    "TaskStmt",
    "ConstrainStmt",
    "WeightingStmt",
    "Statement",
    "Spec",
]

# The words that start a statement, in the order the language introduces them.
STATEMENT_WORDS = (
    "model",
    "feature",
    "group",
    "expert",
    "tower",
    "gate",
    "transfer",
    "task",
    "constrain",
    "weighting",
)


@dataclass(frozen=True)
class Name:
    """A name as written: a node, a column, an option value such as ``relu``."""

    text: str
    span: Span


@dataclass(frozen=True)
class Number:
    """An int or float literal (``100_000``, ``0.1``, ``1e-3``, ``-2``); ``text`` as written."""

    value: int | float
    text: str
    span: Span


@dataclass(frozen=True)
class String:
    """A double-quoted string, escapes already decoded."""

    value: str
    span: Span


@dataclass(frozen=True)
class List:
    """``[a, b, ...]``."""

    items: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class Keyword:
    """``name=value`` inside a call."""

    name: Name
    value: Value
    span: Span


@dataclass(frozen=True)
class Call:
    """``func(args..., key=value...)``.

    Or a bare ``func`` (``dense``, ``fixed``) when ``parens`` is False.
    """

    func: Name
    args: tuple[Value, ...]
    keywords: tuple[Keyword, ...]
    span: Span
    parens: bool = True


Value = Name | Number | String | List | Call


@dataclass(frozen=True)
class ModelStmt:
    """``model NAME ["description"]``."""

    name: Name
    description: String | None
    span: Span


@dataclass(frozen=True)
class FeatureStmt:
    """``feature NAME : KIND``; ``kind`` is ``sparse(...)``, ``sequence(...)``, ``dense`` ..."""

    name: Name
    kind: Call
    span: Span


@dataclass(frozen=True)
class GroupStmt:
    """``group NAME = [MEMBER, ...]``."""

    name: Name
    members: List
    span: Span


@dataclass(frozen=True)
class ExpertStmt:
    """``expert NAME [xN] = BLOCK``; ``count`` is the ``xN`` (its span covers the ``x``)."""

    name: Name
    count: Number | None
    block: Value
    span: Span


@dataclass(frozen=True)
class TowerStmt:
    """``tower NAME = BLOCK``."""

    name: Name
    block: Value
    span: Span


@dataclass(frozen=True)
class GateStmt:
    """``gate NAME = KIND(INPUT, ...) over [SOURCE, ...]``."""

    name: Name
    gate: Value
    sources: List
    span: Span


@dataclass(frozen=True)
class TransferStmt:
    """``transfer NAME = ait(CURRENT, from=PREVIOUS)``."""

    name: Name
    transfer: Value
    span: Span


@dataclass(frozen=True)
class TaskStmt:
    """``task NAME : KIND = NODE`` or ``= TASK * TASK ...`` (then ``len(body) > 1``)."""

    name: Name
    kind: Call
    body: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class ConstrainStmt:
    """``constrain LEFT <= RIGHT [weight W]``."""

    left: Name
    right: Name
    weight: Number | None
    span: Span


@dataclass(frozen=True)
class WeightingStmt:
    """``weighting fixed | uncertainty | gradnorm(alpha=A)``."""

    kind: Call
    span: Span


Statement = (
    ModelStmt
    | FeatureStmt
    | GroupStmt
    | ExpertStmt
    | TowerStmt
    | GateStmt
    | TransferStmt
    | TaskStmt
    | ConstrainStmt
    | WeightingStmt
)


@dataclass(frozen=True)
class Spec:
    """A parsed spec: its statements in order, and the text they came from."""

    filename: str
    source: str
    statements: tuple[Statement, ...]
