"""Emission: a plan becomes the source of one PyTorch module.

Python builds a view of plain strings (each line's code and its comment),
laid out in black's style (``backend.linewrap`` runs black in process on every
statement that needs breaking); the Jinja template only prints it; then
``compile()`` checks the result. Nothing from the spec reaches the output
except validated identifiers, numbers, and strings through ``repr()`` (or, in
docstrings and comments, escaped so that they cannot end them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jinja2

from mtlc.backend import literals
from mtlc.backend.linewrap import fit, quote
from mtlc.backend.literals import integer, number
from mtlc.backend.plan import (
    Call,
    Concat,
    DenseInput,
    Embedding,
    ExpertsModule,
    GateModule,
    Head,
    HeadModule,
    Lookup,
    Mixture,
    MlpModule,
    Plan,
    Prediction,
    Split,
    TransferModule,
)


def emit(plan: Plan) -> str:
    """The generated module of ``plan``, formatted; the same plan gives the same bytes."""
    text = _template().render(**_view(plan))
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

    def at(self, indent: int, entry: bool = False) -> str:
        """Laid out at column ``indent`` (see ``backend.linewrap.fit``)."""
        return fit(self.code, indent, self.comment, entry=entry)


def _view(plan: Plan) -> dict:
    model = plan.model
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
        "init": [_init(m, source).at(8) for m in plan.modules],
        "steps": [_step(s, source).at(8) for s in plan.steps],
        "heads": [_head(h, source).at(12, entry=True) for h in plan.heads],
        "predictions": [fit(_prediction(p), 8) for p in plan.predictions],
        "outputs": fit(f"return {{{outputs}}}", 8),
    }


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1] or "spec.mtl"


def _trace(source: str, lines: tuple[int, ...]) -> str:
    """``spec.mtl:3``, ``spec.mtl:10-12`` for consecutive lines, else ``spec.mtl:10,14``."""
    if len(lines) > 1 and list(lines) == list(range(lines[0], lines[-1] + 1)):
        return f"{source}:{lines[0]}-{lines[-1]}"
    return f"{source}:{','.join(str(line) for line in lines)}"


def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _dims(dims: tuple[int, ...]) -> str:
    return "[" + ", ".join(integer(d) for d in dims) + "]"


def _block_args(block) -> str:
    args = [integer(block.in_dim), _dims(block.dims)]
    if block.activation != "relu":
        args.append(f"activation={quote(block.activation)}")
    if block.dropout:
        args.append(f"dropout={number(block.dropout)}")
    if block.norm != "none":
        args.append(f"norm={quote(block.norm)}")
    return args


def _init(module, source: str) -> _Line:
    trace = _trace(source, module.lines)
    if isinstance(module, Embedding):
        code = f"nn.Embedding({integer(module.vocab)}, {integer(module.dim)})"
    elif isinstance(module, MlpModule):
        code = f"rt.MLP({', '.join(_block_args(module.block))})"
    elif isinstance(module, ExpertsModule):
        layer = "rt.ExpertPool" if module.batched else "rt.Experts"
        args = _block_args(module.block)
        args.insert(2, f"num_experts={integer(module.count)}")
        code = f"{layer}({', '.join(args)})"
    elif isinstance(module, GateModule):
        code = _gate_init(module)
    elif isinstance(module, TransferModule):
        bias = ", qkv_bias=True" if module.qkv_bias else ""
        code = f"rt.AITransfer({integer(module.dim)}{bias})"
    elif isinstance(module, HeadModule):
        code = f"nn.Linear({integer(module.in_dim)}, {integer(module.out_dim)})"
    else:
        raise TypeError(f"no emitter for {type(module).__name__}")
    return _Line(f"self.{module.attr} = {code}", trace)


def _gate_init(gate: GateModule) -> str:
    args = [integer(gate.in_dim), f"num_experts={integer(gate.num_experts)}"]
    if gate.banked:
        args.append(f"num_gates={integer(gate.num_gates)}")
    if gate.hidden:
        args.append(f"hidden={_dims(gate.hidden)}")
    if gate.top is not None:
        args.append(f"top={integer(gate.top)}")
    if gate.temperature != 1.0:
        args.append(f"temperature={number(gate.temperature)}")
    if gate.masks is not None:
        masks = _tuple([_tuple([str(i) for i in mask]) for mask in gate.masks])
        args.append(f"masks={masks}")
    layer = "rt.GateBank" if gate.banked else "rt.SoftmaxGate"
    return f"{layer}({', '.join(args)})"


def _step(step, source: str) -> _Line:
    if isinstance(step, Lookup):
        ids = f"batch[{quote(step.key)}]"
        code = f"self.{step.table}({ids})"
        if step.pool is not None:
            code = f"rt.pool_{step.pool}({code}, {ids})"
        return _Line(f"{step.local} = {code}", f"[B, {step.width}]  {source}:{step.line}")
    if isinstance(step, DenseInput):
        code = f"batch[{quote(step.key)}]" + (".unsqueeze(-1)" if step.dim == 1 else "")
        return _Line(f"{step.local} = {code}", f"[B, {step.dim}]  {source}:{step.line}")
    if isinstance(step, Concat):
        code = (
            step.parts[0]
            if len(step.parts) == 1
            else f"torch.cat([{', '.join(step.parts)}], dim=-1)"
        )
        return _Line(f"{step.local} = {code}", f"[B, {step.width}]  {source}:{step.line}")
    if isinstance(step, Call):
        code = f"self.{step.attr}({', '.join(step.args)})"
        return _Line(f"{step.local} = {code}", f"{step.shape}  {_trace(source, step.lines)}")
    if isinstance(step, Split):
        sizes = ", ".join(integer(size) for size in step.sizes)
        code = f"{', '.join(step.locals)} = {step.source}.split([{sizes}], dim=1)"
        shapes = ", ".join(f"[B, {size}, {step.width}]" for size in step.sizes)
        return _Line(code, f"{shapes}  {_trace(source, step.lines)}")
    if isinstance(step, Mixture):
        return _mixture(step, source)
    raise TypeError(f"no emitter for {type(step).__name__}")


def _mixture(step: Mixture, source: str) -> _Line:
    experts = (
        step.experts[0]
        if len(step.experts) == 1
        else f"torch.cat([{', '.join(step.experts)}], dim=1)"
    )
    trace = _trace(source, step.lines)
    if not step.banked:
        code = f"rt.mix(self.{step.attr}({step.input}), {experts})"
        return _Line(f"{step.locals[0]} = {code}", f"[B, {step.width}]  {trace}")
    call = f"self.{step.attr}({step.input}, {', '.join(step.experts)})"  # the bank takes the sources as they are
    if len(step.locals) == 1:
        return _Line(f"{step.locals[0]} = {call}.squeeze(1)", f"[B, {step.width}]  {trace}")
    targets = ", ".join(step.locals)
    return _Line(f"{targets} = {call}.unbind(1)", f"[B, {step.width}] each  {trace}")


def _head(head: Head, source: str) -> _Line:
    logit = f"self.{head.attr}({head.input})"
    if head.classes is None:
        return _Line(f"{quote(head.key)}: {logit}.squeeze(-1),", f"[B]  {source}:{head.line}")
    return _Line(f"{quote(head.key)}: {logit},", f"[B, {head.classes}]  {source}:{head.line}")


def _prediction(p: Prediction) -> str:
    logit = f"logits[{quote(p.key)}]"
    if p.kind == "product":
        return f"{p.local} = {' * '.join(p.factors)}"
    if p.kind == "sigmoid":
        return f"{p.local} = torch.sigmoid({logit})"
    if p.kind == "softmax":
        return f"{p.local} = torch.softmax({logit}, dim=-1)"
    return f"{p.local} = {logit}"
