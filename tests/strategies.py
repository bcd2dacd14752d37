"""Hypothesis strategies: random *valid* .mtl specs built from the language's constructs.

``valid_specs()`` draws a ``GeneratedSpec``: the source text plus what the
model must look like (its features and its tasks with their output widths),
so tests can check the compiled model's inputs and outputs. Every construct
of LANGUAGE.md appears: sparse, sequence (with shared tables) and dense
features, groups, expert pools, softmax gates (top, temperature, hidden),
towers, AIT transfers, binary, regression and multiclass tasks, products,
latent tasks, constraints and weightings; plus layout variety (comments,
blank lines, statements continued inside brackets, trailing commas) and
names that collide with Python or torch.nn attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

__all__ = ["GeneratedSpec", "valid_specs", "spec_sources"]

# Valid names that generated code must cope with (mangled as attributes, kept as keys).
AWKWARD_NAMES = (
    "forward",
    "train",
    "to",
    "eval",
    "all",
    "self",
    "batch",
    "logits",
    "parameters",
    "state_dict",
    "input",
    "type",
    "cuda",
    "_hidden",
    "torch",
    "rt",
    "nn",
    "sum",
)


@dataclass
class GeneratedSpec:
    """A generated spec and what its model must expose.

    features: name -> (kind, dim, vocab, maxlen); tasks: name -> (kind, output width).
    """

    source: str
    features: dict[str, tuple] = field(default_factory=dict)
    tasks: dict[str, tuple[str, int]] = field(default_factory=dict)


class _Builder:
    def __init__(self, draw) -> None:
        self.draw = draw
        self.lines: list[str] = []
        self.used: set[str] = set()
        self.vectors: dict[str, int] = {}  # name -> width (one vector per example)
        self.pools: dict[str, tuple[int, int]] = {}  # expert pools: name -> (width, count)
        self.tables: list[tuple[str, int, int]] = []  # (owner, vocab, dim)
        self.out = GeneratedSpec("")
        self.counter = 0
        self.groupable: set[str] = set()  # features and groups: what a group may collect
        self.labels = 0
        self.binary: list[str] = []  # binary tasks, for products and constraints

    def name(self, prefix: str) -> str:
        if self.draw(st.integers(0, 5)) == 0:
            awkward = [n for n in AWKWARD_NAMES if n not in self.used]
            if awkward:
                chosen = self.draw(st.sampled_from(awkward))
                self.used.add(chosen)
                return chosen
        self.counter += 1
        chosen = f"{prefix}{self.counter}"
        self.used.add(chosen)
        return chosen

    def emit(self, line: str) -> None:
        if self.draw(st.integers(0, 6)) == 0:
            self.lines.append(
                self.draw(st.sampled_from(["", "# a comment", "   # indented comment"]))
            )
        comment = self.draw(st.sampled_from(["", "", "", "  # trailing"]))
        self.lines.append(line + comment)

    def widths(self, max_len: int = 3) -> tuple[str, int]:
        dims = self.draw(st.lists(st.integers(1, 12), min_size=1, max_size=max_len))
        return self.listing([str(d) for d in dims]), dims[-1]

    def listing(self, items: list[str]) -> str:
        trailing = "," if items and self.draw(st.booleans()) and self.draw(st.booleans()) else ""
        if len(items) > 1 and self.draw(st.integers(0, 4)) == 0:
            return "[\n    " + ",\n    ".join(items) + trailing + "\n]"
        return "[" + ", ".join(items) + trailing + "]"

    def mlp(self) -> tuple[str, int]:
        source = self.draw(st.sampled_from(sorted(self.vectors)))
        dims, width = self.widths()
        options = []
        if self.draw(st.booleans()):
            activations = ["relu", "gelu", "silu", "tanh", "sigmoid", "prelu", "none"]
            options.append(f"activation={self.draw(st.sampled_from(activations))}")
        if self.draw(st.booleans()):
            options.append(f"dropout={self.draw(st.sampled_from(['0', '0.1', '0.5', '1e-2']))}")
        if self.draw(st.booleans()):
            options.append(f"norm={self.draw(st.sampled_from(['none', 'batch', 'layer']))}")
        return f"mlp({', '.join([source, dims, *options])})", width

    # -- statements -----------------------------------------------------------------

    def feature(self) -> None:
        name = self.name("f")
        kind = self.draw(st.sampled_from(["sparse", "sequence", "dense"]))
        if kind == "dense":
            dim = self.draw(st.sampled_from([1, 1, 2, 3]))
            written = "dense" if dim == 1 and self.draw(st.booleans()) else f"dense(dim={dim})"
            self.emit(f"feature {name} : {written}")
            self.out.features[name] = ("dense", dim, None, None)
            self.vectors[name] = dim
            self.groupable.add(name)
            return
        share = self.tables and self.draw(st.integers(0, 2)) == 0
        if share:
            owner, vocab, dim = self.draw(st.sampled_from(self.tables))
        else:
            owner, vocab, dim = None, self.draw(st.integers(2, 60)), self.draw(st.integers(1, 8))
        vocab_text = f"{vocab:_}" if vocab >= 10 and self.draw(st.booleans()) else str(vocab)
        options = [f"vocab={vocab_text}", f"dim={dim}"]
        maxlen = None
        if kind == "sequence":
            maxlen = self.draw(st.integers(1, 5))
            options.append(f"maxlen={maxlen}")
            if self.draw(st.booleans()):
                options.append(f"pool={self.draw(st.sampled_from(['mean', 'sum', 'max']))}")
        if owner is not None:
            options.append(f"table={owner}")
        self.emit(f"feature {name} : {kind}({', '.join(options)})")
        self.tables.append((name, vocab, dim))
        self.out.features[name] = (kind, dim, vocab, maxlen)
        self.vectors[name] = dim
        self.groupable.add(name)

    def group(self) -> None:
        candidates = sorted(self.groupable)
        members = self.draw(
            st.lists(st.sampled_from(candidates), min_size=1, max_size=4, unique=True)
        )
        name = self.name("g")
        self.emit(f"group {name} = {self.listing(members)}")
        self.vectors[name] = sum(self.vectors[m] for m in members)
        self.groupable.add(name)

    def expert(self) -> None:
        block, width = self.mlp()
        count = self.draw(st.integers(1, 4))
        name = self.name("e")
        written = "" if count == 1 and self.draw(st.booleans()) else f" x{count}"
        self.emit(f"expert {name}{written} = {block}")
        self.pools[name] = (width, count)
        if count == 1:
            self.vectors[name] = width

    def tower(self) -> None:
        block, width = self.mlp()
        name = self.name("t")
        self.emit(f"tower {name} = {block}")
        self.vectors[name] = width

    def gate(self) -> None:
        by_width: dict[int, list[tuple[str, int]]] = {}
        for pool, (width, count) in self.pools.items():
            by_width.setdefault(width, []).append((pool, count))
        for vector, width in self.vectors.items():
            if vector not in self.pools:
                by_width.setdefault(width, []).append((vector, 1))
        width = self.draw(st.sampled_from(sorted(by_width)))
        sources = self.draw(
            st.lists(st.sampled_from(by_width[width]), min_size=1, max_size=3, unique=True)
        )
        experts = sum(count for _, count in sources)
        options = [self.draw(st.sampled_from(sorted(self.vectors)))]
        if self.draw(st.booleans()):
            options.append(f"top={self.draw(st.integers(1, experts))}")
        if self.draw(st.booleans()):
            options.append(f"temperature={self.draw(st.sampled_from(['0.5', '1', '2.0', '1e-1']))}")
        if self.draw(st.integers(0, 3)) == 0:
            hidden = self.draw(st.lists(st.integers(1, 8), min_size=0, max_size=2))
            options.append(f"hidden={self.listing([str(h) for h in hidden])}")
        name = self.name("gate")
        self.emit(
            f"gate {name} = softmax({', '.join(options)})"
            f" over {self.listing([s for s, _ in sources])}"
        )
        self.vectors[name] = width

    def transfer(self) -> bool:
        by_width: dict[int, list[str]] = {}
        for vector, width in self.vectors.items():
            by_width.setdefault(width, []).append(vector)
        pairs = [names for names in by_width.values() if len(names) >= 2]
        if not pairs:
            return False
        names = self.draw(st.sampled_from(pairs))
        current, previous = self.draw(
            st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True)
        )
        name = self.name("tr")
        bias = self.draw(st.sampled_from(["", "", ", bias=true", ", bias=false"]))
        self.emit(f"transfer {name} = ait({current}, from={previous}{bias})")
        self.vectors[name] = self.vectors[current]
        return True

    def label(self) -> str:
        self.labels += 1
        return f"y{self.labels}"

    def task(self, supervised: bool) -> None:
        kind = self.draw(st.sampled_from(["binary", "binary", "regression", "multiclass"]))
        node = self.draw(st.sampled_from(sorted(self.vectors)))
        name = self.name("task")
        options = []
        if kind == "multiclass":
            classes = self.draw(st.integers(2, 5))
            options.append(f"classes={classes}")
        if supervised:
            options.append(f"label={self.label()}")
            if self.draw(st.booleans()):
                options.append(f"weight={self.draw(st.sampled_from(['1', '0.5', '2', '0']))}")
            if self.draw(st.booleans()):
                losses = {
                    "binary": ["bce", "focal"],
                    "regression": ["mse", "huber"],
                    "multiclass": ["ce"],
                }
                options.append(f"loss={self.draw(st.sampled_from(losses[kind]))}")
        written = f"{kind}({', '.join(options)})" if options or self.draw(st.booleans()) else kind
        self.emit(f"task {name} : {written} = {node}")
        self.out.tasks[name] = (kind, classes if kind == "multiclass" else 1)
        if kind == "binary":
            self.binary.append(name)

    def product(self) -> None:
        factors = self.draw(
            st.lists(st.sampled_from(self.binary), min_size=2, max_size=3, unique=True)
        )
        name = self.name("p")
        kind = f"binary(label={self.label()})" if self.draw(st.booleans()) else "binary"
        self.emit(f"task {name} : {kind} = {' * '.join(factors)}")
        self.out.tasks[name] = ("binary", 1)
        self.binary.append(name)


@st.composite
def valid_specs(draw, max_networks: int = 6) -> GeneratedSpec:
    """A random valid spec (see the module docstring) with its expected features and tasks."""
    b = _Builder(draw)
    description = draw(
        st.text(
            st.characters(codec="utf-8", categories=["L", "N", "P", "S"], include_characters=" "),
            max_size=12,
        )
    )
    description = description.replace("\\", "\\\\").replace('"', '\\"')
    model = draw(st.sampled_from(["M", "Ranker", "MultiTask", "_Model2"]))
    b.emit(f'model {model} "{description}"' if draw(st.booleans()) else f"model {model}")
    for _ in range(draw(st.integers(1, 4))):
        b.feature()
    for _ in range(draw(st.integers(0, 2))):
        b.group()
    for _ in range(draw(st.integers(0, max_networks))):
        step = draw(st.sampled_from(["expert", "tower", "gate", "transfer"]))
        if step == "gate" and not b.pools and draw(st.booleans()):
            step = "expert"
        if step != "transfer" or not b.transfer():
            getattr(b, step if step != "transfer" else "tower")()
    b.task(supervised=True)
    for _ in range(draw(st.integers(0, 3))):
        b.task(supervised=draw(st.booleans()))
    if len(b.binary) >= 2 and draw(st.booleans()):
        b.product()
    if len(b.binary) >= 2:
        for _ in range(draw(st.integers(0, 2))):
            left, right = draw(
                st.lists(st.sampled_from(b.binary), min_size=2, max_size=2, unique=True)
            )
            weight = (
                f" weight {draw(st.sampled_from(['0.6', '1', '2e-1']))}"
                if draw(st.booleans())
                else ""
            )
            b.emit(f"constrain {left} <= {right}{weight}")
    if draw(st.booleans()):
        b.emit(
            "weighting "
            + draw(st.sampled_from(["fixed", "uncertainty", "gradnorm", "gradnorm(alpha=0.5)"]))
        )
    b.out.source = "\n".join(b.lines) + "\n"
    return b.out


def spec_sources(max_networks: int = 6) -> st.SearchStrategy[str]:
    """The source text of random valid specs."""
    return valid_specs(max_networks).map(lambda generated: generated.source)
