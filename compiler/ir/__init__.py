"""The typed IR: a checked model as a graph of nodes whose widths are known.

The checker (``mtlc.check``) builds it from the syntax tree once every name is
resolved and every rule holds; the back end and the views only read it
(``spelling`` says how values are written in a node's text; ``reserved`` the
names a generated module keeps for itself). Imports only the shared diagnostics
(for ``Span``). Nodes are listed in declaration order, which is a topological
order (a name is used only after it is declared). References between nodes are
by name: every referenced name is guaranteed to exist in ``Model.nodes`` and to
be of the kind its field says.

Each node class carries its own facts, the one place every later stage reads
them from: ``inputs()`` (the names it reads), ``shape`` (its output),
``parameters()`` (its exact trainable parameter count, in the layouts of
``mtlc.runtime``, the same at -O0 and -O1), ``text()`` (the node as the spec
writes it: the generated docstring, ``mtlc explain``, the graph's tooltips)
and ``brief()`` (one short form: the graph's boxes), plus ``kind_word`` (its
kind in a diagnostic's words).

The IR is serialisable to JSON (``mtlc compile --emit ir``); ``IR_VERSION`` is
bumped on every incompatible change.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mtlc.diagnostics.span import Span
from mtlc.ir.spelling import integer, number, widths

IR_VERSION = 2


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
    ipw = "ipw"  # ESCM2's counterfactual losses of a CVR task: inverse propensity weighting,
    dr = "dr"  # and doubly robust (with an imputation task); see Task.propensity


class Combine(str, Enum):
    """How a star block combines the shared and a domain's weights."""

    mul = "mul"  # W * W_p, elementwise: the STAR paper's
    add = "add"  # W + W_p: NextRec 0.4.28's


class StarNorm(str, Enum):
    none = "none"
    partitioned = "partitioned"  # STAR's partitioned normalisation, per domain


class CrossForm(str, Enum):
    """What a cross layer multiplies ``x_0`` by (see ``Cross``)."""

    vector = "vector"  # DCN: x_l . w_l, a scalar per row
    matrix = "matrix"  # DCNv2: x_l W_l^T
    mix = "mix"  # DCNv2: a softmax-gated mixture of low-rank experts


class CrossBias(str, Enum):
    """Where a cross layer adds its bias: ``x_0 * (f + b)`` or ``x_0 * f + b``."""

    inside = "inside"
    outside = "outside"


class StitchWeights(str, Enum):
    """A cross-stitch unit's weights: one per source and channel, or one per source."""

    channel = "channel"  # NextRec 0.6.14's: [sources, width]
    scalar = "scalar"  # the paper's (Misra et al.): one number per pair of columns


class WeightingKind(str, Enum):
    fixed = "fixed"
    uncertainty = "uncertainty"
    gradnorm = "gradnorm"


def _linear(in_dim: int, out_dim: int, bias: bool = True) -> int:
    """``nn.Linear(in_dim, out_dim)``: weight ``[out, in]`` and bias ``[out]``."""
    return in_dim * out_dim + (out_dim if bias else 0)


def _mlp(
    in_dim: int, dims: list[int], norm: Norm, activation: Activation, bias: bool = True
) -> int:
    """``rt.MLP``: per layer a Linear, a norm (batch or layer: 2 per unit), a PReLU slope."""
    total = 0
    for width_in, width in zip([in_dim, *dims[:-1]], dims):
        total += _linear(width_in, width, bias)
        total += 2 * width if norm is not Norm.none else 0
        total += 1 if activation is Activation.prelu else 0
    return total


def _read(name: str, stop: bool) -> str:
    """A name as the spec reads it: ``stopgrad(x)`` when no gradient flows back into it."""
    return f"stopgrad({name})" if stop else name


def _hidden_options(activation: Activation, norm: Norm, dropout: float) -> str:
    """A gate's options for its hidden layers, as written (defaults left out)."""
    options = ""
    if activation is not Activation.relu:
        options += f", activation={activation.value}"
    if norm is not Norm.none:
        options += f", norm={norm.value}"
    if dropout:
        options += f", dropout={number(dropout)}"
    return options


