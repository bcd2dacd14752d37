"""From NextRec 0.6.14 to mtlc: the spec of a trained NextRec model, and its weights.

    spec = spec_from(nextrec_model)            # the equivalent .mtl text
    Model = mtlc.load_model("model.mtl")       # after writing spec to model.mtl
    model = Model()
    load_weights(model, nextrec_model)         # same predictions, to float rounding

Supported, from ``nextrec.models.multitask``: ``ShareBottom``, ``MMOE``,
``PLE``, ``ESMM``, ``AITM``, ``HMOE``, ``POSO`` (``architecture="mlp"`` and
``"mmoe"``), ``PEPNet``, ``APG``, ``CrossStitch`` and ``SNRTrans``; from
``nextrec.models.ranking``, ``DCN`` and
``DCNv2`` (every ``cross_type`` and ``architecture``; one task). Feature names
and target names are kept (a task is named as its target column). What NextRec
computes that the spec cannot say is folded exactly here:

- the prediction layer's per-task bias is added to the head's bias (HMoE's
  and PEPNet's bias-free last Linears get it as their only bias);
- a linear dense projection is multiplied into every Linear that reads the
  features (a gate's first Linear included; a POSO layer without bias that
  reads a projected feature gets the projection's bias); PEPNet, whose EPNet
  multiplies the projected values elementwise, reads each projection as
  towers instead (``mlp(x, [d], activation=none)``, after an ``mlp`` for an
  mlp projection), and so does APG where a projection cannot fold (an mlp
  projection, or ``use_uv_shared=False``, whose first factor is generated);
- the shared gate of PLE's last level (whose output NextRec never uses) is
  dropped.

Models as specs: HMoE's per-task fusion is ``softmax(all, hidden=...) over
[f_1, stopgrad(f_2), ...]`` (the task's own tower live); a POSO-MLP layer is
``mlp(..., [d])`` then ``sigmoid(pc, hidden=[H], scale=C) over [it]``
(NextRec's dropout after the gate is the mlp's dropout before it: the same
in eval, the same distribution in training); POSO-MMoE gates each expert
with ``sigmoid(...) over [pool]``; PEPNet's EPNet and PPNet gates are
sigmoid gates on ``stopgrad`` groups, in NextRec's concatenation orders;
APG is one ``apg`` tower read by every head, its ranks (and expands) written
out, by a group of the scene features (through ``stopgrad`` where
``detach_scene``). DCN's and DCNv2's cross networks are ``cross`` towers
(NextRec's ``CrossNetV2`` with ``bias=outside``), their arrangements written
by the graph (a group of the cross and deep towers for ``parallel``).

Anything else raises ``ConversionError`` naming the module (for example
POSO's ``gate_use_softmax=False``, an ``output_activation`` before a softmax
gate, an activation or a pooling mtlc lacks, APG's ``inner_activation`` or
``generate_activation`` with a learned slope); nothing is approximated. See
docs/nextrec.md.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mtlc.runtime.interop import _copy
from mtlc.runtime.interop._common import (
    Block,
    Conversion,
    ConversionError,
    Layer,
    Linear,
    Net,
    Segment,
    SpecWriter,
    State,
    Transfer,
    activation_of,
    fold_block_input,
    fold_input,
    fold_net_input,
    linear,
    projects,
    read_mlp,
    read_net,
)

__all__ = ["spec_from", "load_weights", "convert", "ConversionError"]

VERSION = "0.6.14"
_KINDS = {
    "binary": "binary(label={label}{options})",
    "regression": "regression(label={label}{options})",
}


def spec_from(nextrec_model: nn.Module, name: str | None = None) -> str:
    """The ``.mtl`` spec that computes what ``nextrec_model`` computes.

    Args:
        nextrec_model: a NextRec ``ShareBottom``, ``MMOE``, ``PLE``, ``ESMM``, ``AITM``,
            ``HMOE``, ``POSO``, ``PEPNet``, ``APG``, ``CrossStitch``, ``SNRTrans``, ``DCN`` or
            ``DCNv2``.
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
            reader = _Reader(
                nextrec_model,
                name,
                whole=read is not _poso,  # POSO reads only its main and pc groups
                # EPNet scales the projected values; APG's, see _apg_projects_as_towers
                project_as_tower=read in (_pepnet, _dcn, _dcn_v2)  # see _dcn
                or (read is _apg and _apg_projects_as_towers(nextrec_model)),
            )
            read(reader)
            return reader.conversion()
    names = ", ".join(cls.__name__ for cls in readers)
    raise ConversionError(
        f"{type(nextrec_model).__name__} is not supported; supported NextRec models: {names}"
    )


