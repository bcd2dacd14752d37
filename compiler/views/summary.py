"""Explain a checked model: every node's kind, output shape and parameter count.

``explain(model)`` reads only the IR (no torch): the counts follow the
parameter layouts of ``mtlc.runtime`` (see ``docs/internals.md``), and are the
same at ``-O0`` and ``-O1`` (a batched pool or a gate bank holds exactly the
weights of the modules it replaces). ``render_text`` and ``render_json`` print
the result for ``mtlc explain SPEC``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mtlc import ir
from mtlc.ir.facts import shape

__all__ = [
    "Row",
    "Explanation",
    "explain",
    "render_text",
    "render_json",
    "inputs",
    "shape",
    "printable",
]


@dataclass(frozen=True)
class Row:
    """One node of the model, as ``mtlc explain`` prints it."""

    name: str
    op: str  # the IR's node kind (sparse, sequence, dense, group, expert, tower, gate, ...)
    kind: str  # what the node is, in words
    inputs: tuple[str, ...]  # the nodes it reads, in order
    shape: str  # output shape, B = batch size
    params: int  # trainable parameters the node owns
    line: int  # its line in the spec
    shares: str | None = None  # the feature whose embedding table it uses, if not its own

    @property
    def input(self) -> str:
        """What the table's input column shows: a gate's input (its sources are in ``kind``),
        a transfer's current input (``previous`` is in ``kind``), else every input."""
        return self.inputs[0] if self.op in ("gate", "transfer") else ", ".join(self.inputs)


