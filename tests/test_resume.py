"""Resuming a run repeats the uninterrupted losses exactly.

Also a run killed with SIGKILL mid-epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # pytest runs 2 workers on 2 cores: more threads only contend
sys.path.insert(0, str(Path(__file__).parent))
import training_toys as toys  # noqa: E402

from mtlc.runtime.checkpoint import load_checkpoint  # noqa: E402
from mtlc.runtime.trainer import TrainConfig, Trainer  # noqa: E402

CONFIG = dict(batch_size=32, lr=3e-3, seed=7)

# Trains 3 epochs into argv[2]; from epoch 2 on, each step sleeps so the parent can kill it
# mid-epoch.
CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import training_toys as toys
from mtlc.runtime.trainer import TrainConfig, Trainer

class Slow(Trainer):
    def _step(self, batch):
        if self.history:
            time.sleep(0.05)
        return super()._step(batch)

Slow(toys.make_model(), TrainConfig(epochs=3, **{config!r})).fit(sys.argv[1], None, sys.argv[2])
"""


def losses(run: Path) -> list[float]:
    return [e["train_loss"] for e in json.loads((run / "metrics.json").read_text())["epochs"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    train = toys.write_parquet(folder / "train.parquet", 400, 0)
    Trainer(toys.make_model(), TrainConfig(epochs=3, **CONFIG), log=lambda _: None).fit(
        train, None, folder / "full"
    )
    return train, losses(folder / "full")


def test_resume_after_a_clean_stop_repeats_the_trajectory(reference, tmp_path):
    train, expected = reference
    Trainer(toys.make_model(), TrainConfig(epochs=1, **CONFIG)).fit(train, None, tmp_path / "run")
    Trainer(toys.make_model(), TrainConfig(epochs=3, **CONFIG)).fit(
        train, None, tmp_path / "run", resume=True
    )
    assert losses(tmp_path / "run") == expected  # exactly, not approximately
    # a finished run resumed with the same --epochs does nothing more
    Trainer(toys.make_model(), TrainConfig(epochs=3, **CONFIG)).fit(
        train, None, tmp_path / "run", resume=True
    )
    assert losses(tmp_path / "run") == expected


def test_resume_after_sigkill_mid_epoch_repeats_the_trajectory(reference, tmp_path):
    train, expected = reference
    run = tmp_path / "run"
    script = CHILD.format(tests=str(Path(__file__).parent), config=CONFIG)
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(train), str(run)],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (run / "last.pt").exists():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "the child never finished its first epoch"
        time.sleep(0.05)
    time.sleep(0.3)  # well inside epoch 2 (13 steps of 50 ms)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    Trainer(toys.make_model(), TrainConfig(epochs=3, **CONFIG)).fit(train, None, run, resume=True)
    assert losses(run) == expected


SCHEDULED = dict(CONFIG, schedule="cosine", warmup_epochs=0.5)


def test_a_schedule_follows_its_formula_and_resumes_exactly(reference, tmp_path):
    """Cosine with half an epoch of warm-up: each epoch's last learning rate is the formula's,
    and a run stopped after epoch 1 and resumed ends with the uninterrupted losses."""
    import math

    from mtlc.runtime.optim import schedule_factor

    train, _ = reference
    full = tmp_path / "full"
    Trainer(toys.make_model(), TrainConfig(epochs=3, **SCHEDULED), log=lambda _: None).fit(
        train, None, full
    )
    epochs = json.loads((full / "metrics.json").read_text())["epochs"]
    per_epoch = math.ceil(400 / SCHEDULED["batch_size"])
    for e in epochs:  # the rate after the epoch's last step: that of the next step
        factor = schedule_factor("cosine", e["epoch"] * per_epoch, per_epoch, 3, 0.5)
        assert e["lr"] == pytest.approx(SCHEDULED["lr"] * factor)
    assert schedule_factor("cosine", 0, per_epoch, 3, 0.5) == pytest.approx(1 / (per_epoch // 2))
    assert epochs[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # decayed to 0 at the end
    # the schedule's shape depends on --epochs: a run cut short resumes with the same 3

    class Stopped(Trainer):
        def _save(self, out, improved):
            super()._save(out, improved)
            raise InterruptedError("stopped after epoch 1")

    run = tmp_path / "run"
    with pytest.raises(InterruptedError):
        Stopped(toys.make_model(), TrainConfig(epochs=3, **SCHEDULED), log=lambda _: None).fit(
            train, None, run
        )
    Trainer(toys.make_model(), TrainConfig(epochs=3, **SCHEDULED), log=lambda _: None).fit(
        train, None, run, resume=True
    )
    assert losses(run) == losses(full)


def test_the_step_schedule_and_bad_options():
    from mtlc.runtime.optim import schedule_factor
    from mtlc.runtime.trainer import TrainError

    assert [
        schedule_factor("step", s, 10, 6, step_epochs=2, gamma=0.5) for s in (0, 19, 20, 45)
    ] == [
        1.0,
        1.0,
        0.5,
        0.25,
    ]
    with pytest.raises(TrainError, match="unknown schedule"):
        Trainer(toys.make_model(), TrainConfig(schedule="linear"))