def _readers() -> dict[type, object]:
    try:
        from nextrec.models.multitask.aitm import AITM
        from nextrec.models.multitask.apg import APG
        from nextrec.models.multitask.cross_stitch import CrossStitch
        from nextrec.models.multitask.esmm import ESMM
        from nextrec.models.multitask.hmoe import HMOE
        from nextrec.models.multitask.mmoe import MMOE
        from nextrec.models.multitask.pepnet import PEPNet
        from nextrec.models.multitask.ple import PLE
        from nextrec.models.multitask.poso import POSO
        from nextrec.models.multitask.share_bottom import ShareBottom
        from nextrec.models.multitask.snr_trans import SNRTrans
        from nextrec.models.ranking.dcn import DCN
        from nextrec.models.ranking.dcn_v2 import DCNv2
    except ImportError as error:
        raise ConversionError(
            f"NextRec is not installed: pip install 'mtlc[nextrec]' ({error})"
        ) from None
    return {
        ShareBottom: _share_bottom,
        MMOE: _mmoe,
        PLE: _ple,
        ESMM: _esmm,
        AITM: _aitm,
        HMOE: _hmoe,
        POSO: _poso,
        PEPNet: _pepnet,
        APG: _apg,
        CrossStitch: _cross_stitch,
        SNRTrans: _snr_trans,
        DCN: _dcn,
        DCNv2: _dcn_v2,
    }


def _dense(feature) -> bool:
    from nextrec.basic.features import DenseFeature

    return isinstance(feature, DenseFeature)


