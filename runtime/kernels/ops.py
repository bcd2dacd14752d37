"""The gate kernels as ``torch.library`` custom ops.

``mtlc::gate_mix``, ``mtlc::gate_softmax_mix`` and ``mtlc::scale_gate``
(and their backward ops) are opaque to autograd and to
torch.compile/torch.export: each has a fake (meta) implementation for
tracing and a registered backward.

Dispatch, decided per call from the tensors' device: the Triton kernels of
:mod:`.triton_gate` and :mod:`.triton_softmax_mix` run on CUDA tensors when
triton is importable; the plain
PyTorch of :mod:`.reference` runs otherwise. Setting ``MTLC_FORCE_TRITON=1``
(read at import; tests flip :data:`FORCE_TRITON`) runs the Triton kernels on
CPU tensors too, which works under ``TRITON_INTERPRET=1`` only.

Every output is contiguous, whatever the inputs' strides.

Callers in eager mode on CPU may skip the ops and run :mod:`.reference`
under autograd instead (same math): see :func:`plain_autograd`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator

import torch
from torch import Tensor

from . import reference

FORCE_TRITON = os.environ.get("MTLC_FORCE_TRITON") == "1"
"""Run the Triton kernels whatever the device (for tests under ``TRITON_INTERPRET=1``)."""

_HAVE_TRITON = importlib.util.find_spec("triton") is not None


def _use_triton(tensor: Tensor) -> bool:
    return _HAVE_TRITON and (tensor.is_cuda or FORCE_TRITON)


_EXPORTING = False  # set by ``exporting()``: trace the reference math, never the custom ops


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Within: every gate runs the plain PyTorch of :mod:`.reference`, also while tracing,
    so an exported program (ONNX, ``torch.export``) holds only standard operators and
    needs no mtlc at serving time."""
    global _EXPORTING
    previous, _EXPORTING = _EXPORTING, True
    try:
        yield
    finally:
        _EXPORTING = previous


def is_exporting() -> bool:
    return _EXPORTING


def plain_autograd(tensor: Tensor) -> bool:
    """Whether a caller should run the :mod:`.reference` gate code under plain autograd.

    True for tensors the custom ops would hand to the reference anyway (no
    Triton for them), outside torch.compile and torch.export tracing (which
    keep the opaque ops). Skipping the op saves its dispatch and the backward's
    recomputation of the softmax, which shows in a CPU training step
    (benchmarks/README.md, "Training speed").
    """
    return _EXPORTING or (not _use_triton(tensor) and not torch.compiler.is_compiling())


def _triton():
    from . import triton_gate  # imported on first use: importing triton is slow

    return triton_gate


def _triton_fused():
    from . import triton_softmax_mix

    return triton_softmax_mix


# --- gate_mix ---------------------------------------------------------------


@torch.library.custom_op("mtlc::gate_mix", mutates_args=())
def gate_mix(weights: Tensor, experts: Tensor) -> Tensor:
    """Weighted sums of experts for every gate: ``[B, T, E], [B, E, D] -> [B, T, D]``."""
    if _use_triton(experts):
        return _triton().gate_mix_forward(weights, experts)
    return reference.gate_mix(weights, experts)


@gate_mix.register_fake
def _gate_mix_fake(weights: Tensor, experts: Tensor) -> Tensor:
    torch._check(
        weights.dim() == 3 and experts.dim() == 3, lambda: "gate_mix wants [B, T, E] and [B, E, D]"
    )
    torch._check(
        weights.shape[2] == experts.shape[1], lambda: "gate_mix: weights and experts disagree on E"
    )
    batch, gates, _ = weights.shape
    return experts.new_empty((batch, gates, experts.shape[2]))


