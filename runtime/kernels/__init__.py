"""Gate kernels: custom ops with Triton kernels on CUDA and plain PyTorch elsewhere.

``gate_mix(weights [B, T, E], experts [B, E, D]) -> [B, T, D]``,
``gate_softmax_mix(logits [B, T, E], experts, temperature, top)`` (the softmax,
temperature and top-k fused in) and
``scale_gate(h, z, scale) -> scale * sigmoid(z) * h`` (for the scale gates of
POSO and PEPNet, issue 10). Importing this package does not import triton;
the Triton module loads on first CUDA use.

Layout, as Liger-Kernel's: :mod:`.triton_common` (shared launch helpers and
``@triton.jit`` loops), :mod:`.triton_gate` and :mod:`.triton_softmax_mix`
(private jit kernels and their launchers), :mod:`.ops` (the custom ops and
the dispatch), :mod:`.reference` (plain PyTorch: the CPU path and the test
oracle), :mod:`.cpu` (hand-written CPU autograd functions of the layers'
fast paths). Nothing here imports the rest of the runtime.
"""

from .ops import gate_mix, gate_softmax_mix, scale_gate
from .reference import gate_weights

__all__ = ["gate_mix", "gate_softmax_mix", "gate_weights", "scale_gate"]
