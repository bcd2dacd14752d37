"""Each spec in specs/ of the five architectures, Cross-Stitch, SNR-Trans, DCNv2: NextRec's model.

For each spec we build the NextRec 0.6.14 model of the same configuration,
convert it with ``spec_from`` and check that the two specs compute the same
model: equal up to the names of inner nodes (``equivalence.differences``).
Where NextRec cannot say what the spec says, the test names the exact
rewrite of the spec that NextRec needs, and checks equality after it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.parity.peers import NEXTREC_MISSING

pytest.importorskip("nextrec.models.multitask.mmoe", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.aitm import AITM  # noqa: E402
from nextrec.models.multitask.cross_stitch import CrossStitch  # noqa: E402
from nextrec.models.multitask.esmm import ESMM  # noqa: E402
from nextrec.models.multitask.mmoe import MMOE  # noqa: E402
from nextrec.models.multitask.ple import PLE  # noqa: E402
from nextrec.models.multitask.share_bottom import ShareBottom  # noqa: E402
from nextrec.models.multitask.snr_trans import SNRTrans  # noqa: E402
from nextrec.models.ranking.dcn_v2 import DCNv2  # noqa: E402

from mtlc.api import compile_ir  # noqa: E402
from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.equivalence import differences  # noqa: E402

SPECS = Path(__file__).resolve().parents[2] / "specs"


def ids(dense: str, sequence: bool = False) -> dict:
    """user_id and item_id as in the specs, one dense value.

    Optionally a history sharing item_id's table.
    """
    history = [
        SequenceFeature("hist_item", 5_000, max_len=20, embedding_dim=16, embedding_name="item_id")
    ]
    return dict(
        sparse_features=[
            SparseFeature("user_id", 10_000, embedding_dim=16),
            SparseFeature("item_id", 5_000, embedding_dim=16),
        ],
        sequence_features=history if sequence else [],
        dense_features=[DenseFeature(dense)],
    )


def layers(dims: list[int], dropout: float = 0.0) -> dict:
    return {"hidden_dims": dims, "dropout": dropout}


def _ait_with_bias(spec: str) -> str:
    """NextRec's Q/K/V have biases; the paper's (and the spec's default) do not."""
    return re.sub(r"ait\((\w+), from=(\w+)\)", r"ait(\1, from=\2, bias=true)", spec)


# name -> (NextRec model, the rewrite of the spec NextRec needs, and why)
CASES = {
    "share_bottom": (
        lambda: ShareBottom(
            **ids("price"),
            bottom_mlp_params=layers([256, 128], 0.1),
            tower_mlp_params_list=[layers([64])] * 2,
            target=["click", "buy"],
        ),
        lambda spec: spec,
    ),
    "esmm": (
        lambda: ESMM(
            **ids("price", sequence=True),
            ctr_mlp_params=layers([256, 128], 0.1),
            cvr_mlp_params=layers([256, 128], 0.1),
            target=["click", "buy"],
        ),
        lambda spec: spec,
    ),
    "mmoe": (
        lambda: MMOE(
            **ids("age"),
            expert_mlp_params=layers([256, 128]),
            num_experts=4,
            tower_mlp_params_list=[layers([64])] * 2,
            target=["click", "buy"],
        ),
        lambda spec: spec,
    ),
    # NextRec's PLE builds every level's experts from one set of params; specs/ple.mtl does too.
    "ple": (
        lambda: PLE(
            **ids("age"),
            shared_expert_mlp_params=layers([128, 64]),
            specific_expert_mlp_params=[layers([128, 64])] * 2,
            num_shared_experts=2,
            num_specific_experts=1,
            num_levels=2,
            tower_mlp_params_list=[layers([32])] * 2,
            target=["click", "buy"],
        ),
        lambda spec: spec,
    ),
    # NextRec's loss weighting is chosen at training time (compile), not in the model;
    # its calibrator averages the two pair penalties: weight 0.6 each is calibrator_alpha=1.2.
    "aitm": (
        lambda: AITM(
            **ids("price"),
            bottom_mlp_params=layers([128, 64]),
            tower_mlp_params_list=[layers([32])] * 3,
            calibrator_alpha=1.2,
            target=["click", "buy", "pay"],
        ),
        lambda spec: _ait_with_bias(spec.replace("weighting uncertainty", "")),
    ),
    "cross_stitch": (
        lambda: CrossStitch(
            **ids("age"),
            task_mlp_params=layers([256, 128]),
            tower_mlp_params=layers([64]),
            target=["click", "buy"],
        ),
        lambda spec: spec,
    ),
    "snr_trans": (
        lambda: SNRTrans(
            **ids("age"),
            expert_mlp_params=layers([128, 64]),
            num_experts=3,
            tower_mlp_params_list=[layers([32])] * 2,
            target=["click", "buy"],
        ),
        lambda spec: spec,
    ),
    # NextRec's CrossNetV2 adds the bias outside the product; the paper (and the spec) inside.
    "dcnv2": (
        lambda: DCNv2(
            sparse_features=[
                SparseFeature("user_id", 10_000, embedding_dim=16),
                SparseFeature("item_id", 5_000, embedding_dim=16),
                SparseFeature("category", 100, embedding_dim=8),
            ],
            dense_features=[DenseFeature("age"), DenseFeature("price")],
            cross_num=3,
            cross_type="matrix",
            architecture="parallel",
            mlp_params=layers([256, 128]),
            target="click",
        ),
        lambda spec: spec.replace("form=matrix)", "form=matrix, bias=outside)"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_spec_equals_its_nextrec_counterpart(name):
    make, rewrite = CASES[name]
    ours = compile_ir(rewrite((SPECS / f"{name}.mtl").read_text(encoding="utf-8")), f"{name}.mtl")
    theirs = compile_ir(nx.spec_from(make()), "nextrec.mtl")
    assert differences(ours, theirs) == []


BENCHMARK_ARCHITECTURES = [
    "share_bottom",
    "mmoe",
    "ple",
    "esmm",
    "aitm",
    "hmoe",
    "poso",
    "poso_mmoe",
    "pepnet",
    "apg",
    "cross_stitch",
    "snr_trans",
    "dcnv2",
]


@pytest.mark.parametrize("arch", BENCHMARK_ARCHITECTURES)
def test_training_speed_benchmark_specs_are_nextrecs_models(arch, monkeypatch):
    """benchmarks/train_speed.py times mtlc against NextRec's model on the spec it writes.

    The spec is the same model (stopgrad marks included).
    """
    monkeypatch.syspath_prepend(str(SPECS.parent / "benchmarks"))
    import peers
    import train_speed

    ours = compile_ir(train_speed.mtlc_spec(peers.CONFIG, arch), "benchmark.mtl")
    theirs = compile_ir(nx.spec_from(peers.nextrec_model(peers.CONFIG, arch)), "nextrec.mtl")
    assert differences(ours, theirs) == []


def test_differences_sees_a_changed_width():
    """The comparison is not vacuous: one changed width is reported."""
    spec = (SPECS / "mmoe.mtl").read_text(encoding="utf-8")
    changed = spec.replace("mlp(to_cvr, [64])", "mlp(to_cvr, [32])")
    found = differences(compile_ir(spec), compile_ir(changed))
    assert len(found) >= 1 and any("64" in line and "32" in line for line in found)


def test_every_benchmark_architecture_is_checked(monkeypatch):
    monkeypatch.syspath_prepend(str(SPECS.parent / "benchmarks"))
    import peers

    assert sorted(peers.ARCHITECTURES) == sorted(BENCHMARK_ARCHITECTURES)


@pytest.mark.parametrize(
    ("arch", "old", "new"),
    [
        ("hmoe", "stopgrad(buy_net)", "buy_net"),  # a gate source's stopgrad
        ("pepnet", "[stopgrad(all), stopgrad(device)]", "[stopgrad(all), device]"),  # a member's
        ("pepnet", "sigmoid(pp_in, hidden=[64]) over [buy_h3]", "sigmoid(pp_in) over [buy_h3]"),
        ("poso", "over [click_h2]", "over [click_h1]"),  # what a sigmoid gate scales
        ("apg", "[stopgrad(device)]", "[device]"),  # the condition's stopgrad
        ("apg", "rank=[9, 8, 4]", "rank=[9, 8, 5]"),  # one layer's rank
    ],
)
def test_differences_sees_stopgrads_and_sigmoid_gates(arch, old, new, monkeypatch):
    """A dropped stopgrad, a changed sigmoid gate or a changed APG rank is reported."""
    monkeypatch.syspath_prepend(str(SPECS.parent / "benchmarks"))
    import peers
    import train_speed

    spec = train_speed.mtlc_spec(peers.CONFIG, arch)
    assert spec.count(old) == 1
    found = differences(compile_ir(spec), compile_ir(spec.replace(old, new)))
    assert found
