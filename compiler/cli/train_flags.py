"""The ``train``, ``predict``, ``evaluate`` and ``export`` subcommands: flags here, work in
``mtlc.cli.train``.

Nothing here imports torch: the handlers import the runtime when they run, so
``mtlc compile`` and ``mtlc check`` stay light.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TypeVar

from mtlc.cli.exits import USAGE
from mtlc.cli.extras import needs_extra

__all__ = ["register"]

# What ``ArgumentParser.add_subparsers`` returns.
_Subparsers = argparse._SubParsersAction
_Number = TypeVar("_Number", int, float)


def register(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``train``, ``predict`` and ``evaluate`` to the ``mtlc`` command's subparsers."""
    _train_parser(subparsers)
    _predict_parser(subparsers)
    _evaluate_parser(subparsers)
    _export_parser(subparsers)


def _column(text: str) -> tuple[str, str]:
    feature, sep, column = text.partition("=")
    if not sep or not feature or not column:
        raise argparse.ArgumentTypeError(f"expected FEATURE=COLUMN, got {text!r}")
    return feature, column


def _fill(text: str) -> tuple[str, str]:
    feature, sep, how = text.rpartition("=")
    feature = feature if sep else "*"
    if not how or (sep and not feature):
        raise argparse.ArgumentTypeError(f"expected [FEATURE=]mean|NUMBER, got {text!r}")
    if how != "mean":
        try:
            value = float(how)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected mean or a number, got {how!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {how!r}")
    return feature, how


def _positive(kind: Callable[[str], _Number]) -> Callable[[str], _Number]:
    def parse(text: str) -> _Number:
        value = kind(text)
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value

    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="the .mtl spec (or a generated .py module)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def _train_parser(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("train", help="train a spec's model on Parquet or CSV data")
    _common(p)
    p.add_argument(
        "--data", required=True, metavar="PATH", help="training data: a file or a folder"
    )
    p.add_argument("--valid", metavar="PATH", help="validation data, evaluated after each epoch")
    p.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    p.add_argument(
        "--epochs", type=_positive(int), default=10, metavar="N", help="epochs in all (default 10)"
    )
    p.add_argument(
        "--batch-size",
        type=_positive(int),
        default=1024,
        metavar="N",
        help="rows per step and process (default 1024)",
    )
    p.add_argument(
        "--lr", type=_positive(float), default=1e-3, metavar="F", help="Adam learning rate"
    )
    p.add_argument(
        "--optimizer",
        choices=("adam", "lazy_adam"),
        default="adam",
        help="adam (default) or lazy_adam (row-sparse updates of embedding tables)",
    )
    p.add_argument(
        "--schedule",
        choices=("none", "cosine", "step"),
        default="none",
        help="learning-rate schedule by step: cosine decay to 0, or x GAMMA every STEP epochs",
    )
    p.add_argument(
        "--warmup-epochs",
        type=_non_negative,
        default=0.0,
        metavar="F",
        help="linear warm-up over the first F epochs (any schedule)",
    )
    p.add_argument("--step-epochs", type=_positive(int), default=1, metavar="N")
    p.add_argument("--gamma", type=_positive(float), default=0.1, metavar="F")
    p.add_argument("--weight-decay", type=_non_negative, default=0.0, metavar="F")
    p.add_argument(
        "--grad-clip", type=_positive(float), metavar="F", help="clip the gradient norm to F"
    )
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument(
        "--patience",
        type=_positive(int),
        metavar="N",
        help="stop after N epochs without improvement of --monitor",
    )
    p.add_argument(
        "--monitor",
        metavar="METRIC",
        help="auc, loss, logloss, accuracy, mse or TASK.METRIC (default: mean auc, else loss)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out up to --epochs")
    p.add_argument(
        "--group-by",
        metavar="COLUMN",
        help="GAUC of each binary task over the groups of COLUMN (users, say) in each epoch line",
    )
    p.add_argument(
        "--column",
        type=_column,
        action="append",
        default=[],
        metavar="FEATURE=COLUMN",
        help="read FEATURE from COLUMN (repeatable)",
    )
    p.add_argument(
        "--fill-missing",
        type=_fill,
        action="append",
        default=[],
        metavar="[FEATURE=]mean|NUMBER",
        help="fill missing dense values with the training mean or a number, for FEATURE "
        "or every dense feature (repeatable; default: a missing value is an error)",
    )
    p.add_argument("--sep", default=",", help="delimiter of sequences given as strings (default ,)")
    p.add_argument(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help="feed dense columns as they are",
    )
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="no bf16 autocast on cuda")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    p.set_defaults(run=_run("train"))


def _trained_run(parser: argparse.ArgumentParser) -> None:
    """The flags of the commands that read a trained run: ``predict`` and ``evaluate``."""
    _common(parser)
    parser.add_argument(
        "--run",
        dest="run_dir",
        required=True,
        metavar="DIR",
        help="a run folder written by mtlc train",
    )
    parser.add_argument("--data", required=True, metavar="PATH")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--batch-size", type=_positive(int), default=8192, metavar="N")


def _predict_parser(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("predict", help="predict every task for every row of a data file")
    _trained_run(p)
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="the predictions, as Parquet"
    )
    p.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COLUMN",
        help="copy COLUMN of the input beside the predictions, to join them back (repeatable)",
    )
    p.set_defaults(run=_run("predict"))


def _evaluate_parser(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("evaluate", help="per-task metrics of a trained run on labelled data")
    _trained_run(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--group-by", metavar="COLUMN", help="also the GAUC over the groups of COLUMN")
    p.set_defaults(run=_run("evaluate"))


def _export_parser(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export", help="export a spec's model for serving: ONNX (.onnx) or torch.export (.pt2)"
    )
    p.add_argument("spec", metavar="SPEC", help="the .mtl spec (or a generated .py module)")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="OUT.onnx (onnxruntime) or OUT.pt2"
    )
    p.add_argument(
        "--run", dest="run_dir", metavar="DIR", help="the run whose weights to export (its best)"
    )
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--seed", type=int, default=0, help="initial weights without --run (default 0)")
    p.add_argument(
        "-O", dest="opt_level", type=int, choices=(0, 1), default=1, help="-O0 or -O1 (default)"
    )
    p.set_defaults(run=_run("export"))


def _run(name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            from mtlc.cli import train  # imports torch and pyarrow: only when a command runs

            return getattr(train, name)(args)
        except ModuleNotFoundError as error:  # an extra not installed: say which, in one line
            line = needs_extra(name, error)
            if line is None:
                raise
            print(line, file=sys.stderr)
            return USAGE

    return handler
