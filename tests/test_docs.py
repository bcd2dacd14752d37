"""The generated code quoted in the README and docs/internals.md is what mtlc emits today."""

from __future__ import annotations

import pytest

import mtlc
from tests.golden.refresh import QUOTED_MODULE, internals_module
from tests.mtl_sources import ROOT


def _quoted_module(markdown: str) -> list[str]:
    """The lines of the first code block that starts with the generated header.

    "..." lines are left out.
    """
    match = QUOTED_MODULE.search(markdown)
    assert match, "no generated module quoted"
    return [line for line in match.group(2).splitlines() if line.strip() != "..."]


def _in_order(quoted: list[str], generated: list[str]) -> list[str]:
    """The quoted lines not found, in order, among the generated ones."""
    missing, at = [], 0
    for line in quoted:
        try:
            at = generated.index(line, at) + 1
        except ValueError:
            missing.append(line)
    return missing


def test_readme_tour_quotes_the_generated_mmoe():
    generated = mtlc.compile_spec(
        (ROOT / "specs" / "mmoe.mtl").read_text(), "mmoe.mtl"
    ).splitlines()
    assert _in_order(_quoted_module((ROOT / "README.md").read_text()), generated) == []


def test_internals_quotes_the_generated_module_of_language_md_mmoe():
    module = internals_module()  # make golden rewrites the quote
    if module is None:
        pytest.skip("../shared/LANGUAGE.md is not beside the checkout")
    assert _quoted_module((ROOT / "docs" / "internals.md").read_text()) == module.splitlines()
