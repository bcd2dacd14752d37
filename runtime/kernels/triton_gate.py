"""Triton kernels for the gate mixture and the scale gate, with their launchers.

The mixture is memory-bound (about 1 FLOP per byte), so each kernel reads
its inputs once and writes each output once: the forward reads a tile of
experts ``[BLOCK_B, D-block]`` per expert and adds it, weighted, into all T
gates' accumulators; the backward reads ``grad_out`` and the experts once
and produces both gradients. Each program loads its weights as one
``[BLOCK_B, BLOCK_T, BLOCK_E]`` tile; the loops over D are those of
:mod:`.triton_common`, shared with the fused kernels of
:mod:`.triton_softmax_mix`. Inputs may be strided; outputs are contiguous.

This module imports triton; :mod:`.ops` loads it only when a kernel runs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (
    _acc_type,
    _backward_blocks,
    _blocks,
    _check_mix,
    _constant,
    _mix_backward_tile,
    _mix_forward_tile,
    _store_gate_tile,
)


@triton.jit
def _load_weights_tile(
    weights_ptr,  # [B, T, E] gate weights, any strides
    rows,  # [BLOCK_B] int64 row indices
    gates,  # [BLOCK_T] gate indices
    slots,  # [BLOCK_E] expert indices
    B,  # batch size
    T,  # gates
    E,  # experts
    stride_wb,  # weights stride over B
    stride_wt,  # weights stride over T
    stride_we,  # weights stride over E
    ACC: tl.constexpr,  # compute type
):
    """The gate weights of a tile, ``[BLOCK_B, BLOCK_T, BLOCK_E]`` in ``ACC``.

    0 outside ``B, T, E``.
    """
    ok = (rows < B)[:, None, None] & (gates < T)[None, :, None] & (slots < E)[None, None, :]
    ptrs = (
        weights_ptr
        + rows[:, None, None] * stride_wb
        + gates[None, :, None] * stride_wt
        + slots[None, None, :] * stride_we
    )
    return tl.load(ptrs, mask=ok, other=0.0).to(ACC)


@triton.jit
def _gate_mix_fwd_kernel(
    weights_ptr,  # [B, T, E] gate weights, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    out_ptr,  # [B, T, D] output, contiguous
    B,  # batch size
    T,  # gates
    E,  # experts
    D,  # expert width
    stride_wb,  # weights stride over B
    stride_wt,  # weights stride over T
    stride_we,  # weights stride over E
    stride_xb,  # experts stride over B
    stride_xe,  # experts stride over E
    stride_xd,  # experts stride over D
    BLOCK_B: tl.constexpr,  # rows of the batch per program
    BLOCK_T: tl.constexpr,  # T rounded up to a power of two
    BLOCK_E: tl.constexpr,  # E rounded up to a power of two
    BLOCK_D: tl.constexpr,  # columns of D per program
    ACC: tl.constexpr,  # accumulator type
):
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    gates = tl.arange(0, BLOCK_T)
    slots = tl.arange(0, BLOCK_E)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    weights = _load_weights_tile(
        weights_ptr, rows, gates, slots, B, T, E, stride_wb, stride_wt, stride_we, ACC
    )
    _mix_forward_tile(
        weights, experts_ptr, out_ptr, rows, gates, slots, cols, B, T, E, D,
        stride_xb, stride_xe, stride_xd, BLOCK_B, BLOCK_T, BLOCK_D, ACC,
    )  # fmt: skip


@triton.jit
def _gate_mix_bwd_kernel(
    grad_ptr,  # [B, T, D] gradient of the output, any strides
    weights_ptr,  # [B, T, E] gate weights, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    grad_w_ptr,  # [B, T, E] gradient of the weights, contiguous
    grad_x_ptr,  # [B, E, D] gradient of the experts, contiguous
    B,  # batch size
    T,  # gates
    E,  # experts
    D,  # expert width
    stride_gb,  # grad stride over B
    stride_gt,  # grad stride over T
    stride_gd,  # grad stride over D
    stride_wb,  # weights stride over B
    stride_wt,  # weights stride over T
    stride_we,  # weights stride over E
    stride_xb,  # experts stride over B
    stride_xe,  # experts stride over E
    stride_xd,  # experts stride over D
    BLOCK_B: tl.constexpr,  # rows of the batch per program
    BLOCK_T: tl.constexpr,  # T rounded up to a power of two
    BLOCK_E: tl.constexpr,  # E rounded up to a power of two
    BLOCK_D: tl.constexpr,  # columns of D per step of the loop over D
    ACC: tl.constexpr,  # accumulator type
):
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    gates = tl.arange(0, BLOCK_T)
    slots = tl.arange(0, BLOCK_E)
    weights = _load_weights_tile(
        weights_ptr, rows, gates, slots, B, T, E, stride_wb, stride_wt, stride_we, ACC
    )
    grad_w = _mix_backward_tile(
        weights, grad_ptr, experts_ptr, grad_x_ptr, rows, gates, slots, B, T, E, D,
        stride_gb, stride_gt, stride_gd, stride_xb, stride_xe, stride_xd,
        BLOCK_B, BLOCK_T, BLOCK_E, BLOCK_D, ACC,
    )  # fmt: skip
    _store_gate_tile(grad_w_ptr, grad_w, rows, gates, slots, B, T, E)


def gate_mix_forward(weights: Tensor, experts: Tensor) -> Tensor:
    """Launch the forward kernel: ``[B, T, E], [B, E, D] -> [B, T, D]`` (contiguous)."""
    _check_mix(weights, experts)
    (batch, gates, num_experts), width = weights.shape, experts.shape[2]
    out = torch.empty((batch, gates, width), dtype=experts.dtype, device=experts.device)
    if out.numel() == 0:
        return out.zero_()
    block_b, block_t, block_d = _blocks(gates, width)
    grid = (triton.cdiv(batch, block_b), triton.cdiv(width, block_d))
    _gate_mix_fwd_kernel[grid](
        weights, experts, out, batch, gates, num_experts, width,
        *weights.stride(), *experts.stride(),
        BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_E=triton.next_power_of_2(num_experts),
        BLOCK_D=block_d, ACC=_acc_type(experts.dtype),
    )  # fmt: skip
    return out


def gate_mix_backward(grad: Tensor, weights: Tensor, experts: Tensor) -> tuple[Tensor, Tensor]:
    """Launch the backward kernel: ``(grad_weights [B, T, E], grad_experts [B, E, D])``."""
    _check_mix(weights, experts)
    (batch, gates, num_experts), width = weights.shape, experts.shape[2]
    grad_w = weights.new_empty(weights.shape)
    grad_x = experts.new_empty(experts.shape)
    if batch == 0 or width == 0:
        return grad_w.zero_(), grad_x.zero_()
    grad = grad.to(experts.dtype)
    block_b, block_t, block_e, block_d = _backward_blocks(gates, num_experts, width)
    _gate_mix_bwd_kernel[(triton.cdiv(batch, block_b),)](
        grad, weights, experts, grad_w, grad_x, batch, gates, num_experts, width,
        *grad.stride(), *weights.stride(), *experts.stride(),
        BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_E=block_e, BLOCK_D=block_d,
        ACC=_acc_type(experts.dtype),
    )  # fmt: skip
    return grad_w, grad_x


# --- scale gate: out = scale * sigmoid(z) * h, elementwise -------------------------
# Ships ahead of its users: the scale gates of POSO and PEPNet (issue 10) will call it.


@triton.jit
def _scale_gate_fwd_kernel(
    h_ptr,  # [N] values, contiguous
    z_ptr,  # [N] gate logits, contiguous
    out_ptr,  # [N] output, contiguous
    scale_ptr,  # [1] the constant C, in the compute type
    N,  # number of elements
    BLOCK: tl.constexpr,  # elements per program
    ACC: tl.constexpr,  # compute type
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offsets < N
    scale = tl.load(scale_ptr)
    h = tl.load(h_ptr + offsets, mask=ok, other=0.0).to(ACC)
    z = tl.load(z_ptr + offsets, mask=ok, other=0.0).to(ACC)
    out = scale * tl.sigmoid(z) * h
    tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _scale_gate_bwd_kernel(
    grad_ptr,  # [N] gradient of the output, contiguous
    h_ptr,  # [N] values, contiguous
    z_ptr,  # [N] gate logits, contiguous
    grad_h_ptr,  # [N] gradient of h, contiguous
    grad_z_ptr,  # [N] gradient of z, contiguous
    scale_ptr,  # [1] the constant C, in the compute type
    N,  # number of elements
    BLOCK: tl.constexpr,  # elements per program
    ACC: tl.constexpr,  # compute type
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offsets < N
    scale = tl.load(scale_ptr)
    g = tl.load(grad_ptr + offsets, mask=ok, other=0.0).to(ACC)
    h = tl.load(h_ptr + offsets, mask=ok, other=0.0).to(ACC)
    z = tl.load(z_ptr + offsets, mask=ok, other=0.0).to(ACC)
    s = tl.sigmoid(z)
    g_scaled = g * scale * s
    tl.store(grad_h_ptr + offsets, g_scaled.to(grad_h_ptr.dtype.element_ty), mask=ok)
    tl.store(
        grad_z_ptr + offsets, (g_scaled * h * (1.0 - s)).to(grad_z_ptr.dtype.element_ty), mask=ok
    )


_SCALE_BLOCK = 1024


def scale_gate_forward(h: Tensor, z: Tensor, scale: float) -> Tensor:
    """Launch the forward kernel: ``scale * sigmoid(z) * h``, same shape as ``h``.

    For the scale gates of POSO and PEPNet (issue 10), which will use it; no construct does yet.
    """
    h, z = h.contiguous(), z.contiguous()
    out = torch.empty_like(h)
    if h.numel():
        grid = (triton.cdiv(h.numel(), _SCALE_BLOCK),)
        c = _constant(scale, h)
        _scale_gate_fwd_kernel[grid](
            h, z, out, c, h.numel(), BLOCK=_SCALE_BLOCK, ACC=_acc_type(h.dtype)
        )
    return out


def scale_gate_backward(grad: Tensor, h: Tensor, z: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Launch the backward kernel: ``(grad_h, grad_z)``."""
    grad, h, z = grad.contiguous().to(h.dtype), h.contiguous(), z.contiguous()
    grad_h, grad_z = torch.empty_like(h), torch.empty_like(z)
    if h.numel():
        grid = (triton.cdiv(h.numel(), _SCALE_BLOCK),)
        c = _constant(scale, h)
        _scale_gate_bwd_kernel[grid](
            grad, h, z, grad_h, grad_z, c, h.numel(), BLOCK=_SCALE_BLOCK, ACC=_acc_type(h.dtype)
        )
    return grad_h, grad_z
