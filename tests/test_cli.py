"""The command line: exit codes, outputs, atomic writes, no traceback, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtlc import __version__, compile_spec
from mtlc.cli import main

ROOT = Path(__file__).resolve().parents[1]
MMOE = ROOT / "specs" / "mmoe.mtl"
BAD = """model Bad

feature user_id : sparse(vocab=100, dim=4)
group all = [user_id, item_id]
tower t = mlp(all, [4])
task ctr : binary(label=click) = t
"""


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.mtl"
    path.write_text(BAD)
    return path


def test_compile_to_stdout_is_compile_spec(capsys):
    assert main(["compile", str(MMOE)]) == 0
    out = capsys.readouterr().out
    assert out == compile_spec(MMOE.read_text(), str(MMOE))
    assert "rt.GateBank" in out


def test_compile_O0_and_emit_ir(capsys):
    assert main(["compile", str(MMOE), "-O0"]) == 0
    out = capsys.readouterr().out
    assert "rt.Experts(" in out and "rt.SoftmaxGate(" in out and "rt.GateBank" not in out
    assert main(["compile", str(MMOE), "--emit", "ir"]) == 0
    ir = json.loads(capsys.readouterr().out)
    assert ir["name"] == "MMoE" and ir["ir_version"] >= 1


def test_compile_writes_the_output_file(tmp_path: Path, capsys):
    out = tmp_path / "model.py"
    assert main(["compile", str(MMOE), "-o", str(out)]) == 0
    assert out.read_text() == compile_spec(MMOE.read_text(), str(MMOE))
    assert capsys.readouterr().out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["model.py"]  # no temporary left


def test_a_bad_spec_writes_nothing_and_exits_1(bad_spec: Path, tmp_path: Path, capsys):
    out = tmp_path / "model.py"
    assert main(["compile", str(bad_spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{bad_spec}:4:" in err and "item_id" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_bad_spec_keeps_an_existing_output(bad_spec: Path, tmp_path: Path):
    out = tmp_path / "model.py"
    out.write_text("previous\n")
    assert main(["compile", str(bad_spec), "-o", str(out)]) == 1
    assert out.read_text() == "previous\n"


def test_check_reports_every_spec_and_exits_1_if_any_fails(bad_spec: Path, capsys):
    assert main(["check", str(MMOE)]) == 0
    assert main(["check", str(MMOE), str(bad_spec)]) == 1
    err = capsys.readouterr().err
    assert f"{bad_spec}:4:" in err


def test_check_json_and_github_formats(bad_spec: Path, capsys):
    assert main(["check", str(bad_spec), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    text = json.dumps(report)
    assert "item_id" in text and "MTL" in text
    assert main(["check", str(bad_spec), "--format", "github"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("::error ") for line in lines)
    assert f"file={bad_spec}" in lines[0] and "line=4" in lines[0]


def test_explain_a_code_from_the_catalogue(bad_spec: Path, capsys):
    main(["check", str(bad_spec), "--format", "json"])
    code = json.loads(capsys.readouterr().out)[0]["code"]  # a flat list of diagnostics
    assert main(["explain", code]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["explain", "MTL999999"]) == 2
    assert "unknown diagnostic code" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compile", "no/such/spec.mtl"], "no such spec file"),
        (["check", "no/such/spec.mtl"], "no such spec file"),
        (["compile", str(MMOE), "-o", "no/such/dir/model.py"], "cannot write"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compile", str(MMOE), "-O3"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2


def test_binary_garbage_is_a_clear_error(tmp_path: Path, capsys):
    garbage = tmp_path / "garbage.mtl"
    garbage.write_bytes(b"\xff\xfe\x00\x81model")
    assert main(["check", str(garbage)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mtlc {__version__}"


def test_compile_check_explain_and_graph_never_import_torch(tmp_path: Path):
    program = (
        "import sys\n"
        "from mtlc.cli import main\n"
        f"assert main(['check', {str(MMOE)!r}]) == 0\n"
        f"assert main(['compile', {str(MMOE)!r}, '-o', {str(tmp_path / 'm.py')!r}]) == 0\n"
        f"assert main(['explain', {str(MMOE)!r}]) == 0\n"
        f"assert main(['graph', {str(MMOE)!r}, '-o', {str(tmp_path / 'a.svg')!r}]) == 0\n"
        "heavy = ('torch', 'triton', 'numpy')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not loaded, loaded\n"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_python_dash_m_mtlc_runs_the_cli():
    run = subprocess.run(
        [sys.executable, "-m", "mtlc", "check", str(MMOE)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_output_file_gets_ordinary_permissions(tmp_path: Path):
    import os
    import stat

    out = tmp_path / "model.py"
    assert main(["compile", str(MMOE), "-o", str(out)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
