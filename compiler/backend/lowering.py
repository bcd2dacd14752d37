"""Lowering: a checked ``ir.Model`` becomes a ``Plan`` of runtime operations.

The plan says which runtime module each node becomes and in what order the
forward pass computes them; it resolves every name to a safe Python
identifier, so the emitter never looks a name up again. Two levels:

- ``-O0``: one ``rt.Experts`` per expert pool, one ``rt.SoftmaxGate`` per gate,
  mixed with ``rt.mix``. The plain form, one module per spec statement.
- ``-O1``: expert pools are batched ``rt.ExpertPool`` modules, and pools of
  one input and one block merge into one. Gates with the same input and
  options whose outputs are not needed in between form one ``rt.GateBank``:
  all their logits in one matmul, all mixtures in one call. Gates over
  different subsets (or orders) of the bank's experts get a mask: the
  bank-wide indices of their experts, in the gate's own source order.

Both levels compute the same function of the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtlc import ir
from mtlc.backend.identifiers import class_name, fresh, safe_names
from mtlc.backend.plan import (
    Block,
    Call,
    Concat,
    DenseInput,
    Embedding,
    ExpertsModule,
    GateModule,
    Head,
    HeadModule,
    Lookup,
    Mixture,
    MlpModule,
    Module,
    Plan,
    Prediction,
    Split,
    Step,
    TransferModule,
)


def lower(model: ir.Model, opt_level: int = 1) -> Plan:
    """Plan the generated module of ``model`` at ``opt_level`` 0 or 1."""
    if opt_level not in (0, 1):
        raise ValueError(f"opt_level must be 0 or 1, not {opt_level!r}")
    return _Lowering(model, opt_level).run()


def _block(mlp: ir.Mlp) -> Block:
    return Block(
        in_dim=mlp.input_width,
        dims=tuple(mlp.dims),
        activation=mlp.activation.value,
        dropout=mlp.dropout,
        norm=mlp.norm.value,
    )


@dataclass
class _OpenBank:
    """Gates collected into one bank while no statement needs their outputs."""

    input: str
    gates: list[ir.Gate]


class _Lowering:
    def __init__(self, model: ir.Model, opt_level: int) -> None:
        self.model = model
        self.opt_level = opt_level
        self.name = safe_names(model)
        self.nodes = {node.name: node for node in model.nodes}
        self.modules: list[Module] = []
        self.steps: list[Step] = []
        self.heads: list[Head] = []
        self.banks: list[tuple[str, tuple[str, ...]]] = []
        self.pools: list[tuple[str, tuple[str, ...]]] = []
        self.taken = set(self.name.values())
        self.merged: dict[str, list[ir.Expert]] = {}  # first pool's name -> the pools merged
        self.whole: dict[tuple[str, ...], str] = {}  # merged pools' names -> the merged local
        self.bank_whole: set[str] = set()  # gates whose bank reads a merged pool whole
        self.layouts: dict[
            str, tuple[list[ir.GateSource], str | None]
        ] = {}  # by a bank's last gate

    def run(self) -> Plan:
        banks = self._plan_banks() if self.opt_level else {}
        if self.opt_level:
            self._plan_pools(list(banks.values()))
        merged_away = {e.name for group in self.merged.values() for e in group[1:]}
        for node in self.model.nodes:
            if node.name in banks:
                self._gate_bank(banks[node.name])
            elif node.name in self.merged:
                self._merged_pool(self.merged[node.name])
            elif node.name in merged_away:
                continue
            elif not isinstance(node, ir.Gate) or not self.opt_level:
                self._node(node)
        return Plan(
            model=self.model,
            class_name=class_name(self.model),
            opt_level=self.opt_level,
            modules=tuple(self.modules),
            steps=tuple(self.steps),
            heads=tuple(self.heads),
            predictions=tuple(self._prediction(task) for task in self.model.tasks),
            gate_banks=tuple(self.banks),
            expert_pools=tuple(self.pools),
        )

    # -- gate banks (-O1) ---------------------------------------------------------

    def _plan_banks(self) -> dict[str, list[ir.Gate]]:
        """Group gates into banks; key: the gate whose position computes the bank.

        A gate joins the open bank of its input and options unless a statement
        since the bank opened reads one of the bank's gates: the bank runs where
        its last gate is declared, so no reader may come before that.
        """
        open_banks: dict[tuple, _OpenBank] = {}
        closed: list[_OpenBank] = []
        for node in self.model.nodes:
            members = {g.name for b in open_banks.values() for g in b.gates}
            readers = set(ir.inputs_of(node)) & members
            for key, bank in list(open_banks.items()):
                if readers & {g.name for g in bank.gates}:
                    closed.append(open_banks.pop(key))
            if isinstance(node, ir.Gate):
                key = (node.input, node.width, node.top, node.temperature, tuple(node.hidden))
                open_banks.setdefault(key, _OpenBank(node.input, [])).gates.append(node)
        closed.extend(open_banks.values())
        return {bank.gates[-1].name: bank.gates for bank in closed}

    def _gate_bank(self, gates: list[ir.Gate]) -> None:
        sources, whole = self._bank_layout(gates)
        offset, start = 0, {}
        for source in sources:
            start[source.name] = offset
            offset += source.count
        masks = tuple(
            tuple(start[s.name] + i for s in gate.sources for i in range(s.count)) for gate in gates
        )
        if all(mask == tuple(range(offset)) for mask in masks):
            masks = None
        first = gates[0]
        attr = self.name[first.name] if len(gates) == 1 else self._bank_attr(first, sources)
        lines = tuple(gate.span.line for gate in gates)
        self.modules.append(
            GateModule(
                attr=attr,
                in_dim=first.input_width,
                num_experts=offset,
                num_gates=len(gates),
                hidden=tuple(first.hidden),
                top=first.top,
                temperature=first.temperature,
                masks=masks,
                banked=True,
                lines=lines,
            )
        )
        self.banks.append((attr, tuple(self.name[gate.name] for gate in gates)))
        self.steps.append(
            Mixture(
                locals=tuple(self.name[gate.name] for gate in gates),
                attr=attr,
                input=self._vector(first.input),
                experts=(whole,) if whole else tuple(self._pool(s.name) for s in sources),
                banked=True,
                width=first.width,
                lines=lines,
            )
        )

    def _bank_layout(self, gates: list[ir.Gate]) -> tuple[list[ir.GateSource], str | None]:
        """The experts a bank mixes, in order, and the merged pool that holds them all, if any.

        A bank whose sources all come from one merged pool reads that pool whole
        (its masks pick and order each gate's experts); otherwise it reads the
        union of its gates' sources, in order of first appearance.
        """
        key = gates[-1].name
        if key not in self.layouts:  # asked by the pool planning, then by the bank itself
            union = _bank_sources(gates)
            wanted = {source.name for source in union}
            self.layouts[key] = next(
                (
                    ([ir.GateSource(name=n, count=self.nodes[n].count) for n in names], local)
                    for names, local in self.whole.items()
                    if wanted <= set(names)
                ),
                (union, None),
            )
        return self.layouts[key]

    def _bank_attr(self, gate: ir.Gate, sources: list[ir.GateSource]) -> str:
        over = "_".join(self.name[s.name].rstrip("_") for s in sources)
        return fresh(f"gates_{self.name[gate.input].rstrip('_')}_over_{over}", self.taken)

    # -- merged expert pools (-O1) ------------------------------------------------

    def _plan_pools(self, banks: list[list[ir.Gate]]) -> None:
        """Merge expert pools of one input and one block into one batched pool.

        The merged pool runs where its first pool is declared (the input is
        already there). A bank over some of the merged pools reads the merged
        output whole; anything else reads the pools split out of it.
        """
        groups: dict[tuple, list[ir.Expert]] = {}
        for node in self.model.nodes:
            if isinstance(node, ir.Expert):
                b = node.block
                key = (b.input, tuple(b.dims), b.activation, b.dropout, b.norm)
                groups.setdefault(key, []).append(node)
        for group in groups.values():
            if len(group) > 1:
                self.merged[group[0].name] = group
                names = tuple(e.name for e in group)
                joined = "_".join(self.name[n].rstrip("_") for n in names)
                self.whole[names] = fresh(joined, self.taken)
        self.bank_whole = {
            gate.name for gates in banks if self._bank_layout(gates)[1] for gate in gates
        }

    def _merged_pool(self, group: list[ir.Expert]) -> None:
        names = tuple(e.name for e in group)
        local, first = self.whole[names], group[0]
        lines = tuple(e.span.line for e in group)
        count = sum(e.count for e in group)
        block = _block(first.block)
        self.modules.append(ExpertsModule(local, block, count, True, lines))
        shape = f"[B, {count}, {first.width}]"
        self.steps.append(Call(local, local, (self._vector(first.block.input),), shape, lines))
        self.pools.append((local, tuple(self.name[n] for n in names)))
        readers = {r.name for r in self.model.nodes if set(ir.inputs_of(r)) & set(names)}
        if readers - self.bank_whole:
            sizes = tuple(e.count for e in group)
            split = Split(tuple(self.name[n] for n in names), local, sizes, first.width, lines)
            self.steps.append(split)

    # -- one node at a time ---------------------------------------------------------

    def _node(self, node: ir.Node) -> None:
        name, line = self.name[node.name], node.span.line
        if isinstance(node, (ir.SparseFeature, ir.SequenceFeature)):
            table = node.table or node.name
            if node.table is None:
                self.modules.append(Embedding(name, node.vocab, node.dim, (line,)))
            pool = node.pool.value if isinstance(node, ir.SequenceFeature) else None
            self.steps.append(Lookup(name, node.name, self.name[table], pool, node.dim, line))
        elif isinstance(node, ir.DenseFeature):
            self.steps.append(DenseInput(name, node.name, node.dim, line))
        elif isinstance(node, ir.Group):
            parts = tuple(self._vector(member) for member in node.members)
            self.steps.append(Concat(name, parts, node.width, line))
        elif isinstance(node, ir.Tower):
            self.modules.append(MlpModule(name, _block(node.block), (line,)))
            args = (self._vector(node.block.input),)
            self.steps.append(Call(name, name, args, f"[B, {node.width}]", (line,)))
        elif isinstance(node, ir.Expert):
            batched = self.opt_level >= 1
            block = _block(node.block)
            self.modules.append(ExpertsModule(name, block, node.count, batched, (line,)))
            shape = f"[B, {node.count}, {node.width}]"
            self.steps.append(Call(name, name, (self._vector(node.block.input),), shape, (line,)))
        elif isinstance(node, ir.Gate):
            self._gate(node)
        elif isinstance(node, ir.Transfer):
            self.modules.append(TransferModule(name, node.width, (line,), node.qkv_bias))
            args = (self._vector(node.current), self._vector(node.previous))
            self.steps.append(Call(name, name, args, f"[B, {node.width}]", (line,)))
        elif isinstance(node, ir.Task) and node.input is not None:
            out = node.classes if node.kind is ir.TaskKind.multiclass else 1
            self.modules.append(HeadModule(name, node.input_width or 0, out or 1, (line,)))
            classes = node.classes if node.kind is ir.TaskKind.multiclass else None
            self.heads.append(Head(node.name, name, self._vector(node.input), classes, line))

    def _gate(self, gate: ir.Gate) -> None:
        name, line = self.name[gate.name], gate.span.line
        self.modules.append(
            GateModule(
                attr=name,
                in_dim=gate.input_width,
                num_experts=gate.num_experts,
                num_gates=1,
                hidden=tuple(gate.hidden),
                top=gate.top,
                temperature=gate.temperature,
                masks=None,
                banked=False,
                lines=(line,),
            )
        )
        experts = tuple(self._pool(source.name) for source in gate.sources)
        self.steps.append(
            Mixture((name,), name, self._vector(gate.input), experts, False, gate.width, (line,))
        )

    def _vector(self, name: str) -> str:
        """The expression of node ``name`` as one vector per example, ``[B, D]``."""
        node = self.nodes[name]
        if isinstance(node, ir.Expert):
            return f"{self.name[name]}[:, 0]"  # a pool of one, read as a vector
        return self.name[name]

    def _pool(self, name: str) -> str:
        """The expression of node ``name`` as a pool of experts, ``[B, E, D]``."""
        if isinstance(self.nodes[name], ir.Expert):
            return self.name[name]
        return f"{self.name[name]}.unsqueeze(1)"

    def _prediction(self, task: ir.Task) -> Prediction:
        local = self.name[task.name]
        if task.factors:
            factors = tuple(self.name[factor] for factor in task.factors)
            return Prediction(task.name, local, "product", factors)
        kind = {"binary": "sigmoid", "regression": "identity", "multiclass": "softmax"}
        return Prediction(task.name, local, kind[task.kind.value], ())


def _bank_sources(gates: list[ir.Gate]) -> list[ir.GateSource]:
    """The union of the gates' sources, in order of first appearance."""
    sources: list[ir.GateSource] = []
    for gate in gates:
        sources += [s for s in gate.sources if s.name not in {t.name for t in sources}]
    return sources
