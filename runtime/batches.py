"""Batches of encoded rows as tensors: streamed, shuffled through a buffer, sharded by rank.

Rows are read file by file in record batches and encoded (``Encoder.encode``).
With ``shuffle``, rows pass through a buffer of ``buffer_rows`` rows that is
permuted with a generator seeded by ``(seed, epoch)``, so an epoch's order
depends only on the seed and the epoch number (what makes resuming exact).
With more than one rank, every rank streams the same files and cuts the same
global batches, keeping its own contiguous part of each: together the ranks see
exactly the global batch that one process would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from mtlc.runtime.data import DataFiles, Encoder

__all__ = ["Batch", "iter_batches"]

BUFFER_ROWS = 1 << 20


@dataclass
class Batch:
    """One rank's part of a global batch.

    ``inputs``: feature name -> tensor (see the generated module's contract);
    ``labels`` / ``masks``: task name -> [n] tensors (labels float32, int64 for
    multiclass; masks bool, True where the label is present); ``size`` is n,
    ``global_size`` the rows of the whole global batch over all ranks.
    """

    inputs: dict[str, Tensor]
    labels: dict[str, Tensor]
    masks: dict[str, Tensor]
    size: int
    global_size: int

    def to(self, device: torch.device) -> "Batch":
        move = lambda d: {k: v.to(device, non_blocking=True) for k, v in d.items()}  # noqa: E731
        return Batch(
            move(self.inputs), move(self.labels), move(self.masks), self.size, self.global_size
        )


def iter_batches(
    data: DataFiles,
    encoder: Encoder,
    batch_size: int,
    *,
    labels: bool = True,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world: int = 1,
    buffer_rows: int = BUFFER_ROWS,
) -> Iterator[Batch]:
    """Yield this rank's ``Batch`` of every global batch of ``batch_size * world`` rows.

    Without ``shuffle`` the rows keep their input order (file by file).
    """
    global_size = batch_size * world
    rng = np.random.default_rng([seed, epoch]) if shuffle else None
    chunks = (encoder.encode(b, labels) for _, b in data.fragments(encoder.read_columns(labels)))
    for rows in _global_batches(chunks, global_size, rng, buffer_rows):
        n = _length(rows)
        start, stop = rank * n // world, (rank + 1) * n // world
        yield _to_batch({k: v[start:stop] for k, v in rows.items()}, stop - start, n)


def _global_batches(chunks, size: int, rng, buffer_rows: int) -> Iterator[dict[str, np.ndarray]]:
    pending: list[dict[str, np.ndarray]] = []
    count = 0
    for chunk in chunks:
        pending.append(chunk)
        count += _length(chunk)
        if count >= max(buffer_rows, size):
            rows = _shuffled(_concat(pending), rng)
            full = count // size * size
            yield from ({k: v[i : i + size] for k, v in rows.items()} for i in range(0, full, size))
            pending, count = [{k: v[full:] for k, v in rows.items()}], count - full
    if count:
        rows = _shuffled(_concat(pending), rng)
        yield from ({k: v[i : i + size] for k, v in rows.items()} for i in range(0, count, size))


def _length(rows: dict[str, np.ndarray]) -> int:
    return len(next(iter(rows.values()))) if rows else 0


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(chunks) == 1:
        return chunks[0]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _shuffled(rows: dict[str, np.ndarray], rng) -> dict[str, np.ndarray]:
    if rng is None:
        return rows
    order = rng.permutation(_length(rows))
    return {k: v[order] for k, v in rows.items()}


def _to_batch(rows: dict[str, np.ndarray], size: int, global_size: int) -> Batch:
    parts: dict[str, dict[str, Tensor]] = {"f": {}, "y": {}, "m": {}}
    for key, value in rows.items():
        kind, name = key.split(":", 1)
        parts[kind][name] = torch.from_numpy(np.ascontiguousarray(value))
    return Batch(parts["f"], parts["y"], parts["m"], size, global_size)
