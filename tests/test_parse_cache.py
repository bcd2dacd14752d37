"""The cache of the LALR tables: where it is written, that it is used, that it is optional."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mtlc

ROOT = Path(__file__).resolve().parents[1]
MMOE = ROOT / "specs" / "mmoe.mtl"

# Prints the AST of the MMoE spec and the diagnostics of a syntax error inside brackets
# (the bracket-tracking post-lexer must work with tables loaded from the cache too).
PROGRAM = f"""
from mtlc.diagnostics import SpecError
from mtlc.frontend.parser import _parser, parse
spec = parse(open({str(MMOE)!r}).read(), "mmoe.mtl")
print(len(spec.statements), repr(spec.statements[-1]))
try:
    parse("model M\\ngroup all = [a, b\\ntower t = mlp(all, [4])\\n", "bad.mtl")
except SpecError as error:
    print(error)
print("cache:", _parser()[0].options.cache)
"""


def _run(**env: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        env={**os.environ, "MTLC_GRAMMAR_CACHE": "1", **env},
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # a cache problem is never reported to the user
    return run


def _output(run: subprocess.CompletedProcess) -> str:
    return run.stdout.rsplit("cache:", 1)[0]


def test_the_tables_are_cached_per_user_and_reused(tmp_path: Path):
    uncached = _run(MTLC_CACHE=str(tmp_path), MTLC_GRAMMAR_CACHE="0")
    assert not (tmp_path / "grammar").exists()
    first = _run(MTLC_CACHE=str(tmp_path))
    files = list((tmp_path / "grammar").iterdir())
    assert len(files) == 1 and files[0].suffix == ".lark"
    stamp = files[0].stat().st_mtime_ns
    second = _run(MTLC_CACHE=str(tmp_path))
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert _output(uncached) == _output(first) == _output(second)
    assert "bad.mtl:" in _output(second)
    package = Path(mtlc.__file__).resolve().parent
    assert package not in files[0].resolve().parents


def test_an_unusable_cache_is_ignored(tmp_path: Path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    expected = _output(_run(MTLC_GRAMMAR_CACHE="0"))
    assert _output(_run(MTLC_CACHE=str(blocker))) == expected  # cannot make the folder
    _run(MTLC_CACHE=str(tmp_path / "c"))
    [table] = (tmp_path / "c" / "grammar").iterdir()
    table.write_bytes(b"garbage\n\x80\x04 not a pickle")  # a corrupt file is rebuilt
    assert _output(_run(MTLC_CACHE=str(tmp_path / "c"))) == expected
    assert not table.read_bytes().startswith(b"garbage")


def test_an_empty_mtlc_cache_means_the_default_folder_for_every_user_of_it(monkeypatch, tmp_path):
    from mtlc.cli import datasets
    from mtlc.files import cache_root
    from mtlc.frontend.parser import _table_cache

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MTLC_GRAMMAR_CACHE", raising=False)
    default = tmp_path / ".cache" / "mtlc"
    for value in ("", None):  # empty means unset: never the current folder
        if value is None:
            monkeypatch.delenv("MTLC_CACHE", raising=False)
        else:
            monkeypatch.setenv("MTLC_CACHE", value)
        assert cache_root() == default and datasets.cache_dir() == default
        assert Path(_table_cache("a grammar")).parent == default / "grammar"
    monkeypatch.setenv("MTLC_CACHE", str(tmp_path / "elsewhere"))
    assert datasets.cache_dir() == tmp_path / "elsewhere" == cache_root()
