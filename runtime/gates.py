"""Gates: softmax gates over expert pools (one, ``-O0``; a bank, ``-O1``) and sigmoid scale gates.

Shapes: B batch, E experts (of the source tensor), T gates, D expert width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .kernels import gate_mix, gate_softmax_mix, gate_weights, reference, scale_gate
from .kernels.cpu import _MixSources
from .kernels.ops import is_exporting, plain_autograd
from .layers import MLP, ExpertPool, _check_options


def _check_gate(num_experts: int, top: int | None, temperature: float) -> None:
    if num_experts < 1:
        raise ValueError(f"a gate needs at least one expert, got {num_experts}")
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


class SoftmaxGate(nn.Module):
    """Softmax gate: ``weights = softmax(logits / temperature)``, optionally top-k.

    Args:
        in_dim: width of the gate's input.
        num_experts: E, the number of experts it weighs.
        hidden: widths of an MLP before the logits layer (empty: none).
        top: keep only the K largest logits' weights, renormalised (ties:
            the lower expert index is kept). ``None`` keeps all.
        temperature: divides the logits before the softmax.
        activation, norm, dropout: the hidden MLP's, as :class:`MLP`'s (per
            hidden layer Linear -> norm -> activation -> dropout); the logits
            layer has none of them. Without ``hidden`` they do nothing.

    Parameter layout: ``mlp`` (an ``MLP(in_dim, hidden, activation, dropout,
    norm)``; ``nn.Identity`` when ``hidden`` is empty), ``linear``:
    ``nn.Linear(hidden[-1] or in_dim, E)``.

    Shapes: ``[B, in_dim] -> [B, E]`` (rows sum to 1). Use :func:`mix` to apply.
    """

    def __init__(
        self,
        in_dim: int,
        num_experts: int,
        hidden: Sequence[int] = (),
        top: int | None = None,
        temperature: float = 1.0,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_gate(num_experts, top, temperature)
        _check_options(activation, norm, dropout)
        self.num_experts = num_experts
        self.hidden = tuple(hidden)
        self.top = top
        self.temperature = float(temperature)
        self.activation, self.norm, self.dropout = activation, norm, float(dropout)
        self.mlp = MLP(in_dim, hidden, activation, dropout, norm) if hidden else nn.Identity()
        self.linear = nn.Linear(self.hidden[-1] if hidden else in_dim, num_experts)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim] -> [B, E]``."""
        return gate_weights(self.linear(self.mlp(x)), self.temperature, self.top)


