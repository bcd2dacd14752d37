"""What the Triton gate kernels share: launch helpers and the mixture's loops over D.

The gate mixture ``out[b, t] = sum_e w[b, t, e] * experts[b, e]`` comes in
two pairs of kernels, :mod:`.triton_gate` (weights read from memory) and
:mod:`.triton_softmax_mix` (weights computed from logits in registers).
Once a program holds its weights as a ``[BLOCK_B, BLOCK_T, BLOCK_E]`` tile,
the rest is the same: :func:`_mix_forward_tile` and
:func:`_mix_backward_tile` are that rest.

E is small (4 to 16), so the sums over experts are unrolled
broadcast-multiply-adds, not ``tl.dot`` (which wants K >= 16).
Accumulation is in float32, or float64 for float64 inputs (for gradcheck).

This module imports triton; :mod:`.ops` loads it only when a kernel runs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

# --- launch helpers ---------------------------------------------------------


def _acc_type(dtype: torch.dtype):
    """The kernels' compute type for inputs of ``dtype``."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def _constant(value: float, like: Tensor) -> Tensor:
    """``value`` as a one-element tensor in the compute type.

    A float argument would round to float32.
    """
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.full((1,), value, dtype=dtype, device=like.device)


def _check_mix(weights: Tensor, experts: Tensor) -> None:
    """Raise unless ``weights [B, T, E]`` and ``experts [B, E, D]`` agree in B, E and dtype."""
    if weights.dim() != 3 or experts.dim() != 3 or weights.shape[2] != experts.shape[1]:
        raise ValueError(
            f"gate_mix wants [B, T, E] and [B, E, D], "
            f"got {tuple(weights.shape)} and {tuple(experts.shape)}"
        )
    if weights.shape[0] != experts.shape[0] or weights.dtype != experts.dtype:
        raise ValueError("gate_mix: weights and experts differ in batch size or dtype")


