"""The size of a checked model: a parameter count close to the exact one, with a cap.

Part of ``mtlc.check``: a spec whose model could not be built in memory (a
vocab of billions, layers of a million units) gets a diagnostic (MTL405)
instead of a module that fails when constructed.

The count is not ``mtlc.explain``'s exact one: it leaves out norms and PReLU
slopes and always counts a transfer's Q/K/V biases, so it can be a little
above or below. Kept apart so that the MTL405 cap decides as it always has;
``explain`` reports the exact count.
"""

from __future__ import annotations

from mtlc import ir
from mtlc.diagnostics import Reporter
from mtlc.check.arguments import MAX_PARAMETERS

__all__ = ["parameters", "check_size"]


def _mlp(block: ir.Mlp) -> int:
    total, width = 0, block.input_width
    for dim in block.dims:
        total += width * dim + dim
        width = dim
    return total


def parameters(node: ir.Node) -> int:
    """The parameters a node owns (weights and biases; norms and PReLU are ignored)."""
    if isinstance(node, (ir.SparseFeature, ir.SequenceFeature)):
        return 0 if node.table else node.vocab * node.dim
    if isinstance(node, ir.Expert):
        return node.count * _mlp(node.block)
    if isinstance(node, ir.Tower):
        return _mlp(node.block)
    if isinstance(node, ir.Gate):
        width, total = node.input_width, 0
        for dim in [*node.hidden, node.num_experts]:
            total += width * dim + dim
            width = dim
        return total
    if isinstance(node, ir.Transfer):
        return 4 * (node.width * node.width + node.width)  # info, Q, K, V projections
    if isinstance(node, ir.Task) and node.input_width is not None:
        return node.input_width * node.width + node.width
    return 0


def check_size(nodes: dict[str, ir.Node], reporter: Reporter) -> None:
    """Report MTL405 at the largest node when the whole model exceeds ``MAX_PARAMETERS``."""
    sizes = {name: parameters(node) for name, node in nodes.items()}
    total = sum(sizes.values())
    if total <= MAX_PARAMETERS:
        return
    largest = max(sizes, key=sizes.__getitem__)
    reporter.error(
        "MTL405",
        nodes[largest].span,
        f"the model would have about {total:,} parameters; at most {MAX_PARAMETERS:,} are allowed",
        label=f"{sizes[largest]:,} parameters here",
        help="shrink a vocab, a dim or a layer width",
    )
