"""Checking ``gate`` statements: the gate call, its sources, their widths.

Part of ``mtlc.check``: ``read_gate`` turns one gate statement into its IR
node, or returns None after reporting what is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtlc import ir
from mtlc import options as opt
from mtlc import syntax as s

if TYPE_CHECKING:
    from mtlc.check import _Checker

__all__ = ["read_gate"]


def read_gate(checker: "_Checker", stmt: s.GateStmt) -> ir.Gate | None:
    """The IR node of ``gate NAME = softmax(INPUT, ...) over [SOURCE, ...]``, or None after reporting."""
    r = checker.r
    call = opt.expect_call(stmt.gate, ("softmax",), opt.FUTURE_CALLS, r, "gate")
    sources = _sources(checker, stmt.sources)
    if call is None:
        return None
    (input_value,) = opt.read_positionals(call, ["input"], r)
    options = opt.read_keywords(call, ("top", "temperature", "hidden"), r)
    node = checker.input(input_value, "the input of a gate")
    fields = {}
    if "temperature" in options:
        fields["temperature"] = opt.real(options["temperature"].value, r, "temperature", 0.0, opt.MAX_REAL,
                                         low_open=True)
    if "hidden" in options:
        fields["hidden"] = opt.int_list(options["hidden"].value, r, "the hidden widths of a gate", 1,
                                        opt.MAX_WIDTH, allow_empty=True)
    if sources is None:
        if "top" in options:  # still check its type
            opt.integer(options["top"].value, r, "`top`", 1, opt.MAX_EXPERTS)
        return None
    experts = sum(source.count for source, _ in sources)
    if experts > opt.MAX_EXPERTS:
        r.error("MTL305", stmt.sources.span, f"the gate mixes {experts} experts; at most {opt.MAX_EXPERTS:,}",
                label="too many experts")
        return None
    if "top" in options:
        fields["top"] = opt.integer(options["top"].value, r, "`top` (experts kept)", 1, experts)
    if node is None or any(value is None for value in fields.values()):
        return None
    width = sources[0][1].width
    return ir.Gate(
        name=stmt.name.text, span=stmt.span, width=width, input=node.name, input_width=node.width,
        sources=[source for source, _ in sources], num_experts=experts, **fields,
    )


def _sources(checker: "_Checker", listed: s.List) -> list[tuple[ir.GateSource, ir.Node]] | None:
    """The gate's sources with their nodes, checked for kind, repetition and one common width."""
    r = checker.r
    if not listed.items:
        r.error("MTL303", listed.span, "a gate needs at least one source", label="no sources",
                help="list the expert pools (or vector nodes) it mixes: `over [shared, own]`")
        return None
    found: list[tuple[ir.GateSource, ir.Node]] = []
    seen: dict[str, s.Name] = {}
    ok = True
    for item in listed.items:
        ref = opt.name(item, r, "a gate source")
        node = ref and checker.resolve(ref, checker.vectors, "a gate source")
        if ref is not None and ref.text in seen:
            r.error("MTL310", ref.span, f"`{ref.text}` is listed twice", label="repeated",
                    notes=[f"first listed at column {seen[ref.text].span.column}"])
            ok = False
            continue
        if ref is not None:
            seen[ref.text] = ref
        if node is None:
            ok = False
            continue
        found.append((ir.GateSource(name=node.name, count=getattr(node, "count", 1)), node))
        first = found[0][1]
        if node.width != first.width:
            r.error("MTL401", ref.span, f"the gate's sources differ in width: `{node.name}` has width "
                    f"{node.width}, `{first.name}` has width {first.width}", label=f"width {node.width}",
                    help="a gate adds its sources up, so they need one width")
            ok = False
    return found if ok else None
