"""NextRec 0.6.14's CrossStitch -> mtlc: same predictions and gradients.

Configurations: 2 and 3 tasks, a regression task, with and without a shared
layer, 1 to 3 task layers, relu, tanh and prelu, batch and layer norm,
dropout, towers with and without hidden layers, per-task tower parameters, a
dense vector projected linearly (folded into the first Linears); random
weights (the stitch units off their identity start) and inputs, at ``-O0``
and ``-O1``: predictions to 1e-5 in eval mode, and the gradients of the tables,
dense inputs, heads and every cross-stitch weight to 1e-4 relative.
"""

from __future__ import annotations

import pytest

from tests.parity.peers import NEXTREC_MISSING, close_grad, small_nextrec_features

pytest.importorskip("nextrec.models.multitask.cross_stitch", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.cross_stitch import CrossStitch  # noqa: E402

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.peers import (  # noqa: E402
    Pairing,
    converted_and_compared,
    module,
    nextrec_pairing,
    randomize,
)


def projected_features() -> dict:
    return dict(
        sparse_features=[
            SparseFeature("user_id", 30, embedding_dim=5),
            SparseFeature("city", 9, embedding_dim=3),
        ],
        dense_features=[DenseFeature("price"), DenseFeature("vec", input_dim=3, proj_dim=4)],
    )


CONFIGS = {
    "two_tasks_defaults": lambda: CrossStitch(
        **small_nextrec_features(),
        task_mlp_params={"hidden_dims": [8, 6]},
        tower_mlp_params={"hidden_dims": [5]},
        target=["click", "buy"],
    ),
    "three_tasks_shared_tanh": lambda: CrossStitch(
        **small_nextrec_features(),
        shared_mlp_params={"hidden_dims": [10]},
        task_mlp_params={"hidden_dims": [8, 6, 4], "activation": "tanh", "dropout": 0.2},
        tower_mlp_params={"hidden_dims": []},
        target=["click", "buy", "pay"],
    ),
    "regression_norms_projected": lambda: CrossStitch(
        **projected_features(),
        task_mlp_params={"hidden_dims": [7], "norm_type": "batch_norm", "activation": "prelu"},
        tower_mlp_params_list=[
            {"hidden_dims": [4], "norm_type": "layer_norm"},
            {"hidden_dims": []},
        ],
        target=["click", "dwell"],
        task=["binary", "regression"],
    ),
}


def pairing(peer, ours) -> Pairing:
    heads = [(t, tower.mlp[-1]) for t, tower in zip(peer.target_columns, peer.towers)]
    return nextrec_pairing(peer, ours, heads)


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_nextrec(config, opt_level, tmp_path):
    peer = randomize(CONFIGS[config](), seed=len(config))
    ours = converted_and_compared(peer, tmp_path, opt_level, pairing)
    for level, unit in enumerate(peer.cross_stitch_layers, start=1):
        theirs = unit.cross_stitch_weight.grad  # [T, T, d]: row t is task t's unit
        for t, task in enumerate(peer.target_columns):
            mine = module(ours, f"{task}_s{level}").weight.grad
            close_grad(mine, theirs[t], f"cross_stitch_layers.{level - 1} row {t}")


def test_the_spec_reads_as_columns_and_units():
    spec = nx.spec_from(CONFIGS["three_tasks_shared_tanh"]())
    # the shared layer takes the task layers' activation and dropout, as NextRec sets it
    assert "tower shared = mlp(all, [10], activation=tanh, dropout=0.2)" in spec
    assert "tower pay_h1 = mlp(shared, [8], activation=tanh, dropout=0.2)" in spec
    assert "gate buy_s2 = cross_stitch(buy_h2) over [click_h2, buy_h2, pay_h2]" in spec
    assert "task pay : binary(label=pay) = pay_s3" in spec
    spec = nx.spec_from(CONFIGS["two_tasks_defaults"]())
    assert "tower click_h1 = mlp(all, [8])" in spec  # no shared layer: the features
