"""The SVG drawing of a model, laid out here: no graphviz, no other library.

Columns come from ``views.graph.columns`` (left to right, dataflow order);
each column is centred and keeps declaration order. A data edge is a chain
of cubic curves with level tangents that crosses each column it passes
through a gap between boxes, and enters and leaves boxes at ports spread
along their sides. Constraints are dashed arcs to the right of the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from mtlc import ir
from mtlc.views.graph import COLOURS, Edge, columns, detail, edges, family, label, title

__all__ = ["draw"]

_CHAR, _SMALL_CHAR = 7.3, 6.7  # advance of a 12px / 11px monospace character
_BOX_H, _ROW_GAP, _COL_GAP, _MARGIN, _TITLE_H = 40, 20, 64, 20, 34
_STACK = 4  # offset of each card behind an expert pool's box
_FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"


@dataclass(frozen=True)
class _Box:
    node: ir.Node
    x: float
    y: float
    width: float
    column: int

    @property
    def cards(self) -> int:
        """The cards drawn behind the box: one per further expert of a pool, at most two."""
        return min(self.node.vectors, 3) - 1

    @property
    def mid(self) -> float:
        return self.y + _BOX_H / 2


def _layout(model: ir.Model) -> tuple[dict[str, _Box], float, float]:
    """Boxes placed by column, each column centred; returns them, the width and the height."""
    column = columns(model)
    by_column: dict[int, list[ir.Node]] = {}
    for node in model.nodes:
        by_column.setdefault(column[node.name], []).append(node)
    tallest = max(len(nodes) for nodes in by_column.values())
    height = tallest * (_BOX_H + _ROW_GAP) - _ROW_GAP
    boxes, x = {}, float(_MARGIN)
    for index, nodes in sorted(by_column.items()):
        width = max(_box_width(n) for n in nodes)
        top = _MARGIN + _TITLE_H + (height - len(nodes) * (_BOX_H + _ROW_GAP) + _ROW_GAP) / 2
        for row, node in enumerate(nodes):
            boxes[node.name] = _Box(node, x, top + row * (_BOX_H + _ROW_GAP), width, index)
        x += width + _COL_GAP
    arcs = 80 + 14 * len(model.constraints) if model.constraints else 0  # see _svg_edge
    width = max(x - _COL_GAP + _MARGIN + arcs, 2 * _MARGIN + 8.6 * len(title(model)))
    return boxes, width, _MARGIN * 2 + _TITLE_H + height


def _ports(flows: list[Edge], boxes: dict[str, _Box]) -> dict[tuple[str, str], list[float]]:
    """Where each data edge leaves its source and enters its target (``[y_out, y_in]``).

    The edges at one side of a box are spread along it, ordered by the height
    of the box at their other end, so that they do not cross at the box.
    """
    ports = {(e.source, e.target): [0.0, 0.0] for e in flows}
    for end, here, there in ((0, "source", "target"), (1, "target", "source")):
        sides: dict[str, list[Edge]] = {}
        for edge in flows:
            sides.setdefault(getattr(edge, here), []).append(edge)
        for name, side in sides.items():
            side.sort(key=lambda e: boxes[getattr(e, there)].mid)
            step = min(7.0, 0.7 * _BOX_H / len(side))
            for i, edge in enumerate(side):
                offset = (i - (len(side) - 1) / 2) * step
                ports[edge.source, edge.target][end] = boxes[name].mid + offset
    return ports


def _free_y(y: float, column: list[_Box]) -> float:
    """``y`` moved off the boxes of a column it would cross, into the nearest gap."""
    for box in column:
        top = box.y - box.cards * _STACK
        if top - 4 < y < box.y + _BOX_H + 4:
            above = top - (_ROW_GAP - box.cards * _STACK) / 2
            below = box.y + _BOX_H + _ROW_GAP / 2
            return above if y - above < below - y else below
    return y


def _route(x1: float, y1: float, x2: float, y2: float, passes: list[list[_Box]]) -> str:
    """A path of cubic curves with level tangents, through the gaps of the columns it passes."""
    points: list[tuple[float, float, float]] = []
    for column in passes:
        left, right = column[0].x - 6, column[0].x + max(b.width for b in column) + 6
        y = _free_y(y1 + (y2 - y1) * (left - x1) / (x2 - x1), column)
        points.append((left, right, y))
    path, (px, py) = f"M{x1:.1f},{y1:.1f}", (x1, y1)
    for left, right, y in [*points, (x2, x2, y2)]:
        dx = max((left - px) / 2, 12)
        path += f" C{px + dx:.1f},{py:.1f} {left - dx:.1f},{y:.1f} {left:.1f},{y:.1f}"
        if right > left:
            path += f" L{right:.1f},{y:.1f}"
        px, py = right, y
    return path


def _box_width(node: ir.Node) -> float:
    return max(len(label(node)) * _CHAR, len(detail(node)) * _SMALL_CHAR) + 20


def _svg_box(box: _Box) -> list[str]:
    node = box.node
    fill, stroke = COLOURS[family(node)]
    out = [f'<g class="node {family(node)}" id="node-{escape(node.name)}">']
    out.append(f"<title>{escape(node.text())}</title>")  # the node as the spec writes it
    attrs = f'width="{box.width:.1f}" height="{_BOX_H}" rx="6" fill="{fill}" stroke="{stroke}"'
    for depth in range(box.cards, 0, -1):  # an expert pool: a stack of cards
        x, y = box.x + _STACK * depth, box.y - _STACK * depth
        out.append(f'<rect class="stack" x="{x:.1f}" y="{y:.1f}" {attrs}/>')
    out.append(f'<rect class="box" x="{box.x:.1f}" y="{box.y:.1f}" {attrs}/>')
    name = escape(label(node))
    cx = box.x + box.width / 2
    out.append(
        f'<text x="{cx:.1f}" y="{box.y + 16:.1f}" font-size="12" font-weight="bold">{name}</text>'
    )
    out.append(
        f'<text x="{cx:.1f}" y="{box.y + 31:.1f}" font-size="11" fill="#374151">'
        f"{escape(detail(node))}</text>"
    )
    return out + ["</g>"]


def _svg_edge(
    edge: Edge, boxes: dict[str, _Box], by_column: dict[int, list[_Box]], ports: dict, bend: float
) -> str:
    """One edge: a data edge routed by ``_route`` from its ports, or a constraint's arc."""
    a, b = boxes[edge.source], boxes[edge.target]
    label = ""
    if edge.style == "constraint":  # an arc to the right of both tasks
        x1, x2 = a.x + a.width, b.x + b.width
        xc = max(x1, x2) + bend
        path = (
            f"M{x1:.1f},{a.mid:.1f} C{xc:.1f},{a.mid:.1f} "
            f"{xc:.1f},{b.mid:.1f} {x2 + 2:.1f},{b.mid:.1f}"
        )
        label = (
            f'<text x="{xc - 4:.1f}" y="{(a.mid + b.mid) / 2 + 4:.1f}" font-size="11" '
            f'fill="#dc2626" style="text-anchor:start">{escape(edge.label)}</text>'
        )
    else:
        y1, y2 = ports[edge.source, edge.target]
        passes = [
            by_column[column] for column in range(a.column + 1, b.column) if column in by_column
        ]
        path = _route(a.x + a.width, y1, b.x - 2, y2, passes)
    ends = f'data-from="{escape(edge.source)}" data-to="{escape(edge.target)}"'
    arrow = f'marker-end="url(#arrow-{edge.style})"'
    return f'<path class="edge {edge.style}" {ends} d="{path}" {arrow}/>{label}'


