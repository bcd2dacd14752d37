"""The size of a checked model, with a cap.

Part of ``mtlc.check``: a spec whose model could not be built in memory (a
vocab of billions, layers of a million units) gets a diagnostic (MTL405)
instead of a module that fails when constructed. The count is each node's
exact ``parameters()``, the one ``mtlc explain`` prints.
"""

from __future__ import annotations

from mtlc import ir
from mtlc.check.arguments import MAX_PARAMETERS
from mtlc.diagnostics import Reporter

__all__ = ["check_size"]


def check_size(nodes: dict[str, ir.Node], reporter: Reporter) -> None:
    """Report MTL405 at the largest node when the whole model exceeds ``MAX_PARAMETERS``."""
    sizes = {name: node.parameters() for name, node in nodes.items()}
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
