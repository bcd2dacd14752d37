"""What cannot be converted exactly is refused with a message, and a mismatch changes nothing."""

from __future__ import annotations

import pytest
import torch

from tests.parity.peers import NEXTREC_MISSING

pytest.importorskip("nextrec.models.multitask.mmoe", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.mmoe import MMOE  # noqa: E402
from nextrec.models.multitask.share_bottom import ShareBottom  # noqa: E402

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.peers import build, randomize  # noqa: E402


def mmoe(expert=None, dense=None, sequence=None, target=("click", "buy")) -> MMOE:
    return MMOE(
        sparse_features=[SparseFeature("user_id", 30, embedding_dim=4)],
        sequence_features=sequence or [],
        dense_features=dense or [DenseFeature("age")],
        expert_mlp_params=expert or {"hidden_dims": [8]},
        num_experts=2,
        tower_mlp_params_list=[{"hidden_dims": [4]}] * len(target),
        target=list(target),
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            lambda: mmoe(expert={"hidden_dims": [8], "activation": "leaky_relu"}),
            "LeakyReLU has no counterpart",
        ),
        (
            lambda: mmoe(
                dense=[
                    DenseFeature(
                        "v", input_dim=2, proj_dim=3, projection_type="mlp", mlp_hidden_dims=[4]
                    )
                ]
            ),
            "only a linear projection folds exactly",
        ),
        (
            lambda: mmoe(
                sequence=[
                    SequenceFeature("hist", 30, max_len=4, embedding_dim=4, combiner="concat")
                ]
            ),
            "pools with 'concat'",
        ),
        (lambda: mmoe(target=("click-rate", "buy")), "'click-rate' cannot be a name in a spec"),
        (
            lambda: mmoe(expert={"hidden_dims": []}),
            "an MLP with no hidden layer has no counterpart",
        ),
    ],
    ids=["activation", "mlp_projection", "concat_pooling", "bad_name", "empty_expert"],
)
def test_unconvertible_models_are_refused(model, message):
    with pytest.raises(nx.ConversionError, match=message):
        nx.spec_from(model())


def test_other_models_are_refused_by_name():
    with pytest.raises(
        nx.ConversionError, match="Linear is not supported; supported NextRec models: ShareBottom"
    ):
        nx.spec_from(torch.nn.Linear(2, 2))


def test_loading_into_a_model_of_another_spec_changes_nothing(tmp_path):
    source = randomize(mmoe())
    other = ShareBottom(
        sparse_features=[SparseFeature("user_id", 30, embedding_dim=4)],
        sequence_features=[],
        dense_features=[DenseFeature("age")],
        bottom_mlp_params={"hidden_dims": [8]},
        tower_mlp_params_list=[{"hidden_dims": [4]}] * 2,
        target=["click", "buy"],
    )
    target = build(nx.spec_from(other), tmp_path, opt_level=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(nx.ConversionError, match="was not compiled from this spec"):
        nx.load_weights(target, source)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_loading_into_a_model_with_other_feature_sizes_is_refused(tmp_path):
    source = randomize(mmoe())
    target = build(nx.spec_from(source).replace("vocab=30", "vocab=31"), tmp_path, opt_level=0)
    with pytest.raises(nx.ConversionError, match="its features differ"):
        nx.load_weights(target, source)
