"""Map the weights of a ``-O0`` model onto the ``-O1`` model of the same spec.

At ``-O0`` an expert pool is an :class:`Experts` and each gate a
:class:`SoftmaxGate`; at ``-O1`` the pool is an :class:`ExpertPool` of the
same attribute name and gates are grouped into :class:`GateBank` s (a gate
alone is a :class:`Gate` of the same name). The ``-O1`` class says which gates
each bank computes in its class attribute ``gate_banks = {bank_attr:
(gate_attr, ...)}``, and which pools each merged
pool computes (pools of one input and one block) in ``expert_pools =
{pool_attr: (pool_attr, ...)}``; every other parameter keeps its name. Star
towers of one input, one domain feature and one shape are one :class:`Star`
with ``num_experts`` at ``-O1``, listed in ``expert_pools`` as well
(``{stars_attr: (tower_attr, ...)}``); a Star not listed passes through. A
:class:`ScaleGate` is the same module at both levels: its entries, those of
the :class:`ExpertPool` inside a pool-form one included, pass through.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import Tensor, nn

from .gates import Gate, GateBank, ScaleGate, SoftmaxGate
from .layers import ExpertPool, Experts
from .star import Star


def _sub_state(state_dict: Mapping[str, Tensor], prefix: str, used: set[str]) -> dict[str, Tensor]:
    """The entries under ``prefix.`` with the prefix removed; marks them used."""
    start = prefix + "."
    sub = {key[len(start) :]: value for key, value in state_dict.items() if key.startswith(start)}
    used.update(start + key for key in sub)
    if not sub:
        raise KeyError(f"the -O0 state_dict has no entries for {prefix!r}")
    return sub


def _load(module: nn.Module, sub: dict[str, Tensor], prefix: str) -> None:
    """``module.load_state_dict(sub)``, failing with a KeyError that names ``prefix``."""
    try:
        module.load_state_dict(sub)
    except RuntimeError as error:
        raise KeyError(
            f"-O0 entries under {prefix!r} do not fit a {type(module).__name__}: {error}"
        ) from None


def _pool_state(
    pool: ExpertPool, subs: list[dict[str, Tensor]], prefixes: tuple[str, ...]
) -> dict[str, Tensor]:
    """An :class:`ExpertPool`'s state from those of the :class:`Experts` it merges, in order."""
    mlps = []
    for sub, prefix in zip(subs, prefixes):
        count = len({key.split(".")[1] for key in sub if key.startswith("experts.")})
        experts = Experts(
            pool.in_dim, pool.dims, count, pool.activation, pool.dropout, pool.norm, pool.has_bias
        )
        _load(experts, sub, prefix)
        mlps += list(experts.experts)
    target = copy.deepcopy(pool)
    target.load_from_mlps(mlps)
    return target.state_dict()


def _star_pool_state(
    pool: Star, subs: list[dict[str, Tensor]], prefixes: tuple[str, ...]
) -> dict[str, Tensor]:
    """A pool-form :class:`Star`'s state from those of the plain Stars it merges, in order."""
    if len(subs) != pool.num_experts:
        raise KeyError(
            f"a pool of {pool.num_experts} Stars is listed with {len(subs)}: {list(prefixes)}"
        )
    stars = []
    for sub, prefix in zip(subs, prefixes):
        star = Star(**pool.options()).to(pool.layers[0].weight)  # its dtype and device
        _load(star, sub, prefix)
        stars.append(star)
    target = copy.deepcopy(pool)
    target.load_from_stars(stars)
    return target.state_dict()


def _bank_state(
    bank: GateBank, subs: list[dict[str, Tensor]], names: tuple[str, ...]
) -> dict[str, Tensor]:
    """A :class:`GateBank`'s state from the states of its gates, in bank order."""
    gates = []
    for size, sub, prefix in zip(bank.sizes, subs, names):
        gate = SoftmaxGate(
            bank.in_dim,
            size,
            bank.hidden,
            bank.top,
            bank.temperature,
            bank.activation,
            bank.norm,
            bank.dropout,
        )
        _load(gate, sub, prefix)
        gates.append(gate)
    target = copy.deepcopy(bank)
    target.load_from_gates(gates)
    return target.state_dict()


