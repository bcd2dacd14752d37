"""Fuzzing the front end: mutated specs and random bytes always end, quickly, in an
``ir.Model`` or a ``SpecError`` with well-formed diagnostics, never another exception."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlc import ir
from mtlc.check import check
from mtlc.diagnostics import CODES, SpecError, render_github, render_json
from mtlc.frontend.parser import parse
from tests.mtl_sources import BASE, language_examples, spec_files
from tests.strategies import valid_specs

SEEDS = [BASE, *language_examples().values(), *spec_files().values()]
TOKEN = re.compile(r"\s+|\w+|\S")
GARBAGE = [
    ")",
    "]",
    "[",
    "(",
    "=",
    ",",
    ":",
    "x",
    "x 4",
    "*",
    "<=",
    "\n",
    "\n\n",
    "#",
    '"',
    "\\",
    "-",
    "1e999",
    "0",
    "-1",
    "9" * 60,
    "__init__",
    "model",
    "over",
    "weight",
    "task",
    "\0",
    "\x1b",
    "é",
    "€",
    "\ufffd",
    "[[[[",
    "))))",
    "mlp(",
    "softmax(all) over [",
    "binary(label=",
    "\t",
    "\r",
    "'",
    "😀",
    "lambda",
]
SETTINGS = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


def _front_end(source: str) -> None:
    """Run parse + check; assert the outcome is a model or well-formed diagnostics."""
    try:
        model = check(parse(source, "fuzz.mtl"))
    except SpecError as error:
        assert error.diagnostics
        lines = source.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 2
        for diag in error.diagnostics:
            assert diag.code in CODES and diag.message
            assert (
                diag.span.file == "fuzz.mtl"
                and 1 <= diag.span.line <= lines
                and diag.span.column >= 1
            )
        text = str(error)
        assert "Traceback" not in text and "Token(" not in text
        json.loads(render_json(error.diagnostics))
        assert render_github(error.diagnostics).count("::error") == len(error.diagnostics)
    else:
        assert isinstance(model, ir.Model)
        ir.Model.model_validate_json(model.model_dump_json())


@st.composite
def mutated(draw) -> str:
    seed = draw(st.sampled_from(SEEDS)) if draw(st.integers(0, 3)) else draw(valid_specs()).source
    tokens = TOKEN.findall(seed)
    for _ in range(draw(st.integers(1, 4))):
        if not tokens:
            break
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(
            st.sampled_from(["delete", "duplicate", "swap", "insert", "truncate", "number", "name"])
        )
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "insert":
            tokens.insert(i, draw(st.sampled_from(GARBAGE) | st.text(max_size=5)))
        elif op == "truncate":
            tokens = tokens[:i]
        elif op == "number":
            numbers = [k for k, t in enumerate(tokens) if t[:1].isdigit()]
            if numbers:
                tokens[draw(st.sampled_from(numbers))] = draw(
                    st.sampled_from(["0", "-1", "1e999", "0.5", "10" * 20])
                )
        else:
            names = [k for k, t in enumerate(tokens) if re.fullmatch(r"[a-z_]\w*", t)]
            if names:
                tokens[draw(st.sampled_from(names))] = tokens[draw(st.sampled_from(names))]
    return "".join(tokens)


@SETTINGS
@given(mutated())
def test_mutated_specs_end_in_a_model_or_diagnostics(source):
    _front_end(source)


@settings(max_examples=60, deadline=5000)
@given(st.binary(max_size=300), st.sampled_from(["utf-8", "latin-1"]))
def test_random_bytes_end_in_diagnostics(data, encoding):
    _front_end(data.decode(encoding, errors="replace"))


@settings(max_examples=40, deadline=5000)
@given(st.text(max_size=200))
def test_random_text_ends_in_diagnostics(text):
    _front_end(text)


def test_hostile_descriptions_stay_data():
    source = BASE.replace('"base"', r'"\"\"\" + __import__(\"os\").system(\"x\") # \n\u0000"')
    model = check(parse(source))
    assert model.description == '""" + __import__("os").system("x") # \n\x00'
