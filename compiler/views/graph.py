"""The graph of a checked model: its edges, columns and box texts, and Graphviz DOT text.

The SVG drawing (no graphviz needed) is ``views.svg``, built on these.

The drawing reads left to right in dataflow order. A node's column is the
longest path to it from a feature; tasks with a head share the last column
of heads, and a product task sits one column after its factors. Within a
column nodes keep their declaration order. Edges: data (solid), a gate's
input (grey), a product task's factors (dashed), constraints (dashed red,
``a <= b``, drawn beside the tasks' column).
"""

from __future__ import annotations

from dataclasses import dataclass

from mtlc import ir
from mtlc.ir.facts import shape
from mtlc.views.summary import printable

__all__ = ["Edge", "edges", "columns", "detail", "family", "title", "to_dot", "COLOURS"]

# fill and stroke per node kind
COLOURS = {
    "feature": ("#dbeafe", "#3b82f6"),
    "group": ("#f3f4f6", "#6b7280"),
    "expert": ("#ffedd5", "#ea580c"),
    "gate": ("#fef9c3", "#ca8a04"),
    "tower": ("#dcfce7", "#16a34a"),
    "transfer": ("#f3e8ff", "#9333ea"),
    "task": ("#fee2e2", "#dc2626"),
}
_FEATURES = ("sparse", "sequence", "dense")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    style: str  # "data", "input" (a gate's input), "product" or "constraint"
    label: str = ""


def edges(model: ir.Model) -> list[Edge]:
    """Every dataflow edge (once per pair) in declaration order, then the constraints."""
    out = []
    for node in model.nodes:
        product = isinstance(node, ir.Task) and bool(node.factors)
        for index, name in enumerate(dict.fromkeys(ir.inputs_of(node))):
            gate_input = isinstance(node, ir.Gate) and index == 0 and name == node.input
            style = "product" if product else "input" if gate_input else "data"
            out.append(Edge(name, node.name, style))
    for rule in model.constraints:
        out.append(Edge(rule.left, rule.right, "constraint", f"<= {rule.weight:g}"))
    return out


def columns(model: ir.Model) -> dict[str, int]:
    """Each node's column: the longest path from a feature; heads aligned (see the module doc)."""
    column: dict[str, int] = {}
    for node in model.nodes:
        column[node.name] = 1 + max((column[n] for n in ir.inputs_of(node)), default=-1)
    heads = [t.name for t in model.tasks if t.input is not None]
    last = max((column[name] for name in heads), default=0)
    for task in model.tasks:
        column[task.name] = (
            last if task.input is not None else 1 + max(column[f] for f in task.factors)
        )
    return column


def family(node: ir.Node) -> str:
    """What colours a node's box: ``feature`` for any feature, else the node's kind."""
    return "feature" if node.op in _FEATURES else node.op


def detail(node: ir.Node) -> str:
    """The second line of a box: the node's kind, briefly, and its output shape."""
    dims = ", ".join(str(d) for d in getattr(getattr(node, "block", None), "dims", []))
    if isinstance(node, (ir.SparseFeature, ir.SequenceFeature)) and node.table:
        kind = f"{node.op}, table {node.table}"
    elif isinstance(node, ir.SparseFeature):
        kind = f"sparse {node.vocab}x{node.dim}"
    elif isinstance(node, ir.SequenceFeature):
        kind = f"sequence {node.vocab}x{node.dim} {node.pool.value}"
    elif isinstance(node, (ir.Expert, ir.Tower)):
        kind = f"mlp [{dims}]"
    elif isinstance(node, ir.Gate):
        kind = f"softmax over {node.num_experts}"
    elif isinstance(node, ir.Transfer):
        kind = "ait"
    elif isinstance(node, ir.Task):
        kind = node.kind.value + (f" {node.label}" if node.label is not None else ", latent")
    else:
        kind = node.op
    return printable(f"{kind} -> {shape(node)}")


# -- DOT ---------------------------------------------------------------------------------

_DOT_STYLE = {
    "data": "",
    "input": ' [color="#9ca3af"]',
    "product": " [style=dashed]",
    "constraint": ' [style=dashed, color="#dc2626", constraint=false, label="{}"]',
}


def _quote(text: str) -> str:
    """A DOT string literal (names are identifiers, labels may be any text)."""
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def title(model: ir.Model) -> str:
    """The drawing's title: the model's name and description, printable."""
    return printable(model.name + (f": {model.description}" if model.description else ""))


def to_dot(model: ir.Model) -> str:
    """The model as a Graphviz digraph (``dot -Tsvg`` draws it); the same model, the same text."""
    lines = [
        f"digraph {_quote(model.name)} {{",
        f"  graph [rankdir=LR, labelloc=t, fontname=Helvetica, label={_quote(title(model))}];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=11];',
        '  edge [color="#4b5563", arrowsize=0.7];',
    ]
    for node in model.nodes:
        fill, stroke = COLOURS[family(node)]
        name = node.name + (f" x{node.count}" if isinstance(node, ir.Expert) else "")
        box = ", shape=box3d" if isinstance(node, ir.Expert) and node.count > 1 else ""
        label = _quote(f"{name}\n{detail(node)}")
        lines.append(
            f'  {_quote(node.name)} [label={label}, fillcolor="{fill}", color="{stroke}"{box}];'
        )
    for edge in edges(model):
        style = _DOT_STYLE[edge.style].replace("{}", edge.label)
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)}{style};")
    heads = [_quote(t.name) for t in model.tasks if t.input is not None]
    if len(heads) > 1:
        lines.append(f"  {{ rank=same; {'; '.join(heads)}; }}")
    return "\n".join(lines) + "\n}\n"
