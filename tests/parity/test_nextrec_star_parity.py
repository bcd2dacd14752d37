"""NextRec 0.4.28's preview STAR -> mtlc: same predictions and gradients.

NextRec 0.4.28 cannot be imported beside 0.6.14 (one package name), so
``make test`` installs it apart, in ``.venv/nextrec-0.4.28``, and this test
runs the comparison in a subprocess with that folder first on ``PYTHONPATH``
(``python -m tests.parity.test_nextrec_star_parity``), which prints one JSON
line that the tests below read. STAR's file, ``[pre]star.py``, is loaded with
``importlib.util.spec_from_file_location``.

Each configuration (2 and 3 tasks, a regression task, sequences sharing a
table, dense features with and without a projection, 1-3 layers, relu and
prelu, dropout, ``use_shared`` True and False, NextRec's dead batch norm and
ignored layer norm) gets noise on every parameter and is converted by
``mtlc.runtime.interop.nextrec_star``, compiled at ``-O0`` and ``-O1``, and
compared on a random batch (sparse ids 0, an all-padding sequence row) in
eval mode: predictions to 1e-5, and the gradients of a summed loss to 1e-4
relative w.r.t. the embedding tables (rows >= 1: NextRec's padding row gets
none), the dense inputs, each task's folded layers and head (equal to the
task-specific Linear's gradient) and, summed over the tasks, the shared
Linears and PReLU slopes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.parity.peers import NEXTREC_428, NEXTREC_428_MISSING, under_nextrec_428

ROOT = Path(__file__).resolve().parents[2]
MARK = "STAR-PARITY "  # the result line among whatever NextRec prints
OPT_LEVELS = (0, 1)

pytestmark = pytest.mark.skipif(not (NEXTREC_428 / "nextrec").is_dir(), reason=NEXTREC_428_MISSING)


def _features(F, *, wide: bool) -> dict:
    """Ids, a history sharing item_id's table, a dense value; ``wide`` adds a sum-pooled
    sequence, a table shared under another name and a dense vector projected to 4."""
    sparse = [
        F.SparseFeature("user_id", 30, embedding_dim=4),
        F.SparseFeature("item_id", 20, embedding_dim=4),
    ]
    sequence = [F.SequenceFeature("hist", 20, max_len=6, embedding_dim=4, embedding_name="item_id")]
    dense = [F.DenseFeature("age")]
    if wide:
        sparse.append(F.SparseFeature("shop", 12, embedding_dim=3, embedding_name="shops"))
        sequence += [
            F.SequenceFeature("tags", 15, max_len=4, embedding_dim=5, combiner="sum"),
            F.SequenceFeature("shops_seen", 12, max_len=5, embedding_dim=3, embedding_name="shops"),
        ]
        dense.append(F.DenseFeature("vec", input_dim=3, proj_dim=4))
    return dict(sparse_features=sparse, sequence_features=sequence, dense_features=dense)


def _mlp(dims, **options) -> dict:
    return {"hidden_dims": dims, **options}


# name -> (NextRec's features module -> STAR's keyword arguments)
CONFIGS = {
    "two_tasks_one_layer": lambda F: dict(
        **_features(F, wide=False), mlp_params=_mlp([8]), target=["click", "buy"]
    ),
    "three_tasks_prelu_dropout": lambda F: dict(
        **_features(F, wide=True),
        mlp_params=_mlp([8, 6, 4], activation="prelu", dropout=0.2),
        target=["click", "dwell", "buy"],
        task=["binary", "regression", "binary"],
    ),
    "no_shared_batch_norm": lambda F: dict(
        **_features(F, wide=True),
        mlp_params=_mlp([6, 5], norm_type="batch_norm", dropout=0.1),
        use_shared=False,
        target=["click", "buy"],
    ),
    "layer_norm_ignored": lambda F: dict(
        **_features(F, wide=False),
        mlp_params=_mlp([7, 3], activation="prelu", norm_type="layer_norm"),
        target=["click", "like", "buy"],
    ),
}

# name -> (STAR's keyword arguments it is built with, words the ConversionError must hold)
REFUSALS = {
    "concat_pooling": (
        lambda F: dict(
            sparse_features=[F.SparseFeature("user_id", 30, embedding_dim=4)],
            sequence_features=[
                F.SequenceFeature("hist", 9, max_len=3, embedding_dim=4, combiner="concat")
            ],
            target=["click"],
        ),
        ["'hist'", "'concat'"],
    ),
    "elu": (
        lambda F: dict(
            sparse_features=[F.SparseFeature("user_id", 30, embedding_dim=4)],
            mlp_params=_mlp([4], activation="elu"),
            target=["click", "buy"],
        ),
        ["ELU", "no counterpart"],
    ),
    "sequence_padding_idx": (
        lambda F: dict(
            sequence_features=[
                F.SequenceFeature("hist", 9, max_len=3, embedding_dim=4, padding_idx=2)
            ],
            target=["click"],
        ),
        ["padding_idx=2"],
    ),
}


# -- the tests (in the pytest process, NextRec 0.6.14 beside) ---------------------------------


@pytest.fixture(scope="module")
def results() -> dict:
    """Run the comparison under NextRec 0.4.28 and read its JSON line."""
    return under_nextrec_428("tests.parity.test_nextrec_star_parity", MARK)


def test_the_subprocess_ran_nextrec_0_4_28(results):
    assert results["version"] == "0.4.28"
    assert results["star_file"].endswith("[pre]star.py")


@pytest.mark.parametrize("opt_level", OPT_LEVELS)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_predictions_and_gradients_match_nextrec_star(results, config, opt_level):
    assert results["parity"][f"{config} -O{opt_level}"] == "ok"


def test_each_task_is_a_tower_of_the_folded_layers(results):
    spec = results["specs"]["three_tasks_prelu_dropout"]
    assert (
        "group all = [user_id, item_id, shop, hist, tags, shops_seen, age, vec]" in spec
    )  # NextRec's order: sparse, sequence, then dense
    assert "feature hist : sequence(vocab=20, dim=4, maxlen=6, pool=mean, table=item_id)" in spec
    assert "feature shops_seen : sequence(vocab=12, dim=3, maxlen=5, pool=mean, table=shop)" in (
        spec
    )
    assert "feature vec : dense(dim=3)" in spec
    for task in ("click", "dwell", "buy"):
        assert f"tower {task}_net = mlp(all, [8, 6, 4], activation=prelu, dropout=0.2)" in spec
    assert "task dwell : regression(label=dwell) = dwell_net" in spec


def test_the_dead_batch_norm_is_no_norm_and_said_so(results):
    spec = results["specs"]["no_shared_batch_norm"]
    assert "tower click_net = mlp(all, [6, 5], dropout=0.1)" in spec
    assert "DomainBatchNorm never runs" in spec
    assert "norm=" not in spec
    assert "DomainBatchNorm" not in results["specs"]["layer_norm_ignored"]
    assert "norm=" not in results["specs"]["layer_norm_ignored"]


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_what_the_fold_cannot_say_is_refused(results, case):
    message = results["refused"][case]
    assert message.startswith("ConversionError: "), message
    for word in REFUSALS[case][1]:
        assert word in message


def test_another_model_is_refused(results):
    assert results["refused"]["not_star"].startswith("ConversionError: Linear is not NextRec")


# -- the comparison (in the subprocess, NextRec 0.4.28 first on the path) ---------------------


def main() -> None:
    """Compare every configuration at every level; print the results as one JSON line."""
    import importlib.util

    import nextrec
    from nextrec.basic import features as F

    path = Path(nextrec.__path__[0]) / "models" / "multi_task" / "[pre]star.py"
    loaded = importlib.util.spec_from_file_location("nextrec_preview_star", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    star = module.STAR

    from torch import nn

    from mtlc.runtime.interop import nextrec_star as ns

    out: dict = {
        "version": nextrec.__version__,
        "star_file": str(path),
        "parity": {},
        "specs": {},
        "refused": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed, (name, make) in enumerate(CONFIGS.items()):
            peer = _perturb(star(**make(F)), seed)
            out["specs"][name] = ns.spec_from(peer)
            for level in OPT_LEVELS:
                try:
                    _compare(peer, out["specs"][name], Path(tmp), level, seed)
                    out["parity"][f"{name} -O{level}"] = "ok"
                except Exception as error:  # reported to the test, which shows it
                    out["parity"][f"{name} -O{level}"] = f"{type(error).__name__}: {error}"
    for name, (make, _) in REFUSALS.items():
        out["refused"][name] = _refusal(lambda make=make: ns.spec_from(star(**make(F))))
    out["refused"]["not_star"] = _refusal(lambda: ns.spec_from(nn.Linear(2, 1)))
    print(MARK + json.dumps(out))


def _refusal(convert) -> str:
    try:
        convert()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "not refused"


def _perturb(model, seed: int):
    """Noise on every parameter (NextRec starts biases at 0 and PReLU slopes at 0.25)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


