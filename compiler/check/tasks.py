"""Checking tasks, constraints and the weighting: the rules of a model's outputs.

Part of ``mtlc.check``. ``TaskRules`` handles ``task``, ``constrain`` and
``weighting`` statements for the checker (keeping the constraints and the
weighting it read) and, at the end, the rules about the model as a whole (at
least one supervised task).
"""

from __future__ import annotations

from mtlc import ir
from mtlc.check import arguments as opt
from mtlc.check.scope import VECTORS, Scope, kind_word
from mtlc.frontend import syntax as s
from mtlc.ir import Loss, TaskKind

__all__ = ["TaskRules", "LOSSES", "DEFAULT_LOSS"]

LOSSES = {
    TaskKind.binary: (Loss.bce, Loss.focal),
    TaskKind.regression: (Loss.mse, Loss.huber),
    TaskKind.multiclass: (Loss.ce,),
}
DEFAULT_LOSS = {kind: losses[0] for kind, losses in LOSSES.items()}
_COUNTERFACTUAL = (Loss.ipw.value, Loss.dr.value)  # ESCM2's losses, written as calls
_OPTIONS = {
    TaskKind.binary: ("label", "weight", "loss", "bias"),
    TaskKind.regression: ("label", "weight", "loss", "bias"),
    TaskKind.multiclass: ("classes", "label", "weight", "loss", "bias"),
}


