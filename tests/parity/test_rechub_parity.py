"""torch-rechub 0.9.0 -> mtlc: same predictions and gradients (eval mode) after ``load_weights``.

rechub's MMOE gate BatchNorm and AITM info gate are folded in a way that is
exact in eval mode (see docs/nextrec.md); these tests run in eval mode.
"""

from __future__ import annotations

import pytest

from tests.parity.peers import RECHUB_MISSING

pytest.importorskip("torch_rechub.models.multi_task.mmoe", reason=RECHUB_MISSING)

from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from torch_rechub.models.multi_task.aitm import AITM  # noqa: E402
from torch_rechub.models.multi_task.mmoe import MMOE  # noqa: E402

from mtlc.runtime.interop import rechub as rh  # noqa: E402
from tests.parity.peers import Pairing, build, compare, module, random_batch, randomize  # noqa: E402


def small_features() -> list:
    """A sequence listed before the sparse feature that owns its table; a dense value."""
    return [
        SparseFeature("user_id", 30, embed_dim=4),
        SequenceFeature("hist", 20, embed_dim=4, shared_with="item_id", padding_idx=0),
        SparseFeature("item_id", 20, embed_dim=4),
        DenseFeature("age"),
    ]


def wide_features() -> list:
    """A dense vector listed first (rechub puts dense values last), a sum-pooled sequence."""
    return [
        DenseFeature("vec", embed_dim=3),
        SparseFeature("user_id", 30, embed_dim=6),
        SequenceFeature("tags", 15, embed_dim=6, pooling="sum", padding_idx=0),
        DenseFeature("price"),
    ]


MAXLEN = {"hist": 6, "tags": 4}

CONFIGS = {
    "mmoe_2": (
        lambda: MMOE(
            small_features(),
            ["classification", "classification"],
            3,
            {"dims": [16, 8]},
            [{"dims": [8]}, {"dims": [8]}],
        ),
        ["click", "buy"],
    ),
    "mmoe_3": (
        lambda: MMOE(
            wide_features(),
            ["classification", "regression", "classification"],
            4,
            {"dims": [12], "activation": "prelu", "dropout": 0.2},
            [{"dims": [6]}, {"dims": []}, {"dims": [6, 4], "activation": "sigmoid"}],
        ),
        ["click", "dwell", "buy"],
    ),
    "aitm_2": (
        lambda: AITM(small_features(), 2, {"dims": [8, 6]}, [{"dims": [4]}, {"dims": [4]}]),
        None,
    ),
    "aitm_3": (
        lambda: AITM(
            wide_features(),
            3,
            {"dims": [10, 6], "dropout": 0.1},
            [{"dims": [4]}, {"dims": []}, {"dims": [4]}],
        ),
        ["click", "buy", "pay"],
    ),
}


def pairing(peer, ours, tasks: list[str]) -> Pairing:
    """Output columns by task; gradients of every embedding table and head."""
    kinds = getattr(peer, "task_types", ["classification"] * len(tasks))
    columns = [
        (t, i, "regression" if k == "regression" else "binary")
        for i, (t, k) in enumerate(zip(tasks, kinds))
    ]
    params = [
        (f"table {name}", module(ours, name).weight, table.weight, None)
        for name, table in peer.embedding.embed_dict.items()
    ]
    for task, net in zip(tasks, peer.towers):
        params.append((f"head {task}", module(ours, task).weight, net.mlp[-1].weight, None))
    return Pairing(columns, params)


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_rechub(config, opt_level, tmp_path):
    make, tasks = CONFIGS[config]
    peer = randomize(make(), seed=len(config))
    with pytest.warns(
        rh.FoldWarning, match="exact"
    ):  # what does not carry over to training is said
        spec = rh.spec_from(peer, tasks=tasks, maxlen=MAXLEN)
    ours = build(spec, tmp_path, opt_level)
    with pytest.warns(rh.FoldWarning):
        rh.load_weights(ours, peer, tasks=tasks, maxlen=MAXLEN)
    tasks = tasks or [f"task{i + 1}" for i in range(peer.n_task)]
    compare(ours, peer, random_batch(ours), pairing(peer, ours, tasks))


def test_aitm_info_gate_becomes_a_tower_feeding_ait():
    with pytest.warns(rh.FoldWarning, match="info Linear is set to the identity"):
        spec = rh.spec_from(CONFIGS["aitm_3"][0](), tasks=["click", "buy", "pay"], maxlen=MAXLEN)
    assert "group all = [user_id, tags, vec, price]" in spec
    assert "tower buy_info = mlp(click_in, [6], norm=batch)" in spec
    assert "transfer buy_in = ait(buy_raw, from=buy_info)" in spec


def test_sequence_without_padding_id_is_refused():
    features = [SparseFeature("user_id", 30, embed_dim=4), SequenceFeature("hist", 20, embed_dim=4)]
    model = MMOE(features, ["classification"], 2, {"dims": [4]}, [{"dims": [4]}])
    with pytest.raises(rh.ConversionError, match="padding_idx=None"):
        rh.spec_from(model, maxlen=5)


def test_sequence_needs_maxlen():
    model = MMOE(small_features(), ["classification"], 2, {"dims": [4]}, [{"dims": [4]}])
    with pytest.raises(rh.ConversionError, match="give maxlen= for sequence feature 'hist'"):
        rh.spec_from(model)