class _Node(_Frozen):
    """What every node has: a name, a span, the width of one output vector (per expert in pools)."""

    kind_word: ClassVar[str]  # the node's kind in a diagnostic's words: "tower", "expert pool"

    name: str
    span: Span
    width: int

    def inputs(self) -> list[str]:
        """The names of the nodes this one reads, in the order the spec writes them."""
        return []

    @property
    def vectors(self) -> int:
        """Output vectors per example: a pool's experts, else 1."""
        return 1

    @property
    def is_pool(self) -> bool:
        """Whether the output is a pool of experts, ``[B, E, D]`` (even of one)."""
        return False

    @property
    def shape(self) -> str:
        """The output shape, ``B`` for the batch: ``[B, D]``; ``[B, E, D]`` for a pool."""
        return f"[B, {self.width}]"

    def parameters(self) -> int:
        """The trainable parameters the node owns (0 for one that only reads others)."""
        return 0

    def text(self) -> str:
        """The node as the spec writes it (its statement after the ``=`` or ``:``)."""
        raise NotImplementedError

    def brief(self) -> str:
        """One short form of the node, for a small box."""
        raise NotImplementedError


# -- features -----------------------------------------------------------------


class SparseFeature(_Node):
    kind_word: ClassVar[str] = "sparse feature"

    op: Literal["sparse"] = "sparse"
    vocab: int
    dim: int
    table: str | None = None  # the feature whose embedding table this one shares (its root owner)

    def parameters(self) -> int:
        return 0 if self.table else self.vocab * self.dim

    def text(self) -> str:
        table = f", table={self.table}" if self.table else ""
        return f"sparse(vocab={integer(self.vocab)}, dim={self.dim}{table})"

    def brief(self) -> str:
        return f"sparse, table {self.table}" if self.table else f"sparse {self.vocab}x{self.dim}"


class SequenceFeature(_Node):
    kind_word: ClassVar[str] = "sequence feature"

    op: Literal["sequence"] = "sequence"
    vocab: int
    dim: int
    maxlen: int
    pool: Pooling = Pooling.mean
    table: str | None = None

    def parameters(self) -> int:
        return 0 if self.table else self.vocab * self.dim

    def text(self) -> str:
        table = f", table={self.table}" if self.table else ""
        return (
            f"sequence(vocab={integer(self.vocab)}, dim={self.dim}, maxlen={self.maxlen}, "
            f"pool={self.pool.value}{table})"
        )

    def brief(self) -> str:
        if self.table:
            return f"sequence, table {self.table}"
        return f"sequence {self.vocab}x{self.dim} {self.pool.value}"


class DenseFeature(_Node):
    kind_word: ClassVar[str] = "dense feature"

    op: Literal["dense"] = "dense"
    dim: int = 1

    def text(self) -> str:
        return "dense" if self.dim == 1 else f"dense(dim={self.dim})"

    def brief(self) -> str:
        return "dense"


class Group(_Node):
    kind_word: ClassVar[str] = "group"

    op: Literal["group"] = "group"
    members: list[str]  # nodes of one vector each, concatenated in order
    stopped: list[int] = Field(default_factory=list)  # members read through stopgrad, by position

    def inputs(self) -> list[str]:
        return list(self.members)

    def text(self) -> str:
        members = [_read(name, i in self.stopped) for i, name in enumerate(self.members)]
        if len(members) > 6:  # the middle elided: a wide input reads on one line
            return f"group [{', '.join(members[:3])}, ..., {members[-1]}] ({len(members)} members)"
        return f"group [{', '.join(members)}]"

    def brief(self) -> str:
        return "group"


# -- networks -----------------------------------------------------------------


