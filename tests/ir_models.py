"""Hand-built IR models for the back end's unit tests (independent of the front end).

A tiny builder: ``Builder("MMoE")`` then one call per spec statement, in order;
widths are computed as the checker would.
"""

from __future__ import annotations

from mtlc import ir


def _span(line: int) -> ir.Span:
    return ir.Span(file="test.mtl", line=line, column=1, end_line=line, end_column=2)


class Builder:
    def __init__(self, name: str, description: str | None = None) -> None:
        self.name, self.description = name, description
        self.nodes: dict[str, ir.Node] = {}
        self.constraints: list[ir.Constraint] = []
        self.weighting = ir.Weighting()

    def _add(self, node: ir.Node) -> Builder:
        self.nodes[node.name] = node
        return self

    def _line(self) -> int:
        return len(self.nodes) + 3

    def _width(self, name: str) -> int:
        return self.nodes[name].width

    def sparse(self, name: str, vocab: int = 50, dim: int = 4, table: str | None = None):
        return self._add(
            ir.SparseFeature(
                name=name, span=_span(self._line()), width=dim, vocab=vocab, dim=dim, table=table
            )
        )

    def sequence(
        self, name: str, vocab: int = 50, dim: int = 4, maxlen: int = 5, pool="mean", table=None
    ):
        return self._add(
            ir.SequenceFeature(
                name=name,
                span=_span(self._line()),
                width=dim,
                vocab=vocab,
                dim=dim,
                maxlen=maxlen,
                pool=pool,
                table=table,
            )
        )

    def dense(self, name: str, dim: int = 1):
        return self._add(ir.DenseFeature(name=name, span=_span(self._line()), width=dim, dim=dim))

    def group(self, name: str, members: list[str]):
        width = sum(self._width(m) for m in members)
        return self._add(
            ir.Group(name=name, span=_span(self._line()), width=width, members=members)
        )

    def _mlp(self, input: str, dims: list[int], **options) -> ir.Mlp:
        return ir.Mlp(
            input=input,
            input_width=self._width(input),
            dims=dims,
            span=_span(self._line()),
            **options,
        )

    def expert(self, name: str, input: str, dims: list[int], count: int = 1, **options):
        block = self._mlp(input, dims, **options)
        return self._add(
            ir.Expert(name=name, span=_span(self._line()), width=dims[-1], count=count, block=block)
        )

    def tower(self, name: str, input: str, dims: list[int], **options):
        block = self._mlp(input, dims, **options)
        return self._add(ir.Tower(name=name, span=_span(self._line()), width=dims[-1], block=block))

    def gate(self, name: str, input: str, sources: list[str], **options):
        srcs = [ir.GateSource(name=s, count=getattr(self.nodes[s], "count", 1)) for s in sources]
        return self._add(
            ir.Gate(
                name=name,
                span=_span(self._line()),
                width=self._width(sources[0]),
                input=input,
                input_width=self._width(input),
                sources=srcs,
                num_experts=sum(s.count for s in srcs),
                **options,
            )
        )

    def transfer(self, name: str, current: str, previous: str):
        return self._add(
            ir.Transfer(
                name=name,
                span=_span(self._line()),
                width=self._width(current),
                current=current,
                previous=previous,
            )
        )

    def task(
        self,
        name: str,
        input: str | None = None,
        kind: str = "binary",
        label: str | None = None,
        factors: tuple[str, ...] = (),
        classes: int | None = None,
        weight: float = 1.0,
    ):
        loss = None
        if label is not None:
            loss = {"binary": "bce", "regression": "mse", "multiclass": "ce"}[kind]
        return self._add(
            ir.Task(
                name=name,
                span=_span(self._line()),
                width=classes or 1,
                kind=kind,
                label=label,
                loss=loss,
                weight=weight,
                classes=classes,
                input=input,
                input_width=self._width(input) if input else None,
                factors=list(factors),
            )
        )

    def constrain(self, left: str, right: str, weight: float = 1.0):
        self.constraints.append(
            ir.Constraint(left=left, right=right, weight=weight, span=_span(99))
        )
        return self

    def weigh(self, kind: str, alpha: float | None = None):
        self.weighting = ir.Weighting(kind=kind, alpha=alpha)
        return self

    def build(self) -> ir.Model:
        return ir.Model(
            name=self.name,
            description=self.description,
            source="test.mtl",
            compiler_version="0.1.0",
            nodes=list(self.nodes.values()),
            constraints=self.constraints,
            weighting=self.weighting,
        )


