"""From NextRec 0.4.28's preview STAR to mtlc: the spec of a STAR model, and its weights.

    spec = spec_from(star_model)               # the equivalent .mtl text
    Model = mtlc.load_model("model.mtl")       # after writing spec to model.mtl
    model = Model()
    load_weights(model, star_model)            # same predictions, to float rounding

NextRec 0.4.28 ships STAR as ``nextrec/models/multi_task/[pre]star.py`` (load
it with ``importlib.util.spec_from_file_location``); it is gone in 0.6.14,
and the two versions cannot be imported side by side. So this module never
imports NextRec: it reads the model by its attributes (``embedding``,
``all_features``, ``star_layers``, ``activation_layers``, ``dropout_layers``,
``domain_bn``, ``final_layer``, ``prediction_layer``, ``target_columns``,
``task``) and works in whichever environment the model was built.

What NextRec's STAR computes (tasks are its domains; every row runs every
task's network): for task t, ``h_{l+1} = Dropout_l(phi_l((W^t_l + W^s_l) h_l
+ b^t_l + b^s_l))``, then ``(w^t_F + w^s_F) . h_L + b^t_F + b^s_F`` plus the
prediction bias. That is, exactly, a per-task MLP whose weights are the sums,
so the spec is, per task, ``tower <task>_net = mlp(all, dims, activation=...,
dropout=...)`` and a head:

- each layer's weight and bias are ``W^t + W^s`` and ``b^t + b^s`` (``W^t``
  and ``b^t`` alone with ``use_shared=False``);
- the per-layer activation module is shared by the tasks in NextRec: a PReLU's
  one slope is copied into every task's tower;
- the final ``SharedSpecificLinear(d_L, 1)`` is the head: ``w^t_F + w^s_F``,
  bias ``b^t_F + b^s_F`` plus the task's prediction bias;
- a dense feature's linear projection folds into each tower's first layer.

Dropout draws independently per task pass in NextRec and per tower in mtlc:
the same distribution. ``norm_type="batch_norm"`` builds a ``DomainBatchNorm``
that NextRec applies only when ``forward`` gets a ``domain_mask``, which its
train and predict loops never pass: it is converted as no norm, and the spec
says so in a comment; ``norm_type="layer_norm"`` is ignored by NextRec, and
so here. The fold is exact in function, not in parametrisation: training the
converted model trains ``W^t + W^s`` per task, not a shared centre.

Refused (``ConversionError``): another model, an activation mtlc lacks (or a
PReLU with a slope per channel), layers that differ in activation or dropout,
a sequence pooled other than by mean or sum, without ``max_len`` or padded
with an id other than 0, a task kind other than binary or regression, a
prediction layer that returns logits, and names a spec cannot hold.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlc.runtime.interop import _copy
from mtlc.runtime.interop._common import (
    Block,
    Conversion,
    ConversionError,
    Layer,
    Linear,
    Segment,
    SpecWriter,
    activation_of,
    fold_block_input,
    fold_input,
    linear,
)

__all__ = ["spec_from", "load_weights", "convert", "ConversionError"]

VERSION = "0.4.28"
_PARTS = (
    "embedding",
    "all_features",
    "star_layers",
    "activation_layers",
    "dropout_layers",
    "final_layer",
    "prediction_layer",
    "target_columns",
    "task",
)
_KINDS = {"binary": "binary", "regression": "regression"}
# the spec's comment where NextRec built a DomainBatchNorm
DEAD_NORM = "# NextRec's DomainBatchNorm never runs (forward gets no domain_mask): no norm here"


def spec_from(star_model: nn.Module, name: str | None = None) -> str:
    """The ``.mtl`` spec that computes what ``star_model`` (NextRec 0.4.28's STAR) computes.

    Args:
        star_model: a NextRec 0.4.28 ``STAR``.
        name: the model (class) name; defaults to ``STAR``.

    Raises:
        ConversionError: the model uses something mtlc cannot reproduce exactly.
    """
    spec = convert(star_model, name).spec
    _copy.checked(spec)
    return spec


def load_weights(generated_model: nn.Module, star_model: nn.Module) -> None:
    """Copy ``star_model``'s weights, folded, into ``generated_model``, in place.

    ``generated_model`` is an instance of the class compiled from
    ``spec_from(star_model)``, at ``-O0`` or ``-O1``.

    Raises:
        ConversionError: the models do not correspond (a missing module, a shape).
    """
    _copy.load(generated_model, convert(star_model))


def convert(star_model: nn.Module, name: str | None = None) -> Conversion:
    """The spec of ``star_model`` and its weights per spec node (see ``_common``)."""
    missing = [part for part in _PARTS if not hasattr(star_model, part)]
    if type(star_model).__name__ != "STAR" or missing:
        raise ConversionError(
            f"{type(star_model).__name__} is not NextRec {VERSION}'s STAR"
            + (f" (it has no {', '.join(missing)})" if missing else "")
            + "; for NextRec 0.6.14's models use mtlc.runtime.interop.nextrec"
        )
    return _Reader(star_model, name).read()


def _kind(feature: object) -> str:
    """``sparse``, ``sequence`` or ``dense``: the NextRec feature class, by name (no import)."""
    names = {cls.__name__ for cls in type(feature).__mro__}
    for kind, cls in (
        ("sequence", "SequenceFeature"),
        ("sparse", "SparseFeature"),
        ("dense", "DenseFeature"),
    ):
        if cls in names:
            return kind
    raise ConversionError(f"STAR: feature {feature!r} is of no kind NextRec {VERSION} knows")


class _Reader:
    """Writes the spec and collects the weights of one STAR model."""

    def __init__(self, model: nn.Module, name: str | None) -> None:
        self.model = model
        self.where = "STAR"
        self.spec = SpecWriter(
            name or "STAR",
            f"Converted from a NextRec {VERSION} STAR: per task, shared plus specific weights",
        )
        self.weights: dict[str, object] = {}
        self.segments: list[Segment] = []

    def read(self) -> Conversion:
        tasks = self._tasks()
        group = self._features()
        blocks, heads = self._networks(len(tasks))
        if getattr(self.model, "domain_bn", None) is not None:
            self.spec.add(DEAD_NORM)
        lines = []
        for t, (task, kind) in enumerate(tasks):
            source = group
            if blocks[t].dims:
                source = self.spec.fresh(f"{task}_net")
                self.spec.add(f"tower {source} = {blocks[t].text(group)}")
                self.weights[source] = fold_block_input(blocks[t], self.segments)
                self.weights[task] = heads[t]
            else:  # no hidden layer (NextRec refuses to build one): the head reads the features
                self.weights[task] = fold_input(heads[t], self.segments)
            lines.append(f"task {task} : {kind}(label={task}) = {source}")
        for line in lines:
            self.spec.add(line)
        return Conversion(self.spec.text(), self.weights)

    # -- tasks and features -----------------------------------------------------------

    def _tasks(self) -> list[tuple[str, str]]:
        """(name, kind) per task: the target columns, in NextRec's output order."""
        targets = list(self.model.target_columns)
        if not targets:
            raise ConversionError(f"{self.where}: no target, so no task to name")
        kinds = self.model.task
        kinds = [kinds] * len(targets) if isinstance(kinds, str) else list(kinds)
        if len(kinds) != len(targets):
            raise ConversionError(
                f"{self.where}: {len(targets)} targets but {len(kinds)} task kinds"
            )
        prediction = getattr(self.model.prediction_layer, "prediction", self.model.prediction_layer)
        if getattr(prediction, "return_logits", False):
            raise ConversionError(
                f"{self.where}.prediction_layer: return_logits=True has no counterpart in mtlc "
                "(a binary task's prediction is its probability)"
            )
        tasks = []
        for target, kind in zip(targets, kinds):
            if str(kind).lower() not in _KINDS:
                raise ConversionError(
                    f"{self.where}: task kind {kind!r} of {target!r} has no counterpart in mtlc"
                )
            tasks.append((self.spec.claim(target, "target"), _KINDS[str(kind).lower()]))
        return tasks

    def _features(self) -> str:
        """Declare the features and ``group all`` in NextRec's concat order; returns its name.

        NextRec concatenates the sparse and sequence embeddings in the order
        of ``all_features``, then the dense values (projected or not).
        """
        features = list(self.model.all_features)
        embedded = [f for f in features if _kind(f) != "dense"]
        dense = [f for f in features if _kind(f) == "dense"]
        embedding = self.model.embedding
        owners: dict[str, str] = {}
        members = []
        for feature in embedded:
            name = self.spec.claim(feature.name, "feature")
            table = embedding.embed_dict[feature.embedding_name]
            kind = f"vocab={table.num_embeddings}, dim={table.embedding_dim}"
            if _kind(feature) == "sequence":
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
            self.segments.append(Segment(table.embedding_dim))
        for feature in dense:
            name = self.spec.claim(feature.name, "feature")
            size = "" if feature.input_dim == 1 else f"(dim={feature.input_dim})"
            self.spec.add(f"feature {name} : dense{size}")
            members.append(name)
            self.segments.append(self._dense_segment(feature))
        if not members:
            raise ConversionError(f"{self.where}: no features")
        group = self.spec.fresh("all")
        self.spec.add(f"group {group} = [{', '.join(members)}]")
        return group

    def _sequence_options(self, feature) -> str:
        if feature.combiner not in ("mean", "sum"):
            raise ConversionError(
                f"{self.where}: sequence feature {feature.name!r} pools with {feature.combiner!r}; "
                "mtlc pools with mean, sum or max (and NextRec's max is not among its combiners)"
            )
        if feature.max_len is None:
            raise ConversionError(
                f"{self.where}: sequence feature {feature.name!r} needs a max_len"
            )
        if feature.padding_idx not in (0, None):  # NextRec masks padding_idx (None: 0)
            raise ConversionError(
                f"{self.where}: sequence feature {feature.name!r} has "
                f"padding_idx={feature.padding_idx}; mtlc excludes id 0 from pooling, so only "
                "padding_idx=0 converts exactly"
            )
        return f"maxlen={feature.max_len}, pool={feature.combiner}"

    def _dense_segment(self, feature) -> Segment:
        """The feature's slice of NextRec's input; a linear projection folds into the towers."""
        if not feature.use_projection:
            return Segment(feature.input_dim)
        projection = self.model.embedding.dense_transforms[feature.name]
        if isinstance(projection, nn.Sequential) and len(projection) == 1:
            projection = projection[0]
        if not isinstance(projection, nn.Linear):
            raise ConversionError(
                f"{self.where}: dense feature {feature.name!r} is projected by "
                f"{type(projection).__name__}; only a linear projection folds exactly"
            )
        return Segment(projection.out_features, linear(projection))

    # -- the networks ------------------------------------------------------------------

    def _networks(self, tasks: int) -> tuple[list[Block], list[Linear]]:
        """Per task, the folded hidden layers (a Block) and the folded head."""
        model = self.model
        layers = list(model.star_layers)
        activations = list(model.activation_layers)
        dropouts = list(model.dropout_layers)
        if not (len(layers) == len(activations) == len(dropouts)):
            raise ConversionError(
                f"{self.where}: {len(layers)} star layers, {len(activations)} activations and "
                f"{len(dropouts)} dropouts"
            )
        names = {
            activation_of(act, f"{self.where}.activation_layers.{i}")
            for i, act in enumerate(activations)
        }
        rates = {self._dropout(d, i) for i, d in enumerate(dropouts)}
        for what, values in (("activation", names), ("dropout", rates)):
            if len(values) > 1:
                raise ConversionError(
                    f"{self.where}: layers differ in {what} ({sorted(map(str, values))})"
                )
        activation = names.pop() if names else "relu"
        dropout = rates.pop() if rates else 0.0
        blocks = [Block([], activation, dropout) for _ in range(tasks)]
        for i, (layer, act) in enumerate(zip(layers, activations)):
            prelu = act if isinstance(act, nn.PReLU) else None  # NextRec's one slope, every task
            for t, block in enumerate(blocks):
                folded = self._fold(layer, t, f"star_layers.{i}", tasks)
                block.layers.append(Layer(folded.weight, folded.bias, prelu=prelu))
                block.dims.append(folded.weight.shape[0])
        heads = []
        bias = self._prediction_bias(tasks)
        for t in range(tasks):
            head = self._fold(model.final_layer, t, "final_layer", tasks)
            if head.weight.shape[0] != 1:
                raise ConversionError(
                    f"{self.where}.final_layer: {head.weight.shape[0]} outputs per task, "
                    "mtlc's heads have 1"
                )
            heads.append(Linear(head.weight, head.bias + bias[t : t + 1]))
        return blocks, heads

    def _fold(self, layer: nn.Module, t: int, where: str, tasks: int) -> Linear:
        """A ``SharedSpecificLinear`` for task t as one Linear: ``W^t + W^s``, ``b^t + b^s``."""
        specific = list(layer.specific)
        if len(specific) != tasks:
            raise ConversionError(
                f"{self.where}.{where}: {len(specific)} task-specific Linears for {tasks} tasks"
            )
        own = linear(specific[t])
        shared = getattr(layer, "shared", None)
        if not getattr(layer, "use_shared", False) or shared is None:
            return own
        centre = linear(shared)
        if centre.weight.shape != own.weight.shape:
            raise ConversionError(
                f"{self.where}.{where}: shared {tuple(centre.weight.shape)} and specific "
                f"{tuple(own.weight.shape)} Linears differ in shape"
            )
        return Linear(own.weight + centre.weight, own.bias + centre.bias)

    def _dropout(self, module: nn.Module, i: int) -> float:
        if isinstance(module, nn.Identity):
            return 0.0
        if isinstance(module, nn.Dropout):
            return float(module.p)
        raise ConversionError(
            f"{self.where}.dropout_layers.{i}: {type(module).__name__} is not a Dropout"
        )

    def _prediction_bias(self, tasks: int) -> Tensor:
        """NextRec's per-task prediction bias (zeros where it has none)."""
        final = list(self.model.final_layer.specific)[0]
        prediction = getattr(self.model.prediction_layer, "prediction", self.model.prediction_layer)
        bias = getattr(prediction, "bias", None)
        if bias is None:
            return final.weight.new_zeros(tasks).detach()
        if bias.shape != (tasks,):
            raise ConversionError(
                f"{self.where}.prediction_layer: a bias of shape {tuple(bias.shape)} for {tasks} "
                "tasks of one output each"
            )
        return bias.detach()