class Mlp(_Frozen):
    """``mlp(input, dims, ...)``: per layer Linear -> norm -> activation -> dropout."""

    input: str
    input_width: int
    dims: list[int]
    activation: Activation = Activation.relu
    dropout: float = 0.0
    norm: Norm = Norm.none
    bias: bool = True  # ``bias=false``: Linear layers without a bias
    span: Span

    def parameters(self) -> int:
        """``rt.MLP``: per layer a Linear, a norm (batch or layer: 2 per unit), a PReLU slope."""
        return _mlp(self.input_width, self.dims, self.norm, self.activation, self.bias)

    def text(self) -> str:
        options = ""
        if self.activation is not Activation.relu:
            options += f", activation={self.activation.value}"
        if self.dropout:
            options += f", dropout={number(self.dropout)}"
        if self.norm is not Norm.none:
            options += f", norm={self.norm.value}"
        if not self.bias:
            options += ", bias=false"
        return f"mlp({self.input}, {widths(self.dims)}{options})"


class _Pool(_Node):
    """A pool of ``count`` experts: its output is ``[B, count, width]`` (even for one)."""

    count: int = 1

    @property
    def vectors(self) -> int:
        return self.count

    @property
    def is_pool(self) -> bool:
        return True

    @property
    def shape(self) -> str:
        return f"[B, {self.count}, {self.width}]"


class Expert(_Pool):
    """A pool of ``count`` independent copies of ``block``; width is one expert's."""

    kind_word: ClassVar[str] = "expert pool"

    op: Literal["expert"] = "expert"
    count: int = 1
    block: Mlp

    def inputs(self) -> list[str]:
        return [self.block.input]

    def parameters(self) -> int:
        return self.count * self.block.parameters()

    def text(self) -> str:
        return f"expert x{self.count} {self.block.text()}"

    def brief(self) -> str:
        return f"mlp {widths(self.block.dims)}"


class Tower(_Node):
    kind_word: ClassVar[str] = "tower"

    op: Literal["tower"] = "tower"
    block: Mlp

    def inputs(self) -> list[str]:
        return [self.block.input]

    def parameters(self) -> int:
        return self.block.parameters()

    def text(self) -> str:
        return f"tower {self.block.text()}"

    def brief(self) -> str:
        return f"mlp {widths(self.block.dims)}"


class Apg(_Node):
    """``tower NAME = apg(INPUT, dims, by=COND, ...)``: adaptive parameter generation (APG).

    Per layer ``n -> m`` of rank ``k``: ``a = inner(x U + b)``, then
    ``a = inner(a M(c) + b(c))`` with ``M(c)`` a ``k x k`` matrix generated from
    the condition ``c`` (a Linear and the ``generate`` activation), then
    ``y = activation(a V + b)``; with ``expands`` (NextRec's ``use_mf_p``) the
    shared factors go through width ``p`` on both sides; without ``shared``,
    ``U``, ``V`` and their biases are generated too.
    """

    kind_word: ClassVar[str] = "tower"

    op: Literal["apg"] = "apg"
    input: str
    input_width: int
    condition: str
    condition_width: int
    dims: list[int]
    ranks: list[int]  # k per layer
    expands: list[int] = Field(default_factory=list)  # p per layer (shared only), or none
    shared: bool = True
    inner: Activation = Activation.none
    generate: Activation = Activation.none
    activation: Activation = Activation.relu

    def inputs(self) -> list[str]:
        return [self.input, self.condition]

    def parameters(self) -> int:
        """Per layer: the generators of ``M`` and its bias, then the shared (or generated)
        factors, and a PReLU slope."""
        total, c = 0, self.condition_width + 1  # a generator is a Linear from the condition
        for i, (n, m) in enumerate(zip([self.input_width, *self.dims[:-1]], self.dims)):
            k = self.ranks[i]
            total += c * k * k + c * k
            if not self.shared:
                total += c * (n * k + k + k * m + m)
            elif self.expands:
                p = self.expands[i]
                total += n * p + p + p * k + k + k * p + p + p * m + m
            else:
                total += n * k + k + k * m + m
            total += 1 if self.activation is Activation.prelu else 0
        return total

    def text(self) -> str:
        options = f", by={self.condition}, rank={widths(self.ranks)}"
        if self.expands:
            options += f", expand={widths(self.expands)}"
        if not self.shared:
            options += ", shared=false"
        if self.inner is not Activation.none:
            options += f", inner={self.inner.value}"
        if self.generate is not Activation.none:
            options += f", generate={self.generate.value}"
        if self.activation is not Activation.relu:
            options += f", activation={self.activation.value}"
        return f"tower apg({self.input}, {widths(self.dims)}{options})"

    def brief(self) -> str:
        return f"apg {widths(self.dims)}"


