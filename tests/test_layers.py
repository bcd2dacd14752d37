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


def _o0_o1_pair(dims, num_experts, **options):
    o0 = rt.Experts(IN, dims, num_experts, **options).double()
    o1 = rt.ExpertPool(IN, dims, num_experts, **options).double()
    for module in o0.modules():  # non-default affine and slope values, so the mapping is tested
        if isinstance(module, (nn.BatchNorm1d, nn.LayerNorm, nn.PReLU)):
            nn.init.uniform_(module.weight, 0.5, 1.5)
        if isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
            nn.init.uniform_(module.bias, -0.5, 0.5)
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
