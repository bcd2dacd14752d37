"""Triton kernels for the fused gate: softmax (temperature, top-k) and mixture in one pass.

``out[b, t] = sum_e w[b, t, e] * experts[b, e]`` with
``w[b, t] = softmax(logits[b, t] / temperature)`` over the ``top`` largest
logits (ties: the lower expert index wins; ``top = 0`` keeps all). The
weights never reach memory: the forward computes them in registers, the
backward recomputes them from the logits. Past the weights, each kernel is
the loop over D of :mod:`.triton_common` that :mod:`.triton_gate` runs too.
"""

from __future__ import annotations

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
def _softmax_tile(
    logits_ptr,  # [B, T, E] gate logits, any strides
    rows,  # [BLOCK_B] int64 row indices
    gates,  # [BLOCK_T] gate indices
    slots,  # [BLOCK_E] expert indices
    B,  # batch size
    T,  # gates
    E,  # experts
    stride_lb,  # logits stride over B
    stride_lt,  # logits stride over T
    stride_le,  # logits stride over E
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
    B,  # batch size
    T,  # gates
    E,  # experts
    D,  # expert width
    stride_lb,  # logits stride over B
    stride_lt,  # logits stride over T
    stride_le,  # logits stride over E
    stride_xb,  # experts stride over B
    stride_xe,  # experts stride over E
    stride_xd,  # experts stride over D
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
    inv_temperature = tl.load(inv_temperature_ptr)
    weights = _softmax_tile(
        logits_ptr,
        rows,
        gates,
        slots,
        B,
        T,
        E,
        stride_lb,
        stride_lt,
        stride_le,
        inv_temperature,
        TOP,
        ACC,
    )
    _mix_forward_tile(
        weights, experts_ptr, out_ptr, rows, gates, slots, cols, B, T, E, D,
        stride_xb, stride_xe, stride_xd, BLOCK_B, BLOCK_T, BLOCK_D, ACC,
    )  # fmt: skip


@triton.jit
def _softmax_mix_bwd_kernel(
    grad_ptr,  # [B, T, D] gradient of the output, any strides
    logits_ptr,  # [B, T, E] gate logits, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    grad_l_ptr,  # [B, T, E] gradient of the logits, contiguous
    grad_x_ptr,  # [B, E, D] gradient of the experts, contiguous
    inv_temperature_ptr,  # [1] 1 / temperature, in ACC
    B,  # batch size
    T,  # gates
    E,  # experts
    D,  # expert width
    stride_gb,  # grad stride over B
    stride_gt,  # grad stride over T
    stride_gd,  # grad stride over D
    stride_lb,  # logits stride over B
    stride_lt,  # logits stride over T
    stride_le,  # logits stride over E
    stride_xb,  # experts stride over B
    stride_xe,  # experts stride over E
    stride_xd,  # experts stride over D
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
    inv_temperature = tl.load(inv_temperature_ptr)
    weights = _softmax_tile(
        logits_ptr,
        rows,
        gates,
        slots,
        B,
        T,
        E,
        stride_lb,
        stride_lt,
        stride_le,
        inv_temperature,
        TOP,
        ACC,
    )
    grad_w = _mix_backward_tile(
        weights, grad_ptr, experts_ptr, grad_x_ptr, rows, gates, slots, B, T, E, D,
        stride_gb, stride_gt, stride_gd, stride_xb, stride_xe, stride_xd,
        BLOCK_B, BLOCK_T, BLOCK_E, BLOCK_D, ACC,
    )  # fmt: skip
    # softmax backward; dropped (top-k) and padded experts have w = 0, so no gradient
    centred = grad_w - tl.sum(weights * grad_w, axis=2)[:, :, None]
    _store_gate_tile(grad_l_ptr, weights * centred * inv_temperature, rows, gates, slots, B, T, E)


def _top(top: int, num_experts: int) -> int:
    """The kernels' ``TOP``: 0 when every expert is kept."""
    return top if 0 < top < num_experts else 0


def softmax_mix_forward(logits: Tensor, experts: Tensor, temperature: float, top: int) -> Tensor:
    """Launch the fused forward: ``[B, T, E], [B, E, D] -> [B, T, D]`` (contiguous)."""
    _check_mix(logits, experts)
    (batch, gates, num_experts), width = logits.shape, experts.shape[2]
    out = experts.new_empty((batch, gates, width))
    if out.numel() == 0:
        return out.zero_()
    block_b, block_t, block_d = _blocks(gates, width)
    grid = (triton.cdiv(batch, block_b), triton.cdiv(width, block_d))
    _softmax_mix_fwd_kernel[grid](
        logits, experts, out, _constant(1.0 / temperature, experts),
        batch, gates, num_experts, width,
        *logits.stride(), *experts.stride(),
        TOP=_top(top, num_experts), BLOCK_B=block_b, BLOCK_T=block_t,
        BLOCK_E=triton.next_power_of_2(num_experts), BLOCK_D=block_d, ACC=_acc_type(experts.dtype),
    )  # fmt: skip
    return out


def softmax_mix_backward(
    grad: Tensor, logits: Tensor, experts: Tensor, temperature: float, top: int
) -> tuple[Tensor, Tensor]:
    """Launch the fused backward: ``(grad_logits [B, T, E], grad_experts [B, E, D])``."""
    _check_mix(logits, experts)
    (batch, gates, num_experts), width = logits.shape, experts.shape[2]
    grad_l, grad_x = logits.new_empty(logits.shape), experts.new_empty(experts.shape)
    if batch == 0 or width == 0:
        return grad_l.zero_(), grad_x.zero_()
    grad = grad.to(experts.dtype)
    block_b, block_t, block_e, block_d = _backward_blocks(gates, num_experts, width)
    _softmax_mix_bwd_kernel[(triton.cdiv(batch, block_b),)](
        grad, logits, experts, grad_l, grad_x, _constant(1.0 / temperature, experts),
        batch, gates, num_experts, width, *grad.stride(), *logits.stride(), *experts.stride(),
        TOP=_top(top, num_experts), BLOCK_B=block_b, BLOCK_T=block_t, BLOCK_E=block_e,
        BLOCK_D=block_d, ACC=_acc_type(experts.dtype),
    )  # fmt: skip
    return grad_l, grad_x