class Star(_Node):
    """``tower NAME = star(INPUT, dims, domain=FEATURE, ...)``: STAR's star-topology network.

    Each row goes through its domain's network (its domain is the id of the
    sparse feature ``domain``): per layer the weight ``W * W_p`` (``combine``
    ``mul``, the paper's) or ``W + W_p`` (``add``, NextRec's), bias ``b + b_p``;
    with ``norm=partitioned``, the input is first normalised per domain.
    """

    kind_word: ClassVar[str] = "tower"

    op: Literal["star"] = "star"
    input: str
    input_width: int
    dims: list[int]
    domain: str  # a sparse feature: its ids pick each row's domain
    domains: int  # its vocab: the number of domains
    combine: Combine = Combine.mul
    norm: StarNorm = StarNorm.none
    activation: Activation = Activation.relu
    dropout: float = 0.0

    def inputs(self) -> list[str]:
        return [self.input, self.domain]

    def parameters(self) -> int:
        """Per layer the shared and every domain's weight and bias; the norm's scales and shifts."""
        total = 0
        for n, m in zip([self.input_width, *self.dims[:-1]], self.dims):
            total += (1 + self.domains) * _linear(n, m)
            total += 1 if self.activation is Activation.prelu else 0
        if self.norm is StarNorm.partitioned:
            total += (1 + self.domains) * 2 * self.input_width
        return total

    def text(self) -> str:
        options = f", domain={self.domain}"
        if self.combine is not Combine.mul:
            options += f", combine={self.combine.value}"
        if self.norm is not StarNorm.none:
            options += f", norm={self.norm.value}"
        if self.activation is not Activation.relu:
            options += f", activation={self.activation.value}"
        if self.dropout:
            options += f", dropout={number(self.dropout)}"
        return f"tower star({self.input}, {widths(self.dims)}{options})"

    def brief(self) -> str:
        return f"star {widths(self.dims)} x{self.domains}"


class Cross(_Node):
    """``tower NAME = cross(INPUT, layers=L, ...)``: a DCN / DCNv2 cross network, width kept.

    Per layer ``x_{l+1} = x_0 * f(x_l) + x_l`` with the bias inside the product or
    outside it; ``f`` by ``form``: ``x . w`` (vector), ``x W^T`` (matrix), or a
    mixture of ``experts`` low-rank (``rank``) projections gated by a softmax (mix).
    """

    kind_word: ClassVar[str] = "tower"

    op: Literal["cross"] = "cross"
    input: str
    layers: int
    form: CrossForm = CrossForm.vector
    bias: CrossBias = CrossBias.outside  # the check sets the form's default (see DEFAULT_BIAS)
    rank: int = 32  # mix only
    experts: int = 4  # mix only: the low-rank experts of each layer

    def inputs(self) -> list[str]:
        return [self.input]

    def network_parameters(self) -> int:
        """One network's: per layer its weights and bias, and (mix) the gating shared by all."""
        d, r, k = self.width, self.rank, self.experts
        if self.form is CrossForm.vector:
            return self.layers * 2 * d
        if self.form is CrossForm.matrix:
            return self.layers * (d * d + d)
        return self.layers * (2 * k * d * r + k * r * r + d) + k * d

    def parameters(self) -> int:
        return self.network_parameters()

    def call_text(self) -> str:
        options = f"layers={self.layers}"
        if self.form is not CrossForm.vector:
            options += f", form={self.form.value}"
        if self.bias is not DEFAULT_BIAS[self.form]:
            options += f", bias={self.bias.value}"
        if self.form is CrossForm.mix:
            options += f", rank={self.rank}, experts={self.experts}"
        return f"cross({self.input}, {options})"

    def text(self) -> str:
        return f"tower {self.call_text()}"

    def brief(self) -> str:
        return f"cross {self.form.value} x{self.layers}"


