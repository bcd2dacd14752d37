"""Per-task losses, the product-task loss, constraints and weighting (mtlc.runtime.losses)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)  # pytest runs 2 workers on 2 cores: more threads only contend
sys.path.insert(0, str(Path(__file__).parent))
import training_toys as toys  # noqa: E402

from mtlc.runtime.losses import (  # noqa: E402
    GradNormWeighting,
    MultiTaskLoss,
    focal_with_logits,
    product_bce,
    shared_parameters,
)
from mtlc.runtime.spec import GRADNORM_ALPHA, Constraint, Task, Weighting  # noqa: E402

SATURATED = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.0])
LABELS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])


def funnel_inputs(ctr, cvr, click=LABELS, buy=LABELS):
    logits = {"ctr": ctr.clone().requires_grad_(True), "cvr": cvr.clone().requires_grad_(True)}
    labels = {"ctr": click, "ctcvr": buy}
    masks = {
        "ctr": torch.ones(len(click), dtype=torch.bool),
        "ctcvr": torch.ones(len(buy), dtype=torch.bool),
    }
    return logits, labels, masks


@pytest.mark.parametrize(
    "weighting", [Weighting("fixed"), Weighting("uncertainty"), Weighting("gradnorm", 1.5)]
)
def test_saturated_logits_give_finite_losses_and_gradients(weighting):
    loss = MultiTaskLoss(toys.FUNNEL, [Constraint("ctcvr", "ctr", 0.5)], weighting)
    logits, labels, masks = funnel_inputs(SATURATED, -SATURATED)
    total, per_task = loss(logits, labels, masks)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(per_task).all()
    assert all(torch.isfinite(v.grad).all() for v in logits.values())


@pytest.mark.parametrize("kind", ["focal", "mse", "huber"])
def test_other_losses_are_finite_on_saturated_inputs(kind):
    tasks = {"t": Task("t", "regression" if kind != "focal" else "binary", label="y", loss=kind)}
    logit = SATURATED.clone().requires_grad_(True)
    total, _ = MultiTaskLoss(tasks)(
        {"t": logit}, {"t": LABELS}, {"t": torch.ones(5, dtype=torch.bool)}
    )
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(logit.grad).all()


def test_product_loss_matches_plain_bce_of_the_product_where_that_is_safe():
    a, b = torch.randn(64), torch.randn(64)
    y = (torch.rand(64) < 0.3).float()
    p = torch.sigmoid(a) * torch.sigmoid(b)
    expected = F.binary_cross_entropy(p, y, reduction="none")
    got = product_bce(F.logsigmoid(a) + F.logsigmoid(b), y)
    assert torch.allclose(got, expected, atol=1e-5)


def test_focal_loss_down_weights_easy_rows():
    logit, y = torch.tensor([3.0, -0.2]), torch.tensor([1.0, 1.0])
    bce = F.binary_cross_entropy_with_logits(logit, y, reduction="none")
    expected = (1 - torch.sigmoid(logit)) ** 2 * bce
    assert torch.allclose(focal_with_logits(logit, y), expected, atol=1e-6)


def test_masked_rows_do_not_count():
    loss = MultiTaskLoss(toys.FUNNEL)
    logits, labels, masks = funnel_inputs(
        torch.tensor([2.0, -1.0, 5.0]),
        torch.zeros(3),
        click=torch.tensor([1.0, 0.0, 0.0]),
        buy=torch.zeros(3),
    )
    masks["ctr"] = torch.tensor([True, True, False])
    _, per_task = loss(logits, labels, masks)
    expected = F.binary_cross_entropy_with_logits(
        torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    )
    assert torch.allclose(per_task[0], expected)
    masks["ctr"][:] = False
    assert loss(logits, labels, masks)[1][0] == 0  # no label at all: no loss, no NaN


def test_constraint_penalty_is_weighted_mean_of_violations():
    loss = MultiTaskLoss(toys.FUNNEL, [Constraint("cvr", "ctr", 0.5)])
    ctr, cvr = torch.tensor([0.0, 0.0]), torch.tensor([2.0, -2.0])
    gap = torch.relu(torch.sigmoid(cvr) - torch.sigmoid(ctr))
    assert torch.allclose(loss.penalty({"ctr": ctr, "cvr": cvr}), 0.5 * gap.mean())


def test_uncertainty_weighting_follows_kendall():
    tasks = {
        "a": Task("a", "binary", label="a", loss="bce"),
        "r": Task("r", "regression", label="r", loss="mse"),
    }
    loss = MultiTaskLoss(tasks, (), Weighting("uncertainty"))
    with torch.no_grad():
        loss.weighting.log_vars.copy_(torch.tensor([0.5, -1.0]))
    losses = torch.tensor([2.0, 3.0])
    s = torch.tensor([0.5, -1.0])
    expected = torch.exp(-s[0]) * 2.0 + 0.5 * s[0] + 0.5 * torch.exp(-s[1]) * 3.0 + 0.5 * s[1]
    assert torch.allclose(loss.weighting(losses), expected)


def test_gradnorm_alpha_defaults_in_the_weighting_record():
    assert Weighting("gradnorm").alpha == GRADNORM_ALPHA == 1.5
    assert Weighting("gradnorm") == Weighting("gradnorm", 1.5)
    assert Weighting("gradnorm", 0.5).alpha == 0.5
    assert Weighting("fixed").alpha is None and Weighting("uncertainty").alpha is None
    assert MultiTaskLoss(toys.FUNNEL, (), Weighting("gradnorm")).weighting.alpha == 1.5


def test_gradnorm_finds_shared_parameters_and_balances_weights():
    torch.manual_seed(0)
    model = toys.make_model(dropout=0.0)()
    batch = {
        "user": torch.randint(2, 30, (32,)),
        "hist": torch.randint(0, 30, (32, 5)),
        "price": torch.randn(32),
    }
    logits = model.forward_logits(batch)
    loss = MultiTaskLoss(toys.FUNNEL, (), Weighting("gradnorm", 1.0))
    labels = {"ctr": (torch.rand(32) < 0.5).float(), "ctcvr": (torch.rand(32) < 0.2).float()}
    masks = {k: torch.ones(32, dtype=torch.bool) for k in labels}
    losses = loss.task_losses(logits, labels, masks)
    shared = shared_parameters(model, losses)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in shared) == [
        "bottom.0.bias",
        "bottom.0.weight",
        "heads.ctr.bias",
        "heads.ctr.weight",
        "tables.user.weight",
    ]
    weighting: GradNormWeighting = loss.weighting
    weighting.set_weight_grads(losses, shared)
    norms = torch.stack(
        [
            torch.sqrt(
                sum(
                    (g**2).sum()
                    for g in torch.autograd.grad(
                        task_loss, shared, retain_graph=True, allow_unused=True
                    )
                    if g is not None
                )
            )
            for task_loss in losses
        ]
    )
    # the task with the larger gradient norm gets its weight pushed down
    big = int(norms.argmax())
    assert weighting.task_weights.grad[big] > 0 > weighting.task_weights.grad[1 - big]
    with torch.no_grad():
        weighting.task_weights.sub_(weighting.task_weights.grad)
    weighting.renormalize()
    assert torch.allclose(weighting.task_weights.sum(), torch.tensor(2.0))


# -- ESCM2's counterfactual losses ---------------------------------------------------------

ESCM_TASKS = {
    "ctr": Task("ctr", "binary", label="click", loss="bce"),
    "imp": Task("imp", "regression"),
    "cvr_ipw": Task("cvr_ipw", "binary", label="buy", loss="ipw", propensity="ctr"),
    "cvr_dr": Task("cvr_dr", "binary", label="buy", loss="dr", propensity="ctr", imputation="imp"),
}


def _escm_batch(masked: bool, seed: int = 0):
    """Logits, labels (buy only where clicked) and masks for the tasks above, float64."""
    g = torch.Generator().manual_seed(seed)
    n = 64
    logits = {name: (torch.randn(n, generator=g, dtype=torch.float64) * 2) for name in ESCM_TASKS}
    logits["imp"] = torch.rand(n, generator=g, dtype=torch.float64)  # an imputed error
    for value in logits.values():
        value.requires_grad_(True)
    click = (torch.rand(n, generator=g) < 0.4).double()
    buy = click * (torch.rand(n, generator=g) < 0.5).double()
    labels = {"ctr": click, "cvr_ipw": buy, "cvr_dr": buy}
    masks = {name: torch.ones(n, dtype=torch.bool) for name in labels}
    if masked:  # some conversions and some clicks unknown
        masks["cvr_ipw"][::5] = False
        masks["cvr_dr"][::5] = False
        masks["ctr"][1::7] = False
    return logits, labels, masks


def _paper_losses(logits, labels, masks) -> tuple[float, float]:
    """ESCM2's IPW and DR losses (Wang et al., SIGIR 2022, eqs. of sections 3.3-3.4),
    written row by row: the mean over the exposure space D (rows whose conversion and
    click are both known) of o e / o^ (IPW), and of e^ + o (e - e^) / o^ plus the
    imputation loss o (e - e^)^2 / o^ (DR), with o^ = clip(sigmoid(ctr logit))."""
    ipw, dr, count = 0.0, 0.0, 0
    for i in range(len(labels["ctr"])):
        if not (masks["cvr_ipw"][i] and masks["ctr"][i]):
            continue
        count += 1
        o = float(labels["ctr"][i])
        p_hat = min(max(1 / (1 + math.exp(-float(logits["ctr"][i].detach()))), 1e-7), 1 - 1e-7)
        y = float(labels["cvr_ipw"][i])
        for name in ("cvr_ipw", "cvr_dr"):
            p = 1 / (1 + math.exp(-float(logits[name][i].detach())))
            e = -(y * math.log(p) + (1 - y) * math.log(1 - p))
            if name == "cvr_ipw":
                ipw += o * e / p_hat
            else:
                e_hat = float(logits["imp"][i].detach())
                dr += e_hat + o * (e - e_hat) / p_hat + o * (e - e_hat) ** 2 / p_hat
    return ipw / count, dr / count


@pytest.mark.parametrize("masked", [False, True])
def test_counterfactual_losses_equal_the_papers_equations(masked):
    logits, labels, masks = _escm_batch(masked)
    losses = MultiTaskLoss(ESCM_TASKS).task_losses(logits, labels, masks)
    names = MultiTaskLoss(ESCM_TASKS).names
    ipw, dr = _paper_losses(logits, labels, masks)
    assert abs(losses[names.index("cvr_ipw")].item() - ipw) < 1e-6 * max(1.0, ipw)
    assert abs(losses[names.index("cvr_dr")].item() - dr) < 1e-6 * max(1.0, dr)


def test_counterfactual_gradients_reach_only_their_own_towers():
    """The propensity is read without gradient; in DR, the error term trains the CVR
    logit only and the imputation term the imputed error only."""
    logits, labels, masks = _escm_batch(masked=False, seed=3)
    loss = MultiTaskLoss(ESCM_TASKS)
    losses = loss.task_losses(logits, labels, masks)
    names = loss.names
    grads = torch.autograd.grad(
        losses[names.index("cvr_dr")],
        [logits["ctr"], logits["cvr_dr"], logits["imp"]],
        allow_unused=True,
    )
    assert grads[0] is None or not grads[0].any()  # no gradient into the propensity
    assert grads[1].abs().sum() > 0 and grads[2].abs().sum() > 0
    # the DR loss reads e^ without gradient; the imputation loss gives -2 o (e - e^) / o^
    o = labels["ctr"]
    p_hat = torch.sigmoid(logits["ctr"].detach()).clamp(1e-7, 1 - 1e-7)
    e = F.binary_cross_entropy_with_logits(
        logits["cvr_dr"].detach(), labels["cvr_dr"], reduction="none"
    )
    expected = -2 * o * (e - logits["imp"].detach()) / p_hat / len(o)
    torch.testing.assert_close(grads[2], expected)
    # the CVR logit's gradient is IPW's: o / o^ * dBCE/dlogit
    expected_cvr = (
        o / p_hat * (torch.sigmoid(logits["cvr_dr"].detach()) - labels["cvr_dr"]) / len(o)
    )
    torch.testing.assert_close(grads[1], expected_cvr)


def test_counterfactual_task_is_scored_on_clicked_rows_only():
    """A rich-if-worked task is judged where the click (worked) is 1, as the paper does."""
    from mtlc.runtime.trainer import scored_rows

    task = ESCM_TASKS["cvr_ipw"]
    labels = {"ctr": np.array([1.0, 0.0, 1.0, 1.0]), "cvr_ipw": np.array([1.0, 0.0, 0.0, 1.0])}
    masks = {"ctr": np.array([True, True, False, True]), "cvr_ipw": np.array([True] * 4)}
    assert scored_rows(task, labels, masks).tolist() == [True, False, False, True]


# -- GAUC -------------------------------------------------------------------------------


def _slow_gauc(label, score, groups):
    """Per group with both classes, sklearn's AUC; the mean weighted by the group's rows."""
    from sklearn.metrics import roc_auc_score

    total = weight = 0.0
    for g in np.unique(groups):
        rows = groups == g
        if len(np.unique(label[rows])) == 2:
            total += roc_auc_score(label[rows], score[rows]) * rows.sum()
            weight += rows.sum()
    return total / weight if weight else None


@pytest.mark.parametrize("seed", range(6))
def test_gauc_equals_a_per_group_loop(seed):
    from mtlc.runtime.metrics import gauc

    rng = np.random.default_rng(seed)
    n = 400
    groups = rng.integers(0, 30, n)
    label = (rng.random(n) < 0.3).astype(float)
    score = np.round(rng.random(n), 1 if seed % 2 else 6)  # seeds with many ties
    assert gauc(label, score, groups) == pytest.approx(_slow_gauc(label, score, groups), abs=1e-12)
    assert gauc(np.ones(5), score[:5], groups[:5]) is None  # no group with both classes
