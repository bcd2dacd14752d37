"""The checker's shared state: the names declared so far, the nodes built, and how to look one up.

Every rule family (``features``, ``networks``, ``gates``, ``tasks``) works on
one ``Scope``: it declares the statement's name, resolves the names the
statement reads (reporting an unknown or ill-kinded one once, with a
suggestion), and records the node it built, or that the statement failed, so
that later uses of that name do not repeat the error.
"""

from __future__ import annotations

import keyword
import re
from typing import TypeVar

from mtlc import ir
from mtlc.check import arguments as opt
from mtlc.diagnostics import Reporter, Span, closest, similar
from mtlc.frontend import syntax as s
from mtlc.frontend.syntax import STATEMENT_WORDS
from mtlc.ir.reserved import MODULE_GLOBALS

__all__ = [
    "Scope",
    "kind_word",
    "RESERVED_WORDS",
    "MODEL_NAME_BLOCKLIST",
    "NAME",
    "FEATURES",
    "VECTORS",
]

RESERVED_WORDS = frozenset(
    {*STATEMENT_WORDS, "over", "weight"}
)  # the statements' words, and two more
# Names the generated module binds at top level: a class of that name would shadow them.
MODEL_NAME_BLOCKLIST = MODULE_GLOBALS
NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")  # the form of a node name

FEATURES = ir.FEATURES
# Kinds that yield one vector per example (pools of one expert included).
VECTORS = (
    *FEATURES,
    ir.Group,
    ir.Tower,
    ir.Apg,
    ir.Star,
    ir.Cross,
    ir.CrossPool,
    ir.Gate,
    ir.ScaleGate,
    ir.Stitch,
    ir.Route,
    ir.Transfer,
    ir.Expert,
)

_N = TypeVar("_N", bound=ir.Node)  # the kinds a lookup allows


def kind_word(node: ir.Node) -> str:
    """A node's kind in words: 'tower', 'expert pool', ..."""
    return node.kind_word


