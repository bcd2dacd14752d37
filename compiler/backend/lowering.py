"""Lowering: a checked ``ir.Model`` becomes a ``Plan`` of runtime operations.

The plan says which runtime module each node becomes and in what order the
forward pass computes them; it resolves every name to a safe Python
identifier, so the emitter never looks a name up again. Each kind of node is
lowered by its entry in ``LOWER`` (``tests/test_tables.py`` holds the table
complete). Two levels:

- ``-O0``: one ``rt.Experts`` per expert pool, one ``rt.SoftmaxGate`` per gate,
  mixed with ``rt.mix``. The plain form, one module per spec statement.
- ``-O1``: expert pools are batched ``rt.ExpertPool`` modules, and pools of
  one input and one block merge into one. Gates with the same input and
  options whose outputs are not needed in between form one ``rt.GateBank``:
  all their logits in one matmul, all mixtures in one call; a gate alone is
  an ``rt.Gate``. Gates over different subsets (or orders) of the bank's
  experts get a mask: the bank-wide indices of their experts, in the gate's
  own source order.

Both levels compute the same function of the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtlc import ir
from mtlc.backend.identifiers import class_name, fresh, safe_names
from mtlc.backend.plan import (
    ApgModule,
    Block,
    Call,
    Concat,
    CrossModule,
    DenseInput,
    Embedding,
    ExpertsModule,
    GateLogits,
    GateModule,
    Head,
    HeadModule,
    Lookup,
    Mixture,
    MlpModule,
    Module,
    Output,
    Plan,
    Prediction,
    RouteModule,
    Scaled,
    ScaleGateModule,
    Split,
    StarModule,
    Step,
    StitchModule,
    TransferModule,
    Unbind,
)

__all__ = ["lower", "LOWER", "safe_names"]

# What a task's logits become in ``forward``, by the task's kind (a product task aside).
OUTPUTS = {
    ir.TaskKind.binary: Output.sigmoid,
    ir.TaskKind.regression: Output.identity,
    ir.TaskKind.multiclass: Output.softmax,
}


def lower(model: ir.Model, opt_level: int = 1) -> Plan:
    """Plan the generated module of ``model`` at ``opt_level`` 0 or 1."""
    if opt_level not in (0, 1):
        raise ValueError(f"opt_level must be 0 or 1, not {opt_level!r}")
    return _Lowering(model, opt_level).run()


def _block(mlp: ir.Mlp) -> Block:
    return Block(
        in_dim=mlp.input_width,
        dims=tuple(mlp.dims),
        activation=mlp.activation,
        dropout=mlp.dropout,
        norm=mlp.norm,
        bias=mlp.bias,
    )


def _numbered(role: str, count: int) -> list[str]:
    """Names for ``count`` modules the compiler adds: ``gates``, or ``gates_1``, ``gates_2``..."""
    return [role] if count == 1 else [f"{role}_{i}" for i in range(1, count + 1)]


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
        self.pool_names = {node.name for node in model.nodes if node.is_pool}
        self.modules: list[Module] = []
        self.steps: list[Step] = []
        self.heads: list[Head] = []
        self.banks: list[tuple[str, tuple[str, ...]]] = []
        self.pools: list[tuple[str, tuple[str, ...]]] = []
        self.taken = set(self.name.values())
        self.bank_names: list[str] = []  # the names of the multi-gate banks, in order
        self.merged_pools: dict[str, list[ir.Expert]] = {}  # first pool's name -> the pools merged
        self.merged_local: dict[tuple[str, ...], str] = {}  # merged pools' names -> their local
        self.gates_reading_whole: set[str] = set()  # gates whose bank reads a merged pool whole
        self.bank_sources: dict[str, tuple[list[ir.GateSource], str | None]] = {}  # by last gate
        self.scale_banks = self._plan_scale_banks() if opt_level else {}  # gate -> its bank
        self.star_pools = self._plan_star_pools() if opt_level else {}  # tower -> its pool
        self.scale_logits: dict[str, str] = {}  # a banked sigmoid gate -> the local of its logits

    def run(self) -> Plan:
        banks = self._plan_banks() if self.opt_level else {}
        if self.opt_level:
            self._plan_pools(list(banks.values()))
        banked = {gate.name for gates in banks.values() for gate in gates}
        merged_away = {e.name for group in self.merged_pools.values() for e in group[1:]}
        for node in self.model.nodes:
            if node.name in banks:
                self._gate_bank(banks[node.name])
            elif node.name in self.merged_pools:
                self._merged_pool(self.merged_pools[node.name])
            elif node.name not in merged_away and node.name not in banked:
                LOWER[type(node)](self, node)
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
        gates = {gate.name: gate for gate in self.model.of_kind(ir.Gate)}
        open_banks: dict[tuple, _OpenBank] = {}
        closed: list[_OpenBank] = []
        for node in self.model.nodes:
            members = {g.name for b in open_banks.values() for g in b.gates}
            readers = set(node.inputs()) & members
            for key, bank in list(open_banks.items()):
                if readers & {g.name for g in bank.gates}:
                    closed.append(open_banks.pop(key))
            gate = gates.get(node.name)
            if gate is not None:
                key = (
                    gate.input,
                    gate.width,
                    gate.top,
                    gate.temperature,
                    tuple(gate.hidden),
                    gate.activation,
                    gate.norm,
                    gate.dropout,
                )
                open_banks.setdefault(key, _OpenBank(gate.input, [])).gates.append(gate)
        closed.extend(open_banks.values())
        order = {gate: i for i, gate in enumerate(gates)}
        closed.sort(key=lambda bank: order[bank.gates[-1].name])  # in the order they run
        several = [bank for bank in closed if len(bank.gates) > 1]
        self.bank_names = [fresh(name, self.taken) for name in _numbered("gates", len(several))]
        return {bank.gates[-1].name: bank.gates for bank in closed}

    def _gate_bank(self, gates: list[ir.Gate]) -> None:
        sources, whole = self._bank_layout(gates)
        offset, start = 0, {}
        for source in sources:  # a source read through stopgrad is a source of its own
            start[source.name, source.stop] = offset
            offset += source.count
        sliced = tuple(
            tuple(start[s.name, s.stop] + i for s in gate.sources for i in range(s.count))
            for gate in gates
        )
        masks = None if all(mask == tuple(range(offset)) for mask in sliced) else sliced
        first = gates[0]
        attr = self.name[first.name] if len(gates) == 1 else self.bank_names.pop(0)
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
                mixes=tuple((self.name[g.name], tuple(_read(s) for s in g.sources)) for g in gates),
                activation=first.activation,
                norm=first.norm,
                dropout=first.dropout,
            )
        )
        if len(gates) > 1:
            self.banks.append((attr, tuple(self.name[gate.name] for gate in gates)))
        self.steps.append(
            Mixture(
                locals=tuple(self.name[gate.name] for gate in gates),
                attr=attr,
                input=self._vector(first.input),
                experts=(whole,) if whole else tuple(self._source(s) for s in sources),
                banked=True,
                shape=first.shape,
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
        if key not in self.bank_sources:  # asked by the pool planning, then by the bank itself
            union = _bank_sources(gates)
            wanted = {source.name for source in union}
            stopped = any(source.stop for source in union)  # a merged pool is read live
            self.bank_sources[key] = next(
                (
                    ([ir.GateSource(name=n, count=self.nodes[n].vectors) for n in names], local)
                    for names, local in self.merged_local.items()
                    if wanted <= set(names) and not stopped
                ),
                (union, None),
            )
        return self.bank_sources[key]

    # -- banks of sigmoid gates (-O1) ----------------------------------------------

    def _plan_scale_banks(self) -> dict[str, list[ir.ScaleGate]]:
        """Sigmoid gates over vectors that read one condition through nets of one shape (and
        scale a source of one width) share a bank: one pool-form ``rt.ScaleGate`` computes all
        their nets where the first of them is declared (its condition is there already)."""
        groups: dict[tuple, list[ir.ScaleGate]] = {}
        for gate in self.model.of_kind(ir.ScaleGate):
            if not gate.pool:
                key = (gate.input, gate.width, tuple(gate.hidden), gate.scale) + (
                    gate.activation,
                    gate.norm,
                    gate.dropout,
                )
                groups.setdefault(key, []).append(gate)
        return {g.name: group for group in groups.values() if len(group) > 1 for g in group}

    def _scale_bank(self, gates: list[ir.ScaleGate]) -> None:
        """The bank's module and its logits, at its first gate."""
        first, lines = gates[0], tuple(gate.span.line for gate in gates)
        attr = fresh(f"{self.name[first.name].rstrip('_')}_nets", self.taken)
        self.modules.append(
            ScaleGateModule(
                attr=attr,
                in_dim=first.input_width,
                width=first.width,
                hidden=tuple(first.hidden),
                scale=first.scale,
                activation=first.activation,
                norm=first.norm,
                dropout=first.dropout,
                num_experts=len(gates),
                lines=lines,
                mixes=tuple(self.name[gate.name] for gate in gates),
            )
        )
        self.banks.append((attr, tuple(self.name[gate.name] for gate in gates)))
        self.scale_logits.update({gate.name: f"{self.name[gate.name]}_z" for gate in gates})
        locals_ = tuple(self.scale_logits[gate.name] for gate in gates)
        for local in locals_:
            self.taken.add(local)
        step = GateLogits(locals_, attr, self._vector(first.input), f"[B, {first.width}]", lines)
        self.steps.append(step)

    # -- pools of star towers (-O1) ---------------------------------------------------

    def _plan_star_pools(self) -> dict[str, list[ir.Star]]:
        """Star towers of one input, one domain feature and one shape run as one pool of
        networks (as expert pools merge), where the first of them is declared."""
        groups: dict[tuple, list[ir.Star]] = {}
        for star in self.model.of_kind(ir.Star):
            key = (star.input, star.domain, tuple(star.dims), star.combine, star.norm) + (
                star.activation,
                star.dropout,
            )
            groups.setdefault(key, []).append(star)
        several = [group for group in groups.values() if len(group) > 1]
        names = [fresh(name, self.taken) for name in _numbered("stars", len(several))]
        self.star_names = {group[0].name: name for group, name in zip(several, names)}
        return {star.name: group for group in several for star in group}

    def _star_pool(self, stars: list[ir.Star]) -> None:
        first, lines = stars[0], tuple(star.span.line for star in stars)
        attr = self.star_names[first.name]
        self.modules.append(_star_module(attr, first, lines, num_experts=len(stars)))
        self.pools.append((attr, tuple(self.name[star.name] for star in stars)))
        args = (self._vector(first.input), f'batch["{first.domain}"]')
        shape = f"[B, {len(stars)}, {first.width}]"
        self.steps.append(Call(attr, attr, args, shape, lines))
        names = tuple(self.name[star.name] for star in stars)
        self.steps.append(Unbind(names, attr, f"{first.shape} each", lines))

    # -- merged expert pools (-O1) ------------------------------------------------

    def _plan_pools(self, banks: list[list[ir.Gate]]) -> None:
        """Merge expert pools of one input and one block into one batched pool.

        The merged pool runs where its first pool is declared (the input is
        already there). A bank over some of the merged pools reads the merged
        output whole; anything else reads the pools split out of it.
        """
        groups: dict[tuple, list[ir.Expert]] = {}
        for pool in self.model.of_kind(ir.Expert):
            b = pool.block
            key = (b.input, tuple(b.dims), b.activation, b.dropout, b.norm)
            groups.setdefault(key, []).append(pool)
        merged = [group for group in groups.values() if len(group) > 1]
        for group, local in zip(merged, _numbered("experts", len(merged))):
            self.merged_pools[group[0].name] = group
            self.merged_local[tuple(e.name for e in group)] = fresh(local, self.taken)
        self.gates_reading_whole = {
            gate.name for gates in banks if self._bank_layout(gates)[1] for gate in gates
        }

    def _merged_pool(self, group: list[ir.Expert]) -> None:
        names = tuple(e.name for e in group)
        local, first = self.merged_local[names], group[0]
        lines = tuple(e.span.line for e in group)
        count = sum(e.count for e in group)
        block = _block(first.block)
        self.modules.append(
            ExpertsModule(attr=local, block=block, count=count, batched=True, lines=lines)
        )
        shape = f"[B, {count}, {first.width}]"
        self.steps.append(Call(local, local, (self._vector(first.block.input),), shape, lines))
        self.pools.append((local, tuple(self.name[n] for n in names)))
        readers = {r.name for r in self.model.nodes if set(r.inputs()) & set(names)}
        if readers - self.gates_reading_whole:
            sizes = tuple(e.count for e in group)
            shapes = ", ".join(f"[B, {size}, {first.width}]" for size in sizes)
            split = Split(tuple(self.name[n] for n in names), local, sizes, shapes, lines)
            self.steps.append(split)

    # -- one node at a time: the entries of LOWER ------------------------------------

    def embedding(self, node: ir.SparseFeature | ir.SequenceFeature) -> None:
        name, lines = self.name[node.name], (node.span.line,)
        if node.table is None:
            self.modules.append(Embedding(name, node.vocab, node.dim, lines))
        table = self.name[node.table or node.name]
        pool = getattr(node, "pool", None)  # a sequence feature's pooling
        self.steps.append(Lookup(name, node.name, table, pool, node.shape, lines))

    def dense(self, node: ir.DenseFeature) -> None:
        name = self.name[node.name]
        self.steps.append(DenseInput(name, node.name, node.dim, node.shape, (node.span.line,)))

    def group(self, node: ir.Group) -> None:
        parts = tuple(
            self._vector(member) + (".detach()" if i in node.stopped else "")
            for i, member in enumerate(node.members)
        )
        self.steps.append(Concat(self.name[node.name], parts, node.shape, (node.span.line,)))

    def tower(self, node: ir.Tower) -> None:
        name, lines = self.name[node.name], (node.span.line,)
        self.modules.append(MlpModule(name, _block(node.block), lines))
        self.steps.append(Call(name, name, (self._vector(node.block.input),), node.shape, lines))

    def expert(self, node: ir.Expert) -> None:
        name, lines = self.name[node.name], (node.span.line,)
        batched = self.opt_level >= 1
        self.modules.append(
            ExpertsModule(
                attr=name, block=_block(node.block), count=node.count, batched=batched, lines=lines
            )
        )
        self.steps.append(Call(name, name, (self._vector(node.block.input),), node.shape, lines))

    def gate(self, gate: ir.Gate) -> None:
        """A gate at -O0 (at -O1 every gate is in a bank, perhaps of one)."""
        name, lines = self.name[gate.name], (gate.span.line,)
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
                lines=lines,
                activation=gate.activation,
                norm=gate.norm,
                dropout=gate.dropout,
            )
        )
        experts = tuple(self._source(source) for source in gate.sources)
        self.steps.append(
            Mixture(
                locals=(name,),
                attr=name,
                input=self._vector(gate.input),
                experts=experts,
                banked=False,
                shape=gate.shape,
                lines=lines,
            )
        )

    def apg(self, node: ir.Apg) -> None:
        name, lines = self.name[node.name], (node.span.line,)
        self.modules.append(
            ApgModule(
                attr=name,
                in_dim=node.input_width,
                dims=tuple(node.dims),
                cond_dim=node.condition_width,
                ranks=tuple(node.ranks),
                expands=tuple(node.expands),
                shared=node.shared,
                inner=node.inner,
                generate=node.generate,
                activation=node.activation,
                lines=lines,
            )
        )
        args = (self._vector(node.input), self._vector(node.condition))
        self.steps.append(Call(name, name, args, node.shape, lines))

    def star(self, node: ir.Star) -> None:
        pool = self.star_pools.get(node.name)
        if pool is not None:  # -O1: the pool of its shape runs at the first of them
            if node is pool[0]:
                self._star_pool(pool)
            return
        name, lines = self.name[node.name], (node.span.line,)
        self.modules.append(_star_module(name, node, lines))
        args = (self._vector(node.input), f'batch["{node.domain}"]')  # the ids, a checked name
        self.steps.append(Call(name, name, args, node.shape, lines))

    def cross(self, node: ir.Cross) -> None:
        """A cross network; a pool's networks run batched at every level."""
        name, lines = self.name[node.name], (node.span.line,)
        count = node.count if isinstance(node, ir.CrossPool) else None
        self.modules.append(CrossModule(name, node.width, node, lines, num_experts=count))
        self.steps.append(Call(name, name, (self._vector(node.input),), node.shape, lines))

    def scale_gate(self, gate: ir.ScaleGate) -> None:
        """A sigmoid gate; at -O1 one of a bank if others read its condition (see above)."""
        name, lines = self.name[gate.name], (gate.span.line,)
        bank = self.scale_banks.get(gate.name)
        if bank is not None:
            if gate is bank[0]:
                self._scale_bank(bank)
            source = self._vector(gate.source) + (".detach()" if gate.source_stop else "")
            logits = self.scale_logits[gate.name]
            self.steps.append(Scaled(name, source, logits, gate.scale, gate.shape, lines))
            return
        self.modules.append(
            ScaleGateModule(
                attr=name,
                in_dim=gate.input_width,
                width=gate.width,
                hidden=tuple(gate.hidden),
                scale=gate.scale,
                activation=gate.activation,
                norm=gate.norm,
                dropout=gate.dropout,
                num_experts=gate.count if gate.pool else None,
                lines=lines,
            )
        )
        read = self._pool(gate.source) if gate.pool else self._vector(gate.source)
        source = read + (".detach()" if gate.source_stop else "")
        self.steps.append(Call(name, name, (self._vector(gate.input), source), gate.shape, lines))

    def stitch(self, node: ir.Stitch) -> None:
        """A cross-stitch unit: one module, its sources stacked and weighed in one product."""
        name, lines = self.name[node.name], (node.span.line,)
        scalar = node.weights is ir.StitchWeights.scalar
        column = node.sources.index(node.column)
        self.modules.append(
            StitchModule(name, node.width, len(node.sources), column, scalar, lines)
        )
        args = tuple(self._vector(source) for source in node.sources)
        self.steps.append(Call(name, name, args, node.shape, lines))

    def route(self, node: ir.Route) -> None:
        """A routing gate: its sources (pools as pools, vectors as vectors) in one product."""
        name, lines = self.name[node.name], (node.span.line,)
        self.modules.append(RouteModule(name, node.width, node.experts, node.transform, lines))
        args = tuple(
            self._pool(s.name) if s.name in self.pool_names else self._vector(s.name)
            for s in node.sources
        )
        self.steps.append(Call(name, name, args, node.shape, lines))

    def transfer(self, node: ir.Transfer) -> None:
        name, lines = self.name[node.name], (node.span.line,)
        self.modules.append(TransferModule(name, node.width, node.qkv_bias, lines))
        args = (self._vector(node.current), self._vector(node.previous))
        self.steps.append(Call(name, name, args, node.shape, lines))

    def task(self, node: ir.Task) -> None:
        """A task with a head gets its Linear; a product task is computed in ``forward``."""
        if node.input is None:
            return
        name, lines = self.name[node.name], (node.span.line,)
        self.modules.append(
            HeadModule(name, node.input_width or 0, node.logits, lines, bias=node.bias)
        )
        classes = node.classes if node.kind is ir.TaskKind.multiclass else None
        self.heads.append(
            Head(node.name, name, self._vector(node.input), classes, node.shape, lines)
        )

    # -- expressions --------------------------------------------------------------

    def _vector(self, name: str) -> str:
        """The expression of node ``name`` as one vector per example, ``[B, D]``."""
        if name in self.pool_names:
            return f"{self.name[name]}[:, 0]"  # a pool of one, read as a vector
        return self.name[name]

    def _pool(self, name: str) -> str:
        """The expression of node ``name`` as a pool of experts, ``[B, E, D]``."""
        if name in self.pool_names:
            return self.name[name]
        return f"{self.name[name]}.unsqueeze(1)"

    def _source(self, source: ir.GateSource) -> str:
        """A gate source as a pool, detached if the gate reads it through stopgrad."""
        return self._pool(source.name) + (".detach()" if source.stop else "")

    def _prediction(self, task: ir.Task) -> Prediction:
        local = self.name[task.name]
        if task.factors:
            factors = tuple(self.name[factor] for factor in task.factors)
            return Prediction(task.name, local, Output.product, factors)
        return Prediction(task.name, local, OUTPUTS[task.kind], ())