class _Reader:
    """Writes the spec and collects the weights of one NextRec model."""

    def __init__(
        self, model: nn.Module, name: str | None, *, whole: bool, project_as_tower: bool
    ) -> None:
        """Declare the tasks' names and the features (and, if ``whole``, the group of all).

        ``project_as_tower``: a projected dense feature becomes a tower that
        readers of the feature read (else its projection folds into them).
        """
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
        self.members: dict[str, tuple[str, Segment]] = {}  # feature -> (spec node, its slice)
        self.segments_of: dict[str, list[Segment]] = {}  # group -> the slices to fold
        self._features(project_as_tower)
        self.group = ""
        self.segments: list[Segment] = []
        if whole:
            features = list(model.sparse_features) + list(model.sequence_features)
            self.group = self.feature_group("all", features + list(model.dense_features))
            self.segments = self.segments_of[self.group]

    def conversion(self) -> Conversion:
        for line in self.task_lines + self.constraint_lines:
            self.spec.add(line)
        return Conversion(self.spec.text(), self.weights)

    # -- features -------------------------------------------------------------------

    def _features(self, project_as_tower: bool) -> None:
        """Declare the features: sparse, sequence, dense (then projection towers, if any)."""
        model, embedding = self.model, self.model.embedding
        if getattr(model, "semantic_id_features", None):
            raise ConversionError(f"{self.where}: semantic id features have no counterpart in mtlc")
        owners: dict[str, str] = {}
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
            self.members[feature.name] = (name, Segment(table.embedding_dim))
        towers = []
        for feature in model.dense_features:
            name = self.spec.claim(feature.name, "feature")
            size = "" if feature.input_dim == 1 else f"(dim={feature.input_dim})"
            self.spec.add(f"feature {name} : dense{size}")
            if project_as_tower and feature.use_projection:
                towers.append(feature)
            else:
                self.members[feature.name] = (name, self._dense_segment(feature))
        for feature in towers:
            self.members[feature.name] = self._projection_tower(feature)

    def feature_group(self, wanted: str, features: list, detach: bool = False) -> str:
        """``group wanted = [...]`` of NextRec features, in NextRec's concat order.

        NextRec concatenates the sparse and sequence embeddings in list order,
        then the dense values in list order. ``detach``: every member through
        ``stopgrad``.
        """
        ordered = [f for f in features if not _dense(f)] + [f for f in features if _dense(f)]
        members = [self.members[f.name] for f in ordered]
        name = self.spec.fresh(wanted)
        texts = [f"stopgrad({m})" if detach else m for m, _ in members]
        self.spec.add(f"group {name} = [{', '.join(texts)}]")
        self.segments_of[name] = [segment for _, segment in members]
        return name

    def ordered(self, features: list) -> list[str]:
        """The spec nodes of NextRec features in NextRec's concat order (see ``feature_group``)."""
        ordered = [f for f in features if not _dense(f)] + [f for f in features if _dense(f)]
        return [self.members[f.name][0] for f in ordered]

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

    def _projection_tower(self, feature) -> tuple[str, Segment]:
        """NextRec's projection of a dense feature as towers reading it (an mlp, then linear)."""
        projection = self.model.embedding.dense_transforms[feature.name]
        modules = list(projection) if isinstance(projection, nn.Sequential) else [projection]
        where = f"{self.where}.embedding.dense_transforms.{feature.name}"
        block, out = read_mlp(nn.Sequential(*modules), output=True, where=where)
        source = feature.name
        if block.dims:
            hidden = self.spec.fresh(f"{feature.name}_hidden")
            self.spec.add(f"tower {hidden} = {block.text(source)}")
            self.weights[hidden] = block
            source = hidden
        name = self.spec.fresh(f"{feature.name}_proj")
        lin = linear(out)
        block = Block([out.out_features], "none", layers=[Layer(lin.weight, lin.bias)])
        self.spec.add(f"tower {name} = {block.text(source)}")
        self.weights[name] = block
        return name, Segment(out.out_features)

    def folds(self, source: str) -> list[Segment] | None:
        """The segments to fold into a Linear reading ``source`` (only feature groups have them)."""
        return self.segments_of.get(source)

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
        task = task or self.tasks[index][0]
        block, out = read_mlp(mlp.mlp, output=True, where=f"{self.where}.{where}")
        reads = source
        if block.dims:
            reads = self.spec.fresh(f"{task}_net")
            self.spec.add(f"tower {reads} = {block.text(source)}")
            self.weights[reads] = fold_block_input(block, self.folds(source))
        return self.head(index, out, reads, task)

    def head(self, index: int, out: nn.Linear, reads: str, task: str | None = None) -> str:
        """Task ``index``'s head: ``out`` (a Linear(d, 1)) reading ``reads``; returns its name.

        NextRec's prediction bias for the task is added to the head's bias;
        the head has no bias only where neither ``out`` nor NextRec has one.
        """
        target, kind = self.tasks[index]
        task = task or target
        head = fold_input(linear(out), self.folds(reads))
        has_bias = out.bias is not None or projects(self.folds(reads))
        bias = self.model.head.prediction.bias
        if bias is not None:
            head = Linear(head.weight, head.bias + bias.detach()[index])
            has_bias = True
        self.weights[task] = head
        options = "" if has_bias else ", bias=false"
        if task == target:
            if kind not in _KINDS:
                raise ConversionError(
                    f"{self.where}: task kind {kind!r} has no counterpart in mtlc"
                )
            kind_text = _KINDS[kind].format(label=target, options=options)
            self.task_lines.append(f"task {task} : {kind_text} = {reads}")
        else:
            latent = "binary" if has_bias else "binary(bias=false)"
            self.task_lines.append(f"task {task} : {latent} = {reads}")
        return task

    def softmax_gate(
        self, name: str, mlp: nn.Module, source: str, over: list[str], where: str
    ) -> None:
        """``gate name = softmax(source, hidden=...) over [...]`` from a NextRec ``MLP``."""
        net = read_net(mlp.mlp, where=f"{self.where}.{where}")
        self.spec.add(f"gate {name} = softmax({source}{net.options()}) over [{', '.join(over)}]")
        self.weights[name] = fold_net_input(net, self.folds(source))

    def sigmoid_gate(
        self, name: str, nets: list[Net], cond: str, over: str, scale: float, where: str, pool: bool
    ) -> None:
        """``gate name = sigmoid(cond, hidden=..., scale=C) over [over]``.

        It computes ``over * C * sigmoid(net(cond))``: one net scales a
        vector; over a pool, net e scales expert e.
        """
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ConversionError(
                f"{self.where}.{where}: gate scale factor {scale} (mtlc's sigmoid gates need a "
                "finite scale > 0)"
            )
        if len({net.options() for net in nets}) != 1:
            raise ConversionError(f"{self.where}.{where}: the gates of one pool differ in shape")
        written = f"{int(scale)}" if scale.is_integer() else repr(scale)
        options = nets[0].options() + ("" if scale == 1.0 else f", scale={written}")
        self.spec.add(f"gate {name} = sigmoid({cond}{options}) over [{over}]")
        folded = [fold_net_input(net, self.folds(cond)) for net in nets]
        self.weights[name] = folded if pool else folded[0]


# -- the models ---------------------------------------------------------------------------


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


