"""The runtime layers: shapes, padding, gates, and -O0 / -O1 equivalence."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from mtlc import runtime as rt
from mtlc.ir import Activation
from mtlc.runtime import layers

B, IN = 5, 7


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _x(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, requires_grad=True)


# --- MLP and expert pools -----------------------------------------------------


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
@pytest.mark.parametrize("activation", [a.value for a in Activation])
def test_mlp_layout_and_shape(activation, norm):
    mlp = rt.MLP(IN, [6, 3], activation=activation, dropout=0.1, norm=norm)
    kinds = [type(m) for m in mlp.layers]
    per_layer = 2 + (norm != "none") + (activation != "none")
    assert len(kinds) == 2 * per_layer and kinds[0] is nn.Linear and kinds[-1] is nn.Dropout
    assert mlp(torch.randn(B, IN)).shape == (B, 3)


def test_the_runtime_has_a_module_for_every_activation_of_the_language():
    assert set(layers.ACTIVATIONS) == {a.value for a in Activation}


def test_bad_options_are_rejected_with_a_message():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        rt.MLP(IN, [4], activation="swish")
    with pytest.raises(ValueError, match="unknown norm"):
        rt.ExpertPool(IN, [4], 2, norm="group")
    with pytest.raises(ValueError, match="mask"):
        rt.GateBank(IN, 3, 2, masks=((0, 1), (1, 1)))


def _nondefault(module):
    """Non-default norm affine values and PReLU slopes, so that copying them is tested."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm, nn.PReLU)):
            nn.init.uniform_(m.weight, 0.5, 1.5)
        if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)):
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return module


def _o0_o1_pair(dims, num_experts, **options):
    o0 = _nondefault(rt.Experts(IN, dims, num_experts, **options).double())
    o1 = rt.ExpertPool(IN, dims, num_experts, **options).double()
    o1.load_from_experts(o0)
    return o0, o1


@pytest.mark.parametrize(
    "dims, options",
    [
        ([6], {}),
        ([6, 4, 3], {}),
        ([6, 3], {"activation": "prelu", "norm": "batch"}),
        ([6, 3], {"activation": "gelu", "norm": "layer"}),
        ([6, 3], {"activation": "none", "dropout": 0.0}),
        ([6], {"bias": False}),
        ([6, 4, 3], {"bias": False}),
        ([6, 3], {"activation": "prelu", "norm": "batch", "bias": False}),
    ],
)
@pytest.mark.parametrize("num_experts", [1, 3])
@pytest.mark.parametrize("per_expert", [True, False], ids=["cpu-per-expert", "batched"])
def test_expert_pool_equals_experts_outputs_and_gradients(dims, options, num_experts, per_expert):
    o0, o1 = _o0_o1_pair(dims, num_experts, **options)
    o1.per_expert_min_batch = 0 if per_expert else None  # force one path
    x = _x(B, IN)
    y0, y1 = o0(x), o1(x)
    assert y1.shape == (B, num_experts, dims[-1])
    torch.testing.assert_close(y1, y0)
    if options.get("norm") == "batch":  # running statistics moved the same way
        stats0 = torch.cat([e.layers[1].running_mean for e in o0.experts])
        torch.testing.assert_close(o1.post[0][0].norm.running_mean, stats0)
    upstream = torch.randn_like(y0)
    (g0,) = torch.autograd.grad((y0 * upstream).sum(), x)
    (g1,) = torch.autograd.grad((y1 * upstream).sum(), x)
    torch.testing.assert_close(g1, g0)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_per_expert_path_with_norms_trains_and_evaluates_as_experts(norm):
    o0, o1 = _o0_o1_pair([6, 3], 3, norm=norm, activation="relu")
    o1.per_expert_min_batch = 0
    for _ in range(2):  # two training steps move the running statistics
        x = _x(B, IN)
        torch.testing.assert_close(o1(x), o0(x))
    if norm == "batch":
        pooled = o1.post[1][0].norm  # the second layer's BatchNorm1d(E * d)
        for name in ("running_mean", "running_var"):
            torch.testing.assert_close(
                getattr(pooled, name), torch.cat([getattr(e.layers[4], name) for e in o0.experts])
            )
        assert int(pooled.num_batches_tracked) == 2
    o0.eval()
    o1.eval()
    x = _x(B, IN)
    torch.testing.assert_close(o1(x), o0(x))


def _generic(pool, x):
    """The pool's output through its generic per-expert path (module by module under autograd)."""
    from mtlc.runtime.kernels import cpu

    fused = cpu._ReluPool.usable
    cpu._ReluPool.usable = staticmethod(lambda x: False)
    try:
        return pool(x)
    finally:
        cpu._ReluPool.usable = fused


