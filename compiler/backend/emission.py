"""Emission: a plan becomes the source of one PyTorch module.

Each kind of plan module is built by its entry in ``INIT`` and each kind of
step computed by its entry in ``STEP`` (``tests/test_tables.py`` holds both
complete). Python builds a view of plain strings (each line's code and its
comment: the output shape and the spec lines),
laid out in black's style (``backend.linewrap`` runs black in process on every
statement that needs breaking); the Jinja template only prints it; then
``compile()`` checks the result. Nothing from the spec reaches the output
except validated identifiers, numbers, and strings through ``repr()`` (or, in
docstrings and comments, escaped so that they cannot end them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import jinja2

from mtlc import ir
from mtlc.backend import literals
from mtlc.backend.linewrap import LINE_LENGTH, quote
from mtlc.backend.linewrap import fit as _fit
from mtlc.backend.literals import integer, number
from mtlc.backend.plan import (
    ApgModule,
    Block,
    Call,
    Concat,
    CrossModule,
    DenseInput,
    Embedding,
    ExpertsModule,
    GateLogits,
    GateModule,
    Head,
    HeadModule,
    Lookup,
    Mixture,
    MlpModule,
    Output,
    Plan,
    Prediction,
    RouteModule,
    Scaled,
    ScaleGateModule,
    Split,
    StarModule,
    StitchModule,
    TransferModule,
    Unbind,
)


def emit(plan: Plan, line_length: int = LINE_LENGTH) -> str:
    """The generated module of ``plan``, formatted as black formats at ``line_length``
    (its default, 88); the same plan gives the same bytes."""
    text = _template().render(**_view(plan, line_length))
    compile(text, _file_name(plan.model.source), "exec")
    return text


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mtlc.backend", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template("model.py.j2")


# -- the view ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    code: str
    comment: str = ""
    above: tuple[str, ...] = ()  # comment lines above the statement

    def at(self, indent: int, width: int, entry: bool = False) -> str:
        """Laid out at column ``indent`` (see ``backend.linewrap.fit``)."""
        laid = _fit(self.code, indent, self.comment, entry=entry, width=width)
        return f"\n{' ' * indent}".join([*(f"# {line}" for line in self.above), laid])


def _view(plan: Plan, width: int) -> dict:
    model = plan.model
    fit = partial(_fit, width=width)
    source = literals.safe_text(_file_name(model.source))
    summary = literals.summary(model)
    constraints = _tuple([literals.constraint(c) for c in model.constraints])
    banks = [f"{quote(b)}: {_tuple([quote(g) for g in gs])}," for b, gs in plan.gate_banks]
    pools = [f"{quote(p)}: {_tuple([quote(e) for e in es])}," for p, es in plan.expert_pools]
    outputs = ", ".join(f"{quote(p.key)}: {p.local}" for p in plan.predictions)
    return {
        "version": literals.safe_text(model.compiler_version),
        "source": source,
        "module_doc": f"{literals.safe_text(model.name)}: {summary}",
        "class_name": plan.class_name,
        "summary": summary,
        "dataflow": literals.dataflow(model),
        "features": [fit(literals.feature(f) + ",", 8, entry=True) for f in model.features],
        "tasks": [fit(literals.task(t) + ",", 8, entry=True) for t in model.tasks],
        "constraints": fit(f"constraints = {constraints}", 4),
        "weighting": fit(f"weighting = {literals.weighting(model.weighting)}", 4),
        "gate_banks": [fit(bank, 8, entry=True) for bank in banks],
        "expert_pools": [fit(pool, 8, entry=True) for pool in pools],
        "init": [_init(module).at(8, width) for module in plan.modules],
        "steps": [_step(step).at(8, width) for step in plan.steps],
        "heads": [_head(head).at(12, width, entry=True) for head in plan.heads],
        "predictions": [fit(PREDICT[p.output](p), 8) for p in plan.predictions],
        "outputs": fit(f"return {{{outputs}}}", 8),
    }


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1] or "spec.mtl"


def _trace(lines: tuple[int, ...]) -> str:
    """``line 3``; ``lines 10-12`` for consecutive lines, else ``lines 10, 14``."""
    if len(lines) == 1:
        return f"line {lines[0]}"
    if list(lines) == list(range(lines[0], lines[-1] + 1)):
        return f"lines {lines[0]}-{lines[-1]}"
    return f"lines {', '.join(str(line) for line in lines)}"


def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _dims(dims: tuple[int, ...]) -> str:
    return "[" + ", ".join(integer(d) for d in dims) + "]"


def _block_args(block: Block) -> list[str]:
    args = [integer(block.in_dim), _dims(block.dims)]
    if block.activation is not ir.Activation.relu:
        args.append(f"activation={quote(block.activation.value)}")
    if block.dropout:
        args.append(f"dropout={number(block.dropout)}")
    if block.norm is not ir.Norm.none:
        args.append(f"norm={quote(block.norm.value)}")
    if not block.bias:
        args.append("bias=False")
    return args


def _layer_options(activation: ir.Activation, norm: ir.Norm, dropout: float) -> list[str]:
    """The options of a gate's hidden layers, defaults left out."""
    args = []
    if activation is not ir.Activation.relu:
        args.append(f"activation={quote(activation.value)}")
    if norm is not ir.Norm.none:
        args.append(f"norm={quote(norm.value)}")
    if dropout:
        args.append(f"dropout={number(dropout)}")
    return args