class GateBank(nn.Module):
    """``-O1`` bank of T softmax gates over E experts, given as one or more source tensors.

    Gate t computes the same as ``mix(SoftmaxGate(x), experts[:, masks[t]])``.

    Args:
        in_dim: width of the gates' shared input.
        num_experts: E, the experts of the source tensor.
        num_gates: T.
        hidden, top, temperature, activation, norm, dropout: as
            :class:`SoftmaxGate`, shared by all gates.
        masks: ``None`` (every gate mixes all E experts in order) or one
            sequence per gate of the expert indices it mixes, in the gate's
            own order: its logits, its softmax, its top-k ties follow that order.

    Parameter layout (gate t has ``n_t = len(masks[t])`` logits, or E):
        without ``hidden``: ``linear``: ``nn.Linear(in_dim, sum(n_t))``; rows
            ``off_t : off_t + n_t`` (``off_t = n_0 + ... + n_{t-1}``) are
            gate t's ``linear``.
        with ``hidden``: ``mlp``: an :class:`ExpertPool` ``(in_dim, hidden, T,
            activation, dropout, norm)`` whose expert t is gate t's ``mlp``
            (norm parameters and statistics, PReLU slopes included);
            ``linears[t]``: gate t's ``linear``.
    See :meth:`load_from_gates`.

    Shapes: ``(x [B, in_dim], *experts [B, E_i, D]) -> [B, T, D]``: the experts
    as one ``[B, E, D]`` tensor or as several ``[B, E_i, D]`` (expert pools'
    outputs, in order, ``sum E_i = E``), taken as their concatenation on dim 1.

    Paths (same function): all gates' logits come from one matmul (or, with
    ``hidden``, one batched MLP) and all mixtures from one custom op,
    ``mtlc::gate_softmax_mix`` (softmax and mixture fused) without masks,
    ``mtlc::gate_mix`` with them; on CPU in eager mode the same math runs as
    plain autograd (:func:`~mtlc.runtime.kernels.ops.plain_autograd`), and
    one gate without top-k or masks over several sources, from
    :attr:`sources_min_batch` rows, mixes them where they are
    (:class:`~mtlc.runtime.kernels.cpu._MixSources`).
    """

    sources_min_batch = 1024
    """Batch rows from which one CPU gate mixes several sources without concatenating them
    (:class:`~mtlc.runtime.kernels.cpu._MixSources`); ``None``: never."""

    def __init__(
        self,
        in_dim: int,
        num_experts: int,
        num_gates: int,
        hidden: Sequence[int] = (),
        top: int | None = None,
        temperature: float = 1.0,
        masks: Sequence[Sequence[int]] | None = None,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_gate(num_experts, top, temperature)
        _check_options(activation, norm, dropout)
        self.in_dim = in_dim
        self.num_experts = num_experts
        self.num_gates = num_gates
        self.hidden = tuple(hidden)
        self.top = top
        self.temperature = float(temperature)
        self.activation, self.norm, self.dropout = activation, norm, float(dropout)
        self.masks = None if masks is None else tuple(tuple(int(i) for i in m) for m in masks)
        self.sizes = self._sizes()
        if hidden:
            self.mlp = ExpertPool(in_dim, hidden, num_gates, activation, dropout, norm)
            self.linears = nn.ModuleList(nn.Linear(self.hidden[-1], n) for n in self.sizes)
        else:
            self.linear = nn.Linear(in_dim, sum(self.sizes))
        if self.masks is not None:
            logit_index, slot_index = self._mask_indices()
            self.register_buffer("logit_index", logit_index, persistent=False)
            self.register_buffer("slot_index", slot_index, persistent=False)

    def _sizes(self) -> tuple[int, ...]:
        if self.masks is None:
            return (self.num_experts,) * self.num_gates
        if len(self.masks) != self.num_gates:
            raise ValueError(f"{len(self.masks)} masks for {self.num_gates} gates")
        for mask in self.masks:
            if (
                not mask
                or len(set(mask)) != len(mask)
                or not all(0 <= i < self.num_experts for i in mask)
            ):
                raise ValueError(
                    f"mask {mask} must list distinct expert indices in [0, {self.num_experts})"
                )
        return tuple(len(mask) for mask in self.masks)

    def _mask_indices(self) -> tuple[Tensor, Tensor]:
        """``[T, n_max]`` indices into the logits and into ``E + 1`` slots.

        The logits are padded with a ``-inf`` column.
        """
        width = max(self.sizes)
        total = sum(self.sizes)
        logit_index = torch.full((self.num_gates, width), total, dtype=torch.long)
        slot_index = torch.full((self.num_gates, width), self.num_experts, dtype=torch.long)
        offset = 0
        for t, mask in enumerate(self.masks):
            logit_index[t, : len(mask)] = torch.arange(offset, offset + len(mask))
            slot_index[t, : len(mask)] = torch.tensor(mask)
            offset += len(mask)
        return logit_index, slot_index

    def logits(self, x: Tensor) -> Tensor:
        """All gates' logits, concatenated: ``[B, in_dim] -> [B, sum(n_t)]``."""
        if not self.hidden:
            return self.linear(x)
        h = self.mlp(x)  # [B, T, hidden[-1]]
        return torch.cat([linear(h[:, t]) for t, linear in enumerate(self.linears)], dim=-1)

    def weights(self, x: Tensor) -> Tensor:
        """Every gate's weights over the bank's experts: ``[B, in_dim] -> [B, T, E]``.

        A weight is 0 off its gate's mask.
        """
        logits = self.logits(x)
        if self.masks is None:
            return gate_weights(
                logits.view(-1, self.num_gates, self.num_experts), self.temperature, self.top
            )
        padded = F.pad(logits, (0, 1), value=float("-inf"))[:, self.logit_index]  # [B, T, n_max]
        own = gate_weights(padded, self.temperature, self.top)  # in each gate's own order
        slots = own.new_zeros(own.shape[0], self.num_gates, self.num_experts + 1)
        return slots.scatter(2, self.slot_index.expand(own.shape[0], -1, -1), own)[
            ..., : self.num_experts
        ]

    def forward(self, x: Tensor, *experts: Tensor) -> Tensor:
        """``(x [B, in_dim], *experts [B, E_i, D]) -> [B, T, D]``."""
        eager = plain_autograd(experts[0])  # CPU, not compiling: the reference under autograd
        if len(experts) > 1:
            threshold = self.sources_min_batch
            one_gate = self.num_gates == 1 and self.masks is None and self.top is None
            big = threshold is not None and not is_exporting() and x.shape[0] >= threshold
            if eager and one_gate and big:
                weights = gate_weights(self.logits(x), self.temperature)  # [B, E]
                return _MixSources.apply(weights, *experts).unsqueeze(1)
        experts = experts[0] if len(experts) == 1 else torch.cat(experts, dim=1)
        if self.masks is None:  # softmax, top-k and mixture in one op
            logits = self.logits(x).view(-1, self.num_gates, self.num_experts)
            if eager:
                return reference.gate_softmax_mix(logits, experts, self.temperature, self.top)
            return gate_softmax_mix(logits, experts, self.temperature, self.top or 0)
        weights = self.weights(x)
        return reference.gate_mix(weights, experts) if eager else gate_mix(weights, experts)

    @torch.no_grad()
    def load_from_gates(self, gates: Sequence[SoftmaxGate]) -> None:
        """Copy T :class:`SoftmaxGate` s (gate t over ``n_t`` experts) into the bank.

        The gates' hidden MLPs must have the bank's activation, norm and
        dropout; their norms (affine parameters, running statistics) and
        PReLU slopes are copied with the Linears.
        """
        if len(gates) != self.num_gates:
            raise ValueError(f"expected {self.num_gates} gates, got {len(gates)}")
        if [g.num_experts for g in gates] != list(self.sizes) or any(
            g.hidden != self.hidden for g in gates
        ):
            raise ValueError("the gates' sizes or hidden widths differ from the bank's")
        options = (self.activation, self.norm, self.dropout)
        if self.hidden and any((g.activation, g.norm, g.dropout) != options for g in gates):
            raise ValueError("the gates' activation, norm or dropout differ from the bank's")
        if self.hidden:
            self.mlp.load_from_mlps([g.mlp for g in gates])
            for linear, gate in zip(self.linears, gates):
                linear.load_state_dict(gate.linear.state_dict())
            return
        self.linear.weight.copy_(torch.cat([g.linear.weight for g in gates]))
        self.linear.bias.copy_(torch.cat([g.linear.bias for g in gates]))


class Gate(GateBank):
    """``-O1`` form of one softmax gate and its mixture: a :class:`GateBank` of one gate.

    Computes the same as ``mix(SoftmaxGate(x), experts[:, mask])``, through the
    bank's paths (one fused op for softmax and mixture).

    Args:
        in_dim, num_experts, hidden, top, temperature: as :class:`SoftmaxGate`.
        mask: ``None`` (the gate mixes all E experts in order) or the expert
            indices it mixes, in its own order.
        activation, norm, dropout: as :class:`SoftmaxGate`.

    Parameter layout: a one-gate :class:`GateBank`'s (without ``hidden``:
    ``linear``, exactly a :class:`SoftmaxGate`'s ``linear``).

    Shapes: ``(x [B, in_dim], *experts [B, E_i, D]) -> [B, D]``.
    """

    def __init__(
        self,
        in_dim: int,
        num_experts: int,
        hidden: Sequence[int] = (),
        top: int | None = None,
        temperature: float = 1.0,
        mask: Sequence[int] | None = None,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        masks = None if mask is None else (mask,)
        super().__init__(
            in_dim, num_experts, 1, hidden, top, temperature, masks, activation, norm, dropout
        )

    def forward(self, x: Tensor, *experts: Tensor) -> Tensor:
        """``(x [B, in_dim], *experts [B, E_i, D]) -> [B, D]``."""
        return super().forward(x, *experts).squeeze(1)


def _check_scale_gate(
    in_dim: int, width: int, hidden: Sequence[int], scale: float, num_experts: int | None
) -> None:
    if in_dim < 1:
        raise ValueError(f"a scale gate's input width must be at least 1, got {in_dim}")
    if width < 1:
        raise ValueError(f"a scale gate's width must be at least 1, got {width}")
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be at least 1, got {list(hidden)}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    if num_experts is not None and num_experts < 1:
        raise ValueError(f"num_experts must be at least 1 (or None), got {num_experts}")


def scale_by(x: Tensor, logits: Tensor, scale: float) -> Tensor:
    """``x * scale * sigmoid(logits)``, elementwise: a scale gate's product.

    ``-O1`` code calls it with the logits of a pool-form :class:`ScaleGate` that
    computes the nets of several gates reading one condition at once
    (``bank.logits(cond).unbind(1)``). The custom op ``mtlc::scale_gate``
    (Triton on CUDA); on CPU in eager mode the same math as plain autograd.
    """
    if plain_autograd(x):  # CPU, not compiling: the reference under autograd
        return reference.scale_gate(x, logits, scale)
    return scale_gate(x, logits, scale)


class ScaleGate(nn.Module):
    """Sigmoid condition gate: ``x * scale * sigmoid(net(cond))``, on a vector or on each expert.

    The gates of POSO (``C * sigmoid(fc2(act(fc1(P))))`` on a layer's output,
    or on each expert of a pool) and PEPNet's ``GateMLP`` s (EPNet, PPNet).
    ``net`` is the hidden layers, each Linear -> norm -> activation ->
    dropout as in :class:`MLP`, then a last Linear to ``width`` with none of
    them.

    Args:
        in_dim: width of the condition ``cond``.
        width: D, the width of what is scaled (and of the net's output).
        hidden: widths of the net's hidden layers (empty: the net is one Linear).
        scale: C, finite and > 0: the gate's values lie in ``(0, C)``.
        activation, norm, dropout: the hidden layers', as :class:`MLP`'s.
            Without ``hidden`` they do nothing.
        num_experts: ``None``: scale a vector ``[B, D]``. E: scale each expert
            of a ``[B, E, D]`` pool, expert e by its own net e (E independent
            nets reading the same ``cond``).

    Parameter layout (``h = hidden[-1]``, or ``in_dim`` without ``hidden``):
        vector form: ``mlp``: ``MLP(in_dim, hidden, activation, dropout,
            norm)``, only with ``hidden`` (else ``None``); ``linear``:
            ``nn.Linear(h, D)``.
        pool form: ``mlp``: ``ExpertPool(in_dim, hidden, E, activation,
            dropout, norm)``, only with ``hidden`` (else ``None``), whose
            expert e is net e's hidden MLP; ``weight`` ``[E, D, h]`` and
            ``bias`` ``[E, D]``: ``weight[e]``, ``bias[e]`` are net e's last
            ``nn.Linear`` (its layout, not transposed).
    See :meth:`load_from_nets`. A scale gate is the same module at ``-O0``
    and ``-O1``: :func:`~mtlc.runtime.convert_o0_state_dict` passes its
    entries through.

    Shapes: ``(cond [B, in_dim], x [B, D]) -> [B, D]``; pool form
    ``(cond [B, in_dim], x [B, E, D]) -> [B, E, D]``.

    Paths (same function): the pool form's last layers are one matmul
    (without ``hidden``: of ``cond`` with all E nets' weights; with it: one
    batched matmul over the nets); the product is the custom op
    ``mtlc::scale_gate`` (Triton on CUDA); on CPU in eager mode the same
    math runs as plain autograd
    (:func:`~mtlc.runtime.kernels.ops.plain_autograd`).
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        hidden: Sequence[int] = (),
        scale: float = 1.0,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
        num_experts: int | None = None,
    ) -> None:
        super().__init__()
        _check_scale_gate(in_dim, width, hidden, scale, num_experts)
        _check_options(activation, norm, dropout)
        self.in_dim, self.width, self.hidden = in_dim, width, tuple(hidden)
        self.scale = float(scale)
        self.activation, self.norm, self.dropout = activation, norm, float(dropout)
        self.num_experts = num_experts
        last_in = self.hidden[-1] if hidden else in_dim
        if num_experts is None:
            self.mlp = MLP(in_dim, hidden, activation, dropout, norm) if hidden else None
            self.linear = nn.Linear(last_in, width)
        else:
            self.mlp = (
                ExpertPool(in_dim, hidden, num_experts, activation, dropout, norm)
                if hidden
                else None
            )
            bound = 1.0 / math.sqrt(last_in)  # nn.Linear's default init, per net
            self.weight = nn.Parameter(
                torch.empty(num_experts, width, last_in).uniform_(-bound, bound)
            )
            self.bias = nn.Parameter(torch.empty(num_experts, width).uniform_(-bound, bound))

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, width={self.width}, scale={self.scale}, "
            f"num_experts={self.num_experts}"
        )

    def logits(self, cond: Tensor) -> Tensor:
        """The nets' outputs before the sigmoid: ``[B, in_dim] -> [B, D]`` or ``[B, E, D]``."""
        if self.num_experts is None:
            return self.linear(cond if self.mlp is None else self.mlp(cond))
        count = self.num_experts
        if self.mlp is None:  # every net reads cond: one matmul
            flat = F.linear(cond, self.weight.view(-1, self.in_dim), self.bias.view(-1))
            return flat.view(cond.shape[0], count, self.width)
        h = self.mlp(cond)  # [B, E, h]
        # [E, 1, D] + [E, B, h] @ [E, h, D] -> [E, B, D], seen as [B, E, D]
        out = torch.baddbmm(self.bias.unsqueeze(1), h.transpose(0, 1), self.weight.transpose(1, 2))
        return out.transpose(0, 1)

    def forward(self, cond: Tensor, x: Tensor) -> Tensor:
        """``(cond [B, in_dim], x [B, D] or [B, E, D]) -> x's shape``."""
        logits = self.logits(cond)
        if x.shape != logits.shape:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; this scale gate's is {tuple(logits.shape)}"
            )
        return scale_by(x, logits, self.scale)

    @torch.no_grad()
    def load_from_nets(self, nets: Sequence[tuple[MLP | None, nn.Linear]]) -> None:
        """Copy plain nets in: E pairs ``(hidden MLP or None, last nn.Linear)``, or 1 for a vector.

        Each hidden :class:`MLP` must be ``MLP(in_dim, hidden, activation,
        dropout, norm)`` (``None`` without ``hidden``), its norms' parameters
        and statistics and its PReLU slopes included; each Linear
        ``nn.Linear(hidden[-1] or in_dim, width)`` with a bias. The gate then
        computes ``scale * sigmoid(linear(mlp(cond))) * x`` with net e on
        expert e.
        """
        count = 1 if self.num_experts is None else self.num_experts
        if len(nets) != count:
            raise ValueError(f"expected {count} nets, got {len(nets)}")
        want = None
        if self.hidden:
            with torch.device("meta"):  # only its structure is compared
                mlp = MLP(self.in_dim, self.hidden, self.activation, self.dropout, self.norm)
                want = _layer_kinds(mlp)
        last_in = self.hidden[-1] if self.hidden else self.in_dim
        for mlp, linear in nets:
            if (None if mlp is None else _layer_kinds(mlp)) != want:
                raise ValueError(
                    "a net's hidden MLP differs from the gate's hidden layers "
                    f"(hidden={list(self.hidden)}, activation={self.activation!r}, "
                    f"norm={self.norm!r}, dropout={self.dropout})"
                )
            if tuple(linear.weight.shape) != (self.width, last_in) or linear.bias is None:
                raise ValueError(
                    f"a net's last Linear must be nn.Linear({last_in}, {self.width}) with a bias, "
                    f"got weight {tuple(linear.weight.shape)}"
                    + ("" if linear.bias is not None else " without a bias")
                )
        if self.num_experts is None:
            mlp, linear = nets[0]
            if mlp is not None:
                self.mlp.load_state_dict(mlp.state_dict())
            self.linear.load_state_dict(linear.state_dict())
            return
        if self.hidden:
            self.mlp.load_from_mlps([mlp for mlp, _ in nets])
        for e, (_, linear) in enumerate(nets):
            self.weight[e] = linear.weight
            self.bias[e] = linear.bias


def _layer_kinds(mlp: MLP) -> list[tuple]:
    """What tells two :class:`MLP` s' structures apart: each layer's type and sizes."""
    kinds = []
    for module in mlp.layers:
        if isinstance(module, nn.Linear):
            kinds.append(
                (nn.Linear, module.in_features, module.out_features, module.bias is not None)
            )
        elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm, nn.PReLU)):
            kinds.append((type(module), tuple(module.weight.shape)))
        elif isinstance(module, nn.Dropout):
            kinds.append((nn.Dropout, module.p))
        else:
            kinds.append((type(module),))
    return kinds


