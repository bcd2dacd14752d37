"""Data parallel training through torch.distributed, set up from torchrun's environment.

Launched with ``torchrun --nproc-per-node N -m mtlc.cli train ...``, each process
sees ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; the process group is gloo on
CPU and nccl on CUDA. Each rank computes the gradient of its part of the global
batch; ``reduce_gradients`` sums the parts weighted by their share of the rows,
so the update equals that of one process on the whole global batch (exactly,
when no label is masked). Only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Context", "setup", "finish", "reduce_gradients", "all_sum", "broadcast"]


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: str) -> Context:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        # Leave the group before the interpreter ends: a process that exits with gloo's
        # threads still running aborts ("terminate called without an active exception").
        atexit.register(_leave)
    return Context(rank, world, local_rank)


def finish(context: Context) -> None:
    """Wait until every rank is here (rank 0 has written its files), at the end of a run."""
    if context.active:
        dist.barrier()


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def reduce_gradients(params: list[nn.Parameter], share: float) -> None:
    """Replace each rank's gradients by ``sum over ranks of share_r * grad_r`` (one all_reduce).

    ``share`` is this rank's rows over the global batch's rows; a parameter
    without a gradient counts as zeros.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads]) * share
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(p).to(p.dtype)
        offset += g.numel()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over the ranks."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
