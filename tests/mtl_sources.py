"""Spec texts the front-end tests share: LANGUAGE.md's examples, specs/*.mtl, a small base.

``language_examples()`` extracts the normative examples from
``../shared/LANGUAGE.md`` (beside the checkout) when it is there.
"""

from __future__ import annotations

import re
from pathlib import Path

from mtlc.check import check
from mtlc.diagnostics import SpecError
from mtlc.frontend.parser import parse

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE_MD = ROOT.parent / "shared" / "LANGUAGE.md"

# A small valid spec that diagnostic tests append one bad statement to (lines 1-7).
BASE = """model M "base"
feature user_id : sparse(vocab=100, dim=8)
feature item_id : sparse(vocab=50, dim=8)
feature price : dense
group all = [user_id, item_id, price]
tower net = mlp(all, [8])
task ctr : binary(label=click) = net
"""


def language_examples() -> dict[str, str]:
    """The code blocks of LANGUAGE.md that are whole specs, by their section title."""
    if not LANGUAGE_MD.exists():
        return {}
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    examples = {}
    for match in re.finditer(r"^### (.+?)\n+```\n(.*?)```", text, flags=re.S | re.M):
        title, body = match.group(1).strip(), match.group(2)
        if body.lstrip().startswith("model "):
            examples[title] = body
    return examples


def spec_files() -> dict[str, str]:
    """The specs under specs/, by file name.

    Never empty: the tests over them would pass on nothing.
    """
    specs = {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted((ROOT / "specs").glob("*.mtl"))
    }
    assert specs, "no specs under specs/"
    return specs


def diagnostics_of(source: str, filename: str = "t.mtl"):
    """The diagnostics of ``source`` (parse, then check); [] if it is valid."""
    try:
        check(parse(source, filename))
    except SpecError as error:
        return error.diagnostics
    return []
