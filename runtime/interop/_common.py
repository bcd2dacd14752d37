"""What the peer converters share: reading a peer's MLP, writing a spec, and the
peer's weights in a neutral form that ``_copy`` puts into a generated model.

A converter (``nextrec``, ``rechub``) reads a peer model into a ``Conversion``:
the text of the equivalent ``.mtl`` spec and, per spec node, the weights that
node must hold. Folds (two biases in a row, a linear dense projection, an
eval-mode BatchNorm in front of a softmax) happen while reading, so the
weights here are already in the spec's parametrisation.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mtlc.check.scope import NAME
from mtlc.ir import Activation
from mtlc.runtime import layers


class ConversionError(ValueError):
    """A peer model that mtlc cannot reproduce exactly, or weights that do not fit."""


# Peer activation modules and their names in the language: the runtime's module for each
# activation the language knows.
ACTIVATIONS: dict[type, str] = {layers.ACTIVATIONS[a.value]: a.value for a in Activation}


@dataclass
class Layer:
    """One Linear of a peer MLP, with the norm and PReLU that follow it.

    ``weight`` is ``[out, in]`` and ``bias`` ``[out]``, already folded into
    the spec's input layout; ``norm`` and ``prelu`` are the peer's modules.
    """

    weight: Tensor
    bias: Tensor
    norm: nn.Module | None = None
    prelu: nn.PReLU | None = None


@dataclass
class Block:
    """An ``mlp(input, dims, ...)`` of the spec and the peer layers it copies."""

    dims: list[int]
    activation: str = "relu"
    dropout: float = 0.0
    norm: str = "none"
    layers: list[Layer] = field(default_factory=list)
    bias: bool = True

    def options(self) -> str:
        """The layers' options as spec text (``, activation=...``; empty for the defaults)."""
        options = "" if self.activation == "relu" else f", activation={self.activation}"
        if self.dropout:
            options += f", dropout={self.dropout!r}"
        if self.norm != "none":
            options += f", norm={self.norm}"
        return options

    def text(self, source: str) -> str:
        """The block as spec text reading ``source``."""
        bias = "" if self.bias else ", bias=false"
        return f"mlp({source}, {self.dims}{self.options()}{bias})"


@dataclass
class Linear:
    """A gate's or a head's weights: ``weight`` ``[out, in]``, ``bias`` ``[out]``."""

    weight: Tensor
    bias: Tensor


@dataclass
class Net:
    """A gate's network: hidden layers (a ``Block``; None without any), then a ``Linear``.

    The weights of a softmax gate with ``hidden=[...]`` and of one sigmoid
    (scale) gate; a sigmoid gate over a pool of E experts holds a list of E.
    """

    hidden: Block | None
    out: Linear

    def options(self) -> str:
        """``, hidden=[...]`` and the hidden layers' options as spec text (empty without any)."""
        if self.hidden is None:
            return ""
        return f", hidden={self.hidden.dims}{self.hidden.options()}"


@dataclass
class Transfer:
    """AIT weights: each a ``Linear`` of ``[D, D]``."""

    info: Linear
    query: Linear
    key: Linear
    value: Linear


@dataclass
class State:
    """A node's weights as its runtime module's whole state_dict: ``rt.APG``'s
    (``layers.{l}.*``) for an ``apg`` tower, ``rt.Cross``'s for a ``cross`` one,
    ``rt.Route``'s for an ``snr`` gate.

    Already in the spec's parametrisation (a projection folded in); ``_copy``
    checks every key and shape against the generated module.
    """

    state: dict[str, Tensor]


@dataclass
class Conversion:
    """A peer model read: the spec's text and, per spec node name, its weights.

    ``weights`` values: a ``Tensor`` (an embedding table), a ``Block`` (a
    tower), a list of ``Block`` (an expert pool), a ``Linear`` (a gate or a
    task head), a ``Net`` (a softmax gate with hidden layers, or a sigmoid
    gate), a list of ``Net`` (a sigmoid gate over a pool), a ``Transfer`` or
    a ``State`` (an ``apg`` or ``cross`` tower).
    """

    spec: str
    weights: dict[str, object]


