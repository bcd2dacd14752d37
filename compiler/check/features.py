"""Checking ``feature`` statements: kinds, options, and shared embedding tables.

Part of ``mtlc.check``: ``check_feature(scope, stmt)`` declares the feature
and records its IR node in the scope, or records that it failed after
reporting what is wrong.
"""

from __future__ import annotations

from typing import cast

from mtlc import ir
from mtlc.check import arguments as opt
from mtlc.check.scope import Scope, kind_word
from mtlc.frontend import syntax as s

__all__ = ["check_feature"]

_OPTIONS = {
    "sparse": ("vocab", "dim", "table"),
    "sequence": ("vocab", "dim", "maxlen", "pool", "table"),
    "dense": ("dim",),
}
_REQUIRED = {"sparse": ("vocab", "dim"), "sequence": ("vocab", "dim", "maxlen"), "dense": ()}
_TableOwner = ir.SparseFeature | ir.SequenceFeature  # the features with an embedding table


def check_feature(scope: Scope, stmt: s.FeatureStmt) -> None:
    """``feature NAME : sparse(...) | sequence(...) | dense[(dim=N)]``."""
    scope.declare(stmt.name)
    call = opt.expect_call(
        stmt.kind, ("sparse", "sequence", "dense"), (), scope.report, "feature kind", parens=False
    )
    scope.add(stmt.name, _feature(scope, stmt, call) if call is not None else None)


def _feature(scope: Scope, stmt: s.FeatureStmt, call: s.Call) -> ir.Node | None:
    """The IR node of ``feature NAME : KIND(...)``, or None after reporting."""
    r, kind = scope.report, call.func.text
    opt.read_positionals(call, [], r)
    options = opt.read_keywords(call, _OPTIONS[kind], r)
    missing = [key for key in _REQUIRED[kind] if key not in options]
    if missing:
        listed = " and ".join(f"`{key}`" for key in missing)
        example = ", ".join(f"{key}=..." for key in _REQUIRED[kind])
        r.error(
            "MTL303",
            call.span,
            f"a {kind} feature needs {listed}",
            label=f"{listed} missing",
            help=f"write `{kind}({example})`",
        )
    values: dict[str, object] = {}
    limits = {"vocab": opt.MAX_VOCAB, "dim": opt.MAX_WIDTH, "maxlen": opt.MAX_MAXLEN}
    for key, high in limits.items():
        if key in options:
            values[key] = opt.integer(options[key].value, r, f"`{key}`", 1, high)
    if "pool" in options:
        values["pool"] = opt.choice(
            options["pool"].value, r, "pooling", [p.value for p in ir.Pooling]
        )
    if "table" in options:
        values["table"] = _table(scope, stmt, options["table"], values)
    if missing or any(value is None for value in values.values()):
        return None
    common = {"name": stmt.name.text, "span": stmt.span}
    if kind == "dense":
        dim = values.get("dim", 1)
        return ir.DenseFeature(**common, width=dim, dim=dim)
    values["table"] = values.get("table") or None
    if kind == "sparse":
        return ir.SparseFeature(**common, width=values["dim"], **values)
    return ir.SequenceFeature(**common, width=values["dim"], **values)


def _table(
    scope: Scope, stmt: s.FeatureStmt, option: s.Keyword, values: dict[str, object]
) -> str | None:
    """The root owner of the embedding table named by ``table=`` (a chain of shares resolves
    to the feature that owns the table), or None after reporting."""
    r = scope.report
    ref = opt.name(option.value, r, "`table`")
    if ref is None:
        return None
    if ref.text == stmt.name.text:
        r.error(
            "MTL404",
            ref.span,
            f"`{ref.text}` cannot share its own table",
            label="itself",
            help="name another sparse or sequence feature declared above, or drop `table=`",
        )
        return None
    tables: tuple[type[_TableOwner], ...] = (ir.SparseFeature, ir.SequenceFeature)
    found = scope.nodes.get(ref.text)
    if found is not None and not isinstance(found, tables):
        r.error(
            "MTL404",
            ref.span,
            f"`{ref.text}` is a {kind_word(found)}, not a feature with an embedding table",
            label="no table here",
            help="name a sparse or sequence feature",
        )
        return None
    owner = scope.resolve(ref, tables, "a table owner")
    if owner is None:
        return None
    # A shared table's owner owns its own table: ``table=`` always names the root owner.
    root = cast(_TableOwner, scope.nodes[owner.table]) if owner.table else owner
    vocab, dim = values.get("vocab"), values.get("dim")
    if (vocab is not None and vocab != root.vocab) or (dim is not None and dim != root.dim):
        r.error(
            "MTL403",
            ref.span,
            f"`{stmt.name.text}` shares the table of `{root.name}` but declares "
            f"vocab={vocab}, dim={dim}",
            label=f"vocab={root.vocab}, dim={root.dim}",
            help=f"declare `vocab={root.vocab}, dim={root.dim}` to share this table",
        )
        return None
    return root.name