def _hmoe(r: _Reader) -> None:
    """MMoE, then task t mixes every task's tower: its own live, the others' through stopgrad.

    NextRec mixes the towers' features with ``softmax(task_weights[t](all))``
    in task order, then applies task t's bias-free ``tower_logits[t]``, which
    becomes the head (with the prediction bias as its bias).
    """
    model, tasks = r.model, [task for task, _ in r.tasks]
    shared = r.spec.fresh("shared")
    r.pool(shared, model.experts, "experts", r.group)
    gates = [r.spec.fresh(f"to_{task}") for task in tasks]
    for t, gate in enumerate(gates):
        r.softmax_gate(gate, model.gates[t], r.group, [shared], f"gates.{t}")
    features = []
    for t, (task, gate) in enumerate(zip(tasks, gates)):
        block, _ = read_mlp(model.towers[t].mlp, output=False, where=f"{r.where}.towers.{t}")
        if not block.dims:  # NextRec's MLP with neither hidden nor output layer: the identity
            features.append(gate)
            continue
        tower = r.spec.fresh(f"{task}_net")
        r.spec.add(f"tower {tower} = {block.text(gate)}")
        r.weights[tower] = block
        features.append(tower)
    for t, task in enumerate(tasks):
        fused = r.spec.fresh(f"{task}_fused")
        over = [f if k == t else f"stopgrad({f})" for k, f in enumerate(features)]
        r.softmax_gate(fused, model.task_weights[t], r.group, over, f"task_weights.{t}")
        r.head(t, model.tower_logits[t], fused)


def _poso_net(gate: nn.Module, where: str) -> Net:
    """A ``POSOGate`` (``fc1 -> act -> fc2``; the gate applies sigmoid and scale) as a Net."""
    first = linear(gate.fc1)
    prelu = gate.act if isinstance(gate.act, nn.PReLU) else None
    hidden = Block(
        [gate.fc1.out_features],
        activation_of(gate.act, f"{where}.act"),
        layers=[Layer(first.weight, first.bias, prelu=prelu)],
    )
    return Net(hidden, linear(gate.fc2))


def _poso(r: _Reader) -> None:
    """POSO: the main features feed the network, the pc features its sigmoid gates.

    ``architecture="mlp"``: per task, every layer ``mlp`` then its gate
    (NextRec's dropout after the gate is the mlp's dropout before it: equal
    in eval, the same distribution in training), then the head.
    ``architecture="mmoe"``: experts on main, one gate per expert on pc,
    softmax task gates on main over the gated experts, towers and heads.
    """
    model, tasks = r.model, [task for task, _ in r.tasks]
    main = r.feature_group("main", model.main_features)
    pc = r.feature_group("pc", model.pc_features)
    if model.architecture == "mmoe":
        mmoe = model.mmoe
        if not mmoe.gate_use_softmax:
            raise ConversionError(
                f"{r.where}.mmoe: gate_use_softmax=False mixes the experts with raw, "
                "unnormalised logits; mtlc's gates are softmax gates"
            )
        shared = r.spec.fresh("shared")
        r.pool(shared, mmoe.experts, "mmoe.experts", main)
        gated = r.spec.fresh("shared_pc")
        where = "mmoe.expert_pc_gates"
        nets = [_poso_net(g, f"{where}.{e}") for e, g in enumerate(mmoe.expert_pc_gates)]
        scales = {float(g.scale_factor) for g in mmoe.expert_pc_gates}
        r.sigmoid_gate(gated, nets, pc, shared, scales.pop(), where, pool=True)
        gates = [r.spec.fresh(f"to_{task}") for task in tasks]
        for gate, module in zip(gates, mmoe.gates):
            r.spec.add(f"gate {gate} = softmax({main}) over [{gated}]")
            r.weights[gate] = fold_input(linear(module), r.folds(main))
        for t, gate in enumerate(gates):
            r.tower_and_head(t, model.towers[t], gate, f"towers.{t}")
        return
    for t, task in enumerate(tasks):
        tower = model.towers[t]
        dropout = float(tower.dropout.p) if tower.dropout is not None else 0.0
        source = main
        with r.spec.together():
            for k, layer in enumerate(tower.layers):
                where = f"towers.{t}.layers.{k}"
                lin = linear(layer.linear)
                prelu = layer.act if isinstance(layer.act, nn.PReLU) else None
                block = Block(
                    [layer.linear.out_features],
                    activation_of(layer.act, f"{r.where}.{where}.act"),
                    dropout,
                    layers=[Layer(lin.weight, lin.bias, prelu=prelu)],
                    # a projection folded into a bias-free Linear gives it a bias
                    bias=layer.linear.bias is not None or projects(r.folds(source)),
                )
                hidden = r.spec.fresh(f"{task}_h{k + 1}")
                r.spec.add(f"tower {hidden} = {block.text(source)}")
                r.weights[hidden] = fold_block_input(block, r.folds(source))
                source = r.spec.fresh(f"{task}_g{k + 1}")
                net = _poso_net(layer.gate, f"{r.where}.{where}.gate")
                scale = layer.gate.scale_factor
                r.sigmoid_gate(source, [net], pc, hidden, scale, f"{where}.gate", pool=False)
        r.head(t, model.tower_heads[t], source)


