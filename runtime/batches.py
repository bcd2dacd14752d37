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

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mtlc.runtime.data import DataFiles, Encoder, Rows

__all__ = ["Batch", "iter_batches"]

BUFFER_ROWS = 1 << 20


@dataclass(frozen=True)
class Batch(Rows[Tensor]):
    """One rank's part of a global batch: its ``Rows`` as tensors.

    ``inputs``: feature name -> tensor (see the generated module's contract);
    ``labels`` / ``masks``: task name -> [n] tensors (labels float32, int64 for
    multiclass; masks bool, True where the label is present); ``size`` is n,
    ``global_size`` the rows of the whole global batch over all ranks.
    """

    size: int
    global_size: int

    def to(self, device: torch.device) -> Batch:
        return self.map(lambda tensor: tensor.to(device, non_blocking=True))


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
        n = len(rows)
        start, stop = rank * n // world, (rank + 1) * n // world
        yield _to_batch(rows.take(slice(start, stop)), stop - start, n)


def _global_batches(
    chunks: Iterator[Rows[np.ndarray]], size: int, rng, buffer_rows: int
) -> Iterator[Rows[np.ndarray]]:
    pending: list[Rows[np.ndarray]] = []
    count = 0
    for chunk in chunks:
        pending.append(chunk)
        count += len(chunk)
        if count >= max(buffer_rows, size):
            rows = _shuffled(Rows.concat(pending), rng)
            full = count // size * size
            yield from (rows.take(slice(i, i + size)) for i in range(0, full, size))
            pending, count = [rows.take(slice(full, None))], count - full
    if count:
        rows = _shuffled(Rows.concat(pending), rng)
        yield from (rows.take(slice(i, i + size)) for i in range(0, count, size))


def _shuffled(rows: Rows[np.ndarray], rng) -> Rows[np.ndarray]:
    if rng is None:
        return rows
    return rows.take(rng.permutation(len(rows)))


def _to_batch(rows: Rows[np.ndarray], size: int, global_size: int) -> Batch:
    tensors = rows.map(lambda array: torch.from_numpy(np.ascontiguousarray(array)))
    return Batch(tensors.inputs, tensors.labels, tensors.masks, size, global_size)
