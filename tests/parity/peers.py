"""Helpers of the parity tests: random weights, random batches, and the comparison.

``compare`` runs a peer model and the mtlc model converted from it on one
batch, in eval mode, and checks that predictions agree to 1e-5 and that the
gradients of one loss (BCE for binary tasks, MSE for regression, summed)
agree to 1e-4 relative, with respect to the embedding tables, the dense
inputs and the task heads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

import mtlc
from mtlc.runtime import testing

BATCH = 16
NEXTREC_MISSING = (
    "nextrec is not installed: pip install 'mtlc[nextrec]' && pip install --no-deps nextrec==0.6.14"
)
RECHUB_MISSING = "torch-rechub is not installed: pip install 'mtlc[rechub]'"
ROOT = Path(__file__).resolve().parents[2]
# NextRec 0.4.28 (STAR, ESCM) cannot be imported beside 0.6.14 (one package name): make
# installs it apart, and its tests run in a subprocess with this folder first on the path
NEXTREC_428 = ROOT / ".venv" / "nextrec-0.4.28"
NEXTREC_428_MISSING = (
    f"NextRec 0.4.28 is not installed apart in {NEXTREC_428.relative_to(ROOT)}: "
    "pip install --no-deps --target .venv/nextrec-0.4.28 nextrec==0.4.28 (make test does)"
)


def under_nextrec_428(module: str, mark: str) -> dict:
    """Run ``python -m module`` with NextRec 0.4.28 first on the path; return the JSON
    of its last output line that starts with ``mark``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(NEXTREC_428), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.setdefault("NEXTREC_TEST_MODE", "1")
    env.setdefault("NEXTREC_LOG_DIR", os.path.join(tempfile.gettempdir(), "nextrec_logs"))
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(mark)]
    assert done.returncode == 0 and lines, f"the subprocess failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1].removeprefix(mark))


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BatchNorm statistic a random value (peers start biases at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.2)
    return model.eval()


def build(spec: str, tmp_path: Path, opt_level: int) -> nn.Module:
    """An instance of the model compiled from ``spec`` at ``opt_level``."""
    path = tmp_path / f"converted_o{opt_level}.mtl"
    path.write_text(spec, encoding="utf-8")
    return mtlc.load_model(path, opt_level=opt_level)()


def random_batch(model: nn.Module, seed: int = 1) -> dict[str, Tensor]:
    """``mtlc.runtime.testing.random_batch`` for ``model``, row 0 all padding.

    Sparse ids include 0; sequences have padding.
    """
    batch = testing.random_batch(type(model), BATCH, seed)
    for name, feature in type(model).features.items():
        if feature.kind == "sequence":
            batch[name][0] = 0
    return batch


@dataclass
class Pairing:
    """What to compare: each output column of the peer and the tensors whose gradients must agree.

    ``columns``: (mtlc task name, peer column, kind: "binary" | "regression").
    ``params``: (what, mtlc parameter, peer parameter, rows to compare or None for all).
    """

    columns: list[tuple[str, int, str]]
    params: list[tuple[str, Tensor, Tensor, slice | None]] = field(default_factory=list)


def compare(ours: nn.Module, peer_forward, batch: dict[str, Tensor], pairing: Pairing) -> None:
    """Predictions equal to 1e-5 and gradients (loss of random labels) to 1e-4 relative."""
    ours.eval()
    inputs_ours = _with_grad(batch)
    inputs_peer = _with_grad(batch)
    predicted = ours(inputs_ours)
    reference = peer_forward(inputs_peer)
    labels = torch.Generator().manual_seed(7)
    loss_ours, loss_peer = 0.0, 0.0
    for task, column, kind in pairing.columns:
        torch.testing.assert_close(
            predicted[task], reference[:, column], rtol=0, atol=1e-5, msg=f"task {task}"
        )
        target = torch.randint(0, 2, (BATCH,), generator=labels).float()
        if kind == "regression":
            loss_ours = loss_ours + F.mse_loss(predicted[task], target)
            loss_peer = loss_peer + F.mse_loss(reference[:, column], target)
        else:
            loss_ours = loss_ours + F.binary_cross_entropy(predicted[task], target)
            loss_peer = loss_peer + F.binary_cross_entropy(reference[:, column], target)
    loss_ours.backward()
    loss_peer.backward()
    for name in batch:
        if inputs_ours[name].requires_grad:
            close_grad(inputs_ours[name].grad, inputs_peer[name].grad, f"input {name}")
    for what, mine, theirs, rows in pairing.params:
        rows = rows or slice(None)
        close_grad(mine.grad[rows], theirs.grad[rows], what)


