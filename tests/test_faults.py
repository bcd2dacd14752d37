"""Bad data, bad flags, a changed spec, a diverging run, and SIGKILL: never a traceback.

The eight cases of issue 18 one by one, then a data fuzz drawn by hypothesis
and kill-and-resume runs, both through ``benchmarks/faults.py`` (which runs them
at length: ``python benchmarks/faults.py fuzz|kill --runs N``).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import faults  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "toy.mtl").write_text(faults.SPEC)
    pq.write_table(faults.base_table(120, 0), tmp_path / "train.parquet")
    pq.write_table(faults.base_table(60, 1), tmp_path / "valid.parquet")
    return tmp_path


def train(folder: Path, *extra: str, data: str = "train.parquet") -> tuple[int, str]:
    argv = ["train", str(folder / "toy.mtl"), "--data", str(folder / data)]
    argv += ["--out", str(folder / "run"), "--batch-size", "32", *extra]
    return faults.run_cli(argv)


def write(folder: Path, name: str, **columns) -> str:
    table = faults.base_table(120, 2)
    for column, values in columns.items():
        table = table.set_column(table.schema.get_field_index(column), column, values)
    pq.write_table(table, folder / name)
    return name


def test_a_huge_integer_label_is_refused_by_name(folder):
    name = write(folder, "bad.parquet", click=pa.array([2**62] + [0] * 119))
    code, err = train(folder, "--epochs", "1", data=name)
    assert code == 2
    assert "column 'click', data row 1: a binary label must be 0 or 1" in err


@pytest.mark.parametrize("flag", ["--lr nan", "--lr inf", "--lr -1", "--weight-decay nan"])
def test_a_non_finite_or_negative_number_flag_is_refused(folder, flag, capsys):
    from mtlc.cli import main

    argv = ["train", str(folder / "toy.mtl"), "--data", str(folder / "train.parquet")]
    with pytest.raises(SystemExit) as done:
        main([*argv, "--out", str(folder / "run"), *flag.split()])
    assert done.value.code == 2
    assert "must be a" in capsys.readouterr().err


@pytest.mark.parametrize("role", ["train", "valid"])
def test_a_task_without_any_label_is_refused(folder, role):
    name = write(folder, "nolabel.parquet", buy=pa.array([None] * 120, pa.int64()))
    if role == "train":
        code, err = train(folder, "--epochs", "1", data=name)
    else:
        code, err = train(folder, "--epochs", "1", "--valid", str(folder / name))
    assert code == 2
    assert f"{name}: task 'ctcvr' has no labelled row: column 'buy' is missing on every row" in err
    assert not (folder / "run" / "last.pt").exists()


def test_an_empty_sparse_column_gets_a_warning(folder):
    name = write(folder, "nouser.parquet", user=pa.array([None] * 120, pa.string()))
    code, err = train(folder, "--epochs", "1", data=name)
    assert code == 0
    assert "mtlc: warning: feature 'user': column 'user' holds no value" in err


def test_a_changed_spec_names_the_node_that_differs(folder):
    assert train(folder, "--epochs", "1")[0] == 0
    changed = folder / "changed.mtl"
    changed.write_text(faults.SPEC.replace("mlp(all, [8])", "mlp(all, [16])"))
    argv = [
        "evaluate",
        str(changed),
        "--run",
        str(folder / "run"),
        "--data",
        str(folder / "valid.parquet"),
    ]
    code, err = faults.run_cli(argv)
    assert code == 2
    assert "the spec differs from the one the run was trained with" in err
    assert "node 'net': net.layers.0.weight has shape [8, " in err and "in the spec" in err


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(folder, monkeypatch):
    from mtlc.runtime.trainer import Trainer

    real = Trainer._step

    def poisoned(self, batch):  # the loss of epoch 2, step 3 is NaN
        total, losses = real(self, batch)
        self._n = getattr(self, "_n", 0) + 1
        if len(self.history) == 1 and self._n == 4 + 3:  # 4 steps an epoch
            total = total * float("nan")
        return total, losses

    monkeypatch.setattr(Trainer, "_step", poisoned)
    code, err = train(folder, "--epochs", "3")
    assert code == 2
    assert "the training loss is not finite at epoch 2, step 3 of 4" in err
    assert "the checkpoints of epoch 1 are kept" in err
    from mtlc.runtime.checkpoint import load_checkpoint

    assert load_checkpoint(folder / "run" / "last.pt")["epoch"] == 1


def test_a_diverging_loss_gets_one_warning(folder):
    code, err = train(folder, "--epochs", "4", "--lr", "1e6")
    assert err.count("mtlc: warning: the training loss grew from") == 1, err
    assert code in (0, 2)  # it may also go non-finite, which stops it with its message


def test_a_one_row_validation_file_prints_no_warning(folder, recwarn):
    pq.write_table(faults.base_table(120, 3).slice(0, 1), folder / "one.parquet")
    code, err = train(folder, "--epochs", "1", "--valid", str(folder / "one.parquet"))
    assert code == 0 and "Warning" not in err
    assert not [w for w in recwarn if "legend" in str(w.message)]


def test_missing_dense_values_are_refused_unless_filled(folder):
    values = [None if i % 5 == 0 else float(i) for i in range(120)]
    name = write(folder, "holes.parquet", price=pa.array(values))
    code, err = train(folder, "--epochs", "1", data=name)
    assert code == 2 and "column 'price', data row 1: the value is missing" in err
    code, err = train(folder, "--epochs", "1", "--fill-missing", "price=mean", data=name)
    assert code == 0, err
    encoder = json.loads((folder / "run" / "encoder.json").read_text())
    present = [v for v in values if v is not None]
    assert encoder["fills"]["price"] == pytest.approx([np.mean(present)])
    # predict and evaluate fill the same way, from the run
    run = str(folder / "run")
    predict = ["predict", str(folder / "toy.mtl"), "--run", run, "--data", str(folder / name)]
    code, err = faults.run_cli([*predict, "-o", str(folder / "p.parquet")])
    assert code == 0, err
    assert pq.read_table(folder / "p.parquet").num_rows == 120
    # a constant, for every dense feature
    (folder / "run").rename(folder / "run1")
    code, err = train(folder, "--epochs", "1", "--fill-missing", "-1.5", data=name)
    assert code == 0, err
    encoder = json.loads((folder / "run" / "encoder.json").read_text())
    assert encoder["fills"]["price"] == [-1.5]


# -- the fuzz --------------------------------------------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(faults.MUTATIONS),
    column=st.sampled_from(faults.COLUMNS),
    role=st.sampled_from(("train", "valid", "predict")),
    seed=st.integers(0, 10**6),
)
def test_any_mutated_file_gives_a_clean_error_or_a_run(kind, column, role, seed):
    with tempfile.TemporaryDirectory() as tmp:
        code, err = faults.fuzz_case(kind, column, role, seed, Path(tmp))
    faults.check_outcome(kind, column, role, code, err)


def test_the_fuzz_refuses_what_it_must():
    """The checker is not vacuous: a truncated file is refused, a clean one trains."""
    with tempfile.TemporaryDirectory() as tmp:
        code, _ = faults.fuzz_case("truncated", "user", "train", 1, Path(tmp))
    assert code == 2
    with tempfile.TemporaryDirectory() as tmp:
        code, err = faults.fuzz_case("none", "user", "train", 1, Path(tmp))
    assert code == 0, err


# -- kill and resume --------------------------------------------------------------------

_DRAW = random.Random(18)
KILLS = [(phase, _DRAW.randint(1, 3), _DRAW.randint(1, 12)) for phase in faults.PHASES]


@pytest.fixture(scope="module")
def killable(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill")
    spec, train_file, valid = faults.kill_setup(folder)
    return (
        spec,
        train_file,
        valid,
        faults.reference_metrics(spec, train_file, valid, folder / "ref"),
    )


@pytest.mark.parametrize("phase, epoch, step", KILLS)
def test_a_run_killed_anywhere_resumes_to_the_same_end(killable, phase, epoch, step, tmp_path):
    from mtlc.runtime.checkpoint import load_checkpoint

    spec, train_file, valid, expected = killable
    got = faults.kill_case(spec, train_file, valid, tmp_path / "run", phase, epoch, step)
    assert faults.same(got, expected), (got, expected)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] >= 1
    assert not list((tmp_path / "run").glob(".*.tmp"))  # a half-written file is cleared


def test_predict_keeps_id_columns_to_join_on(folder):
    assert train(folder, "--epochs", "1")[0] == 0
    run, data = str(folder / "run"), str(folder / "valid.parquet")
    argv = ["predict", str(folder / "toy.mtl"), "--run", run, "--data", data]
    out = folder / "p.parquet"
    code, err = faults.run_cli([*argv, "-o", str(out), "--keep", "user", "--keep", "click"])
    assert code == 0, err
    table = pq.read_table(out)
    assert table.column_names == ["user", "click", "ctr", "cvr", "ctcvr"]
    source = pq.read_table(folder / "valid.parquet")
    assert table.column("user").to_pylist() == source.column("user").to_pylist()  # input order
    code, err = faults.run_cli([*argv, "-o", str(out), "--keep", "usr"])
    assert code == 2 and "column 'usr' is missing (did you mean 'user'?" in err
    code, err = faults.run_cli([*argv, "-o", str(out), "--keep", "ctr"])
    assert code == 2 and "a task of the spec has that name" in err


def test_group_by_adds_the_gauc_of_each_binary_task(folder):
    code, err = train(
        folder, "--epochs", "1", "--valid", str(folder / "valid.parquet"), "--group-by", "user"
    )
    assert code == 0, err
    valid = json.loads((folder / "run" / "metrics.json").read_text())["epochs"][0]["valid"]
    assert set(valid["ctr"]) == {"auc", "logloss", "gauc"} and valid["ctr"]["gauc"] is not None
    argv = ["evaluate", str(folder / "toy.mtl"), "--run", str(folder / "run")]
    argv += ["--data", str(folder / "valid.parquet"), "--json", "--group-by", "user"]
    from mtlc.cli import main

    assert main(argv) == 0
    import shutil

    shutil.rmtree(folder / "run")
    code, err = train(
        folder, "--epochs", "1", "--valid", str(folder / "valid.parquet"), "--group-by", "usr"
    )
    assert code == 2 and "column 'usr' is missing" in err
    assert not (folder / "run").exists()  # refused before anything is written
