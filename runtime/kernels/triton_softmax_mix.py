"""Triton kernels for the fused gate: softmax (temperature, top-k) and mixture in one pass.

``out[b, t] = sum_e w[b, t, e] * experts[b, e]`` with
``w[b, t] = softmax(logits[b, t] / temperature)`` over the ``top`` largest
logits (ties: the lower expert index wins; ``top = 0`` keeps all). The
weights never reach memory: the forward computes them in registers, the
backward recomputes them from the logits. Same tiling and accumulation
rules as :mod:`.triton_gate`.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from .triton_gate import _acc_type, _blocks, _check_mix, _constant


@triton.jit
def _softmax_tile(
    logits_ptr,  # [B, T, E] gate logits, any strides
    rows,  # [BLOCK_B] int64 row indices
    gates,  # [BLOCK_T] gate indices
    slots,  # [BLOCK_E] expert indices
    B,
    T,
    E,  # sizes
    stride_lb,
    stride_lt,
    stride_le,  # logits strides
    inv_temperature,  # 1 / temperature, in ACC
    TOP: tl.constexpr,  # experts kept per gate; 0 keeps all
    ACC: tl.constexpr,  # compute type
):
    """The gate weights of a tile, ``[BLOCK_B, BLOCK_T, BLOCK_E]``; 0 outside ``E``."""
    ok = (rows < B)[:, None, None] & (gates < T)[None, :, None] & (slots < E)[None, None, :]
    ptrs = (
        logits_ptr
        + rows[:, None, None] * stride_lb
        + gates[None, :, None] * stride_lt
        + slots[None, None, :] * stride_le
    )
    logits = tl.load(ptrs, mask=ok, other=0.0).to(ACC)
    logits = tl.where((slots < E)[None, None, :], logits, float("-inf"))
    if TOP > 0:
        # rank of expert i = how many experts j beat it: larger, or equal with a lower index
        mine = logits[:, :, :, None]
        theirs = logits[:, :, None, :]
        lower = slots[None, None, None, :] < slots[None, None, :, None]
        beats = (theirs > mine) | ((theirs == mine) & lower)
        rank = tl.sum(beats.to(tl.int32), axis=3)
        logits = tl.where(rank < TOP, logits, float("-inf"))
    largest = tl.max(logits, axis=2)
    p = tl.exp((logits - largest[:, :, None]) * inv_temperature)
    return p / tl.sum(p, axis=2)[:, :, None]


@triton.jit
def _softmax_mix_fwd_kernel(
    logits_ptr,  # [B, T, E] gate logits, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    out_ptr,  # [B, T, D] output, contiguous
    inv_temperature_ptr,  # [1] 1 / temperature, in ACC
    B,
    T,
    E,
    D,  # sizes
    stride_lb,
    stride_lt,
    stride_le,  # logits strides
    stride_xb,
    stride_xe,
    stride_xd,  # experts strides
    TOP: tl.constexpr,  # experts kept per gate; 0 keeps all
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
    row_ok, col_ok = rows < B, cols < D
    inv_temperature = tl.load(inv_temperature_ptr)
    weights = _softmax_tile(
        logits_ptr, rows, gates, slots, B, T, E, stride_lb, stride_lt, stride_le, inv_temperature, TOP, ACC
    )
    x_mask = row_ok[:, None] & col_ok[None, :]
    acc = tl.zeros((BLOCK_B, BLOCK_T, BLOCK_D), dtype=ACC)
    for e in range(E):
        w = tl.sum(tl.where(slots[None, None, :] == e, weights, 0.0), axis=2)  # [BB, BT]: column e
        x_ptrs = experts_ptr + rows[:, None] * stride_xb + e * stride_xe + cols[None, :] * stride_xd
        x = tl.load(x_ptrs, mask=x_mask, other=0.0).to(ACC)  # [BB, BD]
        acc += w[:, :, None] * x[:, None, :]
    out_ptrs = out_ptr + rows[:, None, None] * (T * D) + gates[None, :, None] * D + cols[None, None, :]
    out_mask = row_ok[:, None, None] & (gates < T)[None, :, None] & col_ok[None, None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _softmax_mix_bwd_kernel(
    grad_ptr,  # [B, T, D] gradient of the output, any strides
    logits_ptr,  # [B, T, E] gate logits, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    grad_l_ptr,  # [B, T, E] gradient of the logits, contiguous
    grad_x_ptr,  # [B, E, D] gradient of the experts, contiguous
    inv_temperature_ptr,  # [1] 1 / temperature, in ACC
    B,
    T,
    E,
    D,  # sizes
    stride_gb,
    stride_gt,
    stride_gd,  # grad strides
    stride_lb,
    stride_lt,
    stride_le,  # logits strides
    stride_xb,
    stride_xe,
    stride_xd,  # experts strides
    TOP: tl.constexpr,  # experts kept per gate; 0 keeps all
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
    inv_temperature = tl.load(inv_temperature_ptr)
    weights = _softmax_tile(
        logits_ptr, rows, gates, slots, B, T, E, stride_lb, stride_lt, stride_le, inv_temperature, TOP, ACC
    )
    grad_w = tl.zeros((BLOCK_B, BLOCK_T, BLOCK_E), dtype=ACC)
    g_rows = row_ok[:, None, None] & gate_ok[None, :, None]
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        col_ok = cols < D
        g_ptrs = (
            grad_ptr
            + rows[:, None, None] * stride_gb
            + gates[None, :, None] * stride_gt
            + cols[None, None, :] * stride_gd
        )
        g = tl.load(g_ptrs, mask=g_rows & col_ok[None, None, :], other=0.0).to(ACC)  # [BB, BT, BD]
        x_mask = row_ok[:, None] & col_ok[None, :]
        for e in range(E):
            w = tl.sum(tl.where(slots[None, None, :] == e, weights, 0.0), axis=2)  # [BB, BT]
            x_ptrs = experts_ptr + rows[:, None] * stride_xb + e * stride_xe + cols[None, :] * stride_xd
            x = tl.load(x_ptrs, mask=x_mask, other=0.0).to(ACC)  # [BB, BD]
            grad_x = tl.sum(w[:, :, None] * g, axis=1)  # [BB, BD]
            gx_ptrs = grad_x_ptr + rows[:, None] * (E * D) + e * D + cols[None, :]
            tl.store(gx_ptrs, grad_x.to(grad_x_ptr.dtype.element_ty), mask=x_mask)
            part = tl.sum(g * x[:, None, :], axis=2)  # [BB, BT]
            grad_w += tl.where(slots[None, None, :] == e, part[:, :, None], 0.0)
    # softmax backward; dropped (top-k) and padded experts have w = 0, so no gradient
    centred = grad_w - tl.sum(weights * grad_w, axis=2)[:, :, None]
    grad_l = weights * centred * inv_temperature
    gl_ptrs = grad_l_ptr + rows[:, None, None] * (T * E) + gates[None, :, None] * E + slots[None, None, :]
    tl.store(gl_ptrs, grad_l.to(grad_l_ptr.dtype.element_ty), mask=g_rows & (slots < E)[None, None, :])


def _sizes(logits: Tensor, experts: Tensor) -> tuple[int, int, int, int, int, int]:
    """``(B, T, E, D, BLOCK_T, BLOCK_E)``."""
    _check_mix(logits, experts)
    (batch, gates, num_experts), width = logits.shape, experts.shape[2]
    return batch, gates, num_experts, width, triton.next_power_of_2(gates), triton.next_power_of_2(num_experts)


def softmax_mix_forward(logits: Tensor, experts: Tensor, temperature: float, top: int) -> Tensor:
    """Launch the fused forward: ``[B, T, E], [B, E, D] -> [B, T, D]`` (contiguous)."""
    batch, gates, num_experts, width, _, block_e = _sizes(logits, experts)
    out = experts.new_empty((batch, gates, width))
    if out.numel() == 0:
        return out.zero_()
    block_b, block_t, block_d = _blocks(gates, width)
    grid = (triton.cdiv(batch, block_b), triton.cdiv(width, block_d))
    _softmax_mix_fwd_kernel[grid](
        logits, experts, out, _constant(1.0 / temperature, experts), batch, gates, num_experts, width,
        *logits.stride(), *experts.stride(),
        TOP=top if 0 < top < num_experts else 0, BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_E=block_e,
        BLOCK_D=block_d, ACC=_acc_type(experts.dtype),
    )  # fmt: skip
    return out


def softmax_mix_backward(
    grad: Tensor, logits: Tensor, experts: Tensor, temperature: float, top: int
) -> tuple[Tensor, Tensor]:
    """Launch the fused backward: ``(grad_logits [B, T, E], grad_experts [B, E, D])``."""
    batch, gates, num_experts, width, block_t, block_e = _sizes(logits, experts)
    grad_l, grad_x = logits.new_empty(logits.shape), experts.new_empty(experts.shape)
    if batch == 0 or width == 0:
        return grad_l.zero_(), grad_x.zero_()
    grad = grad.to(experts.dtype)
    block_d = min(64, triton.next_power_of_2(width))
    block_b = max(1, min(32, 2048 // (block_t * max(block_d, block_e))))
    _softmax_mix_bwd_kernel[(triton.cdiv(batch, block_b),)](
        grad, logits, experts, grad_l, grad_x, _constant(1.0 / temperature, experts),
        batch, gates, num_experts, width, *grad.stride(), *logits.stride(), *experts.stride(),
        TOP=top if 0 < top < num_experts else 0, BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_E=block_e,
        BLOCK_D=block_d, ACC=_acc_type(experts.dtype),
    )  # fmt: skip
    return grad_l, grad_x
