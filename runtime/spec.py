"""Model metadata that generated modules carry as class attributes.

Plain, frozen data: the trainer reads these to know the features a batch
holds, the tasks to predict and their losses, the calibration constraints
between tasks and how task losses are weighted. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    """One input column.

    Args:
        name: the batch key.
        kind: ``"sparse"`` (one id per example, int64 ``[B]``), ``"sequence"``
            (``maxlen`` ids per example, int64 ``[B, maxlen]``, 0 is padding)
            or ``"dense"`` (float ``[B]`` when ``dim`` is 1, else ``[B, dim]``).
        dim: embedding width (sparse, sequence) or number of floats (dense).
        vocab: number of ids, for sparse and sequence features.
        maxlen: sequence length, for sequence features.
        pool: ``"mean"``, ``"sum"`` or ``"max"``, for sequence features.
        table: the feature whose embedding table this one shares, if any.
    """

    name: str
    kind: str
    dim: int
    vocab: int | None = None
    maxlen: int | None = None
    pool: str | None = None
    table: str | None = None


@dataclass(frozen=True)
class Task:
    """One prediction target.

    Args:
        name: the output key.
        kind: ``"binary"``, ``"regression"`` or ``"multiclass"``.
        label: the label column; ``None`` for a latent task (no loss of its own).
        loss: ``"bce"``, ``"focal"``, ``"mse"``, ``"huber"``, ``"ce"``, ``"ipw"``,
            ``"dr"``, or ``None`` for a latent task.
        weight: the task's weight under fixed weighting.
        classes: number of classes, for multiclass tasks.
        factors: for a product task, the binary tasks whose probabilities it
            multiplies (it has no head of its own).
        propensity: for ``loss="ipw"`` or ``"dr"`` (ESCM2's counterfactual CVR losses),
            the binary task whose label marks the clicked rows and whose probability
            is their propensity.
        imputation: for ``loss="dr"``, the latent regression task that imputes the
            error of this task on every row.
    """

    name: str
    kind: str
    label: str | None = None
    loss: str | None = None
    weight: float = 1.0
    classes: int | None = None
    factors: tuple[str, ...] = ()
    propensity: str | None = None
    imputation: str | None = None

    @property
    def latent(self) -> bool:
        """True when the task has no label, hence no loss of its own."""
        return self.label is None

    @property
    def is_product(self) -> bool:
        """True when the task's prediction is a product of other tasks'."""
        return bool(self.factors)


@dataclass(frozen=True)
class Constraint:
    """``constrain left <= right weight w``: adds ``w * mean(relu(p_left - p_right))``."""

    left: str
    right: str
    weight: float


GRADNORM_ALPHA = 1.5
"""GradNorm's asymmetry parameter when a spec does not give one (Chen et al., ICML 2018)."""


@dataclass(frozen=True)
class Weighting:
    """How task losses combine: ``"fixed"``, ``"uncertainty"`` or ``"gradnorm"``.

    ``alpha`` is GradNorm's asymmetry parameter: ``GRADNORM_ALPHA`` unless
    given, for gradnorm; None for the other kinds.
    """

    kind: str = "fixed"
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "gradnorm" and self.alpha is None:
            object.__setattr__(self, "alpha", GRADNORM_ALPHA)  # frozen: set once, here
