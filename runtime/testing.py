"""Helpers for tests and benchmarks of generated models: a random input batch.

Not used by generated models or by training; torch only.
"""

from __future__ import annotations

import torch

__all__ = ["random_batch"]


def random_batch(model_class: type, size: int, seed: int = 0) -> dict:
    """A random input batch for ``model_class``, following its ``features``.

    Sparse: int64 ``[size]``; sequence: int64 ``[size, maxlen]`` whose tails are
    padding (0); dense: float32 ``[size]`` (dim 1) or ``[size, dim]``.
    """
    generator = torch.Generator().manual_seed(seed)
    batch = {}
    for name, feature in model_class.features.items():
        if feature.kind == "sparse":
            batch[name] = torch.randint(0, feature.vocab, (size,), generator=generator)
        elif feature.kind == "sequence":
            ids = torch.randint(1, feature.vocab, (size, feature.maxlen), generator=generator)
            lengths = torch.randint(0, feature.maxlen + 1, (size, 1), generator=generator)
            batch[name] = ids * (torch.arange(feature.maxlen) < lengths)
        else:
            shape = (size,) if feature.dim == 1 else (size, feature.dim)
            batch[name] = torch.randn(shape, generator=generator)
    return batch
