"""The worked example of docs/nextrec.md runs as written.

With random weights for the checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.parity.peers import NEXTREC_MISSING

pytest.importorskip("nextrec.models.multitask.mmoe", reason=NEXTREC_MISSING)

from tests.parity.peers import randomize  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "nextrec.md"


def _step(text: str, title: str) -> str:
    """The first python block after the heading ``title``."""
    after = text[text.index(title) :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_worked_example_runs(tmp_path, monkeypatch):
    text = DOC.read_text(encoding="utf-8")
    rebuild = _step(text, "### Step 1").replace(
        'nextrec_model.load_state_dict(torch.load("nextrec_logs/my_run/MMOE_best.pt"))',
        "randomize(nextrec_model)",
    )
    assert "randomize(nextrec_model)" in rebuild, (
        "the checkpoint line of step 1 changed; update this test"
    )
    generator = torch.Generator().manual_seed(0)
    batch = {
        "user_id": torch.randint(0, 10_000, (16,), generator=generator),
        "item_id": torch.randint(0, 5_000, (16,), generator=generator),
        "hist_item": torch.randint(0, 5_000, (16, 20), generator=generator),
        "age": torch.randn(16, generator=generator),
    }
    monkeypatch.chdir(tmp_path)
    namespace = {"randomize": randomize, "batch": batch}
    exec(compile(rebuild, "step1", "exec"), namespace)
    exec(compile(_step(text, "### Step 2"), "step2", "exec"), namespace)
    assert (tmp_path / "mmoe.mtl").read_text(
        encoding="utf-8"
    ) in text  # the page shows the real spec
    assert (tmp_path / "mmoe_from_nextrec.pt").exists()