def _node(y):
    """The autograd node under the pool's final transpose."""
    return y.grad_fn.next_functions[0][0].name()


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided-input"])
@pytest.mark.parametrize("dims, num_experts", [([6], 2), ([6, 4, 3], 3), ([6, 3], 1)])
def test_relu_pool_node_equals_the_generic_path(dims, num_experts, strided):
    pool = rt.ExpertPool(IN, dims, num_experts).double()
    pool.per_expert_min_batch = 0
    # strided: one row of a [B, 2, IN] bank output, as PLE's second level reads its gates
    x = _x(B, 2, IN)[:, 1] if strided else _x(B, IN)
    fused, generic = pool(x), _generic(pool, x)
    assert _node(fused) == "_ReluPoolBackward" and _node(generic) != _node(
        fused
    )  # the node under test ran
    torch.testing.assert_close(fused, generic, rtol=0, atol=0)  # same products in the same order
    upstream = torch.randn_like(generic)
    params = [x, *pool.parameters()]
    expected = torch.autograd.grad((generic * upstream).sum(), params)
    loss = (fused * upstream).sum()
    first = torch.autograd.grad(loss, params, retain_graph=True)
    again = torch.autograd.grad(
        loss, params
    )  # retain_graph: the saved activations survive the first
    for want, got, got_again in zip(expected, first, again):
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_again, got, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda x, *_: pool(x), tuple(params))


def test_relu_pool_node_without_input_gradient_and_in_other_cases():
    pool = rt.ExpertPool(IN, [6, 3], 2).double()
    pool.per_expert_min_batch = 0
    x = torch.randn(B, IN, dtype=torch.float64)  # no grad wanted for x (dense inputs only)
    pool(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pool.parameters())
    dropout = rt.ExpertPool(IN, [6, 3], 2, dropout=0.5).double()
    dropout.per_expert_min_batch = 0
    assert _node(dropout(_x(B, IN))) != "_ReluPoolBackward"  # dropout: the generic path
    with torch.no_grad():
        assert pool(x).grad_fn is None


@pytest.mark.parametrize("per_expert", [True, False], ids=["cpu-per-expert", "batched"])
def test_expert_pool_parameter_gradients_match_experts(per_expert):
    o0, o1 = _o0_o1_pair([6, 3], 2, activation="prelu")
    o1.per_expert_min_batch = 0 if per_expert else None  # force one path
    x = _x(B, IN)
    upstream = torch.randn(B, 2, 3, dtype=torch.float64)
    (o0(x) * upstream).sum().backward()
    (o1(x) * upstream).sum().backward()
    for e, mlp in enumerate(o0.experts):
        torch.testing.assert_close(
            o1.first.weight.grad[e * 6 : (e + 1) * 6], mlp.layers[0].weight.grad
        )
        torch.testing.assert_close(o1.weights[0].grad[e], mlp.layers[2].weight.grad.T)
        torch.testing.assert_close(o1.biases[0].grad[e, 0], mlp.layers[2].bias.grad)
        torch.testing.assert_close(o1.post[0][0].weight.grad[e : e + 1], mlp.layers[1].weight.grad)


# --- bias=False ---------------------------------------------------------------


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_bias_false_drops_every_bias():
    mlp = rt.MLP(IN, [6, 3], bias=False)
    assert all(m.bias is None for m in mlp.layers if isinstance(m, nn.Linear))
    assert _count(mlp) == IN * 6 + 6 * 3 and _count(rt.MLP(IN, [6, 3])) == _count(mlp) + 6 + 3
    weights = IN * 6 + 6 * 4 + 4 * 3
    assert _count(rt.Experts(IN, [6, 4, 3], 2, bias=False)) == 2 * weights
    pool = rt.ExpertPool(IN, [6, 4, 3], 2, bias=False)
    assert _count(pool) == 2 * weights and pool.first.bias is None and len(pool.biases) == 0
    assert not pool.has_bias and rt.ExpertPool(IN, [6], 2).has_bias
    assert _count(rt.ExpertPool(IN, [6, 4, 3], 2)) == 2 * (weights + 6 + 4 + 3)


def test_bias_false_mlp_equals_its_reference():
    mlp = rt.MLP(IN, [6, 3], activation="tanh", bias=False).double()
    x = _x(B, IN)
    first, second = (m.weight for m in mlp.layers if isinstance(m, nn.Linear))
    torch.testing.assert_close(mlp(x), torch.tanh(torch.tanh(x @ first.T) @ second.T))


def test_bias_false_pool_from_a_thousand_rows_takes_the_generic_per_expert_path():
    o0, o1 = _o0_o1_pair([6, 4, 3], 3, bias=False)
    assert o1.per_expert_min_batch == 1024  # the default: this batch takes the per-expert path
    x = _x(1024, IN)
    y0, y1 = o0(x), o1(x)
    assert _node(y1) != "_ReluPoolBackward"  # the fused node needs biases
    torch.testing.assert_close(y1, y0)
    upstream = torch.randn_like(y0)
    (y0 * upstream).sum().backward()
    (y1 * upstream).sum().backward()
    for e, mlp in enumerate(o0.experts):
        linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
        torch.testing.assert_close(
            o1.first.weight.grad[e * 6 : (e + 1) * 6], linears[0].weight.grad
        )
        for weight, linear in zip(o1.weights, linears[1:]):
            torch.testing.assert_close(weight.grad[e], linear.weight.grad.T)
    with_bias = rt.ExpertPool(IN, [6, 3], 2).double()  # with biases: still the fused node
    assert _node(with_bias(_x(1024, IN))) == "_ReluPoolBackward"


