"""Put a peer's weights (a ``Conversion``) into a generated model.

The weights go into a fresh ``-O0`` model compiled from the conversion's
spec, whose layout is one plain module per spec node (``rt.MLP``,
``rt.Experts``, ``rt.SoftmaxGate``, ``rt.ScaleGate``, ``rt.AITransfer``,
``rt.APG``, ``rt.Cross``, ``nn.Linear``, ``nn.Embedding``); its state_dict is then
mapped onto the target by
``rt.convert_o0_state_dict`` when the target is an ``-O1`` model, and copied
in with every key and shape checked first, so a mismatch changes nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlc.api import compile_ir, load_source
from mtlc.backend.identifiers import safe_names
from mtlc.diagnostics import SpecError
from mtlc.runtime.apg import APG
from mtlc.runtime.convert import convert_o0_state_dict
from mtlc.runtime.cross import Cross
from mtlc.runtime.gates import Route, ScaleGate, SoftmaxGate
from mtlc.runtime.interop._common import (
    Block,
    Conversion,
    ConversionError,
    Linear,
    Net,
    State,
    Transfer,
)
from mtlc.runtime.layers import MLP, AITransfer, Experts


def load(target: nn.Module, conversion: Conversion) -> None:
    """Copy ``conversion``'s weights into ``target`` (a model compiled from its spec), in place."""
    plain_class, names = _plain_class(conversion.spec)
    _check_metadata(type(target), plain_class)
    plain = plain_class()
    with torch.no_grad():
        for node, weights in conversion.weights.items():
            _fill(getattr(plain, names[node]), weights, node)
    state = plain.state_dict()
    wanted = target.state_dict()
    if set(state) != set(wanted):
        try:
            state = convert_o0_state_dict(state, target)
        except KeyError as error:
            raise ConversionError(
                f"{type(target).__name__} was not compiled from this spec: {error}"
            ) from None
    for key, value in wanted.items():
        if key not in state:
            raise ConversionError(f"{type(target).__name__}: no weights for {key!r}")
        if state[key].shape != value.shape:
            raise ConversionError(
                f"{type(target).__name__}.{key}: shape {tuple(value.shape)}, "
                f"the converted weights have {tuple(state[key].shape)}"
            )
    with torch.no_grad():
        for key, value in wanted.items():
            value.copy_(state[key])


def checked(spec: str):
    """The IR of a converted spec.

    Raises a ConversionError (with the diagnostics) if it does not compile.
    """
    try:
        return compile_ir(spec, "converted.mtl")
    except SpecError as error:
        raise ConversionError(
            f"the converted spec does not compile with this mtlc (a peer name may be a word of the "
            f"language):\n{error}\n\nspec:\n{spec}"
        ) from None


def _plain_class(spec: str) -> tuple[type, dict[str, str]]:
    """The ``-O0`` class compiled from ``spec`` and the attribute name of every node."""
    model = checked(spec)  # clear ConversionError on a spec this mtlc rejects
    return load_source(spec, "converted.mtl", opt_level=0), safe_names(model)


def _check_metadata(target: type, plain: type) -> None:
    """The target must have the spec's features and tasks (names, kinds, sizes)."""
    for what in ("features", "tasks"):
        ours, theirs = getattr(plain, what), getattr(target, what, None)
        if theirs != ours:
            raise ConversionError(
                f"{target.__name__} was not compiled from this spec: its {what} differ\n"
                f"  expected: {list(ours.values())}\n  found:    {list((theirs or {}).values())}"
            )


def _fill(module: nn.Module, weights: object, node: str) -> None:
    """Copy one node's neutral weights into its ``-O0`` module."""
    if isinstance(weights, Tensor):
        _copy(module.weight, weights, f"{node}.weight")
    elif isinstance(weights, Block):
        _fill_mlp(module, weights, node)
    elif isinstance(weights, Net):
        _fill_net(module, weights, node)
    elif isinstance(weights, list) and weights and isinstance(weights[0], Net):
        _fill_scale_pool(_expect(module, ScaleGate, node), weights, node)
    elif isinstance(weights, list):
        experts = _expect(module, Experts, node).experts
        if len(experts) != len(weights):
            raise ConversionError(f"{node}: {len(experts)} experts, the peer has {len(weights)}")
        for i, (mlp, block) in enumerate(zip(experts, weights)):
            _fill_mlp(mlp, block, f"{node}.{i}")
    elif isinstance(weights, Linear):
        _fill_linear(module.linear if isinstance(module, SoftmaxGate) else module, weights, node)
    elif isinstance(weights, Transfer):
        transfer = _expect(module, AITransfer, node)
        for part in ("info", "query", "key", "value"):
            _fill_linear(getattr(transfer, part), getattr(weights, part), f"{node}.{part}")
    elif isinstance(weights, State):
        _fill_state(_expect(module, (APG, Cross, Route), node), weights, node)
    else:  # pragma: no cover - the converters build only the kinds above
        raise TypeError(f"{node}: unknown weights {type(weights).__name__}")


