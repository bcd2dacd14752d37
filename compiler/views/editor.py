"""What an editor shows of a spec as it is typed: diagnostics, hovers, definitions, completions.

The language server (``mtlc lsp``, ``mtlc.cli.lsp``) asks these functions; they
know nothing of the protocol: positions are 0-based (line, character), as the
Language Server Protocol counts them, and results are plain data. Everything
comes from the compiler's own stages: the diagnostics are ``mtlc check``'s,
the hover's shape and parameter count ``mtlc explain``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mtlc import ir
from mtlc.check import check
from mtlc.diagnostics import Diagnostic, SpecError
from mtlc.frontend import parse
from mtlc.frontend import syntax as s

__all__ = ["Analysis", "analyse", "CALLS", "OPTIONS"]

# what completion offers besides the spec's own names
CALLS = (
    "mlp", "apg", "star", "cross", "softmax", "sigmoid", "cross_stitch", "snr", "ait",
    "sparse", "sequence", "dense", "binary", "regression", "multiclass", "fixed",
    "uncertainty", "gradnorm", "stopgrad", "ipw", "dr",
)  # fmt: skip
OPTIONS = (
    "vocab", "dim", "maxlen", "pool", "table", "activation", "dropout", "norm", "bias",
    "hidden", "top", "temperature", "scale", "by", "rank", "expand", "shared", "inner",
    "generate", "domain", "combine", "layers", "form", "experts", "weights", "transform",
    "label", "weight", "loss", "classes", "alpha", "from",
)  # fmt: skip
WORDS = s.STATEMENT_WORDS + ("over",)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Analysis:
    """One version of a spec's text, checked."""

    text: str
    diagnostics: list[Diagnostic]
    model: ir.Model | None  # None when the spec has errors
    names: dict[str, s.Name]  # every declared name, where it is written

    def word_at(self, line: int, character: int) -> str | None:
        """The name under the cursor (0-based position), if any."""
        lines = self.text.split("\n")
        if not 0 <= line < len(lines):
            return None
        for match in _NAME.finditer(lines[line]):
            if match.start() <= character <= match.end():
                return match.group()
        return None

    def definition(self, line: int, character: int) -> tuple[int, int, int] | None:
        """(line, start, end) of the declaration of the name under the cursor, 0-based."""
        word = self.word_at(line, character)
        name = self.names.get(word or "")
        if name is None:
            return None
        return name.span.line - 1, name.span.column - 1, name.span.end_column - 1

    def hover(self, line: int, character: int) -> str | None:
        """Markdown about the node under the cursor: kind, shape, parameters, its inputs."""
        word = self.word_at(line, character)
        if word is None or word not in self.names:
            return None
        nodes = {n.name: n for n in self.model.nodes} if self.model is not None else {}
        node = nodes.get(word)
        if node is None:
            return f"`{word}` (declared at line {self.names[word].span.line})"
        text = [
            f"**{word}**: {node.kind_word} `{node.text()}`",
            f"output `{node.shape}`, {node.parameters():,} parameters",
        ]
        inputs = [
            f"`{name}` (line {nodes[name].span.line})" for name in node.inputs() if name in nodes
        ]
        if inputs:
            text.append("reads " + ", ".join(inputs))
        return "\n\n".join(text)

    def completions(self) -> list[tuple[str, str]]:
        """(label, kind) to offer: the spec's names, then calls, options and keywords."""
        found = [(name, "name") for name in self.names]
        found += [(call, "function") for call in CALLS]
        found += [(option, "property") for option in OPTIONS]
        found += [(word, "keyword") for word in WORDS]
        return found


def analyse(text: str, filename: str = "spec.mtl") -> Analysis:
    """Check ``text`` as ``mtlc check`` would; keep the names even if it has errors."""
    try:
        spec = parse(text, filename)
    except SpecError as error:
        return Analysis(text, list(error.diagnostics), None, {})
    names = {
        stmt.name.text: stmt.name
        for stmt in spec.statements
        if hasattr(stmt, "name") and not isinstance(stmt, s.ModelStmt)
    }
    try:
        model = check(spec)
    except SpecError as error:
        return Analysis(text, list(error.diagnostics), None, names)
    return Analysis(text, [], model, names)
