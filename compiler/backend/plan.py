"""The plan: what the generated module builds in ``__init__`` and computes in ``forward``.

``backend.lowering`` makes it from the IR; ``backend.emission`` prints it.
Every name in a plan is already a safe Python identifier (see
``backend.identifiers``) and every width is known; modules are listed in
``__init__`` order, steps in ``forward_logits`` order. Each module and step
carries the spec lines it comes from (``lines``), and each step its output
shape, so the emitter writes every trace comment one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mtlc import ir


@dataclass(frozen=True)
class Block:
    """The options of one ``mlp`` block."""

    in_dim: int
    dims: tuple[int, ...]
    activation: ir.Activation
    dropout: float
    norm: ir.Norm
    bias: bool = True


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
    """A gate (``rt.SoftmaxGate`` at -O0, ``rt.Gate`` at -O1) or, at -O1, a ``rt.GateBank``.

    ``mixes`` says, per gate, the spec's nodes it mixes, in its own order (for
    the comment above a bank).
    """

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
    mixes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    activation: ir.Activation = ir.Activation.relu  # of the hidden layers
    norm: ir.Norm = ir.Norm.none
    dropout: float = 0.0


@dataclass(frozen=True)
class ScaleGateModule:
    """``rt.ScaleGate``: a sigmoid gate over a vector, or over each expert of a pool."""

    attr: str
    in_dim: int
    width: int
    hidden: tuple[int, ...]
    scale: float
    activation: ir.Activation
    norm: ir.Norm
    dropout: float
    num_experts: int | None  # the pool's experts (or, for a bank, its gates); None for a vector
    lines: tuple[int, ...]
    mixes: tuple[str, ...] = ()  # a bank's gates (the nets of several sigmoid gates, -O1)


@dataclass(frozen=True)
class ApgModule:
    """``rt.APG``: adaptive parameter generation from a condition."""

    attr: str
    in_dim: int
    dims: tuple[int, ...]
    cond_dim: int
    ranks: tuple[int, ...]
    expands: tuple[int, ...]
    shared: bool
    inner: ir.Activation
    generate: ir.Activation
    activation: ir.Activation
    lines: tuple[int, ...]


@dataclass(frozen=True)
class StarModule:
    """``rt.Star``: one network per domain around a shared centre."""

    attr: str
    in_dim: int
    dims: tuple[int, ...]
    num_domains: int
    combine: ir.Combine
    norm: ir.StarNorm
    activation: ir.Activation
    dropout: float
    lines: tuple[int, ...]
    num_experts: int | None = None  # -O1: the networks of several star towers, as one pool


@dataclass(frozen=True)
class CrossModule:
    """``rt.Cross``: a cross network (or, with ``num_experts``, a pool of them)."""

    attr: str
    dim: int
    node: ir.Cross  # its options: layers, form, bias, rank, experts
    lines: tuple[int, ...]
    num_experts: int | None = None


@dataclass(frozen=True)
class StitchModule:
    """``rt.CrossStitch``: a cross-stitch unit over ``sources`` columns of width ``dim``."""

    attr: str
    dim: int
    sources: int
    column: int  # the index of the column it continues (its weight starts at 1)
    scalar: bool
    lines: tuple[int, ...]


@dataclass(frozen=True)
class RouteModule:
    """``rt.Route``: one output of a sub-network routing layer over ``experts`` columns."""

    attr: str
    dim: int
    experts: int
    transform: bool
    lines: tuple[int, ...]


@dataclass(frozen=True)
class TransferModule:
    attr: str
    dim: int
    qkv_bias: bool
    lines: tuple[int, ...]


@dataclass(frozen=True)
class HeadModule:
    attr: str
    in_dim: int
    out_dim: int
    lines: tuple[int, ...]
    bias: bool = True


Module = (
    Embedding
    | MlpModule
    | ExpertsModule
    | GateModule
    | ScaleGateModule
    | ApgModule
    | StarModule
    | CrossModule
    | StitchModule
    | RouteModule
    | TransferModule
    | HeadModule
)


# -- steps of forward_logits ----------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """``local = self.<table>(batch[key])``, pooled for a sequence feature."""

    local: str
    key: str
    table: str
    pool: ir.Pooling | None  # for a sequence feature
    shape: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class DenseInput:
    local: str
    key: str
    dim: int
    shape: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Concat:
    local: str
    parts: tuple[str, ...]  # vector expressions
    shape: str
    lines: tuple[int, ...]


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
    shape: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Split:
    """``a, b = pool.split([2, 1], dim=1)``: the spec's pools out of one merged pool."""

    locals: tuple[str, ...]
    source: str
    sizes: tuple[int, ...]
    shape: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Unbind:
    """``a, b = pool.unbind(1)``: the spec's vectors out of one pool of their networks."""

    locals: tuple[str, ...]
    source: str
    shape: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class GateLogits:
    """``a_z, b_z = self.<attr>.logits(input).unbind(1)``: the nets of a bank of sigmoid gates."""

    locals: tuple[str, ...]
    attr: str
    input: str
    shape: str
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Scaled:
    """``local = rt.scale_by(source, logits, scale)``: one sigmoid gate of a bank."""

    local: str
    source: str
    logits: str
    scale: float
    shape: str
    lines: tuple[int, ...]


Step = Lookup | DenseInput | Concat | Call | Mixture | Split | Unbind | GateLogits | Scaled


@dataclass(frozen=True)
class Head:
    key: str
    attr: str
    input: str
    classes: int | None  # None for one logit (binary, regression)
    shape: str
    lines: tuple[int, ...]


class Output(str, Enum):
    """What ``forward`` makes of a task's logits."""

    sigmoid = "sigmoid"  # binary: a probability
    identity = "identity"  # regression: the value
    softmax = "softmax"  # multiclass: probabilities over the classes
    product = "product"  # a product task: its factors' probabilities multiplied


@dataclass(frozen=True)
class Prediction:
    """One output of ``forward``: ``local = <output of logits[key]>`` or a product."""

    key: str
    local: str
    output: Output
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
