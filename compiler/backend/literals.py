"""Text about a model for its generated module: literals, the docstring, class attributes.

Every string from the spec goes through ``repr()`` (in code) or ``safe_text``
(in docstrings and comments), so a spec can never end a string or a comment.
"""

from __future__ import annotations

from mtlc import ir
from mtlc.backend.linewrap import quote
from mtlc.ir.spelling import escape, integer, number


def safe_text(text: str) -> str:
    """``text`` for a docstring or a comment: backslashes, quotes and unprintables escaped.

    Inside a (non-raw) docstring the escaped text reads back as ``text`` itself.
    """
    return escape(text, also='\\"')


def summary(model: ir.Model) -> str:
    """The first line of the docstrings: the description, or a plain default."""
    text = (model.description or "").strip() or "A multi-task model"
    text = safe_text(text)
    return text if text.endswith((".", "!", "?")) else text + "."


# -- the dataflow table of the class docstring ----------------------------------------


WHAT_WIDTH = 64  # a longer description overflows its column rather than widen it


def dataflow(model: ir.Model) -> list[str]:
    """One row per node: name, what it is (``node.text()``, as the spec writes it), output shape."""
    rows = [(node.name, node.text(), node.shape) for node in model.nodes]
    name_width = max(len(name) for name, _, _ in rows) + 2
    what_width = max(len(what) for _, what, _ in rows if len(what) <= WHAT_WIDTH) + 2
    return [f"{n.ljust(name_width)}{(w + '  ').ljust(what_width)}{s}".rstrip() for n, w, s in rows]


# -- class attributes read by the trainer -------------------------------------------


def feature(node: ir.SparseFeature | ir.SequenceFeature | ir.DenseFeature) -> str:
    """``"name": rt.Feature(...)``, one entry of the ``features`` class attribute."""
    args = [quote(node.name), quote(node.op), f"dim={integer(node.dim)}"]
    for key in ("vocab", "maxlen"):  # the fields a kind has, in this order
        if getattr(node, key, None) is not None:
            args.append(f"{key}={integer(getattr(node, key))}")
    pool, table = getattr(node, "pool", None), getattr(node, "table", None)
    if pool is not None:
        args.append(f"pool={quote(pool.value)}")
    if table:
        args.append(f"table={quote(table)}")
    return f"{quote(node.name)}: rt.Feature({', '.join(args)})"


def task(node: ir.Task) -> str:
    """``"name": rt.Task(...)``, one entry of the ``tasks`` class attribute."""
    args = [quote(node.name), quote(node.kind.value)]
    if node.label is not None:
        args.append(f"label={quote(node.label)}")
    if node.loss is not None:
        args.append(f"loss={quote(node.loss.value)}")
    if node.propensity is not None:
        args.append(f"propensity={quote(node.propensity)}")
    if node.imputation is not None:
        args.append(f"imputation={quote(node.imputation)}")
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
