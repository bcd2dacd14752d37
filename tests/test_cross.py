"""``rt.Cross``: DCN's and DCNv2's cross networks, against the papers' equations and NextRec.

The reference is written row by row from the equations (float64): DCN's
``x0 (x_l . w) + b + x_l``, DCNv2's ``x0 * (W x_l + b) + x_l`` and its
mixture of low-rank experts. NextRec 0.6.14's ``CrossNetwork``,
``CrossNetV2`` (bias outside the product) and ``CrossNetMix`` (``C`` applied
from the right) get random weights copied across; outputs and every
gradient agree to 1e-10. A pool equals its networks run one by one.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mtlc import runtime as rt
from tests.parity.peers import NEXTREC_MISSING

needs_nextrec = pytest.mark.skipif(
    importlib.util.find_spec("nextrec") is None, reason=NEXTREC_MISSING
)
B, D = 5, 7


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _moved(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter off its initial value (biases start at zero)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module


def reference(cross: rt.Cross, x: torch.Tensor) -> torch.Tensor:
    """One row at a time, from the papers' equations (``C`` as NextRec 0.6.14 applies it)."""
    rows = []
    for x0 in x:
        h = x0
        for i in range(cross.layers):
            b = cross.bias[i]
            if cross.form == "vector":
                f = (h @ cross.weight[i]) * torch.ones_like(h)
            elif cross.form == "matrix":
                f = cross.weight[i] @ h
            else:
                g = torch.softmax(cross.gate @ h, 0)
                f = sum(
                    g[k]
                    * (cross.u[i, k] @ torch.tanh(torch.tanh(h @ cross.v[i, k]) @ cross.c[i, k]))
                    for k in range(cross.experts)
                )
            h = x0 * (f + b) + h if cross.bias_at == "inside" else x0 * f + b + h
        rows.append(h)
    return torch.stack(rows)


CASES = [
    dict(form="vector"),
    dict(form="vector", bias="inside"),
    dict(form="matrix"),
    dict(form="matrix", bias="outside"),
    dict(form="mix", rank=3, experts=2),
    dict(form="mix", rank=4, experts=1, bias="outside"),
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(map(str, o.values())))
@pytest.mark.parametrize("layers", [1, 3])
def test_equals_the_papers_equations(options, layers):
    cross = _moved(rt.Cross(D, layers, **options).double())
    x = torch.randn(B, D, dtype=torch.float64)
    torch.testing.assert_close(cross(x), reference(cross, x), rtol=0, atol=1e-12)


def test_each_form_defaults_to_its_papers_bias():
    assert rt.Cross(D, 1).bias_at == "outside"  # DCN
    assert rt.Cross(D, 1, form="matrix").bias_at == "inside"  # DCNv2
    assert rt.Cross(D, 1, form="mix").bias_at == "inside"


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(map(str, o.values())))
def test_a_pool_is_its_networks_one_by_one(options):
    pool = _moved(rt.Cross(D, 2, num_experts=3, **options).double())
    x = torch.randn(B, D, dtype=torch.float64, requires_grad=True)
    out = pool(x)
    assert out.shape == (B, 3, D)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    for e in range(3):
        one = rt.Cross(D, 2, **options).double()
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(getattr(pool, name)[e] if name == "gate" else getattr(pool, name)[:, e])
        torch.testing.assert_close(one(x), out[:, e], rtol=0, atol=1e-12)
        (one(x) * weights[:, e]).sum().backward()
        for name, p in one.named_parameters():
            grad = getattr(pool, name).grad
            grad = grad[e] if name == "gate" else grad[:, e]
            torch.testing.assert_close(p.grad, grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("form", ["vector", "matrix", "mix"])
def test_gradients_are_exact(form):
    cross = _moved(rt.Cross(4, 2, form=form, rank=2, experts=2).double())
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cross, (x,))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="form must be one of vector, matrix, mix"):
        rt.Cross(D, 2, form="diagonal")
    with pytest.raises(ValueError, match="bias must be inside or outside"):
        rt.Cross(D, 2, bias="both")


# -- NextRec 0.6.14 ------------------------------------------------------------------


def _nextrec(form: str, layers: int):
    """NextRec's cross network of ``form`` and ours, weights moved and copied across."""
    from nextrec.models.ranking.dcn import CrossNetwork
    from nextrec.models.ranking.dcn_v2 import CrossNetMix, CrossNetV2

    if form == "vector":
        theirs = _moved(CrossNetwork(D, layers).double())
        ours = rt.Cross(D, layers).double()
        state = {
            "weight": torch.stack([w.weight[0] for w in theirs.w]),
            "bias": torch.stack(list(theirs.b)),
        }
    elif form == "matrix":
        theirs = _moved(CrossNetV2(D, layers).double())
        ours = rt.Cross(D, layers, form="matrix", bias="outside").double()
        state = {
            "weight": torch.stack([w.weight for w in theirs.w]),
            "bias": torch.stack(list(theirs.b)),
        }
    else:
        theirs = _moved(CrossNetMix(D, layers, low_rank=3, num_experts=2).double())
        ours = rt.Cross(D, layers, form="mix", rank=3, experts=2).double()
        state = {
            "u": torch.stack(list(theirs.u_list)),
            "v": torch.stack(list(theirs.v_list)),
            "c": torch.stack(list(theirs.c_list)),
            "gate": torch.cat([g.weight for g in theirs.gating]),
            "bias": torch.stack([b[:, 0] for b in theirs.bias]),
        }
    ours.load_state_dict({k: v.detach().clone() for k, v in state.items()})
    return theirs, ours


@needs_nextrec
@pytest.mark.parametrize("form", ["vector", "matrix", "mix"])
@pytest.mark.parametrize("layers", [1, 3])
def test_matches_nextrec(form, layers):
    theirs, ours = _nextrec(form, layers)
    x = torch.randn(B, D, dtype=torch.float64)
    x_theirs, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_theirs, out_ours = theirs(x_theirs), ours(x_ours)
    torch.testing.assert_close(out_ours, out_theirs, rtol=0, atol=1e-10)
    weights = torch.randn_like(out_ours)
    (out_theirs * weights).sum().backward()
    (out_ours * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=0, atol=1e-10)
    grads = _nextrec_grads(theirs, form)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=0, atol=1e-10)


def _nextrec_grads(theirs, form: str) -> dict[str, torch.Tensor]:
    """NextRec's parameter gradients in ``rt.Cross``'s layout."""
    if form == "vector":
        grads = {
            "weight": torch.stack([w.weight.grad[0] for w in theirs.w]),
            "bias": torch.stack([b.grad for b in theirs.b]),
        }
    elif form == "matrix":
        grads = {
            "weight": torch.stack([w.weight.grad for w in theirs.w]),
            "bias": torch.stack([b.grad for b in theirs.b]),
        }
    else:
        grads = {
            "u": torch.stack([p.grad for p in theirs.u_list]),
            "v": torch.stack([p.grad for p in theirs.v_list]),
            "c": torch.stack([p.grad for p in theirs.c_list]),
            "gate": torch.cat([g.weight.grad for g in theirs.gating]),
            "bias": torch.stack([b.grad[:, 0] for b in theirs.bias]),
        }
    return grads