@dataclass(frozen=True)
class Explanation:
    model: str
    description: str | None
    source: str
    rows: tuple[Row, ...]

    @property
    def total(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def embedding_params(self) -> int:
        return sum(row.params for row in self.rows if row.op in ("sparse", "sequence"))


def explain(model: ir.Model) -> Explanation:
    """One row per node of ``model``, in declaration (dataflow) order."""
    rows = tuple(
        Row(
            name=node.name,
            op=node.op,
            kind=_kind(node),
            inputs=tuple(ir.inputs_of(node)),
            shape=shape(node),
            params=_params(node),
            line=node.span.line,
            shares=getattr(node, "table", None),
        )
        for node in model.nodes
    )
    return Explanation(model.name, model.description, model.source, rows)


# -- parameter counts (the layouts of mtlc.runtime) ----------------------------------


def linear_params(in_dim: int, out_dim: int, bias: bool = True) -> int:
    """``nn.Linear(in_dim, out_dim)``: weight ``[out, in]`` and bias ``[out]``."""
    return in_dim * out_dim + (out_dim if bias else 0)


def mlp_params(
    in_dim: int, dims: list[int], norm: ir.Norm = ir.Norm.none, activation=ir.Activation.relu
) -> int:
    """``rt.MLP``: per layer a Linear, a norm (batch or layer: 2 per unit), a PReLU slope."""
    total = 0
    for width_in, width in zip([in_dim, *dims[:-1]], dims):
        total += linear_params(width_in, width)
        total += 2 * width if norm is not ir.Norm.none else 0
        total += 1 if activation is ir.Activation.prelu else 0
    return total


def _block_params(block: ir.Mlp) -> int:
    return mlp_params(block.input_width, block.dims, block.norm, block.activation)


def _params(node: ir.Node) -> int:
    if isinstance(node, (ir.SparseFeature, ir.SequenceFeature)):
        return 0 if node.table else node.vocab * node.dim
    if isinstance(node, ir.Expert):
        return node.count * _block_params(node.block)
    if isinstance(node, ir.Tower):
        return _block_params(node.block)
    if isinstance(node, ir.Gate):
        hidden = mlp_params(node.input_width, node.hidden) if node.hidden else 0
        last = node.hidden[-1] if node.hidden else node.input_width
        return hidden + linear_params(last, node.num_experts)
    if isinstance(node, ir.Transfer):  # info (with bias), then query, key, value
        return linear_params(node.width, node.width) + 3 * linear_params(
            node.width, node.width, bias=node.qkv_bias
        )
    if isinstance(node, ir.Task) and node.input is not None:
        logits = node.classes if node.kind is ir.TaskKind.multiclass else 1
        return linear_params(node.input_width or 0, logits or 1)
    return 0  # dense features, groups, product tasks


# -- what a node is, in words ---------------------------------------------------------


def _mlp_kind(block: ir.Mlp) -> str:
    text = f"mlp [{', '.join(str(d) for d in block.dims)}]"
    if block.activation is not ir.Activation.relu:
        text += f" {block.activation.value}"
    if block.norm is not ir.Norm.none:
        text += f" norm={block.norm.value}"
    if block.dropout:
        text += f" dropout={block.dropout:g}"
    return text


def _kind(node: ir.Node) -> str:
    if isinstance(node, ir.SparseFeature):
        return f"sparse(vocab={node.vocab}, dim={node.dim})"
    if isinstance(node, ir.SequenceFeature):
        return (
            f"sequence(vocab={node.vocab}, dim={node.dim}, maxlen={node.maxlen}, "
            f"pool={node.pool.value})"
        )
    if isinstance(node, ir.DenseFeature):
        return "dense" if node.dim == 1 else f"dense(dim={node.dim})"
    if isinstance(node, ir.Group):
        return f"group of {len(node.members)}"
    if isinstance(node, ir.Expert):
        return f"expert x{node.count} {_mlp_kind(node.block)}"
    if isinstance(node, ir.Tower):
        return f"tower {_mlp_kind(node.block)}"
    if isinstance(node, ir.Gate):
        return _gate_kind(node)
    if isinstance(node, ir.Transfer):
        return f"transfer ait from {node.previous}" + (" bias=true" if node.qkv_bias else "")
    return _task_kind(node)


def _gate_kind(gate: ir.Gate) -> str:
    sources = ", ".join(s.name for s in gate.sources)
    text = f"gate over [{sources}] ({gate.num_experts} experts)"
    if gate.top is not None:
        text += f" top={gate.top}"
    if gate.temperature != 1.0:
        text += f" temperature={gate.temperature:g}"
    if gate.hidden:
        text += f" hidden=[{', '.join(str(d) for d in gate.hidden)}]"
    return text


def _task_kind(task: ir.Task) -> str:
    options = []
    if task.classes is not None:
        options.append(f"classes={task.classes}")
    if task.label is not None:
        options.append(f"label={task.label}")
    text = task.kind.value + (f"({', '.join(options)})" if options else "")
    if task.factors:
        return f"{text} = {' * '.join(task.factors)}"
    return text if task.label is not None else f"{text}, latent"


# -- rendering ------------------------------------------------------------------------

_INPUTS_WIDTH = 28  # a longer input list is cut with "..."; --format json has it whole


def render_text(explanation: Explanation) -> str:
    """A table: line, node, kind, input, output shape, parameters; then the total."""
    head = ("line", "node", "kind", "input", "output", "params")
    body = [
        (
            str(row.line),
            row.name,
            printable(row.kind + (f", shares {row.shares}" if row.shares else "")),
            _cut(row.input),
            row.shape,
            f"{row.params:,}",
        )
        for row in explanation.rows
    ]
    widths = [max(len(cells[i]) for cells in [head, *body]) for i in range(len(head))]
    lines = [_title(explanation), ""]
    for cells in [head, *body]:
        lines.append(_table_row(cells, widths))
    total, embeddings = explanation.total, explanation.embedding_params
    lines.append("")
    lines.append(
        f"total {total:,} parameters: embeddings {embeddings:,}, "
        f"networks {total - embeddings:,} (the same at -O0 and -O1)"
    )
    return "\n".join(lines) + "\n"


def _title(explanation: Explanation) -> str:
    about = f": {explanation.description}" if explanation.description else ""
    return printable(f"{explanation.model}{about} ({explanation.source})")


def printable(text: str) -> str:
    """``text`` with unprintable characters (a newline in a description) escaped, for a terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _table_row(cells: tuple[str, ...], widths: list[int]) -> str:
    """Line numbers and counts right-aligned, words left-aligned, two spaces apart."""
    padded = [
        cell.rjust(width) if i in (0, 5) else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ]
    return "  ".join(padded).rstrip()


def _cut(text: str) -> str:
    return text if len(text) <= _INPUTS_WIDTH else text[: _INPUTS_WIDTH - 3] + "..."


def render_json(explanation: Explanation) -> str:
    """The explanation as JSON: the model, one object per node, and the totals."""
    nodes = [{**asdict(row), "inputs": list(row.inputs)} for row in explanation.rows]
    document = {
        "model": explanation.model,
        "description": explanation.description,
        "source": explanation.source,
        "nodes": nodes,
        "total_params": explanation.total,
        "embedding_params": explanation.embedding_params,
    }
    return json.dumps(document, indent=2) + "\n"
