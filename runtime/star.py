"""STAR: the star-topology network (Sheng et al., CIKM 2021), routed per row by a domain id.

Shapes: B batch, P domains, n and m a layer's input and output widths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .kernels.ops import is_exporting
from .layers import ACTIVATIONS, _activation

_COMBINES = ("mul", "add")
_NORMS = ("none", "partitioned")


class _StarLayer(nn.Module):
    """One star layer ``n -> m`` over P domains, of one network or E (``[E, ...]``); see
    :class:`Star`."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_domains: int,
        combine: str,
        activation: str,
        experts: int | None = None,
    ) -> None:
        super().__init__()
        self.combine, self.experts = combine, experts
        lead = () if experts is None else (experts,)
        self.weight = nn.Parameter(torch.empty(*lead, out_dim, in_dim))
        self.bias = nn.Parameter(torch.empty(*lead, out_dim))
        self.domain_weight = nn.Parameter(torch.empty(*lead, num_domains, out_dim, in_dim))
        self.domain_bias = nn.Parameter(torch.empty(*lead, num_domains, out_dim))
        # the Linear's output is saved by no backward, so ReLU may overwrite it; a pool's
        # PReLU has one slope per expert (its channels, dim 1 of ``[n_p, E, m]``)
        self.activation = (
            nn.ReLU(inplace=True) if activation == "relu" else _activation(activation, experts or 1)
        )
        if experts is None:  # a pool's Star draws expert by expert, across its layers
            self.reset_parameters()

    def reset_parameters(self, expert: int | None = None) -> None:
        """Shared weight and bias as ``nn.Linear(n, m)`` (same draws); domain ones/zeros.

        ``expert``: only that expert's (a pool); ``None``: every expert, in order.
        """
        if self.experts is not None and expert is None:
            for e in range(self.experts):
                self.reset_parameters(e)
            return
        pick = (lambda t: t) if expert is None else (lambda t: t[expert])
        with torch.no_grad():
            weight, bias = pick(self.weight), pick(self.bias)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(bias, -bound, bound)
            # "mul": W ∘ 1 = W, "add": W + 0 = W; either way a fresh layer is the shared one
            nn.init.constant_(pick(self.domain_weight), 1.0 if self.combine == "mul" else 0.0)
            nn.init.zeros_(pick(self.domain_bias))

    def composed(self) -> tuple[Sequence[Tensor], Sequence[Tensor]]:
        """Every domain's weight ``[m, n]`` and bias ``[m]``, composed once, split with ``unbind``.

        A pool's: domain p's ``[E, m, n]`` and ``[E, m]`` (views of ``[E, P, ...]``).
        ``unbind`` (not indexing per domain) makes the backward stack the P gradients
        once instead of filling P parameter-sized zero gradients.
        """
        if self.experts is None:
            shared_weight, shared_bias = self.weight, self.bias
        else:  # [E, 1, ...] against [E, P, ...]
            shared_weight, shared_bias = self.weight.unsqueeze(1), self.bias.unsqueeze(1)
        if self.combine == "mul":
            weights = shared_weight * self.domain_weight
        else:
            weights = shared_weight + self.domain_weight
        biases = shared_bias + self.domain_bias
        dim = 0 if self.experts is None else 1  # a pool's: [E, P, ...]
        return weights.unbind(dim), biases.unbind(dim)


