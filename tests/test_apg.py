"""``rt.APG``: NextRec 0.6.14's ``APGLayer`` stack, its layout, gradients and argument errors.

Against NextRec (skipped without it): random weights (shared biases and
PReLU slopes too) copied across by name, then outputs and the gradients of
the inputs, the condition and every parameter at float64 to 1e-10, in each
product form (``auto``, ``outer``, ``matrix``); a seed gives NextRec's
initial weights; and the layers of a whole NextRec ``APG`` model.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from mtlc import runtime as rt
from mtlc.runtime.apg import _APGLayer
from tests.parity.peers import NEXTREC_MISSING

HAS_NEXTREC = importlib.util.find_spec("nextrec") is not None
needs_nextrec = pytest.mark.skipif(not HAS_NEXTREC, reason=NEXTREC_MISSING)
B = 6


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# NextRec's `specific_<x>.mlp.0` generator -> ours
GENERATORS = {
    "specific_weight_kk": "generate_kk",
    "specific_bias_kk": "generate_k",
    "specific_weight_nk": "generate_nk",
    "specific_bias_nk": "generate_nk_bias",
    "specific_weight_km": "generate_km",
    "specific_bias_km": "generate_km_bias",
}


def ours_key(key: str) -> str:
    """NextRec's ``apg_layers.{l}.*`` key -> ``rt.APG``'s ``layers.{l}.*`` (section 4.3)."""
    head, layer, name = key.split(".", 2)
    assert head == "apg_layers", key
    if name.startswith("shared_"):
        name = name.removeprefix("shared_")
    elif name.startswith("specific_"):
        generator, rest = name.split(".mlp.0.")
        name = f"{GENERATORS[generator]}.{rest}"
    return f"layers.{layer}.{name}"


def _none(name: str) -> str | None:
    return None if name == "none" else name


class NextRecStack(nn.Module):
    """NextRec's ``APG`` layer stack (its ``forward`` loop), with explicit ranks and expands."""

    def __init__(self, in_dim, dims, cond_dim, ranks, expands=None, shared=True, **options):
        super().__init__()
        from nextrec.models.multitask.apg import APGLayer

        units = [in_dim, *dims]
        layers = []
        for i, rank in enumerate(ranks):
            narrow = min(units[i], units[i + 1])
            expand = None if expands is None else expands[i]
            layer = APGLayer(
                units[i],
                units[i + 1],
                cond_dim,
                activation=options.get("activation", "relu"),
                generate_activation=_none(options.get("generate", "none")),
                inner_activation=_none(options.get("inner", "none")),
                use_uv_shared=shared,
                use_mf_p=expand is not None,
                # ceil(narrow / (r - 0.5) ... ) = r: NextRec's k and p from explicit ones
                mf_k=narrow / (rank - 0.5),
                mf_p=4 if expand is None else narrow / (expand - 0.5),
            )
            assert layer.k_dim == rank and (expand is None or layer.p_dim == expand)
            layers.append(layer)
        self.apg_layers = nn.ModuleList(layers)

    def forward(self, x, cond):
        for layer in self.apg_layers:
            x = layer(x, cond)
        return x