# -- __init__: one line per module, by its kind -----------------------------------------


def _init(module: Any) -> _Line:
    code, above = INIT[type(module)](module)
    return _Line(f"self.{module.attr} = {code}", _trace(module.lines), above)


def _embedding(module: Embedding) -> tuple[str, tuple[str, ...]]:
    return f"nn.Embedding({integer(module.vocab)}, {integer(module.dim)})", ()


def _mlp(module: MlpModule) -> tuple[str, tuple[str, ...]]:
    return f"rt.MLP({', '.join(_block_args(module.block))})", ()


def _experts(module: ExpertsModule) -> tuple[str, tuple[str, ...]]:
    layer = "rt.ExpertPool" if module.batched else "rt.Experts"
    args = _block_args(module.block)
    args.insert(2, f"num_experts={integer(module.count)}")
    return f"{layer}({', '.join(args)})", ()


def _gate(gate: GateModule) -> tuple[str, tuple[str, ...]]:
    """``rt.SoftmaxGate`` (-O0), ``rt.Gate`` (one gate, -O1) or ``rt.GateBank`` with a comment
    above it saying what each of its gates mixes."""
    args = [integer(gate.in_dim), f"num_experts={integer(gate.num_experts)}"]
    bank = gate.banked and gate.num_gates > 1
    if bank:
        args.append(f"num_gates={integer(gate.num_gates)}")
    if gate.hidden:
        args.append(f"hidden={_dims(gate.hidden)}")
    args += _layer_options(gate.activation, gate.norm, gate.dropout)
    if gate.top is not None:
        args.append(f"top={integer(gate.top)}")
    if gate.temperature != 1.0:
        args.append(f"temperature={number(gate.temperature)}")
    if gate.masks is not None and bank:
        masks = _tuple([_tuple([str(i) for i in mask]) for mask in gate.masks])
        args.append(f"masks={masks}")
    elif gate.masks is not None:
        args.append(f"mask={_tuple([str(i) for i in gate.masks[0]])}")
    layer = "rt.GateBank" if bank else "rt.Gate" if gate.banked else "rt.SoftmaxGate"
    return f"{layer}({', '.join(args)})", _mixes(gate) if bank else ()


def _mixes(bank: GateModule) -> tuple[str, ...]:
    """What each gate of a bank mixes: one line, or one line per gate when they differ."""
    sources = {nodes for _, nodes in bank.mixes}
    if len(sources) == 1:
        names = [name for name, _ in bank.mixes]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        return (f"{listed} each mix {' + '.join(next(iter(sources)))}",)
    return tuple(f"{name} mixes {' + '.join(nodes)}" for name, nodes in bank.mixes)