def _pepnet(r: _Reader) -> None:
    """EPNet scales all features by a gate on [stopgrad(all), stopgrad(domain)];
    each task's PPNet scales the input of each of its layers by a gate on
    [stopgrad(domain, user, item), stopgrad(EPNet's output)].

    NextRec's projections of dense features are towers here (``_Reader``):
    EPNet multiplies the projected values elementwise, so they cannot fold.
    """
    model, tasks = r.model, [task for task, _ in r.tasks]
    domain = r.ordered(model.domain_features)
    priors = domain + r.ordered(model.user_features) + r.ordered(model.item_features)
    ep_in = r.spec.fresh("ep_in")
    r.spec.add(f"group {ep_in} = [{', '.join(f'stopgrad({m})' for m in [r.group, *domain])}]")
    epnet = r.spec.fresh("epnet")
    net = read_net(model.epnet.gate.mlp, where=f"{r.where}.epnet.gate", sigmoid=True)
    r.sigmoid_gate(epnet, [net], ep_in, r.group, model.epnet.scale_factor, "epnet", pool=False)
    pp_in = r.spec.fresh("pp_in")
    r.spec.add(f"group {pp_in} = [{', '.join(f'stopgrad({m})' for m in [*priors, epnet])}]")
    for t, task in enumerate(tasks):
        with r.spec.together():
            _ppnet(r, t, task, epnet, pp_in)


def _ppnet(r: _Reader, t: int, task: str, epnet: str, pp_in: str) -> None:
    """Task t's PPNet: per layer a gate on the layer's input, then the layer.

    The last gate (scale 1) scales the input of the output Linear: the head.
    """
    block = r.model.ppnet_blocks[t]
    source = epnet
    last = len(block.gate_layers) - 1
    for k, (gate, layer) in enumerate(zip(block.gate_layers, block.mlp_layers)):
        where = f"ppnet_blocks.{t}.gate_layers.{k}"
        name = r.spec.fresh(f"{task}_g{k}")
        net = read_net(gate.gate.mlp, where=f"{r.where}.{where}.gate", sigmoid=True)
        r.sigmoid_gate(name, [net], pp_in, source, gate.scale_factor, where, pool=False)
        if k == last:
            r.head(t, layer, name)
            return
        where = f"{r.where}.ppnet_blocks.{t}.mlp_layers.{k}"
        hidden, _ = read_mlp(layer, output=False, where=where)
        source = r.spec.fresh(f"{task}_h{k + 1}")
        r.spec.add(f"tower {source} = {hidden.text(name)}")
        r.weights[source] = hidden


# -- APG --------------------------------------------------------------------------------

# NextRec's generator of each rt.APG generator (``specific_<x>``)
_APG_GENERATORS = {
    "specific_weight_kk": "generate_kk",
    "specific_bias_kk": "generate_k",
    "specific_weight_nk": "generate_nk",
    "specific_bias_nk": "generate_nk_bias",
    "specific_weight_km": "generate_km",
    "specific_bias_km": "generate_km_bias",
}
_APG_POINTWISE = ("none", "relu", "gelu", "silu", "tanh", "sigmoid")  # inner and generate


def _apg_projects_as_towers(model: nn.Module) -> bool:
    """Whether APG's dense projections become towers rather than folding.

    A linear projection folds into the first shared factor (``x @ U``, or
    ``x @ P1`` with ``use_mf_p``) and into the generators reading the scene;
    without ``use_uv_shared`` the first factor is generated (its fold would
    need ``generate_activation`` none), and an mlp projection does not fold.
    """
    if not model.apg_layers[0].use_uv_shared:
        return True
    transforms = model.embedding.dense_transforms
    return any(
        isinstance(transforms[f.name], nn.Sequential) and len(transforms[f.name]) != 1
        for f in model.dense_features
        if f.use_projection
    )