def mmoe() -> ir.Model:
    return (
        Builder("MMoE", "Multi-gate mixture of experts")
        .sparse("user_id")
        .sparse("item_id")
        .dense("age")
        .group("all", ["user_id", "item_id", "age"])
        .expert("shared", "all", [16, 8], count=4)
        .gate("to_ctr", "all", ["shared"])
        .gate("to_cvr", "all", ["shared"])
        .tower("ctr_net", "to_ctr", [4])
        .tower("cvr_net", "to_cvr", [4])
        .task("ctr", "ctr_net", label="click")
        .task("cvr", "cvr_net", label="buy")
        .build()
    )


def ple() -> ir.Model:
    return (
        Builder("PLE")
        .sparse("user_id")
        .sparse("item_id")
        .dense("age")
        .group("all", ["user_id", "item_id", "age"])
        .expert("shared1", "all", [16, 8], count=2)
        .expert("ctr1", "all", [16, 8])
        .expert("cvr1", "all", [16, 8])
        .gate("ctr_g1", "all", ["shared1", "ctr1"])
        .gate("cvr_g1", "all", ["shared1", "cvr1"])
        .gate("shared_g1", "all", ["ctr1", "cvr1", "shared1"])
        .expert("shared2", "shared_g1", [8], count=2)
        .expert("ctr2", "ctr_g1", [8])
        .expert("cvr2", "cvr_g1", [8])
        .gate("ctr_g2", "ctr_g1", ["shared2", "ctr2"])
        .gate("cvr_g2", "cvr_g1", ["shared2", "cvr2"])
        .tower("ctr_net", "ctr_g2", [4])
        .tower("cvr_net", "cvr_g2", [4])
        .task("ctr", "ctr_net", label="click")
        .task("cvr", "cvr_net", label="buy")
        .build()
    )


def everything() -> ir.Model:
    """Every construct: sequences and shared tables, options, transfer, product, multiclass."""
    return (
        Builder("Everything", 'A "hostile" description\\ with """quotes""" and\na newline')
        .sparse("user_id")
        .sparse("item_id", vocab=60)
        .sequence("hist", vocab=60, maxlen=5, pool="max", table="item_id")
        .sequence("tags", pool="sum")
        .dense("price")
        .dense("ctx", dim=3)
        .group("all", ["user_id", "item_id", "hist", "tags", "price", "ctx"])
        .expert("pool", "all", [8], count=3, activation="gelu", dropout=0.1, norm="layer")
        .tower("side", "all", [8], activation="tanh", norm="batch")
        .gate("mix_a", "all", ["pool", "side"], top=2, temperature=0.5)
        .gate("mix_b", "all", ["side", "pool"], top=2, temperature=0.5)
        .gate("mix_c", "user_id", ["pool"], hidden=[6])
        .transfer("moved", "mix_b", "mix_a")
        .task("click", "mix_a", label="click")
        .task("cvr", "moved")
        .task("ctcvr", label="buy", factors=("click", "cvr"))
        .task("stars", "mix_c", kind="multiclass", classes=5, label="stars")
        .task("spend", "side", kind="regression", label="spend", weight=0.5)
        .constrain("ctcvr", "click", 0.6)
        .weigh("gradnorm", alpha=1.5)
        .build()
    )


def merged_pools() -> ir.Model:
    """Pools of one input and block (merged at -O1), read whole, out of order, and as a vector."""
    return (
        Builder("Merge")
        .dense("x", dim=3)
        .expert("a", "x", [4], count=2)
        .expert("b", "x", [4])
        .expert("c", "x", [4], dropout=0.1)  # other options: a pool of its own
        .gate("g", "x", ["b", "a"])  # another order than the merged pool's
        .gate("h", "x", ["a", "b"], top=1)  # the merged pool whole
        .tower("t", "b", [4])  # b read as a vector
        .task("y", "g", label="y")
        .task("z", "t", label="z")
        .task("w", "c", label="w")
        .task("v", "h", label="v")
        .build()
    )
