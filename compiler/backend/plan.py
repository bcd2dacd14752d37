"""The plan: what the generated module builds in ``__init__`` and computes in ``forward``.

``backend.lowering`` makes it from the IR; ``backend.emission`` prints it. Every name in a
plan is already a safe Python identifier (see ``backend.identifiers``) and every
width is known; modules are listed in ``__init__`` order, steps in
``forward_logits`` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from mtlc import ir


@dataclass(frozen=True)
class Block:
    """The options of one ``mlp`` block."""

    in_dim: int
    dims: tuple[int, ...]
    activation: str
    dropout: float
    norm: str


# -- modules built in __init__ --------------------------------------------------


@dataclass(frozen=True)
class Embedding:
    attr: str
    vocab: int
    dim: int
    lines: tuple[int, ...]


@dataclass(frozen=True)
class MlpModule:
    attr: str
    block: Block
    lines: tuple[int, ...]


@dataclass(frozen=True)
class ExpertsModule:
    """``rt.ExpertPool`` when ``batched`` (-O1), else ``rt.Experts`` (-O0)."""

    attr: str
    block: Block
    count: int
    batched: bool
    lines: tuple[int, ...]


@dataclass(frozen=True)
class GateModule:
    """``rt.GateBank`` when ``banked`` (-O1), else ``rt.SoftmaxGate`` (-O0)."""

    attr: str
    in_dim: int
    num_experts: int
    num_gates: int
    hidden: tuple[int, ...]
    top: int | None
    temperature: float
    masks: tuple[tuple[int, ...], ...] | None
    banked: bool
    lines: tuple[int, ...]


@dataclass(frozen=True)
class TransferModule:
    attr: str
    dim: int
    lines: tuple[int, ...]
    qkv_bias: bool = False


@dataclass(frozen=True)
class HeadModule:
    attr: str
    in_dim: int
    out_dim: int
    lines: tuple[int, ...]


Module = Union[Embedding, MlpModule, ExpertsModule, GateModule, TransferModule, HeadModule]


# -- steps of forward_logits ----------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """``local = self.<table>(batch[key])``, pooled for a sequence feature."""

    local: str
    key: str
    table: str
    pool: str | None  # "mean" | "sum" | "max" for a sequence feature
    width: int
    line: int


@dataclass(frozen=True)
class DenseInput:
    local: str
    key: str
    dim: int
    line: int


@dataclass(frozen=True)
class Concat:
    local: str
    parts: tuple[str, ...]  # vector expressions
    width: int
    line: int


@dataclass(frozen=True)
class Call:
    """``local = self.<attr>(*args)``: an mlp, expert pool or transfer."""

    local: str
    attr: str
    args: tuple[str, ...]
    shape: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Mixture:
    """Gates over ``experts``; ``locals`` has one name per gate of the module."""

    locals: tuple[str, ...]
    attr: str
    input: str
    experts: tuple[str, ...]  # expressions of shape [B, E_i, D], concatenated on dim 1
    banked: bool
    width: int
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Split:
    """``a, b = pool.split([2, 1], dim=1)``: the spec's pools out of one merged pool."""

    locals: tuple[str, ...]
    source: str
    sizes: tuple[int, ...]
    width: int
    lines: tuple[int, ...]


Step = Union[Lookup, DenseInput, Concat, Call, Mixture, Split]


@dataclass(frozen=True)
class Head:
    key: str
    attr: str
    input: str
    classes: int | None  # None for one logit (binary, regression)
    line: int


@dataclass(frozen=True)
class Prediction:
    """One output of ``forward``: ``local = <activation of logits[key]>`` or a product."""

    key: str
    local: str
    kind: str  # "sigmoid" | "identity" | "softmax" | "product"
    factors: tuple[str, ...]  # locals of the factors, for a product


@dataclass(frozen=True)
class Plan:
    model: ir.Model
    class_name: str
    opt_level: int
    modules: tuple[Module, ...]
    steps: tuple[Step, ...]
    heads: tuple[Head, ...]
    predictions: tuple[Prediction, ...]
    gate_banks: tuple[tuple[str, tuple[str, ...]], ...]  # bank attr -> its gates' attrs
    expert_pools: tuple[tuple[str, tuple[str, ...]], ...]  # merged pool attr -> its pools' attrs
