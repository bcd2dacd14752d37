"""Gate kernels: custom ops with Triton kernels on CUDA and plain PyTorch elsewhere.

``gate_mix(weights [B, T, E], experts [B, E, D]) -> [B, T, D]``,
``gate_softmax_mix(logits [B, T, E], experts, temperature, top)`` (the softmax,
temperature and top-k fused in) and
``scale_gate(h, z, scale) -> scale * sigmoid(z) * h``. Importing this package
does not import triton; the Triton module loads on first CUDA use.
"""

from .ops import gate_mix, gate_softmax_mix, scale_gate
from .reference import gate_weights

__all__ = ["gate_mix", "gate_softmax_mix", "gate_weights", "scale_gate"]