def read_mlp(
    sequential: nn.Sequential, *, output: bool, where: str
) -> tuple[Block, nn.Linear | None]:
    """Read a peer MLP built as ``[Linear, norm?, activation, Dropout?]*`` (+ ``Linear``).

    Args:
        sequential: the peer's layers, in order.
        output: whether the last Linear is an output layer (no activation after it).
        where: the peer module's name, for messages.

    Returns:
        the hidden layers as a ``Block`` and the output Linear (or None).
    """
    modules = list(sequential)
    out = None
    if output:
        if not modules or not isinstance(modules[-1], nn.Linear):
            raise ConversionError(
                f"{where}: an activation after the output layer has no counterpart in mtlc "
                "(the task's sigmoid is the only one); use output_activation='none'"
            )
        out = modules.pop()
    block = Block(dims=[])
    names: list[str] = []  # activation of each layer
    dropouts: set[float] = set()
    biases: set[bool] = set()
    for module in modules:
        if isinstance(module, nn.Linear):
            biases.add(module.bias is not None)
            block.layers.append(Layer(module.weight.detach(), _bias(module)))
            block.dims.append(module.out_features)
            names.append("none")
        elif not block.layers:
            raise ConversionError(
                f"{where}: expected a Linear first, found {type(module).__name__}"
            )
        elif isinstance(module, nn.Dropout):
            dropouts.add(float(module.p))
        elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
            _check_norm(module, where)
            block.layers[-1].norm = module
        elif type(module) in ACTIVATIONS:
            names[-1] = _activation(module, where)
            if isinstance(module, nn.PReLU):
                block.layers[-1].prelu = module
        else:
            raise ConversionError(
                f"{where}: activation {type(module).__name__} has no counterpart in mtlc"
            )
    norms = {_norm_name(layer.norm) for layer in block.layers}
    for what, values in (("activation", set(names)), ("dropout", dropouts), ("norm", norms)):
        if len(values) > 1:
            raise ConversionError(f"{where}: layers differ in {what} ({sorted(map(str, values))})")
    # bias=false where no layer has a bias; a missing bias among others reads as zeros
    block.bias = biases != {False}
    block.activation = names[0] if names else "relu"
    block.dropout = dropouts.pop() if dropouts else 0.0
    block.norm = norms.pop() if norms else "none"
    return block, out


def read_net(sequential: nn.Sequential, *, where: str, sigmoid: bool = False) -> Net:
    """A peer MLP with an output layer as a gate's ``Net``.

    Args:
        sequential: ``[Linear, norm?, activation, Dropout?]*`` then ``Linear``
            (and ``Sigmoid`` when ``sigmoid``: the sigmoid gate's own).
        sigmoid: whether the peer ends in the sigmoid that the gate applies itself.
    """
    modules = list(sequential)
    if sigmoid:
        if len(modules) < 2 or not isinstance(modules[-1], nn.Sigmoid):
            raise ConversionError(f"{where}: expected the gate's MLP to end in a Sigmoid")
        modules.pop()
    elif modules and not isinstance(modules[-1], nn.Linear):
        raise ConversionError(
            f"{where}: an output activation ({type(modules[-1]).__name__}) before the gate's "
            "softmax has no counterpart in mtlc; use output_activation='none'"
        )
    block, out = read_mlp(nn.Sequential(*modules), output=True, where=where)
    if not block.bias:
        raise ConversionError(f"{where}: a gate's hidden layers without bias have no counterpart")
    return Net(block if block.dims else None, linear(out))


def activation_of(module: nn.Module, where: str) -> str:
    """The language's name of a peer activation module, or a ConversionError."""
    if type(module) not in ACTIVATIONS:
        raise ConversionError(
            f"{where}: activation {type(module).__name__} has no counterpart in mtlc"
        )
    return _activation(module, where)


def _norm_name(norm: nn.Module | None) -> str:
    if norm is None:
        return "none"
    return "batch" if isinstance(norm, nn.BatchNorm1d) else "layer"


def _bias(linear: nn.Linear) -> Tensor:
    if linear.bias is None:
        return torch.zeros(linear.out_features, dtype=linear.weight.dtype)
    return linear.bias.detach()


def _activation(module: nn.Module, where: str) -> str:
    if isinstance(module, nn.GELU) and module.approximate != "none":
        raise ConversionError(
            f"{where}: GELU(approximate={module.approximate!r}) has no counterpart in mtlc"
        )
    if isinstance(module, nn.PReLU) and module.num_parameters != 1:
        raise ConversionError(
            f"{where}: a PReLU with one slope per channel has no counterpart in mtlc"
        )
    return ACTIVATIONS[type(module)]


def _check_norm(module: nn.Module, where: str) -> None:
    """mtlc's norms are torch's defaults: eps 1e-5, affine, running statistics."""
    if module.eps != 1e-5:
        raise ConversionError(
            f"{where}: {type(module).__name__} with eps={module.eps} (mtlc uses 1e-5)"
        )
    if isinstance(module, nn.BatchNorm1d) and not (module.affine and module.track_running_stats):
        raise ConversionError(f"{where}: BatchNorm1d without affine weights or running statistics")
    if isinstance(module, nn.LayerNorm) and not module.elementwise_affine:
        raise ConversionError(f"{where}: LayerNorm without affine weights")