def test_pool_refuses_mlps_of_the_other_bias():
    with pytest.raises(ValueError, match="bias"):
        rt.ExpertPool(IN, [6], 2, bias=False).load_from_mlps([rt.MLP(IN, [6])] * 2)
    with pytest.raises(ValueError, match="bias"):
        rt.ExpertPool(IN, [6], 2).load_from_mlps([rt.MLP(IN, [6], bias=False)] * 2)


# --- gates ------------------------------------------------------------------


def test_gate_weights_sum_to_one_and_mix_is_the_weighted_sum():
    gate = rt.SoftmaxGate(IN, 4, hidden=[5]).double()
    w = gate(_x(B, IN))
    assert w.shape == (B, 4) and (w > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, dtype=torch.float64))
    experts = torch.randn(B, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(rt.mix(w, experts), torch.einsum("be,bed->bd", w, experts))


def test_top_k_keeps_the_largest_and_renormalises():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5]])
    w = rt.gate_weights(logits, top=2)
    expected = torch.tensor([[0.0, math.e, 1.0, 0.0]]) / (math.e + 1.0)
    torch.testing.assert_close(w, expected)


def test_top_k_ties_keep_the_lower_index():
    w = rt.gate_weights(torch.tensor([[2.0, 1.0, 2.0, 2.0]]), top=2)
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.0, 0.5, 0.0]]))
    assert torch.equal(rt.gate_weights(torch.zeros(1, 3), top=1), torch.tensor([[1.0, 0.0, 0.0]]))


def test_temperature_divides_the_logits():
    logits = torch.tensor([[0.0, 1.0]])
    w = rt.gate_weights(logits, temperature=2.0)
    torch.testing.assert_close(w[0, 1] / w[0, 0], torch.tensor(math.exp(0.5)))
    gate = rt.SoftmaxGate(IN, 2, temperature=2.0)
    x = torch.randn(B, IN)
    torch.testing.assert_close(gate(x), torch.softmax(gate.linear(x) / 2.0, -1))


def test_saturated_logits_give_no_nan():
    huge = torch.tensor([[1e30, -1e30, float("-inf")], [3e38, 3e38, 0.0]], requires_grad=True)
    for top in (None, 1, 2):
        w = rt.gate_weights(huge, top=top)
        assert torch.isfinite(w).all()
        w.sum().backward()
        assert torch.isfinite(huge.grad).all()
        huge.grad = None


MASKS = ((2, 3, 0), (1,), (0, 1, 2, 3, 4))  # PLE-like: different subsets, in each gate's own order


@pytest.mark.parametrize(
    "masks, options",
    [
        (None, {}),
        (None, {"top": 2, "temperature": 0.5}),
        (MASKS, {}),
        (MASKS, {"top": 2}),
        (MASKS, {"hidden": [4], "top": 1}),
    ],
)
def test_gate_bank_equals_separate_gates(masks, options):
    num_gates, num_experts = 3, 5
    sizes = [len(m) for m in masks] if masks else [num_experts] * num_gates
    gates = [rt.SoftmaxGate(IN, n, **options).double() for n in sizes]
    bank = rt.GateBank(IN, num_experts, num_gates, masks=masks, **options).double()
    bank.load_from_gates(gates)
    x, experts = _x(B, IN), _x(B, num_experts, 4)
    out = bank(x, experts)
    assert out.shape == (B, num_gates, 4)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad((out * upstream).sum(), (x, experts))
    columns = masks or [list(range(num_experts))] * num_gates
    separate = torch.stack(
        [rt.mix(g(x), experts[:, list(c)]) for g, c in zip(gates, columns)], dim=1
    )
    torch.testing.assert_close(out, separate)
    expected = torch.autograd.grad((separate * upstream).sum(), (x, experts))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    weights = bank.weights(x)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, num_gates, dtype=torch.float64))


GATE_OPTIONS = [
    {"hidden": [4], "norm": "batch", "activation": "prelu"},
    {"hidden": [4, 3], "norm": "layer", "activation": "gelu"},
    {"hidden": [4], "norm": "batch", "activation": "silu", "dropout": 0.5},
    {"hidden": [4], "activation": "none", "top": 2},
]


