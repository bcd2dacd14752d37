"""The optimizers: the fused default is Adam's math.

Lazy Adam touches only the rows a batch uses.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mtlc.runtime.optim import LazyAdam, clip_grad_norm_, make_optimizer


class Tiny(nn.Module):
    """Two embedding tables, a dense input and an MLP: the shape of a generated model, small."""

    def __init__(self) -> None:
        super().__init__()
        self.user = nn.Embedding(50, 4)
        self.item = nn.Embedding(30, 4)
        self.mlp = nn.Sequential(nn.Linear(9, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, user: torch.Tensor, item: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.user(user), self.item(item), dense.unsqueeze(-1)], dim=-1)
        return self.mlp(x).squeeze(-1)


def _batch(
    generator: torch.Generator,
    users: torch.Tensor | None = None,
    items: torch.Tensor | None = None,
    size: int = 16,
):
    users = users if users is not None else torch.randint(0, 50, (size,), generator=generator)
    items = items if items is not None else torch.randint(0, 30, (len(users),), generator=generator)
    dense = torch.randn(len(users), generator=generator, dtype=torch.float64)
    target = torch.rand(len(users), generator=generator, dtype=torch.float64)
    return users, items, dense, target


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, batches) -> None:
    for users, items, dense, target in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.binary_cross_entropy_with_logits(model(users, items, dense), target)
        loss.backward()
        optimizer.step()


def _pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    model = Tiny().double()
    return model, copy.deepcopy(model)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_default_is_adam_step_for_step(weight_decay):
    ours, reference = _pair()
    optimizer = make_optimizer(ours, lr=0.01, weight_decay=weight_decay)
    plain = torch.optim.Adam(
        reference.parameters(), lr=0.01, weight_decay=weight_decay, foreach=False
    )
    assert optimizer.defaults["fused"] or optimizer.defaults["foreach"]
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        batch = _batch(generator)
        _train(ours, optimizer, [batch])
        _train(reference, plain, [batch])
        for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_extra_params_get_no_weight_decay():
    model = Tiny()
    log_vars = nn.Parameter(torch.zeros(2))
    optimizer = make_optimizer(model, weight_decay=0.1, extra_params=[log_vars])
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert optimizer.param_groups[1]["params"] == [log_vars]


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer(Tiny(), name="sgd")


def test_lazy_adam_switches_tables_to_sparse_grads():
    model = Tiny()
    optimizer = make_optimizer(model, name="lazy_adam")
    assert isinstance(optimizer, LazyAdam)
    assert model.user.sparse and model.item.sparse


def test_lazy_adam_updates_only_touched_rows():
    model, _ = _pair()
    before = model.user.weight.detach().clone()
    optimizer = make_optimizer(model, name="lazy_adam", lr=0.05)
    generator = torch.Generator().manual_seed(2)
    users = torch.tensor([3, 7, 7, 11])
    _train(model, optimizer, [_batch(generator, users) for _ in range(3)])
    after = model.user.weight.detach()
    touched = torch.zeros(50, dtype=torch.bool)
    touched[users] = True
    assert torch.equal(after[~touched], before[~touched])
    assert (after[touched] != before[touched]).all(dim=1).all()
    moments = optimizer.state[model.user.weight]
    assert not moments["exp_avg"][~touched].any() and not moments["exp_avg_sq"][~touched].any()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lazy_adam_equals_adam_when_the_same_rows_are_touched(weight_decay):
    """Dense parameters follow Adam exactly; table rows touched every step do too.

    Other rows never move.
    """
    lazy, dense = _pair()
    lazy_opt = make_optimizer(lazy, name="lazy_adam", lr=0.01, weight_decay=weight_decay)
    adam = torch.optim.Adam(dense.parameters(), lr=0.01, weight_decay=weight_decay, foreach=False)
    generator = torch.Generator().manual_seed(3)
    users, items = torch.tensor([0, 4, 4, 9, 20]), torch.tensor([1, 1, 2, 3, 29])
    for _ in range(4):
        batch = _batch(generator, users, items)
        _train(lazy, lazy_opt, [batch])
        _train(dense, adam, [batch])
    for name in ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"):
        torch.testing.assert_close(
            lazy.get_parameter(name), dense.get_parameter(name), rtol=1e-12, atol=1e-12
        )
    for table, rows in (("user.weight", users), ("item.weight", items)):
        ours, reference = lazy.get_parameter(table), dense.get_parameter(table)
        torch.testing.assert_close(ours[rows], reference[rows], rtol=1e-12, atol=1e-12)


def test_lazy_adam_state_round_trips():
    model, _ = _pair()
    optimizer = make_optimizer(model, name="lazy_adam")
    generator = torch.Generator().manual_seed(4)
    _train(model, optimizer, [_batch(generator)])
    resumed = make_optimizer(copy.deepcopy(model), name="lazy_adam")
    resumed.load_state_dict(optimizer.state_dict())
    state = resumed.state_dict()["state"]
    assert float(state[0]["step"]) == 1.0
    torch.testing.assert_close(state[0]["exp_avg"], optimizer.state[model.user.weight]["exp_avg"])


def test_clip_grad_norm_counts_duplicate_rows_once():
    """The clipped sparse gradient equals the clipped dense one."""
    sparse, dense = _pair()
    make_optimizer(sparse, name="lazy_adam")
    generator = torch.Generator().manual_seed(5)
    users, items, values, target = _batch(generator, torch.tensor([1, 1, 2, 5]))
    for model in (sparse, dense):
        loss = nn.functional.binary_cross_entropy_with_logits(model(users, items, values), target)
        loss.backward()
    norm_sparse = clip_grad_norm_(sparse.parameters(), 0.01)
    norm_dense = clip_grad_norm_(dense.parameters(), 0.01)
    torch.testing.assert_close(norm_sparse, norm_dense)
    torch.testing.assert_close(sparse.user.weight.grad.to_dense(), dense.user.weight.grad)
    assert float(norm_dense) > 0.01


def test_keep_freed_memory_reuses_freed_blocks(monkeypatch):
    """After it, a freed 64 MB block is reused: allocating it again faults (almost) no pages in."""
    resource = pytest.importorskip("resource")
    from mtlc.runtime.optim import keep_freed_memory

    monkeypatch.setenv("MTLC_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MTLC_KEEP_FREED_MEMORY")
    if not keep_freed_memory():
        pytest.skip("not glibc: mallopt is unavailable")
    for _ in range(2):
        torch.ones(1 << 24).sum()  # 64 MB, touched, freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(1 << 24).sum()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 1000  # 64 MB is 16,384 pages of 4 KB
