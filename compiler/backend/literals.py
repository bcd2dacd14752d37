"""Text about a model for its generated module: literals, the docstring, class attributes.

Every string from the spec goes through ``repr()`` (in code) or ``safe_text``
(in docstrings and comments), so a spec can never end a string or a comment.
"""

from __future__ import annotations

import math

from mtlc import ir
from mtlc.backend.linewrap import quote
from mtlc.ir.facts import shape


def integer(n: int) -> str:
    """An int literal; thousands grouped with ``_`` from 10_000 (and round thousands)."""
    return f"{n:_}" if n >= 10_000 or (n >= 1000 and n % 1000 == 0) else str(n)


def number(x: float) -> str:
    """A float literal; a non-finite value is a checker bug, not a user's mistake."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite number {x!r} reached the emitter")
    return repr(float(x))


def safe_text(text: str) -> str:
    """``text`` for a docstring or a comment: backslashes, quotes and unprintables escaped.

    Inside a (non-raw) docstring the escaped text reads back as ``text`` itself.
    """
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def summary(model: ir.Model) -> str:
    """The first line of the docstrings: the description, or a plain default."""
    text = (model.description or "").strip() or "A multi-task model"
    text = safe_text(text)
    return text if text.endswith((".", "!", "?")) else text + "."


# -- the dataflow table of the class docstring ----------------------------------------


WHAT_WIDTH = 64  # a longer description overflows its column rather than widen it


def dataflow(model: ir.Model) -> list[str]:
    """One row per node: name, what it is (as written in the spec), output shape."""
    rows = [(node.name, _what(node), shape(node)) for node in model.nodes]
    name_width = max(len(name) for name, _, _ in rows) + 2
    what_width = max(len(what) for _, what, _ in rows if len(what) <= WHAT_WIDTH) + 2
    return [f"{n.ljust(name_width)}{(w + '  ').ljust(what_width)}{s}".rstrip() for n, w, s in rows]


def _mlp(block: ir.Mlp) -> str:
    options = ""
    if block.activation is not ir.Activation.relu:
        options += f", activation={block.activation.value}"
    if block.dropout:
        options += f", dropout={number(block.dropout)}"
    if block.norm is not ir.Norm.none:
        options += f", norm={block.norm.value}"
    return f"mlp({block.input}, [{', '.join(str(d) for d in block.dims)}]{options})"


def _what(node: ir.Node) -> str:
    if isinstance(node, ir.SparseFeature):
        table = f", table={node.table}" if node.table else ""
        return f"sparse(vocab={integer(node.vocab)}, dim={node.dim}{table})"
    if isinstance(node, ir.SequenceFeature):
        table = f", table={node.table}" if node.table else ""
        return (
            f"sequence(vocab={integer(node.vocab)}, dim={node.dim}, maxlen={node.maxlen}, "
            f"pool={node.pool.value}{table})"
        )
    if isinstance(node, ir.DenseFeature):
        return "dense" if node.dim == 1 else f"dense(dim={node.dim})"
    if isinstance(node, ir.Group):
        members = node.members
        if len(members) > 6:
            listed = f"{', '.join(members[:3])}, ..., {members[-1]}"
            return f"group [{listed}] ({len(members)} members)"
        return f"group [{', '.join(members)}]"
    if isinstance(node, ir.Expert):
        return f"expert x{node.count} {_mlp(node.block)}"
    if isinstance(node, ir.Tower):
        return f"tower {_mlp(node.block)}"
    if isinstance(node, ir.Gate):
        return f"gate {_gate(node)} over [{', '.join(s.name for s in node.sources)}]"
    if isinstance(node, ir.Transfer):
        return f"transfer ait({node.current}, from={node.previous})"
    return _task_what(node)


def _gate(gate: ir.Gate) -> str:
    options = ""
    if gate.top is not None:
        options += f", top={gate.top}"
    if gate.temperature != 1.0:
        options += f", temperature={number(gate.temperature)}"
    if gate.hidden:
        options += f", hidden=[{', '.join(str(d) for d in gate.hidden)}]"
    return f"softmax({gate.input}{options})"


def _task_what(task: ir.Task) -> str:
    options = []
    if task.kind is ir.TaskKind.multiclass:
        options.append(f"classes={task.classes}")
    if task.label is not None:
        options.append(f"label={safe_text(task.label)}")
    kind = task.kind.value + (f"({', '.join(options)})" if options else "")
    if task.factors:
        return f"{kind} = {' * '.join(task.factors)}"
    return f"{kind} of {task.input}" + ("" if task.label is not None else ", latent")


# -- class attributes read by the trainer -------------------------------------------


def feature(node: ir.SparseFeature | ir.SequenceFeature | ir.DenseFeature) -> str:
    """``"name": rt.Feature(...)``, one entry of the ``features`` class attribute."""
    args = [quote(node.name), quote(node.op), f"dim={integer(node.dim)}"]
    if not isinstance(node, ir.DenseFeature):
        args.append(f"vocab={integer(node.vocab)}")
    if isinstance(node, ir.SequenceFeature):
        args += [f"maxlen={integer(node.maxlen)}", f"pool={quote(node.pool.value)}"]
    if getattr(node, "table", None):
        args.append(f"table={quote(node.table)}")
    return f"{quote(node.name)}: rt.Feature({', '.join(args)})"


def task(node: ir.Task) -> str:
    """``"name": rt.Task(...)``, one entry of the ``tasks`` class attribute."""
    args = [quote(node.name), quote(node.kind.value)]
    if node.label is not None:
        args.append(f"label={quote(node.label)}")
    if node.loss is not None:
        args.append(f"loss={quote(node.loss.value)}")
    args.append(f"weight={number(node.weight)}")
    if node.classes is not None:
        args.append(f"classes={integer(node.classes)}")
    if node.factors:
        factors = ", ".join(quote(f) for f in node.factors)
        args.append(f"factors=({factors}{',' if len(node.factors) == 1 else ''})")
    return f"{quote(node.name)}: rt.Task({', '.join(args)})"


def constraint(node: ir.Constraint) -> str:
    return f"rt.Constraint({quote(node.left)}, {quote(node.right)}, weight={number(node.weight)})"


def weighting(node: ir.Weighting) -> str:
    alpha = f", alpha={number(node.alpha)}" if node.alpha is not None else ""
    return f"rt.Weighting({quote(node.kind.value)}{alpha})"