@pytest.mark.parametrize("options", GATE_OPTIONS)
@pytest.mark.parametrize("masks", [None, MASKS])
@pytest.mark.parametrize("per_expert", [True, False], ids=["cpu-per-expert", "batched"])
def test_gate_bank_with_hidden_options_equals_separate_gates(options, masks, per_expert):
    num_gates, num_experts = 3, 5
    sizes = [len(m) for m in masks] if masks else [num_experts] * num_gates
    gates = [_nondefault(rt.SoftmaxGate(IN, n, **options).double()) for n in sizes]
    for gate in gates:  # train mode: batch statistics move off their defaults
        gate(torch.randn(B, IN, dtype=torch.float64))
    bank = rt.GateBank(IN, num_experts, num_gates, masks=masks, **options).double()
    bank.load_from_gates(gates)
    bank.mlp.per_expert_min_batch = 0 if per_expert else None
    modes = ["eval"] if options.get("dropout") else ["train", "eval"]  # dropout: eval only
    for mode in modes:
        for module in (bank, *gates):
            module.train(mode == "train")
        x, experts = _x(B, IN), _x(B, num_experts, 4)
        columns = masks or [list(range(num_experts))] * num_gates
        separate = torch.stack(
            [rt.mix(g(x), experts[:, list(c)]) for g, c in zip(gates, columns)], dim=1
        )
        out = bank(x, experts)
        torch.testing.assert_close(out, separate)
        upstream = torch.randn_like(out)
        inputs = (x, experts)
        expected = torch.autograd.grad((separate * upstream).sum(), inputs)
        for got, want in zip(torch.autograd.grad((out * upstream).sum(), inputs), expected):
            torch.testing.assert_close(got, want)
    if options.get("norm") == "batch":  # the train-mode steps moved both alike
        pooled = bank.mlp.post[0][0].norm.running_mean
        torch.testing.assert_close(pooled, torch.cat([g.mlp.layers[1].running_mean for g in gates]))


def test_gate_with_hidden_options_equals_its_softmax_gate():
    options = {"hidden": [4], "norm": "layer", "activation": "prelu"}
    gate = _nondefault(rt.SoftmaxGate(IN, 2, **options).double())
    one = rt.Gate(IN, 3, mask=(2, 0), **options).double()
    one.load_from_gates([gate])
    assert one.mlp.post[0][1].weight.shape == (1,)  # the gate's PReLU slope
    x, experts = _x(B, IN), _x(B, 3, 4)
    out, want = one(x, experts), rt.mix(gate(x), experts[:, [2, 0]])
    torch.testing.assert_close(out, want)
    (g1,) = torch.autograd.grad(out.sum(), x)
    (g0,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g1, g0)


def test_gate_hidden_options_default_and_mismatch():
    gate = rt.SoftmaxGate(IN, 3, hidden=[4])
    assert [type(m) for m in gate.mlp.layers] == [nn.Linear, nn.ReLU]  # unchanged default
    with pytest.raises(ValueError, match="unknown norm"):
        rt.SoftmaxGate(IN, 3, hidden=[4], norm="group")
    with pytest.raises(ValueError, match="dropout"):
        rt.GateBank(IN, 3, 2, hidden=[4], dropout=1.0)
    bank = rt.GateBank(IN, 3, 1, hidden=[4], norm="batch")
    with pytest.raises(ValueError, match="activation, norm or dropout"):
        bank.load_from_gates([rt.SoftmaxGate(IN, 3, hidden=[4])])


def _pool_output(count, width):
    """``[B, count, width]`` seen from an ``[count, B, width]`` buffer, as ExpertPool returns it."""
    return torch.randn(count, B, width, dtype=torch.float64).transpose(0, 1).requires_grad_()


@pytest.mark.parametrize(
    "num_gates, masks, options, direct",
    [
        (1, None, {}, True),  # one gate: the sources are mixed where they are
        (1, None, {"temperature": 0.5}, True),
        (1, None, {"top": 2}, False),  # top-k, several gates or masks: concatenated first
        (3, None, {}, False),
        (2, ((0, 2), (1, 2, 0)), {}, False),
    ],
)
def test_gate_bank_over_several_sources_equals_the_concatenation(num_gates, masks, options, direct):
    bank = rt.GateBank(IN, 3, num_gates, masks=masks, **options).double()
    bank.sources_min_batch = 0
    x, sources = _x(B, IN), (_pool_output(2, 4), _pool_output(1, 4))
    out = bank(x, *sources)
    assert (out.grad_fn.next_functions[0][0].name() == "_MixSourcesBackward") == direct
    joined = bank(x, torch.cat(sources, dim=1))
    torch.testing.assert_close(out, joined)
    upstream = torch.randn_like(out)
    inputs = (x, *sources, *bank.parameters())
    expected = torch.autograd.grad((joined * upstream).sum(), inputs)
    for got, want in zip(torch.autograd.grad((out * upstream).sum(), inputs), expected):
        torch.testing.assert_close(got, want)
    if direct:
        assert torch.autograd.gradcheck(lambda x, a, b: bank(x, a, b), (x, *sources))
    bank.sources_min_batch = B + 1  # a smaller batch than the threshold concatenates
    assert bank(x, *sources).grad_fn.next_functions[0][0].name() != "_MixSourcesBackward"


def test_gate_bank_ties_follow_each_gate_own_order():
    bank = rt.GateBank(IN, 3, 2, top=1, masks=((2, 0, 1), (0, 1, 2)))
    nn.init.zeros_(bank.linear.weight), nn.init.zeros_(bank.linear.bias)  # all logits tie
    weights = bank.weights(torch.randn(B, IN))
    assert torch.equal(weights[0, 0], torch.tensor([0.0, 0.0, 1.0]))  # gate 0's first is expert 2
    assert torch.equal(weights[0, 1], torch.tensor([1.0, 0.0, 0.0]))