def _scale_gate(gate: ScaleGateModule) -> tuple[str, tuple[str, ...]]:
    """``rt.ScaleGate``; over a pool, or (-O1) the nets of a bank of gates, with a comment."""
    args = [integer(gate.in_dim), integer(gate.width)]
    if gate.hidden:
        args.append(f"hidden={_dims(gate.hidden)}")
    if gate.scale != 1.0:
        args.append(f"scale={number(gate.scale)}")
    args += _layer_options(gate.activation, gate.norm, gate.dropout)
    if gate.num_experts is not None:
        args.append(f"num_experts={integer(gate.num_experts)}")
    above: tuple[str, ...] = ()
    if gate.mixes:
        listed = ", ".join(gate.mixes[:-1]) + f" and {gate.mixes[-1]}"
        above = (f"the nets of the sigmoid gates {listed}, as one pool",)
    return f"rt.ScaleGate({', '.join(args)})", above


def _apg(module: ApgModule) -> tuple[str, tuple[str, ...]]:
    args = [integer(module.in_dim), _dims(module.dims), f"cond_dim={integer(module.cond_dim)}"]
    args.append(f"ranks={_dims(module.ranks)}")
    if module.expands:
        args.append(f"expands={_dims(module.expands)}")
    if not module.shared:
        args.append("shared=False")
    for key, value, default in (
        ("inner", module.inner, ir.Activation.none),
        ("generate", module.generate, ir.Activation.none),
        ("activation", module.activation, ir.Activation.relu),
    ):
        if value is not default:
            args.append(f"{key}={quote(value.value)}")
    return f"rt.APG({', '.join(args)})", ()


def _star(module: StarModule) -> tuple[str, tuple[str, ...]]:
    args = [
        integer(module.in_dim),
        _dims(module.dims),
        f"num_domains={integer(module.num_domains)}",
    ]
    if module.combine is not ir.Combine.mul:
        args.append(f"combine={quote(module.combine.value)}")
    if module.norm is not ir.StarNorm.none:
        args.append(f"norm={quote(module.norm.value)}")
    if module.activation is not ir.Activation.relu:
        args.append(f"activation={quote(module.activation.value)}")
    if module.dropout:
        args.append(f"dropout={number(module.dropout)}")
    if module.num_experts is not None:
        args.append(f"num_experts={integer(module.num_experts)}")
    return f"rt.Star({', '.join(args)})", ()


def _cross(module: CrossModule) -> tuple[str, tuple[str, ...]]:
    node = module.node
    args = [integer(module.dim), f"layers={integer(node.layers)}"]
    if node.form is not ir.CrossForm.vector:
        args.append(f"form={quote(node.form.value)}")
    if node.bias is not ir.DEFAULT_BIAS[node.form]:
        args.append(f"bias={quote(node.bias.value)}")
    if node.form is ir.CrossForm.mix:
        args += [f"rank={integer(node.rank)}", f"experts={integer(node.experts)}"]
    if module.num_experts is not None:
        args.append(f"num_experts={integer(module.num_experts)}")
    return f"rt.Cross({', '.join(args)})", ()


def _stitch(module: StitchModule) -> tuple[str, tuple[str, ...]]:
    args = [integer(module.dim), f"sources={integer(module.sources)}"]
    if module.column:
        args.append(f"column={integer(module.column)}")
    if module.scalar:
        args.append('weights="scalar"')
    return f"rt.CrossStitch({', '.join(args)})", ()


def _route(module: RouteModule) -> tuple[str, tuple[str, ...]]:
    transform = "" if module.transform else ", transform=False"
    return f"rt.Route({integer(module.dim)}, experts={integer(module.experts)}{transform})", ()


def _transfer(module: TransferModule) -> tuple[str, tuple[str, ...]]:
    bias = ", qkv_bias=True" if module.qkv_bias else ""
    return f"rt.AITransfer({integer(module.dim)}{bias})", ()


def _linear(module: HeadModule) -> tuple[str, tuple[str, ...]]:
    bias = "" if module.bias else ", bias=False"
    return f"nn.Linear({integer(module.in_dim)}, {integer(module.out_dim)}{bias})", ()


