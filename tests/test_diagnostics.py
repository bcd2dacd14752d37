"""Diagnostics: rendering (text, JSON, GitHub), the code catalogue, SpecError, snapshots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtlc.diagnostics import (
    CODES,
    MAX_DIAGNOSTICS,
    Diagnostic,
    Span,
    SpecError,
    closest,
    explain_code,
    render_github,
    render_json,
    render_text,
)
from mtlc.diagnostics.codes import markdown
from tests.golden.diagnostics import snapshots as refresh
from tests.mtl_sources import BASE, diagnostics_of

ROOT = Path(__file__).resolve().parents[1]


def _span(line: int, column: int, end: int, file: str = "spec.mtl") -> Span:
    return Span(file=file, line=line, column=column, end_line=line, end_column=end)


UNKNOWN_POOL = Diagnostic(
    code="MTL203",
    message="unknown expert pool `shard`",
    span=_span(12, 29, 34),
    label="not declared",
    help="an expert pool with a similar name exists: `shared`",
)


def test_render_text_has_the_rustc_shape():
    source = "\n" * 11 + "gate g = softmax(all) over [shard]\n"
    assert render_text([UNKNOWN_POOL], source) == (
        "spec.mtl:12:29: error[MTL203]: unknown expert pool `shard`\n"
        "   |\n"
        "12 | gate g = softmax(all) over [shard]\n"
        "   |                             ^^^^^ not declared\n"
        "   |\n"
        "   = help: an expert pool with a similar name exists: `shared`"
    )


def test_render_text_keeps_tabs_under_the_caret_and_handles_odd_spans():
    diag = Diagnostic("MTL001", "m", _span(1, 3, 5), label="here", notes=("a note",))
    text = render_text([diag], "\tx yy\n")
    assert text.splitlines()[3] == "  | \t ^^ here"
    assert "  = note: a note" in text
    beyond = Diagnostic("MTL101", "m", _span(9, 1, 1))  # a line past the end: no crash
    assert "9 |" in render_text([beyond], "one line")
    multi = Diagnostic("MTL001", "m", Span(file="f", line=1, column=2, end_line=3, end_column=1))
    assert render_text([multi], "abcd\nx\ny").splitlines()[3] == "  |  ^^^"


def test_render_text_cuts_long_lines_around_the_span():
    line = "a" * 500 + "BAD" + "b" * 500
    diag = Diagnostic("MTL002", "m", _span(1, 501, 504), label="here")
    shown, caret = render_text([diag], line).splitlines()[2:4]
    assert len(shown) < 140 and "...aaa" in shown and shown.endswith("bbb...")
    assert shown[caret.index("^") :][:3] == "BAD" and caret.endswith("^^^ here")


def test_render_json_is_a_flat_list():
    (item,) = json.loads(render_json([UNKNOWN_POOL]))
    assert item == {
        "code": "MTL203",
        "severity": "error",
        "message": "unknown expert pool `shard`",
        "file": "spec.mtl",
        "line": 12,
        "column": 29,
        "end_line": 12,
        "end_column": 34,
        "label": "not declared",
        "help": "an expert pool with a similar name exists: `shared`",
        "notes": [],
    }


def test_render_github_annotations_escape_their_fields():
    line = render_github(UNKNOWN_POOL)
    assert line == (
        "::error file=spec.mtl,line=12,col=29,endLine=12,endColumn=34,title=MTL203::"
        "unknown expert pool `shard` (an expert pool with a similar name exists: `shared`)"
    )
    odd = Diagnostic("MTL001", "50% wrong\nhere", _span(1, 1, 2, file="a,b:c.mtl"))
    assert render_github([odd, odd]).splitlines()[0] == (
        "::error file=a%2Cb%3Ac.mtl,line=1,col=1,endLine=1,endColumn=2,title=MTL001"
        "::50%25 wrong%0Ahere"
    )


def test_spec_error_sorts_deduplicates_and_caps():
    late = Diagnostic("MTL203", "b", _span(5, 1, 2))
    early = Diagnostic("MTL204", "a", _span(2, 3, 4))
    error = SpecError([late, early, late], "x\n" * 6)
    assert error.diagnostics == [early, late]
    assert str(error).startswith("spec.mtl:2:3: error[MTL204]: a")
    many = [Diagnostic("MTL203", f"n{i}", _span(i + 1, 1, 2)) for i in range(MAX_DIAGNOSTICS + 7)]
    capped = SpecError(many, "")
    assert len(capped.diagnostics) == MAX_DIAGNOSTICS and capped.omitted == 7
    assert str(capped).endswith("... and 7 more error(s) not shown")


def test_closest():
    assert closest("shard", ["shared", "ctr"]) == "shared"
    assert closest("CTR", ["ctr", "cvr_tower"]) == "ctr"
    assert closest("zzz", ["shared"]) is None


def test_every_code_has_an_explanation_with_examples():
    for code, entry in CODES.items():
        assert re.fullmatch(r"MTL\d{3}", code)
        text = explain_code(code)
        assert text.startswith(f"{code}: {entry.title}")
        assert entry.bad != entry.good
        for line in (entry.bad + "\n" + entry.good).splitlines():
            assert "    " + line in text
    assert explain_code("mtl203") == explain_code("MTL203")
    assert explain_code("MTL999") is None


# Bad examples of the catalogue that are whole statements after BASE: each must give its code.
EXAMPLE_CODES = [
    "MTL201",
    "MTL202",
    "MTL204",
    "MTL205",
    "MTL301",
    "MTL302",
    "MTL303",
    "MTL304",
    "MTL305",
    "MTL306",
    "MTL307",
    "MTL308",
    "MTL309",
    "MTL316",
    "MTL404",
    "MTL405",
    "MTL509",
    "MTL511",
    "MTL512",
    "MTL001",
    "MTL007",
    "MTL008",
    "MTL009",
    "MTL010",
    "MTL011",
    "MTL003",
    "MTL006",
]


@pytest.mark.parametrize("code", EXAMPLE_CODES)
def test_catalogue_bad_example_gives_its_code_and_good_one_does_not(code):
    assert code in [d.code for d in diagnostics_of(BASE + CODES[code].bad + "\n")]
    assert code not in [d.code for d in diagnostics_of(BASE + CODES[code].good + "\n")]


def test_language_reference_lists_every_code_as_the_catalogue_says():
    reference = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert refresh.codes_section(reference) == markdown(), "run: make golden"


@pytest.mark.parametrize("spec, snapshot", refresh.cases(), ids=lambda p: p.name)
def test_rendered_diagnostics_match_their_snapshot(spec, snapshot):
    assert snapshot.exists(), "run: make golden"
    assert refresh.render(spec) == snapshot.read_text(encoding="utf-8")


def test_there_are_snapshots():
    assert len(refresh.cases()) >= 4