_EDGE_CSS = {
    "data": "stroke:#4b5563",
    "input": "stroke:#9ca3af",
    "product": "stroke:#4b5563;stroke-dasharray:5 4",
    "constraint": "stroke:#dc2626;stroke-dasharray:5 4",
}


def draw(model: ir.Model) -> str:
    """The model drawn as a standalone SVG document (plain text, no external resources)."""
    boxes, width, height = _layout(model)
    heading = title(model)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{_FONT}">',
        f"<title>{escape(heading)}</title>",
        "<defs>",
    ]
    for style, css in _EDGE_CSS.items():
        colour = css.split(";")[0].split(":")[1]
        out.append(
            f'<marker id="arrow-{style}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/>'
            "</marker>"
        )
    out.append("</defs>")
    out.append("<style>")
    out += [
        f".edge.{style} {{ fill:none; stroke-width:1.3; {css} }}"
        for style, css in _EDGE_CSS.items()
    ]
    out.append("text { text-anchor: middle; }")
    out.append("</style>")
    out.append(f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>')
    out.append(
        f'<text x="{_MARGIN}" y="{_MARGIN + 12}" font-size="14" font-weight="bold" '
        f'style="text-anchor:start">{escape(heading)}</text>'
    )
    every = edges(model)
    flows = [edge for edge in every if edge.style != "constraint"]
    ports, bends = _ports(flows, boxes), iter(range(30, 10_000, 14))
    by_column: dict[int, list[_Box]] = {}  # the boxes an edge passes, grouped once (in row order)
    for box in boxes.values():
        by_column.setdefault(box.column, []).append(box)
    for edge in every:
        bend = next(bends) if edge.style == "constraint" else 0
        out.append(_svg_edge(edge, boxes, by_column, ports, bend))
    for node in model.nodes:
        out += _svg_box(boxes[node.name])
    return "\n".join(out) + "\n</svg>\n"