def randomize(module: nn.Module) -> None:
    """Every parameter random (zero biases and unit slopes would hide a miswiring)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


def copy_from_nextrec(ours: rt.APG, ref: nn.Module) -> None:
    ours.load_state_dict({ours_key(k): v for k, v in ref.state_dict().items()}, strict=True)


CASES = {
    "shared": dict(in_dim=7, dims=[9], cond_dim=3, ranks=[5]),
    "shared_rank1": dict(in_dim=7, dims=[5], cond_dim=3, ranks=[1]),
    "shared_wide_cond": dict(in_dim=7, dims=[9], cond_dim=6, ranks=[4]),
    "expand": dict(in_dim=8, dims=[10, 6], cond_dim=2, ranks=[5, 3], expands=[6, 4]),
    "not_shared": dict(in_dim=7, dims=[9, 4], cond_dim=3, ranks=[5, 2], shared=False),
    "inner_generate": dict(
        in_dim=7, dims=[9, 5], cond_dim=2, ranks=[4, 3], inner="gelu", generate="tanh"
    ),
    "expand_inner_generate": dict(
        in_dim=8,
        dims=[6],
        cond_dim=2,
        ranks=[4],
        expands=[5],
        inner="sigmoid",
        generate="silu",
        activation="tanh",
    ),
    "not_shared_generate": dict(
        in_dim=5, dims=[6, 4], cond_dim=2, ranks=[4, 3], shared=False, generate="relu", inner="tanh"
    ),
    "three_layers_prelu": dict(
        in_dim=9, dims=[8, 7, 3], cond_dim=2, ranks=[6, 1, 3], activation="prelu", inner="relu"
    ),
    "last_linear": dict(in_dim=6, dims=[4, 2], cond_dim=3, ranks=[2, 2], activation="none"),
}
FORMS = ["auto", "outer", "matrix"]


def _pair(case: dict, dtype=torch.float64) -> tuple[rt.APG, nn.Module]:
    ref = NextRecStack(**case).to(dtype)
    randomize(ref)
    ours = rt.APG(**case).to(dtype)
    copy_from_nextrec(ours, ref)
    return ours, ref


def _grads(module, key=lambda k: k):
    return {key(k): p.grad for k, p in module.named_parameters()}


@needs_nextrec
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_nextrec_outputs_and_gradients(name, form, monkeypatch):
    monkeypatch.setattr(_APGLayer, "product_form", form)
    case = CASES[name]
    ours, ref = _pair(case)
    x = torch.randn(B, case["in_dim"], dtype=torch.float64)
    cond = torch.randn(B, case["cond_dim"], dtype=torch.float64)
    results = []
    for module in (ref, ours):
        xs, cs = x.clone().requires_grad_(), cond.clone().requires_grad_()
        out = module(xs, cs)
        (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
        results.append((out, xs.grad, cs.grad))
    assert results[1][0].shape == (B, case["dims"][-1])
    for theirs, mine in zip(*results):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-10)
    mine = _grads(ours)
    for key, grad in _grads(ref, ours_key).items():
        torch.testing.assert_close(mine[key], grad, rtol=0, atol=1e-10, msg=key)


@needs_nextrec
def test_matches_nextrec_at_float32():
    case = dict(in_dim=41, dims=[128, 64], cond_dim=8, ranks=[32, 16])  # specs/apg.mtl
    ours, ref = _pair(case, torch.float32)
    x, cond = torch.randn(64, 41), torch.randn(64, 8)
    scale = ref(x, cond).abs().max().clamp_min(1.0)
    torch.testing.assert_close(ours(x, cond) / scale, ref(x, cond) / scale, rtol=0, atol=1e-6)


@needs_nextrec
@pytest.mark.parametrize("name", ["shared", "expand", "not_shared", "three_layers_prelu"])
def test_a_seed_gives_nextrecs_initial_weights(name):
    case = CASES[name]
    torch.manual_seed(3)
    ref = NextRecStack(**case)
    torch.manual_seed(3)
    ours = rt.APG(**case)
    mine = ours.state_dict()
    theirs = {ours_key(k): v for k, v in ref.state_dict().items()}
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    for layer in ours.layers:  # NextRec's init: shared biases zero, weights xavier_uniform_
        for name_, p in layer.named_parameters(recurse=False):
            if name_.startswith("bias_"):
                assert not p.any()
            else:
                bound = math.sqrt(6.0 / sum(p.shape))
                assert p.abs().max() <= bound


@needs_nextrec
def test_matches_the_layers_of_a_nextrec_apg_model():
    """A whole NextRec ``APG``: its ``apg_layers`` keys load into ``rt.APG``, logits agree."""
    from nextrec.basic.features import DenseFeature, SparseFeature
    from nextrec.models.multitask.apg import APG

    model = APG(
        dense_features=[DenseFeature("age")],
        sparse_features=[
            SparseFeature("user", 20, embedding_dim=4),
            SparseFeature("scene", 5, embedding_dim=3),
        ],
        target=["a", "b"],
        mlp_params={"hidden_dims": [6, 4], "activation": "prelu"},
        scene_features=["scene"],
        inner_activation="silu",
        mf_k=2,
        device="cpu",
    ).double()
    randomize(model)
    model.eval()
    batch = {
        "user": torch.randint(0, 20, (B,)),
        "scene": torch.randint(0, 5, (B,)),
        "age": torch.randn(B, dtype=torch.float64),
    }
    layers = {k: v for k, v in model.state_dict().items() if k.startswith("apg_layers.")}
    ours = rt.APG(8, [6, 4], cond_dim=3, ranks=[3, 2], inner="silu", activation="prelu").double()
    ours.load_state_dict({ours_key(k): v for k, v in layers.items()}, strict=True)
    x = model.embedding(x=batch, features=model.all_features, squeeze_dim=True)
    cond = model.embedding(x=batch, features=model.scene_features, squeeze_dim=True)
    h = ours(x, cond)
    logits = torch.cat([tower(h) for tower in model.towers], dim=1)
    torch.testing.assert_close(logits, model(batch), rtol=0, atol=1e-10)


# --- without NextRec ---------------------------------------------------------


def _reference(model: rt.APG, x, cond):
    """The section 4.2 formulas, written out with einsum over explicit [B, r, c] matrices."""
    for layer in model.layers:
        inner = layer.inner

        def generated(a, weight, bias, cols, layer=layer):
            matrix = layer.generate(weight(cond)).view(a.shape[0], a.shape[1], cols)
            return torch.einsum("bi,bij->bj", a, matrix) + layer.generate(bias(cond))

        k, m = layer.rank, layer.out_dim
        if not layer.shared:
            a = inner(generated(x, layer.generate_nk, layer.generate_nk_bias, k))
        elif layer.expand is None:
            a = inner(x @ layer.weight_nk + layer.bias_nk)
        else:
            a = inner(x @ layer.weight_np + layer.bias_np)
            a = inner(a @ layer.weight_pk + layer.bias_pk)
        a = inner(generated(a, layer.generate_kk, layer.generate_k, k))
        if not layer.shared:
            y = generated(a, layer.generate_km, layer.generate_km_bias, m)
        elif layer.expand is None:
            y = a @ layer.weight_km + layer.bias_km
        else:
            y = inner(a @ layer.weight_kp + layer.bias_kp) @ layer.weight_pm + layer.bias_pm
        x = layer.activation(y)
    return x


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_the_written_out_formulas(name, form, monkeypatch):
    """The same check without NextRec; the mutation of M's layout fails it too."""
    monkeypatch.setattr(_APGLayer, "product_form", form)
    case = CASES[name]
    model = rt.APG(**case).double()
    randomize(model)
    x = torch.randn(B, case["in_dim"], dtype=torch.float64)
    cond = torch.randn(B, case["cond_dim"], dtype=torch.float64)
    torch.testing.assert_close(model(x, cond), _reference(model, x, cond), rtol=0, atol=1e-10)


