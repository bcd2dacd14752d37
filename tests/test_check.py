"""The checker: valid specs become the right IR; every rule gives a located diagnostic."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from mtlc import __version__, ir
from mtlc.check import check
from mtlc.diagnostics import SpecError
from mtlc.frontend.parser import parse
from tests.mtl_sources import BASE, diagnostics_of, language_examples, spec_files
from tests.strategies import valid_specs


def _model(source: str, filename: str = "m.mtl") -> ir.Model:
    return check(parse(source, filename))


@pytest.mark.parametrize("title", sorted(language_examples()) or ["(LANGUAGE.md absent)"])
def test_language_examples_check_clean(title):
    examples = language_examples()
    if not examples:
        pytest.skip("../shared/LANGUAGE.md is not beside the checkout")
    model = _model(examples[title])
    assert model.tasks


def test_spec_files_check_clean():
    for name, text in spec_files().items():
        assert _model(text, name).source == name


MMOE = """model MMoE "Multi-gate mixture of experts"
feature user_id : sparse(vocab=10_000, dim=16)
feature item_id : sparse(vocab=5_000, dim=16)
feature age     : dense
group all = [user_id, item_id, age]
expert shared x4 = mlp(all, [256, 128])
gate to_ctr = softmax(all, top=2, temperature=0.5, hidden=[8]) over [shared]
gate to_cvr = softmax(all) over [shared]
tower ctr_net = mlp(to_ctr, [64], activation=gelu, dropout=0.1, norm=layer)
tower cvr_net = mlp(to_cvr, [64])
task ctr : binary(label=click) = ctr_net
task cvr : binary(label=buy, weight=0.5, loss=focal) = cvr_net
"""


def test_mmoe_ir_has_widths_sources_and_defaults():
    model = _model(MMOE, "mmoe.mtl")
    assert (model.name, model.description, model.source) == (
        "MMoE",
        "Multi-gate mixture of experts",
        "mmoe.mtl",
    )
    assert model.compiler_version == __version__
    assert [n.name for n in model.nodes][:5] == ["user_id", "item_id", "age", "all", "shared"]
    assert model.node("all").width == 33 and model.node("age").width == 1
    shared = model.node("shared")
    assert (shared.count, shared.width, shared.block.input_width, shared.block.dims) == (
        4,
        128,
        33,
        [256, 128],
    )
    assert shared.block.activation is ir.Activation.relu and shared.block.dropout == 0.0
    gate = model.node("to_ctr")
    assert (gate.input, gate.input_width, gate.num_experts, gate.width) == ("all", 33, 4, 128)
    assert (gate.top, gate.temperature, gate.hidden) == (2, 0.5, [8])
    assert gate.sources == [ir.GateSource(name="shared", count=4)]
    assert model.node("to_cvr").top is None and model.node("to_cvr").temperature == 1.0
    tower = model.node("ctr_net")
    assert (tower.block.activation, tower.block.dropout, tower.block.norm) == (
        ir.Activation.gelu,
        0.1,
        ir.Norm.layer,
    )
    ctr, cvr = model.tasks
    assert (ctr.kind, ctr.label, ctr.loss, ctr.weight, ctr.input, ctr.input_width) == (
        ir.TaskKind.binary,
        "click",
        ir.Loss.bce,
        1.0,
        "ctr_net",
        64,
    )
    assert (cvr.loss, cvr.weight) == (ir.Loss.focal, 0.5)
    assert model.weighting == ir.Weighting()
    assert ctr.span.line == 11 and gate.span.line == 7
    assert ir.Model.model_validate_json(model.model_dump_json()) == model


def test_tables_products_latent_tasks_constraints_weighting():
    model = _model(
        BASE
        + "feature hist : sequence(vocab=50, dim=8, maxlen=20, pool=max, table=item_id)\n"
        + "feature again : sparse(vocab=50, dim=8, table=hist)\n"
        + "feature wide : dense(dim=3)\n"
        + "task cvr : binary = net\n"
        + "task ctcvr : binary(label=buy) = ctr * cvr\n"
        + "task both : binary = ctr * cvr * ctcvr\n"
        + "task price_hat : regression(label=price_y, loss=huber) = net\n"
        + "task kind : multiclass(classes=4, label=category) = net\n"
        + "constrain ctcvr <= ctr weight 0.6\n"
        + "constrain cvr <= ctr\n"
        + "weighting gradnorm(alpha=0.5)\n"
    )
    assert model.node("hist").table == "item_id" and model.node("hist").pool is ir.Pooling.max
    assert model.node("again").table == "item_id"  # a chain of shares resolves to the owner
    assert model.node("wide").width == 3
    cvr, ctcvr, both = model.node("cvr"), model.node("ctcvr"), model.node("both")
    assert (cvr.label, cvr.loss, cvr.input) == (None, None, "net")
    assert (ctcvr.factors, ctcvr.label, ctcvr.loss, ctcvr.input) == (
        ["ctr", "cvr"],
        "buy",
        ir.Loss.bce,
        None,
    )
    assert (both.factors, both.label) == (["ctr", "cvr", "ctcvr"], None)
    assert model.node("price_hat").loss is ir.Loss.huber
    kind = model.node("kind")
    assert (kind.classes, kind.width, kind.loss) == (4, 4, ir.Loss.ce)
    assert [(c.left, c.right, c.weight) for c in model.constraints] == [
        ("ctcvr", "ctr", 0.6),
        ("cvr", "ctr", 1.0),
    ]
    assert (model.weighting.kind, model.weighting.alpha) == (ir.WeightingKind.gradnorm, 0.5)
    assert _model(BASE + "weighting gradnorm\n").weighting.alpha is None  # rt.Weighting's default


def test_single_expert_feature_and_transfer_inputs():
    model = _model(
        BASE
        + "expert solo = mlp(all, [8])\n"
        + "transfer moved = ait(solo, from=net)\n"
        + "transfer biased = ait(moved, from=solo, bias=true)\n"
        + "tower linear = mlp(all, [3], activation=none)\n"
        + "gate mix = softmax(price) over [solo, moved, net]\n"
        + "task other : regression(label=y) = mix\n"
    )
    assert model.node("solo").count == 1
    assert (model.node("moved").qkv_bias, model.node("biased").qkv_bias) == (False, True)
    assert model.node("linear").block.activation is ir.Activation.none
    assert model.node("moved").width == 8
    assert model.node("mix").num_experts == 3 and model.node("other").input_width == 8


# -- one test per diagnostic: code, line, column, label ----------------------------------

CHECK_ERRORS = [
    # names
    ("tower CtrNet = mlp(all, [8])", "MTL201", 8, 7, "invalid name"),
    ("tower lambda = mlp(all, [8])", "MTL202", 8, 7, "reserved"),
    ("tower over = mlp(all, [8])", "MTL202", 8, 7, "reserved"),
    ("tower __init__ = mlp(all, [8])", "MTL202", 8, 7, "reserved"),
    (
        "expert shared x2 = mlp(all, [8])\ngate g = softmax(all) over [shard]",
        "MTL203",
        9,
        29,
        "not declared",
    ),
    ("tower net = mlp(all, [8])", "MTL204", 8, 7, "declared again"),
    ("tower a = mlp(b, [8])\ntower b = mlp(all, [8])", "MTL205", 8, 15, "not declared yet"),
    ("expert e x4 = mlp(all, [8])\ntower t = mlp(e, [8])", "MTL206", 9, 15, "4 vectors, not one"),
    ("tower t = mlp(ctr, [8])", "MTL206", 8, 15, "a task"),
    ("group g = [user_id, ctr]", "MTL206", 8, 21, "a task"),
    ("group g = [user_id, stopgrad(ctr)]", "MTL206", 8, 30, "a task"),
    # the model as a whole
    ("model Other", "MTL102", 8, 1, "second model"),
    ("weighting fixed\nweighting uncertainty", "MTL104", 9, 1, "second weighting"),
    # calls and options
    ("tower t = mpl(all, [8])", "MTL301", 8, 11, "not a block"),
    ("gate g = softmux(all) over [net]", "MTL301", 8, 10, "not a gate"),
    ("feature f : sparce(vocab=1, dim=1)", "MTL301", 8, 13, "not a feature kind"),
    ("task t : binery(label=y) = net", "MTL301", 8, 10, "not a task kind"),
    ("weighting uncertainity", "MTL301", 8, 11, "not a weighting"),
    ("tower t = mlp(all, [8], dropuot=0.1)", "MTL302", 8, 25, "unknown option"),
    ("feature f : sparse(dim=8)", "MTL303", 8, 13, "`vocab` missing"),
    ("task t : multiclass(label=y) = net", "MTL303", 8, 10, "`classes` missing"),
    ("transfer t = ait(net)", "MTL303", 8, 14, "`from` missing"),
    ("tower t = mlp(all)", "MTL303", 8, 11, "widths missing"),
    ("group g = []", "MTL303", 8, 11, "empty group"),
    ("feature f : sparse(vocab=10, dim=8.5)", "MTL304", 8, 34, "not a whole number"),
    ("tower t = mlp(all, 8)", "MTL304", 8, 20, "not a list"),
    ("tower t = all", "MTL304", 8, 11, "not a block"),
    ("tower t = mlp(all, [8], dropout=1.5)", "MTL305", 8, 33, "out of range"),
    ("feature f : sparse(vocab=0, dim=8)", "MTL305", 8, 26, "out of range"),
    ("feature f : sparse(vocab=3_000_000_000, dim=8)", "MTL305", 8, 26, "out of range"),
    ("tower t = mlp(all, [2_000_000])", "MTL305", 8, 21, "out of range"),
    ("expert e x0 = mlp(all, [8])", "MTL305", 8, 10, "out of range"),
    (
        "expert e x2 = mlp(all, [8])\ngate g = softmax(all, top=3) over [e]",
        "MTL305",
        9,
        27,
        "out of range",
    ),
    ("gate g = softmax(all, temperature=0) over [net]", "MTL305", 8, 35, "out of range"),
    ("tower t = mlp(all, [8], dropout=1e999)", "MTL305", 8, 33, "out of range"),
    ("task t : multiclass(classes=1, label=y) = net", "MTL305", 8, 29, "out of range"),
    ("task t : binary(label=y, weight=-1) = net", "MTL305", 8, 33, "out of range"),
    ("weighting gradnorm(alpha=0)", "MTL305", 8, 26, "out of range"),
    ("feature f : sparse(vocab=10, dim=4, dim=8)", "MTL306", 8, 37, "repeated"),
    ("tower t = mlp(all, [8], activation=rellu)", "MTL307", 8, 36, "invalid choice"),
    ("feature f : sequence(vocab=9, dim=2, maxlen=3, pool=avg)", "MTL307", 8, 53, "invalid choice"),
    ("transfer t = ait(net, from=net, bias=yes)", "MTL307", 8, 38, "invalid choice"),
    ("tower t = mlp(all, [8], 0.1)", "MTL308", 8, 25, "extra argument"),
    ("feature f : sparse(10, dim=8)", "MTL308", 8, 20, "extra argument"),
    ("gate g = condition(all) over [a]", "MTL309", 8, 10, "planned, not yet available"),
    ("gate r = snr() over [net]", "MTL316", 8, 21, "one column"),
    ("gate r = snr(transform=maybe) over [net]", "MTL307", 8, 24, "invalid choice"),
    ("gate s = cross_stitch(net) over [net]", "MTL316", 8, 33, "one source"),
    (
        "tower n2 = mlp(all, [8])\ngate s = cross_stitch(all) over [net, n2]",
        "MTL316",
        9,
        23,
        "not a source",
    ),
    (
        "expert e x2 = mlp(all, [8])\ngate s = cross_stitch(net) over [net, e]",
        "MTL316",
        9,
        33,
        "a pool or a stopgrad",
    ),
    (
        "tower n2 = mlp(all, [8])\ngate s = cross_stitch(net, weights=x) over [net, n2]",
        "MTL307",
        9,
        36,
        "invalid choice",
    ),
    ("tower t = cross(all)", "MTL303", 8, 11, "`layers` missing"),
    ("tower t = cross(all, layers=0)", "MTL305", 8, 29, "out of range"),
    ("tower t = cross(all, layers=2, form=mixed)", "MTL307", 8, 37, "invalid choice"),
    ("tower t = cross(all, layers=2, bias=within)", "MTL307", 8, 37, "invalid choice"),
    ("tower t = cross(all, layers=2, rank=8)", "MTL315", 8, 32, "not a vector option"),
    (
        "expert e x2 = cross(all, layers=2, form=matrix, experts=2)",
        "MTL315",
        8,
        49,
        "not a matrix option",
    ),
    ("tower t = cross(all, [8], layers=2)", "MTL308", 8, 22, "extra argument"),
    ("tower t = cross(ctr, layers=2)", "MTL206", 8, 17, "a task"),
    ("tower t = mlp(stopgrad(net), [8])", "MTL311", 8, 15, "not here"),
    (
        "tower t = apg(all, [8], by=user_id, expand=[4], shared=false)",
        "MTL314",
        8,
        37,
        "with shared=false",
    ),
    ("tower t = apg(all, [8, 4], by=user_id, rank=[2])", "MTL305", 8, 45, "1, not 2"),
    ("tower t = apg(all, [8])", "MTL303", 8, 11, "`by` missing"),
    ("tower t = star(all, [8])", "MTL303", 8, 11, "`domain` missing"),
    ("tower t = star(all, [8], domain=price)", "MTL206", 8, 33, "a dense feature"),
    ("tower t = star(all, [8], domain=user_id, combine=max)", "MTL307", 8, 50, "invalid choice"),
    ("tower t = apg(all, [8], by=user_id, inner=prelu)", "MTL307", 8, 43, "invalid choice"),
    ("expert e x2 = apg(all, [8], by=user_id)", "MTL309", 8, 15, "planned, not yet available"),
    ("gate g = sigmoid(all) over [net, user_id]", "MTL312", 8, 28, "2 sources"),
    ("gate g = softmax(all, dropout=0.1) over [net]", "MTL313", 8, 23, "no hidden layers"),
    ("task both : binary(label=y, bias=false) = ctr * ctr", "MTL510", 8, 29, "no head"),
    ("task cvr : binary(label=buy, loss=ipw(cvr)) = net", "MTL511", 8, 39, "the task itself"),
    (
        "task cvr : binary(label=click, loss=ipw(ctr)) = net",
        "MTL511",
        8,
        25,
        "the clicks, not the conversions",
    ),
    (
        "task c2 : binary = net\ntask cvr : binary(label=buy, loss=ipw(c2)) = net",
        "MTL511",
        9,
        39,
        "not a click task",
    ),
    ("task cvr : binary(label=buy, loss=ipw) = net", "MTL303", 8, 35, "propensity missing"),
    ("task cvr : binary(label=buy, loss=dr(ctr)) = net", "MTL303", 8, 35, "`imputation` missing"),
    (
        "task cvr : binary(label=buy, loss=dr(ctr, imputation=ctr)) = net",
        "MTL512",
        8,
        54,
        "not a latent regression task",
    ),
    ("task cvr : regression(label=buy, loss=ipw(ctr)) = net", "MTL503", 8, 39, "for a binary task"),
    (
        "task cvr : binary(label=buy, loss=ipw(ctr)) = net\n"
        "task both : binary(label=buy) = ctr * cvr\ntask x : binary(label=buy) = net",
        "MTL504",
        10,
        23,
        "label used again",
    ),
    ("group g = [stopgrad(user_id, net)]", "MTL308", 8, 30, "extra argument"),
    ("gate g = softmax(all) over [net, net]", "MTL310", 8, 34, "repeated"),
    # widths and sizes
    (
        "tower small = mlp(all, [4])\ngate g = softmax(all) over [net, small]",
        "MTL401",
        9,
        34,
        "width 4",
    ),
    ("tower small = mlp(all, [4])\ntransfer t = ait(small, from=net)", "MTL402", 9, 30, "width 8"),
    (
        "feature h : sequence(vocab=40, dim=8, maxlen=3, table=item_id)",
        "MTL403",
        8,
        55,
        "vocab=50, dim=8",
    ),
    ("feature h : sparse(vocab=1, dim=1, table=price)", "MTL404", 8, 42, "no table here"),
    ("feature h : sparse(vocab=1, dim=1, table=h)", "MTL404", 8, 42, "itself"),
    (
        "feature big : sparse(vocab=2_000_000_000, dim=64)",
        "MTL405",
        8,
        1,
        "128,000,000,000 parameters here",
    ),
    # tasks
    (
        "task r : regression(label=y) = net\ntask p : binary(label=z) = ctr * r",
        "MTL501",
        9,
        34,
        "regression, not binary",
    ),
    (
        "task cvr : binary = net\ntask p : regression(label=z) = ctr * cvr",
        "MTL501",
        9,
        10,
        "must be binary",
    ),
    ("task p : binary(label=z) = ctr * net", "MTL502", 8, 34, "not a task"),
    ("task t : binary(label=y, loss=mse) = net", "MTL503", 8, 31, "not a binary loss"),
    ("task t : regression(label=y, loss=bce) = net", "MTL503", 8, 35, "not a regression loss"),
    ("task t : binary(label=click) = net", "MTL504", 8, 23, "label used again"),
    ("task t : binary(label=price) = net", "MTL505", 8, 23, "an input too"),
    (
        "task r : regression(label=y) = net\nconstrain r <= ctr",
        "MTL506",
        9,
        11,
        "regression, not binary",
    ),
    (
        "task cvr : binary = net\ntask p : binary(label=z) = ctr * cvr * ctr",
        "MTL507",
        9,
        40,
        "repeated",
    ),
    ("task cvr : binary(loss=focal) = net", "MTL508", 8, 19, "latent task"),
    ("constrain ctr <= ctr", "MTL509", 8, 18, "same task"),
]


@pytest.mark.parametrize("extra, code, line, column, label", CHECK_ERRORS)
def test_check_error_is_located(extra, code, line, column, label):
    diags = diagnostics_of(BASE + extra + "\n")
    found = [(d.code, d.span.line, d.span.column, d.label) for d in diags]
    assert (code, line, column, label) in found, found
    assert all(d.span.file == "t.mtl" for d in diags)


def test_missing_model_statement():
    (diag,) = diagnostics_of(BASE.split("\n", 1)[1])
    assert (diag.code, diag.span.line, diag.span.column) == ("MTL101", 1, 1)
    assert [d.code for d in diagnostics_of("")] == ["MTL101"]


def test_invalid_model_names():
    for name in ("class", "nn", "torch", "__dunder__", "super", "dict"):
        (diag,) = diagnostics_of(BASE.replace("model M", f"model {name}"))
        assert (diag.code, diag.span.line, diag.span.column) == ("MTL103", 1, 7)


def test_no_supervised_task():
    (diag,) = diagnostics_of(BASE.replace("binary(label=click)", "binary"))
    assert (diag.code, diag.span.line, diag.span.column, diag.label) == (
        "MTL105",
        1,
        7,
        "nothing to learn from",
    )


def test_suggestions_name_the_close_spelling():
    diags = diagnostics_of(BASE + "tower t = mlp(al, [8], activation=gleu, dropuot=0.1)\n")
    helps = {d.code: d.help for d in diags}
    assert helps["MTL203"] == "a group with a similar name exists: `all`"
    assert helps["MTL307"] == "an activation with a similar name exists: `gelu`"
    assert helps["MTL302"] == "an option with a similar name exists: `dropout`"


def test_all_errors_of_a_pass_are_reported_sorted_without_cascades():
    diags = diagnostics_of(
        BASE
        + "tower t = mlp(nope, [0])\n"  # unknown input, and a width out of range
        + "tower u = mlp(t, [8])\n"  # t failed: no second error about it
        + "task a : binary(label=click) = u\n"  # label used twice
    )
    assert [(d.code, d.span.line) for d in diags] == [("MTL203", 8), ("MTL305", 8), ("MTL504", 10)]


def test_a_spec_error_is_never_half_a_model():
    with pytest.raises(SpecError) as caught:
        _model(BASE + "tower t = mlp(all, [8], dropout=2)\n")
    assert str(caught.value).startswith(
        "m.mtl:8:33: error[MTL305]: dropout must be at least 0 and less than 1, not 2"
    )
    assert caught.value.source.startswith("model M")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_generated_valid_specs_check_clean(generated):
    model = check(parse(generated.source, "gen.mtl"))
    assert {task.name: task.width for task in model.tasks} == {
        n: w for n, (_, w) in generated.tasks.items()
    }
    assert {feature.name for feature in model.features} == set(generated.features)
    names = [node.name for node in model.nodes]
    for node in model.nodes:  # declaration order is a topological order
        for ref in _references(node):
            assert names.index(ref) < names.index(node.name)


def _references(node: ir.Node) -> list[str]:
    if isinstance(node, ir.Group):
        return node.members
    if isinstance(node, (ir.Expert, ir.Tower)):
        return [node.block.input]
    if isinstance(node, ir.Gate):
        return [node.input, *(source.name for source in node.sources)]
    if isinstance(node, ir.Transfer):
        return [node.current, node.previous]
    if isinstance(node, ir.Task):
        return [node.input] if node.input else node.factors
    return [node.table] if getattr(node, "table", None) else []