INIT: dict[type, Callable[[Any], tuple[str, tuple[str, ...]]]] = {
    Embedding: _embedding,
    MlpModule: _mlp,
    ExpertsModule: _experts,
    GateModule: _gate,
    ScaleGateModule: _scale_gate,
    ApgModule: _apg,
    StarModule: _star,
    CrossModule: _cross,
    StitchModule: _stitch,
    RouteModule: _route,
    TransferModule: _transfer,
    HeadModule: _linear,
}


# -- forward_logits: one statement per step, by its kind ---------------------------------


def _step(step: Any) -> _Line:
    code, shape = STEP[type(step)](step)
    return _Line(code, f"{shape}  {_trace(step.lines)}")


def _lookup(step: Lookup) -> tuple[str, str]:
    ids = f"batch[{quote(step.key)}]"
    code = f"self.{step.table}({ids})"
    if step.pool is not None:
        code = f"rt.pool_{step.pool.value}({code}, {ids})"
    return f"{step.local} = {code}", step.shape


def _dense(step: DenseInput) -> tuple[str, str]:
    code = f"batch[{quote(step.key)}]" + (".unsqueeze(-1)" if step.dim == 1 else "")
    return f"{step.local} = {code}", step.shape


def _concat(step: Concat) -> tuple[str, str]:
    parts = step.parts
    code = parts[0] if len(parts) == 1 else f"torch.cat([{', '.join(parts)}], dim=-1)"
    return f"{step.local} = {code}", step.shape


def _call(step: Call) -> tuple[str, str]:
    return f"{step.local} = self.{step.attr}({', '.join(step.args)})", step.shape


def _split(step: Split) -> tuple[str, str]:
    sizes = ", ".join(integer(size) for size in step.sizes)
    return f"{', '.join(step.locals)} = {step.source}.split([{sizes}], dim=1)", step.shape


def _mixture(step: Mixture) -> tuple[str, str]:
    if not step.banked:
        experts = step.experts[0]
        if len(step.experts) > 1:
            experts = f"torch.cat([{', '.join(step.experts)}], dim=1)"
        return f"{step.locals[0]} = rt.mix(self.{step.attr}({step.input}), {experts})", step.shape
    call = f"self.{step.attr}({step.input}, {', '.join(step.experts)})"  # sources as they are
    if len(step.locals) == 1:
        return f"{step.locals[0]} = {call}", step.shape
    return f"{', '.join(step.locals)} = {call}.unbind(1)", f"{step.shape} each"


def _unbind(step: Unbind) -> tuple[str, str]:
    return f"{', '.join(step.locals)} = {step.source}.unbind(1)", step.shape


def _gate_logits(step: GateLogits) -> tuple[str, str]:
    code = f"{', '.join(step.locals)} = self.{step.attr}.logits({step.input}).unbind(1)"
    return code, f"{step.shape} each"


def _scaled(step: Scaled) -> tuple[str, str]:
    code = f"{step.local} = rt.scale_by({step.source}, {step.logits}, {number(step.scale)})"
    return code, step.shape


STEP: dict[type, Callable[[Any], tuple[str, str]]] = {
    Lookup: _lookup,
    DenseInput: _dense,
    Concat: _concat,
    Call: _call,
    Split: _split,
    Mixture: _mixture,
    Unbind: _unbind,
    GateLogits: _gate_logits,
    Scaled: _scaled,
}


# -- the heads and the predictions ----------------------------------------------------


def _head(head: Head) -> _Line:
    logit = f"self.{head.attr}({head.input})"
    code = f"{logit}," if head.classes is not None else f"{logit}.squeeze(-1),"
    return _Line(f"{quote(head.key)}: {code}", f"{head.shape}  {_trace(head.lines)}")


PREDICT: dict[Output, Callable[[Prediction], str]] = {
    Output.sigmoid: lambda p: f"{p.local} = torch.sigmoid(logits[{quote(p.key)}])",
    Output.identity: lambda p: f"{p.local} = logits[{quote(p.key)}]",
    Output.softmax: lambda p: f"{p.local} = torch.softmax(logits[{quote(p.key)}], dim=-1)",
    Output.product: lambda p: f"{p.local} = {' * '.join(p.factors)}",
}