class CrossStitch(nn.Module):
    """A cross-stitch unit (Misra et al., CVPR 2016): ``sum_s a_s * x_s``, elementwise.

    ``forward(x_1, ..., x_S)`` takes ``sources`` tensors ``[B, D]`` (one per
    column) and returns ``[B, D]``, from one product over the stacked
    ``[B, S, D]``. ``weight`` is ``[S, D]`` (``weights="channel"``, NextRec
    0.6.14's per-channel units) or ``[S, 1]`` (``"scalar"``, the paper's one
    number per pair of columns); it starts at 1 for ``column`` and 0 for the
    other sources, so a fresh unit passes its own column through (NextRec's
    identity start).
    """

    def __init__(self, dim: int, sources: int, column: int = 0, weights: str = "channel") -> None:
        super().__init__()
        if weights not in ("channel", "scalar"):
            raise ValueError(f"weights must be channel or scalar, not {weights!r}")
        if not 0 <= column < sources:
            raise ValueError(f"column {column} is not one of the {sources} sources")
        self.dim, self.sources, self.column, self.weights = dim, sources, column, weights
        self.weight = nn.Parameter(torch.zeros(sources, dim if weights == "channel" else 1))
        with torch.no_grad():
            self.weight[column] = 1.0

    def forward(self, *columns: Tensor) -> Tensor:
        if len(columns) != self.sources:
            raise ValueError(f"expected {self.sources} columns, got {len(columns)}")
        stacked = torch.stack(columns, dim=1)  # [B, S, D]
        return (stacked * self.weight).sum(dim=1)

    def extra_repr(self) -> str:
        return f"{self.dim}, sources={self.sources}, column={self.column}, weights={self.weights!r}"