class CrossPool(_Pool, Cross):
    """``expert NAME xN = cross(...)``: N independent cross networks over one input."""

    kind_word: ClassVar[str] = "expert pool"

    op: Literal["cross_pool"] = "cross_pool"  # type: ignore[assignment]
    count: int = 1

    def parameters(self) -> int:
        return self.count * self.network_parameters()

    def text(self) -> str:
        return f"expert x{self.count} {self.call_text()}"


# The bias each form's paper adds: DCN outside the product, DCNv2 inside.
DEFAULT_BIAS = {
    CrossForm.vector: CrossBias.outside,
    CrossForm.matrix: CrossBias.inside,
    CrossForm.mix: CrossBias.inside,
}


class GateSource(_Frozen):
    name: str
    count: int  # experts this source contributes (1 for a vector node)
    stop: bool = False  # read through stopgrad: no gradient flows back into it


class Gate(_Node):
    """Softmax gate: weights over the concatenated experts of ``sources``."""

    kind_word: ClassVar[str] = "gate"

    op: Literal["gate"] = "gate"
    input: str
    input_width: int
    sources: list[GateSource]
    num_experts: int  # sum of the sources' counts
    top: int | None = None
    temperature: float = 1.0
    hidden: list[int] = Field(default_factory=list)
    # the hidden layers' options, as mlp's (only with hidden layers)
    activation: Activation = Activation.relu
    norm: Norm = Norm.none
    dropout: float = 0.0

    def inputs(self) -> list[str]:
        return [self.input] + [source.name for source in self.sources]

    def parameters(self) -> int:
        """A ReLU MLP of the ``hidden`` widths, then a Linear to one logit per expert."""
        last = self.hidden[-1] if self.hidden else self.input_width
        hidden = _mlp(self.input_width, self.hidden, self.norm, self.activation)
        return hidden + _linear(last, self.num_experts)

    def text(self) -> str:
        options = ""
        if self.top is not None:
            options += f", top={self.top}"
        if self.temperature != 1.0:
            options += f", temperature={number(self.temperature)}"
        if self.hidden:
            options += f", hidden={widths(self.hidden)}"
        options += _hidden_options(self.activation, self.norm, self.dropout)
        sources = ", ".join(_read(source.name, source.stop) for source in self.sources)
        return f"gate softmax({self.input}{options}) over [{sources}]"

    def brief(self) -> str:
        return f"softmax over {self.num_experts}"


