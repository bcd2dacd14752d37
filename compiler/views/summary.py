"""Explain a checked model: every node's text, output shape and parameter count.

``explain(model)`` reads only the IR's node facts (no torch): ``node.text()``
(the words of the generated docstring), ``node.shape``, and
``node.parameters()``, which follows the parameter layouts of ``mtlc.runtime``
(see ``docs/internals.md``) and is the same at ``-O0`` and ``-O1`` (a batched
pool or a gate bank holds exactly the weights of the modules it replaces).
``render_text`` and ``render_json`` print the result for ``mtlc explain SPEC``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mtlc import ir
from mtlc.ir.spelling import escape

__all__ = ["Row", "Explanation", "explain", "render_text", "render_json"]


@dataclass(frozen=True)
class Row:
    """One node of the model, as ``mtlc explain`` prints it: its IR facts, read off the node."""

    name: str
    op: str  # the IR's node kind (sparse, sequence, dense, group, expert, tower, gate, ...)
    text: str  # the node as the spec writes it: the generated docstring's words
    brief: str  # the short form: the graph's box
    inputs: tuple[str, ...]  # the nodes it reads, in order
    shape: str  # output shape, B = batch size
    params: int  # trainable parameters the node owns
    line: int  # its line in the spec
    shares: str | None = None  # the feature whose embedding table it uses, if not its own


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
            text=node.text(),
            brief=node.brief(),
            inputs=tuple(node.inputs()),
            shape=node.shape,
            params=node.parameters(),
            line=node.span.line,
            shares=getattr(node, "table", None),
        )
        for node in model.nodes
    )
    return Explanation(model.name, model.description, model.source, rows)


# -- rendering ------------------------------------------------------------------------


def render_text(explanation: Explanation) -> str:
    """A table: line, node, output shape, parameters, what the node is; then the total."""
    head = ("line", "node", "output", "params", "what")
    body = [
        (str(row.line), row.name, row.shape, f"{row.params:,}", escape(row.text))
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
    return escape(f"{explanation.model}{about} ({explanation.source})")


def _table_row(cells: tuple[str, ...], widths: list[int]) -> str:
    """Line numbers and counts right-aligned, words left-aligned, two spaces apart."""
    padded = [
        cell.rjust(width) if i in (0, 3) else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ]
    return "  ".join(padded).rstrip()


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
