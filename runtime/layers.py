"""Layers that generated models call: MLPs, expert pools, sequence pooling, AITM transfer.

Shapes: B batch, L sequence length, E experts, D width. Gates live in
:mod:`.gates`; the ``-O0`` to ``-O1`` weight mapping in :mod:`.convert`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .kernels.cpu import _ReluPool

# The runtime's module for each activation the language knows (mtlc.ir.Activation: the
# runtime does not import the compiler, tests/test_layers.py checks the two agree).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "prelu": nn.PReLU,
    "none": nn.Identity,  # a purely linear layer; adds no module
}
_NORMS = ("none", "batch", "layer")


def _check_options(activation: str, norm: str, dropout: float) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}"
        )
    if norm not in _NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(_NORMS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _activation(name: str, channels: int = 1) -> nn.Module:
    """The activation module; ``prelu`` gets ``channels`` slopes (one per expert in a pool)."""
    return nn.PReLU(channels) if name == "prelu" else ACTIVATIONS[name]()


def _after_linear(
    norm: nn.Module | None, activation: str, dropout: float, channels: int = 1
) -> list[nn.Module]:
    """What follows a layer's Linear.

    The norm (if any), the activation (none for ``none``), dropout (if > 0).
    """
    modules = [] if norm is None else [norm]
    if activation == "relu" and norm is not None:
        # in place on the norm's output, which no backward reads (each norm saves its input)
        modules.append(nn.ReLU(inplace=True))
    elif activation != "none":
        modules.append(_activation(activation, channels))
    if dropout > 0:
        modules.append(nn.Dropout(dropout))
    return modules


class MLP(nn.Module):
    """Per layer: Linear -> norm -> activation -> dropout (on every layer, the last too).

    Args:
        in_dim: input width.
        dims: output width of each layer; the MLP's width is ``dims[-1]``.
        activation: ``relu``, ``gelu``, ``silu``, ``tanh``, ``sigmoid``,
            ``prelu`` (one learned slope per layer, ``nn.PReLU()``) or ``none``.
        dropout: drop probability after each activation (0 adds no module).
        norm: ``none``, ``batch`` (``BatchNorm1d``) or ``layer`` (``LayerNorm``).
        bias: give every ``nn.Linear`` a bias (``False``: none has one).

    Parameter layout: one ``nn.Sequential`` named ``layers`` holding, per
    layer, ``nn.Linear`` (``bias=bias``), then the norm (if any), the
    activation (none for ``none``), then ``nn.Dropout`` (if ``dropout > 0``).

    Shapes: ``[B, in_dim] -> [B, dims[-1]]``.
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_options(activation, norm, dropout)
        if not dims:
            raise ValueError("an MLP needs at least one layer")
        norm_class = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}.get(norm)
        modules: list[nn.Module] = []
        for width_in, width in zip([in_dim, *dims[:-1]], dims):
            modules.append(nn.Linear(width_in, width, bias=bias))
            modules += _after_linear(
                None if norm_class is None else norm_class(width), activation, dropout
            )
        self.layers = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim] -> [B, dims[-1]]``."""
        return self.layers(x)


class Experts(nn.Module):
    """``-O0`` expert pool: ``num_experts`` independent :class:`MLP` s, stacked.

    Args: as :class:`MLP`, plus ``num_experts`` (E); ``bias`` applies to every
    expert's every ``nn.Linear``.

    Parameter layout: ``experts``, an ``nn.ModuleList`` of E :class:`MLP` s.

    Shapes: ``[B, in_dim] -> [B, E, dims[-1]]``.
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int],
        num_experts: int,
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            MLP(in_dim, dims, activation, dropout, norm, bias) for _ in range(num_experts)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim] -> [B, E, D]``."""
        return torch.stack([expert(x) for expert in self.experts], dim=1)


class _PoolBatchNorm(nn.Module):
    """Batch norm per expert per feature of a ``[B, E, d]`` pool.

    ``norm`` is ``BatchNorm1d(E * d)``.
    """

    def __init__(self, num_experts: int, width: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(num_experts * width)

    def forward(self, h: Tensor) -> Tensor:
        return self.norm(h.reshape(h.shape[0], -1)).view(h.shape)

    def per_expert(self, count: int):
        """The same as E batch norms of ``d`` features: ``(e, h [B, d]) -> [B, d]``.

        It follows ``BatchNorm1d.forward``'s logic. Call once per forward: the
        counter moves here; the running statistics of expert e are updated in
        place through views of the pooled ones.
        """
        norm = self.norm
        factor = 0.0 if norm.momentum is None else norm.momentum
        if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
            norm.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
            )
        training = norm.training or (norm.running_mean is None and norm.running_var is None)
        keep_stats = not norm.training or norm.track_running_stats

        def split(t: Tensor | None) -> Sequence[Tensor | None]:
            return [None] * count if t is None else t.view(count, -1).unbind(0)

        means = split(norm.running_mean if keep_stats else None)
        variances = split(norm.running_var if keep_stats else None)
        weights, biases = split(norm.weight), split(norm.bias)
        return lambda e, h: F.batch_norm(
            h, means[e], variances[e], weights[e], biases[e], training, factor, norm.eps
        )


class _PoolLayerNorm(nn.Module):
    """Layer norm of each expert over its own ``d`` features.

    With per-expert ``weight``/``bias`` ``[E, d]``.
    """

    def __init__(self, num_experts: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.weight = nn.Parameter(torch.ones(num_experts, width))
        self.bias = nn.Parameter(torch.zeros(num_experts, width))

    def forward(self, h: Tensor) -> Tensor:
        return torch.addcmul(self.bias, F.layer_norm(h, (self.width,)), self.weight)

    def per_expert(self, count: int):
        """The same for expert e alone: ``(e, h [B, d]) -> [B, d]``.

        With its own ``weight[e]``, ``bias[e]``.
        """
        weights, biases = self.weight.unbind(0), self.bias.unbind(0)
        return lambda e, h: torch.addcmul(biases[e], F.layer_norm(h, (self.width,)), weights[e])


def _pool_post(
    num_experts: int, width: int, activation: str, dropout: float, norm: str
) -> nn.Sequential:
    """What follows one batched matmul of a pool, on ``[B, E, d]``.

    norm -> activation -> dropout.
    """
    norm_class = {"batch": _PoolBatchNorm, "layer": _PoolLayerNorm}.get(norm)
    norm_module = None if norm_class is None else norm_class(num_experts, width)
    # PReLU(E): channel dim 1 is the expert
    return nn.Sequential(*_after_linear(norm_module, activation, dropout, channels=num_experts))


class ExpertPool(nn.Module):
    """``-O1`` expert pool: the same function as :class:`Experts`, with batched weights.

    Args: as :class:`Experts`.

    Parameter layout (E experts, widths ``d0 = in_dim, d1, ..., dn = dims``):
        ``first``: ``nn.Linear(in_dim, E * d1, bias=bias)``; rows
            ``e*d1:(e+1)*d1`` of its weight and bias are expert e's first
            ``nn.Linear``.
        ``weights[i]``: ``[E, d_{i+1}, d_{i+2}]``, expert e's Linear of layer
            i+1 *transposed* (``x @ W``), for i = 0 .. n-2.
        ``biases[i]``: ``[E, 1, d_{i+2}]``, the matching biases (an empty
            list when ``bias`` is ``False``).
        ``post[i]``: ``nn.Sequential`` after layer i: the norm
            (``_PoolBatchNorm``: ``norm`` = ``BatchNorm1d(E * d)``, features
            ordered expert-major; ``_PoolLayerNorm``: ``weight``/``bias``
            ``[E, d]``), the activation (``prelu``: ``nn.PReLU(E)``, slope e
            is expert e's), then dropout.
    See :meth:`load_from_experts` for the mapping from an :class:`Experts`.

    Shapes: ``[B, in_dim] -> [B, E, dims[-1]]`` (a transposed view of an
    ``[E, B, D]`` buffer, except on the batched path with one layer or with a
    norm: then contiguous).

    Paths (same function, same gradients to rounding): batched (CUDA, and CPU
    batches under :attr:`per_expert_min_batch` rows), the first layer of all
    experts as one wide matmul and each later layer as one batched matmul over
    the experts; per expert (CPU, from that many rows), see :meth:`_per_expert`.
    The ``bias`` option is stored as :attr:`has_bias`.
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int],
        num_experts: int,
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_options(activation, norm, dropout)
        if not dims:
            raise ValueError("an expert pool needs at least one layer")
        self.in_dim, self.dims, self.num_experts = in_dim, tuple(dims), num_experts
        self.activation, self.dropout, self.norm = activation, dropout, norm
        self.has_bias = bool(bias)
        self.first = nn.Linear(in_dim, num_experts * dims[0], bias=bias)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for width_in, width in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(width_in)  # nn.Linear's default init, per expert
            self.weights.append(
                nn.Parameter(torch.empty(num_experts, width_in, width).uniform_(-bound, bound))
            )
            if bias:
                self.biases.append(
                    nn.Parameter(torch.empty(num_experts, 1, width).uniform_(-bound, bound))
                )
        self.post = nn.ModuleList(
            _pool_post(num_experts, d, activation, dropout, norm) for d in dims
        )

    per_expert_min_batch = 1024
    """CPU batches of at least this many rows take :meth:`_per_expert`; smaller ones
    the batched path, whose fewer, larger ops win when the per-op overhead
    dominates (benchmarks/README.md, "Training speed"). ``None``: always batch."""

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim] -> [B, E, D]``."""
        threshold = self.per_expert_min_batch
        if threshold is not None and x.shape[0] >= threshold and x.device.type == "cpu":
            return self._per_expert(x)
        h = self.post[0](self.first(x).view(x.shape[0], self.num_experts, self.dims[0]))
        for i, (weight, post) in enumerate(zip(self.weights, self.post[1:])):
            # [E, B, d_in] @ [E, d_in, d_out] + [E, 1, d_out] -> [E, B, d_out],
            # seen as [B, E, d_out]
            if self.has_bias:
                h = torch.baddbmm(self.biases[i], h.transpose(0, 1), weight)
            else:
                h = torch.bmm(h.transpose(0, 1), weight)
            h = post(h.transpose(0, 1))
        return h

    def _per_expert(self, x: Tensor) -> Tensor:
        """The experts one after another, from the batched weights: ``[B, in_dim] -> [B, E, D]``.

        On CPU each expert's activations then stay in cache, where the batched
        path's wide ones do not. ReLU pools with biases and without norm or
        dropout run as one autograd node
        (:class:`~mtlc.runtime.kernels.cpu._ReluPool`, in eager mode); other
        pools (``bias=False`` ones too), and torch.compile/export, module by
        module, norms per expert from slices of the pool's.

        Each weight is split with one ``unbind`` (not sliced per expert), so its
        backward stacks the E gradients once instead of filling E weight-sized
        zero gradients; the results are bitwise those of slicing.
        """
        count = self.num_experts
        if (
            self.activation == "relu"
            and self.norm == "none"
            and self.dropout == 0.0
            and self.has_bias
            and _ReluPool.usable(x)
        ):
            params = [self.first.weight, self.first.bias, *self.weights, *self.biases]
            return _ReluPool.apply(x, count, *params).transpose(0, 1)  # [E, B, D] seen as [B, E, D]
        first_w = self.first.weight.view(count, self.dims[0], self.in_dim).unbind(0)
        no_bias = [None] * count
        first_b = no_bias if self.first.bias is None else self.first.bias.view(count, -1).unbind(0)
        biases = self.biases if self.has_bias else [None] * len(self.weights)
        layers = [
            (w.unbind(0), no_bias if b is None else b.view(count, -1).unbind(0))
            for w, b in zip(self.weights, biases)
        ]
        posts = [_split_post(post, count) for post in self.post]
        experts = []
        for e in range(count):
            h = _post_one(posts[0], e, F.linear(x, first_w[e], first_b[e]))
            for (weight, bias), post in zip(layers, posts[1:]):
                h = h @ weight[e] if bias[e] is None else torch.addmm(bias[e], h, weight[e])
                h = _post_one(post, e, h)
            experts.append(h)
        return torch.stack(experts).transpose(0, 1)  # [E, B, D] seen as [B, E, D]

    @torch.no_grad()
    def load_from_mlps(self, mlps: Sequence[MLP]) -> None:
        """Copy E :class:`MLP` s (built with this pool's arguments) into this pool's weights."""
        if len(mlps) != self.num_experts:
            raise ValueError(f"expected {self.num_experts} MLPs, got {len(mlps)}")
        for e, mlp in enumerate(mlps):
            linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
            if [lin.out_features for lin in linears] != list(self.dims):
                raise ValueError("the MLP's widths differ from the pool's")
            if any((lin.bias is not None) != self.has_bias for lin in linears):
                raise ValueError(f"the pool has bias={self.has_bias}; an MLP's Linear differs")
            rows = slice(e * self.dims[0], (e + 1) * self.dims[0])
            self.first.weight[rows] = linears[0].weight
            if self.has_bias:
                self.first.bias[rows] = linears[0].bias
            for i, (weight, linear) in enumerate(zip(self.weights, linears[1:])):
                weight[e] = linear.weight.T
                if self.has_bias:
                    self.biases[i][e, 0] = linear.bias
            norms = [m for m in mlp.layers if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm))]
            prelus = [m for m in mlp.layers if isinstance(m, nn.PReLU)]
            for post, norm, prelu in zip(
                self.post, norms or [None] * len(self.dims), prelus or [None] * len(self.dims)
            ):
                _load_post(post, e, norm, prelu)

    def load_from_experts(self, experts: Experts) -> None:
        """Copy an :class:`Experts` of the same arguments into this pool.

        The pool then gives the same outputs and gradients.
        """
        self.load_from_mlps(list(experts.experts))


def _split_post(post: nn.Sequential, count: int) -> list:
    """A pool's ``post`` block as per-expert functions ``(e, h [B, d]) -> [B, d]``.

    Per-expert parameters (norm affine and running statistics, PReLU slopes)
    are split with one ``unbind`` each; a batch norm's counter moves once per call.
    """
    steps = []
    for module in post:
        if isinstance(module, nn.PReLU):
            slopes = module.weight.view(count, 1).unbind(0)
            steps.append(lambda e, h, slopes=slopes: F.prelu(h, slopes[e]))
        elif isinstance(module, (_PoolBatchNorm, _PoolLayerNorm)):
            steps.append(module.per_expert(count))
        else:
            steps.append(lambda e, h, module=module: module(h))
    return steps


def _post_one(post: list, e: int, h: Tensor) -> Tensor:
    """A :func:`_split_post` block applied to expert ``e``'s ``[B, d]``."""
    for step in post:
        h = step(e, h)
    return h


def _load_post(post: nn.Sequential, e: int, norm: nn.Module | None, prelu: nn.PReLU | None) -> None:
    """Copy expert ``e``'s norm and PReLU into one ``post`` block of a pool."""
    for module in post:
        if isinstance(module, _PoolBatchNorm) and isinstance(norm, nn.BatchNorm1d):
            cols = slice(e * norm.num_features, (e + 1) * norm.num_features)
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(module.norm, name)[cols] = getattr(norm, name)
            module.norm.num_batches_tracked.copy_(norm.num_batches_tracked)
        elif isinstance(module, _PoolLayerNorm) and isinstance(norm, nn.LayerNorm):
            module.weight[e] = norm.weight
            module.bias[e] = norm.bias
        elif isinstance(module, nn.PReLU) and prelu is not None:
            module.weight[e] = prelu.weight[0]


def mix(weights: Tensor, experts: Tensor) -> Tensor:
    """Weighted sum of experts: ``weights [B, E], experts [B, E, D] -> [B, D]``.

    A broadcast product summed over E: ``torch.bmm`` of one-row matrices is slow on CPU,
    as AITM's two slots showed (benchmarks/README.md, "Training speed").
    """
    return (weights.unsqueeze(-1) * experts).sum(1)


class AITransfer(nn.Module):
    """Attentive information transfer (AITM, Xi et al., KDD 2021).

    ``info = info(previous)`` (a plain Linear, no activation), then
    attention over the two slots ``u in [info, current]``: score
    ``<query(u), key(u)> / sqrt(D)``, softmax over the two slots, output the
    weighted sum of ``value(u)``.

    The score is computed in an equal form with one matmul instead of two
    (see :meth:`scores`): the same function of the same parameters, and the
    same gradients, to rounding (tested against the textbook form).

    Args:
        dim: D, the width of both inputs and of the output.
        qkv_bias: give ``query``, ``key``, ``value`` a bias. The paper's
            reference code has none (the default); NextRec 0.6.14 has one.

    Parameter layout: ``info``, ``query``, ``key``, ``value``, each
    ``nn.Linear(D, D)`` (``info`` always with a bias).

    Shapes: ``(current [B, D], previous [B, D]) -> [B, D]``.
    """

    def __init__(self, dim: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(dim)
        self.info = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim, bias=qkv_bias)
        self.key = nn.Linear(dim, dim, bias=qkv_bias)
        self.value = nn.Linear(dim, dim, bias=qkv_bias)

    def forward(self, current: Tensor, previous: Tensor) -> Tensor:
        """``([B, D], [B, D]) -> [B, D]``."""
        slots = torch.stack([self.info(previous), current], dim=1)  # [B, 2, D]
        attention = torch.softmax(self.scores(slots), dim=-1)
        return mix(attention, self.value(slots))

    def scores(self, slots: Tensor) -> Tensor:
        """``<query(u), key(u)> / sqrt(D)`` for each slot ``u``, up to a constant.

        ``[B, 2, D] -> [B, 2]``. With ``query(u) = Wq u + bq`` and ``key(u) = Wk u + bk``,
        ``<query(u), key(u)> = <u (Wq^T Wk) + (Wq^T bk + Wk^T bq), u> + <bq, bk>``.
        The ``D x D`` product is cheap next to the ``[2B, D]`` matmuls it saves
        (one forward, two backward; AITM's training step is faster for it,
        benchmarks/README.md, "Training speed"), and ``<bq, bk>``, the same
        for both slots, leaves the softmax over them, its gradients included,
        unchanged, so it is left out.
        """
        pair = self.query.weight.t() @ self.key.weight  # [D, D]
        shift = None
        if self.query.bias is not None:
            shift = self.query.weight.t() @ self.key.bias + self.key.weight.t() @ self.query.bias
        return (F.linear(slots, pair.t(), shift) * slots).sum(-1) * self.scale


def _valid(emb: Tensor, ids: Tensor) -> Tensor:
    """``[B, L, 1]`` mask in ``emb``'s dtype: 1 where ``ids != 0``."""
    return (ids != 0).unsqueeze(-1).to(emb.dtype)


def pool_sum(emb: Tensor, ids: Tensor) -> Tensor:
    """Sum of the embeddings of non-padding ids.

    Args:
        emb: ``[B, L, D]`` embeddings of ``ids``.
        ids: ``[B, L]`` int ids; 0 is padding and is excluded.

    Returns:
        ``[B, D]``; an all-padding row gives zeros.
    """
    return (emb * _valid(emb, ids)).sum(1)


def pool_mean(emb: Tensor, ids: Tensor) -> Tensor:
    """Mean of the embeddings of non-padding ids: ``[B, L, D], [B, L] -> [B, D]``.

    All padding gives zeros.
    """
    valid = _valid(emb, ids)
    return (emb * valid).sum(1) / valid.sum(1).clamp_min(1.0)


def pool_max(emb: Tensor, ids: Tensor) -> Tensor:
    """Elementwise max over non-padding ids: ``[B, L, D], [B, L] -> [B, D]``.

    All padding gives zeros.
    """
    padding = (ids == 0).unsqueeze(-1)
    largest = emb.masked_fill(padding, torch.finfo(emb.dtype).min).amax(1)
    return torch.where(padding.all(1), torch.zeros_like(largest), largest)
