"""APG: adaptive parameter generation (Yan et al., NeurIPS 2022), as NextRec 0.6.14 computes it.

Shapes: B batch, C the condition's width, k a layer's rank, p its expand width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import ACTIVATIONS, _activation

# `inner` and `generate` take no learned slope (NextRec would give PReLU one; mtlc refuses it)
_POINTWISE = ("none", "relu", "gelu", "silu", "tanh", "sigmoid")


class _APGLayer(nn.Module):
    """One APG layer ``n -> m`` (NextRec's ``APGLayer``); see :class:`APG`.

    :attr:`product_form` picks how ``a @ M(c) + b(c)`` is computed for each
    generated matrix (the same function and gradients, to rounding):
    ``"auto"`` (the default) takes ``"outer"`` where ``generate`` is ``none``
    and ``C + 1`` is below the matrix's column count, else ``"matrix"``;
    ``"outer"`` falls back to ``"matrix"`` where ``generate`` is not ``none``.
    """

    product_form = "auto"

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        cond_dim: int,
        rank: int,
        expand: int | None,
        shared: bool,
        inner: str,
        generate: str,
        activation: str,
    ) -> None:
        super().__init__()
        n, m, k, p = in_dim, out_dim, rank, expand
        self.in_dim, self.out_dim, self.rank, self.expand = n, m, k, p
        self.shared = shared
        self.inner = ACTIVATIONS[inner]()
        self.generate = ACTIVATIONS[generate]()
        self.activation = _activation(activation)
        # created in NextRec's order (shared weights, then the generators, then the shared
        # init), so that the same seed gives NextRec's initial weights
        shapes = ()
        if shared and p is None:
            shapes = (("nk", n, k), ("km", k, m))
        elif shared:
            shapes = (("np", n, p), ("pk", p, k), ("kp", k, p), ("pm", p, m))
        for name, rows, cols in shapes:
            setattr(self, f"weight_{name}", nn.Parameter(torch.empty(rows, cols)))
            setattr(self, f"bias_{name}", nn.Parameter(torch.zeros(cols)))
        self._shared_names = [name for name, _, _ in shapes]
        self.generate_kk = nn.Linear(cond_dim, k * k)
        self.generate_k = nn.Linear(cond_dim, k)
        if not shared:
            self.generate_nk = nn.Linear(cond_dim, n * k)
            self.generate_nk_bias = nn.Linear(cond_dim, k)
            self.generate_km = nn.Linear(cond_dim, k * m)
            self.generate_km_bias = nn.Linear(cond_dim, m)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Shared weights ``xavier_uniform_``, shared biases zero (generators keep theirs)."""
        for name in self._shared_names:
            nn.init.xavier_uniform_(getattr(self, f"weight_{name}"))
            nn.init.zeros_(getattr(self, f"bias_{name}"))

    def _shared(self, a: Tensor, name: str) -> Tensor:
        """``a @ weight_<name> + bias_<name>``."""
        return torch.addmm(getattr(self, f"bias_{name}"), a, getattr(self, f"weight_{name}"))

    def _generated(
        self, a: Tensor, c: Tensor, c1: Tensor, weight: nn.Linear, bias: nn.Linear, cols: int
    ) -> Tensor:
        """``a [B, r] @ W(c) + b(c) -> [B, cols]``, ``W(c) = generate(weight(c))`` ``[B, r, cols]``.

        ``"matrix"``: each row's ``[r, cols]`` matrix, row-major as NextRec's
        ``view``, applied as a broadcast product summed over ``r`` (``bmm`` of
        one-row matrices is slower on CPU). ``"outer"`` (``generate`` none):
        ``W(c)[b, i, j] = sum_c' weight.weight[i*cols + j, c'] c1[b, c'] (+ the
        bias in the ones column)``, so the product is one GEMM
        ``(a ⊗ c1) [B, r*(C+1)] @ G [r*(C+1), cols]`` with ``G[(i, c'), j] =
        [weight.weight | weight.bias][i*cols + j, c']``: no ``[B, r, cols]``
        tensor, its ``[B, r*(C+1)]`` operand being the smaller one when
        ``C + 1 < cols``.
        """
        offset = self.generate(bias(c))
        form = self.product_form
        if isinstance(self.generate, nn.Identity) and (
            form == "outer" or (form == "auto" and c1.shape[1] < cols)
        ):
            rows, width = a.shape[1], c1.shape[1]
            table = torch.cat([weight.weight, weight.bias.unsqueeze(1)], 1)  # [r*cols, C+1]
            table = table.view(rows, cols, width).transpose(1, 2).reshape(rows * width, cols)
            outer = (a.unsqueeze(2) * c1.unsqueeze(1)).reshape(a.shape[0], rows * width)
            return torch.addmm(offset, outer, table)
        matrix = self.generate(weight(c)).view(a.shape[0], a.shape[1], cols)
        return (a.unsqueeze(2) * matrix).sum(1) + offset

    def forward(self, x: Tensor, c: Tensor, c1: Tensor) -> Tensor:
        """``x [B, n], c [B, C], c1 = [c, 1] [B, C+1] -> [B, m]``."""
        inner, k, m = self.inner, self.rank, self.out_dim
        if not self.shared:
            a = inner(self._generated(x, c, c1, self.generate_nk, self.generate_nk_bias, k))
            a = inner(self._generated(a, c, c1, self.generate_kk, self.generate_k, k))
            return self.activation(
                self._generated(a, c, c1, self.generate_km, self.generate_km_bias, m)
            )
        if self.expand is None:
            a = inner(self._shared(x, "nk"))
        else:
            a = inner(self._shared(inner(self._shared(x, "np")), "pk"))
        a = inner(self._generated(a, c, c1, self.generate_kk, self.generate_k, k))
        if self.expand is None:
            return self.activation(self._shared(a, "km"))
        return self.activation(self._shared(inner(self._shared(a, "kp")), "pm"))


class APG(nn.Module):
    """Adaptive parameter generation (APG, Yan et al., NeurIPS 2022): NextRec 0.6.14's stack.

    Per layer ``n -> m`` of rank k, from the condition ``c``:
    ``M(c) = generate(generate_kk(c))`` seen ``[B, k, k]`` row-major
    (``M[b, i, j] = generate_kk(c)[b, i*k + j]``) and ``bm(c) =
    generate(generate_k(c))``; then ``a = inner(x @ U + b_u)`` ``[k]``,
    ``a = inner(a @ M(c) + bm(c))`` (``out_j = sum_i a_i M_ij``), ``y =
    activation(a @ V + b_v)`` ``[m]``. With an expand p, U and V are each two
    shared steps through p: ``a = inner(inner(x P1 + b1) P2 + b2)``, then the
    generated step, then ``y = activation(inner(a P3 + b3) P4 + b4)``.
    Without ``shared``, ``U(c), b_u(c), V(c), b_v(c)`` are generated the
    same way as ``M(c)``, ``bm(c)``. The activation follows every layer, the
    last one too (NextRec). No dropout or norm, so train and eval agree.

    Args:
        in_dim: the input's width.
        dims: output width of each layer; the output is ``dims[-1]`` wide.
        cond_dim: C, the condition's width.
        ranks: k of each layer (as many as ``dims``); NextRec's is
            ``ceil(min(n, m) / mf_k)``.
        expands: ``None``, or p of each layer (NextRec's ``use_mf_p``, with
            ``p = ceil(min(n, m) / mf_p)``); only with ``shared``.
        shared: U, V (and the expand steps) are learned weights shared by
            every row (NextRec's ``use_uv_shared``); ``False``: generated too.
        inner: activation after each step inside a layer (NextRec's
            ``inner_activation``): ``none``, ``relu``, ``gelu``, ``silu``,
            ``tanh`` or ``sigmoid``.
        generate: activation applied to every generated weight and bias
            (NextRec's ``generate_activation``), from the same set.
        activation: after each layer (NextRec's ``mlp_params["activation"]``):
            any of the runtime's, ``prelu`` with one slope per layer.

    Parameter layout: ``layers``, an ``nn.ModuleList`` of one ``_APGLayer``
    per layer. NextRec's ``apg_layers.{l}.shared_<name>`` is
    ``layers.{l}.<name>``; its ``apg_layers.{l}.specific_<x>.mlp.0.*`` is
    ``layers.{l}.<generator>.*``, the generator named in brackets below:
        ``weight_nk [n, k]``, ``bias_nk [k]``, ``weight_km [k, m]``,
            ``bias_km [m]``: U, b_u, V, b_v, in the ``x @ W`` orientation
            (shared, no expand);
        ``weight_np [n, p]``, ``bias_np [p]``, ``weight_pk [p, k]``,
            ``bias_pk [k]``, ``weight_kp [k, p]``, ``bias_kp [p]``,
            ``weight_pm [p, m]``, ``bias_pm [m]``: P1..P4 and b1..b4
            (shared, with an expand);
        ``generate_kk``: ``nn.Linear(C, k*k)``, M's generator
            (``specific_weight_kk``); ``generate_k``: ``nn.Linear(C, k)``,
            bm's (``specific_bias_kk``);
        without ``shared``: ``generate_nk`` ``nn.Linear(C, n*k)``,
            ``generate_nk_bias`` ``nn.Linear(C, k)``, ``generate_km``
            ``nn.Linear(C, k*m)``, ``generate_km_bias`` ``nn.Linear(C, m)``:
            the generators of U, b_u, V, b_v (``specific_weight_nk``,
            ``specific_bias_nk``, ``specific_weight_km``, ``specific_bias_km``);
        ``activation``: the layer's activation module (``nn.PReLU()`` for
            ``prelu``: NextRec's ``apg_layers.{l}.activation.weight``).
    Init (NextRec's, in its order, so a seed gives NextRec's weights): shared
    weights ``xavier_uniform_``, shared biases zero, generators ``nn.Linear``'s
    default.

    Shapes: ``(x [B, in_dim], cond [B, C]) -> [B, dims[-1]]``.

    Each generated product ``a @ W(c) + b(c)`` (``M`` always, ``U`` and ``V``
    without ``shared``) is computed without the per-row ``[B, r, cols]``
    matrix where ``generate`` is ``none`` and ``C + 1 < cols``: as one GEMM
    over the outer product ``a ⊗ [c, 1]`` (``_APGLayer._generated``). On one
    CPU thread at B = 2048, forward and backward, medians of interleaved runs:
    ``a @ M(c) + bm(c)`` with C = 8 took 3.6 ms instead of 32 ms (``bmm``)
    for k = 32 and 1.6 ms instead of 4.8 ms for k = 16, but 0.61 ms instead
    of 0.47 ms for k = 3; the whole stack of specs/apg.mtl (41 -> [128, 64],
    ranks [32, 16]) 6.4 ms, against 20 ms with the matrix form everywhere and
    22 ms for NextRec's layers. Elsewhere the matrix form is kept.
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int],
        cond_dim: int,
        ranks: Sequence[int],
        expands: Sequence[int] | None = None,
        shared: bool = True,
        inner: str = "none",
        generate: str = "none",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        dims, ranks = list(dims), list(ranks)
        if not dims:
            raise ValueError("an APG needs at least one layer")
        if len(ranks) != len(dims):
            raise ValueError(f"APG has {len(dims)} layers but {len(ranks)} ranks")
        if expands is not None:
            expands = list(expands)
            if not shared:
                raise ValueError("APG expands need shared=True (NextRec ignores use_mf_p then)")
            if len(expands) != len(dims):
                raise ValueError(f"APG has {len(dims)} layers but {len(expands)} expands")
        for what, values in (
            ("in_dim", [in_dim]),
            ("cond_dim", [cond_dim]),
            ("dims", dims),
            ("ranks", ranks),
            ("expands", expands or []),
        ):
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise ValueError(f"APG {what} must be positive integers, got {values}")
        for what, value, allowed in (
            ("inner", inner, _POINTWISE),
            ("generate", generate, _POINTWISE),
            ("activation", activation, tuple(ACTIVATIONS)),
        ):
            if value not in allowed:
                raise ValueError(
                    f"unknown APG {what} {value!r}; expected one of {', '.join(allowed)}"
                )
        self.in_dim, self.dims, self.cond_dim = in_dim, tuple(dims), cond_dim
        self.layers = nn.ModuleList(
            _APGLayer(
                n,
                m,
                cond_dim,
                k,
                None if expands is None else expands[i],
                shared,
                inner,
                generate,
                activation,
            )
            for i, (n, m, k) in enumerate(zip([in_dim, *dims[:-1]], dims, ranks))
        )

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """``(x [B, in_dim], cond [B, C]) -> [B, dims[-1]]``."""
        cond1 = torch.cat([cond, cond.new_ones(cond.shape[0], 1)], 1)  # [c, 1]
        for layer in self.layers:
            x = layer(x, cond, cond1)
        return x
