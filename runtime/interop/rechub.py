"""From torch-rechub 0.9.0 to mtlc: the spec of a rechub ``MMOE`` or ``AITM``, and its weights.

    spec = spec_from(rechub_model, tasks=["click", "buy"], maxlen={"hist": 20})
    model = ModelCompiledFromSpec()
    load_weights(model, rechub_model, tasks=["click", "buy"], maxlen={"hist": 20})

rechub models carry no task names and no sequence lengths, so both are
arguments (tasks default to ``task1``, ``task2``, ...). In eval mode the copy
is exact (to float rounding); two rechub details are folded in a way that is
exact only there, and say so in docs/nextrec.md:

- MMOE's gates are ``Linear -> BatchNorm1d -> softmax``: the BatchNorm's
  running statistics are folded into the gate's Linear.
- AITM's info gate is ``Linear -> BatchNorm1d -> ReLU``: it becomes a tower
  ``mlp(prev, [D], norm=batch)`` feeding ``ait``, whose own info Linear is
  set to the identity.

Every rechub MLP has a BatchNorm1d after each Linear: ``norm=batch``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from mtlc.runtime.interop import _copy
from mtlc.runtime.interop._common import (
    Conversion,
    ConversionError,
    Linear,
    SpecWriter,
    Transfer,
    fold_batchnorm,
    linear,
    read_mlp,
)

__all__ = ["spec_from", "load_weights", "convert", "ConversionError", "FoldWarning"]

VERSION = "0.9.0"


class FoldWarning(UserWarning):
    """A rechub detail was folded into weights.

    The fold is exact for prediction, but not for further training.
    """


_KINDS = {"classification": "binary(label={label})", "regression": "regression(label={label})"}


def spec_from(
    rechub_model: nn.Module,
    name: str | None = None,
    *,
    tasks: list[str] | None = None,
    maxlen: int | dict[str, int] | None = None,
) -> str:
    """The ``.mtl`` spec that computes what ``rechub_model`` computes in eval mode.

    Args:
        rechub_model: a torch-rechub ``MMOE`` or ``AITM``.
        name: the model (class) name; defaults to rechub's class name.
        tasks: task names (also their label columns), one per task.
        maxlen: the padded length of the sequence features (one for all, or per name).

    Raises:
        ConversionError: the model uses something mtlc cannot reproduce exactly.
    """
    spec = convert(rechub_model, name, tasks=tasks, maxlen=maxlen).spec
    _copy.checked(spec)
    return spec


def load_weights(
    generated_model: nn.Module,
    rechub_model: nn.Module,
    *,
    tasks: list[str] | None = None,
    maxlen: int | dict[str, int] | None = None,
) -> None:
    """Copy ``rechub_model``'s weights into the model compiled from ``spec_from``.

    Pass the arguments given to ``spec_from``.
    """
    _copy.load(generated_model, convert(rechub_model, tasks=tasks, maxlen=maxlen))


def convert(
    rechub_model: nn.Module,
    name: str | None = None,
    *,
    tasks: list[str] | None = None,
    maxlen: int | dict[str, int] | None = None,
) -> Conversion:
    """The spec of ``rechub_model`` and its weights per spec node."""
    try:
        from torch_rechub.models.multi_task.aitm import AITM
        from torch_rechub.models.multi_task.mmoe import MMOE
    except ImportError as error:
        raise ConversionError(
            f"torch-rechub is not installed: pip install 'mtlc[rechub]' ({error})"
        ) from None
    readers = {MMOE: _mmoe, AITM: _aitm}
    read = readers.get(type(rechub_model))
    if read is None:
        raise ConversionError(
            f"{type(rechub_model).__name__} is not supported; supported rechub models: MMOE, AITM"
        )
    reader = _Reader(rechub_model, name, tasks, maxlen)
    read(reader)
    return reader.conversion()


class _Reader:
    """Writes the spec and collects the weights of one rechub model."""

    def __init__(self, model, name, tasks, maxlen) -> None:
        self.model = model
        self.where = type(model).__name__
        self.spec = SpecWriter(
            name or self.where, f"Converted from a torch-rechub {VERSION} {self.where}"
        )
        self.weights: dict[str, object] = {}
        self.task_lines: list[str] = []
        count = len(model.task_types) if hasattr(model, "task_types") else model.n_task
        names = tasks or [f"task{i + 1}" for i in range(count)]
        if len(names) != count:
            raise ConversionError(f"{self.where} has {count} tasks, {len(names)} names given")
        self.tasks = [self.spec.claim(task, "task") for task in names]
        self.group = self._features(maxlen)

    def conversion(self) -> Conversion:
        for line in self.task_lines:
            self.spec.add(line)
        return Conversion(self.spec.text(), self.weights)

    def _features(self, maxlen) -> str:
        """rechub concatenates sparse and sequence embeddings in list order, then dense values."""
        from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature

        features = list(self.model.features)
        embedded = [f for f in features if isinstance(f, (SparseFeature, SequenceFeature))]
        dense = [f for f in features if isinstance(f, DenseFeature)]
        names = [f.name for f in embedded + dense]
        if len(set(names)) != len(names):
            raise ConversionError(f"{self.where}: a feature is listed twice in {names}")
        declared: set[str] = set()
        for feature in embedded + dense:
            owner = getattr(feature, "shared_with", None)
            if owner is not None and owner not in declared:  # the owner is declared first
                if owner not in names:
                    raise ConversionError(
                        f"{self.where}: {feature.name!r} shares the table of {owner!r}, "
                        "not a feature"
                    )
                self._declare(embedded[names.index(owner)], maxlen)
                declared.add(owner)
            if feature.name not in declared:
                self._declare(feature, maxlen)
                declared.add(feature.name)
        group = self.spec.fresh("all")
        self.spec.add(f"group {group} = [{', '.join(f.name for f in embedded + dense)}]")
        return group

    def _declare(self, feature, maxlen) -> None:
        from torch_rechub.basic.features import DenseFeature, SequenceFeature

        name = self.spec.claim(feature.name, "feature")
        if isinstance(feature, DenseFeature):
            size = "" if feature.embed_dim == 1 else f"(dim={feature.embed_dim})"
            self.spec.add(f"feature {name} : dense{size}")
            return
        owner = feature.shared_with or feature.name
        table = self.model.embedding.embed_dict[owner]
        kind = f"vocab={table.num_embeddings}, dim={table.embedding_dim}"
        if isinstance(feature, SequenceFeature):
            kind = f"sequence({kind}, {self._sequence_options(feature, maxlen)}"
        else:
            kind = f"sparse({kind}"
        if feature.shared_with is not None:
            kind += f", table={feature.shared_with}"
        else:
            self.weights[name] = table.weight.detach()
        self.spec.add(f"feature {name} : {kind})")

    def _sequence_options(self, feature, maxlen) -> str:
        if feature.pooling not in ("mean", "sum"):
            raise ConversionError(
                f"{self.where}: sequence feature {feature.name!r} pools with {feature.pooling!r}"
            )
        if feature.padding_idx != 0:
            raise ConversionError(
                f"{self.where}: sequence feature {feature.name!r} has "
                f"padding_idx={feature.padding_idx}; mtlc excludes id 0 from pooling, so only "
                "padding_idx=0 converts exactly"
            )
        length = maxlen.get(feature.name) if isinstance(maxlen, dict) else maxlen
        if not length:
            raise ConversionError(
                f"{self.where}: give maxlen= for sequence feature {feature.name!r}"
            )
        return f"maxlen={length}, pool={feature.pooling}"

    def block(self, mlp: nn.Module, where: str, source: str, name: str):
        """``tower name = mlp(source, ...)`` from a rechub MLP without output layer."""
        block, _ = read_mlp(mlp.mlp, output=False, where=f"{self.where}.{where}")
        self.spec.add(f"tower {name} = {block.text(source)}")
        self.weights[name] = block

    def tower_and_head(self, index: int, mlp: nn.Module, source: str) -> None:
        """Task ``index``'s tower (hidden layers) and head (its output Linear)."""
        task = self.tasks[index]
        block, out = read_mlp(mlp.mlp, output=True, where=f"{self.where}.towers.{index}")
        reads = source
        if block.dims:
            reads = self.spec.fresh(f"{task}_net")
            self.spec.add(f"tower {reads} = {block.text(source)}")
            self.weights[reads] = block
        self.weights[task] = linear(out)
        kinds = getattr(self.model, "task_types", ["classification"] * len(self.tasks))
        if kinds[index] not in _KINDS:
            raise ConversionError(
                f"{self.where}: task type {kinds[index]!r} has no counterpart in mtlc"
            )
        self.task_lines.append(f"task {task} : {_KINDS[kinds[index]].format(label=task)} = {reads}")


