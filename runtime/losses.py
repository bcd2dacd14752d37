"""Per-task losses, the product-task loss, constraint penalties and task weighting.

A model says what to train through its class attributes (``tasks``,
``constraints``, ``weighting``); ``MultiTaskLoss`` turns them into one scalar
per step. Every per-task loss is a mean over the rows whose label is present
(a missing label masks that task's loss for that row only). A counterfactual
CVR task (``loss="ipw"`` or ``"dr"``, ESCM2) is weighed by the clicks of its
propensity task (see ``counterfactual``). Losses take logits,
never rounded probabilities, and stay finite for saturated logits (±1e4).

Weighting (see docs/training.md):

- fixed: ``sum_t weight_t * L_t``.
- uncertainty (Kendall et al., CVPR 2018): a learned log-variance ``s_t`` per
  task; ``exp(-s_t) * L_t + s_t / 2`` for classification and
  ``exp(-s_t) * L_t / 2 + s_t / 2`` for regression (the paper's 1/sigma^2 and
  1/(2 sigma^2) with ``s = log sigma^2``); task weights still scale ``L_t``.
- gradnorm (Chen et al., ICML 2018): learned weights ``w_t`` (start at 1, kept
  summing to the number of tasks) trained so each task's gradient norm on the
  shared parameters, ``G_t = w_t * ||grad_W L_t||``, tracks
  ``mean(G) * r_t ** alpha`` with ``r_t`` the task's relative inverse training
  rate. ``W`` is every parameter that receives gradient from more than one task,
  found once on the first batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiTaskLoss", "product_bce", "focal_with_logits", "counterfactual", "LOSSES"]

FOCAL_GAMMA = 2.0
HUBER_DELTA = 1.0
_LOG_CLAMP = -1e-7  # log p is kept below this, so log(1 - p) stays finite


def bce(logit: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy on logits, per row: [B], [B] -> [B]."""
    return F.binary_cross_entropy_with_logits(logit, y, reduction="none")


def focal_with_logits(logit: Tensor, y: Tensor, gamma: float = FOCAL_GAMMA) -> Tensor:
    """Focal loss (Lin et al., 2017) on logits, per row: ``(1 - p_t) ** gamma * bce``."""
    ce = bce(logit, y)
    return (-torch.expm1(-ce)) ** gamma * ce  # 1 - p_t = 1 - exp(-ce)


