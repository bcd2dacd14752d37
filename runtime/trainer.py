"""The training loop: ``Trainer(Model, TrainConfig(...)).fit(train, valid, out)``.

The trainer reads only the model's class attributes (``features``, ``tasks``,
``constraints``, ``weighting``) and calls ``forward_logits`` for the loss and
``forward`` for metrics and predictions. A run folder (``out``) gets the files
listed in ``mtlc.runtime.checkpoint``; every data check happens before anything
is written there. Resuming restarts from the last epoch-end checkpoint: model,
optimizer, loss weights, history and RNG state are restored, and the data order
of an epoch depends only on ``(seed, epoch)``, so on CPU a resumed run repeats
the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import functools
import math
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mtlc.runtime import checkpoint as ckpt
from mtlc.runtime import distributed
from mtlc.runtime.batches import BUFFER_ROWS, iter_batches
from mtlc.runtime.data import DataFiles, Encoder, Rows, open_data, read_columns
from mtlc.runtime.losses import GradNormWeighting, MultiTaskLoss, shared_parameters
from mtlc.runtime.metrics import (
    default_monitor,
    gauc,
    higher_is_better,
    monitor_problem,
    plot_curves,
    score,
    task_metrics,
)
from mtlc.runtime.optim import (
    OPTIMIZERS,
    SCHEDULES,
    clip_grad_norm_,
    keep_freed_memory,
    make_optimizer,
    schedule_factor,
)

__all__ = ["Trainer", "TrainConfig", "TrainError"]


class TrainError(ValueError):
    """A training request that cannot be carried out (the message says why)."""


@dataclass
class TrainConfig:
    """Options of a run; saved in its ``config.json``.

    ``optimizer``: ``adam`` (torch's Adam, fused where possible) or ``lazy_adam``
    (row-sparse updates of embedding tables; see ``mtlc.runtime.optim``).
    ``batch_size`` is per process (the global batch is ``batch_size * world``).
    ``patience``: stop after that many epochs without improvement of ``monitor``
    (``auc``, ``loss``, ``logloss``, ``TASK.METRIC``; default mean AUC, or mean
    loss without binary tasks); None never stops early.
    ``keep_freed_memory``: on CPU, have glibc keep freed memory for reuse
    (``mtlc.runtime.optim.keep_freed_memory``, process-wide, once per process;
    also off with ``MTLC_KEEP_FREED_MEMORY=0``). Turn it off when the trainer
    runs inside a larger process whose allocator should stay as it is.
    """

    epochs: int = 10
    batch_size: int = 1024
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "none"
    warmup_epochs: float = 0.0
    step_epochs: int = 1
    gamma: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    device: str = "cpu"
    bf16: bool = True
    patience: int | None = None
    monitor: str | None = None
    standardize: bool = True
    columns: dict[str, str] = field(default_factory=dict)
    fill: dict[str, str] = field(default_factory=dict)
    group_by: str | None = None  # a column: GAUC of each binary task in the validation lines
    sep: str = ","
    progress: bool | None = None
    eval_batch_size: int = 8192
    buffer_rows: int = BUFFER_ROWS
    keep_freed_memory: bool = True


class Trainer:
    """Trains, evaluates and predicts with a generated model.

    Args:
        model: the generated class (built here after seeding) or an instance.
        config: the run's options.
        log: where per-epoch lines go (rank 0 only).
    """

    def __init__(
        self,
        model: type[nn.Module] | nn.Module,
        config: TrainConfig | None = None,
        log: Callable[[str], None] = print,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        problem = _config_problem(self.config)
        if problem:
            raise TrainError(problem)
        if self.config.optimizer not in OPTIMIZERS:
            raise TrainError(
                f"unknown optimizer {self.config.optimizer!r}: "
                f"choose one of {', '.join(OPTIMIZERS)}"
            )
        self.dist = distributed.setup(self.config.device)
        self.device = _device(self.config.device, self.dist.local_rank)
        torch.manual_seed(self.config.seed)
        self.model = (model() if isinstance(model, type) else model).to(self.device)
        spec = type(self.model)
        if not hasattr(self.model, "forward_logits") or not hasattr(spec, "tasks"):
            raise TrainError(
                f"{spec.__name__} is not a generated mtlc model (no tasks / forward_logits)"
            )
        self.loss = MultiTaskLoss(spec.tasks, spec.constraints, spec.weighting).to(self.device)
        self.encoder = Encoder(
            spec.features,
            spec.tasks,
            dict(self.config.columns),
            self.config.standardize,
            self.config.sep,
            fill=dict(self.config.fill),
        )
        if self.config.optimizer == "lazy_adam" and self.dist.active:
            raise TrainError("--optimizer lazy_adam is not supported with torchrun; use adam")
        if self.config.optimizer == "lazy_adam" and isinstance(
            self.loss.weighting, GradNormWeighting
        ):
            # GradNorm takes gradient norms of the shared parameters; a sparse embedding
            # gradient lists a repeated id once per occurrence, so its norm would be wrong.
            raise TrainError(
                f"{spec.__name__} uses 'weighting gradnorm', which --optimizer lazy_adam does not "
                "support (its sparse embedding gradients give wrong norms); use adam"
            )
        self.optimizer = make_optimizer(
            self.model,
            self.config.optimizer,
            self.config.lr,
            self.config.weight_decay,
            extra_params=self.loss.parameters(),
        )
        # every optimized parameter, listed once (the step must not rebuild it)
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.monitor = self.config.monitor or default_monitor(spec.tasks)
        problem = monitor_problem(self.monitor, spec.tasks)
        if problem:
            raise TrainError(problem)
        self.log = log if self.dist.is_main else (lambda _: None)
        warn = warn or (lambda message: print(f"mtlc: warning: {message}", file=sys.stderr))
        self.warn = warn if self.dist.is_main else (lambda _: None)
        self.history: list[dict] = []
        self.best: dict = {}
        self._shared: list[nn.Parameter] | None = None
        self._rows = 0
        self._initial_loss: float | None = None  # the run's first step's loss
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self._warned_diverging = False

    # -- fitting ----------------------------------------------------------------

    def fit(
        self,
        data: str | Path,
        valid: str | Path | None = None,
        out: str | Path | None = None,
        resume: bool = False,
    ) -> list[dict]:
        """Train up to ``config.epochs`` epochs in all; return the history (one dict per epoch)."""
        train_files = open_data(data)
        valid_files = open_data(valid) if valid is not None else None
        out = Path(out) if out is not None else None
        if out is not None and out.is_dir() and self.dist.is_main:
            for stale in out.glob(".*.tmp"):  # a write cut short (a killed process)
                stale.unlink(missing_ok=True)
        start = (
            self._restore(out)
            if resume and out is not None and (out / ckpt.LAST).exists()
            else None
        )
        if start is None:
            if out is not None and (out / ckpt.LAST).exists():
                raise TrainError(
                    f"{out} already holds a run: pass --resume to continue it, "
                    "or choose another --out"
                )
            self._rows = self.encoder.fit(train_files).rows
            for message in self.encoder.warnings:
                self.warn(message)
        else:
            self.encoder.check(train_files)
        if valid_files is not None:
            self.encoder.check(valid_files)
            if self.config.group_by:  # its column must be there before the first epoch
                read_columns(valid_files, [self.config.group_by])
        if out is not None and self.dist.is_main and start is None:
            ckpt.write_json(out / ckpt.ENCODER, self.encoder.state())
            ckpt.write_json(out / ckpt.CONFIG, asdict(self.config))
            ckpt.write_json(out / ckpt.MODEL, fingerprint(self.model))
        if self.device.type == "cpu" and self.config.keep_freed_memory:
            _keep_freed_memory_once()
        self._schedule(start or 0)
        for epoch in range((start or 0) + 1, self.config.epochs + 1):
            if self._stopped():
                self.log(
                    f"stopped early: {self.monitor} did not improve "
                    f"for {self.config.patience} epochs"
                )
                break
            record = self._epoch(train_files, valid_files, epoch)
            self._warn_if_diverging(record)
            self.history.append(record)
            self._update_best(record)
            self.log(_epoch_line(record, self.config.epochs))
            if out is not None and self.dist.is_main:
                self._save(out, improved=self.best.get("epoch") == epoch)
        distributed.finish(self.dist)
        return self.history

    def _epoch(self, train: DataFiles, valid: DataFiles | None, epoch: int) -> dict:
        started = time.perf_counter()
        rows, sums = self._train_epoch(train, epoch)
        if self.dist.active:
            totals = distributed.all_sum([rows, *sums.tolist()], self.device)
            rows, sums = totals[0], torch.tensor(totals[1:], dtype=torch.float64)
        seconds = time.perf_counter() - started
        means = (sums.cpu() / max(rows, 1)).tolist()
        record = {
            "epoch": epoch,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "train_loss": means[0],
            "train_task_loss": dict(zip(self.loss.names, means[1:])),
        }
        if valid is not None:
            metrics = self.evaluate(valid, check=False) if self.dist.is_main else None
            record["valid"] = distributed.broadcast(metrics) if self.dist.active else metrics
        record.update(seconds=round(seconds, 3), examples_per_s=round(rows / max(seconds, 1e-9), 1))
        return record

    def _train_epoch(self, train: DataFiles, epoch: int) -> tuple[int, torch.Tensor]:
        """One pass over this rank's batches.

        Returns (rows, row-weighted sums of [total, *task] losses).
        """
        self.model.train()
        config, started, rows = self.config, time.perf_counter(), 0
        sums = torch.zeros(1 + len(self.loss.names), dtype=torch.float64, device=self.device)
        batches = iter_batches(
            train,
            self.encoder,
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            epoch=epoch,
            rank=self.dist.rank,
            world=self.dist.world,
            buffer_rows=config.buffer_rows,
        )
        steps = (
            math.ceil(self._rows / (config.batch_size * self.dist.world)) if self._rows else None
        )
        show = self._progress()
        bar = tqdm(
            batches, total=steps, desc=f"epoch {epoch}", leave=False, unit="batch", disable=not show
        )
        finite = []  # one flag a step, read once at the end (no device sync per step)
        for step, batch in enumerate(bar):
            total_loss, task_losses = self._step(batch)
            finite.append(torch.isfinite(total_loss))
            if self._initial_loss is None:  # the scale a sane loss keeps (one read, once)
                self._initial_loss = float(total_loss)
            rows += batch.size
            sums += torch.cat([total_loss.reshape(1), task_losses]).double() * batch.size
            if show and step % 20 == 0:  # reading the loss waits for the device: not every step
                speed = rows * self.dist.world / (time.perf_counter() - started)
                bar.set_postfix(loss=f"{float(sums[0]) / max(rows, 1):.4f}", ex_s=f"{speed:.0f}")
        bar.close()
        if finite and not bool(torch.stack(finite).all()):
            step = int((~torch.stack(finite)).nonzero()[0]) + 1
            last = (
                f"the checkpoints of epoch {epoch - 1} are kept" if epoch > 1 else "nothing saved"
            )
            raise TrainError(
                f"the training loss is not finite at epoch {epoch}, step {step} of {len(finite)}: "
                f"the run stops ({last}); try a smaller --lr, or --grad-clip"
            )
        return rows, sums

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on this rank's part of a global batch.

        Returns (total loss, task losses).
        """
        batch = batch.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        if batch.size:
            with self._autocast():
                logits = self.model.forward_logits(batch.inputs)
            losses = self.loss.task_losses(logits, batch.labels, batch.masks)
            weighting = self.loss.weighting
            if isinstance(weighting, GradNormWeighting):
                if self._shared is None:
                    self._shared = shared_parameters(self.model, losses)
                weighting.set_weight_grads(losses, self._shared)
            total = weighting(losses) + self.loss.penalty(logits)
            total.backward()
        else:
            total = torch.zeros((), device=self.device)
            losses = torch.zeros(len(self.loss.names), device=self.device)
        if self.dist.active:
            distributed.reduce_gradients(self._params, batch.size / max(batch.global_size, 1))
        if self.config.grad_clip:
            clip_grad_norm_(self._params, self.config.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if isinstance(self.loss.weighting, GradNormWeighting):
            self.loss.weighting.renormalize()
        return total.detach(), losses.detach()

    def _autocast(self):
        enabled = self.device.type == "cuda" and self.config.bf16
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _progress(self) -> bool:
        wanted = self.config.progress if self.config.progress is not None else sys.stderr.isatty()
        return bool(wanted) and self.dist.is_main

    # -- best, early stopping, saving --------------------------------------------

    def _update_best(self, record: dict) -> None:
        """Track the best epoch: by ``monitor`` on the valid data, else by training loss.

        An epoch whose monitor is undefined (an AUC on one class) counts as no improvement.
        """
        metric = self.monitor if "valid" in record else "train_loss"
        value = score(record["valid"], metric) if "valid" in record else record["train_loss"]
        old = self.best.get("value")
        improved = value is not None and (
            old is None or (value > old if higher_is_better(metric) else value < old)
        )
        if improved:
            self.best = {
                "epoch": record["epoch"],
                "metric": metric,
                "value": value,
                "bad_epochs": 0,
            }
        else:
            self.best = {"metric": metric, "value": old, **self.best}
            self.best["bad_epochs"] = self.best.get("bad_epochs", 0) + 1

    def _schedule(self, done_epochs: int) -> None:
        """The learning-rate schedule, by optimizer step, from the rows of an epoch.

        A resumed run sets its step count from the epochs done: the schedule is a
        function of the step, so it continues exactly where it was.
        """
        config = self.config
        if config.schedule == "none" and not config.warmup_epochs:
            return
        per_epoch = max(math.ceil(self._rows / (config.batch_size * self.dist.world)), 1)
        factor = functools.partial(
            schedule_factor,
            config.schedule,
            steps_per_epoch=per_epoch,
            epochs=config.epochs,
            warmup_epochs=config.warmup_epochs,
            step_epochs=config.step_epochs,
            gamma=config.gamma,
        )
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: factor(step), last_epoch=done_epochs * per_epoch - 1
        )

    def _warn_if_diverging(self, record: dict) -> None:
        """Warn when the training loss has grown a hundredfold over its lowest so far."""
        losses = [r["train_loss"] for r in self.history]
        if self._initial_loss is not None and math.isfinite(self._initial_loss):
            losses.append(self._initial_loss)
        low = min((x for x in losses if x > 0), default=None)
        if self._warned_diverging or low is None:
            return
        if record["train_loss"] > 100 * low:
            self._warned_diverging = True
            self.warn(
                f"the training loss grew from {low:.4g} to {record['train_loss']:.4g} "
                f"by epoch {record['epoch']}: the learning rate may be too high (--lr)"
            )

    def _stopped(self) -> bool:
        patience = self.config.patience
        return patience is not None and self.best.get("bad_epochs", 0) >= patience

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.history[-1]["epoch"] if self.history else 0,
            "history": self.history,
            "best": self.best,
            "rows": self._rows,
            "initial_loss": self._initial_loss,
            "encoder": self.encoder.state(),
            "rng": ckpt.rng_state(),
        }

    def _save(self, out: Path, improved: bool) -> None:
        state = self._state()
        if improved:
            ckpt.save_checkpoint(out / ckpt.BEST, state)
        ckpt.save_checkpoint(out / ckpt.LAST, state)
        ckpt.write_json(out / ckpt.METRICS, {"epochs": self.history, "best": self.best})
        plot_curves(self.history, out / ckpt.CURVES)

    def _restore(self, out: Path) -> int:
        """Load ``out/last.pt`` into this trainer; return the epoch it ended."""
        state = self._checkpoint(out / ckpt.LAST)
        self.load_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.history, self.best, self._rows = (
            list(state["history"]),
            dict(state["best"]),
            state["rows"],
        )
        self._initial_loss = state.get("initial_loss")
        ckpt.set_rng_state(state["rng"])
        self.log(f"resuming {out} after epoch {state['epoch']}")
        return int(state["epoch"])

    def load_state(self, state: dict) -> None:
        """Load the model, loss weights and encoder of a checkpoint, to evaluate or predict.

        A checkpoint of another spec is refused before loading, naming the nodes that differ.
        """
        differences = state_differences(state["model"], self.model.state_dict())
        if differences:
            shown = "; ".join(differences[:5])
            more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
            raise TrainError(
                f"the spec differs from the one the run was trained with "
                f"({type(self.model).__name__}): {shown}{more}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.loss.load_state_dict(state["loss"])
        except RuntimeError as error:
            raise TrainError(
                f"the checkpoint does not fit {type(self.model).__name__}: "
                f"{str(error).splitlines()[0]}"
            ) from None
        spec = type(self.model)
        self.encoder = Encoder.from_state(spec.features, spec.tasks, state["encoder"])

    @classmethod
    def from_run(
        cls, model: type[nn.Module], run: str | Path, device: str = "cpu", which: str = "best"
    ) -> Trainer:
        """A trainer holding a run's best (or last) checkpoint, ready to evaluate or predict."""
        run = Path(run)
        path = run / (ckpt.BEST if which == "best" else ckpt.LAST)
        if not path.exists():
            path = run / ckpt.LAST
        if not path.exists():
            raise TrainError(
                f"{run}: no checkpoint found (expected {ckpt.BEST} or {ckpt.LAST}); train first"
            )
        config = TrainConfig(device=device)
        trainer = cls(model, config)
        trainer.load_state(trainer._checkpoint(path))
        return trainer

    def _checkpoint(self, path: Path) -> dict:
        """A checkpoint of an mtlc run, or a TrainError that names the file (not a traceback)."""
        try:
            state = ckpt.load_checkpoint(path, self.device)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
            raise TrainError(
                f"{path} is not an mtlc checkpoint ({str(error).splitlines()[0]})"
            ) from None
        if not isinstance(state, dict) or not {"model", "loss", "encoder"} <= state.keys():
            raise TrainError(
                f"{path} is not an mtlc checkpoint (it lacks the model, loss or encoder state)"
            )
        return state

    # -- evaluation and prediction ------------------------------------------------

    def predict(self, data: str | Path | DataFiles, check: bool = True) -> dict[str, np.ndarray]:
        """Predictions of every task for every row, in input order: ``{task: array}``."""
        files = data if isinstance(data, DataFiles) else open_data(data)
        if check:
            self.encoder.check(files, labels=False)
        return self._predict(files, labels=False)[0]

    def evaluate(
        self, data: str | Path | DataFiles, check: bool = True, group_by: str | None = None
    ) -> dict[str, dict]:
        """Metrics of every supervised task: ``{task: {metric: value}}``.

        ``check``: validate the rows first. ``group_by`` (default: the config's): a column
        whose groups (users, scenarios) give each binary task its GAUC (``metrics.gauc``).
        """
        files = data if isinstance(data, DataFiles) else open_data(data)
        group_by = group_by or self.config.group_by
        groups = read_columns(files, [group_by])[group_by] if group_by else None
        if check:
            self.encoder.check(files, labels=True)
        predictions, rows = self._predict(files, labels=True)
        metrics = {}
        for task in type(self.model).tasks.values():
            if task.label is None:
                continue
            mask = scored_rows(task, rows.labels, rows.masks)
            metrics[task.name] = task_metrics(
                task.kind, predictions[task.name][mask], rows.labels[task.name][mask], task.classes
            )
            if groups is not None and task.kind == "binary" and metrics[task.name]:
                keys = groups.to_numpy(zero_copy_only=False)[mask]
                metrics[task.name]["gauc"] = gauc(
                    rows.labels[task.name][mask], predictions[task.name][mask], keys
                )
        return metrics

    @torch.no_grad()
    def _predict(self, files: DataFiles, labels: bool) -> tuple[dict[str, np.ndarray], Rows]:
        """Every task's predictions, in input order, and the rows' labels and masks.

        The labels and masks come as ``Rows`` without inputs (empty without ``labels``).
        """
        self.model.eval()
        parts: dict[str, list[np.ndarray]] = {}
        truth: list[Rows] = []
        for batch in iter_batches(files, self.encoder, self.config.eval_batch_size, labels=labels):
            batch = batch.to(self.device)
            with self._autocast():
                out = self.model(batch.inputs)
            for name, value in out.items():
                parts.setdefault(name, []).append(value.float().cpu().numpy())
            truth.append(Rows({}, batch.labels, batch.masks).map(lambda t: t.cpu().numpy()))
        predictions = {k: np.concatenate(v) for k, v in parts.items()}
        return predictions, Rows.concat(truth) if truth else Rows({}, {}, {})


@functools.cache
def _keep_freed_memory_once() -> bool:
    """``keep_freed_memory()`` the first time a CPU run starts in this process.

    See ``mtlc.runtime.optim``.
    """
    return keep_freed_memory()


def _device(name: str, local_rank: int) -> torch.device:
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available here (use --device cpu)")
        return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
    if name != "cpu":
        raise TrainError(f"unknown device {name!r} (use cpu or cuda)")
    return torch.device("cpu")


def _epoch_line(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"train_loss {record['train_loss']:.4f}"]
    for task, metrics in (record.get("valid") or {}).items():
        values = " ".join(
            f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in metrics.items()
        )
        parts.append(f"{task}: {values}")
    parts.append(f"({record['seconds']:.1f}s, {record['examples_per_s']:.0f} ex/s)")
    return "  ".join(parts)


def scored_rows(task, labels: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
    """The rows a task's metrics read: those with its label; for a counterfactual CVR task
    (``loss="ipw"`` or ``"dr"``), only those clicked too, as ESCM2 scores its CVR."""
    mask = masks[task.name]
    if task.propensity is not None:
        mask = mask & masks[task.propensity] & (labels[task.propensity] == 1)
    return mask


def _config_problem(config: TrainConfig) -> str | None:
    """What is wrong with ``config``'s numbers (the command line checks them first)."""
    for name in ("lr", "weight_decay"):
        value = getattr(config, name)
        if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
            kind = "positive" if name == "lr" else "non-negative"
            return f"{name} must be a {kind} number, got {value}"
    if config.schedule not in SCHEDULES:
        return f"unknown schedule {config.schedule!r}: choose one of {', '.join(SCHEDULES)}"
    if not (math.isfinite(config.warmup_epochs) and config.warmup_epochs >= 0):
        return f"warmup_epochs must be a number >= 0, got {config.warmup_epochs}"
    if config.step_epochs < 1 or not (math.isfinite(config.gamma) and config.gamma > 0):
        return f"step_epochs must be >= 1 and gamma > 0, got {config.step_epochs}, {config.gamma}"
    if config.grad_clip is not None and not (
        math.isfinite(config.grad_clip) and config.grad_clip > 0
    ):
        return f"grad_clip must be a positive number, got {config.grad_clip}"
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(config, name) < 1:
            return f"{name} must be at least 1, got {getattr(config, name)}"
    return None


def fingerprint(model: nn.Module) -> dict:
    """The run's record of its model: the class and the shape of every state tensor."""
    return {
        "class": type(model).__name__,
        "state": {key: list(value.shape) for key, value in model.state_dict().items()},
    }


def state_differences(saved: dict, wanted: dict) -> list[str]:
    """How a checkpoint's model state differs from a model's, by node (the key's first part)."""
    found = []
    for key in sorted(set(saved) | set(wanted)):
        node = key.split(".")[0]
        if key not in wanted:
            found.append(f"node {node!r}: {key} is in the run, not in the spec")
        elif key not in saved:
            found.append(f"node {node!r}: {key} is in the spec, not in the run")
        elif tuple(saved[key].shape) != tuple(wanted[key].shape):
            found.append(
                f"node {node!r}: {key} has shape {list(saved[key].shape)} in the run, "
                f"{list(wanted[key].shape)} in the spec"
            )
    return found
