"""The training loop (mtlc.runtime.trainer).

Metrics, run files, early stopping, prediction and bad data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

torch.set_num_threads(1)  # pytest runs 2 workers on 2 cores: more threads only contend
sys.path.insert(0, str(Path(__file__).parent))
import training_toys as toys  # noqa: E402

from mtlc.runtime.data import DataError  # noqa: E402
from mtlc.runtime.spec import Constraint, Weighting  # noqa: E402
from mtlc.runtime.trainer import TrainConfig, Trainer, TrainError  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    return toys.write_parquet(folder / "train.parquet", 1200, 0), toys.write_parquet(
        folder / "valid.parquet", 300, 1
    )


def test_fit_writes_metrics_curves_and_checkpoints_and_learns(data, tmp_path):
    train, valid = data
    trainer = Trainer(toys.make_model(), TrainConfig(epochs=4, batch_size=64, lr=3e-3, seed=3))
    history = trainer.fit(train, valid, tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == [
        "best.pt",
        "config.json",
        "curves.png",
        "encoder.json",
        "last.pt",
        "metrics.json",
        "model.json",
    ]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    assert set(metrics["epochs"][0]["valid"]) == {"ctr", "ctcvr"}
    assert set(metrics["epochs"][0]["valid"]["ctr"]) == {"auc", "logloss"}
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["valid"]["ctr"]["auc"] > 0.65
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("weighting", [Weighting("uncertainty"), Weighting("gradnorm", 1.5)])
def test_learned_weightings_train_without_nan(data, weighting):
    model = toys.make_model(constraints=[Constraint("ctcvr", "ctr", 0.3)], weighting=weighting)
    history = Trainer(model, TrainConfig(epochs=2, batch_size=128, grad_clip=1.0)).fit(
        data[0], data[1]
    )
    assert all(np.isfinite(r["train_loss"]) for r in history)


def test_regression_and_multiclass_metrics(data):
    trainer = Trainer(toys.make_model(toys.MIXED), TrainConfig(epochs=1, batch_size=128))
    valid = trainer.fit(data[0], data[1])[0]["valid"]
    assert set(valid["spend"]) == {"mse", "mae"} and set(valid["kind"]) == {"accuracy", "logloss"}
    predictions = trainer.predict(data[1])
    assert predictions["kind"].shape == (300, 3) and np.allclose(
        predictions["kind"].sum(1), 1, atol=1e-5
    )


def test_early_stopping_stops_when_the_monitor_stalls(data):
    config = TrainConfig(epochs=6, batch_size=256, lr=1e-9, patience=1, monitor="ctr.logloss")
    history = Trainer(toys.make_model(), config, log=lambda _: None).fit(data[0], data[1])
    assert len(history) < 6


def test_predictions_keep_input_order(data):
    train, valid = data
    trainer = Trainer(toys.make_model(), TrainConfig(epochs=1, batch_size=64, eval_batch_size=7))
    trainer.fit(train)
    whole = trainer.predict(valid)
    head = pq.read_table(valid).slice(0, 20)
    pq.write_table(head, valid.parent / "head.parquet")
    assert np.allclose(
        trainer.predict(valid.parent / "head.parquet")["ctr"], whole["ctr"][:20], atol=1e-6
    )
    assert np.allclose(whole["ctcvr"], whole["ctr"] * whole["cvr"], atol=1e-6)


def test_bad_data_leaves_no_run_folder(data, tmp_path):
    table = pq.read_table(data[0]).to_pydict()
    table["click"][5] = 3
    pq.write_table(pa.table(table), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="data row 6"):
        Trainer(toys.make_model(), TrainConfig(epochs=1)).fit(
            tmp_path / "bad.parquet", data[1], tmp_path / "run"
        )
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match="bad.parquet"):
        Trainer(toys.make_model(), TrainConfig(epochs=1)).fit(
            data[0], tmp_path / "bad.parquet", tmp_path / "run"
        )
    assert not (tmp_path / "run").exists()


def test_an_existing_run_needs_resume(data, tmp_path):
    Trainer(toys.make_model(), TrainConfig(epochs=1, batch_size=256)).fit(
        data[0], out=tmp_path / "run"
    )
    with pytest.raises(TrainError, match="--resume"):
        Trainer(toys.make_model(), TrainConfig(epochs=1)).fit(data[0], out=tmp_path / "run")


def test_from_run_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(TrainError, match="best.pt is not an mtlc checkpoint"):
        Trainer.from_run(toys.make_model(), run)
    torch.save({"weights": torch.zeros(2)}, run / "best.pt")  # a torch file, but not ours
    with pytest.raises(TrainError, match="lacks the model, loss or encoder"):
        Trainer.from_run(toys.make_model(), run)


def test_from_run_rejects_a_checkpoint_of_another_model(data, tmp_path):
    Trainer(toys.make_model(), TrainConfig(epochs=1, batch_size=256)).fit(
        data[0], out=tmp_path / "run"
    )
    with pytest.raises(TrainError) as error:
        Trainer.from_run(toys.make_model(hidden=5), tmp_path / "run")
    message = str(error.value)
    assert message.startswith("the spec differs from the one the run was trained with")
    # the node that differs, its shape in the run and in the spec
    assert "node 'bottom': bottom.0.weight has shape [8, 9] in the run, [5, 9] in the spec" in (
        message
    )
    fingerprint = json.loads((tmp_path / "run" / "model.json").read_text())
    assert fingerprint["state"]["bottom.0.weight"] == [8, 9]
    assert Trainer.from_run(toys.make_model(), tmp_path / "run").predict(data[1])["ctr"].shape == (
        300,
    )


def test_lazy_adam_trains_the_toy(data):
    config = TrainConfig(epochs=3, batch_size=64, lr=3e-3, optimizer="lazy_adam", grad_clip=5.0)
    history = Trainer(toys.make_model(), config).fit(data[0], data[1])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    with pytest.raises(TrainError, match="unknown optimizer"):
        Trainer(toys.make_model(), TrainConfig(optimizer="sgd"))


def test_cpu_training_keeps_freed_memory_once_per_process(data, monkeypatch):
    from mtlc.runtime import trainer as trainer_module

    calls = []
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: calls.append(1) or True)
    trainer_module._keep_freed_memory_once.cache_clear()
    try:
        off = TrainConfig(epochs=1, batch_size=600, keep_freed_memory=False)
        Trainer(toys.make_model(), off).fit(data[0])
        assert calls == []  # an embedding program can leave its allocator alone
        for _ in range(2):
            Trainer(toys.make_model(), TrainConfig(epochs=1, batch_size=600)).fit(data[0])
    finally:
        trainer_module._keep_freed_memory_once.cache_clear()
    assert calls == [1]


def test_lazy_adam_with_gradnorm_is_refused():
    model = toys.make_model(weighting=Weighting("gradnorm", 1.5))
    with pytest.raises(TrainError, match="gradnorm.*lazy_adam"):
        Trainer(model, TrainConfig(optimizer="lazy_adam"))
    Trainer(toys.make_model(weighting=Weighting("gradnorm", 1.5)), TrainConfig(optimizer="adam"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_training_and_prediction(data):
    trainer = Trainer(toys.make_model(), TrainConfig(epochs=2, batch_size=128, device="cuda"))
    history = trainer.fit(data[0], data[1])
    assert all(np.isfinite(r["train_loss"]) for r in history)
    assert trainer.predict(data[1])["ctr"].shape == (300,)


@pytest.mark.parametrize("monitor", ["nope", "ctr.mse", "cvr.auc"])
def test_a_monitor_that_cannot_be_computed_is_refused(monitor):
    with pytest.raises(TrainError, match="--monitor"):
        Trainer(toys.make_model(), TrainConfig(monitor=monitor))
