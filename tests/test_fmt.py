"""``mtlc fmt``: the canonical layout, comments kept, idempotent, the same model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlc.api import compile_ir
from mtlc.cli import main
from mtlc.formatter import format_spec
from tests.strategies import spec_sources

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.mtl"))

MESSY = """# a comment at the top

model   M  "messy"
feature user_id:sparse(vocab=100,dim=8)   # ids
feature price  :   dense
group all=[user_id,price]


tower net =   mlp(all,[8,4],  dropout=0.1)
tower net2=mlp(all, [4])
gate g=softmax(all) over [net, net2]
task ctr:binary(label=click)=net
task cvr : binary = net
task ctcvr:binary(label=buy)=ctr*cvr
constrain cvr<=ctr   weight 0.5
"""

CANONICAL = """# a comment at the top

model M "messy"

feature user_id : sparse(vocab=100, dim=8)  # ids
feature price   : dense

group all = [user_id, price]

tower net  = mlp(all, [8, 4], dropout=0.1)
tower net2 = mlp(all, [4])
gate  g    = softmax(all) over [net, net2]

task ctr   : binary(label=click) = net
task cvr   : binary              = net
task ctcvr : binary(label=buy)   = ctr * cvr
constrain cvr <= ctr weight 0.5
"""


def without_spans(value):
    if isinstance(value, dict):
        return {k: without_spans(v) for k, v in value.items() if k != "span"}
    if isinstance(value, list):
        return [without_spans(v) for v in value]
    return value


def same_model(a: str, b: str) -> bool:
    return without_spans(compile_ir(a).model_dump(mode="json")) == without_spans(
        compile_ir(b).model_dump(mode="json")
    )


def comments(text: str) -> list[str]:
    return re.findall(r"#[^\n]*", text)


def test_a_messy_spec_gets_the_canonical_layout():
    assert format_spec(MESSY) == CANONICAL
    assert same_model(MESSY, CANONICAL)


def test_a_long_statement_breaks_inside_its_longest_bracket():
    names = [f"feature_number_{i}" for i in range(8)]
    spec = "model M\n" + "".join(f"feature {n} : dense\n" for n in names)
    spec += f"group all = [{', '.join(names)}]\ntower t = mlp(all, [8])\n"
    spec += "task y : binary(label=y) = t\n"
    out = format_spec(spec)
    assert "group all = [\n    feature_number_0, feature_number_1," in out
    assert max(len(line) for line in out.splitlines()) <= 88
    assert same_model(spec, out) and format_spec(out) == out


def test_a_comment_inside_a_statement_keeps_the_statement_as_written():
    spec = CANONICAL.replace(
        "group all = [user_id, price]", "group all = [\n    user_id,   # the id\n    price\n]"
    )
    out = format_spec(spec)
    assert "group all = [\n    user_id,   # the id\n    price\n]" in out
    assert comments(out) == comments(spec)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_spec_is_formatted_and_formatting_keeps_its_model(spec):
    text = spec.read_text(encoding="utf-8")
    assert format_spec(text, spec.name) == text, "run: mtlc fmt specs/*.mtl"


def _messy(draw, source: str) -> str:
    """``source`` with random spacing, blank lines, comment lines and end-of-line comments."""
    lines = []
    for i, line in enumerate(source.splitlines()):
        if draw(st.booleans()):
            line = line.replace(", ", draw(st.sampled_from([",", ",  ", " , "])))
        if draw(st.booleans()):
            line = line.replace(" = ", draw(st.sampled_from(["=", "  =   "])), 1)
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from(["", "", f"# note {i}"])))
        if draw(st.integers(0, 3)) == 0:
            line += f"   # end {i}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None)
@given(data=st.data(), source=spec_sources())
def test_formatting_random_specs_is_idempotent_and_keeps_model_and_comments(data, source):
    messy = _messy(data.draw, source)
    out = format_spec(messy)
    assert format_spec(out) == out
    assert same_model(messy, out)
    assert comments(out) == comments(messy)


# -- the command ------------------------------------------------------------------------


def test_fmt_check_diff_and_rewrite(tmp_path, capsys):
    messy, clean = tmp_path / "messy.mtl", tmp_path / "clean.mtl"
    messy.write_text(MESSY)
    clean.write_text(CANONICAL)
    assert main(["fmt", "--check", str(messy), str(clean)]) == 1
    err = capsys.readouterr().err
    assert f"would reformat {messy}" in err and str(clean) not in err.replace(str(messy), "")
    assert messy.read_text() == MESSY  # --check changes nothing
    assert main(["fmt", "--diff", str(messy)]) == 0
    out = capsys.readouterr().out
    assert "-feature price  :   dense\n" in out and "+feature price   : dense\n" in out
    assert messy.read_text() == MESSY
    assert main(["fmt", str(messy), str(clean)]) == 0
    assert messy.read_text() == CANONICAL
    assert main(["fmt", "--check", str(messy)]) == 0


def test_fmt_leaves_a_spec_with_errors_untouched_and_reports_them(tmp_path, capsys):
    bad = tmp_path / "bad.mtl"
    text = MESSY.replace("mlp(all,[8,4],", "mlp(al,[8,4],")
    bad.write_text(text)
    assert main(["fmt", str(bad)]) == 1
    assert "error[MTL203]: unknown name `al`" in capsys.readouterr().err
    assert bad.read_text() == text
