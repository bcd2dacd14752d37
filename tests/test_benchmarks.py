"""The benchmark scripts run end to end at tiny sizes.

Their figures are not checked: timings are not tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def train_speed(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import train_speed

    threads = torch.get_num_threads()
    yield train_speed
    torch.set_num_threads(threads)  # main() sets the thread count of the process


def test_train_speed_runs_every_contender_and_reports_ratios_and_ceilings(
    train_speed, tmp_path, capsys, monkeypatch
):
    pytest.importorskip("nextrec")
    pytest.importorskip("torch_rechub")
    monkeypatch.setenv("NEXTREC_LOG_DIR", str(tmp_path / "nextrec_logs"))  # NextRec's session logs
    out = tmp_path / "rows.json"
    argv = [
        "--archs",
        "mmoe",
        "esmm",
        "--batches",
        "32",
        "--optimizers",
        "own",
        "adam",
        "--rounds",
        "1",
        "--steps",
        "1",
        "--threads",
        "1",
        "--malloc",
        "default",
        "--lazy",
        "--json",
        str(out),
    ]
    assert train_speed.main(argv) == 0
    rows = json.loads(out.read_text())
    cells = {(r["arch"], r["optimizer"]) for r in rows}
    assert cells == {("mmoe", "own"), ("mmoe", "adam"), ("esmm", "own"), ("esmm", "adam")}
    own = {r["contender"] for r in rows if r["optimizer"] == "own"}
    assert own == {"mtlc", "mtlc_bn", "mtlc_lazy", "nextrec", "rechub"}
    assert "mtlc_lazy" not in {r["contender"] for r in rows if r["optimizer"] == "adam"}
    for row in rows:
        assert row["step_ms"] > 0 and row["floor_ms"] > 0 and row["gflop"] > 0
        assert len(row["vs_nextrec"]) == 3 and len(row["vs_rechub"]) == 3
        if row["contender"].startswith(
            "mtlc"
        ):  # the optimizer alone is timed, and the ceiling follows
            assert row["optimizer_ms"] > 0 and row["ceiling_vs_nextrec"] > 0
        else:
            assert "optimizer_ms" not in row
    printed = capsys.readouterr().out.strip().splitlines()
    assert (
        printed[-1] == "mmoe_b2048_vs_nextrec=n/a ple_b2048_vs_nextrec=n/a mmoe_b256_vs_nextrec=n/a"
    )
    assert any(line.startswith("| MMoE | own | 32 | mtlc |") for line in printed)


def test_train_speed_runs_the_nextrec_only_architectures(train_speed, tmp_path, monkeypatch):
    """HMoE, POSO (both forms), PEPNet and APG: mtlc against NextRec (torch-rechub has none)."""
    pytest.importorskip("nextrec")
    monkeypatch.setenv("NEXTREC_LOG_DIR", str(tmp_path / "nextrec_logs"))
    out = tmp_path / "rows.json"
    archs = ["hmoe", "poso", "poso_mmoe", "pepnet", "apg"]
    argv = ["--archs", *archs, "--batches", "32", "--optimizers", "own", "adam"]
    argv += ["--rounds", "1", "--steps", "1", "--threads", "1", "--malloc", "default"]
    assert train_speed.main([*argv, "--lazy", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {(r["arch"], r["optimizer"]) for r in rows} == {
        (arch, optimizer) for arch in archs for optimizer in ("own", "adam")
    }
    for arch in archs:
        for optimizer, expected in (
            ("own", {"mtlc", "mtlc_lazy", "nextrec"}),
            ("adam", {"mtlc", "nextrec"}),
        ):
            cell = [r for r in rows if (r["arch"], r["optimizer"]) == (arch, optimizer)]
            assert {r["contender"] for r in cell} == expected
    for row in rows:
        assert row["step_ms"] > 0 and row["floor_ms"] > 0 and row["gflop"] > 0
        assert len(row["vs_nextrec"]) == 3 and "vs_rechub" not in row


def test_train_speed_headline_line(train_speed):
    row = {
        "arch": "mmoe",
        "batch": 2048,
        "optimizer": "own",
        "contender": "mtlc",
        "vs_nextrec": [1.456, 1.2, 1.6],
    }
    line = train_speed.headline([row, {**row, "arch": "ple", "vs_nextrec": [1.3, 1.2, 1.4]}])
    assert re.fullmatch(
        r"mmoe_b2048_vs_nextrec=1\.46 ple_b2048_vs_nextrec=1\.30 mmoe_b256_vs_nextrec=n/a", line
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a CUDA device")
def test_train_speed_refuses_cuda_without_a_device(train_speed, capsys):
    assert train_speed.main(["--device", "cuda", "--archs", "mmoe", "--batches", "32"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_parity_gap_measures_every_parity_configuration(monkeypatch, tmp_path):
    pytest.importorskip("nextrec")
    pytest.importorskip("torch_rechub")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("NEXTREC_LOG_DIR", str(tmp_path / "nextrec_logs"))
    import parity_gap

    out = tmp_path / "gap.json"
    assert parity_gap.main(["--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * (len(parity_gap.nx_cases.CONFIGS) + len(parity_gap.rh_cases.CONFIGS))
    assert all(0 <= row["max_abs_diff"] < 1e-5 for row in rows)


def test_gate_kernel_cpu_table_runs():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gate_kernel.py"), "--rounds", "1", "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [
        line
        for line in done.stdout.splitlines()
        if re.match(r"\| \d+ \| \d+ \| \d+ \| \d+ \|", line)
    ]
    assert len(rows) == 8  # 4 shapes x (contiguous, pool view)
