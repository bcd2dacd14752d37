"""From NextRec 0.6.14 to mtlc: the spec of a trained NextRec model, and its weights.

    spec = spec_from(nextrec_model)            # the equivalent .mtl text
    Model = mtlc.load_model("model.mtl")       # after writing spec to model.mtl
    model = Model()
    load_weights(model, nextrec_model)         # same predictions, to float rounding

Supported: ``ShareBottom``, ``MMOE``, ``PLE``, ``ESMM`` and ``AITM`` from
``nextrec.models.multitask``. Feature names and target names are kept (a task
is named as its target column). What NextRec computes that the spec cannot say
is folded exactly here: the prediction layer's per-task bias is added to the
head's bias, a linear dense projection is multiplied into every Linear that
reads the features, and the shared gate of PLE's last level (whose output
NextRec never uses) is dropped. Anything else raises ``ConversionError``
naming the module; nothing is approximated. See docs/nextrec.md.
"""

from __future__ import annotations

from torch import nn

from mtlc.runtime.interop import _copy
from mtlc.runtime.interop._common import (
    Block,
    Conversion,
    ConversionError,
    Linear,
    Segment,
    SpecWriter,
    Transfer,
    fold_block_input,
    fold_input,
    linear,
    read_mlp,
)

__all__ = ["spec_from", "load_weights", "convert", "ConversionError"]

VERSION = "0.6.14"
_KINDS = {"binary": "binary(label={label})", "regression": "regression(label={label})"}


def spec_from(nextrec_model: nn.Module, name: str | None = None) -> str:
    """The ``.mtl`` spec that computes what ``nextrec_model`` computes.

    Args:
        nextrec_model: a NextRec ``ShareBottom``, ``MMOE``, ``PLE``, ``ESMM`` or ``AITM``.
        name: the model (class) name; defaults to NextRec's model name.

    Raises:
        ConversionError: the model uses something mtlc cannot reproduce exactly.
    """
    spec = convert(nextrec_model, name).spec
    _copy.checked(spec)
    return spec


def load_weights(generated_model: nn.Module, nextrec_model: nn.Module) -> None:
    """Copy ``nextrec_model``'s weights into ``generated_model``, in place.

    ``generated_model`` is an instance of the class compiled from
    ``spec_from(nextrec_model)``, at ``-O0`` or ``-O1``.

    Raises:
        ConversionError: the models do not correspond (a missing module, a shape).
    """
    _copy.load(generated_model, convert(nextrec_model))


def convert(nextrec_model: nn.Module, name: str | None = None) -> Conversion:
    """The spec of ``nextrec_model`` and its weights per spec node (see ``_common``)."""
    readers = _readers()
    for cls, read in readers.items():
        if type(nextrec_model) is cls:
            reader = _Reader(nextrec_model, name)
            read(reader)
            return reader.conversion()
    names = ", ".join(cls.__name__ for cls in readers)
    raise ConversionError(
        f"{type(nextrec_model).__name__} is not supported; supported NextRec models: {names}"
    )


def _readers() -> dict[type, object]:
    try:
        from nextrec.models.multitask.aitm import AITM
        from nextrec.models.multitask.esmm import ESMM
        from nextrec.models.multitask.mmoe import MMOE
        from nextrec.models.multitask.ple import PLE
        from nextrec.models.multitask.share_bottom import ShareBottom
    except ImportError as error:
        raise ConversionError(
            f"NextRec is not installed: pip install 'mtlc[nextrec]' ({error})"
        ) from None
    return {ShareBottom: _share_bottom, MMOE: _mmoe, PLE: _ple, ESMM: _esmm, AITM: _aitm}


