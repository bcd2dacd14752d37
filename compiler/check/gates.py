"""Checking ``gate`` statements: the gate call, its sources, their widths.

Part of ``mtlc.check``: ``check_gate(scope, stmt)`` declares the gate and
records its IR node in the scope, or records that it failed after reporting
what is wrong.
"""

from __future__ import annotations

from mtlc import ir
from mtlc.check import arguments as opt
from mtlc.check.scope import VECTORS, Scope
from mtlc.frontend import syntax as s

__all__ = ["check_gate"]


def check_gate(scope: Scope, stmt: s.GateStmt) -> None:
    """``gate NAME = softmax(INPUT, ...) over [SOURCE, ...]``."""
    scope.declare(stmt.name)
    scope.add(stmt.name, _gate(scope, stmt))


def _gate(scope: Scope, stmt: s.GateStmt) -> ir.Gate | None:
    """The IR node of the gate, or None after reporting."""
    r = scope.report
    call = opt.expect_call(stmt.gate, ("softmax",), opt.FUTURE_CALLS, r, "gate")
    sources = _sources(scope, stmt.sources)
    if call is None:
        return None
    (input_value,) = opt.read_positionals(call, ["input"], r)
    options = opt.read_keywords(call, ("top", "temperature", "hidden"), r)
    node = scope.input(input_value, "the input of a gate")
    fields: dict[str, object] = {}
    if "temperature" in options:
        fields["temperature"] = opt.real(
            options["temperature"].value, r, "temperature", 0.0, opt.MAX_REAL, low_open=True
        )
    if "hidden" in options:
        fields["hidden"] = opt.int_list(
            options["hidden"].value,
            r,
            "the hidden widths of a gate",
            1,
            opt.MAX_WIDTH,
            allow_empty=True,
        )
    if sources is None:
        if "top" in options:  # still check its type
            opt.integer(options["top"].value, r, "`top`", 1, opt.MAX_EXPERTS)
        return None
    experts = sum(source.count for source, _ in sources)
    if experts > opt.MAX_EXPERTS:
        r.error(
            "MTL305",
            stmt.sources.span,
            f"the gate mixes {experts} experts; at most {opt.MAX_EXPERTS:,}",
            label="too many experts",
        )
        return None
    if "top" in options:
        fields["top"] = opt.integer(options["top"].value, r, "`top` (experts kept)", 1, experts)
    if node is None or any(value is None for value in fields.values()):
        return None
    width = sources[0][1].width
    return ir.Gate(
        name=stmt.name.text,
        span=stmt.span,
        width=width,
        input=node.name,
        input_width=node.width,
        sources=[source for source, _ in sources],
        num_experts=experts,
        **fields,
    )


def _sources(scope: Scope, listed: s.List) -> list[tuple[ir.GateSource, ir.Node]] | None:
    """The gate's sources with their nodes, checked for kind, repetition and one common width."""
    r = scope.report
    if not listed.items:
        r.error(
            "MTL303",
            listed.span,
            "a gate needs at least one source",
            label="no sources",
            help="list the expert pools (or vector nodes) it mixes: `over [shared, own]`",
        )
        return None
    found: list[tuple[ir.GateSource, ir.Node]] = []
    seen: dict[str, s.Name] = {}
    ok = True
    for item in listed.items:
        ref = opt.name(item, r, "a gate source")
        node = scope.resolve(ref, VECTORS, "a gate source") if ref is not None else None
        if ref is not None and ref.text in seen:
            r.error(
                "MTL310",
                ref.span,
                f"`{ref.text}` is listed twice",
                label="repeated",
                notes=[f"first listed at column {seen[ref.text].span.column}"],
            )
            ok = False
            continue
        if ref is not None:
            seen[ref.text] = ref
        if ref is None or node is None:  # (no node without a name)
            ok = False
            continue
        found.append((ir.GateSource(name=node.name, count=getattr(node, "count", 1)), node))
        first = found[0][1]
        if node.width != first.width:
            r.error(
                "MTL401",
                ref.span,
                f"the gate's sources differ in width: `{node.name}` has width "
                f"{node.width}, `{first.name}` has width {first.width}",
                label=f"width {node.width}",
                help="a gate adds its sources up, so they need one width",
            )
            ok = False
    return found if ok else None
