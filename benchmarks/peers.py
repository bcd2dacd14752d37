"""The benchmark configuration, built as NextRec 0.6.14 and torch-rechub 0.9.0 models, with
their training steps.

Each ``*_step`` function returns a ``step()`` closure that runs one training
step the way the library's own training loop does (NextRec's
``BaseTrainer.train_epoch``, torch-rechub's ``MTLTrainer.train_one_epoch``):
forward, the library's loss (and its regularisation term), zero_grad,
backward, optimizer step. Data loading, metrics and logging are left out,
for every contender alike. With ``optimizer=None`` each library keeps its own
default optimizer; else the given factory (``params -> Optimizer``) replaces it.

Where the peers differ from the mtlc specs of ``train_speed.py`` (which
follow NextRec):
- torch-rechub's MLP puts BatchNorm1d after every hidden Linear, its gates
  too (Linear -> BatchNorm1d -> softmax); the mtlc ``bn`` specs add
  ``norm=batch`` to every mlp but cannot put one in a gate.
- torch-rechub's ESMM takes no dense features (8 sparse only) and outputs a
  third column (CVR) that it does not train on.
- torch-rechub's AITM info gate is Linear -> BatchNorm1d -> ReLU and its
  attention has no biases; NextRec's is a Linear with biases, as mtlc's ``ait``.
- NextRec's PLE also computes the last level's shared gate, which no task uses.
- torch-rechub 0.9.0 has no HMoE, POSO, PEPNet or APG: those run against NextRec only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

Step = Callable[[], float]
OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]

ARCHITECTURES = (
    "share_bottom",
    "mmoe",
    "ple",
    "esmm",
    "aitm",
    "hmoe",
    "poso",
    "poso_mmoe",
    "pepnet",
    "apg",
    "cross_stitch",
    "snr_trans",
    "dcnv2",
)
RECHUB_ARCHITECTURES = ARCHITECTURES[:5]  # the ones torch-rechub 0.9.0 has


@dataclass(frozen=True)
class Config:
    """The benchmark model configuration (issue 4; HMoE, POSO and PEPNet: issue 10; APG).

    206k embedding rows, 3.3M embedding parameters. POSO's and PEPNet's per-task
    networks, and APG's shared stack, are ``expert_dims + tower_dims`` deep (an
    expert, then a tower).
    """

    vocabs: dict[str, int] = field(
        default_factory=lambda: {
            "user_id": 100_000,
            "item_id": 50_000,
            "category": 20_000,
            "brand": 20_000,
            "shop": 10_000,
            "city": 5_000,
            "device": 500,
            "hour": 500,
        }
    )
    dim: int = 16
    dense: tuple[str, ...] = ("price", "age", "ctr_7d", "cvr_7d")
    expert_dims: tuple[int, ...] = (256, 128)
    tower_dims: tuple[int, ...] = (64,)
    num_experts: int = 4
    ple_shared: int = 2
    ple_specific: int = 1
    ple_levels: int = 2
    aitm_alpha: float = 0.1
    poso_pc: tuple[str, ...] = ("city", "device", "age")  # POSO's personalisation features
    poso_gate_hidden: int = 32  # NextRec's defaults: POSO gates [32], scale 2
    poso_scale: float = 2.0
    pepnet_domain: tuple[str, ...] = ("device",)  # PEPNet's scenario, and its priors
    pepnet_user: tuple[str, ...] = ("user_id",)
    pepnet_item: tuple[str, ...] = ("item_id",)
    pepnet_feature_gate_hidden: int = 128  # NextRec's default EPNet hidden width
    apg_scene: tuple[str, ...] = ("device",)  # APG's scene (its condition), as PEPNet's domain
    apg_mf_k: int = 16  # NextRec's default: a layer n -> m has rank ceil(min(n, m) / mf_k)
    cross_layers: int = 3  # DCNv2: NextRec's defaults (3 matrix layers, parallel to the mlp)

    def tasks(self, arch: str) -> tuple[str, ...]:
        """Label names: three for AITM (click -> buy -> pay), one for the ranking model DCNv2,
        two otherwise."""
        if arch == "dcnv2":
            return ("click",)
        return ("click", "buy", "pay") if arch == "aitm" else ("click", "buy")

    @property
    def deep_dims(self) -> tuple[int, ...]:
        """The widths of a POSO-MLP or PEPNet task network, or of APG's stack.

        An expert, then a tower.
        """
        return (*self.expert_dims, *self.tower_dims)

    @property
    def width(self) -> int:
        """The width of the concatenated input (every embedding, every dense value)."""
        return len(self.vocabs) * self.dim + len(self.dense)

    def in_concat_order(self, names: tuple[str, ...]) -> list[str]:
        """``names`` in NextRec's concatenation order: sparse features, then dense."""
        return [n for n in self.vocabs if n in names] + [n for n in self.dense if n in names]