GRADCHECK = {
    "shared": dict(in_dim=3, dims=[4], cond_dim=2, ranks=[4], activation="tanh"),
    "expand": dict(
        in_dim=3,
        dims=[4, 2],
        cond_dim=1,
        ranks=[3, 2],
        expands=[2, 3],
        inner="gelu",
        activation="silu",
    ),
    "not_shared": dict(
        in_dim=3,
        dims=[4],
        cond_dim=1,
        ranks=[3],
        shared=False,
        generate="sigmoid",
        activation="prelu",
    ),
    "not_shared_outer": dict(in_dim=2, dims=[5], cond_dim=1, ranks=[3], shared=False, inner="tanh"),
}


@pytest.mark.parametrize("form", ["outer", "matrix"])
@pytest.mark.parametrize("name", list(GRADCHECK))
def test_gradcheck(name, form, monkeypatch):
    """Gradients of the input, the condition and every parameter, by finite differences."""
    monkeypatch.setattr(_APGLayer, "product_form", form)
    case = GRADCHECK[name]
    model = rt.APG(**case).double()
    randomize(model)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = torch.randn(3, case["in_dim"], dtype=torch.float64, requires_grad=True)
    cond = torch.randn(3, case["cond_dim"], dtype=torch.float64, requires_grad=True)

    def run(x, cond, *params):
        return functional_call(model, dict(zip(names, params)), (x, cond))

    assert torch.autograd.gradcheck(run, (x, cond, *params))