class ScaleGate(_Node):
    """A sigmoid gate: ``source * scale * sigmoid(net(input))``, elementwise (POSO, PEPNet).

    ``net`` is an MLP of the ``hidden`` widths, then a Linear to the source's
    width. Over an expert pool (``pool``), each of its ``count`` experts has
    its own net, and the output is a pool too.
    """

    kind_word: ClassVar[str] = "sigmoid gate"

    op: Literal["scale"] = "scale"
    input: str  # the condition
    input_width: int
    source: str
    source_stop: bool = False
    pool: bool = False  # the source is an expert pool: the output is one
    count: int = 1  # the pool's experts (1 for a vector)
    hidden: list[int] = Field(default_factory=list)
    scale: float = 1.0
    activation: Activation = Activation.relu
    norm: Norm = Norm.none
    dropout: float = 0.0

    def inputs(self) -> list[str]:
        return [self.input, self.source]

    @property
    def vectors(self) -> int:
        return self.count

    @property
    def is_pool(self) -> bool:
        return self.pool

    @property
    def shape(self) -> str:
        return f"[B, {self.count}, {self.width}]" if self.pool else f"[B, {self.width}]"

    def parameters(self) -> int:
        """Per expert (or once): the hidden MLP, then a Linear to the source's width."""
        last = self.hidden[-1] if self.hidden else self.input_width
        net = _mlp(self.input_width, self.hidden, self.norm, self.activation)
        return self.count * (net + _linear(last, self.width))

    def text(self) -> str:
        options = f", hidden={widths(self.hidden)}" if self.hidden else ""
        if self.scale != 1.0:
            options += f", scale={number(self.scale)}"
        options += _hidden_options(self.activation, self.norm, self.dropout)
        source = _read(self.source, self.source_stop)
        return f"gate sigmoid({self.input}{options}) over [{source}]"

    def brief(self) -> str:
        return f"sigmoid x{number(self.scale)}"


class Stitch(_Node):
    """A cross-stitch unit (Misra et al., CVPR 2016): ``sum_s a_s * source_s``, elementwise.

    ``a_s`` is a vector of the width (``weights=channel``) or a number
    (``scalar``); it starts at 1 for ``column`` (the column the unit continues)
    and 0 for the others, so a fresh unit passes its own column through.
    """

    kind_word: ClassVar[str] = "cross-stitch gate"

    op: Literal["stitch"] = "stitch"
    column: str
    sources: list[str]
    weights: StitchWeights = StitchWeights.channel

    def inputs(self) -> list[str]:
        return list(self.sources)

    def parameters(self) -> int:
        return len(self.sources) * (self.width if self.weights is StitchWeights.channel else 1)

    def text(self) -> str:
        options = ", weights=scalar" if self.weights is StitchWeights.scalar else ""
        return f"gate cross_stitch({self.column}{options}) over [{', '.join(self.sources)}]"

    def brief(self) -> str:
        return f"cross-stitch x{len(self.sources)}"


class Route(_Node):
    """A sub-network routing gate (SNR-Trans, Ma et al., AAAI 2019), one output:
    ``sum_e z_e (x_e T_e)`` over the ``experts`` columns of its sources (a pool gives
    its experts, a vector one), with ``z_e = clamp(1.2 sigmoid(w_e) - 0.1, 0, 1)``
    from a learned logit ``w_e`` and ``T_e`` a learned square matrix (the identity,
    absent, with ``transform=false``: SNR-Aver).
    """

    kind_word: ClassVar[str] = "routing gate"

    op: Literal["route"] = "route"
    sources: list[GateSource]
    experts: int  # the columns it routes: the sum of the sources' counts
    transform: bool = True

    def inputs(self) -> list[str]:
        return [source.name for source in self.sources]

    def parameters(self) -> int:
        return self.experts * (1 + (self.width * self.width if self.transform else 0))

    def text(self) -> str:
        options = "" if self.transform else "transform=false"
        return f"gate snr({options}) over [{', '.join(s.name for s in self.sources)}]"

    def brief(self) -> str:
        return f"snr x{self.experts}"


class Transfer(_Node):
    """AITM's attentive information transfer from ``previous`` into ``current``."""

    kind_word: ClassVar[str] = "transfer"

    op: Literal["transfer"] = "transfer"
    current: str
    previous: str
    qkv_bias: bool = (
        False  # ``ait(..., bias=true)``: Q/K/V with biases (NextRec); the paper's have none
    )

    def inputs(self) -> list[str]:
        return [self.current, self.previous]

    def parameters(self) -> int:
        """The information projection (with bias), then query, key and value."""
        width = self.width
        return _linear(width, width) + 3 * _linear(width, width, bias=self.qkv_bias)

    def text(self) -> str:
        bias = ", bias=true" if self.qkv_bias else ""
        return f"transfer ait({self.current}, from={self.previous}{bias})"

    def brief(self) -> str:
        return "ait"


