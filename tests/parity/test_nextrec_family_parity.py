"""NextRec 0.6.14's HMoE, POSO (MLP and MMoE) and PEPNet -> mtlc: same predictions and gradients.

Each model in several configurations (2 and 3 tasks, a regression task,
sequence features with shared tables, dense features with and without a
projection, several pc / domain / user / item features, depths, gate MLPs
with norms, dropout and other activations, POSO and PEPNet without biases),
random weights and inputs, at ``-O0`` and ``-O1``: predictions to 1e-5 in
eval mode, and the gradients of the embedding tables, the dense inputs,
the heads (the prediction bias included) and the sigmoid gates' last
layers to 1e-4 relative. Then the options the converter refuses.
"""

from __future__ import annotations

import pytest
import torch

from tests.parity.peers import NEXTREC_MISSING, close_grad

pytest.importorskip("nextrec.models.multitask.hmoe", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.hmoe import HMOE  # noqa: E402
from nextrec.models.multitask.pepnet import PEPNet  # noqa: E402
from nextrec.models.multitask.poso import POSO  # noqa: E402

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.peers import (  # noqa: E402
    Pairing,
    converted_and_compared,
    module,
    nextrec_pairing,
    randomize,
)


def small_features() -> dict:
    """Two ids and a scene, a history sharing item_id's table, one dense value."""
    return dict(
        sparse_features=[
            SparseFeature("user_id", 30, embedding_dim=4),
            SparseFeature("item_id", 20, embedding_dim=4),
            SparseFeature("scene", 5, embedding_dim=3),
        ],
        sequence_features=[
            SequenceFeature("hist", 20, max_len=6, embedding_dim=4, embedding_name="item_id")
        ],
        dense_features=[DenseFeature("age")],
    )


def wide_features(mlp_projection: bool = False) -> dict:
    """A sum-pooled sequence, a table shared under another name, a dense value, a
    dense vector projected to 4 (linearly, or by an mlp), and an unused-by-POSO id."""
    projection = dict(projection_type="mlp", mlp_hidden_dims=[5]) if mlp_projection else {}
    return dict(
        sparse_features=[
            SparseFeature("user_id", 30, embedding_dim=6),
            SparseFeature("shop", 12, embedding_dim=6, embedding_name="shops"),
            SparseFeature("scene", 4, embedding_dim=3),
            SparseFeature("city", 9, embedding_dim=2),
        ],
        sequence_features=[
            SequenceFeature("tags", 15, max_len=4, embedding_dim=6, combiner="sum"),
            SequenceFeature("shops_seen", 12, max_len=5, embedding_dim=6, embedding_name="shops"),
        ],
        dense_features=[
            DenseFeature("price"),
            DenseFeature("vec", input_dim=3, proj_dim=4, **projection),
        ],
    )


def mlp(dims, **options) -> dict:
    return {"hidden_dims": dims, **options}


HMOE_CONFIGS = {
    "hmoe_2": lambda: HMOE(
        **small_features(),
        expert_mlp_params=mlp([8, 6]),
        num_experts=3,
        tower_mlp_params_list=[mlp([4]), mlp([4])],
        task_weight_mlp_params=[{}, {}],
        target=["click", "buy"],
    ),
    "hmoe_3_gate_mlps": lambda: HMOE(
        **wide_features(),
        expert_mlp_params=mlp([8], norm_type="layer_norm", activation="silu", dropout=0.2),
        num_experts=4,
        gate_mlp_params=mlp([5], norm_type="batch_norm", activation="tanh", dropout=0.1),
        tower_mlp_params_list=[mlp([8]), mlp([]), mlp([6, 8], activation="gelu")],
        task_weight_mlp_params=[
            mlp([4], norm_type="layer_norm", activation="prelu"),
            {},
            mlp([3, 3], dropout=0.2),
        ],
        target=["click", "dwell", "buy"],
        task=["binary", "regression", "binary"],
    ),
    "hmoe_identity_towers": lambda: HMOE(
        **small_features(),
        expert_mlp_params=mlp([6], activation="prelu"),
        num_experts=2,
        gate_mlp_params=mlp([4, 3], norm_type="batch_norm"),
        tower_mlp_params_list=[mlp([])] * 3,
        task_weight_mlp_params=[mlp([5], activation="gelu")] * 3,
        target=["click", "buy", "pay"],
    ),
}

POSO_CONFIGS = {
    "poso_mlp_2": lambda: POSO(
        **small_features(),
        main_sparse_features=["user_id", "item_id"],
        main_sequence_features=["hist"],
        main_dense_features=["age"],
        pc_sparse_features=["scene"],
        pc_sequence_features=[],
        pc_dense_features=["age"],
        tower_mlp_params_list=[mlp([8, 4]), mlp([6])],
        target=["click", "buy"],
    ),
    "poso_mlp_3_no_bias": lambda: POSO(
        **wide_features(),
        main_sparse_features=["shop", "user_id"],
        main_sequence_features=["tags"],
        main_dense_features=["vec", "price"],
        pc_sparse_features=["scene", "user_id"],
        pc_sequence_features=["shops_seen"],
        pc_dense_features=["vec"],
        tower_mlp_params_list=[
            mlp([6, 5], activation="tanh", gate_hidden_dim=5, scale_factor=1.5),
            mlp([4], activation="prelu", dropout=0.1, use_bias=True),
            mlp([5, 4, 3]),
        ],
        gate_hidden_dim=7,
        gate_scale_factor=2.5,
        gate_use_bias=False,
        target=["click", "dwell", "buy"],
        task=["binary", "regression", "binary"],
    ),
    "poso_mmoe_2": lambda: POSO(
        **small_features(),
        main_sparse_features=["user_id", "item_id"],
        main_sequence_features=["hist"],
        main_dense_features=["age"],
        pc_sparse_features=["scene", "user_id"],
        pc_sequence_features=[],
        pc_dense_features=[],
        tower_mlp_params_list=[mlp([4]), mlp([])],
        architecture="mmoe",
        num_experts=3,
        expert_hidden_dims=[8, 6],
        expert_activation="gelu",
        expert_dropout=0.1,
        expert_gate_hidden_dim=5,
        expert_gate_scale_factor=1.5,
        target=["click", "buy"],
    ),
    "poso_mmoe_3": lambda: POSO(
        **wide_features(),
        main_sparse_features=["user_id", "shop"],
        main_sequence_features=["shops_seen", "tags"],
        main_dense_features=["price", "vec"],
        pc_sparse_features=["scene"],
        pc_sequence_features=[],
        pc_dense_features=["vec", "price"],
        tower_mlp_params_list=[
            mlp([4], norm_type="batch_norm"),
            mlp([4, 3], activation="tanh"),
            mlp([]),
        ],
        architecture="mmoe",
        num_experts=2,
        expert_hidden_dims=[6],
        expert_activation="prelu",
        target=["click", "buy", "dwell"],
        task=["binary", "binary", "regression"],
    ),
}

PEPNET_CONFIGS = {
    "pepnet_domain_only": lambda: PEPNet(
        **small_features(),
        mlp_params=mlp([8, 6]),
        feature_gate_mlp_params={"hidden_dim": 16},
        domain_features=["scene"],
        target=["click", "buy"],
    ),
    "pepnet_priors_no_bias": lambda: PEPNet(
        **wide_features(),
        mlp_params=mlp(
            [8, 6], norm_type="batch_norm", dropout=[0.1, 0.0], activation=["relu", "tanh"]
        ),
        feature_gate_mlp_params={"hidden_dim": 7, "activation": "silu", "use_bn": True},
        gate_mlp_params={"activation": "gelu", "dropout": 0.1, "use_bn": True},
        domain_features=["scene", "price"],
        user_features=["user_id", "city"],
        item_features=["tags", "shop"],
        use_bias=False,
        target=["click", "dwell", "buy"],
        task=["binary", "regression", "binary"],
    ),
    "pepnet_mlp_projection": lambda: PEPNet(
        **wide_features(mlp_projection=True),
        mlp_params=mlp([5], norm_type="layer_norm", activation="prelu"),  # NextRec ignores LN
        feature_gate_mlp_params={"hidden_dim": 6, "dropout": 0.2},
        gate_mlp_params={"hidden_dim": 4, "activation": "tanh"},
        domain_features=["vec", "scene"],
        item_features=["shops_seen"],
        target=["click", "buy"],
    ),
    "pepnet_no_hidden_layers": lambda: PEPNet(
        **small_features(),
        mlp_params=mlp([]),
        feature_gate_mlp_params={"hidden_dim": 5},
        domain_features=["scene", "age"],
        user_features=["user_id"],
        target=["click", "buy"],
    ),
}

CONFIGS = {**HMOE_CONFIGS, **POSO_CONFIGS, **PEPNET_CONFIGS}


def read_features(peer) -> set[str]:
    """The features NextRec's forward reads (POSO reads only its main and pc features)."""
    if isinstance(peer, POSO):
        return {f.name for f in peer.main_features + peer.pc_features}
    return {f.name for f in peer.all_features}


def heads(peer) -> list:
    """Each task's last Linear (the mtlc head's weight)."""
    if isinstance(peer, HMOE):
        return list(peer.tower_logits)
    if isinstance(peer, PEPNet):
        return [block.mlp_layers[-1] for block in peer.ppnet_blocks]
    if peer.architecture == "mlp":
        return list(peer.tower_heads)
    return [tower.mlp[-1] for tower in peer.towers]


def _last_weight(ours, node: str, theirs: torch.Tensor) -> tuple:
    """(mtlc's last-layer weight of sigmoid gate ``node``, NextRec's[, the net's index]): the
    gate's own Linear, or at -O1 its net in the bank of the gates that read its condition."""
    for bank, members in getattr(type(ours), "gate_banks", {}).items():
        if node in members:
            return getattr(ours, bank).weight, theirs, members.index(node)
    return module(ours, node).linear.weight, theirs


def sigmoid_gates(peer, ours) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(what, mtlc's last-layer weight of a sigmoid gate, NextRec's) for POSO and PEPNet."""
    pairs = []
    if isinstance(peer, PEPNet):
        pairs.append(("epnet", module(ours, "epnet").linear.weight, peer.epnet.gate.mlp[-2].weight))
        for t, block in enumerate(peer.ppnet_blocks):
            task = peer.target_columns[t]
            for k, gate in enumerate(block.gate_layers):
                node = f"{task}_g{k}"
                pairs.append((node, *_last_weight(ours, node, gate.gate.mlp[-2].weight)))
    elif isinstance(peer, POSO) and peer.architecture == "mlp":
        for t, tower in enumerate(peer.towers):
            task = peer.target_columns[t]
            for k, layer in enumerate(tower.layers):
                node = f"{task}_g{k + 1}"
                pairs.append((node, *_last_weight(ours, node, layer.gate.fc2.weight)))
    elif isinstance(peer, POSO):
        gate = module(ours, "shared_pc")
        for e, net in enumerate(peer.mmoe.expert_pc_gates):
            pairs.append((f"shared_pc.{e}", gate.weight, net.fc2.weight, e))
    return pairs


def pairing(peer, ours) -> Pairing:
    """Output columns by target; gradients of every table read (rows >= 1) and head."""
    heads_ = zip(peer.target_columns, heads(peer))
    return nextrec_pairing(peer, ours, heads_, read=read_features(peer))


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_nextrec(config, opt_level, tmp_path):
    peer = randomize(CONFIGS[config](), seed=len(config))
    ours = converted_and_compared(peer, tmp_path, opt_level, pairing)
    # the head's bias is the tower's bias (if any) plus NextRec's prediction bias
    prediction_bias = peer.head.prediction.bias.grad
    for t, (task, last) in enumerate(zip(peer.target_columns, heads(peer))):
        close_grad(module(ours, task).bias.grad, prediction_bias[t : t + 1], f"head bias {task}")
        if last.bias is not None:
            close_grad(module(ours, task).bias.grad, last.bias.grad, f"tower bias {task}")
    for what, mine, theirs, *expert in sigmoid_gates(peer, ours):
        close_grad(mine.grad[expert[0]] if expert else mine.grad, theirs.grad, f"gate {what}")


def test_hmoe_fusion_gates_read_the_others_through_stopgrad():
    spec = nx.spec_from(CONFIGS["hmoe_3_gate_mlps"]())
    assert "gate to_click = softmax(all, hidden=[5], activation=tanh, dropout=0.1, norm=batch)" in (
        spec
    )
    assert (
        "gate dwell_fused = softmax(all) over [stopgrad(click_net), to_dwell, stopgrad(buy_net)]"
        in spec
    )
    assert "task dwell : regression(label=dwell) = dwell_fused" in spec


def test_hmoe_identity_towers_read_the_gates():
    spec = nx.spec_from(CONFIGS["hmoe_identity_towers"]())
    assert "tower" not in spec
    assert "over [to_click, stopgrad(to_buy), stopgrad(to_pay)]" in spec


def test_poso_groups_keep_nextrec_order_and_bias():
    spec = nx.spec_from(CONFIGS["poso_mlp_3_no_bias"]())
    assert "group main = [shop, user_id, tags, vec, price]" in spec
    assert "group pc = [scene, user_id, shops_seen, vec]" in spec
    assert "group all" not in spec  # POSO reads only main and pc
    # the layer reading main gains the projection's bias; the next one has none
    assert "tower click_h1 = mlp(main, [6], activation=tanh)" in spec
    assert "tower click_h2 = mlp(click_g1, [5], activation=tanh, bias=false)" in spec
    assert (
        "gate click_g2 = sigmoid(pc, hidden=[5], activation=tanh, scale=1.5) over [click_h2]"
        in (spec)
    )
    assert "tower dwell_h1 = mlp(main, [4], activation=prelu, dropout=0.1)" in spec
    assert "gate buy_g3 = sigmoid(pc, hidden=[7], scale=2.5) over [buy_h3]" in spec


def test_poso_mmoe_gates_each_expert():
    spec = nx.spec_from(CONFIGS["poso_mmoe_2"]())
    assert "expert shared x3 = mlp(main, [8, 6], activation=gelu, dropout=0.1)" in spec
    assert "gate shared_pc = sigmoid(pc, hidden=[5], activation=gelu, scale=1.5) over [shared]" in (
        spec
    )
    assert "gate to_buy = softmax(main) over [shared_pc]" in spec


def test_pepnet_gate_inputs_are_detached_in_nextrec_order():
    spec = nx.spec_from(CONFIGS["pepnet_priors_no_bias"]())
    assert "tower vec_proj = mlp(vec, [4], activation=none)" in spec
    assert "group all = [user_id, shop, scene, city, tags, shops_seen, price, vec_proj]" in spec
    assert "group ep_in = [stopgrad(all), stopgrad(scene), stopgrad(price)]" in spec
    assert (
        "group pp_in = [stopgrad(scene), stopgrad(price), stopgrad(user_id), stopgrad(city), "
        "stopgrad(tags), stopgrad(shop), stopgrad(epnet)]" in spec
    )
    # hidden_dim=None: each gate's hidden width is the width it scales; the last gate's scale is 1
    assert (
        "gate click_g0 = sigmoid(pp_in, hidden=[34], activation=gelu, dropout=0.1, norm=batch"
        in (spec)
    )
    assert "tower click_h2 = mlp(click_g1, [6], activation=tanh, norm=batch, bias=false)" in spec
    assert (
        "gate click_g2 = sigmoid(pp_in, hidden=[6], activation=gelu, dropout=0.1, norm=batch)"
        in (spec)
    )


def test_pepnet_mlp_projection_is_two_towers():
    spec = nx.spec_from(CONFIGS["pepnet_mlp_projection"]())
    assert "tower vec_hidden = mlp(vec, [5])" in spec
    assert "tower vec_proj = mlp(vec_hidden, [4], activation=none)" in spec


# -- refusals ------------------------------------------------------------------------


def refused(make, *words: str) -> None:
    with pytest.raises(nx.ConversionError) as error:
        nx.spec_from(make())
    for word in words:
        assert word in str(error.value)


def test_poso_mmoe_without_softmax_is_refused():
    def make():
        return POSO(
            **small_features(),
            main_sparse_features=["user_id"],
            main_sequence_features=[],
            main_dense_features=[],
            pc_sparse_features=["scene"],
            pc_sequence_features=[],
            pc_dense_features=[],
            tower_mlp_params_list=[mlp([4])],
            architecture="mmoe",
            expert_hidden_dims=[4],
            gate_use_softmax=False,
            target=["click"],
        )

    refused(make, "POSO.mmoe", "gate_use_softmax=False")


def test_poso_negative_gate_scale_is_refused():
    def make():
        return POSO(
            **small_features(),
            main_sparse_features=["user_id"],
            main_sequence_features=[],
            main_dense_features=[],
            pc_sparse_features=["scene"],
            pc_sequence_features=[],
            pc_dense_features=[],
            tower_mlp_params_list=[mlp([4], scale_factor=-1.0)],
            target=["click"],
        )

    refused(make, "POSO.towers.0.layers.0.gate", "scale")


def test_hmoe_output_activation_before_the_softmax_is_refused():
    def make():
        return HMOE(
            **small_features(),
            expert_mlp_params=mlp([4]),
            num_experts=2,
            tower_mlp_params_list=[mlp([4])],
            task_weight_mlp_params=[{"output_activation": "sigmoid"}],
            target=["click"],
        )

    refused(make, "HMOE.task_weights.0", "Sigmoid")


def test_pepnet_unknown_activation_is_refused():
    def make():
        return PEPNet(
            **small_features(),
            mlp_params=mlp([4]),
            gate_mlp_params={"activation": "leaky_relu"},
            domain_features=["scene"],
            target=["click"],
        )

    refused(make, "PepNet.ppnet_blocks.0.gate_layers.0.gate", "LeakyReLU")
