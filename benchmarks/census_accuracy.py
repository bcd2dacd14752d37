"""Census-Income (KDD): test AUC of ShareBottom, MMoE, PLE, HMoE, POSO, PEPNet, APG, STAR,
DCNv2 and an MMoE of cross networks, next to the papers and a logistic regression.

Run from the repository root (CPU-heavy; be nice to others on the machine):

    nice -n 10 .venv/bin/python benchmarks/census_accuracy.py [--epochs 10] [--seeds 0 1 2]
        [--specs hmoe poso poso_mmoe pepnet apg star]

It trains each spec (``specs/census_NAME.mtl`` for NAME in ``--specs``, by default
all of share_bottom, mmoe, ple, hmoe, poso, poso_mmoe, pepnet, apg, star, dcnv2,
dcn_mmoe, cross_stitch, snr_trans, and the funnel's esmm, escm2, escm2_dr) on the fixed
``split == train`` rows (60,111), keeps the epoch with the best mean valid AUC
(``split == val``), and scores it on ``split == test`` (19,900 rows). The
logistic regression sees the same inputs (categorical columns one-hot, numeric
columns standardised). Results go to stdout and ``benchmarks/results/census_accuracy.json``,
saved after every run; running again with the same options reuses the runs
already there (so a long benchmark can be stopped and continued).

The papers trained on the 199,523-row UCI train file, which is not available
here (see ../shared/data/census-income-kdd/README.md), so their figures are a
reference, not a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = {  # spec name (specs/census_NAME.mtl) -> row label in the table
    "share_bottom": "ShareBottom",
    "mmoe": "MMoE",
    "ple": "PLE",
    "hmoe": "HMoE",
    "poso": "POSO (MLP form)",
    "poso_mmoe": "POSO (MMoE form)",
    "pepnet": "PEPNet",
    "apg": "APG",
    "star": "STAR",
    "dcnv2": "DCNv2 bottom",
    "dcn_mmoe": "MMoE of cross networks",
    "cross_stitch": "Cross-Stitch",
    "snr_trans": "SNR-Trans",
    # the funnel: worked -> worked and earned over 50K
    "esmm": "ESMM",
    "escm2": "ESCM2 (IPW)",
    "escm2_dr": "ESCM2 (DR)",
}
SPECS = {name: ROOT / "specs" / f"census_{name}.mtl" for name in LABELS}
TASKS = ("income", "marital")
# the funnel's columns: CTR (worked), CTCVR (worked and rich) and, where the spec has the
# conditional task supervised (ESCM2), CVR: rich among the rows that worked
FUNNEL = ("worked", "worked_rich", "rich_if_work")
FUNNEL_SPECS = ("esmm", "escm2", "escm2_dr")
PAPERS = {
    "Shared-Bottom (MMoE KDD'18, Table 1)": (0.9361, 0.9915),
    "MMoE (MMoE KDD'18, Table 1)": (0.9410, 0.9926),
    "PLE (PLE RecSys'20, Table 5)": (0.9522, 0.9945),
}


def train_spec(model: type, splits: dict, seed: int, args) -> dict:
    """Train one model class with one seed; return test AUC per task and the best epoch."""
    from mtlc.runtime.trainer import TrainConfig, Trainer

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        patience=args.patience,
    )
    with tempfile.TemporaryDirectory(prefix="mtlc-census-") as run:
        trainer = Trainer(model, config, log=lambda line: print("   ", line, flush=True))
        trainer.fit(splits["train"], splits["valid"], run)
        test = Trainer.from_run(model, run).evaluate(splits["test"])
        auc = {task: metrics["auc"] for task, metrics in test.items()}
        return {"auc": auc, "best_epoch": trainer.best.get("epoch")}


def logistic_regression(splits: dict, spec: Path = SPECS["mmoe"]) -> dict:
    """Test AUC per task of a one-hot logistic regression (one per task) on ``spec``'s inputs."""
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mtlc import load_model

    model_class = load_model(spec)
    features = model_class.features
    categorical = [n for n, f in features.items() if f.kind == "sparse"]
    numeric = [n for n, f in features.items() if f.kind == "dense"]
    frames = {k: pq.read_table(v).to_pandas() for k, v in splits.items()}
    for frame in frames.values():
        frame[categorical] = frame[categorical].astype(str)
    result = {}
    for task, label in ((t.name, t.label) for t in model_class.tasks.values()):
        model = make_pipeline(
            ColumnTransformer(
                [
                    ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
                    ("num", StandardScaler(), numeric),
                ]
            ),
            LogisticRegression(max_iter=2000, C=1.0),
        )
        model.fit(frames["train"], frames["train"][label])
        p = model.predict_proba(frames["test"])[:, 1]
        result[task] = float(roc_auc_score(np.asarray(frames["test"][label]), p))
    return result


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--specs",
        nargs="+",
        choices=list(SPECS),
        default=list(SPECS),
        help="which specs/census_NAME.mtl to train (default: all); runs already in --out "
        "with the same options are reused, and other specs' runs there are kept",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "census_accuracy.json"
    )
    parser.add_argument(
        "--adult-baseline",
        action="store_true",
        help="only the logistic regression on the Adult demo spec's inputs (the figure make demo "
        "prints), written to benchmarks/results/adult_logistic.json",
    )
    args = parser.parse_args(argv)
    if args.adult_baseline:
        return adult_baseline()

    import torch

    from mtlc.cli.datasets import DatasetError, census_splits
    from mtlc.runtime.checkpoint import write_json

    torch.set_num_threads(args.threads)
    try:
        splits = census_splits()
    except DatasetError as error:
        print(f"census_accuracy: {error}", file=sys.stderr)
        return 2
    from mtlc import load_model

    models = {name: load_model(SPECS[name]) for name in args.specs}  # compiled once, up front
    # the options that shape a run (where the results go does not)
    # (--adult-baseline is a separate mode, so it is no run option either)
    skip = ("specs", "seeds", "out", "adult_baseline")
    config = {k: v for k, v in vars(args).items() if k not in skip}
    results = _previous(args.out, config)
    if results is None:
        print(
            f"census_accuracy: {args.out} holds runs made with other options; pass the same "
            f"options, or --out another file (would lose: {', '.join(_runs(args.out))})",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    for name in args.specs:
        for seed in args.seeds:
            done = {r["seed"] for r in results["runs"].get(name, [])}
            if seed in done:
                continue
            print(f"{name} seed {seed}", flush=True)
            begun = time.perf_counter()
            run = train_spec(models[name], splits, seed, args)
            run["seconds"] = round(time.perf_counter() - begun, 1)
            results["runs"].setdefault(name, []).append({"seed": seed, **run})
            write_json(args.out, results)  # a long benchmark keeps what it has measured
    if "logistic_regression" not in results:
        results["logistic_regression"] = logistic_regression(splits)
    results["seconds_this_call"] = round(time.perf_counter() - started, 1)
    write_json(args.out, results)

    print(f"\n{'model':<40} {'income AUC':>17} {'marital AUC':>17}")
    order = sorted(results["runs"], key=lambda n: list(LABELS).index(n) if n in LABELS else 99)
    for name in (n for n in order if n not in FUNNEL_SPECS):
        runs = results["runs"][name]
        cells = [summary([r["auc"][t] for r in runs]) for t in TASKS]
        label = f"mtlc {LABELS.get(name, name)} ({len(runs)} seeds)"
        print(f"{label:<40} {cells[0]:>17} {cells[1]:>17}")
    lr = results["logistic_regression"]
    print(f"{'logistic regression (same inputs)':<40} {lr['income']:>17.4f} {lr['marital']:>17.4f}")
    for paper, (income, marital) in PAPERS.items():
        print(f"{paper:<40} {income:>17.4f} {marital:>17.4f}")
    funnel = [n for n in order if n in FUNNEL_SPECS]
    if funnel:
        print(f"\n{'funnel model':<40} " + " ".join(f"{t + ' AUC':>17}" for t in FUNNEL))
    for name in funnel:
        runs = results["runs"][name]
        scored = runs[0]["auc"]
        cells = [summary([r["auc"][t] for r in runs]) if t in scored else "-" for t in FUNNEL]
        label = f"mtlc {LABELS.get(name, name)} ({len(runs)} seeds)"
        print(f"{label:<40} " + " ".join(f"{c:>17}" for c in cells))
    print(f"\nwrote {args.out}")
    return 0


def adult_baseline() -> int:
    """The logistic regression of ``make demo``'s closing lines.

    It reads the inputs of specs/adult_mmoe.mtl.
    """
    from mtlc.cli.datasets import DatasetError, adult_splits
    from mtlc.runtime.checkpoint import write_json

    try:
        splits = adult_splits()
    except DatasetError as error:
        print(f"census_accuracy: {error}", file=sys.stderr)
        return 2
    result = logistic_regression(splits, ROOT / "specs" / "adult_mmoe.mtl")
    out = ROOT / "benchmarks" / "results" / "adult_logistic.json"
    write_json(out, {"spec": "specs/adult_mmoe.mtl", "split": "test", "test_auc": result})
    print(" ".join(f"{task} {auc:.4f}" for task, auc in result.items()), f"(wrote {out})")
    return 0


def _previous(path: Path, config: dict) -> dict | None:
    """Earlier results in ``path`` made with the same options (reused), a fresh record if
    there are none, or None if ``path`` holds runs made with other options (not overwritten).
    """
    import torch

    if path.exists():
        old = json.loads(path.read_text())
        if old.get("config") == config:
            return old
        if old.get("runs"):
            return None
    return {"config": config, "torch": torch.__version__, "runs": {}}


def _runs(path: Path) -> list[str]:
    return sorted(json.loads(path.read_text()).get("runs", {}))


if __name__ == "__main__":
    sys.exit(main())
