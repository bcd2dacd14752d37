"""Triton kernels for the gate mixture and the scale gate, with their launchers.

The mixture is memory-bound (about 1 FLOP per byte), so each kernel reads
its inputs once and writes each output once: the forward reads a tile of
experts ``[BLOCK_B, D-block]`` per expert and adds it, weighted, into all T
gates' accumulators; the backward reads ``grad_out`` and the experts once
and produces both gradients. E is small (4 to 16), so the sums over experts
are unrolled broadcast-multiply-adds, not ``tl.dot`` (which wants K >= 16).
Accumulation is in float32, or float64 for float64 inputs (for gradcheck).
Inputs may be strided; outputs are contiguous.

This module imports triton; :mod:`.ops` loads it only when a kernel runs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


def _acc_type(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _constant(value: float, like: Tensor) -> Tensor:
    """``value`` as a one-element tensor in the compute type (a float argument would round to float32)."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.full((1,), value, dtype=dtype, device=like.device)


@triton.jit
def _gate_mix_fwd_kernel(
    weights_ptr,  # [B, T, E] gate weights, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    out_ptr,  # [B, T, D] output, contiguous
    B,
    T,
    E,
    D,  # sizes
    stride_wb,
    stride_wt,
    stride_we,  # weights strides
    stride_xb,
    stride_xe,
    stride_xd,  # experts strides
    BLOCK_B: tl.constexpr,  # rows of the batch per program
    BLOCK_T: tl.constexpr,  # T rounded up to a power of two
    BLOCK_D: tl.constexpr,  # columns of D per program
    ACC: tl.constexpr,  # accumulator type
):
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    gates = tl.arange(0, BLOCK_T)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok, gate_ok, col_ok = rows < B, gates < T, cols < D
    w_mask = row_ok[:, None] & gate_ok[None, :]
    x_mask = row_ok[:, None] & col_ok[None, :]
    acc = tl.zeros((BLOCK_B, BLOCK_T, BLOCK_D), dtype=ACC)
    for e in range(E):
        w_ptrs = weights_ptr + rows[:, None] * stride_wb + gates[None, :] * stride_wt + e * stride_we
        x_ptrs = experts_ptr + rows[:, None] * stride_xb + e * stride_xe + cols[None, :] * stride_xd
        w = tl.load(w_ptrs, mask=w_mask, other=0.0).to(ACC)  # [BLOCK_B, BLOCK_T]
        x = tl.load(x_ptrs, mask=x_mask, other=0.0).to(ACC)  # [BLOCK_B, BLOCK_D]
        acc += w[:, :, None] * x[:, None, :]
    out_ptrs = out_ptr + rows[:, None, None] * (T * D) + gates[None, :, None] * D + cols[None, None, :]
    out_mask = w_mask[:, :, None] & col_ok[None, None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _gate_mix_bwd_kernel(
    grad_ptr,  # [B, T, D] gradient of the output, any strides
    weights_ptr,  # [B, T, E] gate weights, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    grad_w_ptr,  # [B, T, E] gradient of the weights, contiguous
    grad_x_ptr,  # [B, E, D] gradient of the experts, contiguous
    B,
    T,
    E,
    D,  # sizes
    stride_gb,
    stride_gt,
    stride_gd,  # grad strides
    stride_wb,
    stride_wt,
    stride_we,  # weights strides
    stride_xb,
    stride_xe,
    stride_xd,  # experts strides
    BLOCK_B: tl.constexpr,  # rows of the batch per program
    BLOCK_T: tl.constexpr,  # T rounded up to a power of two
    BLOCK_E: tl.constexpr,  # E rounded up to a power of two
    BLOCK_D: tl.constexpr,  # columns of D per step of the loop over D
    ACC: tl.constexpr,  # accumulator type
):
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    gates = tl.arange(0, BLOCK_T)
    slots = tl.arange(0, BLOCK_E)
    row_ok, gate_ok = rows < B, gates < T
    w_mask = row_ok[:, None] & gate_ok[None, :]
    grad_w = tl.zeros((BLOCK_B, BLOCK_T, BLOCK_E), dtype=ACC)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        col_ok = cols < D
        g_ptrs = (
            grad_ptr
            + rows[:, None, None] * stride_gb
            + gates[None, :, None] * stride_gt
            + cols[None, None, :] * stride_gd
        )
        g = tl.load(g_ptrs, mask=w_mask[:, :, None] & col_ok[None, None, :], other=0.0).to(ACC)  # [BB, BT, BD]
        x_mask = row_ok[:, None] & col_ok[None, :]
        for e in range(E):
            w_ptrs = weights_ptr + rows[:, None] * stride_wb + gates[None, :] * stride_wt + e * stride_we
            x_ptrs = experts_ptr + rows[:, None] * stride_xb + e * stride_xe + cols[None, :] * stride_xd
            w = tl.load(w_ptrs, mask=w_mask, other=0.0).to(ACC)  # [BB, BT]
            x = tl.load(x_ptrs, mask=x_mask, other=0.0).to(ACC)  # [BB, BD]
            grad_x = tl.sum(w[:, :, None] * g, axis=1)  # [BB, BD]: sum over gates
            gx_ptrs = grad_x_ptr + rows[:, None] * (E * D) + e * D + cols[None, :]
            tl.store(gx_ptrs, grad_x.to(grad_x_ptr.dtype.element_ty), mask=x_mask)
            part = tl.sum(g * x[:, None, :], axis=2)  # [BB, BT]: this D-block's share of d out / d w[:, :, e]
            grad_w += tl.where(slots[None, None, :] == e, part[:, :, None], 0.0)
    gw_ptrs = grad_w_ptr + rows[:, None, None] * (T * E) + gates[None, :, None] * E + slots[None, None, :]
    gw_mask = w_mask[:, :, None] & (slots < E)[None, None, :]
    tl.store(gw_ptrs, grad_w.to(grad_w_ptr.dtype.element_ty), mask=gw_mask)


def _blocks(gates: int, width: int) -> tuple[int, int, int]:
    """``(BLOCK_B, BLOCK_T, BLOCK_D)``: about 4096 accumulator elements per program."""
    block_t = triton.next_power_of_2(gates)
    block_d = min(128, triton.next_power_of_2(width))
    block_b = max(1, min(64, 4096 // (block_t * block_d)))
    return block_b, block_t, block_d


def _check_mix(weights: Tensor, experts: Tensor) -> None:
    if weights.dim() != 3 or experts.dim() != 3 or weights.shape[2] != experts.shape[1]:
        raise ValueError(
            f"gate_mix wants [B, T, E] and [B, E, D], got {tuple(weights.shape)} and {tuple(experts.shape)}"
        )
    if weights.shape[0] != experts.shape[0] or weights.dtype != experts.dtype:
        raise ValueError("gate_mix: weights and experts differ in batch size or dtype")


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
        BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_D=block_d, ACC=_acc_type(experts.dtype),
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
    block_t, block_e = triton.next_power_of_2(gates), triton.next_power_of_2(num_experts)
    block_d = min(64, triton.next_power_of_2(width))
    block_b = max(1, min(32, 2048 // (block_t * block_d)))
    _gate_mix_bwd_kernel[(triton.cdiv(batch, block_b),)](
        grad, weights, experts, grad_w, grad_x, batch, gates, num_experts, width,
        *grad.stride(), *weights.stride(), *experts.stride(),
        BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_E=block_e, BLOCK_D=block_d, ACC=_acc_type(experts.dtype),
    )  # fmt: skip
    return grad_w, grad_x


# --- scale gate: out = scale * sigmoid(z) * h, elementwise -------------------------


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
    tl.store(grad_z_ptr + offsets, (g_scaled * h * (1.0 - s)).to(grad_z_ptr.dtype.element_ty), mask=ok)


_SCALE_BLOCK = 1024


def scale_gate_forward(h: Tensor, z: Tensor, scale: float) -> Tensor:
    """Launch the forward kernel: ``scale * sigmoid(z) * h``, same shape as ``h``."""
    h, z = h.contiguous(), z.contiguous()
    out = torch.empty_like(h)
    if h.numel():
        grid = (triton.cdiv(h.numel(), _SCALE_BLOCK),)
        c = _constant(scale, h)
        _scale_gate_fwd_kernel[grid](h, z, out, c, h.numel(), BLOCK=_SCALE_BLOCK, ACC=_acc_type(h.dtype))
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
