"""Optimizers for generated models: Adam's exact math, fused, and an optional lazy row-sparse Adam.

``make_optimizer(model)`` is what the trainer calls. The default, ``"adam"``, is
``torch.optim.Adam`` itself with its fused kernel where the parameters allow it
(else the multi-tensor ``foreach`` path): the same math as the textbook loop,
with one kernel launch per step instead of several per parameter.

``"lazy_adam"`` is a different algorithm, offered because large recommenders
use it: embedding tables get sparse gradients and only the rows a batch looked
up are updated (their moments too); rows not seen keep their moments frozen
instead of decaying. Every other parameter gets Adam exactly as above. Its cost
follows the batch, not the vocabulary, which matters when the tables dwarf the
rest of the model. It does not equal Adam, so its speed is reported apart.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from collections.abc import Iterable

import torch
from torch import Tensor, nn

OPTIMIZERS = ("adam", "lazy_adam")
SCHEDULES = ("none", "cosine", "step")

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (glibc malloc.h)


def make_optimizer(
    model: nn.Module,
    name: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    *,
    extra_params: Iterable[nn.Parameter] = (),
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """Build the optimizer of a training run.

    Args:
        model: the model; all its parameters are optimized with ``weight_decay``.
        name: ``"adam"`` (default: ``torch.optim.Adam``, fused where available)
            or ``"lazy_adam"`` (row-sparse Adam for embedding tables; switches
            the model's ``nn.Embedding``/``nn.EmbeddingBag`` modules to sparse
            gradients, so clip with :func:`clip_grad_norm_` of this module).
        lr: learning rate.
        weight_decay: L2 penalty added to the gradient, as ``torch.optim.Adam`` does.
        extra_params: more parameters (a loss's learned task weights) in a
            second group without weight decay.
        betas, eps: Adam's constants.

    Returns:
        A ``torch.optim.Adam`` (or its subclass :class:`LazyAdam`).

    Raises:
        ValueError: an unknown ``name``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    groups = [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    extra = list(extra_params)
    if extra:
        groups.append({"params": extra, "weight_decay": 0.0})
    if name == "lazy_adam":
        use_sparse_embedding_grads(model)
    return _adam(
        LazyAdam if name == "lazy_adam" else torch.optim.Adam, groups, lr=lr, betas=betas, eps=eps
    )


def _adam(kind: type[torch.optim.Adam], groups: list[dict], **options) -> torch.optim.Adam:
    """``kind(groups, fused=True)`` where every parameter allows it, else ``foreach=True``."""
    params = [p for group in groups for p in group["params"]]
    if all(_fusable(p) for p in params):
        try:
            return kind(groups, fused=True, **options)
        except (RuntimeError, TypeError):
            pass
    return kind(groups, foreach=True, **options)


def _fusable(param: Tensor) -> bool:
    return param.is_floating_point() and param.device.type in ("cpu", "cuda")


def use_sparse_embedding_grads(model: nn.Module) -> None:
    """Make every embedding table of ``model`` produce sparse (row) gradients."""
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            module.sparse = True


class LazyAdam(torch.optim.Adam):
    """Adam whose sparse-gradient parameters (embedding tables) are updated row by row.

    Parameters with dense gradients take ``torch.optim.Adam``'s step unchanged
    (fused or foreach as constructed). A parameter ``W [V, D]`` with a sparse
    gradient updates only the rows present in it: with ``g`` the row gradient
    (duplicates summed) plus ``weight_decay * W[rows]``, ``m[rows]`` and
    ``v[rows]`` take Adam's moment updates and ``W[rows]`` Adam's bias-corrected
    step, where the step count is the parameter's number of optimizer steps
    (as TensorFlow's LazyAdam and ``torch.optim.SparseAdam``). A row touched at
    every step follows Adam exactly; an untouched row, its moments included,
    does not change. ``amsgrad`` and ``maximize`` are not supported.
    """

    def __init__(self, params, **options) -> None:
        if options.get("amsgrad") or options.get("maximize"):
            raise ValueError("LazyAdam supports neither amsgrad nor maximize")
        super().__init__(params, **options)

    @torch.no_grad()
    def step(self, closure=None):
        """One step: Adam for dense gradients, the lazy row update for sparse ones."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hidden = []
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None and param.grad.is_sparse:
                    hidden.append((group, param, param.grad))
                    param.grad = None
        try:
            super().step()
        finally:
            for _, param, grad in hidden:
                param.grad = grad
        for group, param, grad in hidden:
            self._row_step(group, param, grad)
        return loss

    def _row_step(self, group: dict, param: Tensor, grad: Tensor) -> None:
        """The lazy Adam update of the rows of ``param [V, ...]`` present in the sparse ``grad``."""
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        grad = grad.coalesce()
        rows, values = grad.indices()[0], grad.values()
        if group["weight_decay"]:
            values = values.add(param.index_select(0, rows), alpha=group["weight_decay"])
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = float(state["step"])
        exp_avg = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
        exp_avg_sq = (
            state["exp_avg_sq"]
            .index_select(0, rows)
            .mul_(beta2)
            .addcmul_(values, values, value=1 - beta2)
        )
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        denom = (exp_avg_sq.sqrt_() / math.sqrt(1 - beta2**step)).add_(group["eps"])
        param.index_add_(0, rows, exp_avg.div_(denom), alpha=-_lr(group) / (1 - beta1**step))


def _lr(group: dict) -> float:
    lr = group["lr"]
    return float(lr) if isinstance(lr, Tensor) else lr


@torch.no_grad()
def clip_grad_norm_(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """``nn.utils.clip_grad_norm_`` (L2) that also accepts sparse gradients.

    Sparse gradients (from :class:`LazyAdam` runs) are coalesced in place first,
    so that duplicate rows count once, as in the dense gradient. Returns the
    total norm before clipping.
    """
    params = [p for p in params if p.grad is not None]
    for param in params:
        if param.grad.is_sparse:
            param.grad = param.grad.coalesce()
    if not any(p.grad.is_sparse for p in params):
        return nn.utils.clip_grad_norm_(params, max_norm)
    norms = [
        torch.linalg.vector_norm(p.grad.values() if p.grad.is_sparse else p.grad) for p in params
    ]
    total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for param in params:
        param.grad.mul_(scale.to(param.grad.device))
    return total


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS (process-wide).

    A training step frees and reallocates the same large activations and
    gradients every step. With glibc's defaults, blocks above a few MB come
    from ``mmap`` and the heap is trimmed on free, so each step faults its
    pages in again, which shows in a CPU training step (benchmarks/README.md,
    "Training speed"; PyTorch's CPU tuning guide suggests jemalloc or
    tcmalloc for the same reason). This sets ``M_MMAP_MAX=0`` and
    ``M_TRIM_THRESHOLD=trim_threshold``: freed memory stays in the heap (up to
    ``trim_threshold`` bytes of free space at its top) and is reused.

    Returns whether it was applied: not off glibc, nor with the environment
    variable ``MTLC_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get("MTLC_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))


def schedule_factor(
    schedule: str,
    step: int,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 0.0,
    step_epochs: int = 1,
    gamma: float = 0.1,
) -> float:
    """The learning rate's factor at optimizer step ``step`` (0-based) of a run.

    A linear warm-up from ``1 / warmup steps`` to 1 over the first ``warmup_epochs``
    epochs (any schedule), then: ``none`` keeps 1; ``cosine`` decays to 0 along half a
    cosine over the remaining steps of ``epochs`` epochs; ``step`` multiplies by
    ``gamma`` every ``step_epochs`` epochs (PyTorch's ``StepLR``, by epoch).
    """
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        total = max(epochs * steps_per_epoch - warmup, 1)
        progress = min((step - warmup) / total, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return gamma ** (step // (steps_per_epoch * step_epochs))
    return 1.0