def mse(value: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(value, y, reduction="none")


def huber(value: Tensor, y: Tensor) -> Tensor:
    return F.huber_loss(value, y, reduction="none", delta=HUBER_DELTA)


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Multiclass cross-entropy per row: logits [B, C], y int64 [B] -> [B]."""
    return F.cross_entropy(logits, y, reduction="none")


LOSSES = {"bce": bce, "focal": focal_with_logits, "mse": mse, "huber": huber, "ce": cross_entropy}


def log_prob(logits: dict[str, Tensor], factors: tuple[str, ...]) -> Tensor:
    """log p of a product task: the sum of its factors' ``logsigmoid`` ([B] each)."""
    return torch.stack([F.logsigmoid(logits[f].float()) for f in factors]).sum(0)


def product_bce(logp: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy of ``p = exp(logp)`` per row, stable for p near 0 and 1.

    ``log(1 - p) = log(-expm1(log p))``, with ``log p`` clamped just below 0.
    """
    logp = logp.clamp(max=_LOG_CLAMP)
    return -(y * logp + (1 - y) * torch.log(-torch.expm1(logp)))


PROPENSITY_CLIP = 1e-7  # a propensity is clamped to [clip, 1 - clip], as NextRec's ESCM does


def counterfactual(
    logit: Tensor, y: Tensor, click: Tensor, propensity: Tensor, imputed: Tensor | None = None
) -> Tensor:
    """ESCM2's counterfactual loss of a CVR task (Wang et al., SIGIR 2022), per row: [B].

    ``click`` is ``o`` (1 for a clicked row), ``propensity`` the CTR logit, whose
    probability ``o^`` is read without gradient and clamped; ``e`` is the BCE of
    the CVR logit against its label. IPW (``imputed`` None): ``o e / o^``. DR,
    with ``imputed`` the imputation task's ``e^``: ``e^ + o (e - e^) / o^`` (the
    paper's doubly robust loss, ``e^`` read without gradient) plus the imputation
    loss ``o (e - e^)^2 / o^`` (``e`` read without gradient): each part trains
    only its own tower. Averaged over the rows, these are the paper's losses over
    the entire exposure space.
    """
    e = bce(logit, y)
    weight = click / torch.sigmoid(propensity.detach()).clamp(PROPENSITY_CLIP, 1 - PROPENSITY_CLIP)
    if imputed is None:
        return weight * e
    fixed = imputed.detach()
    return fixed + weight * (e - fixed) + weight * (e.detach() - imputed) ** 2


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` [B] over the rows where ``mask`` [B] is True (0 when none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class MultiTaskLoss(nn.Module):
    """The training loss of a model, from its ``tasks``, ``constraints`` and ``weighting``.

    Args:
        tasks: name -> ``rt.Task``; constraints: ``rt.Constraint``s; weighting: ``rt.Weighting``.

    ``task_losses(logits, labels, masks)`` gives a [T] tensor, one loss per
    supervised task in ``self.names`` order; ``forward`` adds the weighting and
    the constraint penalties and returns ``(total, task_losses)``.
    """

    def __init__(self, tasks: dict, constraints=(), weighting=None) -> None:
        super().__init__()
        self.tasks = tasks
        self.names = [t.name for t in tasks.values() if t.label is not None]
        self._factors = {t.name: self._heads(t.name) for t in tasks.values() if t.factors}
        self._counterfactual = {n for n in self.names if tasks[n].propensity is not None}
        self._loss = {
            n: LOSSES[tasks[n].loss]
            for n in self.names
            if not tasks[n].factors and n not in self._counterfactual
        }
        self.constraints = [(c.left, c.right, float(c.weight)) for c in constraints]
        weights = torch.tensor([float(tasks[n].weight) for n in self.names])
        regression = torch.tensor([tasks[n].kind == "regression" for n in self.names])
        kind = getattr(weighting, "kind", "fixed")
        if kind == "uncertainty":
            self.weighting: nn.Module = UncertaintyWeighting(weights, regression)
        elif kind == "gradnorm":
            self.weighting = GradNormWeighting(len(self.names), float(weighting.alpha))
        else:
            self.weighting = FixedWeighting(weights)

    def _heads(self, name: str) -> tuple[str, ...]:
        task = self.tasks[name]
        if not task.factors:
            return (name,)
        return tuple(h for f in task.factors for h in self._heads(f))

    def task_losses(
        self, logits: dict[str, Tensor], labels: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> Tensor:
        """One masked-mean loss per supervised task: [T]."""
        losses = []
        for name in self.names:
            y = labels[name]
            mask = masks[name]
            if name in self._factors:
                per_row = product_bce(log_prob(logits, self._factors[name]), y)
            elif name in self._counterfactual:  # on the rows whose click is known too
                task = self.tasks[name]
                imputed = logits[task.imputation].float() if task.imputation else None
                click, propensity = labels[task.propensity], logits[task.propensity].float()
                per_row = counterfactual(logits[name].float(), y, click, propensity, imputed)
                mask = mask & masks[task.propensity]
            else:
                per_row = self._loss[name](logits[name].float(), y)
            losses.append(masked_mean(per_row, mask))
        return torch.stack(losses)

    def probability(self, logits: dict[str, Tensor], name: str) -> Tensor:
        """The predicted probability of a binary task, head or product: [B]."""
        if name in self._factors:
            return torch.exp(log_prob(logits, self._factors[name]))
        return torch.sigmoid(logits[name].float())

    def penalty(self, logits: dict[str, Tensor]) -> Tensor:
        """Sum of ``w * mean(relu(p_left - p_right))`` over the constraints (a scalar)."""
        total = torch.zeros((), device=next(iter(logits.values())).device)
        for left, right, weight in self.constraints:
            gap = self.probability(logits, left) - self.probability(logits, right)
            total = total + weight * torch.relu(gap).mean()
        return total

    def forward(
        self, logits: dict[str, Tensor], labels: dict[str, Tensor], masks: dict[str, Tensor]
    ):
        losses = self.task_losses(logits, labels, masks)
        return self.weighting(losses) + self.penalty(logits), losses


class FixedWeighting(nn.Module):
    """``sum_t weight_t * L_t``."""

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, losses: Tensor) -> Tensor:
        return (self.weights * losses).sum()


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018): learned log-variances ``s_t`` ([T], start at 0)."""

    def __init__(self, weights: Tensor, regression: Tensor) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(len(weights)))
        self.register_buffer("weights", weights)
        self.register_buffer("scale", torch.where(regression, 0.5, 1.0))

    def forward(self, losses: Tensor) -> Tensor:
        precision = torch.exp(-self.log_vars)
        return (self.scale * precision * self.weights * losses + 0.5 * self.log_vars).sum()


class GradNormWeighting(nn.Module):
    """Chen et al. (2018): learned task weights balancing gradient norms on shared parameters.

    The trainer calls ``set_weight_grads(losses, shared)`` before the backward of
    the total loss (which uses the weights as constants) and ``renormalize()``
    after the optimizer step.
    """

    def __init__(self, num_tasks: int, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.task_weights = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("initial", torch.zeros(num_tasks))

    def forward(self, losses: Tensor) -> Tensor:
        return (self.task_weights.detach() * losses).sum()

    def set_weight_grads(self, losses: Tensor, shared: list[nn.Parameter]) -> None:
        """Put d(gradnorm loss)/d(task weights) into ``task_weights.grad``."""
        if not bool(self.initial.any()):
            self.initial.copy_(losses.detach())
        norms = []
        for t in range(len(losses)):
            grads = torch.autograd.grad(losses[t], shared, retain_graph=True, allow_unused=True)
            norms.append(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
        norms_t = torch.stack(norms).detach()  # ||grad_W L_t||, [T]
        with torch.enable_grad():
            weights = self.task_weights.detach().requires_grad_(True)
            g = weights * norms_t
            ratio = losses.detach() / self.initial.clamp(min=1e-12)
            target = (g.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
            (grad,) = torch.autograd.grad((g - target).abs().sum(), weights)
        self.task_weights.grad = grad

    @torch.no_grad()
    def renormalize(self) -> None:
        """Keep the weights positive and summing to the number of tasks."""
        w = self.task_weights.clamp_(min=1e-4)
        w.mul_(len(w) / w.sum())


def shared_parameters(model: nn.Module, losses: Tensor) -> list[nn.Parameter]:
    """The parameters that receive gradient from more than one task's loss ([T] losses)."""
    params = [p for p in model.parameters() if p.requires_grad]
    hits = torch.zeros(len(params), dtype=torch.int64)
    for t in range(len(losses)):
        grads = torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True)
        hits += torch.tensor([g is not None and bool(g.abs().sum() > 0) for g in grads])
    return [p for p, h in zip(params, hits.tolist()) if h > 1]