class Route(nn.Module):
    """One output of a sub-network routing layer (SNR-Trans, Ma et al., AAAI 2019).

    ``forward(*sources)`` takes vectors ``[B, D]`` and pools ``[B, k, D]`` whose
    columns (``experts`` in all) it routes: ``sum_e z_e (x_e T_e)``, computed as
    one ``[B, E D] x [E D, D]`` product. ``z_e = clamp(1.2 sigmoid(w_e) - 0.1, 0,
    1)`` (the hard-concrete stretch of NextRec 0.6.14's gate, deterministic) from
    a logit ``w`` ``[E]``; ``T`` ``[E, D, D]`` is learned, or absent with
    ``transform=False`` (SNR-Aver: ``sum_e z_e x_e``). ``w`` starts near 0 (``z``
    near 0.5, as the paper's ``log alpha`` near 0): NextRec's draw, ``logit(u) +
    log(alpha) / 0.9`` with ``u`` and ``alpha`` uniform, often starts a route with
    every ``z`` clamped at 0, where no gradient reaches it and it never learns
    (on census, 2 of 3 seeds of a task predicted a constant). ``T`` is
    Xavier-normal over ``[E, D, D]`` for one output.
    """

    BETA, GAMMA, ZETA = 0.9, -0.1, 1.1  # NextRec's (and Louizos et al.'s) stretch

    def __init__(self, dim: int, experts: int, transform: bool = True) -> None:
        super().__init__()
        self.dim, self.experts = dim, experts
        self.logit = nn.Parameter(torch.randn(experts) * 0.1)  # z near 0.5: every column live
        self.transform = None
        if transform:
            std = math.sqrt(2.0 / ((experts + 1) * dim * dim))
            self.transform = nn.Parameter(torch.randn(experts, dim, dim) * std)

    def gates(self) -> Tensor:
        """``z``: each column's weight, in [0, 1]."""
        stretched = torch.sigmoid(self.logit) * (self.ZETA - self.GAMMA) + self.GAMMA
        return stretched.clamp(0.0, 1.0)

    def forward(self, *sources: Tensor) -> Tensor:
        x = torch.cat([s if s.dim() == 3 else s.unsqueeze(1) for s in sources], dim=1)
        if x.shape[1] != self.experts:
            raise ValueError(f"expected {self.experts} columns, got {x.shape[1]}")
        z = self.gates()
        if self.transform is None:
            return (x * z.view(1, -1, 1)).sum(dim=1)
        weight = (self.transform * z.view(-1, 1, 1)).reshape(self.experts * self.dim, self.dim)
        return x.reshape(x.shape[0], -1) @ weight

    def extra_repr(self) -> str:
        return f"{self.dim}, experts={self.experts}, transform={self.transform is not None}"