def _apg(r: _Reader) -> None:
    """One ``apg`` tower on all features, by the scene group; each task's head reads it.

    The heads are NextRec's ``towers[t]`` (a Linear(d, 1)) plus the prediction bias.
    """
    model = r.model
    layers = list(model.apg_layers)
    shared = layers[0].use_uv_shared
    expand = shared and layers[0].use_mf_p  # NextRec ignores use_mf_p without use_uv_shared
    scene = r.feature_group("scene_in", list(model.scene_features), detach=model.detach_scene)
    options = _apg_options(r, layers)
    ranks = [layer.k_dim for layer in layers]
    text = f"apg({r.group}, {[layer.output_dim for layer in layers]}, by={scene}, rank={ranks}"
    if expand:
        text += f", expand={[layer.p_dim for layer in layers]}"
    if not shared:
        text += ", shared=false"
    for key, default in (("inner", "none"), ("generate", "none"), ("activation", "relu")):
        if options[key] != default:
            text += f", {key}={options[key]}"
    tower = r.spec.fresh("shared")
    r.spec.add(f"tower {tower} = {text})")
    r.weights[tower] = State(_apg_state(r, layers, scene, expand))
    for t, head in enumerate(model.towers):
        r.head(t, head, tower)


def _apg_options(r: _Reader, layers: list[nn.Module]) -> dict[str, str]:
    """``inner``, ``generate`` and ``activation``, the same in every layer, or a ConversionError."""
    seen: dict[str, set[str]] = {"inner": set(), "generate": set(), "activation": set()}
    for i, layer in enumerate(layers):
        where = f"{r.where}.apg_layers.{i}"
        inner = layer.inner_activation
        seen["inner"].add("none" if inner is None else activation_of(inner, f"{where}.inner"))
        for generator in _APG_GENERATORS:
            if hasattr(layer, generator):
                modules = list(getattr(layer, generator).mlp)
                act = modules[1] if len(modules) > 1 else nn.Identity()
                seen["generate"].add(activation_of(act, f"{where}.{generator}.mlp.1"))
        seen["activation"].add(activation_of(layer.activation, f"{where}.activation"))
    options = {}
    for key, values in seen.items():
        if len(values) != 1:
            raise ConversionError(
                f"{r.where}.apg_layers: layers differ in {key} ({sorted(values)})"
            )
        options[key] = values.pop()
    for key, nextrec_key in (("inner", "inner_activation"), ("generate", "generate_activation")):
        if options[key] not in _APG_POINTWISE:
            raise ConversionError(
                f"{r.where}.apg_layers: {nextrec_key}={options[key]!r} learns a slope per use; "
                f"mtlc's apg {key} is one of {', '.join(_APG_POINTWISE)}"
            )
    return options


def _apg_state(r: _Reader, layers: list[nn.Module], scene: str, expand: bool) -> dict:
    """``rt.APG``'s state_dict from NextRec's ``apg_layers``, projections folded in.

    NextRec's ``shared_<x>`` is ``layers.{l}.<x>``, its ``specific_<x>.mlp.0.*``
    the generator's ``layers.{l}.<generator>.*``, its ``activation.weight``
    (a PReLU) ``layers.{l}.activation.weight``. A linear projection of a
    feature in x folds into layer 0's first shared factor (``x @ W``: the
    transpose of a Linear's weight), of a scene feature into every generator.
    """
    state = {}
    for i, layer in enumerate(layers):
        prefix = f"layers.{i}."
        for key, value in layer.named_parameters():
            if key.startswith("shared_"):
                state[prefix + key.removeprefix("shared_")] = value.detach()
            elif key == "activation.weight":
                state[prefix + key] = value.detach()
        for generator, ours in _APG_GENERATORS.items():
            if hasattr(layer, generator):
                folded = fold_input(linear(getattr(layer, generator).mlp[0]), r.folds(scene))
                state[f"{prefix}{ours}.weight"] = folded.weight
                state[f"{prefix}{ours}.bias"] = folded.bias
    if projects(r.segments):  # only with shared U (see _apg_projects_as_towers)
        first = "np" if expand else "nk"
        weight, bias = f"layers.0.weight_{first}", f"layers.0.bias_{first}"
        folded = fold_input(Linear(state[weight].T, state[bias]), r.segments)
        state[weight], state[bias] = folded.weight.T.contiguous(), folded.bias
    return state


# -- Cross-Stitch -------------------------------------------------------------------------