class TaskRules:
    """The task-level rules, over the scope of the checker."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.report = scope.report
        self.constraints: list[ir.Constraint] = []
        self.weighting: ir.Weighting | None = None
        self.labels: dict[str, s.Name] = {}
        self.feature_names = {
            st.name.text for st in scope.spec.statements if isinstance(st, s.FeatureStmt)
        }
        self.supervised = any(
            keyword.name.text == "label"
            for st in scope.spec.statements
            if isinstance(st, s.TaskStmt)
            for keyword in st.kind.keywords
        )
        self.weighting_statement: s.WeightingStmt | None = None
        self.counterfactual_labels: set[str] = set()  # labels of tasks with ipw or dr losses
        self.shared_labels: set[str] = set()  # labels already shared once with such a task

    # -- task ---------------------------------------------------------------------

    def check_task(self, stmt: s.TaskStmt) -> None:
        self.scope.declare(stmt.name)
        call = opt.expect_call(
            stmt.kind, [k.value for k in TaskKind], (), self.report, "task kind", parens=False
        )
        node = None
        if call is not None:
            node = self._task(stmt, call, TaskKind(call.func.text))
        self.scope.add(stmt.name, node)

    def _task(self, stmt: s.TaskStmt, call: s.Call, kind: TaskKind) -> ir.Task | None:
        opt.read_positionals(call, [], self.report)
        options = opt.read_keywords(call, _OPTIONS[kind], self.report)
        fields: dict = {"kind": kind}
        counterfactual = "loss" in options and _called_any(options["loss"].value, _COUNTERFACTUAL)
        if "label" in options:
            fields["label"] = self._label(options["label"].value, counterfactual)
        else:
            for key in ("loss", "weight"):
                if key in options:
                    self.report.error(
                        "MTL508",
                        options[key].name.span,
                        f"`{key}` has no effect on a task without a label",
                        label="latent task",
                        help="give the task a `label=COLUMN`, or drop this option",
                    )
                    fields[key] = None
        if "weight" in options and "label" in options:
            fields["weight"] = opt.real(
                options["weight"].value, self.report, "the task weight", 0.0, opt.MAX_REAL
            )
        if "loss" in options and "label" in options and counterfactual:
            fields.update(self._counterfactual(stmt, options["loss"].value, kind))
        elif "loss" in options and "label" in options:
            fields["loss"] = self._loss(options["loss"].value, kind)
        elif "label" in options:
            fields["loss"] = DEFAULT_LOSS[kind]
        if kind is TaskKind.multiclass:
            if "classes" in options:
                fields["classes"] = opt.integer(
                    options["classes"].value, self.report, "`classes`", 2, opt.MAX_CLASSES
                )
            else:
                self.report.error(
                    "MTL303",
                    call.span,
                    "a multiclass task needs `classes`",
                    label="`classes` missing",
                    help="write `multiclass(classes=N, label=COLUMN)`",
                )
                fields["classes"] = None
        if "bias" in options and len(stmt.body) > 1:
            self.report.error(
                "MTL510",
                options["bias"].name.span,
                "`bias` has no effect on a product of tasks: it has no head",
                label="no head",
                help="drop `bias`",
            )
            fields["bias"] = None
        elif "bias" in options:
            fields["bias"] = opt.boolean(options["bias"].value, self.report, "`bias` of a task")
        propensity = self.scope.nodes.get(fields.get("propensity") or "")
        if isinstance(propensity, ir.Task) and propensity.label == fields.get("label"):
            self.report.error(
                "MTL511",
                options["label"].value.span,
                f"`{stmt.name.text}` learns the label of its propensity task `{propensity.name}`",
                label="the clicks, not the conversions",
                help="a counterfactual CVR task learns the conversion label",
            )
            fields["label"] = None
        body = self._product(stmt, kind) if len(stmt.body) > 1 else self._head(stmt.body[0])
        if body is None or any(value is None for value in fields.values()):
            return None
        width = fields.get("classes") or 1
        return ir.Task(name=stmt.name.text, span=stmt.span, width=width, **fields, **body)

    def _label(self, value: s.Value, counterfactual: bool = False) -> str | None:
        """The label column; two tasks may share one only where one of them has a
        counterfactual loss (ESCM2's CVR reads the conversion label its CTCVR product reads)."""
        ref = opt.name(value, self.report, "a label")
        if ref is None:
            return None
        if ref.text in self.feature_names:
            self.report.error(
                "MTL505",
                ref.span,
                f"the label `{ref.text}` is also a feature",
                label="an input too",
                help="a label that is also an input gives the answer away; use another column",
            )
            return None
        first = self.labels.get(ref.text)
        shared = first is not None and (counterfactual or ref.text in self.counterfactual_labels)
        if shared and ref.text not in self.shared_labels:
            self.shared_labels.add(ref.text)
            return ref.text
        if counterfactual:
            self.counterfactual_labels.add(ref.text)
        if first is not None:
            self.report.error(
                "MTL504",
                ref.span,
                f"two tasks learn the label `{ref.text}`",
                label="label used again",
                notes=[f"first used at line {first.span.line}"],
                help=(
                    "give each task its own label column"
                    " (copy the column in the data if this is meant)"
                ),
            )
            return None
        self.labels[ref.text] = ref
        return ref.text

    def _loss(self, value: s.Value, kind: TaskKind) -> Loss | None:
        allowed = [loss.value for loss in LOSSES[kind]]
        if isinstance(value, s.Name) and value.text in _COUNTERFACTUAL:
            self.report.error(
                "MTL303",
                value.span,
                f"`{value.text}` needs the propensity task, the binary task of the clicks",
                label="propensity missing",
                help=f"write `loss={value.text}(ctr)`"
                + (", with `imputation=TASK`" if value.text == "dr" else ""),
            )
            return None
        if (
            isinstance(value, s.Name)
            and value.text in Loss.__members__
            and value.text not in allowed
        ):
            self.report.error(
                "MTL503",
                value.span,
                f"a {kind.value} task cannot use the {value.text} loss",
                label=f"not a {kind.value} loss",
                help="use " + " or ".join(f"`{a}`" for a in allowed),
            )
            return None
        chosen = opt.choice(value, self.report, f"{kind.value} loss", allowed)
        return Loss(chosen) if chosen else None

    def _counterfactual(self, stmt: s.TaskStmt, value: s.Value, kind: TaskKind) -> dict:
        """``loss=ipw(P)`` or ``loss=dr(P, imputation=I)`` (ESCM2): the fields it sets.

        ``P`` is a binary task with a label and a head (its label marks the clicked
        rows, its probability is their propensity); ``I`` a latent regression task
        (it imputes the error). Both are declared above, and the task is binary.
        """
        assert isinstance(value, s.Call)
        loss = Loss(value.func.text)
        fields: dict = {"loss": loss, "propensity": None}
        if kind is not TaskKind.binary:
            self.report.error(
                "MTL503",
                value.func.span,
                f"a {kind.value} task cannot use the {loss.value} loss",
                label="for a binary task",
                help=f"`{loss.value}` weighs a binary CVR task's loss by its clicks' propensity",
            )
            return {"loss": None}
        (ref,) = opt.read_positionals(value, ["the propensity task"], self.report)
        keys = ("imputation",) if loss is Loss.dr else ()
        options = opt.read_keywords(value, keys, self.report)
        propensity = self._role(ref, "the propensity", stmt)
        if (
            propensity is not None
            and ref is not None
            and (
                propensity.kind is not TaskKind.binary
                or propensity.label is None
                or propensity.input is None
                or propensity.propensity is not None
            )
        ):
            self.report.error(
                "MTL511",
                ref.span,
                f"`{propensity.name}` cannot be a propensity: it is not a binary task with "
                "a label and a head of its own",
                label="not a click task",
                help="name the binary CTR task, whose label marks the clicked rows",
            )
            propensity = None
        fields["propensity"] = propensity.name if propensity else None
        if loss is Loss.dr:
            fields["imputation"] = None
            if "imputation" not in options:
                self.report.error(
                    "MTL303",
                    value.span,
                    "`dr` needs `imputation=TASK`, the task that imputes the error",
                    label="`imputation` missing",
                    help="declare `task imp : regression = imp_net` and write "
                    "`dr(ctr, imputation=imp)`",
                )
                return fields
            imputation = self._role(options["imputation"].value, "the imputation", stmt)
            if imputation is not None and (
                imputation.kind is not TaskKind.regression or imputation.label is not None
            ):
                self.report.error(
                    "MTL512",
                    options["imputation"].value.span,
                    f"`{imputation.name}` cannot impute the error: it is not a latent "
                    "regression task",
                    label="not a latent regression task",
                    help="declare `task imp : regression = imp_net` (no label: `dr` trains it)",
                )
                imputation = None
            fields["imputation"] = imputation.name if imputation else None
        return fields

    def _role(self, value: s.Value | None, what: str, stmt: s.TaskStmt) -> ir.Task | None:
        """The task a counterfactual loss names (not the task itself)."""
        ref = opt.name(value, self.report, f"{what} task") if value is not None else None
        if ref is None:
            return None
        if ref.text == stmt.name.text:
            self.report.error(
                "MTL511",
                ref.span,
                f"`{ref.text}` cannot be its own {what.removeprefix('the ')} task",
                label="the task itself",
                help="name another task, declared above",
            )
            return None
        return self.scope.resolve(ref, (ir.Task,), f"{what} task (only tasks are)")

    def _head(self, ref: s.Name) -> dict | None:
        node = self.scope.resolve(ref, VECTORS, "the input of a task", pools=False)
        if node is None:
            return None
        return {"input": node.name, "input_width": node.width}

    def _product(self, stmt: s.TaskStmt, kind: TaskKind) -> dict | None:
        ok = True
        if kind is not TaskKind.binary:
            self.report.error(
                "MTL501",
                stmt.kind.func.span,
                f"a product of tasks is a probability, so it is binary, not {kind.value}",
                label="must be binary",
            )
            ok = False
        factors, seen = [], set()
        for ref in stmt.body:
            if ref.text in seen:
                self.report.error(
                    "MTL507",
                    ref.span,
                    f"`{ref.text}` appears twice in the product",
                    label="repeated",
                )
                ok = False
                continue
            seen.add(ref.text)
            found = self.scope.nodes.get(ref.text)
            if found is not None and not isinstance(found, ir.Task):
                self.report.error(
                    "MTL502",
                    ref.span,
                    f"`{ref.text}` is a {kind_word(found)}, not a task",
                    label="not a task",
                    help="the factors of a product are binary tasks declared above",
                )
                ok = False
                continue
            task = self.scope.resolve(ref, (ir.Task,), "a factor")
            if task is not None and task.kind is not TaskKind.binary:
                self.report.error(
                    "MTL501",
                    ref.span,
                    f"`{ref.text}` is a {task.kind.value} task; a product multiplies "
                    "probabilities of binary tasks",
                    label=f"{task.kind.value}, not binary",
                )
                task = None
            ok = ok and task is not None
            factors.append(ref.text)
        return {"factors": factors} if ok else None

    # -- constrain and weighting ----------------------------------------------------

    def check_constraint(self, stmt: s.ConstrainStmt) -> None:
        left = self._binary_task(stmt.left)
        right = self._binary_task(stmt.right)
        weight: float | None = 1.0
        if stmt.weight is not None:
            weight = opt.real(stmt.weight, self.report, "the constraint weight", 0.0, opt.MAX_REAL)
        if stmt.left.text == stmt.right.text:
            self.report.error(
                "MTL509",
                stmt.right.span,
                f"`{stmt.left.text}` is constrained by itself",
                label="same task",
                help="a constraint relates two different tasks",
            )
            return
        if left is not None and right is not None and weight is not None:
            self.constraints.append(
                ir.Constraint(left=left.name, right=right.name, weight=weight, span=stmt.span)
            )

    def _binary_task(self, ref: s.Name) -> ir.Task | None:
        task = self.scope.resolve(ref, (ir.Task,), "constrained (only tasks are)")
        if task is not None and task.kind is not TaskKind.binary:
            self.report.error(
                "MTL506",
                ref.span,
                f"`{ref.text}` is a {task.kind.value} task; constraints compare "
                "probabilities of binary tasks",
                label=f"{task.kind.value}, not binary",
            )
            return None
        return task

    def check_weighting(self, stmt: s.WeightingStmt) -> None:
        if self.weighting_statement is not None:
            self.report.error(
                "MTL104",
                stmt.span,
                "the spec has a second `weighting` statement",
                label="second weighting",
                notes=[f"the first is at line {self.weighting_statement.span.line}"],
            )
            return
        self.weighting_statement = stmt
        kinds = [k.value for k in ir.WeightingKind]
        call = opt.expect_call(stmt.kind, kinds, (), self.report, "weighting", parens=False)
        if call is None:
            return
        kind = ir.WeightingKind(call.func.text)
        opt.read_positionals(call, [], self.report)
        options = opt.read_keywords(
            call, ("alpha",) if kind is ir.WeightingKind.gradnorm else (), self.report
        )
        alpha = None  # unwritten: the runtime's default (rt.Weighting), written once there
        if "alpha" in options:
            alpha = opt.real(
                options["alpha"].value, self.report, "`alpha`", 0.0, opt.MAX_REAL, low_open=True
            )
            if alpha is None:
                return
        self.weighting = ir.Weighting(kind=kind, alpha=alpha, span=stmt.span)

    # -- the model as a whole -------------------------------------------------------

    def finish(self, model: s.ModelStmt) -> None:
        if not self.supervised:
            self.report.error(
                "MTL105",
                model.name.span,
                f"`{model.name.text}` has no task with a label",
                label="nothing to learn from",
                help="give at least one task a `label=COLUMN`",
            )


def _called_any(value: s.Value, funcs: tuple[str, ...]) -> bool:
    """Whether ``value`` is a call of one of ``funcs``."""
    return isinstance(value, s.Call) and value.func.text in funcs
