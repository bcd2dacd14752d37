"""Bad data and faults: a data fuzz and a kill-and-resume test, at length.

    .venv/bin/python benchmarks/faults.py fuzz --runs 400   # mutated tables, train/predict
    .venv/bin/python benchmarks/faults.py kill --runs 20    # SIGKILL at drawn points, resume

The test suite runs a few of each (``tests/test_faults.py``); this script runs
many and prints the counts.

**Fuzz.** A small funnel table (``tests/training_toys.py``'s columns) is
mutated one way (a column dropped, duplicated or retyped; nulls, NaN or
infinities; huge or negative ids and labels; lists where scalars belong; the
file truncated or replaced by random bytes; zero or one row), then used as the
training data, as the validation data, and as the data of ``predict``, in
process through ``mtlc.cli.main``. Each run must end with exit 0 or with exit 2
and one ``mtlc: error:`` line: never an exception. Mutations that no correct
reading can accept (``must_refuse``) must give exit 2.

**Kill.** ``mtlc train`` (3 epochs with validation) is killed with SIGKILL at
a drawn point: at start-up (before the first step), at a drawn step of a drawn
epoch, inside a validation pass, or half-way through writing ``last.pt``; then
``--resume`` runs (killed again, if the draw says so) until the run is done.
It must end with the uninterrupted run's metrics: the same training losses and
validation AUCs (to 1e-6), and a loadable ``best.pt``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SPEC = """model Toy "a small funnel"

feature user  : sparse(vocab=64, dim=4)
feature hist  : sequence(vocab=64, dim=4, maxlen=5, table=user)
feature price : dense

group all = [user, hist, price]
tower net = mlp(all, [8])