def small_nextrec_features() -> dict:
    """NextRec features: two sparse ids, a sequence sharing item_id's table, one dense value."""
    from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature

    return dict(
        sparse_features=[
            SparseFeature("user_id", 30, embedding_dim=4),
            SparseFeature("item_id", 20, embedding_dim=4),
        ],
        sequence_features=[
            SequenceFeature("hist", 20, max_len=6, embedding_dim=4, embedding_name="item_id")
        ],
        dense_features=[DenseFeature("age")],
    )


def nextrec_pairing(peer, ours, heads, read: set[str] | None = None) -> Pairing:
    """A NextRec model's output columns by target, and the gradients to compare: every
    embedding table (rows >= 1; only those of features in ``read`` if given) and each head,
    ``heads`` being (mtlc task, NextRec's Linear) pairs."""
    targets = list(peer.target_columns)
    kinds = [peer.task] * len(targets) if isinstance(peer.task, str) else list(peer.task)
    columns = [(t, i, kind) for i, (t, kind) in enumerate(zip(targets, kinds))]
    params = []
    features = list(peer.sparse_features) + list(peer.sequence_features)
    for table, embedding in peer.embedding.embed_dict.items():
        if read is not None and not any(
            f.embedding_name == table and f.name in read for f in features
        ):
            continue
        owner = next(f.name for f in features if f.embedding_name == table)
        # NextRec builds every table with padding_idx=0: row 0 never gets a gradient there
        params.append(
            (f"table {table}", module(ours, owner).weight, embedding.weight, slice(1, None))
        )
    for task, linear in heads:
        params.append((f"head {task}", module(ours, task).weight, linear.weight, None))
    return Pairing(columns, params)


def converted_and_compared(peer: nn.Module, tmp_path: Path, opt_level: int, pairing) -> nn.Module:
    """Convert a randomised NextRec 0.6.14 model, compile its spec at ``opt_level``, copy its
    weights, and ``compare`` the two on a random batch; returns mtlc's model (gradients set).
    ``pairing(peer, ours)`` says what to compare."""
    from mtlc.runtime.interop import nextrec as nx

    ours = build(nx.spec_from(peer), tmp_path, opt_level)
    nx.load_weights(ours, peer)
    batch = random_batch(ours)
    compare(ours, lambda x: peer.training_adapter.forward(peer, x), batch, pairing(peer, ours))
    return ours


def module(model: nn.Module, node: str) -> nn.Module:
    """The submodule of spec node ``node``: its name, or the name mangled with trailing ``_``."""
    attr = node
    while not isinstance(getattr(model, attr, None), nn.Module):
        attr += "_"
        if len(attr) > len(node) + 3:
            raise AttributeError(f"{type(model).__name__} has no module for node {node!r}")
    return getattr(model, attr)


def _with_grad(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """A copy of ``batch`` whose float inputs require grad (their gradients are compared)."""
    return {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in batch.items()}


def close_grad(mine: Tensor, theirs: Tensor, what: str) -> None:
    """To 1e-4 relative to the largest of the peer's gradient (which must not be zero)."""
    assert mine is not None and theirs is not None, f"no gradient for {what}"
    scale = theirs.abs().max().item()
    assert scale > 0, f"the peer's gradient for {what} is zero: the comparison would prove nothing"
    torch.testing.assert_close(
        mine, theirs, rtol=1e-4, atol=1e-4 * scale, msg=f"gradient of {what}"
    )
