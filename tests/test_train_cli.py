"""``mtlc train / predict / evaluate`` end to end on compiled specs.

Also on slices of the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mtlc.cli import main

torch.set_num_threads(1)  # pytest runs 2 workers on 2 cores: more threads only contend

ROOT = Path(__file__).resolve().parents[1]
MMOE = ROOT / "specs" / "mmoe.mtl"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def mmoe_table(rows: int, seed: int) -> pa.Table:
    """Rows for specs/mmoe.mtl: user_id, item_id (strings), age; click, buy.

    buy only after a click.
    """
    rng = np.random.default_rng(seed)
    user, item, age = rng.integers(0, 50, rows), rng.integers(0, 20, rows), rng.normal(40, 12, rows)
    click = (rng.random(rows) < np.where(item % 2 == 0, 0.7, 0.2)).astype(np.int64)
    buy = click * (rng.random(rows) < np.where(user % 3 == 0, 0.8, 0.1))
    return pa.table(
        {
            "user_id": [f"u{u}" for u in user],
            "item_id": item,
            "age": age,
            "click": click,
            "buy": buy.astype(np.int64),
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    pq.write_table(mmoe_table(1500, 0), folder / "train.parquet")
    pq.write_table(mmoe_table(400, 1), folder / "valid.parquet")
    return folder


def mmoe_train_args(data: Path, out: Path) -> list[str]:
    """``mtlc train`` of specs/mmoe.mtl on the ``data`` fixture's files, 2 epochs, into ``out``."""
    return [
        "train",
        str(MMOE),
        "--data",
        str(data / "train.parquet"),
        "--valid",
        str(data / "valid.parquet"),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--lr",
        "3e-3",
        "--seed",
        "1",
    ]


@pytest.fixture(scope="module")
def run(data):
    out = data / "run"
    code = main(mmoe_train_args(data, out))
    assert code == 0
    return out


def test_train_records_metrics_per_epoch_and_writes_the_run(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][-1]["valid"]["ctr"]["auc"] > 0.7
    assert (run / "best.pt").exists() and (run / "curves.png").exists()


def test_resume_of_a_finished_run_changes_nothing(run, data, capsys):
    before = (run / "metrics.json").read_text()
    code = main([*mmoe_train_args(data, run), "--resume"])
    assert code == 0 and (run / "metrics.json").read_text() == before