class _Reader:
    """Writes the spec and collects the weights of one NextRec model."""

    def __init__(self, model: nn.Module, name: str | None) -> None:
        self.model = model
        self.where = model.model_name
        self.spec = SpecWriter(
            name or model.model_name, f"Converted from a NextRec {VERSION} {model.model_name}"
        )
        self.weights: dict[str, object] = {}
        self.task_lines: list[str] = []  # written after every network, like the constraints
        self.constraint_lines: list[str] = []
        kinds = [model.task] if isinstance(model.task, str) else list(model.task)
        self.tasks = [
            (self.spec.claim(t, "target"), kind) for t, kind in zip(model.target_columns, kinds)
        ]
        self.group, self.segments = self._features()

    def conversion(self) -> Conversion:
        for line in self.task_lines + self.constraint_lines:
            self.spec.add(line)
        return Conversion(self.spec.text(), self.weights)

    # -- features -------------------------------------------------------------------

    def _features(self) -> tuple[str, list[Segment]]:
        """Declare the features in NextRec's concat order: sparse, sequence, then dense."""
        model, embedding = self.model, self.model.embedding
        if getattr(model, "semantic_id_features", None):
            raise ConversionError(f"{self.where}: semantic id features have no counterpart in mtlc")
        owners: dict[str, str] = {}
        members, segments = [], []
        for feature in list(model.sparse_features) + list(model.sequence_features):
            name = self.spec.claim(feature.name, "feature")
            table = embedding.embed_dict[feature.embedding_name]
            kind = f"vocab={table.num_embeddings}, dim={table.embedding_dim}"
            if feature in model.sequence_features:
                kind = f"sequence({kind}, {self._sequence_options(feature)}"
            else:
                kind = f"sparse({kind}"
            if feature.embedding_name in owners:
                kind += f", table={owners[feature.embedding_name]}"
            else:
                owners[feature.embedding_name] = name
                self.weights[name] = table.weight.detach()
            self.spec.add(f"feature {name} : {kind})")
            members.append(name)
            segments.append(Segment(table.embedding_dim))
        for feature in model.dense_features:
            name = self.spec.claim(feature.name, "feature")
            size = "" if feature.input_dim == 1 else f"(dim={feature.input_dim})"
            self.spec.add(f"feature {name} : dense{size}")
            members.append(name)
            segments.append(self._dense_segment(feature))
        group = self.spec.fresh("all")
        self.spec.add(f"group {group} = [{', '.join(members)}]")
        return group, segments

    def _sequence_options(self, feature) -> str:
        if feature.combiner not in ("mean", "sum"):
            raise ConversionError(
                f"{self.where}: sequence feature {feature.name!r} pools with {feature.combiner!r}; "
                "mtlc pools with mean, sum or max"
            )
        if feature.max_len is None:
            raise ConversionError(
                f"{self.where}: sequence feature {feature.name!r} needs a max_len"
            )
        return f"maxlen={feature.max_len}, pool={feature.combiner}"

    def _dense_segment(self, feature) -> Segment:
        """The feature's slice of NextRec's input; a projection is folded downstream."""
        if not feature.use_projection:
            return Segment(feature.input_dim)
        projection = self.model.embedding.dense_transforms[feature.name]
        if isinstance(projection, nn.Sequential):
            if len(projection) != 1:
                raise ConversionError(
                    f"{self.where}: dense feature {feature.name!r} is projected by an mlp; "
                    "only a linear projection folds exactly"
                )
            projection = projection[0]
        return Segment(projection.out_features, linear(projection))

    def folds(self, source: str) -> list[Segment] | None:
        """The segments to fold into a Linear reading ``source`` (only the group needs them)."""
        return self.segments if source == self.group else None

    # -- blocks ---------------------------------------------------------------------

    def block(self, mlp: nn.Module, where: str, source: str) -> Block:
        """A NextRec ``MLP`` without output layer, as a block reading ``source``."""
        block, _ = read_mlp(mlp.mlp, output=False, where=f"{self.where}.{where}")
        if not block.dims:
            raise ConversionError(
                f"{self.where}.{where}: an MLP with no hidden layer has no counterpart in mtlc"
            )
        return fold_block_input(block, self.folds(source))

    def pool(self, name: str, mlps: nn.ModuleList, where: str, source: str) -> None:
        """``expert name xN = mlp(source, ...)`` from N NextRec MLPs of one shape."""
        blocks = [self.block(mlp, f"{where}.{i}", source) for i, mlp in enumerate(mlps)]
        shapes = {(tuple(b.dims), b.activation, b.dropout, b.norm) for b in blocks}
        if len(shapes) != 1:
            raise ConversionError(f"{self.where}.{where}: the experts of one pool differ in shape")
        self.spec.add(f"expert {name} x{len(blocks)} = {blocks[0].text(source)}")
        self.weights[name] = blocks

    def gate(self, name: str, softmax_gate: nn.Sequential, source: str, over: list[str]) -> None:
        """``gate name = softmax(source) over [...]`` from NextRec's gate.

        NextRec's gate is a ``Sequential(Linear, Softmax)``.
        """
        self.spec.add(f"gate {name} = softmax({source}) over [{', '.join(over)}]")
        self.weights[name] = fold_input(linear(softmax_gate[0]), self.folds(source))

    def tower_and_head(
        self, index: int, mlp: nn.Module, source: str, where: str, task: str | None = None
    ) -> str:
        """Task ``index``'s tower (an MLP ending in Linear(d, 1)) and head; returns the task's name.

        The tower's last Linear becomes the task's head; NextRec's prediction
        bias for the task is added to the head's bias.
        """
        target, kind = self.tasks[index]
        task = task or target
        block, out = read_mlp(mlp.mlp, output=True, where=f"{self.where}.{where}")
        reads = source
        if block.dims:
            reads = self.spec.fresh(f"{task}_net")
            self.spec.add(f"tower {reads} = {block.text(source)}")
            self.weights[reads] = fold_block_input(block, self.folds(source))
        head = fold_input(linear(out), self.folds(reads))
        bias = self.model.head.prediction.bias
        if bias is not None:
            head = Linear(head.weight, head.bias + bias.detach()[index])
        self.weights[task] = head
        if task == target:
            if kind not in _KINDS:
                raise ConversionError(
                    f"{self.where}: task kind {kind!r} has no counterpart in mtlc"
                )
            self.task_lines.append(f"task {task} : {_KINDS[kind].format(label=target)} = {reads}")
        else:
            self.task_lines.append(f"task {task} : binary = {reads}")
        return task