# --- scale gates --------------------------------------------------------------


def _nets(count, width, hidden=(), activation="relu", norm="none", dropout=0.0):
    """``count`` plain nets ``(MLP or None, nn.Linear)``, trained one step (statistics moved)."""
    nets = []
    for _ in range(count):
        mlp = (
            _nondefault(rt.MLP(IN, hidden, activation, dropout, norm).double()) if hidden else None
        )
        linear = nn.Linear(hidden[-1] if hidden else IN, width).double()
        if mlp is not None:
            mlp(torch.randn(B, IN, dtype=torch.float64))
        nets.append((mlp, linear))
    return nets


def _scaled(nets, scale, cond, x):
    """The plain reference: ``scale * sigmoid(linear(mlp(cond))) * x``, net e on expert e."""

    def one(mlp, linear, x):
        return scale * torch.sigmoid(linear(cond if mlp is None else mlp(cond))) * x

    if x.dim() == 2:
        return one(*nets[0], x)
    return torch.stack([one(mlp, linear, x[:, e]) for e, (mlp, linear) in enumerate(nets)], dim=1)


SCALE_OPTIONS = [
    {},
    {"hidden": [5]},
    {"hidden": [5, 4], "activation": "prelu", "norm": "batch"},
    {"hidden": [5], "activation": "gelu", "norm": "layer", "dropout": 0.3},
]


@pytest.mark.parametrize("options", SCALE_OPTIONS)
@pytest.mark.parametrize("num_experts", [None, 1, 3], ids=["vector", "pool1", "pool3"])
@pytest.mark.parametrize("op", [False, True], ids=["eager", "custom-op"])
def test_scale_gate_equals_its_nets(options, num_experts, op, monkeypatch):
    if op:  # the custom op's path (CUDA or compiled), on CPU: its reference under the op
        monkeypatch.setattr(rt.gates, "plain_autograd", lambda tensor: False)
    width, scale = 4, 2.0
    nets = _nets(num_experts or 1, width, **options)
    gate = rt.ScaleGate(IN, width, scale=scale, num_experts=num_experts, **options).double()
    gate.load_from_nets(nets)
    mlps = [mlp for mlp, _ in nets if mlp is not None]
    modes = ["eval"] if options.get("dropout") else ["train", "eval"]
    for mode in modes:
        for module in (gate, *mlps):
            module.train(mode == "train")
        cond = _x(B, IN)
        x = _x(B, width) if num_experts is None else _pool_output(num_experts, width)
        out, want = gate(cond, x), _scaled(nets, scale, cond, x)
        assert out.shape == x.shape
        assert ("mtlc_scale_gate" in out.grad_fn.name()) == op
        torch.testing.assert_close(out, want)
        upstream = torch.randn_like(out)
        linears = [linear for _, linear in nets]
        firsts = [mlp.layers[0].weight for mlp in mlps]  # each net's first Linear
        wanted = (cond, x, *(lin.weight for lin in linears), *(lin.bias for lin in linears))
        expected = torch.autograd.grad((want * upstream).sum(), (*wanted, *firsts))
        expected_firsts = expected[len(wanted) :]
        if num_experts is None:
            last = (gate.linear.weight, gate.linear.bias)
            first = [gate.mlp.layers[0].weight] if mlps else []
        else:  # the batched last layers: weight[e], bias[e] are net e's Linear
            last = (gate.weight, gate.bias)
            first = [gate.mlp.first.weight] if mlps else []
        got = torch.autograd.grad((out * upstream).sum(), (cond, x, *last, *first))
        count = len(nets)
        torch.testing.assert_close(got[0], expected[0])
        torch.testing.assert_close(got[1], expected[1])
        torch.testing.assert_close(got[2], torch.stack(expected[2 : 2 + count]).view_as(got[2]))
        torch.testing.assert_close(
            got[3], torch.stack(expected[2 + count : len(wanted)]).view_as(got[3])
        )
        if mlps:  # rows e*h:(e+1)*h of the pool's first Linear are net e's
            torch.testing.assert_close(got[4], torch.cat(expected_firsts))


