"""Facts about one IR node that every later stage reads: its output shape.

One place per fact, so the generated docstring, ``mtlc explain`` and
``mtlc graph`` say a node the same way.
"""

from __future__ import annotations

from mtlc import ir

__all__ = ["shape"]


def shape(node: ir.Node) -> str:
    """The output shape: ``[B, E, D]`` for an expert pool, ``[B]`` for a one-logit task."""
    if isinstance(node, ir.Expert):
        return f"[B, {node.count}, {node.width}]"
    if isinstance(node, ir.Task):
        return f"[B, {node.classes}]" if node.kind is ir.TaskKind.multiclass else "[B]"
    return f"[B, {node.width}]"