class Task(_Node):
    """A task. ``input`` is set for a task with a head, ``factors`` for a product task.

    ``label`` is None for a latent task. ``width`` is 1, or ``classes`` for multiclass.
    """

    kind_word: ClassVar[str] = "task"

    op: Literal["task"] = "task"
    kind: TaskKind
    label: str | None = None
    loss: Loss | None = None  # None for a latent task
    weight: float = 1.0
    classes: int | None = None
    input: str | None = None
    input_width: int | None = None
    factors: list[str] = Field(default_factory=list)
    bias: bool = True  # ``bias=false``: the head's Linear has no bias
    # ``loss=ipw(P)`` / ``loss=dr(P, imputation=I)`` (ESCM2): the binary task whose label says
    # which rows were clicked and whose probability is their propensity, and the latent
    # regression task that imputes the error (dr only)
    propensity: str | None = None
    imputation: str | None = None

    def inputs(self) -> list[str]:
        return [self.input] if self.input else list(self.factors)

    @property
    def logits(self) -> int:
        """The head's outputs: the classes of a multiclass task, else one logit."""
        return self.classes if self.kind is TaskKind.multiclass and self.classes else 1

    @property
    def shape(self) -> str:
        return f"[B, {self.classes}]" if self.kind is TaskKind.multiclass else "[B]"

    def parameters(self) -> int:
        """The head: a Linear from the input to the logits (a product task has none)."""
        if self.input is None:
            return 0
        return _linear(self.input_width or 0, self.logits, self.bias)

    def text(self) -> str:
        options = []
        if self.kind is TaskKind.multiclass:
            options.append(f"classes={self.classes}")
        if self.label is not None:
            options.append(f"label={self.label}")
        if not self.bias:
            options.append("bias=false")
        if self.loss is Loss.ipw:
            options.append(f"loss=ipw({self.propensity})")
        elif self.loss is Loss.dr:
            options.append(f"loss=dr({self.propensity}, imputation={self.imputation})")
        kind = self.kind.value + (f"({', '.join(options)})" if options else "")
        if self.factors:
            return f"{kind} = {' * '.join(self.factors)}"
        return f"{kind} of {self.input}" + ("" if self.label is not None else ", latent")

    def brief(self) -> str:
        return self.kind.value + (f" {self.label}" if self.label is not None else ", latent")


Node = Annotated[
    SparseFeature
    | SequenceFeature
    | DenseFeature
    | Group
    | Expert
    | Tower
    | Apg
    | Star
    | Cross
    | CrossPool
    | Gate
    | ScaleGate
    | Stitch
    | Route
    | Transfer
    | Task,
    Field(discriminator="op"),
]
# Every kind of node, in the order the language introduces them.
NODE_KINDS: tuple[type[_Node], ...] = (
    SparseFeature,
    SequenceFeature,
    DenseFeature,
    Group,
    Expert,
    Tower,
    Apg,
    Star,
    Cross,
    CrossPool,
    Gate,
    ScaleGate,
    Stitch,
    Route,
    Transfer,
    Task,
)
FEATURES = (SparseFeature, SequenceFeature, DenseFeature)


class Constraint(_Frozen):
    """``constrain left <= right weight w``: adds w * mean(relu(p_left - p_right))."""

    left: str
    right: str
    weight: float = 1.0
    span: Span


class Weighting(_Frozen):
    kind: WeightingKind = WeightingKind.fixed
    alpha: float | None = None  # gradnorm only; None: the runtime's default (rt.Weighting)
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

    def of_kind(self, *kinds: type[_Node]) -> list:
        """The nodes of the given kinds, in declaration order."""
        return [node for node in self.nodes if isinstance(node, kinds)]

    @property
    def tasks(self) -> list[Task]:
        return self.of_kind(Task)

    @property
    def features(self) -> list[SparseFeature | SequenceFeature | DenseFeature]:
        return self.of_kind(*FEATURES)