def _mmoe(r: _Reader) -> None:
    blocks = [
        read_mlp(e.mlp, output=False, where=f"MMOE.experts.{i}")[0]
        for i, e in enumerate(r.model.experts)
    ]
    shared = r.spec.fresh("shared")
    r.spec.add(f"expert {shared} x{len(blocks)} = {blocks[0].text(r.group)}")
    r.weights[shared] = blocks
    gates = [r.spec.fresh(f"to_{task}") for task in r.tasks]
    for i, (gate, module) in enumerate(zip(gates, r.model.gates)):
        r.spec.add(f"gate {gate} = softmax({r.group}) over [{shared}]")
        r.weights[gate] = _gate(module.mlp, f"MMOE.gates.{i}")
    for index, (gate, tower) in enumerate(zip(gates, r.model.towers)):
        r.tower_and_head(index, tower, gate)
    warnings.warn(
        "rechub MMOE: each gate's BatchNorm1d is folded into its Linear with the running "
        "statistics; exact in eval mode, while in training the converted gates are plain "
        "Linear -> softmax (docs/nextrec.md)",
        FoldWarning,
        stacklevel=4,
    )


def _gate(layers: nn.Sequential, where: str) -> Linear:
    """rechub's gate ``Linear -> BatchNorm1d -> Softmax -> Dropout``.

    The BatchNorm is folded into the Linear (eval mode).
    """
    kinds = [type(m) for m in layers]
    if kinds != [nn.Linear, nn.BatchNorm1d, nn.Softmax, nn.Dropout]:
        raise ConversionError(f"{where}: unexpected gate layers {[k.__name__ for k in kinds]}")
    return fold_batchnorm(linear(layers[0]), layers[1])


