"""Per-task evaluation metrics, computed by scikit-learn.

binary: ``auc``, ``logloss``; regression: ``mse``, ``mae``; multiclass:
``accuracy``, ``logloss``. Rows whose label is missing are left out. A metric
that is undefined on the data (AUC with one class present) is ``None``.
"""

from __future__ import annotations

import io
import math

import numpy as np
from sklearn import metrics as skm

__all__ = ["gauc", "task_metrics", "score", "higher_is_better"]

_EPS = 1e-7


def task_metrics(
    kind: str, prediction: np.ndarray, label: np.ndarray, classes: int | None = None
) -> dict:
    """Metrics of one task.

    Args:
        kind: "binary" | "regression" | "multiclass".
        prediction: probabilities [n] (binary), values [n], or probabilities [n, classes].
        label: labels [n] of present rows only.
    """
    if len(label) == 0:
        return {}
    if kind == "binary":
        p = np.clip(prediction.astype(np.float64), _EPS, 1 - _EPS)
        auc = skm.roc_auc_score(label, p) if len(np.unique(label)) == 2 else None
        return {"auc": _num(auc), "logloss": _num(skm.log_loss(label, p, labels=[0, 1]))}
    if kind == "regression":
        return {
            "mse": _num(skm.mean_squared_error(label, prediction)),
            "mae": _num(skm.mean_absolute_error(label, prediction)),
        }
    p = np.clip(prediction.astype(np.float64), _EPS, 1.0)
    p = p / p.sum(1, keepdims=True)
    return {
        "accuracy": _num(skm.accuracy_score(label, p.argmax(1))),
        "logloss": _num(skm.log_loss(label, p, labels=list(range(classes or p.shape[1])))),
    }


def gauc(label: np.ndarray, prediction: np.ndarray, groups: np.ndarray) -> float | None:
    """Group AUC: the mean of each group's AUC weighted by its rows (impressions), over the
    groups that hold both classes (a group of one class has no AUC and is left out, as
    NextRec does); None when no group has both. Vectorised: every group's AUC at once from
    within-group ranks (ties share their mean rank, as the Mann-Whitney statistic wants).
    """
    label = np.asarray(label, dtype=np.float64)
    score = np.asarray(prediction, dtype=np.float64)
    _, group = np.unique(np.asarray(groups), return_inverse=True)
    order = np.lexsort((score, group))
    group, score, label = group[order], score[order], label[order]
    n = len(label)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes) + 1.0  # 1-based within the group
    ties = np.flatnonzero(np.r_[True, (group[1:] != group[:-1]) | (score[1:] != score[:-1])])
    tie_sizes = np.diff(np.r_[ties, n])
    rank = np.repeat(np.add.reduceat(rank, ties) / tie_sizes, tie_sizes)
    positives = np.add.reduceat(label, starts)
    negatives = sizes - positives
    rank_sum = np.add.reduceat(rank * label, starts)
    both = (positives > 0) & (negatives > 0)
    if not both.any():
        return None
    auc = (rank_sum[both] - positives[both] * (positives[both] + 1) / 2) / (
        positives[both] * negatives[both]
    )
    return _num(np.average(auc, weights=sizes[both]))


def _num(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (``auc``, ``task.logloss``, ...) is better."""
    return metric.rsplit(".", 1)[-1] in ("auc", "accuracy")


def score(valid: dict[str, dict], metric: str) -> float | None:
    """One number to monitor, from ``{task: {metric: value}}``.

    ``metric`` is ``TASK.METRIC`` (one task) or a metric name, averaged over the
    tasks that report it; ``loss`` averages each task's loss-like metric
    (``logloss``, or ``mse`` for regression).
    """
    if "." in metric:
        task, name = metric.split(".", 1)
        return valid.get(task, {}).get(name)
    if metric == "loss":
        values = [m.get("logloss", m.get("mse")) for m in valid.values()]
    else:
        values = [m.get(metric) for m in valid.values()]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


KIND_METRICS = {
    "binary": ("auc", "logloss"),
    "regression": ("mse", "mae"),
    "multiclass": ("accuracy", "logloss"),
}


def monitor_problem(metric: str, tasks: dict) -> str | None:
    """Why ``metric`` cannot be monitored for these tasks, or None when it can."""
    supervised = {n: t for n, t in tasks.items() if t.label is not None}
    if "." in metric:
        task, name = metric.split(".", 1)
        if task not in supervised:
            return (
                f"--monitor {metric}: no supervised task {task!r} (tasks: {', '.join(supervised)})"
            )
        if name not in KIND_METRICS[supervised[task].kind]:
            allowed = ", ".join(KIND_METRICS[supervised[task].kind])
            return f"--monitor {metric}: task {task!r} reports {allowed}"
        return None
    available = {"loss"} | {m for t in supervised.values() for m in KIND_METRICS[t.kind]}
    if metric not in available:
        return f"--monitor {metric}: choose one of {', '.join(sorted(available))} or TASK.METRIC"
    return None


def default_monitor(tasks: dict) -> str:
    """Mean valid AUC when some supervised task is binary, else mean valid loss."""
    binary = any(t.kind == "binary" and t.label is not None for t in tasks.values())
    return "auc" if binary else "loss"


def plot_curves(history: list[dict], path) -> None:
    """Save a PNG of the training loss and each valid metric over epochs (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from mtlc.files import atomic_write

    epochs = [r["epoch"] for r in history]
    names = sorted({m for r in history for t in (r.get("valid") or {}).values() for m in t})
    tasks = sorted({t for r in history for t in (r.get("valid") or {})})
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(4 * (1 + len(names)), 3.2), squeeze=False)
    axes[0][0].plot(epochs, [r["train_loss"] for r in history], marker="o")
    axes[0][0].set(title="train loss", xlabel="epoch")
    for ax, metric in zip(axes[0][1:], names):
        for task in tasks:
            values = [(r.get("valid") or {}).get(task, {}).get(metric) for r in history]
            if any(v is not None for v in values):
                ax.plot(
                    epochs, [np.nan if v is None else v for v in values], marker="o", label=task
                )
        ax.set(title=f"valid {metric}", xlabel="epoch")
        if ax.get_legend_handles_labels()[1]:  # none where every value is undefined
            ax.legend(fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
