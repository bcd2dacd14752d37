"""Files of a run, written atomically: a temporary file beside the target, fsync, rename.

A reader never sees half a file: either the old version or the new one. A run
folder holds ``last.pt`` and ``best.pt`` (checkpoints), ``encoder.json``
(vocabularies and dense statistics), ``metrics.json``, ``curves.png``,
``config.json`` and ``model.json`` (the model's fingerprint: its class and the
shape of every tensor of its state, to tell a changed spec before loading).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mtlc.files import atomic_write

__all__ = ["atomic_write", "write_json", "save_checkpoint", "load_checkpoint"]

LAST, BEST, ENCODER, METRICS, CURVES, CONFIG, MODEL = (
    "last.pt",
    "best.pt",
    "encoder.json",
    "metrics.json",
    "curves.png",
    "config.json",
    "model.json",
)


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def save_checkpoint(path: str | Path, state: dict) -> None:
    """``torch.save(state)`` atomically. ``state`` holds tensors and plain data only."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` (tensors and plain data only)."""
    return torch.load(path, map_location=device, weights_only=True)


def rng_state() -> dict:
    """The torch random generators' states (CPU, and CUDA where present)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
