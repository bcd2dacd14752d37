"""Files of a run, written atomically: a temporary file beside the target, fsync, rename.

A reader never sees half a file: either the old version or the new one. A run
folder holds ``last.pt`` and ``best.pt`` (checkpoints), ``encoder.json``
(vocabularies and dense statistics), ``metrics.json``, ``curves.png`` and
``config.json``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

__all__ = ["atomic_write", "write_json", "save_checkpoint", "load_checkpoint"]

LAST, BEST, ENCODER, METRICS, CURVES, CONFIG = (
    "last.pt",
    "best.pt",
    "encoder.json",
    "metrics.json",
    "curves.png",
    "config.json",
)


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` through ``write(file)`` so it appears complete or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
