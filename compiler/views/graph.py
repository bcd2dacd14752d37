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
from mtlc.ir.spelling import escape

__all__ = [
    "Edge",
    "edges",
    "columns",
    "detail",
    "family",
    "title",
    "to_dot",
    "COLOURS",
    "FAMILY",
    "label",
]

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
# The colours each kind of node takes (tests/test_tables.py holds it complete).
FAMILY: dict[type, str] = {
    ir.SparseFeature: "feature",
    ir.SequenceFeature: "feature",
    ir.DenseFeature: "feature",
    ir.Group: "group",
    ir.Expert: "expert",
    ir.Tower: "tower",
    ir.Apg: "tower",
    ir.Star: "tower",
    ir.Cross: "tower",
    ir.CrossPool: "expert",
    ir.Gate: "gate",
    ir.ScaleGate: "gate",
    ir.Stitch: "gate",
    ir.Route: "gate",
    ir.Transfer: "transfer",
    ir.Task: "task",
}


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
        for index, name in enumerate(dict.fromkeys(node.inputs())):
            out.append(Edge(name, node.name, _style(node, index)))
    for rule in model.constraints:
        out.append(Edge(rule.left, rule.right, "constraint", f"<= {rule.weight:g}"))
    return out


def _style(node: ir.Node, index: int) -> str:
    """How the edge into ``node`` from its ``index``-th input is drawn."""
    if isinstance(node, ir.Task) and node.factors:
        return "product"
    return "input" if isinstance(node, ir.Gate | ir.ScaleGate) and index == 0 else "data"


def columns(model: ir.Model) -> dict[str, int]:
    """Each node's column: the longest path from a feature; heads aligned (see the module doc)."""
    column: dict[str, int] = {}
    for node in model.nodes:
        column[node.name] = 1 + max((column[n] for n in node.inputs()), default=-1)
    heads = [t.name for t in model.tasks if t.input is not None]
    last = max((column[name] for name in heads), default=0)
    for task in model.tasks:
        column[task.name] = (
            last if task.input is not None else 1 + max(column[f] for f in task.factors)
        )
    return column


def family(node: ir.Node) -> str:
    """What colours a node's box: ``feature`` for any feature, else the node's kind."""
    return FAMILY[type(node)]


def label(node: ir.Node) -> str:
    """The first line of a box: the node's name, and ``xN`` for a pool of N experts."""
    return node.name + (f" x{node.vectors}" if node.vectors > 1 else "")


def detail(node: ir.Node) -> str:
    """The second line of a box: the node's short form and its output shape."""
    return escape(f"{node.brief()} -> {node.shape}")


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
    return escape(model.name + (f": {model.description}" if model.description else ""))


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
        box = ", shape=box3d" if node.vectors > 1 else ""
        text, tooltip = _quote(f"{label(node)}\n{detail(node)}"), _quote(escape(node.text()))
        lines.append(
            f"  {_quote(node.name)} [label={text}, tooltip={tooltip}, "
            f'fillcolor="{fill}", color="{stroke}"{box}];'
        )
    for edge in edges(model):
        style = _DOT_STYLE[edge.style].replace("{}", edge.label)
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)}{style};")
    heads = [_quote(t.name) for t in model.tasks if t.input is not None]
    if len(heads) > 1:
        lines.append(f"  {{ rank=same; {'; '.join(heads)}; }}")
    return "\n".join(lines) + "\n}\n"