@torch.library.custom_op("mtlc::gate_mix_backward", mutates_args=())
def gate_mix_backward(grad: Tensor, weights: Tensor, experts: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`gate_mix`: ``(grad_weights [B, T, E], grad_experts [B, E, D])``."""
    if _use_triton(experts):
        return _triton().gate_mix_backward(grad, weights, experts)
    grad_weights, grad_experts = reference.gate_mix_backward(grad, weights, experts)
    return grad_weights.contiguous(), grad_experts.contiguous()


@gate_mix_backward.register_fake
def _gate_mix_backward_fake(
    grad: Tensor, weights: Tensor, experts: Tensor
) -> tuple[Tensor, Tensor]:
    return weights.new_empty(weights.shape), experts.new_empty(experts.shape)


def _gate_mix_setup(ctx, inputs, output) -> None:
    weights, experts = inputs
    ctx.save_for_backward(weights, experts)


def _gate_mix_grad(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
    weights, experts = ctx.saved_tensors
    return gate_mix_backward(grad, weights, experts)


gate_mix.register_autograd(_gate_mix_grad, setup_context=_gate_mix_setup)


# --- gate_softmax_mix: softmax (temperature, top-k) and mixture fused ------------


@torch.library.custom_op("mtlc::gate_softmax_mix", mutates_args=())
def gate_softmax_mix(logits: Tensor, experts: Tensor, temperature: float, top: int) -> Tensor:
    """``gate_mix(softmax(logits / temperature) over the top largest, experts)``: ``[B, T, D]``.

    ``top = 0`` (or ``>= E``) keeps every expert; ties keep the lower index.
    """
    if _use_triton(experts):
        return _triton_fused().softmax_mix_forward(logits, experts, temperature, top)
    return reference.gate_softmax_mix(logits, experts, temperature, top or None)


@gate_softmax_mix.register_fake
def _gate_softmax_mix_fake(logits: Tensor, experts: Tensor, temperature: float, top: int) -> Tensor:
    return _gate_mix_fake(logits, experts)


@torch.library.custom_op("mtlc::gate_softmax_mix_backward", mutates_args=())
def gate_softmax_mix_backward(
    grad: Tensor, logits: Tensor, experts: Tensor, temperature: float, top: int
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`gate_softmax_mix`.

    Returns ``(grad_logits [B, T, E], grad_experts [B, E, D])``.
    """
    if _use_triton(experts):
        return _triton_fused().softmax_mix_backward(grad, logits, experts, temperature, top)
    grad_logits, grad_experts = reference.gate_softmax_mix_backward(
        grad, logits, experts, temperature, top or None
    )
    return grad_logits.contiguous(), grad_experts.contiguous()


@gate_softmax_mix_backward.register_fake
def _gate_softmax_mix_backward_fake(
    grad: Tensor, logits: Tensor, experts: Tensor, temperature: float, top: int
) -> tuple[Tensor, Tensor]:
    return logits.new_empty(logits.shape), experts.new_empty(experts.shape)


def _gate_softmax_mix_setup(ctx, inputs, output) -> None:
    logits, experts, temperature, top = inputs
    ctx.save_for_backward(logits, experts)
    ctx.temperature, ctx.top = temperature, top


def _gate_softmax_mix_grad(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
    logits, experts = ctx.saved_tensors
    grad_logits, grad_experts = gate_softmax_mix_backward(
        grad, logits, experts, ctx.temperature, ctx.top
    )
    return grad_logits, grad_experts, None, None


gate_softmax_mix.register_autograd(_gate_softmax_mix_grad, setup_context=_gate_softmax_mix_setup)


# --- scale_gate -------------------------------------------------------------


@torch.library.custom_op("mtlc::scale_gate", mutates_args=())
def scale_gate(h: Tensor, z: Tensor, scale: float) -> Tensor:
    """Elementwise ``scale * sigmoid(z) * h``; ``h`` and ``z`` of one shape, e.g. ``[B, D]``.

    The product of ``ScaleGate`` (:class:`mtlc.runtime.ScaleGate`), the
    condition gates of POSO and PEPNet (issue 10: ``C * sigmoid(.)`` times a
    layer's output or each expert of a pool, ``[B, D]`` or ``[B, E, D]``).
    """
    if _use_triton(h):
        return _triton().scale_gate_forward(h, z, scale)
    return reference.scale_gate(h, z, scale).contiguous()


@scale_gate.register_fake
def _scale_gate_fake(h: Tensor, z: Tensor, scale: float) -> Tensor:
    torch._check(h.shape == z.shape, lambda: "scale_gate wants h and z of one shape")
    return h.new_empty(h.shape)


@torch.library.custom_op("mtlc::scale_gate_backward", mutates_args=())
def scale_gate_backward(grad: Tensor, h: Tensor, z: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`scale_gate`: ``(grad_h, grad_z)``."""
    if _use_triton(h):
        return _triton().scale_gate_backward(grad, h, z, scale)
    grad_h, grad_z = reference.scale_gate_backward(grad, h, z, scale)
    return grad_h.contiguous(), grad_z.contiguous()


@scale_gate_backward.register_fake
def _scale_gate_backward_fake(
    grad: Tensor, h: Tensor, z: Tensor, scale: float
) -> tuple[Tensor, Tensor]:
    return h.new_empty(h.shape), z.new_empty(z.shape)


def _scale_gate_setup(ctx, inputs, output) -> None:
    h, z, scale = inputs
    ctx.save_for_backward(h, z)
    ctx.scale = scale


def _scale_gate_grad(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
    h, z = ctx.saved_tensors
    grad_h, grad_z = scale_gate_backward(grad, h, z, ctx.scale)
    return grad_h, grad_z, None


scale_gate.register_autograd(_scale_gate_grad, setup_context=_scale_gate_setup)
