"""The parser: text -> AST with spans, and syntax errors -> located diagnostics."""

from __future__ import annotations

import pytest

from mtlc.diagnostics import SpecError
from mtlc.frontend import syntax as s
from mtlc.frontend.parser import MAX_NESTING, MAX_SOURCE_CHARS, MAX_TOKENS, parse


def _error(source: str):
    with pytest.raises(SpecError) as caught:
        parse(source, "bad.mtl")
    (diag,) = caught.value.diagnostics
    return diag


def test_statement_kinds_and_spans():
    spec = parse(
        'model M "a \\"quoted\\" line\\n"\n'
        "feature u : sparse(vocab=100_000, dim=8)\n"
        "expert shared x4 = mlp(u, [256, 128], dropout=0.1)\n"
        "gate g = softmax(u, top=2, temperature=1e-3) over [shared]\n"
        "task a : binary = g\n"
        "task b : binary(label=buy) = a * a2\n"
        "constrain a <= b weight 0.6\n"
        "weighting gradnorm(alpha=1.5)\n",
        "m.mtl",
    )
    model, feature, expert, gate, task, product, constrain, weighting = spec.statements
    assert model.description.value == 'a "quoted" line\n'
    assert feature.kind.func.text == "sparse" and feature.kind.keywords[0].value.value == 100_000
    assert (expert.count.value, expert.count.text) == (4, "x4")
    assert (expert.count.span.line, expert.count.span.column, expert.count.span.end_column) == (
        3,
        15,
        17,
    )
    dims = expert.block.args[1]
    assert [item.value for item in dims.items] == [256, 128]
    assert expert.block.keywords[0].value.value == pytest.approx(0.1)
    assert gate.gate.keywords[1].value.value == pytest.approx(1e-3)
    assert [name.text for name in gate.sources.items] == ["shared"]
    assert task.kind.parens is False and [n.text for n in task.body] == ["g"]
    assert [n.text for n in product.body] == ["a", "a2"]
    assert constrain.weight.value == pytest.approx(0.6)
    assert weighting.kind.func.text == "gradnorm"
    assert (gate.span.line, gate.span.column) == (4, 1)
    assert gate.gate.func.span == s.Name("softmax", gate.gate.func.span).span
    assert (gate.gate.func.span.column, gate.gate.func.span.end_column) == (10, 17)


def test_continuation_inside_brackets_comments_blank_lines_and_crlf():
    text = (
        "# header\r\n\r\nmodel M\r\n"
        "group all = [\r\n  a,   # first\r\n  b,\r\n]\r\n"
        "tower t = mlp(\n    all,\n    [8, 4],\n)\n"
    )
    model, group, tower = parse(text).statements
    assert [item.text for item in group.members.items] == ["a", "b"]
    assert (group.span.line, group.span.end_line) == (4, 7)
    assert tower.block.args[0].text == "all"


def test_keywords_are_contextual():
    # `weight`, `over` and statement words are names where a name is expected.
    spec = parse(
        "model M\ntask weight : binary(label=model, weight=2) = over\nconstrain weight <= group\n"
    )
    task, constrain = spec.statements[1:]
    assert task.name.text == "weight" and task.kind.keywords[0].value.text == "model"
    assert constrain.right.text == "group"


def test_negative_and_huge_numbers_reach_the_checker():
    spec = parse("model M\ntower t = mlp(a, [-3, " + "9" * 5000 + "], dropout=-0.5)\n")
    dims = spec.statements[1].block.args[1].items
    assert dims[0].value == -3 and dims[1].value == float("inf")


def test_empty_source_parses_to_no_statements():
    assert parse("").statements == ()
    assert parse("# only a comment\n\n").statements == ()


# -- syntax errors: code, line, column, label ------------------------------------------

