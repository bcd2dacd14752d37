"""The gate kernels: custom ops against the plain-PyTorch reference.

On CPU the Triton kernels run under ``TRITON_INTERPRET=1`` (set here before
triton loads, when there is no GPU) with ``ops.FORCE_TRITON`` flipped on;
shapes stay tiny because the interpreter is slow.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from mtlc.runtime.kernels import ops, reference  # noqa: E402

HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float64: {"rtol": 1e-12, "atol": 1e-12},
    torch.bfloat16: {"rtol": 3e-2, "atol": 5e-2},  # 8 mantissa bits; values of a few units
}


def _counting(loader, calls: list):
    """``loader`` (``ops._triton`` or ``ops._triton_fused``), noting each call in ``calls``."""

    def load():
        calls.append(loader.__name__)
        return loader()

    return load


@pytest.fixture(params=["reference", pytest.param("triton", marks=needs_triton)])
def path(request, monkeypatch):
    """Run each test on both paths: the reference, and the Triton kernels (forced on CPU).

    On the Triton path the test fails unless a Triton launcher ran.
    """
    launched: list[str] = []
    if request.param == "triton":
        monkeypatch.setattr(ops, "FORCE_TRITON", True)
        monkeypatch.setattr(ops, "_triton", _counting(ops._triton, launched))
        monkeypatch.setattr(ops, "_triton_fused", _counting(ops._triton_fused, launched))
    else:
        monkeypatch.setattr(ops, "FORCE_TRITON", False)
        if DEVICE == "cuda":
            pytest.skip("on CUDA the op always takes the Triton path")
    torch.manual_seed(0)
    yield request.param
    if request.param == "triton":
        assert launched, "no Triton kernel ran: only the reference was checked"


def _leaf(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, device=DEVICE).requires_grad_()


def _mix_inputs(batch, gates, num_experts, width, dtype=torch.float32):
    weights = (
        torch.softmax(torch.randn(batch, gates, num_experts, device=DEVICE), -1)
        .to(dtype)
        .requires_grad_()
    )
    return weights, _leaf(batch, num_experts, width, dtype=dtype)


def _check_mix(weights, experts, dtype):
    """Forward and backward of the op against the reference computed in float64."""
    out = ops.gate_mix(weights, experts)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (weights, experts), upstream)
    w64, x64 = (
        weights.detach().double().requires_grad_(),
        experts.detach().double().requires_grad_(),
    )
    expected = torch.bmm(
        w64, x64
    )  # the definition (the reference takes another route for one gate)
    expected_grads = torch.autograd.grad(expected, (w64, x64), upstream.double())
    assert out.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out, expected.to(dtype), **TOLERANCE[dtype])
    for got, want in zip(grads, expected_grads):
        assert got.dtype == dtype
        torch.testing.assert_close(got, want.to(dtype), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(5, 2, 3, 7), (4, 3, 4, 33), (6, 1, 3, 9)])
def test_gate_mix_matches_reference(path, dtype, shape):
    _check_mix(*_mix_inputs(*shape, dtype=dtype), dtype)


@pytest.mark.parametrize("shape", [(3, 1, 1, 5), (3, 1, 4, 5), (3, 2, 1, 5), (1, 3, 2, 1)])
def test_gate_mix_edge_shapes(path, shape):
    _check_mix(*_mix_inputs(*shape), torch.float32)


def test_gate_mix_strided_inputs(path):
    # experts as an [E, B, D] buffer viewed [B, E, D] (what ExpertPool returns); weights sliced
    experts = torch.randn(3, 4, 6, device=DEVICE).transpose(0, 1).requires_grad_()
    wide = torch.softmax(torch.randn(4, 2, 6, device=DEVICE), -1)
    weights = wide[:, :, ::2].requires_grad_()
    assert not experts.is_contiguous() and not weights.is_contiguous()
    _check_mix(weights, experts, torch.float32)


def test_gate_mix_gradcheck_float64(path):
    weights, experts = _mix_inputs(3, 2, 3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(ops.gate_mix, (weights, experts), fast_mode=True)


def test_gate_mix_opcheck(path):
    weights, experts = _mix_inputs(3, 2, 3, 4)
    torch.library.opcheck(torch.ops.mtlc.gate_mix.default, (weights, experts))


def _check_softmax_mix(logits, experts, temperature, top, dtype):
    """The fused op against ``gate_weights`` + bmm under autograd, in float64."""
    out = ops.gate_softmax_mix(logits, experts, temperature, top)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (logits, experts), upstream)
    l64, x64 = logits.detach().double().requires_grad_(), experts.detach().double().requires_grad_()
    expected = torch.bmm(reference.gate_weights(l64, temperature, top or None), x64)
    expected_grads = torch.autograd.grad(expected, (l64, x64), upstream.double())
    torch.testing.assert_close(out, expected.to(dtype), **TOLERANCE[dtype])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want.to(dtype), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("temperature, top", [(1.0, 0), (0.5, 2), (2.0, 1), (1.0, 9)])
def test_gate_softmax_mix_matches_reference(path, dtype, temperature, top):
    logits, experts = _leaf(5, 3, 4, dtype=dtype), _leaf(5, 4, 6, dtype=dtype)
    _check_softmax_mix(logits, experts, temperature, top, dtype)


@pytest.mark.parametrize("shape", [(40, 3, 5, 150), (70, 1, 3, 200)])
def test_kernels_over_several_programs_and_width_blocks(path, shape):
    # more rows than one program's block and D over several BLOCK_D tiles: the weight gradient
    # sums across tiles and every program's offsets are exercised
    _check_mix(*_mix_inputs(*shape, dtype=torch.float64), torch.float64)
    batch, gates, num_experts, width = shape
    logits, experts = (
        _leaf(batch, gates, num_experts, dtype=torch.float64),
        _leaf(batch, num_experts, width, dtype=torch.float64),
    )
    _check_softmax_mix(logits, experts, 1.0, 2, torch.float64)


@pytest.mark.parametrize("shape", [(3, 1, 1, 5), (3, 1, 4, 5), (3, 2, 1, 5)])
def test_gate_softmax_mix_edge_shapes(path, shape):
    batch, gates, num_experts, width = shape
    _check_softmax_mix(
        _leaf(batch, gates, num_experts), _leaf(batch, num_experts, width), 1.0, 1, torch.float32
    )


def test_gate_softmax_mix_top_k_ties_keep_the_lower_index(path):
    logits = torch.tensor([[[2.0, 1.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]]], device=DEVICE)
    experts = torch.eye(4, device=DEVICE).unsqueeze(0)  # out row = the weights themselves
    out = ops.gate_softmax_mix(logits, experts, 1.0, 2)
    torch.testing.assert_close(
        out[0], torch.tensor([[0.5, 0.0, 0.5, 0.0], [0.5, 0.5, 0.0, 0.0]], device=DEVICE)
    )
    _check_softmax_mix(logits.requires_grad_(), experts.requires_grad_(), 1.0, 2, torch.float32)


def test_gate_softmax_mix_strided_gradcheck_and_opcheck(path):
    logits = (
        torch.randn(3, 4, 2, dtype=torch.float64, device=DEVICE).transpose(1, 2).requires_grad_()
    )  # [3, 2, 4]
    experts = (
        torch.randn(4, 3, 5, dtype=torch.float64, device=DEVICE).transpose(0, 1).requires_grad_()
    )
    assert torch.autograd.gradcheck(
        lambda a, b: ops.gate_softmax_mix(a, b, 0.7, 3), (logits, experts), fast_mode=True
    )
    torch.library.opcheck(
        torch.ops.mtlc.gate_softmax_mix.default, (logits.detach(), experts.detach(), 0.7, 3)
    )


@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning"
)  # numpy, under the interpreter
def test_gate_softmax_mix_saturated_logits_stay_finite(path):
    logits = torch.tensor(
        [[[1e30, -1e30, 0.0], [3e38, 3e38, -3e38]]], device=DEVICE, requires_grad=True
    )
    experts = _leaf(1, 3, 4)
    for top in (0, 1, 2):
        out = ops.gate_softmax_mix(logits, experts, 1.0, top)
        grads = torch.autograd.grad(out.sum(), (logits, experts))
        assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)


def test_scale_gate_matches_reference(path):
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        h, z = (
            _leaf(4, 5, dtype=dtype),
            (torch.randn(4, 5, device=DEVICE) * 5).to(dtype).requires_grad_(),
        )
        out = ops.scale_gate(h, z, 2.0)
        upstream = torch.randn_like(out)
        grads = torch.autograd.grad(out, (h, z), upstream)
        h64, z64 = h.detach().double().requires_grad_(), z.detach().double().requires_grad_()
        expected = reference.scale_gate(h64, z64, 2.0)
        expected_grads = torch.autograd.grad(expected, (h64, z64), upstream.double())
        torch.testing.assert_close(out, expected.to(dtype), **TOLERANCE[dtype])
        for got, want in zip(grads, expected_grads):
            torch.testing.assert_close(got, want.to(dtype), **TOLERANCE[dtype])


def test_scale_gate_gradcheck_strided_and_opcheck(path):
    h = torch.randn(6, 4, dtype=torch.float64, device=DEVICE).t().requires_grad_()  # non-contiguous
    z = _leaf(4, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: ops.scale_gate(a, b, 0.3), (h, z), fast_mode=True)
    torch.library.opcheck(
        torch.ops.mtlc.scale_gate.default, (h.detach().float(), z.detach().float(), 1.5)
    )


@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning"
)  # numpy, under the interpreter
def test_scale_gate_saturated_logits_stay_finite(path):
    h = _leaf(2, 3)
    z = torch.tensor([[-1e4, 0.0, 1e4], [-80.0, 80.0, 1.0]], device=DEVICE, requires_grad=True)
    out = ops.scale_gate(h, z, 2.0)
    out.sum().backward()
    assert (
        torch.isfinite(out).all() and torch.isfinite(h.grad).all() and torch.isfinite(z.grad).all()
    )


def test_cpu_tensors_take_the_reference_path(monkeypatch):
    def no_triton():
        raise AssertionError("the Triton path ran on CPU tensors")

    monkeypatch.setattr(ops, "FORCE_TRITON", False)
    monkeypatch.setattr(ops, "_triton", no_triton)
    monkeypatch.setattr(ops, "_triton_fused", no_triton)
    weights = torch.rand(2, 2, 3, requires_grad=True)
    experts = torch.randn(2, 3, 4, requires_grad=True)
    ops.gate_mix(weights, experts).sum().backward()
    ops.gate_softmax_mix(weights, experts, 1.0, 2).sum().backward()
    ops.scale_gate(experts, experts, 1.0).sum().backward()
    assert weights.grad is not None and experts.grad is not None


@needs_triton
@pytest.mark.skipif(DEVICE == "cuda", reason="the environment switch is for CPU runs")
def test_environment_switch_forces_triton_in_a_fresh_process():
    script = textwrap.dedent("""
        import sys, torch
        from mtlc.runtime.kernels import ops
        w, x = torch.rand(2, 2, 3, dtype=torch.float64), torch.rand(2, 3, 4, dtype=torch.float64)
        out = ops.gate_mix(w, x)
        assert "mtlc.runtime.kernels.triton_gate" in sys.modules, "the Triton path did not run"
        torch.testing.assert_close(out, w @ x)
        print("ok")
        """)
    env = {**os.environ, "MTLC_FORCE_TRITON": "1", "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_kernels_import_nothing_else_of_the_runtime():
    # runtime/kernels/ sits below the layers: the layers import it, never the reverse
    import ast
    from pathlib import Path

    folder = Path(ops.__file__).parent
    for source in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                outside = node.level > 1 or (node.module or "").startswith(("mtlc", "runtime"))
                assert not outside, (
                    f"{source.name}:{node.lineno} imports {'.' * node.level}{node.module}"
                )
            elif isinstance(node, ast.Import):
                names = [
                    alias.name for alias in node.names if alias.name.startswith(("mtlc", "runtime"))
                ]
                assert not names, f"{source.name}:{node.lineno} imports {names}"