def _cross_stitch(r: _Reader) -> None:
    """The shared layer (a tower, or the features themselves), then per layer each task's
    one-layer column and its cross-stitch unit, then each task's tower and head.

    NextRec's unit ``cross_stitch_weight [T, T, d]`` gives task t ``sum_s W[t, s] * h_s``:
    task t's unit is ``cross_stitch(t_h) over [h_1, ..., h_T]`` with weights ``W[t]``.
    NextRec calls its shared layer once per task: in training each call draws its own
    dropout mask and moves a batch norm's statistics once more; mtlc runs it once (the
    same in eval). See docs/nextrec.md.
    """
    model, tasks = r.model, [task for task, _ in r.tasks]
    source = r.group
    if isinstance(model.shared_layer, nn.Module) and hasattr(model.shared_layer, "mlp"):
        block = r.block(model.shared_layer, "shared_layer", r.group)
        source = r.spec.fresh("shared")
        r.spec.add(f"tower {source} = {block.text(r.group)}")
        r.weights[source] = block
    inputs = [source] * len(tasks)
    for level, (columns, unit) in enumerate(zip(model.task_layers, model.cross_stitch_layers), 1):
        r.spec.add("")
        hidden = []
        for t, (task, mlp) in enumerate(zip(tasks, columns)):
            block = r.block(mlp, f"task_layers.{level - 1}.{t}", inputs[t])
            name = r.spec.fresh(f"{task}_h{level}")
            r.spec.add(f"tower {name} = {block.text(inputs[t])}")
            r.weights[name] = block
            hidden.append(name)
        weight = unit.cross_stitch_weight.detach()
        inputs = []
        for t, task in enumerate(tasks):
            name = r.spec.fresh(f"{task}_s{level}")
            r.spec.add(f"gate {name} = cross_stitch({hidden[t]}) over [{', '.join(hidden)}]")
            r.weights[name] = weight[t].clone()
            inputs.append(name)
    r.spec.add("")
    for t in range(len(tasks)):
        r.tower_and_head(t, model.towers[t], inputs[t], f"towers.{t}")


# -- SNR-Trans ----------------------------------------------------------------------------


def _snr_trans(r: _Reader) -> None:
    """The first layer's experts as a pool on the features; per layer, one ``snr`` gate per
    route (an expert of the next layer, or a task), each next-layer expert a tower on its
    route; each task's tower and head on its route.

    NextRec's gate layer keeps ``u [N, E]`` and one ``alpha`` and computes
    ``z = clamp(1.2 sigmoid(logit(u) + log(alpha) / 0.9) - 0.1, 0, 1)``: output o's
    gate gets the logits ``logit(u[o]) + log(alpha) / 0.9`` (the same function; in
    training each route's logits move on their own, where NextRec's alpha is shared by
    the layer) and the matrices ``trans_matrix[o]``.
    """
    model, tasks = r.model, [task for task, _ in r.tasks]
    layers = list(zip(model.expert_layers, model.gates))
    first = r.spec.fresh("first")
    r.pool(first, layers[0][0], "expert_layers.0", r.group)
    columns = [first]
    for level, (_, gate) in enumerate(layers, start=1):
        last = level == len(layers)
        u, alpha = gate.u.detach(), gate.alpha.detach()
        if not bool((alpha > 0).all()) or not bool(((u > 0) & (u < 1)).all()):
            raise ConversionError(
                f"{r.where}.gates.{level - 1}: alpha <= 0 or u outside (0, 1): NextRec's own "
                "gate is NaN there"
            )
        logits = torch.log(u) - torch.log1p(-u) + torch.log(alpha) / gate.beta
        routes = tasks if last else [chr(ord("a") + e) for e in range(gate.num_outputs)]
        names = []
        r.spec.add("")
        for o, route in enumerate(routes):
            name = r.spec.fresh(f"to_{route}" if last else f"route{level}_{route}")
            r.spec.add(f"gate {name} = snr() over [{', '.join(columns)}]")
            r.weights[name] = State(
                {"logit": logits[o].clone(), "transform": gate.trans_matrix[o].detach().clone()}
            )
            names.append(name)
        if last:
            columns = names
            break
        r.spec.add("")
        columns = []
        for e, (name, mlp) in enumerate(zip(names, layers[level][0])):
            block = r.block(mlp, f"expert_layers.{level}.{e}", name)
            tower = r.spec.fresh(f"expert{level + 1}_{routes[e]}")
            r.spec.add(f"tower {tower} = {block.text(name)}")
            r.weights[tower] = block
            columns.append(tower)
    r.spec.add("")
    for t in range(len(tasks)):
        r.tower_and_head(t, model.towers[t], columns[t], f"towers.{t}")


# -- DCN and DCNv2 (ranking models: one task) -------------------------------------------