def test_scale_gate_pool_per_expert_path_and_layout():
    nets = _nets(3, 4, hidden=[5], norm="batch")
    gate = rt.ScaleGate(IN, 4, hidden=[5], scale=1.5, norm="batch", num_experts=3).double()
    gate.load_from_nets(nets)
    gate.mlp.per_expert_min_batch = 0  # the pool's CPU per-expert path
    assert gate.weight.shape == (3, 4, 5) and gate.bias.shape == (3, 4)
    assert isinstance(gate.mlp, rt.ExpertPool) and gate.mlp.num_experts == 3
    for module in (gate, *(mlp for mlp, _ in nets)):
        module.eval()
    cond, x = _x(B, IN), _x(B, 3, 4)
    torch.testing.assert_close(gate(cond, x), _scaled(nets, 1.5, cond, x))
    vector = rt.ScaleGate(IN, 4, hidden=[5])
    assert isinstance(vector.mlp, rt.MLP) and vector.linear.weight.shape == (4, 5)
    assert rt.ScaleGate(IN, 4).mlp is None and rt.ScaleGate(IN, 4, num_experts=2).mlp is None
    assert set(rt.ScaleGate(IN, 4, num_experts=2).state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize(
    "options, num_experts",
    [({}, None), ({"hidden": [3]}, None), ({}, 2), ({"hidden": [3], "activation": "tanh"}, 2)],
)
def test_scale_gate_gradcheck(options, num_experts):
    gate = rt.ScaleGate(3, 2, scale=2.5, num_experts=num_experts, **options).double()
    cond = _x(2, 3)
    x = _x(2, 2) if num_experts is None else _x(2, num_experts, 2)
    inputs = (cond, x, *gate.parameters())
    assert torch.autograd.gradcheck(lambda c, x, *_: gate(c, x), inputs)


def test_scale_gate_values_lie_between_zero_and_scale():
    gate = rt.ScaleGate(IN, 4, hidden=[5], scale=2.0, num_experts=2)
    scaled = gate(torch.randn(B, IN) * 100, torch.ones(B, 2, 4))
    assert ((scaled >= 0) & (scaled <= 2.0)).all()


def test_scale_gate_rejects_bad_arguments_and_nets():
    for kwargs, message in [
        ({"scale": 0.0}, "scale"),
        ({"scale": float("inf")}, "scale"),
        ({"width": 0}, "width"),
        ({"num_experts": 0}, "num_experts"),
        ({"hidden": [0]}, "hidden"),
        ({"activation": "swish"}, "unknown activation"),
        ({"norm": "group"}, "unknown norm"),
        ({"dropout": -0.1}, "dropout"),
    ]:
        with pytest.raises(ValueError, match=message):
            rt.ScaleGate(**{"in_dim": IN, "width": 4, **kwargs})
    pool = rt.ScaleGate(IN, 4, hidden=[5], norm="batch", num_experts=2)
    with pytest.raises(ValueError, match="expected 2 nets"):
        pool.load_from_nets(_nets(3, 4, hidden=[5], norm="batch"))
    with pytest.raises(ValueError, match="hidden MLP differs"):
        pool.load_from_nets([(None, nn.Linear(5, 4))] * 2)
    with pytest.raises(ValueError, match="hidden MLP differs"):
        pool.load_from_nets([(rt.MLP(IN, [5]), nn.Linear(5, 4))] * 2)  # no norm
    with pytest.raises(ValueError, match="last Linear"):
        pool.load_from_nets([(rt.MLP(IN, [5], norm="batch"), nn.Linear(5, 3))] * 2)
    with pytest.raises(ValueError, match="shape"):
        pool(torch.randn(B, IN), torch.randn(B, 4))


# --- AITM transfer ------------------------------------------------------------


def test_ai_transfer_by_hand():
    layer = rt.AITransfer(2)
    with torch.no_grad():
        for linear in (layer.info, layer.query, layer.key, layer.value):
            linear.weight.copy_(torch.eye(2))
        layer.info.bias.copy_(torch.tensor([1.0, 0.0]))
        layer.value.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    current, previous = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])
    # info = [2, 1]: score |info|^2 / sqrt(2) = 5 / sqrt(2); current: 1 / sqrt(2)
    a_info = 1.0 / (1.0 + math.exp((1.0 - 5.0) / math.sqrt(2.0)))
    expected = a_info * torch.tensor([4.0, 1.0]) + (1 - a_info) * torch.tensor([0.0, 1.0])
    out = layer(current, previous)
    assert out.shape == (1, 2)
    torch.testing.assert_close(out[0], expected)
    assert layer.query.bias is None and rt.AITransfer(2, qkv_bias=True).query.bias is not None


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_ai_transfer_equals_the_textbook_form_with_its_gradients(qkv_bias):
    layer = rt.AITransfer(6, qkv_bias=qkv_bias).double()
    current, previous = _x(B, 6), _x(B, 6)

    def textbook(
        current, previous
    ):  # the paper's form: query and key projected, then their dot product
        slots = torch.stack([layer.info(previous), current], dim=1)
        scores = (layer.query(slots) * layer.key(slots)).sum(-1) / math.sqrt(6)
        return torch.einsum("bs,bsd->bd", torch.softmax(scores, -1), layer.value(slots))

    inputs = (current, previous, *layer.parameters())
    upstream = torch.randn(B, 6, dtype=torch.float64)
    expected = torch.autograd.grad((textbook(current, previous) * upstream).sum(), inputs)
    got = torch.autograd.grad((layer(current, previous) * upstream).sum(), inputs)
    torch.testing.assert_close(layer(current, previous), textbook(current, previous))
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want)
    assert torch.autograd.gradcheck(lambda c, p: layer(c, p), (current, previous))


# --- sequence pooling ---------------------------------------------------------


