"""Without an extra, a command says which to install: one line, exit 2, no traceback.

The commands run in a subprocess where the extra's packages cannot be imported:
an import hook placed first on ``sys.meta_path`` raises ``ModuleNotFoundError``
for them, which is what Python raises in an environment that lacks them (``pip
install mtlc`` without extras). The compiler's own commands must still work there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "mmoe.mtl"

BLOCKED = """
import sys
from importlib.abc import MetaPathFinder

BLOCK = set(sys.argv[1].split(","))


class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Missing())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCK:
        del sys.modules[name]
from mtlc.cli import main

sys.exit(main(sys.argv[2:]))
"""


def run(blocked: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED, blocked, *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["torch", "numpy", "pyarrow"])
@pytest.mark.parametrize("command", ["train", "predict", "evaluate"])
def test_a_training_command_names_the_training_extra(command, missing, tmp_path):
    if command == "train":
        argv = [command, str(SPEC), "--data", "x.parquet", "--out", str(tmp_path / "r")]
    else:
        argv = [command, str(SPEC), "--run", "r", "--data", "x.parquet"]
    if command == "predict":
        argv += ["-o", str(tmp_path / "p.parquet")]
    done = run(missing, *argv)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"mtlc: error: mtlc {command} needs the training extras: pip install 'mtlc[train]' "
        f"(missing: {missing})"
    ]
    assert "Traceback" not in done.stderr


def test_the_compiler_works_without_the_training_extras():
    done = run("torch,numpy,pyarrow,sklearn,tqdm,matplotlib", "check", str(SPEC))
    assert done.returncode == 0, done.stderr
    done = run("torch,numpy,pyarrow,sklearn,tqdm,matplotlib", "compile", str(SPEC))
    assert done.returncode == 0 and "class MMoE(nn.Module)" in done.stdout


def test_an_unrelated_missing_module_is_not_passed_off_as_an_extra():
    from mtlc.cli.extras import needs_extra

    assert needs_extra("train", ModuleNotFoundError("x", name="leftpad")) is None
    line = needs_extra("train", ModuleNotFoundError("x", name="torch.nn"))
    assert line is not None and "mtlc[train]" in line
