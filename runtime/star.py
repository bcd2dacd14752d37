"""STAR: the star-topology network (Sheng et al., CIKM 2021), routed per row by a domain id.

Shapes: B batch, P domains, n and m a layer's input and output widths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import ACTIVATIONS, _activation

_COMBINES = ("mul", "add")
_NORMS = ("none", "partitioned")


class _StarLayer(nn.Module):
    """One star layer ``n -> m`` over P domains; see :class:`Star`."""

    def __init__(
        self, in_dim: int, out_dim: int, num_domains: int, combine: str, activation: str
    ) -> None:
        super().__init__()
        self.combine = combine
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        self.bias = nn.Parameter(torch.empty(out_dim))
        self.domain_weight = nn.Parameter(torch.empty(num_domains, out_dim, in_dim))
        self.domain_bias = nn.Parameter(torch.empty(num_domains, out_dim))
        # the Linear's output is saved by no backward, so ReLU may overwrite it
        self.activation = nn.ReLU(inplace=True) if activation == "relu" else _activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Shared weight and bias as ``nn.Linear(n, m)`` (same draws); domain ones/zeros."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.bias, -bound, bound)
        # "mul": W ∘ 1 = W, "add": W + 0 = W; either way a fresh layer is the shared one
        nn.init.constant_(self.domain_weight, 1.0 if self.combine == "mul" else 0.0)
        nn.init.zeros_(self.domain_bias)

    def composed(self) -> tuple[Sequence[Tensor], Sequence[Tensor]]:
        """Every domain's weight ``[m, n]`` and bias ``[m]``, composed once, split with ``unbind``.

        ``unbind`` (not indexing per domain) makes the backward stack the P
        gradients once instead of filling P parameter-sized zero gradients.
        """
        if self.combine == "mul":
            weights = self.weight * self.domain_weight
        else:
            weights = self.weight + self.domain_weight
        return weights.unbind(0), (self.bias + self.domain_bias).unbind(0)


class _PartitionedNorm(nn.Module):
    """Partitioned normalisation over P domains of an ``n``-wide input; see :class:`Star`."""

    eps = 1e-5
    momentum = 0.1

    def __init__(self, width: int, num_domains: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.domain_weight = nn.Parameter(torch.ones(num_domains, width))
        self.domain_bias = nn.Parameter(torch.zeros(num_domains, width))
        self.register_buffer("running_mean", torch.zeros(num_domains, width))
        self.register_buffer("running_var", torch.ones(num_domains, width))
        self.register_buffer("num_batches_tracked", torch.zeros(num_domains, dtype=torch.long))

    def per_domain(self) -> Callable[[int, Tensor], Tensor]:
        """``(p, h [rows of domain p, n]) -> [rows, n]``: domain p's normalisation.

        The affine terms are composed once per call; the running statistics of
        domain p are updated in place through row views of the ``[P, n]`` buffers.
        """
        weights = (self.weight * self.domain_weight).unbind(0)
        biases = (self.bias + self.domain_bias).unbind(0)
        means, variances = self.running_mean.unbind(0), self.running_var.unbind(0)

        def normalise(p: int, h: Tensor) -> Tensor:
            batch_stats = self.training and h.shape[0] > 1
            if batch_stats:
                self.num_batches_tracked[p] += 1
            return F.batch_norm(
                h,
                means[p],
                variances[p],
                weights[p],
                biases[p],
                batch_stats,
                self.momentum,
                self.eps,
            )

        return normalise


class Star(nn.Module):
    """STAR's star-topology network (Sheng et al., CIKM 2021): one network per domain.

    Every domain's network shares a centre: layer ``n -> m`` has a shared
    weight ``W [m, n]`` and bias ``b [m]`` and, per domain p, ``W_p [m, n]``
    and ``b_p [m]``. Row r, of domain ``p = domain[r]``, goes through its
    domain's network only: ``h = dropout(activation((W ∘ W_p) h + b + b_p))``,
    ``∘`` the elementwise product (``combine="mul"``, the paper) or the sum
    (``"add"``, NextRec 0.4.28's ``SharedSpecificLinear``, where the domains
    are its tasks). The activation and dropout follow every layer, the last
    one too, as the language's ``mlp``. The paper's auxiliary network is not
    part of the layer.

    With ``norm="partitioned"``, the paper's partitioned normalisation (PN)
    comes first, on the block's input: ``z = (γ ∘ γ_p) ∘ (x - μ) / sqrt(σ² +
    eps) + (β + β_p)``, eps 1e-5. In training, μ and σ² (biased) are the
    batch statistics of the rows of domain p, and domain p's running mean and
    variance (unbiased, momentum 0.1) are updated from them, as
    ``BatchNorm1d`` on those rows alone. A domain without a row in the batch
    keeps its statistics. A domain with one row (where ``BatchNorm1d`` would
    raise, its variance being undefined) is normalised with its running
    statistics, as in eval, and keeps them. In eval every row takes its
    domain's running statistics.

    Args:
        in_dim: the input's width.
        dims: output width of each layer; the output is ``dims[-1]`` wide.
        num_domains: P, the number of domains; ids are ``0 .. P-1``.
        combine: ``mul`` (``W ∘ W_p``, the paper) or ``add`` (``W + W_p``,
            NextRec's).
        norm: ``none`` or ``partitioned`` (PN on the input, as above).
        activation: after each layer: any of the runtime's, ``prelu`` with
            one slope per layer shared by the domains (``nn.PReLU()``).
        dropout: drop probability after each activation (0: none).

    Parameter layout (layer l, ``n -> m``):
        ``layers.{l}.weight [m, n]``, ``layers.{l}.bias [m]``: shared, in
            ``nn.Linear``'s orientation;
        ``layers.{l}.domain_weight [P, m, n]``, ``layers.{l}.domain_bias
            [P, m]``: ``W_p``, ``b_p`` for domain p at index p;
        ``layers.{l}.activation.weight [1]``: the PReLU slope (``prelu``);
        with ``partitioned``: ``norm.weight [in_dim]`` (γ), ``norm.bias
            [in_dim]`` (β), ``norm.domain_weight [P, in_dim]`` (γ_p),
            ``norm.domain_bias [P, in_dim]`` (β_p); buffers
            ``norm.running_mean [P, in_dim]``, ``norm.running_var [P,
            in_dim]`` and ``norm.num_batches_tracked [P]`` (long: the batches
            that updated domain p's statistics).
    Init: ``weight``, ``bias`` as ``nn.Linear``'s default (the same draws, so
    a seed gives ``nn.Linear(n, m)``'s weights); ``domain_weight`` ones for
    ``mul``, zeros for ``add``; ``domain_bias`` zeros; so a fresh layer is
    the shared network for every domain (the paper's intent). PN: γ, γ_p
    ones, β, β_p zeros, running mean 0 and variance 1; PReLU slopes 0.25.

    Shapes: ``(x [B, in_dim], domain [B] int in [0, P)) -> [B, dims[-1]]``.

    Computation: the weights and biases of all P domains are composed once
    per forward (parameter-sized), the rows are sorted by domain (one stable
    sort), each present domain's contiguous rows go through its network
    (``F.linear``, and ``F.batch_norm`` for PN), and one ``index_copy`` puts
    the rows back in order. On one CPU thread at B = 2048, in 64, dims
    [128, 64], P = 4, forward and backward, medians of interleaved runs: 5.2
    ms, against 13.5 ms (19.8 ms with ``gather``) for one matmul against all
    P composed weights followed by picking each row's domain; at P = 16, 6.6
    against 43 ms; at B = 256, P = 4, 0.76 against 1.4 ms. The domains
    present are read once on the host (one sync), which also checks the ids
    cheaply: an id outside ``[0, P)`` raises a ``ValueError``.
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int],
        num_domains: int,
        combine: str = "mul",
        norm: str = "none",
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dims = list(dims)
        if not dims:
            raise ValueError("a Star needs at least one layer")
        for what, values in (("in_dim", [in_dim]), ("dims", dims), ("num_domains", [num_domains])):
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise ValueError(f"Star {what} must be positive integers, got {values}")
        for what, value, allowed in (
            ("combine", combine, _COMBINES),
            ("norm", norm, _NORMS),
            ("activation", activation, tuple(ACTIVATIONS)),
        ):
            if value not in allowed:
                raise ValueError(
                    f"unknown Star {what} {value!r}; expected one of {', '.join(allowed)}"
                )
        if isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"Star dropout must be in [0, 1), got {dropout}")
        self.in_dim, self.dims, self.num_domains = in_dim, tuple(dims), num_domains
        self.combine, self.dropout = combine, float(dropout)
        self.norm = _PartitionedNorm(in_dim, num_domains) if norm == "partitioned" else None
        self.layers = nn.ModuleList(
            _StarLayer(n, m, num_domains, combine, activation)
            for n, m in zip([in_dim, *dims[:-1]], dims)
        )

    def _rows_by_domain(self, domain: Tensor, rows: int) -> tuple[Tensor, list[int]]:
        """``(perm, counts)``: the rows in domain order (stable) and each domain's count."""
        if domain.dim() != 1 or domain.shape[0] != rows:
            raise ValueError(
                f"Star needs one domain id per row: domain of shape {tuple(domain.shape)} "
                f"for {rows} rows"
            )
        if domain.dtype.is_floating_point or domain.dtype.is_complex or domain.dtype == torch.bool:
            raise ValueError(f"Star domain ids must be integers, got {domain.dtype}")
        ordered, perm = domain.sort(stable=True)
        ids = torch.arange(self.num_domains + 1, device=domain.device, dtype=ordered.dtype)
        bounds = torch.searchsorted(ordered, ids).tolist()  # bounds[p]: rows with id < p
        if bounds[0] != 0 or bounds[-1] != rows:
            raise ValueError(
                f"Star domain ids must be in [0, {self.num_domains}), got ids from "
                f"{int(ordered[0])} to {int(ordered[-1])}"
            )
        return perm, [high - low for low, high in zip(bounds, bounds[1:])]

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        """``(x [B, in_dim], domain [B]) -> [B, dims[-1]]``."""
        perm, counts = self._rows_by_domain(domain, x.shape[0])
        if x.shape[0] == 0:
            return x.new_zeros(0, self.dims[-1])
        normalise = None if self.norm is None else self.norm.per_domain()
        layers = [layer.composed() for layer in self.layers]
        drop, training = self.dropout, self.training
        outs = []
        for p, h in enumerate(x.index_select(0, perm).split(counts)):
            if not counts[p]:
                continue
            if normalise is not None:
                h = normalise(p, h)
            for layer, (weights, biases) in zip(self.layers, layers):
                h = layer.activation(F.linear(h, weights[p], biases[p]))
                if drop > 0:
                    h = F.dropout(h, drop, training)
            outs.append(h)
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out.new_empty(out.shape).index_copy(0, perm, out)
