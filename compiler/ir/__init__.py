"""The typed IR: a checked model as a graph of nodes whose widths are known.

The checker (``mtlc.check``) builds it from the syntax tree once every name is
resolved and every rule holds; the back end and the views only read it
(``facts`` says each node's shape; ``reserved`` the names a generated module
keeps for itself). Imports only the shared diagnostics (for ``Span``). Nodes are listed
in declaration order, which is a topological order (a name is used only after
it is declared). References between nodes are by name: every referenced name is
guaranteed to exist in ``Model.nodes`` and to be of the kind its field says.

The IR is serialisable to JSON (``mtlc compile --emit ir``); ``IR_VERSION`` is
bumped on every incompatible change.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from mtlc.diagnostics.span import Span

IR_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Activation(str, Enum):
    relu = "relu"
    gelu = "gelu"
    silu = "silu"
    tanh = "tanh"
    sigmoid = "sigmoid"
    prelu = "prelu"
    none = "none"  # a purely linear layer (NextRec's "linear"/"identity")


class Norm(str, Enum):
    none = "none"
    batch = "batch"
    layer = "layer"


class Pooling(str, Enum):
    mean = "mean"
    sum = "sum"
    max = "max"


class TaskKind(str, Enum):
    binary = "binary"
    regression = "regression"
    multiclass = "multiclass"


class Loss(str, Enum):
    bce = "bce"
    focal = "focal"
    mse = "mse"
    huber = "huber"
    ce = "ce"  # multiclass cross-entropy, the only multiclass loss


class WeightingKind(str, Enum):
    fixed = "fixed"
    uncertainty = "uncertainty"
    gradnorm = "gradnorm"


class _Node(_Frozen):
    name: str
    span: Span
    width: int  # width of one output vector (per expert for pools)


# -- features -----------------------------------------------------------------


class SparseFeature(_Node):
    op: Literal["sparse"] = "sparse"
    vocab: int
    dim: int
    table: str | None = None  # the feature whose embedding table this one shares (its root owner)


class SequenceFeature(_Node):
    op: Literal["sequence"] = "sequence"
    vocab: int
    dim: int
    maxlen: int
    pool: Pooling = Pooling.mean
    table: str | None = None


class DenseFeature(_Node):
    op: Literal["dense"] = "dense"
    dim: int = 1


class Group(_Node):
    op: Literal["group"] = "group"
    members: list[str]  # features or groups, concatenated in order


# -- networks -----------------------------------------------------------------


class Mlp(_Frozen):
    """``mlp(input, dims, ...)``: per layer Linear -> norm -> activation -> dropout."""

    input: str
    input_width: int
    dims: list[int]
    activation: Activation = Activation.relu
    dropout: float = 0.0
    norm: Norm = Norm.none
    span: Span


class Expert(_Node):
    """A pool of ``count`` independent copies of ``block``; width is one expert's."""

    op: Literal["expert"] = "expert"
    count: int = 1
    block: Mlp


class Tower(_Node):
    op: Literal["tower"] = "tower"
    block: Mlp


class GateSource(_Frozen):
    name: str
    count: int  # experts this source contributes (1 for a vector node)


class Gate(_Node):
    """Softmax gate: weights over the concatenated experts of ``sources``."""

    op: Literal["gate"] = "gate"
    input: str
    input_width: int
    sources: list[GateSource]
    num_experts: int  # sum of the sources' counts
    top: int | None = None
    temperature: float = 1.0
    hidden: list[int] = Field(default_factory=list)


class Transfer(_Node):
    """AITM's attentive information transfer from ``previous`` into ``current``."""

    op: Literal["transfer"] = "transfer"
    current: str
    previous: str
    qkv_bias: bool = (
        False  # ``ait(..., bias=true)``: Q/K/V with biases (NextRec); the paper has none
    )


class Task(_Node):
    """A task. ``input`` is set for a task with a head, ``factors`` for a product task.

    ``label`` is None for a latent task. ``width`` is 1, or ``classes`` for multiclass.
    """

    op: Literal["task"] = "task"
    kind: TaskKind
    label: str | None = None
    loss: Loss | None = None  # None for a latent task
    weight: float = 1.0
    classes: int | None = None
    input: str | None = None
    input_width: int | None = None
    factors: list[str] = Field(default_factory=list)


Node = Annotated[
    Union[
        SparseFeature,
        SequenceFeature,
        DenseFeature,
        Group,
        Expert,
        Tower,
        Gate,
        Transfer,
        Task,
    ],
    Field(discriminator="op"),
]


def inputs_of(node: Node) -> list[str]:
    """The names of the nodes ``node`` reads, in the order the spec writes them."""
    if isinstance(node, Group):
        return list(node.members)
    if isinstance(node, (Expert, Tower)):
        return [node.block.input]
    if isinstance(node, Gate):
        return [node.input] + [source.name for source in node.sources]
    if isinstance(node, Transfer):
        return [node.current, node.previous]
    if isinstance(node, Task):
        return [node.input] if node.input else list(node.factors)
    return []


class Constraint(_Frozen):
    """``constrain left <= right weight w``: adds w * mean(relu(p_left - p_right))."""

    left: str
    right: str
    weight: float = 1.0
    span: Span


class Weighting(_Frozen):
    kind: WeightingKind = WeightingKind.fixed
    alpha: float | None = None  # gradnorm only
    span: Span | None = None


class Model(_Frozen):
    """A checked spec."""

    ir_version: int = IR_VERSION
    name: str  # the class name, as written after ``model``
    description: str | None = None
    source: str  # the spec's file name as given to the compiler
    compiler_version: str
    nodes: list[Node]
    constraints: list[Constraint] = Field(default_factory=list)
    weighting: Weighting = Field(default_factory=Weighting)

    def node(self, name: str) -> Node:
        """The node called ``name`` (which the checker guarantees exists)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def tasks(self) -> list[Task]:
        return [node for node in self.nodes if isinstance(node, Task)]

    @property
    def features(self) -> list[SparseFeature | SequenceFeature | DenseFeature]:
        kinds = (SparseFeature, SequenceFeature, DenseFeature)
        return [node for node in self.nodes if isinstance(node, kinds)]
