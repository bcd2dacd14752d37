"""``mtlc graph SPEC -o arch.svg|arch.dot|-``: the architecture as SVG (laid out by mtlc) or DOT."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mtlc import ir
from mtlc.api import compile_ir
from mtlc.cli import main
from mtlc.views.graph import columns, to_dot
from mtlc.views.svg import draw as to_svg
from tests.strategies import spec_sources

ROOT = Path(__file__).resolve().parents[1]
SPECS = {path.stem: path for path in sorted((ROOT / "specs").glob("*.mtl"))}
SVG = "{http://www.w3.org/2000/svg}"

ODD_TEXT = """model Odd "a <b> & 'c' description"
feature user_id : sparse(vocab=100, dim=4)
group all = [user_id]
tower t = mlp(all, [4])
task ctr : binary(label=click) = t
"""


def _model(name: str) -> ir.Model:
    return compile_ir(SPECS[name].read_text(), SPECS[name].name)


def _reads(node: ir.Node) -> set[str]:
    """What a node reads, straight from the IR (independent of mtlc.graph)."""
    if isinstance(node, ir.Group):
        return set(node.members)
    if isinstance(node, (ir.Expert, ir.Tower)):
        return {node.block.input}
    if isinstance(node, ir.Gate):
        return {node.input} | {source.name for source in node.sources}
    if isinstance(node, ir.ScaleGate):
        return {node.input, node.source}
    if isinstance(node, ir.Apg):
        return {node.input, node.condition}
    if isinstance(node, ir.Cross):  # a tower's or an expert pool's
        return {node.input}
    if isinstance(node, ir.Stitch):
        return set(node.sources)
    if isinstance(node, ir.Route):
        return {source.name for source in node.sources}
    if isinstance(node, ir.Star):
        return {node.input, node.domain}
    if isinstance(node, ir.Transfer):
        return {node.current, node.previous}
    if isinstance(node, ir.Task):
        return {node.input} if node.input else set(node.factors)
    return set()


def _dataflow(model: ir.Model) -> set[tuple[str, str]]:
    return {(source, node.name) for node in model.nodes for source in _reads(node)}


def _parts(svg: str):
    root = ET.fromstring(svg)
    nodes = [g for g in root.iter(f"{SVG}g") if g.get("class", "").startswith("node ")]
    paths = [p for p in root.iter(f"{SVG}path") if p.get("class", "").startswith("edge ")]
    return root, nodes, paths


@pytest.mark.parametrize("name", sorted(SPECS))
def test_svg_has_one_box_per_node_and_one_edge_per_dataflow_edge(name: str):
    model = _model(name)
    _, nodes, paths = _parts(to_svg(model))
    assert [g.get("id") for g in nodes] == [f"node-{n.name}" for n in model.nodes]
    assert all(len(g.findall(f"{SVG}rect[@class='box']")) == 1 for g in nodes)
    flows = [
        (p.get("data-from"), p.get("data-to")) for p in paths if "constraint" not in p.get("class")
    ]
    assert len(flows) == len(set(flows)) and set(flows) == _dataflow(model)
    rules = [
        (p.get("data-from"), p.get("data-to")) for p in paths if "constraint" in p.get("class")
    ]
    assert rules == [(c.left, c.right) for c in model.constraints]


def _boxes(svg: str) -> dict[str, tuple[float, float, float, float]]:
    _, nodes, _ = _parts(svg)
    out = {}
    for g in nodes:
        rect = g.find(f"{SVG}rect[@class='box']")
        x, y = float(rect.get("x")), float(rect.get("y"))
        out[g.get("id")[5:]] = (x, y, x + float(rect.get("width")), y + float(rect.get("height")))
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_layout_boxes_do_not_overlap_and_edges_run_left_to_right(name: str):
    model = _model(name)
    svg = to_svg(model)
    root, _, paths = _parts(svg)
    boxes = _boxes(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    items = sorted(boxes.items())
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(items):
        assert 0 <= ax0 < ax1 <= width and 0 <= ay0 < ay1 <= height, a
        for b, (bx0, by0, bx1, by1) in items[i + 1 :]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)
    for source, target in _dataflow(model):
        assert boxes[source][2] < boxes[target][0], (source, target)
        assert columns(model)[source] < columns(model)[target]


def test_constraints_and_products_are_dashed():
    _, _, paths = _parts(to_svg(_model("aitm")))
    assert sum("constraint" in p.get("class") for p in paths) == 2
    dot = to_dot(_model("esmm"))
    assert '"ctr" -> "ctcvr" [style=dashed];' in dot and '"cvr" -> "ctcvr" [style=dashed];' in dot
    assert '"buy" -> "click" [style=dashed' in to_dot(_model("aitm"))


def test_expert_pools_are_drawn_as_stacks():
    _, nodes, _ = _parts(to_svg(_model("mmoe")))
    shared = next(g for g in nodes if g.get("id") == "node-shared")
    assert len(shared.findall(f"{SVG}rect[@class='stack']")) == 2
    assert "shared x4" in "".join(shared.itertext())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_dot_has_every_node_and_edge_and_is_deterministic(name: str):
    model = _model(name)
    dot = to_dot(model)
    assert dot == to_dot(_model(name))
    assert dot.startswith(f'digraph "{model.name}" {{') and dot.endswith("}\n")
    for node in model.nodes:
        assert dot.count(f'\n  "{node.name}" [label=') == 1
    arrows = set(re.findall(r'^  "(\w+)" -> "(\w+)"', dot, flags=re.M))
    rules = {(c.left, c.right) for c in model.constraints}
    assert arrows == _dataflow(model) | rules


def test_odd_characters_are_escaped(tmp_path: Path):
    model = compile_ir(ODD_TEXT, "odd.mtl")
    root = ET.fromstring(to_svg(model))
    assert root.find(f"{SVG}title").text == "Odd: a <b> & 'c' description"
    assert "label=\"Odd: a <b> & 'c' description\"" in to_dot(model)
    control = compile_ir(ODD_TEXT.replace("description", r"\x01 \n"), "odd.mtl")
    root = ET.fromstring(to_svg(control))  # XML allows no control character, even escaped
    assert root.find(f"{SVG}title").text == r"Odd: a <b> & 'c' \x01 \n"
    dot = to_dot(control)
    assert "\x01" not in dot and "label=\"Odd: a <b> & 'c' \\\\x01 \\\\n\"" in dot


def test_cli_writes_svg_and_dot_and_prints_dot(tmp_path: Path, capsys):
    spec = str(SPECS["ple"])
    assert main(["graph", spec, "-o", str(tmp_path / "arch.svg")]) == 0
    ET.parse(tmp_path / "arch.svg")
    assert main(["graph", spec, "-o", str(tmp_path / "arch.dot")]) == 0
    assert main(["graph", spec, "-o", "-"]) == 0
    assert capsys.readouterr().out == (tmp_path / "arch.dot").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.dot", "arch.svg"]


def test_an_invalid_spec_gives_diagnostics_exit_1_and_no_file(tmp_path: Path, capsys):
    bad = tmp_path / "bad.mtl"
    bad.write_text(ODD_TEXT.replace("group all = [user_id]", "group all = [user_ix]"))
    out = tmp_path / "arch.svg"
    assert main(["graph", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "user_id" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["graph", str(SPECS["mmoe"]), "-o", str(tmp_path / "arch.png")]) == 2
    assert "name it .svg, .dot or .gv" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mtl"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_sources(max_networks=6))
def test_random_specs_draw_every_node_and_edge(source: str):
    model = compile_ir(source, "random.mtl")
    svg = to_svg(model)
    _, nodes, paths = _parts(svg)
    assert len(nodes) == len(model.nodes)
    flows = {
        (p.get("data-from"), p.get("data-to")) for p in paths if "constraint" not in p.get("class")
    }
    assert flows == _dataflow(model)
    assert len(paths) == len(_dataflow(model)) + len(model.constraints)
    boxes = _boxes(svg)
    for source_name, target in _dataflow(model):
        assert boxes[source_name][2] < boxes[target][0]
    assert set(re.findall(r'^  "(\w+)" -> "(\w+)"', to_dot(model), flags=re.M)) == _dataflow(
        model
    ) | {(c.left, c.right) for c in model.constraints}