def _fill_net(module: nn.Module, net: Net, node: str) -> None:
    """A softmax gate's or a (vector) sigmoid gate's hidden MLP and last Linear."""
    if not isinstance(module, (SoftmaxGate, ScaleGate)) or (
        isinstance(module, ScaleGate) and module.num_experts is not None
    ):
        raise ConversionError(
            f"{node}: expected an rt.SoftmaxGate or a vector rt.ScaleGate, "
            f"found {type(module).__name__}"
        )
    _check_hidden(module.hidden, net, node)
    if net.hidden is not None:
        _fill_mlp(module.mlp, net.hidden, f"{node}.mlp")
    _fill_linear(module.linear, net.out, f"{node}.linear")


def _fill_scale_pool(gate: ScaleGate, nets: list[Net], node: str) -> None:
    """A sigmoid gate over a pool: net e scales expert e."""
    if gate.num_experts != len(nets):
        raise ConversionError(
            f"{node}: a sigmoid gate over {gate.num_experts} experts, the peer has {len(nets)} nets"
        )
    plain = []
    for e, net in enumerate(nets):
        _check_hidden(gate.hidden, net, f"{node}.{e}")
        mlp = None
        if net.hidden is not None:
            mlp = MLP(gate.in_dim, gate.hidden, gate.activation, gate.dropout, gate.norm)
            _fill_mlp(mlp, net.hidden, f"{node}.{e}.mlp")
        linear = nn.Linear(gate.hidden[-1] if gate.hidden else gate.in_dim, gate.width)
        _fill_linear(linear, net.out, f"{node}.{e}.linear")
        plain.append((mlp, linear))
    try:
        gate.load_from_nets(plain)
    except ValueError as error:
        raise ConversionError(f"{node}: {error}") from None


def _check_hidden(hidden: tuple[int, ...], net: Net, node: str) -> None:
    theirs = () if net.hidden is None else tuple(net.hidden.dims)
    if tuple(hidden) != theirs:
        raise ConversionError(
            f"{node}: mtlc's gate has hidden layers {list(hidden)}, the peer's {list(theirs)}"
        )


def _fill_state(module: nn.Module, weights: State, node: str) -> None:
    """Every parameter of an ``rt.APG``, ``rt.Cross`` or ``rt.Route``, by its state_dict key
    (the same set on both sides)."""
    params = dict(module.named_parameters())
    missing = sorted(set(params) - set(weights.state))
    extra = sorted(set(weights.state) - set(params))
    if missing or extra:
        raise ConversionError(
            f"{node}: mtlc's {type(module).__name__} and the peer's differ in parameters "
            f"(only mtlc's: {missing}; only the peer's: {extra})"
        )
    for key, param in params.items():
        _copy(param, weights.state[key], f"{node}.{key}")


def _fill_mlp(mlp: nn.Module, block: Block, node: str) -> None:
    layers = _expect(mlp, MLP, node).layers
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    norms = [m for m in layers if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm))]
    prelus = [m for m in layers if isinstance(m, nn.PReLU)]
    if len(linears) != len(block.layers):
        raise ConversionError(f"{node}: {len(linears)} layers, the peer has {len(block.layers)}")
    for i, (lin, layer) in enumerate(zip(linears, block.layers)):
        _fill_linear(lin, Linear(layer.weight, layer.bias), f"{node}.layer{i}")
        if layer.norm is not None:
            if i >= len(norms) or type(norms[i]) is not type(layer.norm):
                raise ConversionError(f"{node}.layer{i}: expected a {type(layer.norm).__name__}")
            norms[i].load_state_dict(layer.norm.state_dict())
        if layer.prelu is not None:
            _copy(prelus[i].weight, layer.prelu.weight.detach(), f"{node}.layer{i}.prelu")


def _fill_linear(module: nn.Linear, weights: Linear, where: str) -> None:
    _copy(module.weight, weights.weight, f"{where}.weight")
    if module.bias is not None:
        _copy(module.bias, weights.bias, f"{where}.bias")
    elif bool(weights.bias.any()):
        raise ConversionError(
            f"{where}: the peer's layer has a bias, mtlc's has none (see docs/nextrec.md)"
        )


def _copy(param: Tensor, value: Tensor, where: str) -> None:
    if param.shape != value.shape:
        raise ConversionError(
            f"{where}: mtlc expects shape {tuple(param.shape)}, the peer has {tuple(value.shape)}"
        )
    param.copy_(value)


def _expect(module: nn.Module, cls: type | tuple[type, ...], node: str) -> nn.Module:
    if not isinstance(module, cls):
        names = " or ".join(f"rt.{c.__name__}" for c in (cls if isinstance(cls, tuple) else (cls,)))
        raise ConversionError(f"{node}: expected an {names}, found {type(module).__name__}")
    return module