task ctr   : binary(label=click) = net
task cvr   : binary              = net
task ctcvr : binary(label=buy)   = ctr * cvr
"""
COLUMNS = ("user", "hist", "price", "click", "buy")
MUTATIONS = (
    "none",
    "drop",
    "duplicate",
    "retype_string",
    "retype_float",
    "retype_bool",
    "retype_list",
    "nulls",
    "all_nulls",
    "nan",
    "inf",
    "huge",
    "negative",
    "truncated",
    "random_bytes",
    "zero_rows",
    "one_row",
)
LABELS = ("click", "buy")


def must_refuse(kind: str, column: str, role: str) -> bool:
    """Whether no reading of the mutated file can be right, so the run must refuse it."""
    if kind in ("truncated", "random_bytes", "zero_rows"):
        return True
    if role == "predict" and column in LABELS:  # predict reads no label
        return False
    if kind == "drop":
        return True
    numeric = column == "price" or column in LABELS
    if numeric and kind in ("nan", "inf", "retype_string", "retype_list"):
        return True
    if column in LABELS and kind in ("huge", "negative", "retype_float"):
        return True
    return column == "price" and kind in ("nulls", "all_nulls")  # no --fill-missing given


def base_table(rows: int = 80, seed: int = 0) -> pa.Table:
    sys.path.insert(0, str(ROOT / "tests"))
    import training_toys

    table = training_toys.funnel_table(rows, seed)
    return table.select(list(COLUMNS))


def mutate(table: pa.Table, kind: str, column: str, rng: random.Random, path: Path) -> None:
    """Write ``table`` mutated by ``kind`` on ``column`` to ``path`` (Parquet)."""
    n = table.num_rows
    index = table.schema.get_field_index(column)
    array = table.column(column).combine_chunks()
    if kind == "drop":
        table = table.remove_column(index)
    elif kind == "duplicate":
        table = pa.Table.from_arrays([*table.columns, array], names=[*table.column_names, column])
    elif kind.startswith("retype_"):
        target = kind.removeprefix("retype_")
        values = array.to_pylist()
        if target == "string":
            new = pa.array([None if v is None else f"x{v}" for v in values])
        elif target == "float":
            new = pa.array([None if v is None else float(len(str(v))) + 0.5 for v in values])
        elif target == "bool":
            new = pa.array([None if v is None else bool(hash(str(v)) % 2) for v in values])
        else:
            new = pa.array([[v, v] for v in values])
        table = table.set_column(index, column, new)
    elif kind in ("nulls", "all_nulls"):
        rows = set(range(n)) if kind == "all_nulls" else set(rng.sample(range(n), max(1, n // 5)))
        values = [None if i in rows else v for i, v in enumerate(array.to_pylist())]
        table = table.set_column(index, column, pa.array(values, type=array.type))
    elif kind in ("nan", "inf", "huge", "negative"):
        special = {"nan": float("nan"), "inf": float("inf"), "huge": 2**62, "negative": -7}[kind]
        values = array.to_pylist()
        values[rng.randrange(n)] = special
        if kind in ("nan", "inf") or isinstance(values[0], float):
            values = [
                None if v is None else float(v) if not isinstance(v, str) else v for v in values
            ]
        try:
            new = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a string column: the value as text
            new = pa.array([None if v is None else str(v) for v in values])
        table = table.set_column(index, column, new)
    elif kind == "zero_rows":
        table = table.slice(0, 0)
    elif kind == "one_row":
        table = table.slice(0, 1)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    if kind == "truncated":
        data = data[: rng.randrange(8, len(data) - 8)]
    elif kind == "random_bytes":
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
    path.write_bytes(data)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``mtlc`` in process: (exit code, stderr). An exception escaping it is a failure."""
    from mtlc.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def fuzz_case(kind: str, column: str, role: str, seed: int, folder: Path) -> tuple[int, str]:
    """One mutated file used as ``role`` (train, valid or predict); returns (code, stderr)."""
    rng = random.Random(seed)
    spec = folder / "toy.mtl"
    spec.write_text(SPEC)
    clean = folder / "clean.parquet"
    pq.write_table(base_table(seed=seed), clean)
    bad = folder / "bad.parquet"
    mutate(base_table(seed=seed + 1), kind, column, rng, bad)
    common = ["--epochs", "1", "--batch-size", "32"]
    if role == "train":
        return run_cli(
            ["train", str(spec), "--data", str(bad), "--out", str(folder / "r"), *common]
        )
    if role == "valid":
        return run_cli(
            [
                "train",
                str(spec),
                "--data",
                str(clean),
                "--valid",
                str(bad),
                "--out",
                str(folder / "r"),
                *common,
            ]
        )
    run = folder / "trained"
    if not (run / "last.pt").exists():
        code, err = run_cli(["train", str(spec), "--data", str(clean), "--out", str(run), *common])
        assert code == 0, err
    return run_cli(
        [
            "predict",
            str(spec),
            "--run",
            str(run),
            "--data",
            str(bad),
            "-o",
            str(folder / "p.parquet"),
        ]
    )


def check_outcome(kind: str, column: str, role: str, code: int, err: str) -> None:
    """Exit 0, or exit 2 with an error line; a must-refuse mutation is refused."""
    assert code in (0, 2), (kind, column, role, code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("mtlc")]
        assert lines and "Traceback" not in err, (kind, column, role, err)
    if must_refuse(kind, column, role):
        assert code == 2, (kind, column, role, "was accepted")


# -- kill and resume ---------------------------------------------------------------------

CHILD = """
import io, os, signal, sys
import torch
from mtlc.runtime import checkpoint as ckpt
from mtlc.runtime.trainer import TrainConfig, Trainer
from mtlc.api import load_model

spec, train, valid, out, phase, epoch, step = sys.argv[1:8]
epoch, step = int(epoch), int(step)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


real_save = torch.save


def half_save(state, file):  # writes half of last.pt, then dies
    buffer = io.BytesIO()
    real_save(state, buffer)
    data = buffer.getvalue()
    file.write(data[: len(data) // 2])
    file.flush()
    os.fsync(file.fileno())
    die()


class Killed(Trainer):
    def _train_epoch(self, data, e):
        self._epoch_now, self._in_epoch = e, 0
        if phase == "startup" and e == epoch:
            die()
        return super()._train_epoch(data, e)

    def _step(self, batch):
        self._in_epoch += 1
        if phase == "step" and self._epoch_now == epoch and self._in_epoch == step:
            die()
        return super()._step(batch)

    def evaluate(self, data, check=True):
        if phase == "validation" and getattr(self, "_epoch_now", 0) == epoch:
            die()
        return super().evaluate(data, check)

    def _save(self, out, improved):
        if phase == "checkpoint" and self.history[-1]["epoch"] == epoch:
            torch.save = half_save
        super()._save(out, improved)


config = TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=5)
resume = (__import__("pathlib").Path(out) / ckpt.LAST).exists()
Killed(load_model(spec), config, log=lambda _: None).fit(train, valid, out, resume=resume)
"""
PHASES = ("startup", "step", "validation", "checkpoint")


