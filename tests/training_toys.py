"""Small hand-written models that follow the generated-module contract, and toy data.

Used by the training tests where a compiled spec is not needed. ``make_model``
builds a shared-bottom class whose class attributes (``features``, ``tasks``,
``constraints``, ``weighting``) are ``mtlc.runtime.spec`` dataclasses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from mtlc.runtime.spec import Feature, Task, Weighting

FEATURES = {
    "user": Feature("user", "sparse", dim=4, vocab=40),
    "hist": Feature("hist", "sequence", dim=4, vocab=40, maxlen=5, pool="mean", table="user"),
    "price": Feature("price", "dense", dim=1),
}
FUNNEL = {
    "ctr": Task("ctr", "binary", label="click", loss="bce"),
    "cvr": Task("cvr", "binary"),
    "ctcvr": Task("ctcvr", "binary", label="buy", loss="bce", factors=("ctr", "cvr")),
}
MIXED = {
    "ctr": Task("ctr", "binary", label="click", loss="bce"),
    "spend": Task("spend", "regression", label="spend", loss="mse"),
    "kind": Task("kind", "multiclass", label="kind", loss="ce", classes=3),
}


def make_model(
    tasks=None, constraints=(), weighting=None, features=None, hidden=8, dropout=0.1
) -> type[nn.Module]:
    """A shared-bottom model class over ``features`` with one head per non-product task."""
    tasks = tasks or FUNNEL
    features = features or FEATURES
    emb_owner = {n: f.table or n for n, f in features.items() if f.kind != "dense"}
    width = sum(f.dim for f in features.values())

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tables = nn.ModuleDict(
                {
                    n: nn.Embedding(f.vocab, f.dim)
                    for n, f in features.items()
                    if f.kind != "dense" and not f.table
                }
            )
            self.bottom = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.heads = nn.ModuleDict(
                {n: nn.Linear(hidden, t.classes or 1) for n, t in tasks.items() if not t.factors}
            )

        def forward_logits(self, batch):
            parts = []
            for name, f in features.items():
                x = batch[name]
                if f.kind == "sparse":
                    parts.append(self.tables[emb_owner[name]](x))
                elif f.kind == "sequence":
                    emb = self.tables[emb_owner[name]](x)
                    keep = (x > 0).unsqueeze(-1).float()
                    parts.append((emb * keep).sum(1) / keep.sum(1).clamp(min=1))
                else:
                    parts.append(x.reshape(len(x), -1).float())
            h = self.bottom(torch.cat(parts, -1))
            return {
                n: (head(h).squeeze(-1) if tasks[n].kind != "multiclass" else head(h))
                for n, head in self.heads.items()
            }

        def forward(self, batch):
            logits = self.forward_logits(batch)
            out = {}
            for name, t in tasks.items():
                if t.factors:
                    out[name] = torch.stack([torch.sigmoid(logits[f]) for f in t.factors]).prod(0)
                elif t.kind == "binary":
                    out[name] = torch.sigmoid(logits[name])
                elif t.kind == "multiclass":
                    out[name] = torch.softmax(logits[name], -1)
                else:
                    out[name] = logits[name]
            return out

    Toy.features = features
    Toy.tasks = tasks
    Toy.constraints = tuple(constraints)
    Toy.weighting = weighting or Weighting("fixed")
    return Toy


def funnel_table(rows: int, seed: int = 0) -> pa.Table:
    """Toy rows: user (string), hist ('|'-free comma list), price; click, buy.

    buy is null where there is no click.
    """
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 30, rows)
    price = rng.normal(50, 10, rows)
    hist = [",".join(f"u{v}" for v in rng.integers(0, 30, rng.integers(0, 8))) for _ in range(rows)]
    score = (user % 3 == 0) * 2.0 - 1.0 + (price - 50) / 10
    click = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(np.int64)
    buy = click * (rng.random(rows) < 0.5 + 0.4 * (user % 2))
    return pa.table(
        {
            "user": pa.array([f"u{v}" for v in user]),
            "hist": pa.array(hist),
            "price": pa.array(price),
            "click": pa.array(click),
            "buy": pa.array(buy.astype(np.int64)),
            "spend": pa.array(price * click + rng.normal(0, 1, rows)),
            "kind": pa.array((user % 3).astype(np.int64)),
        }
    )


def write_parquet(path: Path, rows: int, seed: int = 0) -> Path:
    pq.write_table(funnel_table(rows, seed), path)
    return path
