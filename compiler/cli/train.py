"""What ``mtlc train``, ``mtlc predict`` and ``mtlc evaluate`` do, given their parsed flags.

The command line's side of training: it compiles the spec (``mtlc.api``) and
hands the model class and the data to the runtime's ``Trainer``, which knows
nothing of specs.

Each returns the exit code: 0 ok, 1 the spec has errors, 2 a usage or data
error (bad data, a run folder in the way, no CUDA). Errors print one message
to stderr, never a traceback, and leave no half-written file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtlc.api import load_model
from mtlc.cli.exits import OK, SPEC_ERRORS, USAGE
from mtlc.diagnostics import SpecError
from mtlc.files import atomic_write
from mtlc.runtime.trainer import TrainConfig, Trainer, TrainError
from mtlc.runtime.validate import DataError

__all__ = ["train", "predict", "evaluate", "export"]


class _Failed(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _guarded(command):
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _Failed as failed:
            return failed.code
        except (DataError, TrainError) as error:
            print(f"mtlc: error: {error}", file=sys.stderr)
            return USAGE
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            print(f"mtlc: error: {where}{error.strerror or error}", file=sys.stderr)
            return USAGE

    run.__name__, run.__doc__ = command.__name__, command.__doc__
    return run


def _model(spec: str, opt_level: int = 1) -> type[Any]:  # a generated class
    try:
        return load_model(spec, opt_level=opt_level)
    except SpecError as error:
        print(str(error), file=sys.stderr)
        raise _Failed(SPEC_ERRORS) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        print(f"mtlc: error: cannot load {spec}: {error}", file=sys.stderr)
        raise _Failed(USAGE) from None


@_guarded
def train(args: argparse.Namespace) -> int:
    """Train SPEC on --data, evaluating on --valid each epoch, into the run folder --out."""
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        step_epochs=args.step_epochs,
        gamma=args.gamma,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        bf16=args.bf16,
        patience=args.patience,
        monitor=args.monitor,
        standardize=args.standardize,
        group_by=args.group_by,
        columns=dict(args.column),
        fill=dict(args.fill_missing),
        sep=args.sep,
        progress=args.progress,
    )
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise DataError(f"--out {args.out} is a file; the run folder must be a folder")
    trainer = Trainer(_model(args.spec), config)
    trainer.fit(args.data, args.valid, args.out, resume=args.resume)
    if trainer.dist.is_main and trainer.best.get("epoch"):
        best = trainer.best
        print(
            f"best epoch {best['epoch']} ({best['metric']} {best['value']:.4f});"
            f" run saved in {args.out}"
        )
    return OK


def _trained(model: type[Any], args: argparse.Namespace) -> Trainer:
    """The run's --checkpoint of ``model``, evaluating --batch-size rows at a time."""
    trainer = Trainer.from_run(model, args.run_dir, device=args.device, which=args.checkpoint)
    trainer.config.eval_batch_size = args.batch_size
    return trainer


@_guarded
def predict(args: argparse.Namespace) -> int:
    """Write one column per task (a list of probabilities for multiclass), rows in input order."""
    model = _model(args.spec)
    clash = sorted(set(args.keep) & set(model.tasks))
    if clash:
        raise DataError(f"--keep {clash[0]}: a task of the spec has that name; its column is kept")
    kept = _kept_columns(args.data, args.keep)  # read first: a missing column stops here
    predictions = _trained(model, args).predict(args.data)
    columns = dict(kept)
    for name, task in model.tasks.items():
        values = predictions[name]
        flat = pa.array(values.astype("float32").reshape(-1))
        if (
            task.kind == "multiclass"
        ):  # [N, C] as lists over the flat values (no per-row Python objects)
            rows, classes = values.shape
            flat = pa.ListArray.from_arrays(
                pa.array(np.arange(0, rows * classes + 1, classes, dtype=np.int32)), flat
            )
        columns[name] = flat
    table = pa.table(columns)
    try:
        atomic_write(Path(args.output), lambda f: pq.write_table(table, f))
    except OSError as error:
        raise DataError(f"cannot write {args.output}: {error.strerror or error}") from None
    tasks = table.num_columns - len(kept)
    extra = f" (and {len(kept)} kept columns)" if kept else ""
    print(f"wrote {table.num_rows} rows x {tasks} tasks{extra} to {args.output}")
    return OK


def _kept_columns(data: str, names: list[str]) -> dict[str, pa.Array]:
    """The ``--keep`` columns of the input, rows in input order (file by file, sorted)."""
    if not names:
        return {}
    from mtlc.runtime.data import open_data, read_columns

    return read_columns(open_data(data), names)


@_guarded
def evaluate(args: argparse.Namespace) -> int:
    """Print per-task metrics of the run on --data (``--json`` for JSON)."""
    metrics = _trained(_model(args.spec), args).evaluate(args.data, group_by=args.group_by)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for task, values in metrics.items():
            shown = "  ".join(
                f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in values.items()
            )
            print(f"{task}: {shown}")
    return OK


@_guarded
def export(args: argparse.Namespace) -> int:
    """Write the model (a run's weights, or fresh ones from --seed) as ONNX or torch.export,
    then check the exported program against the model on a random batch."""
    from mtlc.runtime.export import FORMATS, TOLERANCE
    from mtlc.runtime.export import export as export_model

    out = Path(args.output)
    if out.suffix not in FORMATS:
        raise DataError(f"-o {out}: the output must end in .onnx (ONNX) or .pt2 (torch.export)")
    model_class = _model(args.spec, args.opt_level)
    if args.run_dir is not None:
        trainer = Trainer.from_run(model_class, args.run_dir, which=args.checkpoint)
        model = trainer.model
    else:
        import torch

        torch.manual_seed(args.seed)
        model = model_class()
    tmp = out.with_name(f".export-{out.name}")  # the same suffix, renamed when checked
    try:
        difference = export_model(model, tmp, seed=args.seed)
    except ModuleNotFoundError:
        raise
    except Exception as error:  # a tracer's failure: the model holds what export cannot say
        tmp.unlink(missing_ok=True)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot export {args.spec}: {type(error).__name__}: {first}") from None
    if difference > TOLERANCE:
        tmp.unlink(missing_ok=True)
        print(
            f"mtlc: error: the exported program differs from the model by {difference:.3g} "
            f"(more than {TOLERANCE:g}); nothing written",
            file=sys.stderr,
        )
        return SPEC_ERRORS
    tmp.replace(out)
    print(f"wrote {out}; largest difference from the model on a random batch: {difference:.2g}")
    return OK