def _aitm(r: _Reader) -> None:
    """Bottoms; task i's info gate (a tower) reads task i-1's transferred bottom.

    AIT mixes it in.
    """
    tasks = r.tasks
    bottoms = [r.spec.fresh(f"{tasks[0]}_in")] + [r.spec.fresh(f"{task}_raw") for task in tasks[1:]]
    for i, (name, mlp) in enumerate(zip(bottoms, r.model.bottoms)):
        r.block(mlp, f"bottoms.{i}", r.group, name)
    inputs = bottoms[:1]
    for i, (info_gate, attention) in enumerate(zip(r.model.info_gates, r.model.aits), start=1):
        info = r.spec.fresh(f"{tasks[i]}_info")
        r.block(info_gate, f"info_gates.{i - 1}", inputs[-1], info)
        name = r.spec.fresh(f"{tasks[i]}_in")
        r.spec.add(f"transfer {name} = ait({bottoms[i]}, from={info})")
        width = attention.q_layer.in_features
        identity = Linear(torch.eye(width), torch.zeros(width))
        parts = (attention.q_layer, attention.k_layer, attention.v_layer)
        r.weights[name] = Transfer(identity, *(linear(part) for part in parts))
        inputs.append(name)
    for index, tower in enumerate(r.model.towers):
        r.tower_and_head(index, tower, inputs[index])
    warnings.warn(
        "rechub AITM: each info gate became a tower feeding `ait`, whose own info Linear is "
        "set to the identity; exact, but in training that Linear is trained too "
        "(docs/nextrec.md)",
        FoldWarning,
        stacklevel=4,
    )
