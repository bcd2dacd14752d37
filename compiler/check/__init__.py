"""The checker: a syntax tree (``frontend.syntax.Spec``) -> a typed ``ir.Model`` or a ``SpecError``.

``check(spec)`` resolves names (declared before use, no duplicates, no reserved
words), kinds (what may be an input, a gate source, a factor), widths, options
and their ranges, and the task rules, in one pass over the statements. Each
statement goes to its rule through one handler table; a valid statement
becomes an IR node, one that is not is remembered as failed (``scope.Scope``),
so that later uses of its name do not repeat the error. Imports the front
end's syntax tree, the IR and the shared diagnostics.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Callable
from typing import Any

from mtlc import ir
from mtlc.check.features import check_feature
from mtlc.check.gates import check_gate
from mtlc.check.networks import check_expert, check_group, check_tower, check_transfer
from mtlc.check.scope import MODEL_NAME_BLOCKLIST, Scope, kind_word
from mtlc.check.size_limit import check_size
from mtlc.check.tasks import TaskRules
from mtlc.diagnostics import Span, SpecError
from mtlc.frontend import syntax as s
from mtlc.version import __version__

__all__ = ["check", "kind_word", "SpecError"]


# The rule of each statement that declares a node: ``rule(scope, statement)``.
RULES: dict[type, Callable[[Scope, Any], None]] = {
    s.FeatureStmt: check_feature,
    s.GroupStmt: check_group,
    s.ExpertStmt: check_expert,
    s.TowerStmt: check_tower,
    s.GateStmt: check_gate,
    s.TransferStmt: check_transfer,
}


def check(spec: s.Spec) -> ir.Model:
    """Check a parsed spec and build its IR.

    Raises:
        SpecError: with every error found (sorted by position).
    """
    return _Check(spec).run()


class _Check:
    """One pass over the statements.

    Node statements go to ``RULES``, the model's own to methods here.
    """

    def __init__(self, spec: s.Spec) -> None:
        self.spec = spec
        self.scope = Scope(spec)
        self.tasks = TaskRules(self.scope)
        self.model: s.ModelStmt | None = None

    def run(self) -> ir.Model:
        own: dict[type, Callable[[Any], None]] = {
            s.ModelStmt: self.model_statement,
            s.TaskStmt: self.tasks.check_task,
            s.ConstrainStmt: self.tasks.check_constraint,
            s.WeightingStmt: self.tasks.check_weighting,
        }
        for statement in self.spec.statements:
            rule = RULES.get(type(statement))
            if rule is not None:
                rule(self.scope, statement)
            else:
                own[type(statement)](statement)
        self.finish()
        self.scope.report.raise_if_errors()
        assert self.model is not None  # finish() reported its absence
        return ir.Model(
            name=self.model.name.text,
            description=self.model.description.value if self.model.description else None,
            source=self.spec.filename,
            compiler_version=__version__,
            nodes=list(self.scope.nodes.values()),
            constraints=self.tasks.constraints,
            weighting=self.tasks.weighting or ir.Weighting(),
        )

    def model_statement(self, stmt: s.ModelStmt) -> None:
        """``model NAME ["description"]``: once, with a name that can be a Python class's."""
        report = self.scope.report
        if self.model is not None:
            report.error(
                "MTL102",
                stmt.span,
                "the spec has a second `model` statement",
                label="second model",
                notes=[f"the first is at line {self.model.span.line}"],
            )
            return
        self.model = stmt
        text = stmt.name.text
        bad = (
            keyword.iskeyword(text)
            or text in MODEL_NAME_BLOCKLIST
            or text.startswith("__")
            or hasattr(builtins, text)
        )
        if bad:
            report.error(
                "MTL103",
                stmt.name.span,
                f"`{text}` cannot be the model's class name",
                label="invalid class name",
                help=f"try `{text.strip('_').capitalize() or 'Model'}Model`",
            )

    def finish(self) -> None:
        """The rules of the model as a whole, once every statement is read."""
        report = self.scope.report
        if self.model is None:
            at = Span.at(self.spec.filename, 1, 1, 0)
            report.error(
                "MTL101",
                at,
                "the spec has no `model` statement",
                label="expected `model NAME` first",
                help='start the spec with `model NAME "description"`',
            )
            return
        self.tasks.finish(self.model)
        if not report.has_errors:
            check_size(self.scope.nodes, report)