class _PartitionedNorm(nn.Module):
    """Partitioned normalisation over P domains of an ``n``-wide input, of E experts
    (``[E, ...]``) or one; see :class:`Star`."""

    eps = 1e-5
    momentum = 0.1

    def __init__(self, width: int, num_domains: int, experts: int | None = None) -> None:
        super().__init__()
        self.experts = experts
        lead = () if experts is None else (experts,)
        self.weight = nn.Parameter(torch.ones(*lead, width))
        self.bias = nn.Parameter(torch.zeros(*lead, width))
        self.domain_weight = nn.Parameter(torch.ones(*lead, num_domains, width))
        self.domain_bias = nn.Parameter(torch.zeros(*lead, num_domains, width))
        self.register_buffer("running_mean", torch.zeros(*lead, num_domains, width))
        self.register_buffer("running_var", torch.ones(*lead, num_domains, width))
        self.register_buffer(
            "num_batches_tracked", torch.zeros(*lead, num_domains, dtype=torch.long)
        )

    def per_domain(self) -> Callable[[int, Tensor], Tensor]:
        """``(p, h [rows of domain p, n]) -> [rows, n]``: domain p's normalisation.

        A pool's: ``-> [rows, E, n]``, every expert's normalisation of the same rows.
        The affine terms are composed once per call; the running statistics of
        domain p are updated in place through row views of the ``[P, n]`` buffers.
        """
        if self.experts is not None:
            return self._per_domain_pool()
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

    def _per_domain_pool(self) -> Callable[[int, Tensor], Tensor]:
        """The pool's: one ``F.batch_norm`` over the rows repeated E times, ``[rows, E * n]``
        (expert-major features), each expert's statistics and affine terms its own."""
        experts, width = self.experts, self.weight.shape[-1]
        features = experts * width

        def by_domain(t: Tensor) -> Sequence[Tensor]:  # [E, P, n] -> P of [E * n]
            return t.transpose(0, 1).reshape(-1, features).unbind(0)

        weights = by_domain(self.weight.unsqueeze(1) * self.domain_weight)
        biases = by_domain(self.bias.unsqueeze(1) + self.domain_bias)

        def normalise(p: int, h: Tensor) -> Tensor:
            rows = h.shape[0]
            batch_stats = self.training and rows > 1
            # [E, n] rows of the [E, P, n] buffers are not one block: update copies, write back
            mean = self.running_mean[:, p].reshape(features)
            var = self.running_var[:, p].reshape(features)
            out = F.batch_norm(
                h.unsqueeze(1).expand(rows, experts, width).reshape(rows, features),
                mean,
                var,
                weights[p],
                biases[p],
                batch_stats,
                self.momentum,
                self.eps,
            )
            if batch_stats:
                self.num_batches_tracked[:, p] += 1
                self.running_mean[:, p] = mean.view(experts, width)
                self.running_var[:, p] = var.view(experts, width)
            return out.view(rows, experts, width)

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
        num_experts: ``None``, one network; E, a pool of E independent star
            networks (own parameters, PN parameters and running statistics)
            reading the same ``x`` and ``domain``, the same function as E
            separate ``Star`` s, outputs stacked on dim 1 (``-O1``'s merge of
            star towers of one input, one domain feature and one shape).

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
    Pool form (``num_experts=E``): every entry above gains a leading E
    dimension, index e being expert e's: ``layers.{l}.weight [E, m, n]``,
    ``layers.{l}.bias [E, m]``, ``layers.{l}.domain_weight [E, P, m, n]``,
    ``layers.{l}.domain_bias [E, P, m]``, ``norm.weight``/``norm.bias [E,
    in_dim]``, ``norm.domain_weight``/``norm.domain_bias [E, P, in_dim]``,
    ``norm.running_mean``/``norm.running_var [E, P, in_dim]``,
    ``norm.num_batches_tracked [E, P]``; except the PReLU slopes,
    ``layers.{l}.activation.weight [E]`` (``nn.PReLU(E)``). See
    :meth:`load_from_stars`.
    Init: ``weight``, ``bias`` as ``nn.Linear``'s default (the same draws, so
    a seed gives ``nn.Linear(n, m)``'s weights); ``domain_weight`` ones for
    ``mul``, zeros for ``add``; ``domain_bias`` zeros; so a fresh layer is
    the shared network for every domain (the paper's intent). PN: γ, γ_p
    ones, β, β_p zeros, running mean 0 and variance 1; PReLU slopes 0.25. A
    pool draws expert by expert, so a seed gives the weights of E ``Star`` s
    built one after the other.

    Shapes: ``(x [B, in_dim], domain [B] int in [0, P)) -> [B, dims[-1]]``;
    a pool's ``-> [B, E, dims[-1]]`` (a transposed view of an ``[E, B,
    dims[-1]]`` buffer: ``unbind(1)`` gives contiguous outputs).

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

    A pool composes the weights of all experts and domains once per forward
    too (``[E, P, m, n]``) and, per domain, runs each layer of the E experts
    as one batched matmul, ``[E, n_p, n] @ [E, n, m]``, the first one reading
    the shared rows broadcast over the experts (a view) or, with PN, each
    expert's normalised rows; PN is one ``F.batch_norm`` over the rows
    repeated E times (``[n_p, E * in]``, features expert-major). The first
    layer as one wide matmul (``[n_p, in] @ [in, E * m]``) measured slower,
    forward and backward (3.8 against 2.5 ms for two layers at n_p = 512, E
    = 4): its ``[n_p, E, m]`` output must be transposed for the next layer,
    both ways. Against E separate ``Star`` s, same setting (B = 2048, P = 4,
    one thread, forward and backward, interleaved medians): E = 2, 7.0
    against 6.9 ms (PN: 6.6 against 6.6); E = 4, 14.2 against 13.8 (PN:
    13.5 against 13.8), the matmuls' work being the same; at B = 256, E = 2,
    1.25 against 1.41 (PN: 1.62 against 1.73), E = 4, 2.07 against 2.76
    (PN: 2.70 against 3.43), fewer ops winning where their overhead counts.
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
        num_experts: int | None = None,
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
        if num_experts is not None and (
            not isinstance(num_experts, int) or isinstance(num_experts, bool) or num_experts < 1
        ):
            raise ValueError(f"Star num_experts must be a positive integer, got {num_experts}")
        self.in_dim, self.dims, self.num_domains = in_dim, tuple(dims), num_domains
        self.combine, self.activation, self.dropout = combine, activation, float(dropout)
        self.num_experts = num_experts
        self.norm = (
            _PartitionedNorm(in_dim, num_domains, num_experts) if norm == "partitioned" else None
        )
        self.layers = nn.ModuleList(
            _StarLayer(n, m, num_domains, combine, activation, num_experts)
            for n, m in zip([in_dim, *dims[:-1]], dims)
        )
        if num_experts is not None:  # expert by expert, as E Stars built one after the other
            for e in range(num_experts):
                for layer in self.layers:
                    layer.reset_parameters(e)

    @torch.no_grad()
    def load_from_stars(self, stars: Sequence[Star]) -> None:
        """Copy E plain ``Star`` s (``num_experts=None``, this pool's options) in, in order.

        Every parameter and buffer, the norm's running statistics and batch
        counts included: expert e then computes what ``stars[e]`` does.
        """
        if self.num_experts is None:
            raise ValueError("load_from_stars needs a pool (a Star with num_experts)")
        if len(stars) != self.num_experts:
            raise ValueError(f"a pool of {self.num_experts} needs as many Stars, got {len(stars)}")
        options = self.options()
        for star in stars:
            if not isinstance(star, Star) or star.num_experts is not None:
                raise ValueError("load_from_stars takes plain Stars (num_experts=None)")
            if star.options() != options:
                raise ValueError(
                    f"a Star of options {star.options()} does not fit a pool of {options}"
                )
        states = [star.state_dict() for star in stars]
        for key, target in self.state_dict().items():
            target.copy_(torch.stack([state[key] for state in states]).view_as(target))

    def options(self) -> dict:
        """The arguments that build this Star's plain form: all but ``num_experts``."""
        return dict(
            in_dim=self.in_dim,
            dims=self.dims,
            num_domains=self.num_domains,
            combine=self.combine,
            norm="none" if self.norm is None else "partitioned",
            activation=self.activation,
            dropout=self.dropout,
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
        """``(x [B, in_dim], domain [B]) -> [B, dims[-1]]`` (a pool's ``[B, E, dims[-1]]``)."""
        if is_exporting():
            return self._gathered_forward(x, domain)
        perm, counts = self._rows_by_domain(domain, x.shape[0])
        if self.num_experts is not None:
            return self._pool_forward(x, perm, counts)
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

    def _gathered_forward(self, x: Tensor, domain: Tensor) -> Tensor:
        """The evaluation forward with each row's domain weights gathered (``[B, m, n]`` a
        layer): no data-dependent split, so ``torch.export`` and ONNX can trace it; more
        memory than the split, for serving. Partitioned norms use running statistics."""
        if self.training:
            raise ValueError("Star exports in evaluation mode only (model.eval())")
        pool = self.num_experts is not None
        h = x.unsqueeze(1).expand(-1, self.num_experts, -1) if pool else x  # [B, (E,) n]
        if self.norm is not None:
            norm = self.norm
            scale = norm.weight.unsqueeze(-2) * norm.domain_weight  # [(E,) P, n]
            shift = norm.bias.unsqueeze(-2) + norm.domain_bias
            stats = (norm.running_mean, norm.running_var, scale, shift)
            mean, var, scale, shift = (  # each row's domain: [B, (E,) n]
                s[:, domain].transpose(0, 1) if pool else s[domain] for s in stats
            )
            h = (h - mean) / torch.sqrt(var + norm.eps) * scale + shift
        for layer, (weights, biases) in zip(self.layers, (lay.composed() for lay in self.layers)):
            w, b = torch.stack(list(weights))[domain], torch.stack(list(biases))[domain]
            if pool:  # w [B, E, m, n], b [B, E, m]
                h = layer.activation(torch.einsum("bemn,ben->bem", w, h) + b)
            else:  # w [B, m, n], b [B, m]
                h = layer.activation(torch.bmm(w, h.unsqueeze(-1)).squeeze(-1) + b)
        return h

    def _pool_forward(self, x: Tensor, perm: Tensor, counts: list[int]) -> Tensor:
        """A pool's forward: ``[B, E, dims[-1]]``, the E experts' networks batched.

        Per domain, every layer of the E experts is one batched matmul, ``[E, n_p, n] @
        [E, n, m]``, the first one reading the shared input broadcast over the experts
        (or, after PN, each expert's own normalised input).
        """
        experts = self.num_experts
        if x.shape[0] == 0:
            return x.new_zeros(0, experts, self.dims[-1])
        normalise = None if self.norm is None else self.norm.per_domain()
        layers = [layer.composed() for layer in self.layers]
        drop, training = self.dropout, self.training
        prelu = self.activation == "prelu"
        outs = []
        for p, h in enumerate(x.index_select(0, perm).split(counts)):
            rows = counts[p]
            if not rows:
                continue
            if normalise is not None:
                h = normalise(p, h).transpose(0, 1)  # [E, n_p, in]
            else:
                h = h.expand(experts, rows, self.in_dim)  # no copy
            for layer, (weights, biases) in zip(self.layers, layers):
                # [E, n_p, n] @ [E, n, m] + [E, 1, m] -> [E, n_p, m]
                h = torch.baddbmm(biases[p].unsqueeze(1), h, weights[p].transpose(1, 2))
                if prelu:  # its channels, one slope per expert, on dim 1
                    h = layer.activation(h.transpose(0, 1)).transpose(0, 1)
                else:
                    h = layer.activation(h)
                if drop > 0:
                    h = F.dropout(h, drop, training)
            outs.append(h)  # [E, n_p, D]
        out = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
        # the rows back in order: index_select by the inverse permutation is cheaper,
        # forward and backward, than index_copy into a fresh buffer
        inverse = torch.empty_like(perm).scatter_(
            0, perm, torch.arange(len(perm), device=perm.device)
        )
        return out.index_select(1, inverse).transpose(0, 1)
