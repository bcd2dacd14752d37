"""Cross networks: DCN's (Wang et al., ADKDD 2017) and DCNv2's (Wang et al., WWW 2021).

Shapes: B batch, D the input width (a cross keeps it), L layers, E networks
of a pool, K low-rank experts of a ``mix`` layer, r their rank.

Each layer ``l`` maps ``x_l`` to ``x_{l+1} = x_0 * f_l(x_l) + x_l`` with the
bias ``b_l`` added inside the product (``x_0 * (f_l(x_l) + b_l)``) or outside
it (``x_0 * f_l(x_l) + b_l``):

- ``vector`` (DCN): ``f_l(x) = x . w_l``, a scalar per row; the paper adds
  the bias outside.
- ``matrix`` (DCNv2): ``f_l(x) = x W_l^T``; the paper adds the bias inside,
  NextRec 0.6.14's ``CrossNetV2`` outside.
- ``mix`` (DCNv2's mixture of low-rank experts): ``f_l(x) = sum_k g_k(x)
  tanh(tanh(x V_lk) C_lk) U_lk^T``, ``g = softmax(x G^T)`` with one gating
  matrix ``G [K, D]`` for every layer; bias inside. ``C`` multiplies the row
  vector from the right, as in NextRec 0.6.14 (the paper writes ``C v``: the
  transpose, the same family of functions).

A pool (``num_experts=E``) holds E independent networks that read one input;
its output is ``[B, E, D]``, computed with one batched product per layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["Cross", "FORMS"]

FORMS = ("vector", "matrix", "mix")
_BIASES = ("inside", "outside")


class Cross(nn.Module):
    """A cross network of ``layers`` layers over width ``dim``; see the module's docstring.

    Parameters (a pool adds ``E`` after ``L``; ``gate`` has it first):
    ``weight`` ``[L, D]`` (vector) or ``[L, D, D]`` (matrix, as ``nn.Linear``'s
    out x in); for ``mix``: ``u``, ``v`` ``[L, K, D, r]``, ``c`` ``[L, K, r, r]``,
    ``gate`` ``[K, D]``; and ``bias`` ``[L, D]``.
    """

    def __init__(
        self,
        dim: int,
        layers: int,
        form: str = "vector",
        bias: str | None = None,
        rank: int = 32,
        experts: int = 4,
        num_experts: int | None = None,
    ) -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
        bias = bias or ("outside" if form == "vector" else "inside")
        if bias not in _BIASES:
            raise ValueError(f"bias must be inside or outside, not {bias!r}")
        self.dim, self.layers, self.form, self.bias_at = dim, layers, form, bias
        self.rank, self.experts, self.num_experts = rank, experts, num_experts
        pool = () if num_experts is None else (num_experts,)
        if form == "vector":
            self.weight = nn.Parameter(torch.empty(layers, *pool, dim))
        elif form == "matrix":
            self.weight = nn.Parameter(torch.empty(layers, *pool, dim, dim))
        else:
            self.u = nn.Parameter(torch.empty(layers, *pool, experts, dim, rank))
            self.v = nn.Parameter(torch.empty(layers, *pool, experts, dim, rank))
            self.c = nn.Parameter(torch.empty(layers, *pool, experts, rank, rank))
            self.gate = nn.Parameter(torch.empty(*pool, experts, dim))
        self.bias = nn.Parameter(torch.empty(layers, *pool, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As NextRec draws them: weights and gates as ``nn.Linear`` (uniform, bound
        ``1/sqrt(D)``), ``u``, ``v``, ``c`` Xavier-normal over ``[K, rows, r]``, biases zero."""
        bound = 1 / math.sqrt(self.dim)
        k, r, d = self.experts, self.rank, self.dim
        with torch.no_grad():
            if self.form == "mix":
                self.u.normal_(0.0, math.sqrt(2.0 / (r * (d + k))))
                self.v.normal_(0.0, math.sqrt(2.0 / (r * (d + k))))
                self.c.normal_(0.0, math.sqrt(2.0 / (r * (r + k))))
                self.gate.uniform_(-bound, bound)
            else:
                self.weight.uniform_(-bound, bound)
            self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, D]`` -> ``[B, D]``, or ``[B, E, D]`` for a pool."""
        pooled = self.num_experts is not None
        x0 = x.unsqueeze(0)  # [1, B, D]: the networks' axis first, so products batch over it
        h = x0
        for layer in range(self.layers):
            bias = self.bias[layer].view(-1, 1, self.dim)  # [E or 1, 1, D]
            if self.form == "mix":
                f = self._mix(h, layer)
            elif self.form == "vector":
                w = self.weight[layer].view(-1, self.dim, 1)  # [E or 1, D, 1]
                f = torch.matmul(h, w)  # [E, B, 1]
            else:
                w = self.weight[layer].view(-1, self.dim, self.dim)
                f = torch.matmul(h, w.transpose(1, 2))  # [E, B, D]
            if self.bias_at == "inside":
                h = x0 * (f + bias) + h
            else:
                h = x0 * f + bias + h
        if pooled:
            return h.expand(self.num_experts or 1, -1, -1).transpose(0, 1)
        return h.squeeze(0)

    def _mix(self, h: Tensor, layer: int) -> Tensor:
        """``sum_k g_k tanh(tanh(h V_k) C_k) U_k^T`` for ``h`` ``[E or 1, B, D]``: ``[E, B, D]``.

        The K experts' projections are one product each: ``V`` as ``[D, K r]``,
        ``C`` batched over (E, K), and ``U`` as ``[K r, D]`` applied to the
        gate-weighted ``[B, K r]`` (the softmax weights sum to 1, so the bias
        inside the product is added once outside the sum).
        """
        k, r, d = self.experts, self.rank, self.dim
        u = self.u[layer].reshape(-1, k, d, r)  # [E, K, D, r]
        v = self.v[layer].reshape(-1, k, d, r)
        c = self.c[layer].reshape(-1, k, r, r)
        e = u.shape[0]
        gate = self.gate.reshape(-1, k, d)  # [E, K, D]
        g = torch.matmul(h, gate.transpose(1, 2)).softmax(-1)  # [E, B, K]
        a = torch.tanh(torch.matmul(h, v.permute(0, 2, 1, 3).reshape(e, d, k * r)))  # [E, B, Kr]
        batch = a.shape[1]
        a = a.view(e, batch, k, r).transpose(1, 2)  # [E, K, B, r]
        a = torch.tanh(torch.matmul(a, c))  # [E, K, B, r]
        a = a * g.transpose(1, 2).unsqueeze(-1)  # weighted by the gate
        a = a.transpose(1, 2).reshape(e, batch, k * r)
        return torch.matmul(a, u.transpose(2, 3).reshape(e, k * r, d))  # [E, B, D]

    def extra_repr(self) -> str:
        text = f"{self.dim}, layers={self.layers}, form={self.form!r}, bias={self.bias_at!r}"
        if self.form == "mix":
            text += f", rank={self.rank}, experts={self.experts}"
        if self.num_experts is not None:
            text += f", num_experts={self.num_experts}"
        return text
