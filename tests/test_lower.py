"""Lowering: gate banks, masks, expert pools, safe names (on hand-built IR)."""

from __future__ import annotations

import pytest

from mtlc.backend import lowering as lw
from tests import ir_models
from tests.ir_models import Builder


def _gates(plan: lw.Plan) -> list[lw.GateModule]:
    return [m for m in plan.modules if isinstance(m, lw.GateModule)]


def test_mmoe_gates_over_one_pool_form_one_bank():
    plan = lw.lower(ir_models.mmoe(), 1)
    (bank,) = _gates(plan)
    assert (bank.num_gates, bank.num_experts, bank.masks, bank.banked) == (2, 4, None, True)
    assert plan.gate_banks == ((bank.attr, ("to_ctr", "to_cvr")),)
    (mixture,) = [s for s in plan.steps if isinstance(s, lw.Mixture)]
    assert mixture.locals == ("to_ctr", "to_cvr") and mixture.experts == ("shared",)
    pools = [m for m in plan.modules if isinstance(m, lw.ExpertsModule)]
    assert [p.batched for p in pools] == [True]


def test_o0_keeps_one_gate_per_statement():
    plan = lw.lower(ir_models.mmoe(), 0)
    assert [(g.attr, g.banked, g.num_gates) for g in _gates(plan)] == [
        ("to_ctr", False, 1),
        ("to_cvr", False, 1),
    ]
    assert plan.gate_banks == ()
    assert not any(m.batched for m in plan.modules if isinstance(m, lw.ExpertsModule))


def test_ple_masks_follow_each_gates_source_order():
    plan = lw.lower(ir_models.ple(), 1)
    first, ctr_g2, cvr_g2 = _gates(plan)
    # Union of sources in order of first appearance: shared1 (0, 1), ctr1 (2), cvr1 (3).
    assert first.num_experts == 4 and first.num_gates == 3
    assert first.masks == ((0, 1, 2), (0, 1, 3), (2, 3, 0, 1))
    assert dict(plan.gate_banks)[first.attr] == ("ctr_g1", "cvr_g1", "shared_g1")
    # Level 2 gates read different inputs: a bank of one each, named as the gate.
    assert (ctr_g2.attr, ctr_g2.num_gates, ctr_g2.masks) == ("ctr_g2", 1, None)
    assert cvr_g2.attr == "cvr_g2"


def test_bank_runs_where_its_last_gate_is_declared():
    plan = lw.lower(ir_models.ple(), 1)
    order = [getattr(s, "local", None) or s.locals for s in plan.steps]
    assert order.index(("ctr_g1", "cvr_g1", "shared_g1")) < order.index("shared2")


def test_a_reader_between_gates_splits_the_bank():
    model = (
        Builder("Split")
        .dense("x", dim=3)
        .expert("e", "x", [4], count=2)
        .gate("g1", "x", ["e"])
        .tower("t", "g1", [4])  # reads g1 before g2 is declared
        .gate("g2", "x", ["e", "t"])
        .task("a", "g2", label="a")
        .build()
    )
    plan = lw.lower(model, 1)
    assert [(g.attr, g.num_gates) for g in _gates(plan)] == [("g1", 1), ("g2", 1)]
    steps = [getattr(s, "local", None) or s.locals for s in plan.steps]
    assert steps.index(("g1",)) < steps.index("t") < steps.index(("g2",))


def test_gates_with_other_options_or_widths_do_not_share_a_bank():
    model = (
        Builder("Options")
        .dense("x", dim=3)
        .expert("e", "x", [4], count=2)
        .expert("f", "x", [5], count=2)
        .gate("plain", "x", ["e"])
        .gate("hot", "x", ["e"], temperature=2.0)
        .gate("topped", "x", ["e"], top=1)
        .gate("wide", "x", ["f"])
        .task("a", "plain", label="a")
        .task("b", "hot", label="b")
        .task("c", "topped", label="c")
        .task("d", "wide", label="d")
        .build()
    )
    assert [g.num_gates for g in _gates(lw.lower(model, 1))] == [1, 1, 1, 1]


