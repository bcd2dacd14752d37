"""Check: a parsed spec becomes a typed ``ir.Model``, or every error in it is reported.

``check(spec)`` resolves names (declared before use, no duplicates, no reserved
words), kinds (what may be an input, a gate source, a factor), widths, options
and their ranges, and the task rules, in one pass over the statements. Each
statement that is valid becomes an IR node; one that is not is remembered as
failed, so that later uses of its name do not repeat the error.
"""

from __future__ import annotations

import builtins
import keyword
import re

from mtlc import __version__, ir
from mtlc import options as opt
from mtlc import syntax as s
from mtlc.diagnostics import Reporter, SpecError, closest
from mtlc.ir import Span
from mtlc.names import MODULE_GLOBALS
from mtlc.sizes import check_size
from mtlc.syntax_errors import STATEMENT_WORDS
from mtlc.tasks import TaskRules

__all__ = ["check", "kind_word", "SpecError", "RESERVED_WORDS", "MODEL_NAME_BLOCKLIST", "FEATURES", "VECTORS"]

RESERVED_WORDS = frozenset({*STATEMENT_WORDS, "over", "weight"})  # the statements' words, and two more
# Names the generated module binds at top level: a class of that name would shadow them.
MODEL_NAME_BLOCKLIST = MODULE_GLOBALS
_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")

FEATURES = (ir.SparseFeature, ir.SequenceFeature, ir.DenseFeature)
VECTORS = (*FEATURES, ir.Group, ir.Tower, ir.Gate, ir.Transfer, ir.Expert)
KIND_WORDS = {
    ir.SparseFeature: "sparse feature", ir.SequenceFeature: "sequence feature", ir.DenseFeature: "dense feature",
    ir.Group: "group", ir.Tower: "tower", ir.Gate: "gate", ir.Transfer: "transfer", ir.Expert: "expert pool",
    ir.Task: "task",
}


def check(spec: s.Spec) -> ir.Model:
    """Check a parsed spec and build its IR.

    Raises:
        SpecError: with every error found (sorted by position).
    """
    return _Checker(spec).run()


def kind_word(node: ir.Node) -> str:
    """A node's kind in words: 'tower', 'expert pool', ..."""
    return KIND_WORDS[type(node)]