# -- the five models ------------------------------------------------------------------


def _share_bottom(r: _Reader) -> None:
    block, _ = read_mlp(r.model.bottom.mlp, output=False, where=f"{r.where}.bottom")
    source = r.group
    if block.dims:
        source = r.spec.fresh("bottom")
        r.spec.add(f"tower {source} = {block.text(r.group)}")
        r.weights[source] = fold_block_input(block, r.segments)
    for index, tower in enumerate(r.model.towers):
        r.tower_and_head(index, tower, source, f"towers.{index}")


def _mmoe(r: _Reader) -> None:
    shared = r.spec.fresh("shared")
    r.pool(shared, r.model.experts, "experts", r.group)
    r.spec.add("")
    gates = [r.spec.fresh(f"to_{task}") for task, _ in r.tasks]
    for gate, module in zip(gates, r.model.gates):
        r.gate(gate, module, r.group, [shared])
    for index, (gate, tower) in enumerate(zip(gates, r.model.towers)):
        r.tower_and_head(index, tower, gate, f"towers.{index}")


def _ple(r: _Reader) -> None:
    """Per level: shared experts, each task's experts, task gates, and the shared gate.

    The last level has no shared gate.
    """
    tasks = [task for task, _ in r.tasks]
    task_in, shared_in = [r.group] * len(tasks), r.group
    levels = list(r.model.cgc_layers)
    for k, level in enumerate(levels, start=1):
        shared = r.spec.fresh(f"shared{k}")
        r.pool(shared, level.shared_experts, f"cgc_layers.{k - 1}.shared_experts", shared_in)
        own = [r.spec.fresh(f"{task}{k}") for task in tasks]
        for i, name in enumerate(own):
            r.pool(
                name,
                level.specific_experts[i],
                f"cgc_layers.{k - 1}.specific_experts.{i}",
                task_in[i],
            )
        gates = [r.spec.fresh(f"{task}_g{k}") for task in tasks]
        for i, gate in enumerate(gates):
            r.gate(gate, level.task_gates[i], task_in[i], [shared, own[i]])
        if k < len(levels):  # NextRec computes the last level's shared gate but never reads it
            shared_gate = r.spec.fresh(f"shared_g{k}")
            r.gate(shared_gate, level.shared_gate, shared_in, own + [shared])
            shared_in = shared_gate
        task_in = gates
        r.spec.add("")  # a blank line between levels
    for index, tower in enumerate(r.model.towers):
        r.tower_and_head(index, tower, task_in[index], f"towers.{index}")


def _esmm(r: _Reader) -> None:
    """CTR and CVR towers on the features; the second target is CTR x CVR (CVR is latent)."""
    (ctr, _), (ctcvr, _) = r.tasks
    r.tower_and_head(0, r.model.ctr_tower, r.group, "ctr_tower")
    cvr = r.spec.fresh("cvr")
    r.tower_and_head(1, r.model.cvr_tower, r.group, "cvr_tower", task=cvr)
    r.task_lines.append(f"task {ctcvr} : binary(label={ctcvr}) = {ctr} * {cvr}")


def _aitm(r: _Reader) -> None:
    """Per-task bottoms; task i's bottom receives task i-1's (transferred) bottom by AIT."""
    tasks = [task for task, _ in r.tasks]
    bottoms = [r.spec.fresh(f"{tasks[0]}_in")] + [r.spec.fresh(f"{task}_raw") for task in tasks[1:]]
    for i, (name, mlp) in enumerate(zip(bottoms, r.model.bottoms)):
        block = r.block(mlp, f"bottoms.{i}", r.group)
        r.spec.add(f"tower {name} = {block.text(r.group)}")
        r.weights[name] = block
    inputs = bottoms[:1]
    for i, transfer in enumerate(r.model.transfers, start=1):
        name = r.spec.fresh(f"{tasks[i]}_in")
        # NextRec's Q/K/V have biases; the language's default (the paper's) has none
        r.spec.add(f"transfer {name} = ait({bottoms[i]}, from={inputs[-1]}, bias=true)")
        parts = (transfer.prev_proj, transfer.query, transfer.key, transfer.value)
        r.weights[name] = Transfer(*(linear(part) for part in parts))
        inputs.append(name)
    for index, tower in enumerate(r.model.towers):
        r.tower_and_head(index, tower, inputs[index], f"towers.{index}")
    alpha = float(r.model.calibrator_alpha)
    if alpha > 0:  # NextRec averages relu(p_i - p_{i-1}) over the pairs
        for i in range(1, len(tasks)):
            r.constraint_lines.append(
                f"constrain {tasks[i]} <= {tasks[i - 1]} weight {alpha / (len(tasks) - 1)!r}"
            )
