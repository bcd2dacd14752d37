"""ESCM2's IPW loss: mtlc's equals NextRec 0.4.28's ``ESCM.compute_loss``.

NextRec 0.4.28 runs apart, as in ``test_nextrec_star_parity``: a subprocess
with ``.venv/nextrec-0.4.28`` first on the path compares the two and prints one
JSON line. On the same predictions (random logits within +-5, where NextRec's
BCE on probabilities does not saturate), with some conversion labels ignored
(NextRec's ``-1``, mtlc's missing values) or none:

- IPW (``use_dr=False``): NextRec's total loss (CTR + counterfactual CVR +
  CTCVR) equals mtlc's with ``loss=ipw(ctr)``, to 1e-6: NextRec's IPW is the
  paper's.
- DR: NextRec 0.4.28 imputes the error from the CVR prediction itself and has
  no imputation tower (``docs/nextrec.md``); mtlc's ``dr`` is the paper's, with
  one. What NextRec's DR does is checked here: its gradient with respect to
  the CVR logits equals mtlc's IPW gradient (to 1e-6), so NextRec's DR trains
  as IPW does; only the value differs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.parity.peers import NEXTREC_428, NEXTREC_428_MISSING, under_nextrec_428

ROOT = Path(__file__).resolve().parents[2]
MARK = "ESCM-PARITY "
CASES = ("all_labels", "ignored_conversions")

pytestmark = pytest.mark.skipif(not (NEXTREC_428 / "nextrec").is_dir(), reason=NEXTREC_428_MISSING)


@pytest.fixture(scope="module")
def results() -> dict:
    return under_nextrec_428("tests.parity.test_nextrec_escm_parity", MARK)


def test_the_subprocess_ran_nextrec_0_4_28(results):
    assert results["version"] == "0.4.28"


@pytest.mark.parametrize("case", CASES)
def test_ipw_loss_equals_nextrecs(results, case):
    ours, theirs = results["ipw"][case]
    assert theirs > 0
    assert abs(ours - theirs) <= 1e-6 * max(1.0, abs(theirs)), (ours, theirs)


@pytest.mark.parametrize("case", CASES)
def test_nextrecs_dr_trains_the_cvr_tower_as_ipw_does(results, case):
    gap, scale = results["dr_gradient"][case]
    assert scale > 0
    assert gap <= 1e-6 * scale, (gap, scale)


# -- the comparison (in the subprocess, NextRec 0.4.28 first on the path) ---------------------


def _batch(case: str, seed: int):
    """Logits of ctr and cvr, click and buy labels, and the rows whose buy label is known."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = 48
    ctr, cvr = (torch.rand(n, generator=g, dtype=torch.float64) * 10 - 5 for _ in range(2))
    click = (torch.rand(n, generator=g) < 0.5).double()
    buy = click * (torch.rand(n, generator=g) < 0.5).double()
    known = torch.ones(n, dtype=torch.bool)
    if case == "ignored_conversions":
        known[::4] = False
    return ctr, cvr, click, buy, known


def _nextrec(use_dr: bool):
    from nextrec.basic.features import SparseFeature
    from nextrec.models.multi_task.escm import ESCM

    model = ESCM(
        sparse_features=[SparseFeature("user_id", 10, embedding_dim=2)],
        target=["ctr", "cvr", "ctcvr"],
        use_dr=use_dr,
    )
    model.compile(optimizer="adam", loss=["bce", "bce", "bce"])
    return model


def main() -> None:
    import nextrec
    import torch

    from mtlc.runtime.losses import MultiTaskLoss
    from mtlc.runtime.spec import Task

    tasks = {
        "ctr": Task("ctr", "binary", label="click", loss="bce"),
        "cvr": Task("cvr", "binary", label="buy", loss="ipw", propensity="ctr"),
        "ctcvr": Task("ctcvr", "binary", label="buy", loss="bce", factors=("ctr", "cvr")),
    }
    ours = MultiTaskLoss(tasks)
    out: dict = {"version": nextrec.__version__, "ipw": {}, "dr_gradient": {}}
    for seed, case in enumerate(CASES):
        ctr, cvr, click, buy, known = _batch(case, seed)
        cvr = cvr.clone().requires_grad_(True)
        logits = {"ctr": ctr, "cvr": cvr}
        labels = {"ctr": click, "cvr": buy, "ctcvr": buy}
        masks = {"ctr": torch.ones_like(known), "cvr": known, "ctcvr": known}
        total, _ = ours(logits, labels, masks)
        (our_grad,) = torch.autograd.grad(total, cvr)
        p_cvr = torch.sigmoid(cvr)
        y_pred = torch.stack([torch.sigmoid(ctr), p_cvr, torch.sigmoid(ctr) * p_cvr], dim=1)
        ignored = torch.where(known, buy, torch.full_like(buy, -1.0))
        y_true = torch.stack([click, ignored, ignored], dim=1)
        theirs = _nextrec(use_dr=False).compute_loss(y_pred.float(), y_true.float())
        out["ipw"][case] = [float(total), float(theirs)]
        dr = _nextrec(use_dr=True).compute_loss(y_pred, y_true)
        (their_grad,) = torch.autograd.grad(dr, cvr)
        gap = float((our_grad - their_grad).abs().max())
        out["dr_gradient"][case] = [gap, float(their_grad.abs().max())]
    print(MARK + json.dumps(out))


if __name__ == "__main__":
    main()
