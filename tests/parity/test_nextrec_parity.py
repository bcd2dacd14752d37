"""NextRec 0.6.14 -> mtlc: same predictions and gradients after ``load_weights``.

Every model in several configurations (2 and 3 tasks, regression tasks,
sequence features with shared tables, dense features with and without a
linear projection, batch and layer norm, other activations and linear
layers, dropout, towers with and without hidden layers, PLE with 1 to 3
levels, names that the generated code must mangle), random weights and
inputs, at ``-O0`` and ``-O1``.
"""

from __future__ import annotations

import pytest

from tests.parity.peers import NEXTREC_MISSING, small_nextrec_features

pytest.importorskip("nextrec.models.multitask.mmoe", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.aitm import AITM  # noqa: E402
from nextrec.models.multitask.esmm import ESMM  # noqa: E402
from nextrec.models.multitask.mmoe import MMOE  # noqa: E402
from nextrec.models.multitask.ple import PLE  # noqa: E402
from nextrec.models.multitask.share_bottom import ShareBottom  # noqa: E402

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.peers import Pairing, build, compare, module, random_batch, randomize  # noqa: E402

small_features = small_nextrec_features


def wide_features() -> dict:
    """A sum-pooled sequence with its own table, one sharing a table under a non-feature name,
    a dense value and a 3-wide dense vector that NextRec projects linearly to 4."""
    return dict(
        sparse_features=[
            SparseFeature("user_id", 30, embedding_dim=6),
            SparseFeature("shop", 12, embedding_dim=6, embedding_name="shops"),
        ],
        sequence_features=[
            SequenceFeature("tags", 15, max_len=4, embedding_dim=6, combiner="sum"),
            SequenceFeature("shops_seen", 12, max_len=5, embedding_dim=6, embedding_name="shops"),
        ],
        dense_features=[DenseFeature("price"), DenseFeature("vec", input_dim=3, proj_dim=4)],
    )


def tower(dims, **options) -> dict:
    return {"hidden_dims": dims, **options}


CONFIGS = {
    "share_bottom_2": lambda: ShareBottom(
        **small_features(),
        bottom_mlp_params=tower([16, 8], dropout=0.1),
        tower_mlp_params_list=[tower([8]), tower([4, 4])],
        target=["click", "buy"],
    ),
    "share_bottom_3": lambda: ShareBottom(
        **wide_features(),
        bottom_mlp_params=tower([12], norm_type="batch_norm", activation="gelu"),
        tower_mlp_params_list=[
            tower([6]),
            tower([]),
            tower([6], norm_type="batch_norm", activation="gelu"),
        ],
        target=["click", "dwell", "buy"],
        task=["binary", "regression", "binary"],
    ),
    "share_bottom_linear": lambda: ShareBottom(
        **small_features(),
        bottom_mlp_params=tower([12, 8], activation="linear"),
        tower_mlp_params_list=[tower([6], activation="identity"), tower([6], activation="none")],
        target=["click", "buy"],
    ),
    "mmoe_2": lambda: MMOE(
        **small_features(),
        expert_mlp_params=tower([16, 8]),
        num_experts=3,
        tower_mlp_params_list=[tower([8]), tower([8])],
        target=["click", "buy"],
    ),
    "mmoe_3": lambda: MMOE(
        **wide_features(),
        expert_mlp_params=tower([12], norm_type="layer_norm", activation="silu", dropout=0.2),
        num_experts=4,
        tower_mlp_params_list=[tower([6]), tower([6, 4], activation="tanh"), tower([])],
        target=["click", "buy", "dwell"],
        task=["binary", "binary", "regression"],
    ),
    "ple_1_level": lambda: PLE(
        **small_features(),
        shared_expert_mlp_params=tower([8, 6]),
        specific_expert_mlp_params=[tower([8, 6])] * 2,
        num_shared_experts=2,
        num_specific_experts=1,
        num_levels=1,
        tower_mlp_params_list=[tower([4]), tower([4])],
        target=["click", "buy"],
    ),
    "ple_2_levels": lambda: PLE(
        **wide_features(),
        shared_expert_mlp_params=tower([8], norm_type="batch_norm"),
        specific_expert_mlp_params=[
            tower([10, 8], norm_type="batch_norm"),
            tower([8], norm_type="batch_norm"),
            tower([8]),
        ],
        num_shared_experts=1,
        num_specific_experts=2,
        num_levels=2,
        tower_mlp_params_list=[tower([4])] * 3,
        target=["click", "buy", "pay"],
    ),
    "ple_3_levels": lambda: PLE(
        **small_features(),
        shared_expert_mlp_params=tower([6], activation="prelu"),
        specific_expert_mlp_params=[tower([6], activation="prelu")] * 2,
        num_shared_experts=2,
        num_specific_experts=2,
        num_levels=3,
        tower_mlp_params_list=[tower([4]), tower([])],
        target=["click", "buy"],
    ),
    "esmm_small": lambda: ESMM(
        **small_features(),
        ctr_mlp_params=tower([16, 8], dropout=0.1),
        cvr_mlp_params=tower([16, 8], dropout=0.1),
        target=["click", "buy"],
    ),
    "esmm_wide": lambda: ESMM(
        **wide_features(),
        ctr_mlp_params=tower([8], norm_type="batch_norm"),
        cvr_mlp_params=tower([6, 6]),
        target=["ctr", "ctcvr"],
    ),
    "mmoe_python_names": lambda: MMOE(
        sparse_features=[
            SparseFeature("all", 30, embedding_dim=4),
            SparseFeature("batch", 20, embedding_dim=4),
        ],
        dense_features=[DenseFeature("forward")],
        expert_mlp_params=tower([8]),
        num_experts=2,
        tower_mlp_params_list=[tower([4]), tower([4])],
        target=["train", "to"],
    ),
    "aitm_2": lambda: AITM(
        **small_features(),
        bottom_mlp_params=tower([8, 6]),
        tower_mlp_params_list=[tower([4])] * 2,
        target=["click", "buy"],
    ),
    "aitm_3": lambda: AITM(
        **wide_features(),
        bottom_mlp_params=[tower([8, 6]), tower([10, 6]), tower([6])],
        calibrator_alpha=0.3,
        tower_mlp_params_list=[tower([4]), tower([]), tower([4])],
        target=["click", "buy", "pay"],
    ),
}


def pairing(peer, ours) -> Pairing:
    """Output columns by target; gradients of every embedding table (rows >= 1) and head."""
    targets = list(peer.target_columns)
    kinds = [peer.task] * len(targets) if isinstance(peer.task, str) else list(peer.task)
    columns = [(t, i, kind) for i, (t, kind) in enumerate(zip(targets, kinds))]
    params = []
    features = list(peer.sparse_features) + list(peer.sequence_features)
    for table, embedding in peer.embedding.embed_dict.items():
        owner = next(f.name for f in features if f.embedding_name == table)
        # NextRec builds every table with padding_idx=0: row 0 never gets a gradient there
        params.append(
            (f"table {table}", module(ours, owner).weight, embedding.weight, slice(1, None))
        )
    towers = [peer.ctr_tower, peer.cvr_tower] if isinstance(peer, ESMM) else list(peer.towers)
    heads = [targets[0], "cvr"] if isinstance(peer, ESMM) else targets
    for head, net in zip(heads, towers):
        params.append((f"head {head}", module(ours, head).weight, net.mlp[-1].weight, None))
        params.append((f"head bias {head}", module(ours, head).bias, net.mlp[-1].bias, None))
    return Pairing(columns, params)


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_nextrec(config, opt_level, tmp_path):
    peer = randomize(CONFIGS[config](), seed=len(config))
    spec = nx.spec_from(peer)
    ours = build(spec, tmp_path, opt_level)
    nx.load_weights(ours, peer)
    batch = random_batch(ours)
    compare(ours, lambda x: peer.training_adapter.forward(peer, x), batch, pairing(peer, ours))


def test_spec_keeps_names_order_and_sharing():
    spec = nx.spec_from(CONFIGS["mmoe_3"]())
    assert "group all = [user_id, shop, tags, shops_seen, price, vec]" in spec
    assert "feature shops_seen : sequence(vocab=12, dim=6, maxlen=5, pool=mean, table=shop)" in spec
    assert "feature vec : dense(dim=3)" in spec  # the projection is folded, the input stays raw
    assert "task dwell : regression(label=dwell) = to_dwell" in spec


def test_ple_last_shared_gate_is_dropped_and_gate_order_kept():
    spec = nx.spec_from(CONFIGS["ple_2_levels"]())
    assert "gate shared_g1 = softmax(all) over [click1, buy1, pay1, shared1]" in spec
    assert "gate click_g2 = softmax(click_g1) over [shared2, click2]" in spec
    assert "shared_g2" not in spec


def test_aitm_calibrator_becomes_constraints():
    spec = nx.spec_from(CONFIGS["aitm_3"]())
    assert "constrain buy <= click weight 0.15" in spec
    assert "constrain pay <= buy weight 0.15" in spec
