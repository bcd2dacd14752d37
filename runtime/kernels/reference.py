"""Plain-PyTorch gate kernels: the CPU path and the oracle for the Triton kernels.

Shapes: B batch, T gates, E experts, D expert width.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gate_weights(logits: Tensor, temperature: float = 1.0, top: int | None = None) -> Tensor:
    """Softmax of ``logits / temperature`` over the last dim, optionally top-k.

    With ``top = K`` only the K largest logits keep weight, renormalised to
    sum to 1. Ties are broken by position: among equal logits the lower
    index is kept (a stable descending sort).

    Args:
        logits: ``[..., E]``, may hold ``-inf`` for slots that must get no
            weight (at least one entry per row must be finite).
        temperature: divides the logits; > 0.
        top: number of experts kept, or ``None`` for all.

    Returns:
        ``[..., E]`` weights, each row summing to 1.
    """
    scaled = logits / temperature if temperature != 1.0 else logits
    if top is not None and top < logits.shape[-1]:
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order[..., :top], True)
        scaled = scaled.masked_fill(~keep, float("-inf"))
    return torch.softmax(scaled, dim=-1)


def gate_mix(weights: Tensor, experts: Tensor) -> Tensor:
    """Each gate's weighted sum of the experts.

    Args:
        weights: ``[B, T, E]``.
        experts: ``[B, E, D]``.

    Returns:
        ``[B, T, D]``: ``out[b, t] = sum_e weights[b, t, e] * experts[b, e]``.

    One gate (``T = 1``) is computed as a broadcast product summed over E: on
    CPU, ``torch.bmm`` over B matrices of one row and few columns is slower,
    forward and backward (benchmarks/README.md, "Training speed").
    """
    if weights.shape[1] != 1:
        return torch.bmm(weights, experts)
    return (weights.transpose(1, 2) * experts).sum(
        1, keepdim=True
    )  # [B, E, 1] * [B, E, D] -> [B, 1, D]


def gate_mix_backward(grad: Tensor, weights: Tensor, experts: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`gate_mix`.

    Args:
        grad: ``[B, T, D]``, the gradient of the output.
        weights: ``[B, T, E]``.
        experts: ``[B, E, D]``.

    Returns:
        ``(grad_weights [B, T, E], grad_experts [B, E, D])``.

    One gate (``T = 1``): broadcast products instead of ``torch.bmm``, as in :func:`gate_mix`.
    """
    if weights.shape[1] != 1:
        return torch.bmm(grad, experts.transpose(1, 2)), torch.bmm(weights.transpose(1, 2), grad)
    grad_weights = (grad * experts).sum(-1).unsqueeze(1)  # [B, 1, D] * [B, E, D] summed over D
    grad_experts = weights.transpose(1, 2) * grad  # [B, E, 1] * [B, 1, D]
    return grad_weights, grad_experts


def gate_softmax_mix(
    logits: Tensor, experts: Tensor, temperature: float = 1.0, top: int | None = None
) -> Tensor:
    """:func:`gate_weights` then :func:`gate_mix`: ``[B, T, E], [B, E, D] -> [B, T, D]``."""
    return gate_mix(gate_weights(logits, temperature, top), experts)


def gate_softmax_mix_backward(
    grad: Tensor, logits: Tensor, experts: Tensor, temperature: float = 1.0, top: int | None = None
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`gate_softmax_mix`: ``(grad_logits [B, T, E], grad_experts [B, E, D])``.

    The weights are recomputed from the logits. With ``w`` the weights and
    ``gw`` their gradient, ``grad_logits = w * (gw - sum_e w * gw) / temperature``;
    logits dropped by top-k have ``w = 0`` and get no gradient.
    """
    weights = gate_weights(logits, temperature, top)
    grad_weights, grad_experts = gate_mix_backward(grad, weights, experts)
    centred = grad_weights - (weights * grad_weights).sum(-1, keepdim=True)
    return weights * centred / temperature, grad_experts


def scale_gate(h: Tensor, z: Tensor, scale: float) -> Tensor:
    """Elementwise ``scale * sigmoid(z) * h``, of one shape (``[B, D]`` or ``[B, E, D]``).

    ``ScaleGate``'s product (the condition gates of POSO and PEPNet, issue
    10); it runs this under autograd on CPU in eager mode.
    """
    return scale * torch.sigmoid(z) * h


def scale_gate_backward(grad: Tensor, h: Tensor, z: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`scale_gate`: ``(grad_h, grad_z)``, each of ``h``'s shape.

    With ``s = sigmoid(z)``: ``d/dh = scale * s`` and ``d/dz = scale * h * s * (1 - s)``.
    """
    s = torch.sigmoid(z)
    grad_h = grad * scale * s
    grad_z = grad * scale * h * s * (1 - s)
    return grad_h, grad_z
