"""``mtlc explain SPEC``: shapes and parameter counts per node, checked against torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mtlc.api import compile_ir, load_model, load_source
from mtlc.cli import main
from mtlc.views.summary import explain, render_json, render_text
from tests.strategies import spec_sources

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.mtl"))
MMOE = ROOT / "specs" / "mmoe.mtl"

# Every option that changes a parameter count: shared tables, norms, PReLU,
# gate hidden layers, AIT biases, multiclass heads, a product task.
OPTIONS = """model Options "every option that changes a parameter count"

feature user_id : sparse(vocab=50, dim=4)
feature item_id : sparse(vocab=40, dim=4)
feature other_item : sparse(vocab=40, dim=4, table=item_id)
feature clicks : sequence(vocab=30, dim=4, maxlen=5, pool=max)
feature seen : sequence(vocab=40, dim=4, maxlen=5, table=item_id)
feature stats : dense(dim=3)

group all = [user_id, item_id, other_item, clicks, seen, stats]

expert bn x3 = mlp(all, [8, 6], norm=batch)
expert ln x2 = mlp(all, [8, 6], norm=layer, activation=prelu)
expert pr x2 = mlp(all, [7, 6], activation=prelu, dropout=0.1)
gate g1 = softmax(all, top=2, hidden=[5]) over [bn, ln, pr]
gate g2 = softmax(all, temperature=0.5) over [bn, pr]
tower a = mlp(g1, [6], activation=gelu)
tower b = mlp(g2, [6], norm=layer)
transfer t = ait(b, from=a, bias=true)
transfer u = ait(a, from=b)

task kind : multiclass(classes=3, label=kind) = t
task value : regression(label=value, loss=huber) = u
task hidden : binary = a
task click : binary(label=click) = b
task both : binary(label=both) = hidden * click
"""

BAD = """model Bad
feature user_id : sparse(vocab=100, dim=4)
group all = [user_id, item_id]
tower t = mlp(all, [4])
task ctr : binary(label=click) = t
"""


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_total_is_the_compiled_models_parameter_count(spec: Path, opt_level: int):
    explanation = explain(compile_ir(spec.read_text(), spec.name))
    model = load_model(spec, opt_level=opt_level)()
    assert explanation.total == _numel(model)


@pytest.fixture
def options_spec(tmp_path: Path) -> Path:
    path = tmp_path / "options.mtl"
    path.write_text(OPTIONS)
    return path


@pytest.mark.parametrize("opt_level", [0, 1])
def test_every_option_is_counted(options_spec: Path, opt_level: int):
    explanation = explain(compile_ir(OPTIONS, "options.mtl"))
    assert explanation.total == _numel(load_model(options_spec, opt_level=opt_level)())


def test_each_node_owns_what_its_O0_module_holds(options_spec: Path):
    """At -O0 every node with weights is one attribute named as the node."""
    model = load_model(options_spec, opt_level=0)()
    rows = {row.name: row for row in explain(compile_ir(OPTIONS, "options.mtl")).rows}
    for name, row in rows.items():
        module = getattr(model, name, None)
        owned = _numel(module) if module is not None else 0
        assert row.params == owned, name
    assert rows["other_item"].params == 0 and rows["other_item"].shares == "item_id"
    assert rows["both"].params == 0  # a product task has no head
    assert rows["bn"].shape == "[B, 3, 6]" and rows["kind"].shape == "[B, 3]"
    assert rows["value"].shape == "[B]" and rows["stats"].shape == "[B, 3]"


def test_text_table(capsys):
    assert main(["explain", str(MMOE)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    shared = next(line for line in lines if " shared " in line)
    assert "expert x4 mlp(all, [256, 128])" in shared and "[B, 4, 128]" in shared
    assert (
        shared.split()[0] == "13" and shared.split()[5] == "166,400"
    )  # 4 * (33*256+256 + 256*128+128)
    gate = next(line for line in lines if " to_ctr " in line)
    assert gate.endswith("  136  gate softmax(all) over [shared]")  # 33*4 + 4
    assert "sparse(vocab=10_000, dim=16)" in out and "binary(label=click) of ctr_net" in out
    total = _numel(load_model(MMOE)())
    assert f"total {total:,} parameters" in out


def test_json_format(capsys):
    assert main(["explain", str(MMOE), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    model = compile_ir(MMOE.read_text(), str(MMOE))
    assert [n["name"] for n in document["nodes"]] == [n.name for n in model.nodes]
    assert document["total_params"] == sum(n["params"] for n in document["nodes"])
    assert document["embedding_params"] == 10_000 * 16 + 5_000 * 16
    to_ctr = next(n for n in document["nodes"] if n["name"] == "to_ctr")
    assert to_ctr["inputs"] == ["all", "shared"] and to_ctr["shape"] == "[B, 128]"


def test_an_invalid_spec_gives_its_diagnostics_and_exit_1(tmp_path: Path, capsys):
    bad = tmp_path / "bad.mtl"
    bad.write_text(BAD)
    assert main(["explain", str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:3:" in captured.err and "item_id" in captured.err
    assert captured.out == "" and "Traceback" not in captured.err


def test_a_diagnostic_code_is_still_explained(capsys):
    assert main(["explain", "MTL203"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("MTL203")
    assert main(["explain", "mtl203", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["code"] == "MTL203" and document["explanation"].strip() == text.strip()
    assert main(["explain", "missing.mtl"]) == 2
    assert "no such spec file" in capsys.readouterr().err


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_sources(max_networks=5))
def test_random_specs_are_counted_exactly(source: str):
    explanation = explain(compile_ir(source, "random.mtl"))
    assert explanation.total == _numel(load_source(source, "random.mtl", opt_level=1)())
    json.loads(render_json(explanation))
    assert render_text(explanation).count("\n") == len(explanation.rows) + 5  # title, header, total


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_view_says_a_node_the_same_way(spec: Path):
    """The explain table, the generated docstring and the graph's tooltips give each node's
    text word for word (all read ``node.text()``), and explain's count is the IR's."""
    from mtlc.views.graph import to_dot

    model = compile_ir(spec.read_text(), spec.name)
    source = compile_source(spec)
    docstring = source.split("Dataflow (B = batch size):", 1)[1].split('"""', 1)[0]
    dot = to_dot(model)
    rows = {line.split()[1]: line for line in render_text(explain(model)).splitlines()[3:-2]}
    for node in model.nodes:
        text = node.text()
        row = rows[node.name]
        assert row.endswith(f"  {text}"), (row, text)
        assert f"{node.name}  " in docstring and f"  {text}" in docstring, text
        assert f'tooltip="{text}"' in dot, text


def compile_source(spec: Path) -> str:
    from mtlc import compile_spec

    return compile_spec(spec.read_text(), spec.name)
