"""NextRec 0.6.14's APG -> mtlc: same predictions and gradients.

Several configurations (2 and 3 tasks, a regression task, sequence features
with a shared table, several scene features, sparse, sequence and dense, a
dense vector projected linearly or by an mlp, 1 to 3 layers, the plain
layer, ``use_mf_p`` and ``use_uv_shared=False``, inner and generate
activations, ``detach_scene`` on and off), random weights and inputs, at
``-O0`` and ``-O1``: predictions to 1e-5 in eval mode, and the gradients of
the embedding tables, the dense inputs, the heads (the prediction bias
included) and the APG parameters to 1e-4 relative. Then the spec's shape,
and the options the converter refuses.
"""

from __future__ import annotations

import pytest
import torch

from tests.parity.peers import NEXTREC_MISSING, close_grad

pytest.importorskip("nextrec.models.multitask.apg", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.apg import APG  # noqa: E402

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.peers import (  # noqa: E402
    Pairing,
    converted_and_compared,
    module,
    nextrec_pairing,
    randomize,
)

# NextRec's specific_<x> -> rt.APG's generator
GENERATORS = {
    "specific_weight_kk": "generate_kk",
    "specific_bias_kk": "generate_k",
    "specific_weight_nk": "generate_nk",
    "specific_bias_nk": "generate_nk_bias",
    "specific_weight_km": "generate_km",
    "specific_bias_km": "generate_km_bias",
}


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
    """A sum-pooled sequence, a table shared under another name, a dense value and a
    dense vector projected to 4 (linearly, or by an mlp)."""
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


CONFIGS = {
    "apg_plain_2": lambda: APG(
        **small_features(),
        mlp_params={"hidden_dims": [8, 6]},
        scene_features=["scene"],
        mf_k=3,
        target=["click", "buy"],
    ),
    "apg_rank1_one_layer": lambda: APG(  # the default mf_k=16: k = 1
        **small_features(),
        mlp_params={"hidden_dims": [5], "activation": "tanh", "dropout": 0.3},  # dropout ignored
        scene_features=["age", "scene"],
        detach_scene=False,
        target=["click", "buy", "pay"],
    ),
    "apg_mf_p_3_folded_projection": lambda: APG(
        **wide_features(),
        mlp_params={"hidden_dims": [10, 6, 4], "activation": "prelu"},
        scene_features=["vec", "scene", "price", "city"],
        use_mf_p=True,
        mf_k=3,
        mf_p=2,
        inner_activation="tanh",
        generate_activation="silu",
        target=["click", "dwell", "buy"],
        task=["binary", "regression", "binary"],
    ),
    "apg_mf_p_not_detached": lambda: APG(
        **small_features(),
        mlp_params={"hidden_dims": [9, 7], "activation": "gelu"},
        scene_features=["scene", "hist"],
        detach_scene=False,
        use_mf_p=True,
        mf_k=4,
        mf_p=3,
        inner_activation="sigmoid",
        target=["click", "buy"],
    ),
    "apg_not_shared_projection_towers": lambda: APG(
        **wide_features(),
        mlp_params={"hidden_dims": [6, 5]},
        scene_features=["price", "vec", "tags", "scene"],
        detach_scene=False,
        use_uv_shared=False,
        use_mf_p=True,  # ignored by NextRec without use_uv_shared
        mf_k=2,
        inner_activation="relu",
        generate_activation="tanh",
        target=["click", "buy"],
    ),
    "apg_mlp_projection_shared": lambda: APG(
        **wide_features(mlp_projection=True),
        mlp_params={"hidden_dims": [7], "activation": "silu", "norm_type": "layer_norm"},
        scene_features=["vec", "city"],
        mf_k=2,
        inner_activation="gelu",
        target=["click", "buy", "pay"],
    ),
}


def pairing(peer, ours) -> Pairing:
    """Output columns by target; gradients of every table (rows >= 1) and head."""
    return nextrec_pairing(peer, ours, zip(peer.target_columns, peer.towers))


def folded(peer) -> tuple[bool, bool]:
    """Whether a projection folds into layer 0's first factor, and into the generators."""
    dense = [f for f in peer.dense_features if f.use_projection]
    towers = nx._apg_projects_as_towers(peer)
    scene = {f.name for f in peer.scene_features}
    return bool(dense) and not towers, any(f.name in scene for f in dense) and not towers


def apg_params(peer, apg) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(NextRec key, mtlc's parameter, NextRec's) of every APG parameter a fold leaves as is."""
    ours = dict(apg.named_parameters())
    into_first, into_generators = folded(peer)
    pairs = []
    for key, theirs in peer.apg_layers.named_parameters():
        layer, name = key.split(".", 1)
        if name.startswith("shared_"):
            mine = f"layers.{layer}.{name.removeprefix('shared_')}"
            if into_first and layer == "0" and name in ("shared_weight_nk", "shared_weight_np"):
                continue
        elif name.startswith("specific_"):
            generator, rest = name.split(".mlp.0.")
            if into_generators and rest == "weight":
                continue
            mine = f"layers.{layer}.{GENERATORS[generator]}.{rest}"
        else:
            mine = f"layers.{layer}.{name}"
        pairs.append((key, ours.pop(mine), theirs))
    return pairs


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_nextrec(config, opt_level, tmp_path):
    peer = randomize(CONFIGS[config](), seed=len(config))
    ours = converted_and_compared(peer, tmp_path, opt_level, pairing)
    # the head's bias is the tower's bias plus NextRec's prediction bias
    prediction_bias = peer.head.prediction.bias.grad
    for t, (task, tower) in enumerate(zip(peer.target_columns, peer.towers)):
        close_grad(module(ours, task).bias.grad, prediction_bias[t : t + 1], f"head bias {task}")
        close_grad(module(ours, task).bias.grad, tower.bias.grad, f"tower bias {task}")
    for key, mine, theirs in apg_params(peer, module(ours, "shared")):
        close_grad(mine.grad, theirs.grad, f"apg_layers.{key}")


# -- the spec --------------------------------------------------------------------------


def test_ranks_and_expands_are_written_out_by_a_detached_scene_group():
    spec = nx.spec_from(CONFIGS["apg_mf_p_3_folded_projection"]())
    assert "group all = [user_id, shop, scene, city, tags, shops_seen, price, vec]" in spec
    assert (
        "group scene_in = [stopgrad(scene), stopgrad(city), stopgrad(vec), stopgrad(price)]" in spec
    )
    assert (
        "tower shared = apg(all, [10, 6, 4], by=scene_in, rank=[4, 2, 2], expand=[5, 3, 2], "
        "inner=tanh, generate=silu, activation=prelu)" in spec
    )
    assert "task dwell : regression(label=dwell) = shared" in spec
    assert "vec_proj" not in spec  # the linear projection folds


def test_default_mf_k_gives_rank_one_and_an_undetached_scene():
    spec = nx.spec_from(CONFIGS["apg_rank1_one_layer"]())
    assert "group scene_in = [scene, age]" in spec
    assert "tower shared = apg(all, [5], by=scene_in, rank=[1], activation=tanh)" in spec
    assert "task pay : binary(label=pay) = shared" in spec


def test_not_shared_reads_projections_as_towers_and_drops_expand():
    spec = nx.spec_from(CONFIGS["apg_not_shared_projection_towers"]())
    assert "tower vec_proj = mlp(vec, [4], activation=none)" in spec
    assert "group scene_in = [tags, scene, price, vec_proj]" in spec
    assert (
        "tower shared = apg(all, [6, 5], by=scene_in, rank=[3, 3], shared=false, inner=relu, "
        "generate=tanh)" in spec
    )
    assert "expand" not in spec


def test_mlp_projection_is_two_towers():
    spec = nx.spec_from(CONFIGS["apg_mlp_projection_shared"]())
    assert "tower vec_hidden = mlp(vec, [5])" in spec
    assert "group scene_in = [stopgrad(city), stopgrad(vec_proj)]" in spec


# -- refusals --------------------------------------------------------------------------


def apg(**options) -> APG:
    return APG(
        **small_features(),
        scene_features=["scene"],
        target=["click"],
        **{"mlp_params": {"hidden_dims": [4]}, **options},
    )


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(inner_activation="prelu"), ["APG.apg_layers", "inner_activation='prelu'"]),
        (dict(generate_activation="prelu"), ["APG.apg_layers", "generate_activation='prelu'"]),
        (dict(generate_activation="leaky_relu"), ["specific_weight_kk", "LeakyReLU"]),
        (dict(mlp_params={"hidden_dims": [4], "activation": "elu"}), ["activation", "ELU"]),
    ],
)
def test_activations_mtlc_lacks_are_refused(options, words):
    with pytest.raises(nx.ConversionError) as error:
        nx.spec_from(apg(**options))
    for word in words:
        assert word in str(error.value)