def linear(module: nn.Linear) -> Linear:
    """A peer ``nn.Linear`` as neutral weights (a missing bias reads as zeros)."""
    return Linear(module.weight.detach(), _bias(module))


def fold_batchnorm(lin: Linear, norm: nn.BatchNorm1d) -> Linear:
    """``BatchNorm(Linear(x))`` in eval mode as one Linear (exact up to rounding)."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias.detach() - norm.running_mean * scale
    return Linear(lin.weight * scale[:, None], lin.bias * scale + shift)


def check_name(name: str, what: str) -> str:
    """``name`` if it is a valid spec name, else a ConversionError saying why."""
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ConversionError(
            f"{what} {name!r} cannot be a name in a spec (names are [a-z_][a-z0-9_]* and not a "
            "Python keyword); rename it in the peer model's config"
        )
    return name


def _section(line: str) -> str:
    kind = line.split(" ", 1)[0]
    return "expert" if kind == "gate" else kind


class SpecWriter:
    """Collects spec lines and hands out node names that do not collide."""

    def __init__(self, model_name: str, description: str) -> None:
        self.lines = [f'model {model_name} "{description}"', ""]
        self.taken: set[str] = set()
        self._together = False

    def claim(self, name: str, what: str) -> str:
        """Reserve a name that comes from the peer (a feature or a task); it must be free."""
        check_name(name, what)
        if name in self.taken:
            raise ConversionError(f"{what} {name!r} is also the name of another feature or task")
        self.taken.add(name)
        return name

    def fresh(self, wanted: str) -> str:
        """A name for a node of mtlc's choosing: ``wanted``, or with ``_2``, ``_3``... appended."""
        name, n = wanted, 1
        while name in self.taken:
            n += 1
            name = f"{wanted}_{n}"
        self.taken.add(name)
        return name

    def add(self, line: str = "") -> None:
        """Append a statement; a blank line separates kinds of statement.

        Experts and gates count as one kind.
        """
        last = self.lines[-1] if self.lines else ""
        if line and last and not self._together and _section(line) != _section(last):
            self.lines.append("")
        if line or last:
            self.lines.append(line)

    @contextmanager
    def together(self) -> Iterator[None]:
        """Statements added inside are one paragraph (a task's chain of towers and gates)."""
        self.add("")
        self._together = True
        try:
            yield
        finally:
            self._together = False

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


@dataclass
class Segment:
    """One feature's slice of the peer's concatenated input.

    ``width`` is the peer's width; ``projection`` (a Linear ``[width, dim]``)
    is set where the peer projects a dense feature that the spec reads raw.
    """

    width: int
    projection: Linear | None = None


def fold_input(lin: Linear, segments: list[Segment] | None) -> Linear:
    """A Linear over the peer's input, rewritten over the spec's group.

    Where a dense feature is projected by the peer (``P x + p``), the Linear's
    columns for it become ``W P`` and its bias gains ``W p``: exact, since
    nothing non-linear sits between the projection and the Linear.
    """
    if segments is None or all(s.projection is None for s in segments):
        return lin
    columns, bias, start = [], lin.bias.clone(), 0
    for segment in segments:
        part = lin.weight[:, start : start + segment.width]
        start += segment.width
        if segment.projection is None:
            columns.append(part)
        else:
            columns.append(part @ segment.projection.weight)
            bias = bias + part @ segment.projection.bias
    if start != lin.weight.shape[1]:
        raise ConversionError(
            f"input width {lin.weight.shape[1]} does not match the features' {start}"
        )
    return Linear(torch.cat(columns, dim=1), bias)


def fold_block_input(block: Block, segments: list[Segment] | None) -> Block:
    """``block`` with its first Linear rewritten by ``fold_input``."""
    if block.layers:
        first = block.layers[0]
        folded = fold_input(Linear(first.weight, first.bias), segments)
        first.weight, first.bias = folded.weight, folded.bias
    return block


def fold_net_input(net: Net, segments: list[Segment] | None) -> Net:
    """``net`` with its first Linear (the hidden block's, else ``out``) folded by ``fold_input``."""
    if net.hidden is not None:
        return Net(fold_block_input(net.hidden, segments), net.out)
    return Net(None, fold_input(net.out, segments))


def projects(segments: list[Segment] | None) -> bool:
    """Whether a Linear reading these segments gains a bias by the projection fold."""
    return segments is not None and any(s.projection is not None for s in segments)