def _dcn(r: _Reader) -> None:
    """DCN: a ``cross`` tower (vector form) and, with ``mlp_params``, an ``mlp`` beside it.

    The cross network's ``x0 *`` is not linear in a projected dense value, so
    projections are towers that the group reads (``_Reader``'s
    ``project_as_tower``), not folds.
    """
    model = r.model
    crossed = _cross_tower(r, model.cross_network, "cross_network")
    deep = [_deep_tower(r, model.mlp, r.group, "mlp")] if model.use_dnn else []
    _final(r, [crossed, *deep])


def _dcn_v2(r: _Reader) -> None:
    """DCNv2: its cross network (``matrix`` or ``mix``), arranged as NextRec's ``architecture``
    says: ``crossnet_only``, ``parallel`` (the cross tower and an mlp on the input, side by
    side), ``stacked`` (the mlp reads the cross tower) or ``stacked_parallel`` (both mlps).
    """
    model = r.model
    crossed = _cross_tower(r, model.cross_network, "cross_network")
    reads = [crossed]
    if model.stacked_mlp is not None:
        reads = [_deep_tower(r, model.stacked_mlp, crossed, "stacked_mlp")]
    if model.parallel_mlp is not None:
        reads.append(_deep_tower(r, model.parallel_mlp, r.group, "parallel_mlp"))
    _final(r, reads)


def _cross_tower(r: _Reader, network: nn.Module, where: str) -> str:
    """``tower cross = cross(all, layers=L, ...)`` from NextRec's ``CrossNetwork`` (DCN),
    ``CrossNetV2`` or ``CrossNetMix`` (DCNv2), with ``rt.Cross``'s state.

    NextRec's layers are lists of modules; ``rt.Cross`` stacks them: a vector
    layer's ``Linear(D, 1)`` weight is a row of ``weight [L, D]``, a matrix
    layer's ``Linear(D, D)`` weight a slice of ``weight [L, D, D]``, a mix
    layer's ``u``, ``v``, ``c`` slices of ``[L, K, ...]``, and its gating
    Linears ``(D -> 1)`` the rows of ``gate [K, D]``. DCN and ``CrossNetV2`` add
    the bias outside the product (``CrossNetV2``: unlike the DCNv2 paper),
    ``CrossNetMix`` inside.
    """
    name = type(network).__name__
    layers = network.num_layers
    bias = torch.stack([b.detach().reshape(-1) for b in _layer_list(network, "b", "bias")])
    if name == "CrossNetwork":
        options = ""
        state = {"weight": torch.stack([w.weight.detach()[0] for w in network.w])}
    elif name == "CrossNetV2":
        options = ", form=matrix, bias=outside"
        state = {"weight": torch.stack([w.weight.detach() for w in network.w])}
    elif name == "CrossNetMix":
        rank, experts = network.u_list[0].shape[-1], network.num_experts
        options = f", form=mix, rank={rank}, experts={experts}"
        state = {
            key: torch.stack([p.detach() for p in getattr(network, f"{key}_list")])
            for key in ("u", "v", "c")
        }
        state["gate"] = torch.cat([g.weight.detach() for g in network.gating])
    else:
        raise ConversionError(f"{r.where}.{where}: {name} has no counterpart in mtlc")
    state["bias"] = bias
    tower = r.spec.fresh("crossed")
    r.spec.add(f"tower {tower} = cross({r.group}, layers={layers}{options})")
    r.weights[tower] = State(state)
    return tower


def _layer_list(network: nn.Module, *names: str) -> nn.ParameterList:
    """The first of ``names`` that ``network`` has (DCN's and DCNv2's bias lists differ)."""
    return next(getattr(network, n) for n in names if hasattr(network, n))


def _deep_tower(r: _Reader, mlp: nn.Module, source: str, where: str) -> str:
    """``tower deep = mlp(source, ...)`` from a NextRec ``MLP`` without output layer; an
    MLP with no layer at all is the identity, and then the tower is ``source`` itself."""
    block, _ = read_mlp(mlp.mlp, output=False, where=f"{r.where}.{where}")
    if not block.dims:
        return source
    tower = r.spec.fresh("deep" if where != "stacked_mlp" else "stacked")
    r.spec.add(f"tower {tower} = {block.text(source)}")
    r.weights[tower] = fold_block_input(block, r.folds(source))
    return tower


def _final(r: _Reader, reads: list[str]) -> None:
    """The task's head: NextRec's ``final_layer`` on the concatenation of ``reads``."""
    source = reads[0]
    if len(reads) > 1:
        source = r.spec.fresh("both")
        r.spec.add(f"group {source} = [{', '.join(reads)}]")
    r.head(0, r.model.final_layer, source)
