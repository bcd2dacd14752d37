"""NextRec 0.6.14's DCN and DCNv2 -> mtlc: same predictions and gradients.

Every cross network (DCN's ``CrossNetwork``, DCNv2's ``CrossNetV2`` and
``CrossNetMix``, the latter under both its names ``mix`` and ``low_rank``) and
every DCNv2 ``architecture`` (``crossnet_only``, ``parallel`` with and without
an mlp, ``stacked``, ``stacked_parallel``), with sparse, shared-table sequence
and dense features (a dense vector projected linearly or by an mlp), deep
towers with norms, dropout and other activations, and a regression task;
random weights and inputs, at ``-O0`` and ``-O1``: predictions to 1e-5 in eval
mode, and the gradients of the embedding tables, the dense inputs, the head and
every cross-network parameter to 1e-4 relative.
"""

from __future__ import annotations

import pytest
import torch

from tests.parity.peers import NEXTREC_MISSING, close_grad, small_nextrec_features

pytest.importorskip("nextrec.models.ranking.dcn_v2", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from nextrec.models.ranking.dcn import DCN  # noqa: E402
from nextrec.models.ranking.dcn_v2 import DCNv2  # noqa: E402

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.peers import (  # noqa: E402
    Pairing,
    converted_and_compared,
    module,
    nextrec_pairing,
    randomize,
)

small_features = small_nextrec_features


def projected_features(mlp_projection: bool = False) -> dict:
    """A sum-pooled sequence, a dense value and a dense vector projected to 4."""
    projection = dict(projection_type="mlp", mlp_hidden_dims=[5]) if mlp_projection else {}
    return dict(
        sparse_features=[
            SparseFeature("user_id", 30, embedding_dim=6),
            SparseFeature("city", 9, embedding_dim=2),
        ],
        sequence_features=[SequenceFeature("tags", 15, max_len=4, embedding_dim=6, combiner="sum")],
        dense_features=[
            DenseFeature("price"),
            DenseFeature("vec", input_dim=3, proj_dim=4, **projection),
        ],
    )


CONFIGS = {
    "dcn_deep": lambda: DCN(
        **small_features(), cross_num=2, mlp_params={"hidden_dims": [8, 6]}, target="click"
    ),
    "dcn_cross_only_projected": lambda: DCN(**projected_features(), target="click"),
    "dcn_regression_norm": lambda: DCN(
        **projected_features(mlp_projection=True),
        cross_num=1,
        mlp_params={"hidden_dims": [7], "norm_type": "layer_norm", "activation": "tanh"},
        target="price_next",
        task="regression",
    ),
    "v2_matrix_parallel": lambda: DCNv2(
        **small_features(), mlp_params={"hidden_dims": [8, 5], "dropout": 0.2}, target="click"
    ),
    "v2_matrix_parallel_no_mlp": lambda: DCNv2(**small_features(), cross_num=2, target="click"),
    "v2_matrix_stacked_projected": lambda: DCNv2(
        **projected_features(),
        architecture="stacked",
        mlp_params={"hidden_dims": [6], "activation": "gelu"},
        target="click",
    ),
    "v2_mix_crossnet_only": lambda: DCNv2(
        **small_features(),
        cross_type="mix",
        architecture="crossnet_only",
        low_rank=3,
        num_experts=2,
        target="click",
    ),
    "v2_low_rank_stacked_parallel": lambda: DCNv2(
        **projected_features(mlp_projection=True),
        cross_num=2,
        cross_type="low_rank",
        architecture="stacked_parallel",
        low_rank=4,
        num_experts=3,
        mlp_params={"hidden_dims": [6, 4], "norm_type": "batch_norm"},
        target="click",
    ),
}


def cross_params(network, cross) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(what, mtlc's tensor, NextRec's) for every parameter of the cross network.

    mtlc's ``rt.Cross`` stacks NextRec's per-layer lists (see ``nx._cross_tower``).
    """
    layers = network.num_layers
    pairs = []
    bias = network.b if hasattr(network, "b") else network.bias
    for i in range(layers):
        pairs.append((f"bias {i}", cross.bias.grad[i], bias[i].grad.reshape(-1)))
    kind = type(network).__name__
    if kind == "CrossNetwork":
        pairs += [
            (f"w {i}", cross.weight.grad[i], network.w[i].weight.grad[0]) for i in range(layers)
        ]
    elif kind == "CrossNetV2":
        pairs += [(f"w {i}", cross.weight.grad[i], network.w[i].weight.grad) for i in range(layers)]
    else:
        for key in ("u", "v", "c"):
            theirs = getattr(network, f"{key}_list")
            pairs += [
                (f"{key} {i}", getattr(cross, key).grad[i], theirs[i].grad) for i in range(layers)
            ]
        pairs += [
            (f"gating {k}", cross.gate.grad[k], g.weight.grad[0])
            for k, g in enumerate(network.gating)
        ]
    return pairs


def pairing(peer, ours) -> Pairing:
    """The one output column; gradients of every table (rows >= 1) and of the head."""
    return nextrec_pairing(peer, ours, [(peer.target_columns[0], peer.final_layer)])


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_nextrec(config, opt_level, tmp_path):
    peer = randomize(CONFIGS[config](), seed=len(config))
    ours = converted_and_compared(peer, tmp_path, opt_level, pairing)
    target = peer.target_columns[0]
    head_bias = module(ours, target).bias.grad
    close_grad(head_bias, peer.final_layer.bias.grad, "head bias")
    close_grad(head_bias, peer.head.prediction.bias.grad, "prediction bias")
    for what, mine, theirs in cross_params(peer.cross_network, module(ours, "crossed")):
        close_grad(mine, theirs, f"cross_network {what}")


# -- the spec --------------------------------------------------------------------------


def test_each_arrangement_is_written_by_the_graph():
    spec = nx.spec_from(CONFIGS["v2_low_rank_stacked_parallel"]())
    assert "tower vec_hidden = mlp(vec, [5])" in spec  # an mlp projection, as towers
    assert "tower crossed = cross(all, layers=2, form=mix, rank=4, experts=3)" in spec
    assert "tower stacked = mlp(crossed, [6, 4], norm=batch)" in spec
    assert "tower deep = mlp(all, [6, 4], norm=batch)" in spec
    assert "group both = [stacked, deep]" in spec
    assert "task click : binary(label=click) = both" in spec
    spec = nx.spec_from(CONFIGS["v2_matrix_stacked_projected"]())
    assert "tower crossed = cross(all, layers=3, form=matrix, bias=outside)" in spec
    assert "task click : binary(label=click) = stacked" in spec
    spec = nx.spec_from(CONFIGS["dcn_cross_only_projected"]())
    assert "tower vec_proj = mlp(vec, [4], activation=none)" in spec  # a cross cannot fold it
    assert "tower crossed = cross(all, layers=3)\n" in spec
    assert "task click : binary(label=click) = crossed" in spec


def test_an_mlp_without_layers_is_the_identity():
    peer = DCNv2(**small_features(), cross_num=1, mlp_params={"hidden_dims": []}, target="click")
    spec = nx.spec_from(peer)
    assert "group both = [crossed, all]" in spec


def test_an_activation_mtlc_lacks_is_refused():
    peer = DCN(**small_features(), mlp_params={"hidden_dims": [4], "activation": "elu"}, target="y")
    with pytest.raises(nx.ConversionError, match="ELU"):
        nx.spec_from(peer)
