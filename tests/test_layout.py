"""The layout's house rules: import contracts (import-linter), the package root, the folders' docs.

import-linter finds a package's modules by walking its folder, and ``mtlc``
spans three folders (``compiler/`` is ``mtlc``, ``runtime/`` is
``mtlc.runtime``, ``grammar/`` is ``mtlc.grammar``). So the contracts of
``pyproject.toml`` run on a copy laid out as the installed package, in a
fresh process: ``python -m tests.test_layout`` does the same by hand.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"compiler": "mtlc", "runtime": "mtlc/runtime", "grammar": "mtlc/grammar"}


def lay_out(into: Path) -> Path:
    """Copy the package's source into ``into/mtlc`` as it is installed; return ``into``."""
    for folder, target in FOLDERS.items():
        shutil.copytree(ROOT / folder, into / target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")
    return into


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """Run import-linter's contracts over a laid-out tree."""
    command = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports_command; lint_imports_command()",
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [*command, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold(tmp_path):
    result = lint_imports(lay_out(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept, 0 broken" in result.stdout, result.stdout


def test_a_cycle_or_a_backward_import_breaks_them(tmp_path):
    """The contracts can fail: a cycle in the front end and the runtime importing the compiler."""
    tree = lay_out(tmp_path)
    with open(tree / "mtlc/frontend/lexer.py", "a", encoding="utf-8") as lexer:
        lexer.write("\nfrom mtlc.frontend import parser as _parser\n")
    with open(tree / "mtlc/runtime/layers.py", "a", encoding="utf-8") as layers:
        layers.write("\nfrom mtlc.api import compile_ir as _compile_ir\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "no import cycles among the compiler's modules BROKEN" in result.stdout
    assert (
        "the runtime never imports the compiler (interop is the one bridge) BROKEN" in result.stdout
    )


def test_the_package_root_keeps_only_its_face():
    modules = sorted(path.name for path in (ROOT / "compiler").glob("*.py"))
    assert len(modules) <= 8, modules


def test_every_folder_says_what_it_takes_and_gives():
    for init in sorted((ROOT / "compiler").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} has no docstring"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        result = lint_imports(lay_out(Path(folder)))
        print(result.stdout + result.stderr)
        sys.exit(result.returncode)
