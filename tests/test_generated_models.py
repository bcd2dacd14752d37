"""Generated modules: golden files, forward and backward, -O0 == -O1, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtlc import compile_spec, load_model
from mtlc import runtime as rt
from mtlc.api import _import, _model_class
from mtlc.backend import emit, lower
from mtlc.runtime.testing import random_batch
from tests import ir_models
from tests.golden.refresh import generate, golden_cases
from tests.mtl_sources import language_examples

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.mtl"))
IR_MODELS = [ir_models.mmoe, ir_models.ple, ir_models.everything, ir_models.merged_pools]


def _class_of_ir(model, opt_level: int) -> type:
    return _model_class(_import(emit(lower(model, opt_level)), model.source), Path(model.source))


@pytest.mark.parametrize(
    "spec, opt_level, golden", golden_cases(), ids=lambda x: getattr(x, "name", x)
)
def test_golden(spec: Path, opt_level: int, golden: Path):
    generated = generate(spec, opt_level)  # as make golden writes it
    assert golden.exists(), f"{golden} is missing: run `make golden`"
    assert generated == golden.read_text(), f"{golden.name} is stale: run `make golden` and review"


def _check_forward_backward(model_class: type) -> None:
    torch.manual_seed(0)
    model = model_class()
    batch = random_batch(model_class, 6, seed=1)
    logits = model.forward_logits(batch)
    predictions = model(batch)
    assert list(predictions) == list(model_class.tasks)
    for name, task in model_class.tasks.items():
        shape = (6, task.classes) if task.kind == "multiclass" else (6,)
        assert predictions[name].shape == shape, name
        assert torch.isfinite(predictions[name]).all()
        if task.kind == "binary":
            assert ((predictions[name] >= 0) & (predictions[name] <= 1)).all()
        if task.factors:
            expected = torch.stack([predictions[f] for f in task.factors]).prod(0)
            torch.testing.assert_close(predictions[name], expected)
        else:
            assert logits[name].shape == shape
    loss = sum(p.float().sum() for p in predictions.values())
    loss.backward()
    trained = [n for n, p in model.named_parameters() if p.grad is not None]
    assert trained, "no parameter got a gradient"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("opt_level", [0, 1])
def test_spec_models_run_forward_and_backward(spec: Path, opt_level: int):
    _check_forward_backward(load_model(spec, opt_level=opt_level))


@pytest.mark.parametrize("title", sorted(language_examples()) or ["(LANGUAGE.md absent)"])
@pytest.mark.parametrize("opt_level", [0, 1])
def test_language_examples_compile_as_written_and_run(title: str, opt_level: int):
    examples = language_examples()
    if not examples:
        pytest.skip("../shared/LANGUAGE.md is not beside the checkout")
    source = compile_spec(examples[title], "example.mtl", opt_level=opt_level)
    _check_forward_backward(_model_class(_import(source, "example.mtl"), Path("example.mtl")))


@pytest.mark.parametrize("build", IR_MODELS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("opt_level", [0, 1])
def test_every_construct_runs_forward_and_backward(build, opt_level: int):
    _check_forward_backward(_class_of_ir(build(), opt_level))


def test_load_model_accepts_a_generated_module(tmp_path: Path):
    path = tmp_path / "mmoe_model.py"
    path.write_text(compile_spec((ROOT / "specs" / "mmoe.mtl").read_text(), "mmoe.mtl"))
    model_class = load_model(path)
    assert model_class.__name__ == "MMoE"
    assert set(model_class().forward(random_batch(model_class, 2))) == {"ctr", "cvr"}


COLLIDING = """model Collide "Names that are also Python or nn.Module names"

feature forward    : sparse(vocab=20, dim=4)
feature train      : sparse(vocab=20, dim=4)
feature to         : sequence(vocab=20, dim=4, maxlen=3, table=train)
feature eval       : dense
feature parameters : dense(dim=2)
feature _modules   : dense
feature _version   : dense
group all = [forward, train, to, eval, parameters, _modules, _version]
expert type x2 = mlp(all, [8])
gate input = softmax(all) over [type]
tower state_dict = mlp(input, [4])
task batch  : binary(label=click) = state_dict
task logits : regression(label=spend) = input
task _parameters : binary(label=other) = input
"""


def test_names_that_collide_still_work(tmp_path: Path):
    spec = tmp_path / "collide.mtl"
    spec.write_text(COLLIDING)
    for opt_level in (0, 1):
        model_class = load_model(spec, opt_level=opt_level)
        assert list(model_class.features) == [
            "forward",
            "train",
            "to",
            "eval",
            "parameters",
            "_modules",
            "_version",
        ]
        assert list(model_class.tasks) == ["batch", "logits", "_parameters"]
        _check_forward_backward(model_class)
        model = model_class()
        model.train()  # the nn.Module methods are intact
        model.eval()
        assert isinstance(model.forward_, torch.nn.Embedding)
        keys = list(model.state_dict())  # nn.Module's own _parameters are intact
        assert any(key.startswith("state_dict_.") for key in keys)
        assert any(key.startswith("_parameters_.") for key in keys)


@pytest.mark.parametrize("build", IR_MODELS, ids=lambda f: f.__name__)
def test_O0_and_O1_compute_the_same_outputs_and_gradients(build):
    model = build()
    plain, fast = _class_of_ir(model, 0)(), _class_of_ir(model, 1)()
    plain.eval(), fast.eval()  # no dropout noise; batch norm uses its running stats
    fast.load_state_dict(rt.convert_o0_state_dict(plain.state_dict(), fast))
    batch = random_batch(type(plain), 5, seed=2)
    out_plain, out_fast = plain.forward_logits(batch), fast.forward_logits(batch)
    for name in out_plain:
        torch.testing.assert_close(out_fast[name], out_plain[name], rtol=1e-5, atol=1e-6)
    sum(v.sum() for v in out_plain.values()).backward()
    sum(v.sum() for v in out_fast.values()).backward()
    # Gradients are laid out as the weights are: convert them the same way.
    grads_plain = plain.state_dict()
    for key, p in plain.named_parameters():
        grads_plain[key] = p.grad if p.grad is not None else torch.zeros_like(p)
    expected = rt.convert_o0_state_dict(grads_plain, fast)
    for key, p in fast.named_parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(grad, expected[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize(
    "name", ["mmoe", "ple", "esmm"]
)  # a bank; masks and a merged pool; pooling
def test_exports_with_torch_export(name: str):
    model_class = load_model(ROOT / "specs" / f"{name}.mtl")
    model = model_class().eval()
    batch = random_batch(model_class, 4)
    exported = torch.export.export(model, (batch,))
    expected = model(batch)
    got = exported.module()(batch)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])


def test_mmoe_traces_whole_with_torch_compile():
    """Dynamo traces the generated model in one graph (no break), forward and backward.

    The ``aot_eager`` backend checks tracing and autograd without inductor's code
    generation, which takes about a minute on a small CPU; set
    ``MTLC_TEST_INDUCTOR=1`` to compile with the default backend as well.
    """
    import os

    model_class = load_model(ROOT / "specs" / "mmoe.mtl")
    model = model_class().eval()
    batch = random_batch(model_class, 4)
    backends = ["aot_eager"] + (["inductor"] if os.environ.get("MTLC_TEST_INDUCTOR") else [])
    expected = model(batch)
    for backend in backends:
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=backend, fullgraph=True)
        got = compiled(batch)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name])
        sum(v.sum() for v in got.values()).backward()