CONFIG = Config()


def same_adam(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer every contender gets in the same-optimizer runs.

    ``torch.optim.Adam`` as it comes.
    """
    return torch.optim.Adam(params)


def synthetic_batch(
    config: Config, arch: str, size: int, seed: int = 0, device: str = "cpu"
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Random inputs and labels by name, on ``device``.

    Inputs: sparse int64 [B], dense float32 [B]; labels: 0/1 float32 [B].
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        name: torch.randint(0, vocab, (size,), generator=generator)
        for name, vocab in config.vocabs.items()
    }
    inputs.update({name: torch.randn(size, generator=generator) for name in config.dense})
    labels = {
        name: torch.randint(0, 2, (size,), generator=generator).float()
        for name in config.tasks(arch)
    }
    move = lambda tensors: {name: t.to(device) for name, t in tensors.items()}  # noqa: E731
    return move(inputs), move(labels)


# -- NextRec -------------------------------------------------------------------------------------


def nextrec_model(config: Config, arch: str, device: str = "cpu") -> nn.Module:
    """The NextRec model of ``arch``, compiled with its defaults.

    Its defaults: Adam lr 1e-3, BCE on probabilities.
    """
    quiet_nextrec()
    from nextrec.basic.features import DenseFeature, SparseFeature
    from nextrec.models.multitask import (
        aitm,
        apg,
        cross_stitch,
        esmm,
        hmoe,
        mmoe,
        pepnet,
        ple,
        poso,
        share_bottom,
        snr_trans,
    )
    from nextrec.models.ranking import dcn_v2

    sparse = [
        SparseFeature(name, vocab_size=vocab, embedding_dim=config.dim)
        for name, vocab in config.vocabs.items()
    ]
    dense = [DenseFeature(name) for name in config.dense]
    tasks = list(config.tasks(arch))
    expert = {"hidden_dims": list(config.expert_dims)}
    towers = [{"hidden_dims": list(config.tower_dims)} for _ in tasks]
    common = {
        "dense_features": dense,
        "sparse_features": sparse,
        "sequence_features": [],
        "session_id": "mtlc_benchmark",
        "device": device,
    }
    if arch == "share_bottom":
        model = share_bottom.ShareBottom(
            bottom_mlp_params=expert, tower_mlp_params_list=towers, target=tasks, **common
        )
    elif arch == "mmoe":
        model = mmoe.MMOE(
            expert_mlp_params=expert,
            num_experts=config.num_experts,
            tower_mlp_params_list=towers,
            target=tasks,
            **common,
        )
    elif arch == "ple":
        model = ple.PLE(
            shared_expert_mlp_params=expert,
            specific_expert_mlp_params=[expert for _ in tasks],
            num_shared_experts=config.ple_shared,
            num_specific_experts=config.ple_specific,
            num_levels=config.ple_levels,
            tower_mlp_params_list=towers,
            target=tasks,
            **common,
        )
    elif arch == "esmm":
        model = esmm.ESMM(
            ctr_mlp_params=expert, cvr_mlp_params=expert, target=["click", "buy"], **common
        )
    elif arch == "aitm":
        model = aitm.AITM(
            bottom_mlp_params=expert,
            tower_mlp_params_list=towers,
            calibrator_alpha=config.aitm_alpha,
            target=tasks,
            task=["binary"] * len(tasks),
            **common,
        )
    elif arch == "hmoe":
        model = hmoe.HMOE(
            expert_mlp_params=expert,
            num_experts=config.num_experts,
            tower_mlp_params_list=towers,
            task_weight_mlp_params=[{} for _ in tasks],  # one Linear each, as MMoE's gates
            target=tasks,
            **common,
        )
    elif arch in ("poso", "poso_mmoe"):
        pc = {
            "pc_sparse_features": [n for n in config.vocabs if n in config.poso_pc],
            "pc_dense_features": [n for n in config.dense if n in config.poso_pc],
            "pc_sequence_features": [],
            "main_sparse_features": list(config.vocabs),
            "main_dense_features": list(config.dense),
            "main_sequence_features": [],
        }
        if arch == "poso":
            deep = [{"hidden_dims": list(config.deep_dims)} for _ in tasks]
            model = poso.POSO(
                **pc,
                tower_mlp_params_list=deep,
                gate_hidden_dim=config.poso_gate_hidden,
                gate_scale_factor=config.poso_scale,
                target=tasks,
                **common,
            )
        else:
            model = poso.POSO(
                **pc,
                tower_mlp_params_list=towers,
                architecture="mmoe",
                num_experts=config.num_experts,
                expert_hidden_dims=list(config.expert_dims),
                expert_gate_hidden_dim=config.poso_gate_hidden,
                expert_gate_scale_factor=config.poso_scale,
                target=tasks,
                **common,
            )
    elif arch == "pepnet":
        model = pepnet.PEPNet(
            mlp_params={"hidden_dims": list(config.deep_dims)},
            feature_gate_mlp_params={"hidden_dim": config.pepnet_feature_gate_hidden},
            domain_features=list(config.pepnet_domain),
            user_features=list(config.pepnet_user),
            item_features=list(config.pepnet_item),
            target=tasks,
            **common,
        )
    elif arch == "apg":  # one APG stack, read by each task's Linear head; the scene detached
        model = apg.APG(
            mlp_params={"hidden_dims": list(config.deep_dims)},
            scene_features=list(config.apg_scene),
            mf_k=config.apg_mf_k,
            target=tasks,
            **common,
        )
    elif arch == "cross_stitch":  # a column per task of the expert's widths, no shared layer
        model = cross_stitch.CrossStitch(
            task_mlp_params=expert,
            tower_mlp_params={"hidden_dims": list(config.tower_dims)},
            target=tasks,
            **common,
        )
    elif arch == "snr_trans":  # layers of the expert's widths, num_experts each, [64] towers
        model = snr_trans.SNRTrans(
            expert_mlp_params=expert,
            num_experts=config.num_experts,
            tower_mlp_params_list=[{"hidden_dims": list(config.tower_dims)}] * len(tasks),
            target=tasks,
            **common,
        )
    elif arch == "dcnv2":  # a matrix cross network beside the expert-sized mlp, one task
        model = dcn_v2.DCNv2(
            cross_num=config.cross_layers,
            cross_type="matrix",
            architecture="parallel",
            mlp_params=expert,
            target=tasks,
            **common,
        )
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    model.to(device)
    model.compile(optimizer="adam", loss=["bce"] * len(tasks))
    return model


def nextrec_step(
    model: nn.Module,
    inputs: dict[str, Tensor],
    labels: dict[str, Tensor],
    optimizer: OptimizerFactory | None = None,
) -> Step:
    """One step of NextRec's ``train_epoch`` loop body.

    Its input conversion, metrics and logging are left out.
    """
    if optimizer is not None:
        model.optimizer_fn = optimizer(list(model.parameters()))
    y_true = torch.stack([labels[name] for name in model.target_columns], dim=1)

    def step() -> float:
        y_pred = model.training_adapter.forward(model, inputs)
        loss = model.compute_loss(y_pred, y_true) + model.add_reg_loss()
        model.optimizer_fn.zero_grad()
        loss.backward()
        if model.max_gradient_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), model.max_gradient_norm)
        model.optimizer_fn.step()
        return loss.item()

    model.train()
    return step


# -- torch-rechub --------------------------------------------------------------------------------


def rechub_model(config: Config, arch: str) -> nn.Module:
    """The torch-rechub model of ``arch`` (its MLPs carry BatchNorm1d: see the module docstring)."""
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models import multi_task

    sparse = [
        SparseFeature(name, vocab_size=vocab, embed_dim=config.dim)
        for name, vocab in config.vocabs.items()
    ]
    dense = [DenseFeature(name) for name in config.dense]
    features = sparse + dense
    tasks = config.tasks(arch)
    expert = {"dims": list(config.expert_dims)}
    towers = [{"dims": list(config.tower_dims)} for _ in tasks]
    types = ["classification"] * len(tasks)
    if arch == "share_bottom":
        return multi_task.SharedBottom(
            features, types, bottom_params=expert, tower_params_list=towers
        )
    if arch == "mmoe":
        return multi_task.MMOE(
            features,
            types,
            n_expert=config.num_experts,
            expert_params=expert,
            tower_params_list=towers,
        )
    if arch == "ple":
        return multi_task.PLE(
            features,
            types,
            n_level=config.ple_levels,
            n_expert_specific=config.ple_specific,
            n_expert_shared=config.ple_shared,
            expert_params=expert,
            tower_params_list=towers,
        )
    if arch == "esmm":
        half = len(sparse) // 2
        return multi_task.ESMM(sparse[:half], sparse[half:], cvr_params=expert, ctr_params=expert)
    if arch == "aitm":
        return multi_task.AITM(features, len(tasks), bottom_params=expert, tower_params_list=towers)
    raise ValueError(f"unknown architecture {arch!r}")


def rechub_step(
    model: nn.Module,
    inputs: dict[str, Tensor],
    labels: dict[str, Tensor],
    optimizer: OptimizerFactory | None = None,
    device: str = "cpu",
) -> Step:
    """One step of torch-rechub's ``MTLTrainer.train_one_epoch`` loop body.

    Its default optimizer: Adam lr 1e-3, weight decay 1e-5.
    """
    from torch_rechub.models.multi_task import ESMM
    from torch_rechub.trainers import MTLTrainer

    esmm = isinstance(model, ESMM)
    names = ("buy", "click", "buy") if esmm else tuple(labels)  # ESMM's columns: cvr, ctr, ctcvr
    with tempfile.TemporaryDirectory() as scratch:
        trainer = MTLTrainer(
            model, task_types=["classification"] * len(names), model_path=scratch, device=device
        )
    if optimizer is not None:
        trainer.optimizer = optimizer(list(model.parameters()))
    ys = torch.stack([labels[name] for name in names], dim=1)

    def step() -> float:
        y_preds = model(inputs)
        losses = [trainer.loss_fns[i](y_preds[:, i], ys[:, i]) for i in range(len(names))]
        loss = sum(losses[1:]) if esmm else sum(losses) / len(names)
        loss = loss + trainer.reg_loss_fn(model)
        model.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        return loss.item()

    model.train()
    return step


def quiet_nextrec() -> None:
    """Keep NextRec's session logs out of the checkout (it writes under its session directory)."""
    os.environ.setdefault(
        "NEXTREC_LOG_DIR", os.path.join(tempfile.gettempdir(), "mtlc_benchmark_nextrec_logs")
    )
