"""NextRec 0.6.14's SNRTrans -> mtlc: same predictions and gradients.

Configurations: 2 and 3 tasks, a regression task, 1 to 3 expert layers of 2
to 4 experts, relu, tanh and prelu, batch norm, dropout, towers with and
without hidden layers, a dense vector projected linearly (folded into the first
experts); random weights (``u`` inside (0, 1) and ``alpha > 0``: elsewhere
NextRec's own gate is NaN) and inputs, at ``-O0`` and ``-O1``: predictions to
1e-5 in eval mode; the gradients of the tables, dense inputs and heads, of
every transformation matrix (one to one), and of NextRec's ``u`` and ``alpha``
through mtlc's logits (``w = logit(u) + log(alpha) / 0.9``, so
``dL/du = dL/dw (1/u + 1/(1 - u))`` and ``dL/dalpha = sum dL/dw / (0.9 alpha)``),
all to 1e-4 relative.
"""

from __future__ import annotations

import pytest
import torch

from tests.parity.peers import NEXTREC_MISSING, close_grad, small_nextrec_features

pytest.importorskip("nextrec.models.multitask.snr_trans", reason=NEXTREC_MISSING)

from nextrec.basic.features import DenseFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.snr_trans import SNRTrans  # noqa: E402

from mtlc.runtime.interop import nextrec as nx  # noqa: E402
from tests.parity.peers import (  # noqa: E402
    Pairing,
    converted_and_compared,
    module,
    nextrec_pairing,
)

CONFIGS = {
    "two_layers_three_experts": lambda: SNRTrans(
        **small_nextrec_features(),
        expert_mlp_params={"hidden_dims": [8, 6]},
        num_experts=3,
        tower_mlp_params_list=[{"hidden_dims": [4]}, {}],
        target=["click", "buy"],
    ),
    "one_layer_three_tasks_tanh": lambda: SNRTrans(
        **small_nextrec_features(),
        expert_mlp_params={"hidden_dims": [7], "activation": "tanh", "dropout": 0.3},
        num_experts=2,
        target=["click", "buy", "pay"],
    ),
    "three_layers_norm_projected_regression": lambda: SNRTrans(
        sparse_features=[SparseFeature("user_id", 30, embedding_dim=5)],
        dense_features=[DenseFeature("price"), DenseFeature("vec", input_dim=3, proj_dim=4)],
        expert_mlp_params={
            "hidden_dims": [9, 7, 5],
            "norm_type": "batch_norm",
            "activation": "prelu",
        },
        num_experts=4,
        tower_mlp_params_list=[{"hidden_dims": [3]}, {"hidden_dims": [3], "activation": "tanh"}],
        target=["click", "dwell"],
        task=["binary", "regression"],
    ),
}


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights, with ``u`` inside (0, 1) and ``alpha`` above 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".u"):
                param.copy_(torch.rand(param.shape, generator=g) * 0.98 + 0.01)
            elif name.endswith(".alpha"):
                param.copy_(torch.rand(param.shape, generator=g) * 0.9 + 0.1)
            else:
                param.copy_(torch.randn(param.shape, generator=g) * 0.5)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=g) * 0.2)
    return model.eval()


def pairing(peer, ours) -> Pairing:
    heads = [(t, tower.mlp[-1]) for t, tower in zip(peer.target_columns, peer.towers)]
    return nextrec_pairing(peer, ours, heads)


def routes(peer, level: int) -> list[str]:
    """The spec's gates of gate layer ``level`` (1-based), as ``spec_from`` names them."""
    gate = peer.gates[level - 1]
    if level == len(peer.gates):
        return [f"to_{t}" for t in peer.target_columns]
    return [f"route{level}_{chr(ord('a') + o)}" for o in range(gate.num_outputs)]


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_nextrec(config, opt_level, tmp_path):
    peer = randomized(CONFIGS[config](), seed=len(config))
    ours = converted_and_compared(peer, tmp_path, opt_level, pairing)
    for level, gate in enumerate(peer.gates, start=1):
        mine = [module(ours, name) for name in routes(peer, level)]
        logit_grad = torch.stack([m.logit.grad for m in mine])  # [N, E]
        for o, m in enumerate(mine):
            close_grad(m.transform.grad, gate.trans_matrix.grad[o], f"gates.{level - 1} T[{o}]")
        u = gate.u.detach()
        close_grad(logit_grad * (1 / u + 1 / (1 - u)), gate.u.grad, f"gates.{level - 1}.u")
        alpha = gate.alpha.detach()
        via_logits = logit_grad.sum().reshape(1) / (gate.beta * alpha)
        close_grad(via_logits, gate.alpha.grad, f"gates.{level - 1}.alpha")


def test_the_spec_routes_every_column_to_every_route():
    spec = nx.spec_from(CONFIGS["two_layers_three_experts"]())
    assert "expert first x3 = mlp(all, [8])" in spec
    assert "gate route1_b = snr() over [first]" in spec
    assert "tower expert2_c = mlp(route1_c, [6])" in spec
    assert "gate to_buy = snr() over [expert2_a, expert2_b, expert2_c]" in spec
    assert "task buy : binary(label=buy) = to_buy" in spec  # NextRec's default tower: a Linear


def test_a_gate_nextrec_cannot_compute_is_refused():
    peer = CONFIGS["one_layer_three_tasks_tanh"]()
    with torch.no_grad():
        peer.gates[0].alpha.fill_(-0.5)
    with pytest.raises(nx.ConversionError, match="alpha <= 0"):
        nx.spec_from(peer)