def _blocks(gates: int, width: int) -> tuple[int, int, int]:
    """Forward tiles ``(BLOCK_B, BLOCK_T, BLOCK_D)``.

    About 4096 accumulator elements per program.
    """
    block_t = triton.next_power_of_2(gates)
    block_d = min(128, triton.next_power_of_2(width))
    block_b = max(1, min(64, 4096 // (block_t * block_d)))
    return block_b, block_t, block_d


def _backward_blocks(gates: int, num_experts: int, width: int) -> tuple[int, int, int, int]:
    """Backward tiles ``(BLOCK_B, BLOCK_T, BLOCK_E, BLOCK_D)``.

    About 2048 elements per ``[B, T, D or E]`` tile.
    """
    block_t, block_e = triton.next_power_of_2(gates), triton.next_power_of_2(num_experts)
    block_d = min(64, triton.next_power_of_2(width))
    block_b = max(1, min(32, 2048 // (block_t * max(block_d, block_e))))
    return block_b, block_t, block_e, block_d


# --- jit helpers: one program's tile ----------------------------------------


@triton.jit
def _column(
    tile,  # [BLOCK_B, BLOCK_T, BLOCK_E] register tile
    slots,  # [BLOCK_E] expert indices
    e,  # the expert wanted
):
    """``tile[:, :, e]``, ``[BLOCK_B, BLOCK_T]``.

    A register tile cannot be indexed by a runtime ``e``.
    """
    return tl.sum(tl.where(slots[None, None, :] == e, tile, 0.0), axis=2)


@triton.jit
def _mix_forward_tile(
    weights,  # [BLOCK_B, BLOCK_T, BLOCK_E] gate weights in ACC, 0 for slots >= E
    experts_ptr,  # [B, E, D] expert outputs, any strides
    out_ptr,  # [B, T, D] output, contiguous
    rows,  # [BLOCK_B] int64 row indices
    gates,  # [BLOCK_T] gate indices
    slots,  # [BLOCK_E] expert indices
    cols,  # [BLOCK_D] column indices
    B,  # batch size
    T,  # gates
    E,  # experts
    D,  # expert width
    stride_xb,  # experts stride over B
    stride_xe,  # experts stride over E
    stride_xd,  # experts stride over D
    BLOCK_B: tl.constexpr,  # rows of the batch per program
    BLOCK_T: tl.constexpr,  # T rounded up to a power of two
    BLOCK_D: tl.constexpr,  # columns of D per program
    ACC: tl.constexpr,  # accumulator type
):
    """Write ``out[rows, gates, cols] = sum_e weights[:, :, e] * experts[rows, e, cols]``."""
    row_ok, col_ok = rows < B, cols < D
    x_mask = row_ok[:, None] & col_ok[None, :]
    acc = tl.zeros((BLOCK_B, BLOCK_T, BLOCK_D), dtype=ACC)
    for e in range(E):
        w = _column(weights, slots, e)  # [BB, BT]
        x_ptrs = experts_ptr + rows[:, None] * stride_xb + e * stride_xe + cols[None, :] * stride_xd
        x = tl.load(x_ptrs, mask=x_mask, other=0.0).to(ACC)  # [BB, BD]
        acc += w[:, :, None] * x[:, None, :]
    out_ptrs = (
        out_ptr + rows[:, None, None] * (T * D) + gates[None, :, None] * D + cols[None, None, :]
    )
    out_mask = row_ok[:, None, None] & (gates < T)[None, :, None] & col_ok[None, None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _mix_backward_tile(
    weights,  # [BLOCK_B, BLOCK_T, BLOCK_E] gate weights in ACC, 0 for slots >= E
    grad_ptr,  # [B, T, D] gradient of the output, any strides
    experts_ptr,  # [B, E, D] expert outputs, any strides
    grad_x_ptr,  # [B, E, D] gradient of the experts, contiguous
    rows,  # [BLOCK_B] int64 row indices
    gates,  # [BLOCK_T] gate indices
    slots,  # [BLOCK_E] expert indices
    B,  # batch size
    T,  # gates
    E,  # experts
    D,  # expert width
    stride_gb,  # grad stride over B
    stride_gt,  # grad stride over T
    stride_gd,  # grad stride over D
    stride_xb,  # experts stride over B
    stride_xe,  # experts stride over E
    stride_xd,  # experts stride over D
    BLOCK_B: tl.constexpr,  # rows of the batch per program
    BLOCK_T: tl.constexpr,  # T rounded up to a power of two
    BLOCK_E: tl.constexpr,  # E rounded up to a power of two
    BLOCK_D: tl.constexpr,  # columns of D per step of the loop over D
    ACC: tl.constexpr,  # accumulator type
):
    """Write the experts' gradient of these rows; return the weights' gradient.

    One pass over D reads ``grad`` and the experts once: ``grad_x[:, e] =
    sum_t weights[:, t, e] * grad[:, t]`` is stored block by block, and
    ``grad_w[:, t, e] = <grad[:, t], experts[:, e]>`` is summed over the blocks
    (``[BLOCK_B, BLOCK_T, BLOCK_E]``).
    """
    row_ok = rows < B
    g_rows = row_ok[:, None, None] & (gates < T)[None, :, None]
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
        g = tl.load(g_ptrs, mask=g_rows & col_ok[None, None, :], other=0.0).to(ACC)  # [BB, BT, BD]
        x_mask = row_ok[:, None] & col_ok[None, :]
        for e in range(E):
            w = _column(weights, slots, e)  # [BB, BT]
            x_ptrs = (
                experts_ptr + rows[:, None] * stride_xb + e * stride_xe + cols[None, :] * stride_xd
            )
            x = tl.load(x_ptrs, mask=x_mask, other=0.0).to(ACC)  # [BB, BD]
            grad_x = tl.sum(w[:, :, None] * g, axis=1)  # [BB, BD]: sum over gates
            gx_ptrs = grad_x_ptr + rows[:, None] * (E * D) + e * D + cols[None, :]
            tl.store(gx_ptrs, grad_x.to(grad_x_ptr.dtype.element_ty), mask=x_mask)
            part = tl.sum(
                g * x[:, None, :], axis=2
            )  # [BB, BT]: this D-block's share of d out / d w[:, :, e]
            grad_w += tl.where(slots[None, None, :] == e, part[:, :, None], 0.0)
    return grad_w


@triton.jit
def _store_gate_tile(
    ptr,  # [B, T, E] destination, contiguous
    tile,  # [BLOCK_B, BLOCK_T, BLOCK_E] values
    rows,  # [BLOCK_B] int64 row indices
    gates,  # [BLOCK_T] gate indices
    slots,  # [BLOCK_E] expert indices
    B,  # batch size
    T,  # gates
    E,  # experts
):
    """Store the part of a ``[B, T, E]`` tile that lies inside ``B, T, E``."""
    ptrs = ptr + rows[:, None, None] * (T * E) + gates[None, :, None] * E + slots[None, None, :]
    mask = (rows < B)[:, None, None] & (gates < T)[None, :, None] & (slots < E)[None, None, :]
    tl.store(ptrs, tile.to(ptr.dtype.element_ty), mask=mask)