# How each kind of node is lowered (tests/test_tables.py holds the table complete).
LOWER: dict[type, Callable[[_Lowering, Any], None]] = {
    ir.SparseFeature: _Lowering.embedding,
    ir.SequenceFeature: _Lowering.embedding,
    ir.DenseFeature: _Lowering.dense,
    ir.Group: _Lowering.group,
    ir.Expert: _Lowering.expert,
    ir.Tower: _Lowering.tower,
    ir.Apg: _Lowering.apg,
    ir.Star: _Lowering.star,
    ir.Cross: _Lowering.cross,
    ir.CrossPool: _Lowering.cross,
    ir.Gate: _Lowering.gate,
    ir.ScaleGate: _Lowering.scale_gate,
    ir.Stitch: _Lowering.stitch,
    ir.Route: _Lowering.route,
    ir.Transfer: _Lowering.transfer,
    ir.Task: _Lowering.task,
}


def _bank_sources(gates: list[ir.Gate]) -> list[ir.GateSource]:
    """The union of the gates' sources (``x`` and ``stopgrad(x)`` apart), in order of first
    appearance."""
    sources: list[ir.GateSource] = []
    for gate in gates:
        seen = {(t.name, t.stop) for t in sources}
        sources += [s for s in gate.sources if (s.name, s.stop) not in seen]
    return sources


def _read(source: ir.GateSource) -> str:
    return f"stopgrad({source.name})" if source.stop else source.name


def _star_module(
    attr: str, star: ir.Star, lines: tuple[int, ...], num_experts: int | None = None
) -> StarModule:
    """The module of one star tower, or (given ``num_experts``) of a pool of towers like it."""
    return StarModule(
        attr=attr,
        in_dim=star.input_width,
        dims=tuple(star.dims),
        num_domains=star.domains,
        combine=star.combine,
        norm=star.norm,
        activation=star.activation,
        dropout=star.dropout,
        lines=lines,
        num_experts=num_experts,
    )