class _Checker:
    """One pass over the statements; the rule modules (features, gates, tasks) report through it."""

    vectors = VECTORS  # kinds that yield one vector per example (pools of one expert included)

    def __init__(self, spec: s.Spec) -> None:
        self.spec = spec
        self.file = spec.filename
        self.r = Reporter(spec.source)
        self.nodes: dict[str, ir.Node] = {}
        self.failed: set[str] = set()
        self.declared: dict[str, Span] = {}
        self.everywhere = _declarations(spec)
        self.model: s.ModelStmt | None = None
        self.weighting: ir.Weighting | None = None
        self.constraints: list[ir.Constraint] = []
        self.tasks = TaskRules(self)

    # -- driver -------------------------------------------------------------------

    def run(self) -> ir.Model:
        handlers = {
            s.ModelStmt: self.model_stmt, s.FeatureStmt: self.feature, s.GroupStmt: self.group,
            s.ExpertStmt: self.expert, s.TowerStmt: self.tower, s.GateStmt: self.gate,
            s.TransferStmt: self.transfer, s.TaskStmt: self.tasks.task,
            s.ConstrainStmt: self.tasks.constrain, s.WeightingStmt: self.tasks.weighting,
        }
        for statement in self.spec.statements:
            handlers[type(statement)](statement)
        self.finish()
        self.r.raise_if_errors()
        return ir.Model(
            name=self.model.name.text,
            description=self.model.description.value if self.model.description else None,
            source=self.file,
            compiler_version=__version__,
            nodes=list(self.nodes.values()),
            constraints=self.constraints,
            weighting=self.weighting or ir.Weighting(),
        )

    def finish(self) -> None:
        if self.model is None:
            at = Span(file=self.file, line=1, column=1, end_line=1, end_column=1)
            self.r.error("MTL101", at, "the spec has no `model` statement", label="expected `model NAME` first",
                         help='start the spec with `model NAME "description"`')
            return
        self.tasks.finish(self.model)
        if not self.r.has_errors:
            check_size(self.nodes, self.r)

    def add(self, name: s.Name, node: ir.Node | None) -> None:
        """Record the statement's node (or its failure) under its name, once declared.

        A repeated declaration (MTL204) is not recorded: the first one keeps the name.
        """
        if self.declared.get(name.text) is not name.span:
            return
        if node is None:
            self.failed.add(name.text)
        else:
            self.nodes[name.text] = node

    # -- names --------------------------------------------------------------------

    def declare(self, name: s.Name) -> None:
        """Check a new node name (form, reserved words, duplicates) and claim it."""
        text = name.text
        if not _NAME.match(text):
            lowered = re.sub(r"[^a-z0-9_]", "_", text.lower())
            help = f"try `{lowered}`" if _NAME.match(lowered) and lowered not in RESERVED_WORDS else None
            self.r.error("MTL201", name.span, f"`{text}` is not a valid name", label="invalid name",
                         help=help, notes=["a name is lower case: a-z, 0-9 and `_`, not starting with a digit"])
        elif keyword.iskeyword(text) or text in RESERVED_WORDS or (text.startswith("__") and text.endswith("__")):
            what = "a Python keyword" if keyword.iskeyword(text) else "reserved"
            self.r.error("MTL202", name.span, f"`{text}` is {what} and cannot name a node", label="reserved",
                         help=f"try `{text.strip('_')}_`" if text.strip("_") else None)
        if text in self.declared:
            first = self.declared[text]
            self.r.error("MTL204", name.span, f"`{text}` is already declared", label="declared again",
                         notes=[f"first declared at line {first.line}, column {first.column}"])
            return
        self.declared[text] = name.span

    def resolve(self, ref: s.Name, allowed: tuple[type, ...], role: str, *, pools: bool = True) -> ir.Node | None:
        """The node ``ref`` names if it is declared and of an ``allowed`` kind, else None after reporting.

        ``pools=False`` rejects an expert pool of more than one expert (not one vector).
        """
        node = self.nodes.get(ref.text)
        if node is None:
            if ref.text not in self.failed:
                self.unknown(ref, allowed, role)
            return None
        if not isinstance(node, allowed):
            self.r.error("MTL206", ref.span, f"`{ref.text}` is a {kind_word(node)}; it cannot be {role}",
                         label=f"a {kind_word(node)}", help=_kind_help(node, role))
            return None
        if not pools and isinstance(node, ir.Expert) and node.count > 1:
            self.r.error("MTL206", ref.span, f"`{ref.text}` is a pool of {node.count} experts; it cannot be {role}",
                         label=f"{node.count} vectors, not one",
                         help=f"mix the pool with a gate first: `gate g = softmax(INPUT) over [{ref.text}]`")
            return None
        return node

    def unknown(self, ref: s.Name, allowed: tuple[type, ...], role: str) -> None:
        later = self.everywhere.get(ref.text)
        if later is not None and later.line >= ref.span.line:
            self.r.error("MTL205", ref.span, f"`{ref.text}` is used before it is declared", label="not declared yet",
                         notes=[f"`{ref.text}` is declared at line {later.line}"],
                         help="move its statement above this one: a spec reads top-down")
            return
        fitting = [n for n, node in self.nodes.items() if isinstance(node, allowed)]
        guess = closest(ref.text, fitting) or closest(ref.text, self.nodes)
        help = None
        if guess is not None:
            help = f"a{'n' if kind_word(self.nodes[guess])[0] in 'aeiou' else ''} " \
                   f"{kind_word(self.nodes[guess])} with a similar name exists: `{guess}`"
        noun = "expert pool" if role == "a gate source" else "name"
        self.r.error("MTL203", ref.span, f"unknown {noun} `{ref.text}`", label="not declared", help=help)

    # -- statements ---------------------------------------------------------------

    @staticmethod
    def kind_word(node: ir.Node) -> str:
        return kind_word(node)

    def model_stmt(self, stmt: s.ModelStmt) -> None:
        if self.model is not None:
            self.r.error("MTL102", stmt.span, "the spec has a second `model` statement", label="second model",
                         notes=[f"the first is at line {self.model.span.line}"])
            return
        self.model = stmt
        text = stmt.name.text
        bad = (keyword.iskeyword(text) or text in MODEL_NAME_BLOCKLIST or text.startswith("__")
               or hasattr(builtins, text))
        if bad:
            self.r.error("MTL103", stmt.name.span, f"`{text}` cannot be the model's class name",
                         label="invalid class name", help=f"try `{text.strip('_').capitalize() or 'Model'}Model`")

    def feature(self, stmt: s.FeatureStmt) -> None:
        self.declare(stmt.name)
        call = opt.expect_call(stmt.kind, ("sparse", "sequence", "dense"), (), self.r, "feature kind", parens=False)
        node = None
        if call is not None:
            from mtlc.features import read_feature

            node = read_feature(self, stmt, call)
        self.add(stmt.name, node)

    def group(self, stmt: s.GroupStmt) -> None:
        self.declare(stmt.name)
        members, ok = [], True
        if not stmt.members.items:
            self.r.error("MTL303", stmt.members.span, "a group needs at least one member", label="empty group")
            ok = False
        for item in stmt.members.items:
            ref = opt.name(item, self.r, "a group member")
            node = ref and self.resolve(ref, (*FEATURES, ir.Group), "a group member")
            ok = ok and node is not None
            members.append(node)
        node = None
        if ok:
            width = sum(member.width for member in members)
            node = ir.Group(name=stmt.name.text, span=stmt.span, width=width, members=[m.name for m in members])
        self.add(stmt.name, node)

    def expert(self, stmt: s.ExpertStmt) -> None:
        self.declare(stmt.name)
        count = 1
        if stmt.count is not None:
            count = opt.integer(stmt.count, self.r, "the number of experts", 1, opt.MAX_EXPERTS)
        block = self.block(stmt.block)
        node = None
        if block is not None and count is not None:
            node = ir.Expert(name=stmt.name.text, span=stmt.span, width=block.dims[-1], count=count, block=block)
        self.add(stmt.name, node)

    def tower(self, stmt: s.TowerStmt) -> None:
        self.declare(stmt.name)
        block = self.block(stmt.block)
        node = None
        if block is not None:
            node = ir.Tower(name=stmt.name.text, span=stmt.span, width=block.dims[-1], block=block)
        self.add(stmt.name, node)

    def block(self, value: s.Value) -> ir.Mlp | None:
        """``mlp(INPUT, [D, ...], activation=, dropout=, norm=)`` as an ``ir.Mlp``."""
        call = opt.expect_call(value, ("mlp",), opt.FUTURE_CALLS, self.r, "block")
        if call is None:
            return None
        source, dims_value = opt.read_positionals(call, ["input", "widths"], self.r)
        options = opt.read_keywords(call, ("activation", "dropout", "norm"), self.r)
        node = self.input(source, "the input of an mlp")
        dims = dims_value and opt.int_list(dims_value, self.r, "the widths of an mlp", 1, opt.MAX_WIDTH)
        fields, ok = {}, True
        if "activation" in options:
            fields["activation"] = opt.choice(options["activation"].value, self.r, "activation",
                                              [a.value for a in ir.Activation])
        if "norm" in options:
            fields["norm"] = opt.choice(options["norm"].value, self.r, "norm", [n.value for n in ir.Norm])
        if "dropout" in options:
            fields["dropout"] = opt.real(options["dropout"].value, self.r, "dropout", 0.0, 1.0, high_open=True)
        ok = all(v is not None for v in fields.values())
        if node is None or not dims or not ok:
            return None
        return ir.Mlp(input=node.name, input_width=node.width, dims=dims, span=call.span, **fields)

    def input(self, value: s.Value | None, role: str) -> ir.Node | None:
        """A node that yields one vector per example (not a task, not a pool of several experts)."""
        if value is None:
            return None
        if isinstance(value, s.Call) and value.func.text in opt.FUTURE_CALLS:
            opt.expect_call(value, (), opt.FUTURE_CALLS, self.r, "input")
            return None
        ref = opt.name(value, self.r, role)
        return ref and self.resolve(ref, VECTORS, role, pools=False)

    def gate(self, stmt: s.GateStmt) -> None:
        from mtlc.gates import read_gate

        self.declare(stmt.name)
        self.add(stmt.name, read_gate(self, stmt))

    def transfer(self, stmt: s.TransferStmt) -> None:
        self.declare(stmt.name)
        node = None
        call = opt.expect_call(stmt.transfer, ("ait",), (), self.r, "transfer")
        if call is not None:
            (current_value,) = opt.read_positionals(call, ["current"], self.r)
            options = opt.read_keywords(call, ("from", "bias"), self.r)
            current = self.input(current_value, "the current vector of a transfer")
            previous = None
            if "from" not in options:
                self.r.error("MTL303", call.span, "`ait` needs `from=PREVIOUS`", label="`from` missing",
                             help="write `ait(CURRENT, from=PREVIOUS)`")
            else:
                previous = self.input(options["from"].value, "the previous vector of a transfer")
            bias = False  # Q/K/V biases (NextRec's AITM); the paper's has none
            if "bias" in options:
                bias = opt.boolean(options["bias"].value, self.r, "`bias` of `ait`")
            if current is not None and previous is not None and bias is not None:
                node = self._transfer(stmt, current, previous, options["from"].value.span, bias)
        self.add(stmt.name, node)

    def _transfer(
        self, stmt: s.TransferStmt, current: ir.Node, previous: ir.Node, at: Span, bias: bool
    ) -> ir.Transfer | None:
        if current.width != previous.width:
            self.r.error("MTL402", at, f"`{previous.name}` has width {previous.width} but `{current.name}` has "
                         f"width {current.width}", label=f"width {previous.width}",
                         help="a transfer mixes two vectors of one width")
            return None
        return ir.Transfer(name=stmt.name.text, span=stmt.span, width=current.width, current=current.name,
                           previous=previous.name, qkv_bias=bias)


def _declarations(spec: s.Spec) -> dict[str, Span]:
    """Where each name is first declared anywhere in the spec (for "used before declared")."""
    found: dict[str, Span] = {}
    for statement in spec.statements:
        name = getattr(statement, "name", None)
        if isinstance(name, s.Name) and not isinstance(statement, s.ModelStmt):
            found.setdefault(name.text, name.span)
    return found


def _kind_help(node: ir.Node, role: str) -> str | None:
    if isinstance(node, ir.Task):
        return "a task is an output; to multiply task probabilities write `task NAME : binary = a * b`"
    if role == "a group member":
        return "a group collects features and groups; use the node directly as an input instead"
    return None