def _inside(name: str, outer: str) -> bool:
    """Whether module ``name`` lies strictly inside module ``outer`` (``""``: the root)."""
    return name.startswith(outer + ".") if outer else name != ""


def _scale_bank_state(
    bank: ScaleGate, subs: list[dict[str, Tensor]], names: tuple[str, ...]
) -> dict[str, Tensor]:
    """A pool-form :class:`ScaleGate`'s state from the vector gates whose nets it batches."""
    nets = []
    for sub, prefix in zip(subs, names):
        gate = ScaleGate(
            bank.in_dim,
            bank.width,
            bank.hidden,
            bank.scale,
            bank.activation,
            bank.norm,
            bank.dropout,
        )
        _load(gate, sub, prefix)
        nets.append((gate.mlp, gate.linear))
    target = copy.deepcopy(bank)
    target.load_from_nets(nets)
    return target.state_dict()


def convert_o0_state_dict(
    state_dict: Mapping[str, Tensor], model_o1: nn.Module
) -> dict[str, Tensor]:
    """The ``-O1`` state_dict equivalent to an ``-O0`` one of the same spec.

    Args:
        state_dict: ``state_dict()`` of the ``-O0`` model.
        model_o1: an instance of the ``-O1`` model (not modified); its class's
            ``gate_banks`` (absent: no banks) names each bank's gates, its
            ``expert_pools`` (absent: none) each merged pool's pools, and each
            pool-form :class:`Star`'s towers.

    Returns:
        A state_dict that ``model_o1.load_state_dict`` accepts (strict), with
        which it computes the same outputs and gradients as the ``-O0`` model.

    Raises:
        KeyError: an entry is missing, or left over, for this model.
    """
    banks = getattr(type(model_o1), "gate_banks", {})
    pools = getattr(type(model_o1), "expert_pools", {})
    used: set[str] = set()
    result: dict[str, Tensor] = {}
    modules = dict(model_o1.named_modules())
    # banks and gates convert the pools inside them (a hidden gate's) with them; a scale gate's
    # pool (its nets' hidden layers) is not a spec's expert pool: its entries pass through
    gates = [name for name, module in modules.items() if isinstance(module, (GateBank, ScaleGate))]
    for name, module in modules.items():
        if any(_inside(name, gate) for gate in gates):
            continue
        if isinstance(module, ExpertPool):
            members = pools.get(name, (name,))
            state = _pool_state(module, [_sub_state(state_dict, m, used) for m in members], members)
        elif isinstance(module, GateBank):  # a bank, or a Gate: a bank of one, its own name
            members = banks.get(name, (name,) if isinstance(module, Gate) else None)
            if members is None:
                raise KeyError(
                    f"gate bank {name!r} is not listed in {type(model_o1).__name__}.gate_banks"
                )
            state = _bank_state(module, [_sub_state(state_dict, g, used) for g in members], members)
        elif isinstance(module, ScaleGate) and name in banks:  # -O1's nets of several gates
            subs = [_sub_state(state_dict, gate, used) for gate in banks[name]]
            state = _scale_bank_state(module, subs, banks[name])
        elif isinstance(module, Star) and module.num_experts is not None and name in pools:
            subs = [_sub_state(state_dict, star, used) for star in pools[name]]
            state = _star_pool_state(module, subs, pools[name])
        else:
            continue
        result.update({f"{name}.{key}": value for key, value in state.items()})
    result.update({key: value for key, value in state_dict.items() if key not in used})
    expected = set(model_o1.state_dict())
    if set(result) != expected:
        missing, extra = sorted(expected - set(result)), sorted(set(result) - expected)
        raise KeyError(
            f"the -O0 state_dict does not fit {type(model_o1).__name__}: "
            f"missing {missing}, left over {extra}"
        )
    return result
