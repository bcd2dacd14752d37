"""The shared diagnostics, at the compiler's bottom: what is wrong in a spec, where, how to fix it.

Every stage imports this package and nothing imports a stage from it: ``span``
(where text is), ``codes`` (the catalogue, ``mtlc explain CODE``) and here the
``Diagnostic`` values, the ``Reporter`` that collects them and the rendering.
A stage collects ``Diagnostic`` values in a ``Reporter`` and raises one
``SpecError`` with all of them at its end. They are sorted by position,
de-duplicated and capped (``MAX_DIAGNOSTICS``), then rendered as text in the
shape of rustc, as JSON, or as GitHub annotation lines::

    spec.mtl:12:9: error[MTL203]: unknown expert pool `shard`
       |
    12 | gate g = softmax(all) over [shard]
       |                             ^^^^^ not declared
       |
       = help: an expert pool with a similar name exists: `shared`
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mtlc.diagnostics.codes import CODES, explain_code
from mtlc.diagnostics.span import Span

__all__ = [
    "Diagnostic",
    "Reporter",
    "SpecError",
    "CODES",
    "MAX_DIAGNOSTICS",
    "explain_code",
    "Span",
    "closest",
    "similar",
    "render_text",
    "render_json",
    "render_github",
]

MAX_DIAGNOSTICS = 50

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Diagnostic:
    """One finding: a stable ``code`` (see ``CODES``), a message, and where.

    ``label`` is printed under the caret; ``help`` says how to fix it; ``notes``
    add context (for example where a name was first declared).
    """

    code: str
    message: str
    span: Span
    label: str = ""
    help: str | None = None
    notes: tuple[str, ...] = ()
    severity: Severity = "error"

    def sort_key(self) -> tuple:
        span = self.span
        return (
            span.file,
            span.line,
            span.column,
            span.end_line,
            span.end_column,
            self.code,
            self.message,
        )

    def to_dict(self) -> dict:
        """A plain dict for JSON: the fields, with the span flattened."""
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "label": self.label,
            "help": self.help,
            "notes": list(self.notes),
        }


def _normalise(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted by position, without duplicates."""
    unique = {(d.sort_key(), d.label, d.help, d.notes, d.severity): d for d in diagnostics}
    return sorted(unique.values(), key=Diagnostic.sort_key)


class SpecError(Exception):
    """A spec has errors. ``.diagnostics`` lists them (sorted, at most ``MAX_DIAGNOSTICS``);
    ``.source`` is the spec's text; ``str()`` is the rendered text."""

    def __init__(self, diagnostics: Iterable[Diagnostic], source: str = "") -> None:
        everything = _normalise(diagnostics)
        self.diagnostics: list[Diagnostic] = everything[:MAX_DIAGNOSTICS]
        self.omitted = len(everything) - len(self.diagnostics)
        self.source = source
        super().__init__(self.diagnostics[0].message if self.diagnostics else "invalid spec")

    def __str__(self) -> str:
        text = render_text(self.diagnostics, self.source)
        if self.omitted:
            text += f"\n... and {self.omitted} more error(s) not shown"
        return text


class Reporter:
    """Collects the diagnostics of one stage; ``raise_if_errors`` ends the stage."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def error(
        self,
        code: str,
        span: Span,
        message: str,
        label: str = "",
        help: str | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        """Record an error with ``code`` (which must be in ``CODES``) at ``span``."""
        assert code in CODES, code
        self.diagnostics.append(Diagnostic(code, message, span, label, help, tuple(notes)))

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise SpecError(self.diagnostics, self.source)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``word`` (difflib), or None if none is close."""
    pool = sorted({c for c in candidates if c != word})
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        if word.lower() in lowered:
            return lowered[word.lower()]
    return matches[0] if matches else None


def similar(what: str, guess: str) -> str:
    """The one phrasing of a suggestion, as a statement (the rustc guide's form):
    ``a tower with a similar name exists: `ctr_net```."""
    article = "an" if what[:1] in "aeiou" else "a"
    return f"{article} {what} with a similar name exists: `{guess}`"


# -- rendering ------------------------------------------------------------------


def render_text(diagnostics: Iterable[Diagnostic], source: str) -> str:
    """The diagnostics as rustc-shaped text, one block each, separated by blank lines."""
    lines = source.split("\n")
    return "\n\n".join(_render_one(d, lines) for d in diagnostics)


def _render_one(diag: Diagnostic, lines: list[str]) -> str:
    span = diag.span
    head = f"{span.file}:{span.line}:{span.column}: {diag.severity}[{diag.code}]: {diag.message}"
    number = str(span.line)
    gutter = " " * len(number)
    text = lines[span.line - 1] if 1 <= span.line <= len(lines) else ""
    shown = _printable(text)
    start = min(max(span.column, 1), len(shown) + 1)
    end = span.end_column if span.end_line == span.line else len(shown) + 1
    shown, start, end = _window(shown, start, end)
    width = max(1, min(end, len(shown) + 1) - start)
    prefix = "".join("\t" if c == "\t" else " " for c in shown[: start - 1])
    caret = f"{prefix}{'^' * width} {diag.label}".rstrip()
    out = [head, f"{gutter} |", f"{number} | {shown}".rstrip(), f"{gutter} | {caret}"]
    if diag.help or diag.notes:
        out.append(f"{gutter} |")
    out += [f"{gutter} = note: {note}" for note in diag.notes]
    if diag.help:
        out.append(f"{gutter} = help: {diag.help}")
    return "\n".join(out)


MAX_SHOWN = 120  # characters of a source line shown; a longer line is cut around the span


def _window(line: str, start: int, end: int) -> tuple[str, int, int]:
    """A long line cut to ``MAX_SHOWN`` characters around columns ``start``..``end``."""
    if len(line) <= MAX_SHOWN:
        return line, start, end
    left = max(0, start - 1 - MAX_SHOWN // 3)
    right = min(len(line), left + MAX_SHOWN)
    head = "..." if left > 0 else ""
    tail = "..." if right < len(line) else ""
    shift = len(head) - left
    return head + line[left:right] + tail, start + shift, min(end, right + 1) + shift


def _printable(text: str) -> str:
    """The line with control characters (other than tab) shown as `?`, one per character."""
    return "".join(c if c == "\t" or c.isprintable() else "?" for c in text)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    """The diagnostics as a JSON array of flat objects (see ``Diagnostic.to_dict``)."""
    return json.dumps([d.to_dict() for d in diagnostics], indent=2, ensure_ascii=False)


def render_github(diagnostics: Diagnostic | Iterable[Diagnostic]) -> str:
    """GitHub Actions annotation lines, one per diagnostic.

    Each reads ``::error file=F,line=L,...::message``.
    """
    if isinstance(diagnostics, Diagnostic):
        diagnostics = [diagnostics]
    return "\n".join(_github_line(d) for d in diagnostics)


def _github_line(diag: Diagnostic) -> str:
    span = diag.span
    properties = {
        "file": span.file,
        "line": span.line,
        "col": span.column,
        "endLine": span.end_line,
        "endColumn": span.end_column,
        "title": diag.code,
    }
    joined = ",".join(f"{key}={_escape_property(str(value))}" for key, value in properties.items())
    message = diag.message + (f" ({diag.help})" if diag.help else "")
    kind = diag.severity if diag.severity in ("error", "warning") else "notice"
    return f"::{kind} {joined}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