def test_predict_writes_one_column_per_task_in_input_order(run, data, tmp_path, capsys):
    out = tmp_path / "preds.parquet"
    assert (
        main(
            [
                "predict",
                str(MMOE),
                "--run",
                str(run),
                "--data",
                str(data / "valid.parquet"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    preds = pq.read_table(out)
    assert preds.column_names == ["ctr", "cvr"] and preds.num_rows == 400
    p = preds["ctr"].to_numpy()
    item = pq.read_table(data / "valid.parquet")["item_id"].to_numpy()
    assert p[item % 2 == 0].mean() > p[item % 2 == 1].mean()  # row i's prediction belongs to row i


def test_evaluate_prints_the_same_metrics_as_json(run, data, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(MMOE),
                "--run",
                str(run),
                "--data",
                str(data / "valid.parquet"),
                "--json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    best = json.loads((run / "metrics.json").read_text())["best"]
    assert set(metrics) == {"ctr", "cvr"}
    assert abs((metrics["ctr"]["auc"] + metrics["cvr"]["auc"]) / 2 - best["value"]) < 1e-6


def test_bad_data_exits_2_with_the_place_and_writes_nothing(data, tmp_path, capsys):
    table = mmoe_table(50, 2).to_pydict()
    table["buy"][7] = float("nan")
    pq.write_table(pa.table(table), tmp_path / "bad.parquet")
    code = main(
        [
            "train",
            str(MMOE),
            "--data",
            str(tmp_path / "bad.parquet"),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "column 'buy', data row 8" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_existing_run_without_resume_and_missing_run_are_usage_errors(run, data, capsys):
    code = main(["train", str(MMOE), "--data", str(data / "train.parquet"), "--out", str(run)])
    assert code == 2 and "--resume" in capsys.readouterr().err
    code = main(
        [
            "evaluate",
            str(MMOE),
            "--run",
            str(data / "nothing"),
            "--data",
            str(data / "valid.parquet"),
        ]
    )
    assert code == 2 and "no checkpoint" in capsys.readouterr().err


def test_a_spec_with_errors_exits_1(tmp_path, data, capsys):
    spec = tmp_path / "bad.mtl"
    spec.write_text(
        "model Bad\n\nfeature a : sparse(vocab=10, dim=4)\ntask t : binary(label=y) = nothing\n"
    )
    assert (
        main(
            [
                "train",
                str(spec),
                "--data",
                str(data / "train.parquet"),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 1
    )
    assert not (tmp_path / "r").exists()


needs_shared = pytest.mark.skipif(
    not SHARED.exists(), reason=f"{SHARED} (the shared real data) is absent"
)


@needs_shared
@pytest.mark.parametrize(
    "spec, floors",
    [
        ("census_mmoe.mtl", {"income": 0.85, "marital": 0.95}),
        ("census_esmm.mtl", {"worked": 0.9, "worked_rich": 0.8}),
        ("census_escm2_dr.mtl", {"worked": 0.9, "worked_rich": 0.8, "rich_if_work": 0.7}),
    ],
)
def test_census_slice_trains_to_sensible_auc(spec, floors, tmp_path, capsys):
    from mtlc.cli.datasets import census_splits

    splits = census_splits(tmp_path / "census")
    for name, rows in (("train", 4000), ("valid", 1500)):
        pq.write_table(pq.read_table(splits[name]).slice(0, rows), tmp_path / f"{name}.parquet")
    code = main(
        [
            "train",
            str(ROOT / "specs" / spec),
            "--data",
            str(tmp_path / "train.parquet"),
            "--valid",
            str(tmp_path / "valid.parquet"),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "2",
            "--batch-size",
            "128",
            "--lr",
            "3e-3",
        ]
    )
    assert code == 0
    valid = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"][-1]["valid"]
    for task, floor in floors.items():
        assert valid[task]["auc"] > floor, (task, valid[task])


MIXED = """model Mixed

feature user_id : sparse(vocab=64, dim=4)
feature hist    : sequence(vocab=64, dim=4, maxlen=4, table=user_id)
feature age     : dense

group all = [user_id, hist, age]
tower bottom = mlp(all, [16])

task kind  : multiclass(classes=3, label=kind) = bottom
task spend : regression(label=spend, loss=huber) = bottom
"""


def test_multiclass_and_regression_predictions(tmp_path, capsys):
    rng = np.random.default_rng(0)
    user = rng.integers(0, 30, 300)
    table = pa.table(
        {
            "uid": [f"u{u}" for u in user],
            "hist": [
                [f"u{v}" for v in rng.integers(0, 30, rng.integers(0, 6))] for _ in range(300)
            ],
            "age": rng.normal(40, 10, 300),
            "kind": user % 3,
            "spend": [None if u % 5 == 0 else float(u) for u in user],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    (tmp_path / "mixed.mtl").write_text(MIXED)
    spec, data = str(tmp_path / "mixed.mtl"), str(tmp_path / "d.parquet")
    assert (
        main(
            [
                "train",
                spec,
                "--data",
                data,
                "--valid",
                data,
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "1",
                "--column",
                "user_id=uid",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                spec,
                "--run",
                str(tmp_path / "run"),
                "--data",
                data,
                "-o",
                str(tmp_path / "p.pq"),
            ]
        )
        == 0
    )
    preds = pq.read_table(tmp_path / "p.pq")
    assert preds.schema.field("kind").type == pa.list_(pa.float32())
    assert np.allclose([sum(p) for p in preds["kind"].to_pylist()], 1.0, atol=1e-5)
    assert preds["spend"].type == pa.float32() and preds.num_rows == 300
    capsys.readouterr()
    assert main(["evaluate", spec, "--run", str(tmp_path / "run"), "--data", data]) == 0
    out = capsys.readouterr().out
    assert "kind: accuracy" in out and "spend: mse" in out
