"""Rewrite the golden files of generated code and print what changed.

Run ``make golden`` (``python -m tests.refresh_golden``), then review the diff
it prints (or ``git diff tests/golden``) before committing. ``test_golden``
in tests/test_generated_models.py fails while a golden file is stale.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
GOLDEN = ROOT / "tests" / "golden" / "models"


def golden_cases() -> list[tuple[Path, int, Path]]:
    """(spec, opt_level, golden file) for every spec in specs/, at -O1 and -O0."""
    cases = []
    for spec in sorted(SPECS.glob("*.mtl")):
        cases.append((spec, 1, GOLDEN / f"{spec.stem}.py"))
        cases.append((spec, 0, GOLDEN / f"{spec.stem}_O0.py"))
    return cases


def generate(spec: Path, opt_level: int) -> str:
    from mtlc import compile_spec

    return compile_spec(spec.read_text(encoding="utf-8"), spec.name, opt_level=opt_level)


def main() -> int:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    changed = 0
    expected = set()
    for spec, opt_level, golden in golden_cases():
        expected.add(golden)
        new = generate(spec, opt_level)
        old = golden.read_text(encoding="utf-8") if golden.exists() else ""
        if new != old:
            changed += 1
            rel = golden.relative_to(ROOT)
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}"
                )
            )
            golden.write_text(new, encoding="utf-8")
    for stale in sorted(set(GOLDEN.glob("*.py")) - expected):
        print(f"removed {stale.relative_to(ROOT)} (its spec is gone)")
        stale.unlink()
        changed += 1
    print(f"{changed} golden file(s) changed, {len(expected)} in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
