"""The snapshots of rendered diagnostics, and the list of codes in docs/language.md.

Each ``NAME.mtl`` here is a bad spec; ``NAME.txt`` is what ``mtlc check`` prints
for it (``str(SpecError)``). ``make golden`` (``tests/golden/refresh.py``)
rewrites them and the codes section of docs/language.md (from
``compiler/diagnostics/codes.py``) and prints the diff to review;
``tests/test_diagnostics.py`` fails while one is stale.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
LANGUAGE_MD = HERE.parents[2] / "docs" / "language.md"
START, END = (
    "<!-- codes:start (generated from compiler/codes.py by this command) -->\n",
    "<!-- codes:end -->",
)


def cases() -> list[tuple[Path, Path]]:
    """(bad spec, snapshot) pairs."""
    return [(spec, spec.with_suffix(".txt")) for spec in sorted(HERE.glob("*.mtl"))]


def render(spec: Path) -> str:
    """The rendered diagnostics of ``spec``, as the file name alone would show them."""
    from mtlc.check import check
    from mtlc.diagnostics import SpecError
    from mtlc.frontend.parser import parse

    try:
        check(parse(spec.read_text(encoding="utf-8"), spec.name))
    except SpecError as error:
        return str(error) + "\n"
    raise AssertionError(f"{spec.name} is meant to be a bad spec, but it checks clean")


def codes_section(reference: str) -> str | None:
    """The generated part of docs/language.md (between its markers), or None."""
    if START not in reference or END not in reference:
        return None
    return reference.split(START, 1)[1].split(END, 1)[0]


def refresh_reference() -> bool:
    """Rewrite the codes section of docs/language.md; True if it changed."""
    from mtlc.diagnostics.codes import markdown

    reference = LANGUAGE_MD.read_text(encoding="utf-8")
    old = codes_section(reference)
    if old is None:
        raise SystemExit(f"{LANGUAGE_MD} lacks the markers {START.strip()} ... {END}")
    if old == markdown():
        return False
    head, rest = reference.split(START, 1)
    LANGUAGE_MD.write_text(
        head + START + markdown() + END + rest.split(END, 1)[1], encoding="utf-8"
    )
    print("rewrote the diagnostic codes of docs/language.md")
    return True


def rewrite(show) -> int:
    """Rewrite the codes section and the stale snapshots, ``show(old, new, name)`` each.

    Returns how many changed.
    """
    changed = int(refresh_reference())
    for spec, snapshot in cases():
        new = render(spec)
        old = snapshot.read_text(encoding="utf-8") if snapshot.exists() else ""
        if new != old:
            changed += 1
            show(old, new, f"tests/golden/diagnostics/{snapshot.name}")
            snapshot.write_text(new, encoding="utf-8")
    return changed
