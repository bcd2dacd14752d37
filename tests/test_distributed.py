"""Two gloo processes on CPU (launched as torchrun would) match one process.

Both see the same global batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)  # pytest runs 2 workers on 2 cores: more threads only contend
sys.path.insert(0, str(Path(__file__).parent))
import training_toys as toys  # noqa: E402

from mtlc.runtime.checkpoint import load_checkpoint  # noqa: E402
from mtlc.runtime.trainer import TrainConfig, Trainer  # noqa: E402

# One rank: the same toy model (no dropout, so no per-rank randomness), 2 epochs.
RANK = """
import sys
sys.path.insert(0, {tests!r})
import training_toys as toys
from mtlc.runtime.trainer import TrainConfig, Trainer

config = TrainConfig(epochs=2, batch_size={batch}, lr=1e-2, seed=5)
Trainer(toys.make_model(dropout=0.0), config).fit(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process(tmp_path):
    train = toys.write_parquet(tmp_path / "train.parquet", 200, 0)
    valid = toys.write_parquet(tmp_path / "valid.parquet", 60, 1)
    single = Trainer(
        toys.make_model(dropout=0.0),
        TrainConfig(epochs=2, batch_size=32, lr=1e-2, seed=5),
        log=lambda _: None,
    )
    single.fit(train, valid, tmp_path / "single")

    script = RANK.format(tests=str(Path(__file__).parent), batch=16)
    port = free_port()
    children = []
    for rank in range(2):
        env = dict(
            os.environ,
            WORLD_SIZE="2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", script, str(train), str(valid), str(tmp_path / "ddp")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [c.communicate(timeout=120)[0].decode() for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs

    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    for name, value in single.model.state_dict().items():
        assert torch.allclose(ddp[name], value, atol=1e-5), name
    ddp_losses = [
        e["train_loss"]
        for e in json.loads((tmp_path / "ddp" / "metrics.json").read_text())["epochs"]
    ]
    assert len(ddp_losses) == len(single.history) == 2
    assert all(abs(a - b["train_loss"]) < 1e-5 for a, b in zip(ddp_losses, single.history))
    assert "epoch 2/2" in outputs[0] and "epoch" not in outputs[1]  # only rank 0 reports
