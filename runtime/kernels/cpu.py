"""Hand-written CPU backward passes of the layers' fast paths, as ``autograd.Function`` s.

Each computes what the generic code of its layer computes (tested against
it and by gradcheck), with less memory traffic; each is used in eager mode
on CPU only, from a batch size on, for the reasons its docstring gives
(figures: benchmarks/README.md, "Training speed"). torch.compile and
torch.export trace the generic code instead.

- :class:`_ReluPool`: ``ExpertPool``'s per-expert path for ReLU pools
  without norm or dropout.
- :class:`_MixSources`: ``GateBank``'s one gate over several sources.

Like the rest of :mod:`mtlc.runtime.kernels`, this module knows nothing of
the layers that call it: it takes their parameters as tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

_threshold_backward = torch.ops.aten.threshold_backward


class _ReluPool(torch.autograd.Function):
    """An expert pool of ReLU MLPs (no norm, no dropout) as one autograd node.

    The experts run one after another. Inputs: ``x [B, in]``, E, ``first_w
    [E*d1, in]`` and ``first_b [E*d1]`` (rows ``e*d1:(e+1)*d1`` are expert e's
    first ``nn.Linear``), then the later layers' ``weights`` ``[E, d_i,
    d_i+1]`` (``x @ W``), then their ``biases`` ``[E, 1, d_i+1]``:
    ``ExpertPool``'s parameter layout. Output: ``[E, B, D]`` (the caller sees
    it as ``[B, E, D]``).

    Why one expert after another: on CPU, from about a thousand rows, each
    expert's activations stay in cache, where the batched matmuls' wide
    activations do not. Why one node: the same math as the generic per-expert
    path (bitwise in the forward; gradients to rounding, the input's being
    summed over the experts in another order), with less memory traffic:
    each expert's last layer is written straight into the ``[E, B, D]``
    output (no stack), ReLU runs in place, the backward applies ReLU's mask
    in place to the gradient the matmul just wrote, and the parameter
    gradients are written straight into parameter-shaped buffers. MMoE and
    PLE training steps are faster for it (benchmarks/README.md, "Training
    speed"); the same node for single MLPs was slower, its Python backward
    costing more than the C++ autograd it replaces.
    """

    @staticmethod
    def usable(x: Tensor) -> bool:
        """CPU float, eager (torch.compile and export trace the generic path), no CPU autocast."""
        return (
            x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and not torch.compiler.is_compiling()
            and not torch.is_autocast_enabled("cpu")
        )

    @staticmethod
    def forward(
        ctx, x: Tensor, count: int, first_w: Tensor, first_b: Tensor, *rest: Tensor
    ) -> Tensor:
        weights, biases = rest[: len(rest) // 2], rest[len(rest) // 2 :]
        width = first_w.shape[0] // count
        out = x.new_empty(count, x.shape[0], weights[-1].shape[2] if weights else width)
        hidden = []  # per expert, the activations that feed layers 1..n-1
        for e in range(count):
            rows = slice(e * width, (e + 1) * width)
            layers = [
                (first_b[rows], first_w[rows].t()),
                *((b[e, 0], w[e]) for w, b in zip(weights, biases)),
            ]
            h, kept = x, []
            for i, (bias, right) in enumerate(layers):
                last = i == len(layers) - 1
                h = torch.addmm(bias, h, right, out=out[e] if last else None).relu_()
                if not last:
                    kept.append(h)
            hidden.append(kept)
        ctx.count = count
        # the activations too (torch allows intermediate tensors): freed with the graph, seen
        # by saved-tensor hooks
        ctx.save_for_backward(x, out, first_w, *weights, *(h for kept in hidden for h in kept))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, out, first_w, *saved = ctx.saved_tensors
        count, width, layers = (
            ctx.count,
            first_w.shape[0] // ctx.count,
            len(saved) // (ctx.count + 1),
        )
        weights, hidden = saved[:layers], saved[layers:]
        grad_first_w, grad_first_b = torch.empty_like(first_w), first_w.new_empty(first_w.shape[0])
        grad_weights = [torch.empty_like(w) for w in weights]
        grad_biases = [w.new_empty(w.shape[0], 1, w.shape[2]) for w in weights]
        grad_x = None
        for e in range(count):
            inputs = hidden[e * layers : (e + 1) * layers]  # what layers 1 .. n-1 of expert e read
            g = _threshold_backward(grad[e], out[e], 0)
            for i in range(len(weights) - 1, -1, -1):
                torch.mm(inputs[i].t(), g, out=grad_weights[i][e])
                torch.sum(g, 0, out=grad_biases[i][e, 0])
                g = torch.mm(g, weights[i][e].t())
                _threshold_backward.grad_input(
                    g, inputs[i], 0, grad_input=g
                )  # ReLU's mask, in place
            rows = slice(e * width, (e + 1) * width)
            torch.mm(g.t(), x, out=grad_first_w[rows])
            torch.sum(g, 0, out=grad_first_b[rows])
            if ctx.needs_input_grad[0]:
                if grad_x is None:
                    grad_x = torch.mm(g, first_w[rows])
                else:  # in place; the out= form, which FlopCounterMode counts (addmm_ it does not)
                    torch.addmm(grad_x, g, first_w[rows], out=grad_x)
        return (grad_x, None, grad_first_w, grad_first_b, *grad_weights, *grad_biases)


class _MixSources(torch.autograd.Function):
    """One gate's mixture over experts held in several sources, read where they are.

    ``(weights [B, E], *sources [B, E_i, D]) -> [B, D]``, ``sum E_i = E``: the
    same as ``mix(weights, torch.cat(sources, dim=1))`` without the
    concatenated copy. Forward: one running ``addcmul`` over the experts;
    backward: each source's gradient in one new ``[E_i, B, D]`` buffer (seen as
    ``[B, E_i, D]``, as the pools' outputs are), and the weights' gradient column
    by column.

    Why: PLE's second level is one gate over the pools' outputs; skipping the
    concatenation makes its CPU training step faster from about a thousand
    rows, and slower below, where the concatenation and the batched mixture
    win (benchmarks/README.md, "Training speed").
    """

    @staticmethod
    def forward(ctx, weights: Tensor, *sources: Tensor) -> Tensor:
        experts = [source[:, e] for source in sources for e in range(source.shape[1])]
        out = experts[0] * weights[:, :1]
        for e in range(1, len(experts)):
            out.addcmul_(experts[e], weights[:, e : e + 1])
        ctx.save_for_backward(weights, *sources)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        weights, *sources = ctx.saved_tensors
        wanted_weights, wanted_sources = ctx.needs_input_grad[0], ctx.needs_input_grad[1:]
        grad_weights = torch.empty_like(weights) if wanted_weights else None
        grads, column = [], 0
        for source, wanted in zip(sources, wanted_sources):
            count, batch, width = source.shape[1], source.shape[0], source.shape[2]
            buffer = grad.new_empty(count, batch, width) if wanted else None
            for e in range(count):
                if wanted:
                    torch.mul(grad, weights[:, column : column + 1], out=buffer[e])
                if wanted_weights:
                    torch.sum(grad * source[:, e], -1, out=grad_weights[:, column])
                column += 1
            grads.append(None if buffer is None else buffer.transpose(0, 1))
        return (grad_weights, *grads)
