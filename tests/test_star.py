"""``rt.Star``: STAR's star topology against the paper's equations, row by row.

The reference below is written from the paper (Sheng et al., CIKM 2021), not
from the runtime: a Python loop over rows composing each row's domain weights,
and partitioned normalisation with per-domain statistics found by masking.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from mtlc import runtime as rt

EPS, MOMENTUM = 1e-5, 0.1


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _act(name: str, h: torch.Tensor, slope: torch.Tensor | None) -> torch.Tensor:
    if name == "prelu":
        return torch.where(h >= 0, h, slope * h)
    return {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "gelu": nn.functional.gelu,
        "silu": nn.functional.silu,
        "none": lambda t: t,
    }[name](h)


def reference(state, x, domain, *, combine, norm, activation, training, num_domains):
    """The paper's STAR, row by row, from a state_dict; returns ``(out, running stats)``.

    ``running stats`` is ``(mean, var)`` after this batch (PN only): per domain
    with at least two rows in training, ``(1 - 0.1) * old + 0.1 * batch``
    (unbiased variance); other domains keep theirs.
    """
    x = x.clone()
    stats = None
    if norm == "partitioned":
        mean = state["norm.running_mean"].clone()
        var = state["norm.running_var"].clone()
        new_mean, new_var = mean.clone(), var.clone()
        mu, sigma2 = mean.clone(), var.clone()  # what each domain normalises with
        for p in range(num_domains):
            rows = x[domain == p]
            if training and rows.shape[0] > 1:
                mu[p] = rows.mean(0)
                sigma2[p] = ((rows - mu[p]) ** 2).mean(0)
                count = rows.shape[0]
                new_mean[p] = (1 - MOMENTUM) * mean[p] + MOMENTUM * mu[p]
                new_var[p] = (1 - MOMENTUM) * var[p] + MOMENTUM * sigma2[p] * count / (count - 1)
        stats = (new_mean, new_var)
        for r in range(x.shape[0]):
            p = int(domain[r])
            gamma = state["norm.weight"] * state["norm.domain_weight"][p]
            beta = state["norm.bias"] + state["norm.domain_bias"][p]
            x[r] = gamma * (x[r] - mu[p]) / torch.sqrt(sigma2[p] + EPS) + beta
    layers = sorted({int(k.split(".")[1]) for k in state if k.startswith("layers.")})
    out = []
    for r in range(x.shape[0]):
        p, h = int(domain[r]), x[r]
        for layer in layers:
            key = f"layers.{layer}."
            w, b = state[key + "weight"], state[key + "bias"]
            wp, bp = state[key + "domain_weight"][p], state[key + "domain_bias"][p]
            composed = w * wp if combine == "mul" else w + wp
            slope = state.get(key + "activation.weight")
            h = _act(activation, composed @ h + b + bp, slope)
        out.append(h)
    return torch.stack(out), stats


def _randomise(star: rt.Star) -> None:
    """Random parameters and running statistics, so that no init hides a mistake."""
    with torch.no_grad():
        for name, param in star.named_parameters():
            if name.endswith("activation.weight"):
                param.uniform_(0.05, 0.5)
            else:
                param.normal_(0.0, 0.7)
        if star.norm is not None:
            star.norm.running_mean.normal_()
            star.norm.running_var.uniform_(0.5, 2.0)


def _args(star: rt.Star, combine: str, norm: str, activation: str) -> dict:
    return dict(
        combine=combine,
        norm=norm,
        activation=activation,
        training=star.training,
        num_domains=star.num_domains,
    )


@pytest.mark.parametrize("combine", ["mul", "add"])
@pytest.mark.parametrize("norm", ["none", "partitioned"])
@pytest.mark.parametrize("activation", ["relu", "prelu", "tanh"])
def test_matches_the_paper_in_training_with_running_statistics(combine, norm, activation):
    P = 3
    star = rt.Star(5, [7, 6, 4], P, combine=combine, norm=norm, activation=activation).double()
    _randomise(star)
    star.train()
    for _ in range(4):
        x = torch.randn(13, 5, dtype=torch.float64) * 2 + 1
        domain = torch.randint(0, P, (13,))
        domain[:6] = torch.tensor([0, 0, 1, 1, 2, 2])  # every domain at least twice
        state = {k: v.clone() for k, v in star.state_dict().items()}
        expected, stats = reference(state, x, domain, **_args(star, combine, norm, activation))
        torch.testing.assert_close(star(x, domain), expected, rtol=1e-10, atol=1e-10)
        if stats is not None:
            torch.testing.assert_close(star.norm.running_mean, stats[0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(star.norm.running_var, stats[1], rtol=1e-12, atol=1e-12)
    if norm == "partitioned":
        assert star.norm.num_batches_tracked.tolist() == [4, 4, 4]


@pytest.mark.parametrize("combine", ["mul", "add"])
@pytest.mark.parametrize("norm", ["none", "partitioned"])
@pytest.mark.parametrize("activation", ["relu", "prelu", "sigmoid"])
def test_matches_the_paper_in_eval(combine, norm, activation):
    P = 4
    star = rt.Star(6, [8, 3], P, combine=combine, norm=norm, activation=activation).double()
    _randomise(star)
    star.eval()
    x = torch.randn(11, 6, dtype=torch.float64)
    domain = torch.tensor([3, 0, 1, 3, 2, 2, 0, 3, 1, 0, 3])
    before = {k: v.clone() for k, v in star.state_dict().items()}
    expected, _ = reference(before, x, domain, **_args(star, combine, norm, activation))
    torch.testing.assert_close(star(x, domain), expected, rtol=1e-10, atol=1e-10)
    for key, value in star.state_dict().items():
        assert torch.equal(value, before[key]), key  # eval moves no statistic


def test_partitioned_statistics_are_per_domain():
    """Shifting one domain's rows changes nothing in another domain's output (train and eval)."""
    star = rt.Star(4, [5], 2, norm="partitioned").double()
    _randomise(star)
    x = torch.randn(8, 4, dtype=torch.float64)
    domain = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    shifted = x.clone()
    shifted[domain == 1] += 10.0
    for training in (True, False):
        star.train(training)
        first, second = star(x, domain), star(shifted, domain)
        torch.testing.assert_close(first[domain == 0], second[domain == 0])


def test_a_missing_domain_and_a_one_row_domain_keep_their_statistics():
    P = 4
    star = rt.Star(3, [4, 2], P, norm="partitioned").double()
    _randomise(star)
    star.train()
    x = torch.randn(7, 3, dtype=torch.float64)
    domain = torch.tensor([0, 2, 0, 3, 2, 0, 2])  # no row of 1, one row of 3
    state = {k: v.clone() for k, v in star.state_dict().items()}
    expected, stats = reference(state, x, domain, **_args(star, "mul", "partitioned", "relu"))
    out = star(x, domain)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    for p in (1, 3):
        assert torch.equal(star.norm.running_mean[p], state["norm.running_mean"][p])
        assert torch.equal(star.norm.running_var[p], state["norm.running_var"][p])
    assert not torch.equal(star.norm.running_mean[0], state["norm.running_mean"][0])
    assert star.norm.num_batches_tracked.tolist() == [1, 0, 1, 0]
    # the one-row domain, in training, is normalised as in eval
    star.eval()
    torch.testing.assert_close(star(x[3:4], domain[3:4]), out[3:4], rtol=1e-12, atol=1e-12)
    # the missing domain gets zero gradients
    star.train()
    star(x, domain).sum().backward()
    for layer in star.layers:
        assert not layer.domain_weight.grad[1].any() and not layer.domain_bias.grad[1].any()
        assert layer.domain_weight.grad[3].any()
    assert not star.norm.domain_weight.grad[1].any()


def test_a_batch_of_one_domain_and_an_empty_batch():
    star = rt.Star(3, [4], 3, norm="partitioned").double()
    _randomise(star)
    x = torch.randn(5, 3, dtype=torch.float64)
    domain = torch.full((5,), 2)
    expected, _ = reference(
        {k: v.clone() for k, v in star.state_dict().items()},
        x,
        domain,
        **_args(star, "mul", "partitioned", "relu"),
    )
    torch.testing.assert_close(star(x, domain), expected, rtol=1e-10, atol=1e-10)
    empty = star(x[:0], domain[:0])
    assert empty.shape == (0, 4)


@pytest.mark.parametrize("combine", ["mul", "add"])
def test_a_fresh_star_is_the_shared_network_for_every_domain(combine):
    torch.manual_seed(3)
    star = rt.Star(6, [5, 4], 3, combine=combine, norm="partitioned")
    torch.manual_seed(3)
    linears = [nn.Linear(6, 5), nn.Linear(5, 4)]  # the same draws as nn.Linear's default init
    for layer, linear in zip(star.layers, linears):
        assert torch.equal(layer.weight, linear.weight) and torch.equal(layer.bias, linear.bias)
    star.eval()  # running statistics 0 and 1: PN is x / sqrt(1 + eps)
    x = torch.randn(9, 6)
    shared = x / (1 + EPS) ** 0.5
    for linear in linears:
        shared = torch.relu(linear(shared))
    for p in range(3):
        torch.testing.assert_close(star(x, torch.full((9,), p)), shared)


def test_parameter_layout():
    star = rt.Star(6, [5, 4], 3, norm="partitioned", activation="prelu")
    shapes = {k: tuple(v.shape) for k, v in star.state_dict().items()}
    assert shapes == {
        "norm.weight": (6,),
        "norm.bias": (6,),
        "norm.domain_weight": (3, 6),
        "norm.domain_bias": (3, 6),
        "norm.running_mean": (3, 6),
        "norm.running_var": (3, 6),
        "norm.num_batches_tracked": (3,),
        "layers.0.weight": (5, 6),
        "layers.0.bias": (5,),
        "layers.0.domain_weight": (3, 5, 6),
        "layers.0.domain_bias": (3, 5),
        "layers.0.activation.weight": (1,),
        "layers.1.weight": (4, 5),
        "layers.1.bias": (4,),
        "layers.1.domain_weight": (3, 4, 5),
        "layers.1.domain_bias": (3, 4),
        "layers.1.activation.weight": (1,),
    }
    assert not any(k.startswith("norm") for k in rt.Star(6, [5], 3).state_dict())
    assert "Star" in rt.__all__


def test_dropout_follows_the_activation_and_only_in_training():
    star = rt.Star(4, [64], 2, dropout=0.5).double()
    _randomise(star)
    x = torch.randn(10, 4, dtype=torch.float64)
    domain = torch.tensor([0, 1] * 5)
    star.eval()
    clean = star(x, domain)
    expected, _ = reference(star.state_dict(), x, domain, **_args(star, "mul", "none", "relu"))
    torch.testing.assert_close(clean, expected)
    star.train()
    noisy = star(x, domain)
    kept = noisy != 0
    assert 0 < kept.sum() < (clean != 0).sum()
    torch.testing.assert_close(noisy[kept], 2 * clean[kept])


@pytest.mark.parametrize("combine", ["mul", "add"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "prelu"])
def test_gradients(combine, training, activation):
    star = rt.Star(3, [4, 2], 3, combine=combine, norm="partitioned", activation=activation)
    star = star.double().train(training)
    _randomise(star)
    names = [name for name, _ in star.named_parameters()]
    buffers = {k: v.clone() for k, v in star.named_buffers()}
    domain = torch.tensor([2, 0, 1, 0, 2, 1, 0])  # fixed; every domain at least twice
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in star.parameters()]

    def f(x, *params):
        state = {**dict(zip(names, params)), **{k: v.clone() for k, v in buffers.items()}}
        return functional_call(star, state, (x, domain))

    assert torch.autograd.gradcheck(f, (x, *params))


def test_int32_ids_and_ids_out_of_range():
    star = rt.Star(3, [2], 3)
    x = torch.randn(4, 3)
    ids = torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(star(x, ids.int()), star(x, ids))
    for bad in ([0, 3, 1, 2], [0, -1, 1, 2]):
        with pytest.raises(ValueError, match=r"domain ids must be in \[0, 3\)"):
            star(x, torch.tensor(bad))
    with pytest.raises(ValueError, match="integers"):
        star(x, ids.float())
    with pytest.raises(ValueError, match="one domain id per row"):
        star(x, ids[:3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(combine="max"), "unknown Star combine 'max'"),
        (dict(norm="batch"), "unknown Star norm 'batch'"),
        (dict(activation="swish"), "unknown Star activation 'swish'"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(dropout=-0.1), r"dropout must be in \[0, 1\)"),
        (dict(dims=[]), "at least one layer"),
        (dict(dims=[4, 0]), "dims must be positive integers"),
        (dict(dims=[4.0]), "dims must be positive integers"),
        (dict(num_domains=0), "num_domains must be positive integers"),
        (dict(in_dim=0), "in_dim must be positive integers"),
        (dict(num_experts=0), "num_experts must be a positive integer"),
        (dict(num_experts=True), "num_experts must be a positive integer"),
    ],
)
def test_argument_errors(kwargs, message):
    args = dict(in_dim=3, dims=[4], num_domains=2) | kwargs
    with pytest.raises(ValueError, match=message):
        rt.Star(**args)


# --- the pool form: num_experts=E, E Stars batched -------------------------------------


def _stars_and_pool(E, in_dim, dims, P, **options):
    """E randomised plain Stars (float64) and a pool loaded from them."""
    stars = [rt.Star(in_dim, dims, P, **options).double() for _ in range(E)]
    for star in stars:
        _randomise(star)
    pool = rt.Star(in_dim, dims, P, num_experts=E, **options).double()
    pool.load_from_stars(stars)
    return stars, pool


def _stacked_grads(stars, pool):
    """Each pool parameter's gradient next to the separate Stars' stacked in its layout."""
    for name, param in pool.named_parameters():
        parts = [dict(star.named_parameters())[name].grad for star in stars]
        yield name, param.grad, torch.stack(parts).view_as(param)


@pytest.mark.parametrize("combine", ["mul", "add"])
@pytest.mark.parametrize("norm", ["none", "partitioned"])
@pytest.mark.parametrize("activation", ["relu", "prelu", "tanh"])
@pytest.mark.parametrize("training", [True, False])
def test_pool_equals_separate_stars_outputs_gradients_and_statistics(
    combine, norm, activation, training
):
    E, P = 3, 4
    options = dict(combine=combine, norm=norm, activation=activation)
    stars, pool = _stars_and_pool(E, 5, [7, 6, 4], P, **options)
    for module in [*stars, pool]:
        module.train(training)
    for step in range(3):  # the statistics evolve alike, batch after batch
        x = (torch.randn(13, 5, dtype=torch.float64) * 2 + 1).requires_grad_()
        domain = torch.tensor([0, 2, 3, 0, 2, 2, 0, 3, 3, 0, 2, 0, 3])  # no row of domain 1
        if step == 2:
            domain[7:9] = torch.tensor([1, 2])  # now one row of domain 1 (PN: as in eval)
        weights = torch.randn(E, 4, dtype=torch.float64)
        for module in [*stars, pool]:
            module.zero_grad()
        expected = torch.stack([star(x, domain) for star in stars], dim=1)
        (expected * weights).sum().backward()
        expected_dx, x.grad = x.grad, None
        got = pool(x, domain)
        assert got.shape == (13, E, 4)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        (got * weights).sum().backward()
        torch.testing.assert_close(x.grad, expected_dx, rtol=1e-12, atol=1e-12)
        for name, grad, reference_grad in _stacked_grads(stars, pool):
            torch.testing.assert_close(grad, reference_grad, rtol=1e-12, atol=1e-12, msg=name)
        if step < 2:  # the missing domain gets zero gradients in every expert
            for layer in pool.layers:
                assert not layer.domain_weight.grad[:, 1].any()
                assert layer.domain_weight.grad[:, 3].any()
        if norm == "partitioned":
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                expected_stat = torch.stack([getattr(star.norm, key) for star in stars])
                assert torch.equal(getattr(pool.norm, key), expected_stat), key
    if norm == "partitioned":
        counts = [3, 0, 3, 3] if training else [0, 0, 0, 0]  # one row: no batch statistics
        assert pool.norm.num_batches_tracked.tolist() == [counts] * E


def test_pool_of_one_layer_an_empty_batch_and_one_domain():
    stars, pool = _stars_and_pool(2, 3, [4], 3, norm="partitioned", activation="prelu")
    x = torch.randn(6, 3, dtype=torch.float64)
    for domain in (torch.full((6,), 1), torch.tensor([2, 0, 1, 2, 0, 1])):
        expected = torch.stack([star(x, domain) for star in stars], dim=1)
        torch.testing.assert_close(pool(x, domain), expected, rtol=1e-12, atol=1e-12)
    assert pool(x[:0], domain[:0]).shape == (0, 2, 4)
    out = pool(x, domain)
    assert all(part.is_contiguous() for part in out.unbind(1))


def test_pool_dropout_is_off_in_eval_and_drops_in_training():
    stars, pool = _stars_and_pool(2, 4, [64], 2, dropout=0.5)
    x, domain = torch.randn(10, 4, dtype=torch.float64), torch.tensor([0, 1] * 5)
    pool.eval()
    clean = pool(x, domain)
    expected = torch.stack([star.eval()(x, domain) for star in stars], dim=1)
    torch.testing.assert_close(clean, expected, rtol=1e-12, atol=1e-12)
    pool.train()
    noisy = pool(x, domain)
    kept = noisy != 0
    assert 0 < kept.sum() < (clean != 0).sum()
    torch.testing.assert_close(noisy[kept], 2 * clean[kept])


@pytest.mark.parametrize("training", [True, False])
def test_pool_gradcheck(training):
    _, pool = _stars_and_pool(
        2, 3, [4, 2], 3, combine="add", norm="partitioned", activation="prelu"
    )
    pool.train(training)
    names = [name for name, _ in pool.named_parameters()]
    buffers = {k: v.clone() for k, v in pool.named_buffers()}
    domain = torch.tensor([2, 0, 1, 0, 2, 1, 0])
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in pool.parameters()]

    def f(x, *params):
        state = {**dict(zip(names, params)), **{k: v.clone() for k, v in buffers.items()}}
        return functional_call(pool, state, (x, domain))

    assert torch.autograd.gradcheck(f, (x, *params))


def test_load_from_stars_copies_every_entry_exactly():
    stars = [rt.Star(4, [5, 3], 3, norm="partitioned", activation="prelu") for _ in range(3)]
    for star in stars:
        _randomise(star)
        star(torch.randn(9, 4), torch.tensor([0, 1, 2] * 3))  # move the batch counts
    pool = rt.Star(4, [5, 3], 3, norm="partitioned", activation="prelu", num_experts=3)
    pool.load_from_stars(stars)
    state = pool.state_dict()
    assert set(state) == set(stars[0].state_dict())
    for e, star in enumerate(stars):
        for key, value in star.state_dict().items():
            assert torch.equal(state[key][e].reshape(value.shape), value), key
    assert pool.norm.num_batches_tracked.tolist() == [[1, 1, 1]] * 3


def test_load_from_stars_refuses_what_does_not_fit():
    pool = rt.Star(4, [5], 3, num_experts=2)
    with pytest.raises(ValueError, match="needs as many Stars, got 1"):
        pool.load_from_stars([rt.Star(4, [5], 3)])
    with pytest.raises(ValueError, match="does not fit a pool"):
        pool.load_from_stars([rt.Star(4, [5], 3), rt.Star(4, [5], 3, combine="add")])
    with pytest.raises(ValueError, match="plain Stars"):
        pool.load_from_stars([rt.Star(4, [5], 3), rt.Star(4, [5], 3, num_experts=1)])
    with pytest.raises(ValueError, match="needs a pool"):
        rt.Star(4, [5], 3).load_from_stars([rt.Star(4, [5], 3)])


def test_a_seeded_pool_draws_the_weights_of_stars_built_in_order():
    torch.manual_seed(7)
    pool = rt.Star(6, [5, 4], 3, activation="prelu", num_experts=3)
    torch.manual_seed(7)
    stars = [rt.Star(6, [5, 4], 3, activation="prelu") for _ in range(3)]
    for key, value in pool.state_dict().items():
        expected = torch.stack([star.state_dict()[key] for star in stars]).view_as(value)
        assert torch.equal(value, expected), key


def test_pool_parameter_layout():
    pool = rt.Star(6, [5, 4], 3, norm="partitioned", activation="prelu", num_experts=2)
    shapes = {k: tuple(v.shape) for k, v in pool.state_dict().items()}
    assert shapes == {
        "norm.weight": (2, 6),
        "norm.bias": (2, 6),
        "norm.domain_weight": (2, 3, 6),
        "norm.domain_bias": (2, 3, 6),
        "norm.running_mean": (2, 3, 6),
        "norm.running_var": (2, 3, 6),
        "norm.num_batches_tracked": (2, 3),
        "layers.0.weight": (2, 5, 6),
        "layers.0.bias": (2, 5),
        "layers.0.domain_weight": (2, 3, 5, 6),
        "layers.0.domain_bias": (2, 3, 5),
        "layers.0.activation.weight": (2,),
        "layers.1.weight": (2, 4, 5),
        "layers.1.bias": (2, 4),
        "layers.1.domain_weight": (2, 3, 4, 5),
        "layers.1.domain_bias": (2, 3, 4),
        "layers.1.activation.weight": (2,),
    }


# --- convert_o0_state_dict with a pool of star towers ---------------------------------


class _StarsO0(nn.Module):
    """A hand-written -O0 model: two star towers of one input and shape, and a third apart."""

    def __init__(self):
        super().__init__()
        options = dict(norm="partitioned", activation="prelu")
        self.ctr_net = rt.Star(5, [6, 4], 3, **options)
        self.cvr_net = rt.Star(5, [6, 4], 3, **options)
        self.other = rt.Star(5, [3], 3)

    def forward(self, x, domain):
        return torch.cat(
            [self.ctr_net(x, domain), self.cvr_net(x, domain), self.other(x, domain)], dim=1
        )


class _StarsO1(nn.Module):
    expert_pools = {"stars": ("ctr_net", "cvr_net")}

    def __init__(self):
        super().__init__()
        self.stars = rt.Star(5, [6, 4], 3, norm="partitioned", activation="prelu", num_experts=2)
        self.other = rt.Star(5, [3], 3)

    def forward(self, x, domain):
        ctr_net, cvr_net = self.stars(x, domain).unbind(1)
        return torch.cat([ctr_net, cvr_net, self.other(x, domain)], dim=1)


def test_convert_o0_state_dict_maps_star_towers_onto_their_pool():
    o0, o1 = _StarsO0().double(), _StarsO1().double()
    for star in (o0.ctr_net, o0.cvr_net, o0.other):
        _randomise(star)
    domain = torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
    o0(torch.randn(8, 5, dtype=torch.float64), domain)  # statistics and counts off the defaults
    state = rt.convert_o0_state_dict(o0.state_dict(), o1)
    for key, value in o0.state_dict().items():
        if key.startswith("other."):  # not listed: passes through unchanged
            assert torch.equal(state[key], value)
    o1.load_state_dict(state)
    for training in (False, True):
        o0.train(training), o1.train(training)
        x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
        out0, out1 = o0(x, domain), o1(x, domain)
        torch.testing.assert_close(out1, out0, rtol=1e-12, atol=1e-12)
        (g1,) = torch.autograd.grad(out1.sum(), x)
        (g0,) = torch.autograd.grad(out0.sum(), x)
        torch.testing.assert_close(g1, g0, rtol=1e-12, atol=1e-12)
    converted = rt.convert_o0_state_dict(o0.state_dict(), o1)  # after a training batch each
    for key, value in o1.state_dict().items():
        assert torch.equal(converted[key], value), key


def test_convert_o0_state_dict_names_the_star_that_does_not_fit():
    state = _StarsO0().state_dict()
    del state["cvr_net.layers.1.domain_bias"]
    with pytest.raises(KeyError, match="cvr_net"):
        rt.convert_o0_state_dict(state, _StarsO1())

    class Three(_StarsO1):
        expert_pools = {"stars": ("ctr_net", "cvr_net", "other")}

    with pytest.raises(KeyError, match="a pool of 2 Stars is listed with 3"):
        rt.convert_o0_state_dict(_StarsO0().state_dict(), Three())
