"""``mtlc export``: every spec exports to ONNX and to torch.export, and predicts as the model.

The exported programs are loaded as a server would (onnxruntime; ``torch.export.load``)
and compared with the PyTorch model on random batches, batch 1 included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mtlc
from mtlc.runtime.export import export
from mtlc.runtime.testing import random_batch
from tests.test_extras import run as run_blocked

pytest.importorskip("onnxruntime", reason="the export extra: pip install 'mtlc[export]'")
pytest.importorskip("onnxscript", reason="the export extra: pip install 'mtlc[export]'")

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.mtl"))


def moved(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter and norm statistic off its start, so a skipped weight shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.2)
    return model.eval()


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_exports_and_predicts_as_the_model(spec, suffix, tmp_path):
    model_class = mtlc.load_model(spec)
    model = moved(model_class())
    path = tmp_path / f"model{suffix}"
    assert export(model, path) <= 1e-5
    batch = random_batch(model_class, 1, 5)  # one request
    inputs = [batch[name] for name in model_class.features]
    with torch.no_grad():
        expected = model(batch)
    if suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        assert [i.name for i in session.get_inputs()] == list(model_class.features)
        assert [o.name for o in session.get_outputs()] == list(model_class.tasks)
        got = session.run(None, {n: x.numpy() for n, x in zip(model_class.features, inputs)})
        got = [torch.from_numpy(g) for g in got]
    else:
        got = list(torch.export.load(str(path)).module()(*inputs))
    for task, value in zip(model_class.tasks, got):
        torch.testing.assert_close(value, expected[task], rtol=0, atol=1e-5)


def test_export_command_with_a_run_and_its_refusals(tmp_path, capsys):
    from tests.test_faults import faults, train

    (tmp_path / "toy.mtl").write_text(faults.SPEC)
    import pyarrow.parquet as pq

    pq.write_table(faults.base_table(120, 0), tmp_path / "train.parquet")
    assert train(tmp_path, "--epochs", "1")[0] == 0
    from mtlc.cli import main

    out = tmp_path / "served.onnx"
    code = main(
        ["export", str(tmp_path / "toy.mtl"), "--run", str(tmp_path / "run"), "-o", str(out)]
    )
    assert code == 0 and out.exists()
    assert "largest difference from the model on a random batch" in capsys.readouterr().out
    assert not list(tmp_path.glob(".export-*"))
    code = main(["export", str(tmp_path / "toy.mtl"), "-o", str(tmp_path / "m.bin")])
    assert code == 2 and "must end in .onnx (ONNX) or .pt2" in capsys.readouterr().err


def test_export_without_the_export_extra_says_which(tmp_path):
    done = run_blocked(
        "onnxscript", "export", str(ROOT / "specs" / "mmoe.mtl"), "-o", str(tmp_path / "m.onnx")
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "mtlc: error: mtlc export needs the export extra: pip install 'mtlc[export]' "
        "(missing: onnxscript)"
    )