def _calls(module: nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_auto_takes_the_outer_product_where_it_is_smaller(monkeypatch):
    """``auto``: no per-row matrix (the generator Linear is not called) iff generate is
    none and C + 1 < columns; the same output either way."""
    model = rt.APG(7, [9, 4], cond_dim=3, ranks=[5, 4]).double()
    randomize(model)
    calls = [_calls(layer.generate_kk) for layer in model.layers]
    x, cond = torch.randn(B, 7, dtype=torch.float64), torch.randn(B, 3, dtype=torch.float64)
    out = model(x, cond)
    assert [len(c) for c in calls] == [0, 1]  # 3 + 1 < 5, not < 4
    generated = rt.APG(7, [9], cond_dim=3, ranks=[5], generate="tanh")
    calls = _calls(generated.layers[0].generate_kk)
    generated(torch.randn(B, 7), torch.randn(B, 3))
    assert len(calls) == 1
    monkeypatch.setattr(_APGLayer, "product_form", "matrix")
    torch.testing.assert_close(model(x, cond), out, rtol=0, atol=1e-12)


def _shapes(model):
    return {k: tuple(p.shape) for k, p in model.named_parameters()}


def test_parameter_layout():
    shared = rt.APG(7, [9, 4], cond_dim=3, ranks=[5, 2], activation="prelu")
    assert _shapes(shared) == {
        "layers.0.weight_nk": (7, 5),
        "layers.0.bias_nk": (5,),
        "layers.0.weight_km": (5, 9),
        "layers.0.bias_km": (9,),
        "layers.0.generate_kk.weight": (25, 3),
        "layers.0.generate_kk.bias": (25,),
        "layers.0.generate_k.weight": (5, 3),
        "layers.0.generate_k.bias": (5,),
        "layers.0.activation.weight": (1,),
        "layers.1.weight_nk": (9, 2),
        "layers.1.bias_nk": (2,),
        "layers.1.weight_km": (2, 4),
        "layers.1.bias_km": (4,),
        "layers.1.generate_kk.weight": (4, 3),
        "layers.1.generate_kk.bias": (4,),
        "layers.1.generate_k.weight": (2, 3),
        "layers.1.generate_k.bias": (2,),
        "layers.1.activation.weight": (1,),
    }
    expand = _shapes(rt.APG(8, [6], cond_dim=2, ranks=[3], expands=[4]))
    assert {k: v for k, v in expand.items() if "generate" not in k} == {
        "layers.0.weight_np": (8, 4),
        "layers.0.bias_np": (4,),
        "layers.0.weight_pk": (4, 3),
        "layers.0.bias_pk": (3,),
        "layers.0.weight_kp": (3, 4),
        "layers.0.bias_kp": (4,),
        "layers.0.weight_pm": (4, 6),
        "layers.0.bias_pm": (6,),
    }
    generated = _shapes(rt.APG(8, [6], cond_dim=2, ranks=[3], shared=False))
    assert generated == {
        "layers.0.generate_kk.weight": (9, 2),
        "layers.0.generate_kk.bias": (9,),
        "layers.0.generate_k.weight": (3, 2),
        "layers.0.generate_k.bias": (3,),
        "layers.0.generate_nk.weight": (24, 2),
        "layers.0.generate_nk.bias": (24,),
        "layers.0.generate_nk_bias.weight": (3, 2),
        "layers.0.generate_nk_bias.bias": (3,),
        "layers.0.generate_km.weight": (18, 2),
        "layers.0.generate_km.bias": (18,),
        "layers.0.generate_km_bias.weight": (6, 2),
        "layers.0.generate_km_bias.bias": (6,),
    }
    golden = rt.APG(41, [128, 64], cond_dim=8, ranks=[32, 16])  # tests/golden/models/apg.py
    assert golden(torch.randn(B, 41), torch.randn(B, 8)).shape == (B, 64)
    # section 11's estimate: n k + k + k m + m + C k^2 + k^2 + C k + k per layer
    assert sum(p.numel() for p in golden.parameters()) == sum(
        n * k + k + k * m + m + 8 * k * k + k * k + 8 * k + k
        for n, m, k in ((41, 128, 32), (128, 64, 16))
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dims=[], ranks=[]), "at least one layer"),
        (dict(ranks=[2, 2]), "1 layers but 2 ranks"),
        (dict(expands=[3], shared=False), "need shared=True"),
        (dict(expands=[3, 3]), "1 layers but 2 expands"),
        (dict(ranks=[0]), "ranks must be positive"),
        (dict(dims=[2.5]), "dims must be positive"),
        (dict(cond_dim=0), "cond_dim must be positive"),
        (dict(expands=[-1]), "expands must be positive"),
        (dict(ranks=[True]), "ranks must be positive"),
        (dict(inner="prelu"), "unknown APG inner 'prelu'"),
        (dict(generate="prelu"), "unknown APG generate 'prelu'"),
        (dict(generate="softmax"), "unknown APG generate"),
        (dict(activation="swish"), "unknown APG activation 'swish'"),
    ],
)
def test_argument_errors(kwargs, message):
    args = dict(in_dim=4, dims=[3], cond_dim=2, ranks=[2]) | kwargs
    with pytest.raises(ValueError, match=message):
        rt.APG(**args)


def test_exported():
    assert "APG" in rt.__all__ and rt.APG.__module__ == "mtlc.runtime.apg"