SYNTAX_ERRORS = [
    ("tower t = mlp(all [64])\n", "MTL011", 1, 19, "expected `,` before this"),
    ("feature f€ : dense\n", "MTL002", 1, 10, "not part of the language"),
    ('model M "abc\n', "MTL003", 1, 9, "unterminated string"),
    ('model M "a\\qb"\n', "MTL004", 1, 9, "invalid escape"),
    ("model M\ngroup g = [a, b\ntower t = mlp(g, [1])\n", "MTL005", 2, 11, "opened here"),
    ("model M\ngroup g = [a, b", "MTL005", 2, 11, "opened here"),
    ("tower t = mlp(a, [1)]\n", "MTL006", 1, 20, "expected `]`"),
    ("tower t = mlp(a, [1]))\n", "MTL006", 1, 22, "unmatched"),
    ("model M\nfeatures x : dense\n", "MTL007", 2, 1, "not a statement"),
    ("tower t mlp(a, [1])\n", "MTL008", 1, 9, "found the name `mlp`"),
    ("expert e x2 mlp(a, [1])\n", "MTL008", 1, 13, "found the name `mlp`"),
    ("expert e x 4 = mlp(a, [1])\n", "MTL009", 1, 10, "`x` then a number"),
    ("task t : binary(label=y)\n  = n\n", "MTL010", 1, 25, "the line ends here"),
    ("group g = [a b]\n", "MTL011", 1, 14, "expected `,` before this"),
    ("feature f dense\n", "MTL001", 1, 11, "found the name `dense`"),
    ("gate g = softmax(a) [e]\n", "MTL001", 1, 21, "found `[`"),
    ("constrain a <= b 0.5\n", "MTL001", 1, 18, "found the number `0.5`"),
    ("tower t = mlp(a, [1]) extra\n", "MTL001", 1, 23, "unexpected here"),
    ("tower t = mlp(a, [1]);\n", "MTL002", 1, 22, "not part of the language"),
    (
        "tower t = " + "[" * (MAX_NESTING + 5) + "]" * (MAX_NESTING + 5) + "\n",
        "MTL014",
        1,
        11 + MAX_NESTING,
        "too deep",
    ),
    ("model M\nfeature a : de\0nse\n", "MTL013", 2, 15, "here"),
    ("model M\x1b\n", "MTL013", 1, 8, "here"),
    ("model \ufffd\n", "MTL013", 1, 7, "here"),
]


@pytest.mark.parametrize("source, code, line, column, label", SYNTAX_ERRORS)
def test_syntax_error_is_located(source, code, line, column, label):
    diag = _error(source)
    assert (diag.code, diag.span.line, diag.span.column, diag.label) == (code, line, column, label)
    assert diag.span.file == "bad.mtl"
    assert "Unexpected" not in diag.message and "Token(" not in diag.message


def test_unknown_statement_suggests_the_closest_word():
    assert (
        _error("towr t = mlp(a, [1])\n").help == "a statement with a similar name exists: `tower`"
    )


def test_source_size_is_capped():
    diag = _error("#" * (MAX_SOURCE_CHARS + 1))
    assert (diag.code, diag.span.line) == ("MTL012", 1)
    diag = _error("model M\ntower t = mlp(a, [" + "1," * (MAX_TOKENS // 2) + "])\n")
    assert (diag.code, diag.span.line) == ("MTL012", 1) and "tokens" in diag.message


def test_deep_nesting_does_not_blow_the_stack():
    depth = 20_000
    diag = _error("tower t = mlp(a, " + "[" * depth + "]" * depth + ")\n")
    assert diag.code == "MTL014"


def test_long_flat_specs_parse():
    lines = ["model M", "feature f : dense"] + [f"tower t{i} = mlp(f, [2])" for i in range(2000)]
    assert len(parse("\n".join(lines)).statements) == 2002


def test_a_no_break_space_in_a_description_is_text():
    (statement,) = parse('model M "price\xa0list"\n', "nbsp.mtl").statements
    assert statement.description.value == "price\xa0list"
