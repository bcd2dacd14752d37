"""Checking ``gate`` statements: softmax gates (mix their sources) and sigmoid gates (scale one).

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

_LAYER_OPTIONS = ("activation", "norm", "dropout")  # of a gate's hidden layers


def check_gate(scope: Scope, stmt: s.GateStmt) -> None:
    """``gate NAME = softmax(INPUT, ...) over [SOURCES]``, ``sigmoid(COND, ...) over [X]``, or
    ``cross_stitch(COLUMN, ...) over [COLUMNS]``."""
    scope.declare(stmt.name)
    call = opt.expect_call(
        stmt.gate,
        ("softmax", "sigmoid", "cross_stitch", "snr"),
        opt.FUTURE_CALLS,
        scope.report,
        "gate",
    )
    sources = _sources(scope, stmt.sources)
    node: ir.Node | None = None
    if call is not None and call.func.text == "sigmoid":
        node = _sigmoid(scope, stmt, call, sources)
    elif call is not None and call.func.text == "cross_stitch":
        node = _stitch(scope, stmt, call, sources)
    elif call is not None and call.func.text == "snr":
        node = _route(scope, stmt, call, sources)
    elif call is not None:
        node = _softmax(scope, stmt, call, sources)
    scope.add(stmt.name, node)


def _softmax(
    scope: Scope,
    stmt: s.GateStmt,
    call: s.Call,
    sources: list[tuple[ir.GateSource, ir.Node]] | None,
) -> ir.Gate | None:
    """The IR node of a softmax gate, or None after reporting."""
    r = scope.report
    (input_value,) = opt.read_positionals(call, ["input"], r)
    options = opt.read_keywords(call, ("top", "temperature", "hidden", *_LAYER_OPTIONS), r)
    node = scope.input(input_value, "the input of a gate")
    fields = _hidden(scope, call, options)
    if "temperature" in options:
        fields["temperature"] = opt.real(
            options["temperature"].value, r, "temperature", 0.0, opt.MAX_REAL, low_open=True
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


def _sigmoid(
    scope: Scope,
    stmt: s.GateStmt,
    call: s.Call,
    sources: list[tuple[ir.GateSource, ir.Node]] | None,
) -> ir.ScaleGate | None:
    """The IR node of a sigmoid gate (``source * scale * sigmoid(net(cond))``), or None."""
    r = scope.report
    (input_value,) = opt.read_positionals(call, ["condition"], r)
    options = opt.read_keywords(call, ("hidden", "scale", *_LAYER_OPTIONS), r)
    node = scope.input(input_value, "the condition of a sigmoid gate")
    fields = _hidden(scope, call, options)
    if "scale" in options:
        fields["scale"] = opt.real(
            options["scale"].value, r, "`scale`", 0.0, opt.MAX_REAL, low_open=True
        )
    if sources is not None and len(sources) != 1:
        r.error(
            "MTL312",
            stmt.sources.span,
            f"a sigmoid gate scales one source, not {len(sources)}",
            label=f"{len(sources)} sources",
            help="write one sigmoid gate per source, or group the sources first",
        )
        return None
    if sources is None or node is None or any(value is None for value in fields.values()):
        return None
    ((source, read),) = sources
    return ir.ScaleGate(
        name=stmt.name.text,
        span=stmt.span,
        width=read.width,
        input=node.name,
        input_width=node.width,
        source=source.name,
        source_stop=source.stop,
        pool=read.is_pool,
        count=source.count,
        **fields,
    )


def _hidden(scope: Scope, call: s.Call, options: dict[str, s.Keyword]) -> dict[str, object]:
    """``hidden=[...]`` and the options of the hidden layers (which need hidden layers)."""
    r = scope.report
    fields: dict[str, object] = {}
    if "hidden" in options:
        fields["hidden"] = opt.int_list(
            options["hidden"].value,
            r,
            "the hidden widths of a gate",
            1,
            opt.MAX_WIDTH,
            allow_empty=True,
        )
    layers = opt.options_of_layers(options, r)
    if layers and not fields.get("hidden") and "hidden" not in options:
        first = next(options[key] for key in _LAYER_OPTIONS if key in options)
        r.error(
            "MTL313",
            first.name.span,
            f"`{first.name.text}` applies to a gate's hidden layers; "
            f"this `{call.func.text}` has none",
            label="no hidden layers",
            help=f"add `hidden=[WIDTH, ...]`, or drop `{first.name.text}`",
        )
        return {"hidden": None}
    return {**fields, **layers}


def _stitch(
    scope: Scope,
    stmt: s.GateStmt,
    call: s.Call,
    sources: list[tuple[ir.GateSource, ir.Node]] | None,
) -> ir.Stitch | None:
    """``cross_stitch(COLUMN [, weights=channel|scalar]) over [A, B, ...]``: a cross-stitch
    unit over two or more vectors of one width, continuing ``COLUMN`` (one of them)."""
    r = scope.report
    (column,) = opt.read_positionals(call, ["column"], r)
    options = opt.read_keywords(call, ("weights",), r)
    weights: ir.StitchWeights | None = ir.StitchWeights.channel
    if "weights" in options:
        word = opt.choice(
            options["weights"].value, r, "stitch weights", [w.value for w in ir.StitchWeights]
        )
        weights = ir.StitchWeights(word) if word else None
    ref = opt.name(column, r, "the column a cross-stitch unit continues") if column else None
    if sources is None or ref is None or weights is None:
        return None
    names = [source.name for source, _ in sources]
    problem = None
    if len(sources) < 2:
        problem = ("a cross-stitch unit mixes two columns or more", stmt.sources.span, "one source")
    elif any(source.count > 1 or source.stop or node.is_pool for source, node in sources):
        problem = (
            "a cross-stitch unit mixes vectors, one per column, read as they are",
            stmt.sources.span,
            "a pool or a stopgrad",
        )
    elif ref.text not in names:
        problem = (
            f"`{ref.text}` is not one of the unit's sources: it continues one of them",
            ref.span,
            "not a source",
        )
    if problem is not None:
        message, span, label = problem
        r.error(
            "MTL316",
            span,
            message,
            label=label,
            help="write `cross_stitch(a_h1) over [a_h1, b_h1]`: the column it continues, "
            "then every column's vector",
        )
        return None
    return ir.Stitch(
        name=stmt.name.text,
        span=stmt.span,
        width=sources[0][1].width,
        column=ref.text,
        sources=names,
        weights=weights,
    )


def _route(
    scope: Scope,
    stmt: s.GateStmt,
    call: s.Call,
    sources: list[tuple[ir.GateSource, ir.Node]] | None,
) -> ir.Route | None:
    """``snr([transform=true|false]) over [SOURCES]``: one output of a sub-network routing
    layer, over two or more columns (pools count their experts) of one width."""
    r = scope.report
    opt.read_positionals(call, [], r)
    options = opt.read_keywords(call, ("transform",), r)
    transform: bool | None = True
    if "transform" in options:
        transform = opt.boolean(options["transform"].value, r, "`transform` of snr")
    if sources is None or transform is None:
        return None
    experts = sum(source.count for source, _ in sources)
    if experts < 2 or any(source.stop for source, _ in sources):
        r.error(
            "MTL316",
            stmt.sources.span,
            "a routing gate routes two columns or more, read as they are"
            if experts < 2
            else "a routing gate reads its columns as they are, not through stopgrad",
            label="one column" if experts < 2 else "a stopgrad",
            help="write `snr() over [experts]` over a pool, or over each expert's vector",
        )
        return None
    return ir.Route(
        name=stmt.name.text,
        span=stmt.span,
        width=sources[0][1].width,
        sources=[source for source, _ in sources],
        experts=experts,
        transform=transform,
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
        ref, node, stop = scope.read(item, VECTORS, "a gate source")
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
        found.append((ir.GateSource(name=node.name, count=node.vectors, stop=stop), node))
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