def kill_setup(folder: Path) -> tuple[Path, Path, Path]:
    spec = folder / "toy.mtl"
    spec.write_text(SPEC)
    train, valid = folder / "train.parquet", folder / "valid.parquet"
    pq.write_table(base_table(400, 0), train)
    pq.write_table(base_table(120, 1), valid)
    return spec, train, valid


def reference_metrics(spec: Path, train: Path, valid: Path, out: Path) -> list[dict]:
    """The uninterrupted run's epochs: training loss and valid AUC per task."""
    child(spec, train, valid, out, "none", 0, 0)
    return epochs(out)


def epochs(run: Path) -> list[dict]:
    data = json.loads((run / "metrics.json").read_text())["epochs"]
    return [
        {"train_loss": e["train_loss"], **{t: m["auc"] for t, m in e["valid"].items()}}
        for e in data
    ]


def child(
    spec: Path, train: Path, valid: Path, out: Path, phase: str, epoch: int, step: int
) -> int:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(spec),
            str(train),
            str(valid),
            str(out),
            phase,
            str(epoch),
            str(step),
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode not in (0, -9):
        raise AssertionError(f"the child failed ({done.returncode}):\n{done.stderr}")
    return done.returncode


def kill_case(spec, train, valid, out: Path, phase: str, epoch: int, step: int) -> list[dict]:
    """Kill a run at (phase, epoch, step), then resume it to the end; return its epochs."""
    code = child(spec, train, valid, out, phase, epoch, step)
    assert code == -9, f"the child was not killed at {phase} {epoch} {step}"
    child(spec, train, valid, out, "none", 0, 0)  # --resume (or a fresh start) to the end
    return epochs(out)


def same(got: list[dict], expected: list[dict]) -> bool:
    return len(got) == len(expected) and all(
        g.keys() == e.keys() and all(abs(g[k] - e[k]) <= 1e-6 for k in e)
        for g, e in zip(got, expected)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("fuzz", "kill"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "fuzz":
            trained = Path(tmp) / "shared"
            trained.mkdir()
            for _ in range(args.runs):
                kind, column = rng.choice(MUTATIONS), rng.choice(COLUMNS)
                role = rng.choice(("train", "valid", "predict"))
                folder = trained if role == "predict" else Path(tempfile.mkdtemp(dir=tmp))
                code, err = fuzz_case(kind, column, role, rng.randrange(10**6), folder)
                check_outcome(kind, column, role, code, err)
                counts["runs"] += 1
                counts["refused" if code == 2 else "succeeded"] += 1
                counts[f"{role} {'refused' if code == 2 else 'succeeded'}"] += 1
        else:
            spec, train, valid = kill_setup(Path(tmp))
            expected = reference_metrics(spec, train, valid, Path(tmp) / "reference")
            for i in range(args.runs):
                phase = rng.choice(PHASES)
                epoch, step = rng.randint(1, 3), rng.randint(1, 12)
                got = kill_case(spec, train, valid, Path(tmp) / f"run{i}", phase, epoch, step)
                ok = same(got, expected)
                counts["runs"] += 1
                counts[f"{phase} {'same end' if ok else 'DIFFERENT END'}"] += 1
                assert ok, (phase, epoch, step, got, expected)
    print(json.dumps(dict(sorted(counts.items())), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
