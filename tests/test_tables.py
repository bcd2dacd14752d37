"""Every kind of node has its entry in every per-kind table, and its facts on its class.

A construct added to the IR (``ir.Node``) or the plan (``plan.Module``,
``plan.Step``) without an entry in one of the stages' tables fails here, with
the table and the class named, instead of far from its cause. The same for
the IR node facts every view reads (``text``, ``brief``). And the stages
switch on a node's kind in at most ``MAX_SWITCHES`` places (tables and the
node's own methods do the rest): ``python -m tests.test_tables`` lists them.
"""

from __future__ import annotations

import ast
import sys
import typing
from pathlib import Path

import pytest

from mtlc import ir
from mtlc.backend import emission, lowering, plan
from mtlc.views import graph

ROOT = Path(__file__).resolve().parents[1]
MAX_SWITCHES = 12


def _members(union: object) -> list[type]:
    """The classes of a union (``A | B``, or ``Annotated[A | B, ...]``)."""
    args = typing.get_args(union)
    if args and typing.get_origin(union) is typing.Annotated:
        return _members(args[0])
    return list(args)


IR_KINDS = _members(ir.Node)
PLAN_MODULES = _members(plan.Module)
PLAN_STEPS = _members(plan.Step)
TABLES = [
    ("backend.lowering.LOWER", lowering.LOWER, IR_KINDS),
    ("views.graph.FAMILY", graph.FAMILY, IR_KINDS),
    ("backend.emission.INIT", emission.INIT, PLAN_MODULES),
    ("backend.emission.STEP", emission.STEP, PLAN_STEPS),
    ("backend.emission.PREDICT", emission.PREDICT, list(plan.Output)),
    ("backend.lowering.OUTPUTS", lowering.OUTPUTS, list(ir.TaskKind)),
]


@pytest.mark.parametrize("name, table, kinds", TABLES, ids=[t[0] for t in TABLES])
def test_every_kind_has_an_entry(name: str, table: dict, kinds: list):
    missing = [getattr(kind, "__name__", str(kind)) for kind in kinds if kind not in table]
    assert not missing, f"{name} has no entry for {', '.join(missing)}"


def test_the_node_kinds_are_the_ir_union():
    assert set(ir.NODE_KINDS) == set(IR_KINDS)


@pytest.mark.parametrize("kind", IR_KINDS, ids=lambda kind: kind.__name__)
def test_every_node_kind_says_itself(kind: type):
    """Each kind writes its own text and short form, and names itself for diagnostics."""
    for fact in ("text", "brief"):
        assert getattr(kind, fact) is not getattr(ir._Node, fact), f"{kind.__name__}.{fact}"
    assert isinstance(kind.kind_word, str) and kind.kind_word


def test_a_missing_entry_is_named():
    """The test above can fail: a table without Transfer names the table and the class."""
    table = {kind: None for kind in IR_KINDS if kind is not ir.Transfer}
    with pytest.raises(AssertionError, match=r"LOWER has no entry for Transfer"):
        test_every_kind_has_an_entry("backend.lowering.LOWER", table, IR_KINDS)


# -- switches on a node's kind -----------------------------------------------------------

KIND_NAMES = {kind.__name__ for kind in IR_KINDS + PLAN_MODULES + PLAN_STEPS} | {
    "FEATURES",
    "VECTORS",
    "NODE_KINDS",
    "kinds",
    "allowed",
    "tables",
}


def _names(node: ast.AST) -> set[str]:
    """The names a kind test mentions; ``s.Call`` and the like are the syntax tree's, not kinds."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and getattr(n.value, "id", None) != "s":
            names.add(n.attr)
        elif isinstance(n, ast.Name) and n.id != "s":
            names.add(n.id)
    return names


def switches(root: Path = ROOT / "compiler") -> list[str]:
    """``file:line`` of each ``isinstance``, ``type(x) is`` or class pattern on a node kind."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            kind_test = None
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                kind_test = node.args[1]
            elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Call):
                if getattr(node.left.func, "id", None) == "type":
                    kind_test = node.comparators[0]
            elif isinstance(node, ast.MatchClass):
                kind_test = node.cls
            if kind_test is not None and _names(kind_test) & KIND_NAMES:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_stages_switch_on_a_kind_in_few_places():
    places = switches()
    assert len(places) <= MAX_SWITCHES, "\n".join(places)


def test_the_switch_count_sees_a_switch(tmp_path: Path):
    (tmp_path / "stage.py").write_text(
        "def f(node):\n    return isinstance(node, ir.Gate) or type(node) is Lookup\n"
    )
    assert len(switches(tmp_path)) == 2


if __name__ == "__main__":
    places = switches()
    print("\n".join(places))
    print(f"{len(places)} switches on a node's kind in compiler/ (at most {MAX_SWITCHES})")
    sys.exit(0 if len(places) <= MAX_SWITCHES else 1)