def _sequence():
    ids = torch.tensor([[3, 0, 5, 0], [0, 0, 0, 0], [7, 7, 7, 1]])
    emb = torch.randn(3, 4, 2, requires_grad=True)
    return emb, ids


def test_pooling_excludes_padding():
    emb, ids = _sequence()
    row0 = emb[0, [0, 2]]
    torch.testing.assert_close(rt.pool_sum(emb, ids)[0], row0.sum(0))
    torch.testing.assert_close(rt.pool_mean(emb, ids)[0], row0.mean(0))
    torch.testing.assert_close(rt.pool_max(emb, ids)[0], row0.amax(0))
    torch.testing.assert_close(rt.pool_mean(emb, ids)[2], emb[2].mean(0))


@pytest.mark.parametrize("pool", [rt.pool_sum, rt.pool_mean, rt.pool_max])
def test_all_padding_row_gives_zeros_and_finite_gradients(pool):
    emb, ids = _sequence()
    out = pool(emb, ids)
    assert out.shape == (3, 2)
    assert torch.equal(out[1], torch.zeros(2))
    out.sum().backward()
    assert torch.isfinite(emb.grad).all() and torch.equal(emb.grad[1], torch.zeros(4, 2))
    assert torch.equal(emb.grad[0, 1], torch.zeros(2))  # a padding slot gets no gradient


# --- convert_o0_state_dict ----------------------------------------------------


class _PleO0(nn.Module):
    """A hand-written -O0 model: two pools, three gates (one with a subset), a tower."""

    def __init__(self):
        super().__init__()
        self.shared = rt.Experts(IN, [6, 4], 2, norm="batch")
        self.task = rt.Experts(IN, [6, 4], 1)
        self.g_task = rt.SoftmaxGate(IN, 2)
        self.g_shared = rt.SoftmaxGate(IN, 3)
        self.g_alone = rt.SoftmaxGate(IN, 3, hidden=[5])
        self.tower = rt.MLP(4, [3])

    def forward(self, x):
        shared, task = self.shared(x), self.task(x)
        both = torch.cat([shared, task], dim=1)
        a = rt.mix(self.g_task(x), both[:, [2, 0]])
        b = rt.mix(self.g_shared(x), both)
        c = rt.mix(self.g_alone(x), both)
        return torch.stack([self.tower(a), self.tower(b), c[:, :3]], dim=1)


class _PleO1(nn.Module):
    gate_banks = {"bank": ("g_task", "g_shared"), "g_alone": ("g_alone",)}

    def __init__(self):
        super().__init__()
        self.shared = rt.ExpertPool(IN, [6, 4], 2, norm="batch")
        self.task = rt.ExpertPool(IN, [6, 4], 1)
        self.bank = rt.GateBank(IN, 3, 2, masks=((2, 0), (0, 1, 2)))
        self.g_alone = rt.GateBank(IN, 3, 1, hidden=[5])
        self.tower = rt.MLP(4, [3])

    def forward(self, x):
        both = torch.cat([self.shared(x), self.task(x)], dim=1)
        a, b = self.bank(x, both).unbind(1)
        c = self.g_alone(x, both).squeeze(1)
        return torch.stack([self.tower(a), self.tower(b), c[:, :3]], dim=1)


def test_convert_o0_state_dict_gives_the_same_model():
    o0, o1 = _PleO0().double(), _PleO1().double()
    o0(torch.randn(B, IN, dtype=torch.float64))  # move batch-norm statistics off their defaults
    o0.eval(), o1.eval()
    o1.load_state_dict(rt.convert_o0_state_dict(o0.state_dict(), o1))
    x = _x(B, IN)
    torch.testing.assert_close(o1(x), o0(x))
    (g1,) = torch.autograd.grad(o1(x).sum(), x)
    (g0,) = torch.autograd.grad(o0(x).sum(), x)
    torch.testing.assert_close(g1, g0)


class _OptionsO0(nn.Module):
    """-O0: two gates with a BatchNorm/PReLU hidden MLP, a pool-form scale gate on the experts."""

    gate_options = {"hidden": [5], "norm": "batch", "activation": "prelu", "dropout": 0.2}

    def __init__(self):
        super().__init__()
        self.experts = rt.Experts(IN, [6, 4], 3, bias=False)
        self.g_a = _nondefault(rt.SoftmaxGate(IN, 3, **self.gate_options))
        self.g_b = _nondefault(rt.SoftmaxGate(IN, 3, **self.gate_options))
        self.scaler = _nondefault(rt.ScaleGate(IN, 4, [5], 2.0, norm="batch", num_experts=3))

    def forward(self, x):
        experts = self.scaler(x, self.experts(x))
        return torch.stack([rt.mix(self.g_a(x), experts), rt.mix(self.g_b(x), experts)], dim=1)


class _OptionsO1(nn.Module):
    gate_banks = {"bank": ("g_a", "g_b")}

    def __init__(self):
        super().__init__()
        self.experts = rt.ExpertPool(IN, [6, 4], 3, bias=False)
        self.bank = rt.GateBank(IN, 3, 2, **_OptionsO0.gate_options)
        self.scaler = rt.ScaleGate(IN, 4, [5], 2.0, norm="batch", num_experts=3)

    def forward(self, x):
        return self.bank(x, self.scaler(x, self.experts(x)))