def test_vector_sources_and_single_expert_inputs():
    model = (
        Builder("Vectors")
        .dense("x", dim=3)
        .expert("solo", "x", [4])
        .tower("t", "solo", [4])  # a pool of one read as a vector
        .gate("g", "x", ["solo", "t"])
        .task("a", "g", label="a")
        .build()
    )
    plan = lw.lower(model, 1)
    call = [s for s in plan.steps if isinstance(s, lw.Call) and s.local == "t"][0]
    assert call.args == ("solo[:, 0]",)
    mixture = [s for s in plan.steps if isinstance(s, lw.Mixture)][0]
    assert mixture.experts == ("solo", "t.unsqueeze(1)")


def test_shared_tables_own_no_embedding():
    plan = lw.lower(ir_models.everything(), 1)
    embeddings = [m.attr for m in plan.modules if isinstance(m, lw.Embedding)]
    assert embeddings == ["user_id", "item_id", "tags"]
    hist = [s for s in plan.steps if isinstance(s, lw.Lookup) and s.key == "hist"][0]
    assert (hist.table, hist.pool) == ("item_id", "max")


@pytest.mark.parametrize(
    "name, safe",
    [
        ("forward", "forward_"),
        ("train", "train_"),
        ("all", "all_"),
        ("batch", "batch_"),
        ("logits", "logits_"),
        ("tasks", "tasks_"),
        ("input", "input_"),
        ("ctr", "ctr"),
    ],
)
def test_safe_names_mangle_only_collisions(name, safe):
    model = Builder("M").dense(name).task("t", name, kind="regression", label="y").build()
    assert lw.safe_names(model)[name] == safe


def test_mangled_name_never_takes_a_users_name():
    model = (
        Builder("M")
        .dense("all")
        .dense("all_")
        .group("g", ["all", "all_"])
        .task("t", "g", kind="regression", label="y")
        .build()
    )
    names = lw.safe_names(model)
    assert names["all_"] == "all_" and names["all"] == "all__"


def test_opt_level_is_0_or_1():
    with pytest.raises(ValueError):
        lw.lower(ir_models.mmoe(), 2)


def test_ple_level_one_pools_merge_and_the_bank_reads_them_whole():
    plan = lw.lower(ir_models.ple(), 1)
    pools = [m for m in plan.modules if isinstance(m, lw.ExpertsModule)]
    assert [(p.attr, p.count) for p in pools] == [
        ("experts", 4),
        ("shared2", 2),
        ("ctr2", 1),
        ("cvr2", 1),
    ]  # level two: three different inputs, nothing to merge
    assert plan.expert_pools == (("experts", ("shared1", "ctr1", "cvr1")),)
    bank = [s for s in plan.steps if isinstance(s, lw.Mixture)][0]
    assert bank.experts == ("experts",)
    assert not any(isinstance(s, lw.Split) for s in plan.steps)
    assert lw.lower(ir_models.ple(), 0).expert_pools == ()


def test_merged_pools_are_split_where_read_one_by_one():
    plan = lw.lower(ir_models.merged_pools(), 1)
    assert plan.expert_pools == (("experts", ("a", "b")),)
    (split,) = [s for s in plan.steps if isinstance(s, lw.Split)]  # for the tower reading b
    assert (split.locals, split.source, split.sizes) == (("a", "b"), "experts", (2, 1))
    g, h = [s for s in plan.steps if isinstance(s, lw.Mixture)]
    assert g.experts == h.experts == ("experts",)  # both banks read the merged pool whole
    g_bank, h_bank = [m for m in plan.modules if isinstance(m, lw.GateModule)]
    assert g_bank.masks == ((2, 0, 1),) and h_bank.masks is None


def test_every_nn_module_attribute_is_reserved():
    import re

    import torch

    from mtlc.ir.reserved import MODULE_ATTRIBUTES

    names = set(dir(torch.nn.Module)) | set(vars(torch.nn.Module()))
    spec_names = {
        n for n in names if re.fullmatch(r"[a-z_][a-z0-9_]*", n) and not n.startswith("__")
    }
    assert spec_names <= MODULE_ATTRIBUTES, sorted(spec_names - MODULE_ATTRIBUTES)
