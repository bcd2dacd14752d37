"""Checking the networks between features and tasks: ``group``, ``expert``, ``tower``, ``transfer``.

Part of ``mtlc.check``: each ``check_<statement>(scope, stmt)`` declares the
statement's name and records its IR node in the scope, or records that it
failed after reporting what is wrong.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from mtlc import ir
from mtlc.check import arguments as opt
from mtlc.check.scope import VECTORS, Scope
from mtlc.diagnostics import Span
from mtlc.frontend import syntax as s

__all__ = ["check_group", "check_expert", "check_tower", "check_transfer", "read_mlp"]


def check_group(scope: Scope, stmt: s.GroupStmt) -> None:
    """``group NAME = [MEMBER, ...]``: vectors (features, groups, towers, gates...), concatenated;
    a member may be read through ``stopgrad``."""
    scope.declare(stmt.name)
    report = scope.report
    members: list[ir.Node] = []
    stopped: list[int] = []
    ok = True
    if not stmt.members.items:
        report.error(
            "MTL303", stmt.members.span, "a group needs at least one member", label="empty group"
        )
        ok = False
    for item in stmt.members.items:
        _, node, stop = scope.read(item, VECTORS, "a group member", pools=False)
        if node is None:
            ok = False
            continue
        if stop:
            stopped.append(len(members))
        members.append(node)
    node = None
    if ok:
        width = sum(member.width for member in members)
        node = ir.Group(
            name=stmt.name.text,
            span=stmt.span,
            width=width,
            members=[m.name for m in members],
            stopped=stopped,
        )
    scope.add(stmt.name, node)


def check_expert(scope: Scope, stmt: s.ExpertStmt) -> None:
    """``expert NAME [xN] = mlp(...)`` or ``= cross(...)``: a pool of N copies of one block."""
    scope.declare(stmt.name)
    count: int | None = 1
    if stmt.count is not None:
        count = opt.integer(stmt.count, scope.report, "the number of experts", 1, opt.MAX_EXPERTS)
    if _called(stmt.block, "cross"):
        cross = _cross(scope, stmt.name.text, stmt.span, stmt.block)
        pool = None
        if cross is not None and count is not None:
            pool = ir.CrossPool(**{**dict(cross), "op": "cross_pool", "count": count})
        scope.add(stmt.name, pool)
        return
    block = read_mlp(scope, stmt.block, ("mlp", "cross"))
    node = None
    if block is not None and count is not None:
        node = ir.Expert(
            name=stmt.name.text, span=stmt.span, width=block.dims[-1], count=count, block=block
        )
    scope.add(stmt.name, node)


def check_tower(scope: Scope, stmt: s.TowerStmt) -> None:
    """``tower NAME = mlp(...)``, ``= apg(...)``, ``= star(...)`` or ``= cross(...)``."""
    scope.declare(stmt.name)
    node: ir.Node | None = None
    if _called(stmt.block, "apg"):
        node = _apg(scope, stmt, stmt.block)
    elif _called(stmt.block, "star"):
        node = _star(scope, stmt, stmt.block)
    elif _called(stmt.block, "cross"):
        node = _cross(scope, stmt.name.text, stmt.span, stmt.block)
    else:
        block = read_mlp(scope, stmt.block, ("mlp", "apg", "star", "cross"))
        if block is not None:
            node = ir.Tower(name=stmt.name.text, span=stmt.span, width=block.dims[-1], block=block)
    scope.add(stmt.name, node)


def _called(value: s.Value, func: str) -> TypeGuard[s.Call]:
    """Whether ``value`` is a call of ``func``."""
    return isinstance(value, s.Call) and value.func.text == func


def _cross(scope: Scope, name: str, span: Span, call: s.Call) -> ir.Cross | None:
    """``cross(INPUT, layers=L [, form=] [, bias=] [, rank=] [, experts=])``: its IR node (a
    tower's; an expert pool's copies it), or None after reporting."""
    report = scope.report
    (source,) = opt.read_positionals(call, ["input"], report)
    options = opt.read_keywords(call, ("layers", "form", "bias", "rank", "experts"), report)
    node = scope.input(source, "the input of cross")
    fields: dict[str, Any] = {}
    if "layers" not in options:
        report.error(
            "MTL303",
            call.span,
            "`cross` needs `layers=L`, its number of cross layers",
            label="`layers` missing",
            help="write `cross(INPUT, layers=3)`",
        )
        fields["layers"] = None
    else:
        layers = options["layers"].value
        fields["layers"] = opt.integer(layers, report, "layers of cross", 1, opt.MAX_LAYERS)
    form: ir.CrossForm | None = ir.CrossForm.vector
    if "form" in options:
        forms = [f.value for f in ir.CrossForm]
        word = opt.choice(options["form"].value, report, "cross form", forms)
        fields["form"] = form = ir.CrossForm(word) if word else None
    fields["bias"] = ir.DEFAULT_BIAS[form] if form else None
    if "bias" in options:
        where = [b.value for b in ir.CrossBias]
        word = opt.choice(options["bias"].value, report, "cross bias", where)
        fields["bias"] = word and ir.CrossBias(word)
    for key, high in (("rank", opt.MAX_WIDTH), ("experts", opt.MAX_EXPERTS)):
        if key not in options:
            continue
        if form is not ir.CrossForm.mix:
            report.error(
                "MTL315",
                options[key].span,
                f"`{key}` belongs to `form=mix`, the mixture of low-rank experts",
                label=f"not a {form.value} option" if form else "not this form's",
                help=f"write `form=mix` to mix low-rank experts, or leave out `{key}`",
            )
            fields[key] = None
        else:
            fields[key] = opt.integer(options[key].value, report, f"{key} of cross", 1, high)
    if node is None or any(v is None for v in fields.values()):
        return None
    return ir.Cross(name=name, span=span, width=node.width, input=node.name, **fields)


_PLAIN_ACTIVATIONS = [a.value for a in ir.Activation if a is not ir.Activation.prelu]


def _apg(scope: Scope, stmt: s.TowerStmt, call: s.Call) -> ir.Apg | None:
    """``apg(INPUT, [D, ...], by=COND [, rank=[K, ...]] [, expand=[P, ...]] [, shared=]
    [, inner=] [, generate=] [, activation=])``: its IR node, or None after reporting."""
    report = scope.report
    source, dims_value = opt.read_positionals(call, ["input", "widths"], report)
    keys = ("by", "rank", "expand", "shared", "inner", "generate", "activation")
    options = opt.read_keywords(call, keys, report)
    node = scope.input(source, "the input of apg")
    dims = dims_value and opt.int_list(dims_value, report, "the widths of apg", 1, opt.MAX_WIDTH)
    condition = None
    if "by" not in options:
        report.error(
            "MTL303",
            call.span,
            "`apg` needs `by=CONDITION`, the node its weights are generated from",
            label="`by` missing",
            help="write `apg(INPUT, [WIDTH, ...], by=CONDITION)`",
        )
    else:
        condition = scope.input(options["by"].value, "the condition of apg")
    fields: dict[str, object] = {}
    for key in ("inner", "generate"):
        if key in options:
            fields[key] = opt.choice(
                options[key].value, report, f"{key} activation", _PLAIN_ACTIVATIONS
            )
    if "activation" in options:
        fields["activation"] = opt.choice(
            options["activation"].value, report, "activation", [a.value for a in ir.Activation]
        )
    if "shared" in options:
        fields["shared"] = opt.boolean(options["shared"].value, report, "`shared` of `apg`")
    if not dims or node is None or condition is None:
        return None
    ranks = _per_layer(scope, options.get("rank"), "rank", dims)
    expands = (
        _per_layer(scope, options.get("expand"), "expand", dims) if "expand" in options else []
    )
    if "expand" in options and fields.get("shared") is False:
        report.error(
            "MTL314",
            options["expand"].name.span,
            "`expand` widens the shared factors, and `shared=false` generates them instead",
            label="with shared=false",
            help="drop `expand`, or `shared=false`",
        )
        return None
    if ranks is None or expands is None or any(v is None for v in fields.values()):
        return None
    if "rank" not in options:  # NextRec's rule: ceil(min(in, out) / 16)
        widths_in = [node.width, *dims[:-1]]
        ranks = [-(-min(n, m) // 16) for n, m in zip(widths_in, dims)]
    return ir.Apg(
        name=stmt.name.text,
        span=stmt.span,
        width=dims[-1],
        input=node.name,
        input_width=node.width,
        condition=condition.name,
        condition_width=condition.width,
        dims=dims,
        ranks=ranks,
        expands=expands,
        **fields,
    )


def _star(scope: Scope, stmt: s.TowerStmt, call: s.Call) -> ir.Star | None:
    """``star(INPUT, [D, ...], domain=FEATURE [, combine=] [, norm=] [, activation=]
    [, dropout=])``: its IR node, or None after reporting."""
    report = scope.report
    source, dims_value = opt.read_positionals(call, ["input", "widths"], report)
    keys = ("domain", "combine", "norm", "activation", "dropout")
    options = opt.read_keywords(call, keys, report)
    node = scope.input(source, "the input of star")
    dims = dims_value and opt.int_list(dims_value, report, "the widths of star", 1, opt.MAX_WIDTH)
    domain = None
    if "domain" not in options:
        report.error(
            "MTL303",
            call.span,
            "`star` needs `domain=FEATURE`, the sparse feature whose id is each row's domain",
            label="`domain` missing",
            help="write `star(INPUT, [WIDTH, ...], domain=FEATURE)`",
        )
    else:
        ref = opt.name(options["domain"].value, report, "`domain` of star")
        if ref is not None:
            domain = scope.resolve(ref, (ir.SparseFeature,), "the domain of star")
    fields: dict[str, object] = {}
    if "combine" in options:
        fields["combine"] = opt.choice(
            options["combine"].value, report, "combine", [c.value for c in ir.Combine]
        )
    if "norm" in options:
        fields["norm"] = opt.choice(
            options["norm"].value, report, "star norm", [n.value for n in ir.StarNorm]
        )
    if "activation" in options:
        fields["activation"] = opt.choice(
            options["activation"].value, report, "activation", [a.value for a in ir.Activation]
        )
    if "dropout" in options:
        fields["dropout"] = opt.real(
            options["dropout"].value, report, "dropout", 0.0, 1.0, high_open=True
        )
    if not dims or node is None or domain is None or any(v is None for v in fields.values()):
        return None
    if domain.vocab > opt.MAX_DOMAINS:
        report.error(
            "MTL305",
            options["domain"].value.span,
            f"`{domain.name}` has {domain.vocab:,} ids; star has one network per id, "
            f"at most {opt.MAX_DOMAINS}",
            label="too many domains",
        )
        return None
    return ir.Star(
        name=stmt.name.text,
        span=stmt.span,
        width=dims[-1],
        input=node.name,
        input_width=node.width,
        dims=dims,
        domain=domain.name,
        domains=domain.vocab,
        **fields,
    )


def _per_layer(
    scope: Scope, option: s.Keyword | None, what: str, dims: list[int]
) -> list[int] | None:
    """A list with one width per layer (``rank=``, ``expand=``); [] when not given."""
    if option is None:
        return []
    values = opt.int_list(option.value, scope.report, f"`{what}` of apg", 1, opt.MAX_WIDTH)
    if values is not None and len(values) != len(dims):
        scope.report.error(
            "MTL305",
            option.value.span,
            f"`{what}` gives {len(values)} widths for {len(dims)} layers",
            label=f"{len(values)}, not {len(dims)}",
            help="give one per layer",
        )
        return None
    return values


def read_mlp(scope: Scope, value: s.Value, blocks: tuple[str, ...] = ("mlp",)) -> ir.Mlp | None:
    """``mlp(INPUT, [D, ...], activation=, dropout=, norm=, bias=)`` as an ``ir.Mlp``."""
    report = scope.report
    call = opt.expect_call(value, blocks, opt.FUTURE_CALLS, report, "block")
    if call is None:
        return None
    source, dims_value = opt.read_positionals(call, ["input", "widths"], report)
    options = opt.read_keywords(call, ("activation", "dropout", "norm", "bias"), report)
    node = scope.input(source, "the input of an mlp")
    dims = dims_value and opt.int_list(dims_value, report, "the widths of an mlp", 1, opt.MAX_WIDTH)
    fields = opt.options_of_layers(options, report)
    if "bias" in options:
        fields["bias"] = opt.boolean(options["bias"].value, report, "`bias` of `mlp`")
    ok = all(v is not None for v in fields.values())
    if node is None or not dims or not ok:
        return None
    return ir.Mlp(input=node.name, input_width=node.width, dims=dims, span=call.span, **fields)


def check_transfer(scope: Scope, stmt: s.TransferStmt) -> None:
    """``transfer NAME = ait(CURRENT, from=PREVIOUS [, bias=true])``: AITM's attentive transfer."""
    scope.declare(stmt.name)
    report = scope.report
    node = None
    call = opt.expect_call(stmt.transfer, ("ait",), (), report, "transfer")
    if call is not None:
        (current_value,) = opt.read_positionals(call, ["current"], report)
        options = opt.read_keywords(call, ("from", "bias"), report)
        current = scope.input(current_value, "the current vector of a transfer")
        previous = None
        if "from" not in options:
            report.error(
                "MTL303",
                call.span,
                "`ait` needs `from=PREVIOUS`",
                label="`from` missing",
                help="write `ait(CURRENT, from=PREVIOUS)`",
            )
        else:
            previous = scope.input(options["from"].value, "the previous vector of a transfer")
        bias: bool | None = False  # Q/K/V biases (NextRec's AITM); the paper's has none
        if "bias" in options:
            bias = opt.boolean(options["bias"].value, report, "`bias` of `ait`")
        if current is not None and previous is not None and bias is not None:
            node = _transfer(scope, stmt, current, previous, options["from"].value.span, bias)
    scope.add(stmt.name, node)


def _transfer(
    scope: Scope, stmt: s.TransferStmt, current: ir.Node, previous: ir.Node, at: Span, bias: bool
) -> ir.Transfer | None:
    if current.width != previous.width:
        scope.report.error(
            "MTL402",
            at,
            f"`{previous.name}` has width {previous.width} but `{current.name}` has "
            f"width {current.width}",
            label=f"width {previous.width}",
            help="a transfer mixes two vectors of one width",
        )
        return None
    return ir.Transfer(
        name=stmt.name.text,
        span=stmt.span,
        width=current.width,
        current=current.name,
        previous=previous.name,
        qkv_bias=bias,
    )