def test_convert_o0_state_dict_maps_gate_options_and_passes_scale_gates_through():
    o0, o1 = _OptionsO0().double(), _OptionsO1().double()
    o0(torch.randn(B, IN, dtype=torch.float64))  # move batch-norm statistics off their defaults
    o0.eval(), o1.eval()
    state = rt.convert_o0_state_dict(o0.state_dict(), o1)
    for key, value in o0.state_dict().items():
        if key.startswith("scaler."):  # the same module at -O0 and -O1: unchanged
            assert torch.equal(state[key], value)
    o1.load_state_dict(state)
    x = _x(B, IN)
    torch.testing.assert_close(o1(x), o0(x))
    (g1,) = torch.autograd.grad(o1(x).sum(), x)
    (g0,) = torch.autograd.grad(o0(x).sum(), x)
    torch.testing.assert_close(g1, g0)


def test_convert_o0_state_dict_names_what_does_not_fit():
    state = _PleO0().state_dict()
    del state["g_shared.linear.bias"]
    with pytest.raises(KeyError, match="g_shared"):
        rt.convert_o0_state_dict(state, _PleO1())
    state = _PleO0().state_dict()
    state["stray.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="stray.weight"):
        rt.convert_o0_state_dict(state, _PleO1())


def test_importing_the_runtime_loads_no_optional_library():
    code = (
        "import sys; from mtlc import runtime; "
        "print(sorted({'triton', 'pyarrow', 'sklearn'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


# -- rt.CrossStitch ------------------------------------------------------------------------


def test_cross_stitch_starts_as_its_column_and_mixes_per_channel():
    from mtlc.runtime import CrossStitch

    torch.manual_seed(0)
    columns = [torch.randn(5, 4, dtype=torch.float64) for _ in range(3)]
    unit = CrossStitch(4, sources=3, column=1).double()
    torch.testing.assert_close(unit(*columns), columns[1])  # NextRec's identity start
    with torch.no_grad():
        unit.weight.normal_()
    expected = sum(unit.weight[s] * columns[s] for s in range(3))
    torch.testing.assert_close(unit(*columns), expected)
    scalar = CrossStitch(4, sources=3, weights="scalar").double()
    assert scalar.weight.shape == (3, 1)
    with torch.no_grad():
        scalar.weight.copy_(torch.tensor([[0.9], [0.1], [-0.2]]))
    expected = 0.9 * columns[0] + 0.1 * columns[1] - 0.2 * columns[2]
    torch.testing.assert_close(scalar(*columns), expected)
    inputs = [c.clone().requires_grad_(True) for c in columns]
    assert torch.autograd.gradcheck(lambda *xs: unit(*xs), inputs)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(sources=2, column=2), "column 2"),
        (dict(sources=2, weights="pair"), "channel or scalar"),
    ],
)
def test_cross_stitch_refuses_bad_arguments(kwargs, words):
    from mtlc.runtime import CrossStitch

    with pytest.raises(ValueError, match=words):
        CrossStitch(4, **kwargs)


# -- rt.Route (SNR-Trans) ------------------------------------------------------------------


def test_route_weighs_each_column_through_its_matrix():
    from mtlc.runtime import Route

    torch.manual_seed(0)
    pool = torch.randn(5, 2, 4, dtype=torch.float64)  # two columns of a pool
    vector = torch.randn(5, 4, dtype=torch.float64)  # and a third, a vector
    gate = Route(4, experts=3).double()
    with torch.no_grad():
        gate.logit.copy_(torch.tensor([3.0, -4.0, 0.2], dtype=torch.float64))
    z = (torch.sigmoid(gate.logit) * 1.2 - 0.1).clamp(0, 1)
    assert z[0] == 1 and z[1] == 0 and 0 < z[2] < 1  # the stretch saturates both ways
    columns = [pool[:, 0], pool[:, 1], vector]
    expected = sum(z[e] * columns[e] @ gate.transform[e] for e in range(3))
    torch.testing.assert_close(gate(pool, vector), expected)
    plain = Route(4, experts=3, transform=False).double()
    with torch.no_grad():
        plain.logit.copy_(gate.logit)
    torch.testing.assert_close(plain(pool, vector), sum(z[e] * columns[e] for e in range(3)))
    inputs = (pool.clone().requires_grad_(True), vector.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda p, v: gate(p, v), inputs)
    with pytest.raises(ValueError, match="expected 3 columns"):
        gate(pool)


def test_a_fresh_route_reads_every_column():
    """No gate starts clamped at 0, where the clamp would pass no gradient (NextRec's draw
    often starts a whole route dead)."""
    from mtlc.runtime import Route

    torch.manual_seed(0)
    for _ in range(50):
        z = Route(8, experts=4).gates()
        assert bool(((z > 0.2) & (z < 0.8)).all()), z