class Scope:
    """The names and nodes of one spec while it is checked; rules report through ``report``."""

    def __init__(self, spec: s.Spec) -> None:
        self.spec = spec
        self.file = spec.filename
        self.report = Reporter(spec.source)
        self.nodes: dict[str, ir.Node] = {}
        self.failed: set[str] = set()
        self.declared: dict[str, Span] = {}
        self.everywhere = _declarations(spec)

    def add(self, name: s.Name, node: ir.Node | None) -> None:
        """Record the statement's node (or its failure) under its name, once declared.

        A repeated declaration (MTL204) is not recorded: the first one keeps the name.
        """
        if self.declared.get(name.text) is not name.span:
            return
        if node is None:
            self.failed.add(name.text)
        else:
            self.nodes[name.text] = node

    def declare(self, name: s.Name) -> None:
        """Check a new node name (form, reserved words, duplicates) and claim it."""
        text = name.text
        if not NAME.match(text):
            lowered = re.sub(r"[^a-z0-9_]", "_", text.lower())
            help = (
                f"try `{lowered}`"
                if NAME.match(lowered) and lowered not in RESERVED_WORDS
                else None
            )
            self.report.error(
                "MTL201",
                name.span,
                f"`{text}` is not a valid name",
                label="invalid name",
                help=help,
                notes=["a name is lower case: a-z, 0-9 and `_`, not starting with a digit"],
            )
        elif (
            keyword.iskeyword(text)
            or text in RESERVED_WORDS
            or (text.startswith("__") and text.endswith("__"))
        ):
            what = "a Python keyword" if keyword.iskeyword(text) else "reserved"
            self.report.error(
                "MTL202",
                name.span,
                f"`{text}` is {what} and cannot name a node",
                label="reserved",
                help=f"try `{text.strip('_')}_`" if text.strip("_") else None,
            )
        if text in self.declared:
            first = self.declared[text]
            self.report.error(
                "MTL204",
                name.span,
                f"`{text}` is already declared",
                label="declared again",
                notes=[f"first declared at line {first.line}, column {first.column}"],
            )
            return
        self.declared[text] = name.span

    def resolve(
        self, ref: s.Name, allowed: tuple[type[_N], ...], role: str, *, pools: bool = True
    ) -> _N | None:
        """The node ``ref`` names if declared and of an ``allowed`` kind, else None after reporting.

        ``pools=False`` rejects an expert pool of more than one expert (not one vector).
        """
        node = self.nodes.get(ref.text)
        if node is None:
            if ref.text not in self.failed:
                self.unknown(ref, allowed, role)
            return None
        if not isinstance(node, allowed):
            self.report.error(
                "MTL206",
                ref.span,
                f"`{ref.text}` is a {kind_word(node)}; it cannot be {role}",
                label=f"a {kind_word(node)}",
                help=_kind_help(node, role),
            )
            return None
        if not pools and node.vectors > 1:
            self.report.error(
                "MTL206",
                ref.span,
                f"`{ref.text}` is a pool of {node.vectors} experts; it cannot be {role}",
                label=f"{node.vectors} vectors, not one",
                help=f"mix the pool with a gate first: `gate g = softmax(INPUT) over [{ref.text}]`",
            )
            return None
        return node

    def unknown(self, ref: s.Name, allowed: tuple[type, ...], role: str) -> None:
        """Report a name that is not (yet) declared, saying where it is declared later if it is."""
        later = self.everywhere.get(ref.text)
        if later is not None and later.line >= ref.span.line:
            self.report.error(
                "MTL205",
                ref.span,
                f"`{ref.text}` is used before it is declared",
                label="not declared yet",
                notes=[f"`{ref.text}` is declared at line {later.line}"],
                help="move its statement above this one: a spec reads top-down",
            )
            return
        fitting = [n for n, node in self.nodes.items() if isinstance(node, allowed)]
        guess = closest(ref.text, fitting) or closest(ref.text, self.nodes)
        help = None
        if guess is not None:
            help = similar(self.nodes[guess].kind_word, guess)
        noun = "expert pool" if role == "a gate source" else "name"
        self.report.error(
            "MTL203", ref.span, f"unknown {noun} `{ref.text}`", label="not declared", help=help
        )

    def read(
        self, value: s.Value, allowed: tuple[type[_N], ...], role: str, *, pools: bool = True
    ) -> tuple[s.Name | None, _N | None, bool]:
        """A name, or ``stopgrad(NAME)``, where a group member or a gate source is read.

        Returns the name as written, its node (None after reporting), and whether
        the gradient stops there.
        """
        stop = isinstance(value, s.Call) and value.func.text == "stopgrad"
        if isinstance(value, s.Call) and stop:
            (inner,) = opt.read_positionals(value, ["name"], self.report)
            opt.read_keywords(value, (), self.report)
            if inner is None:
                return None, None, True
            value = inner
        ref = opt.name(value, self.report, role)
        if ref is None:
            return None, None, stop
        return ref, self.resolve(ref, allowed, role, pools=pools), stop

    def input(self, value: s.Value | None, role: str) -> ir.Node | None:
        """A node that yields one vector per example (not a task, not a pool of several experts)."""
        if value is None:
            return None
        if isinstance(value, s.Call) and value.func.text == "stopgrad":
            self.report.error(
                "MTL311",
                value.func.span,
                f"`stopgrad` cannot wrap {role}",
                label="not here",
                help="stop the gradient in a group and read that: `group g = [stopgrad(x)]`",
            )
            return None
        if isinstance(value, s.Call) and value.func.text in opt.FUTURE_CALLS:
            opt.expect_call(value, (), opt.FUTURE_CALLS, self.report, "input")
            return None
        ref = opt.name(value, self.report, role)
        return self.resolve(ref, VECTORS, role, pools=False) if ref is not None else None


def _declarations(spec: s.Spec) -> dict[str, Span]:
    """Where each name is first declared anywhere in the spec (for "used before declared")."""
    found: dict[str, Span] = {}
    for statement in spec.statements:
        name = getattr(statement, "name", None)
        if isinstance(name, s.Name) and not isinstance(statement, s.ModelStmt):
            found.setdefault(name.text, name.span)
    return found


def _kind_help(node: ir.Node, role: str) -> str | None:
    if isinstance(node, ir.Task):
        return (
            "a task is an output; to multiply task probabilities write `task NAME : binary = a * b`"
        )
    return None