def _compare(peer, spec: str, tmp: Path, level: int, seed: int) -> None:
    """``peers.compare`` (predictions, dense inputs, tables, heads), then the folded layers'
    gradients: each task's equals its specific Linear's, and their sum over the tasks the
    shared Linear's (the PReLU slopes' likewise)."""
    import torch

    from mtlc.runtime.interop import nextrec_star as ns
    from tests.parity.peers import Pairing, build, compare, module, random_batch

    peer.zero_grad(set_to_none=True)  # one peer serves both levels
    folder = tmp / f"{seed}"
    folder.mkdir(exist_ok=True)
    ours = build(spec, folder, level)
    ns.load_weights(ours, peer)
    batch = random_batch(ours, seed=seed + 1)  # row 0 of every sequence is all padding
    for name, feature in type(ours).features.items():
        if feature.kind == "sparse":
            batch[name][:2] = 0  # ids include 0
    targets = list(peer.target_columns)
    kinds = [peer.task] * len(targets) if isinstance(peer.task, str) else list(peer.task)
    pairing = Pairing([(task, t, kind) for t, (task, kind) in enumerate(zip(targets, kinds))])
    owners: dict[str, str] = {}
    for feature in peer.sparse_features + peer.sequence_features:
        owners.setdefault(feature.embedding_name, feature.name)
    for table, owner in owners.items():
        weight = peer.embedding.embed_dict[table].weight
        # NextRec's tables have padding_idx=0: row 0 never gets a gradient there
        pairing.params.append(
            (f"table {table}", module(ours, owner).weight, weight, slice(1, None))
        )
    for t, task in enumerate(targets):
        final = peer.final_layer.specific[t]
        pairing.params.append((f"head {task}", module(ours, task).weight, final.weight, None))
        pairing.params.append((f"head bias {task}", module(ours, task).bias, final.bias, None))
    compare(ours, peer, batch, pairing)

    bias = peer.prediction_layer.prediction.bias
    _close(torch.cat([module(ours, task).bias.grad for task in targets]), bias.grad, "pred. bias")
    if peer.final_layer.use_shared:
        heads = sum(module(ours, task).weight.grad for task in targets)
        _close(heads, peer.final_layer.shared.weight.grad, "final_layer.shared")
    # a projected dense feature's columns of layer 0 are W P in mtlc: compare the embeddings'
    embedded = sum(
        peer.embedding.embed_dict[f.embedding_name].embedding_dim
        for f in peer.sparse_features + peer.sequence_features
    )
    towers = [_linears(module(ours, f"{task}_net")) for task in targets]
    for i, layer in enumerate(peer.star_layers):
        columns = slice(0, embedded) if i == 0 else slice(None)
        for t, task in enumerate(targets):
            lin, own = towers[t][i][0], layer.specific[t]
            _close(lin.weight.grad[:, columns], own.weight.grad[:, columns], f"{task} layer {i}")
            _close(lin.bias.grad, own.bias.grad, f"{task} layer {i} bias")
        if layer.use_shared:
            mine = sum(tower[i][0].weight.grad[:, columns] for tower in towers)
            _close(mine, layer.shared.weight.grad[:, columns], f"star_layers.{i}.shared")
            mine = sum(tower[i][0].bias.grad for tower in towers)
            _close(mine, layer.shared.bias.grad, f"star_layers.{i}.shared bias")
        act = peer.activation_layers[i]
        if isinstance(act, torch.nn.PReLU):
            mine = sum(tower[i][1].weight.grad for tower in towers)
            _close(mine, act.weight.grad, f"activation_layers.{i} (PReLU)")


def _linears(mlp) -> list:
    """(Linear, PReLU or None) per layer of an ``rt.MLP``."""
    from torch import nn

    found: list = []
    for layer in mlp.layers:
        if isinstance(layer, nn.Linear):
            found.append([layer, None])
        elif isinstance(layer, nn.PReLU):
            found[-1][1] = layer
    return found


def _close(mine, theirs, what: str) -> None:
    import torch

    scale = theirs.abs().max().item()
    assert scale > 0, f"NextRec's gradient for {what} is zero: the comparison would prove nothing"
    torch.testing.assert_close(
        mine, theirs, rtol=1e-4, atol=1e-4 * scale, msg=f"gradient of {what}"
    )


if __name__ == "__main__":
    main()
