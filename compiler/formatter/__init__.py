"""``mtlc fmt``: one canonical layout for a spec, every comment kept.

A stage beside the checker that reads the front end's syntax tree (no IR, no
torch). ``format_spec(text)`` returns the spec laid out so:

- each statement re-written from its syntax tree with one space after commas
  and around ``=``, ``:`` and ``*``, numbers and strings as written;
- in a run of statements of one kind (no blank line between), the names are
  padded so their ``:`` and ``=`` line up (a task's ``=`` too), unless that
  would take a line past the width;
- a statement longer than the width (88) breaks inside its longest bracket,
  its items filled over 4-space indented lines;
- one blank line between the sections (the model line, the features, the
  network, the tasks and what follows them), the author's blank lines kept
  within a section, at most one in a row; comment lines stay where they are;
  a comment at the end of a statement stays at its end; a statement with a
  comment inside its brackets is kept as written.

Formatting twice gives the same text, and the formatted spec compiles to the
same model (both tested over random specs).
"""

from __future__ import annotations

from dataclasses import dataclass

from mtlc.frontend import parse
from mtlc.frontend import syntax as s

__all__ = ["format_spec", "WIDTH"]

WIDTH = 88


@dataclass
class _Item:
    kind: str  # "blank", "comment" or "stmt"
    text: str = ""
    stmt: s.Statement | None = None
    trailing: str = ""  # a statement's end-of-line comment
    verbatim: str = ""  # a statement kept as written (a comment inside it)

    @property
    def statement(self) -> s.Statement:
        assert self.stmt is not None, "a blank or comment item has no statement"
        return self.stmt


def format_spec(source: str, filename: str = "spec.mtl") -> str:
    """``source`` in the canonical layout; raises ``SpecError`` if it does not parse."""
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    spec = parse(text, filename)
    lines = text.split("\n")
    return _render(_items(spec, lines))


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of a line: the comment starts at a ``#`` outside a string."""
    quoted = escaped = False
    for i, char in enumerate(line):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "#":
            return line[:i], line[i:].rstrip()
    return line, ""


def _items(spec: s.Spec, lines: list[str]) -> list[_Item]:
    items: list[_Item] = []
    starts = {stmt.span.line: stmt for stmt in spec.statements}
    number = 1
    while number <= len(lines):
        code, comment = _split_comment(lines[number - 1])
        stmt = starts.get(number)
        if stmt is None:
            if code.strip():  # cannot happen for a spec that parsed
                raise ValueError(f"line {number} is neither a statement nor a comment")
            items.append(_Item("comment", comment) if comment else _Item("blank"))
            number += 1
            continue
        end = stmt.span.end_line
        comments = [_split_comment(lines[n - 1])[1] for n in range(number, end + 1)]
        item = _Item("stmt", stmt=stmt, trailing=comments[-1])
        if any(comments[:-1]):
            item.verbatim = "\n".join(lines[n - 1].rstrip() for n in range(number, end + 1))
        items.append(item)
        number = end + 1
    return items


def _word(stmt: s.Statement | None) -> str:
    return type(stmt).__name__.removesuffix("Stmt").lower()


_SECTIONS = {"model": 0, "feature": 1, "task": 3, "constrain": 3, "weighting": 3}


def _section(stmt: s.Statement | None) -> int:
    """The header, the features, the network (2: groups, blocks, gates, transfers), the outputs."""
    return _SECTIONS.get(_word(stmt), 2) if stmt is not None else -1


def _render(items: list[_Item]) -> str:
    # blank lines: none at the ends, at most one in a row, one between sections
    out: list[_Item] = []
    previous: _Item | None = None  # the last statement
    for item in items:
        if item.kind == "blank":
            if out and out[-1].kind != "blank":
                out.append(item)
            continue
        if (
            item.kind == "stmt"
            and previous is not None
            and _section(previous.stmt) != _section(item.stmt)
        ):
            between = out[out.index(previous) + 1 :]
            if not any(i.kind == "blank" for i in between):
                out.insert(out.index(previous) + 1, _Item("blank"))
        out.append(item)
        if item.kind == "stmt":
            previous = item
    while out and out[-1].kind == "blank":
        out.pop()
    text: list[str] = []
    run: list[_Item] = []
    for item in out + [_Item("blank")]:
        if item.kind == "stmt" and (not run or _same_run(run[0].stmt, item.stmt)):
            run.append(item)
            continue
        text += _run(run)
        run = [item] if item.kind == "stmt" else []
        if item.kind != "stmt":
            text.append(item.text)
    while text and text[-1] == "":
        text.pop()
    return "\n".join(text) + "\n"


def _same_run(first: s.Statement | None, stmt: s.Statement | None) -> bool:
    """Statements aligned together: of one kind, or any of the network's (group, expert,
    tower, gate, transfer), whose keywords are then padded too."""
    return _word(first) == _word(stmt) or _section(first) == _section(stmt) == 2


def _run(run: list[_Item]) -> list[str]:
    """A run of statements, aligned where every line's code stays within the width."""
    if not run:
        return []
    parts = [_parts(item.statement) for item in run]
    words = {_word(item.stmt) for item in run}
    if len(words) > 1:  # a network run: pad the keywords too (`gate  g = ...` under `tower t`)
        width = max(map(len, words))
        parts = [(_pad_word(head, width), kind, rest) for head, kind, rest in parts]
    pad = max(len(p[0]) for p in parts)
    pad_kind = max(len(p[1]) for p in parts)
    aligned = [_line(p, pad, pad_kind, item, comment=False) for p, item in zip(parts, run)]
    if any(len(line) > WIDTH for block in aligned for line in block.split("\n")):
        pad = pad_kind = 0  # an end-of-line comment may run past the width; code may not
    return [_line(p, pad, pad_kind, item) for p, item in zip(parts, run)]


def _pad_word(head: str, width: int) -> str:
    word, _, name = head.partition(" ")
    return f"{word.ljust(width)} {name}"


def _line(
    parts: tuple[str, str, str], pad: int, pad_kind: int, item: _Item, comment: bool = True
) -> str:
    if item.verbatim:
        return item.verbatim
    head, kind, rest = parts
    line = head.ljust(pad)
    if kind:
        line += f" : {kind.ljust(pad_kind) if rest else kind}"
    if rest:
        line += f" {rest}"
    line = line.rstrip()
    if len(line) > WIDTH:
        line = _broken(item.statement) or line
    return line + (f"  {item.trailing}" if item.trailing and comment else "")


def _parts(stmt: s.Statement) -> tuple[str, str, str]:
    """(the head to align, the kind after ``:``, the rest) of a statement."""
    word = _word(stmt)
    if isinstance(stmt, s.ModelStmt):
        rest = f" {_value(stmt.description)}" if stmt.description else ""
        return f"model {stmt.name.text}{rest}", "", ""
    if isinstance(stmt, s.FeatureStmt):
        return f"feature {stmt.name.text}", _value(stmt.kind), ""
    if isinstance(stmt, s.TaskStmt):
        return (
            f"task {stmt.name.text}",
            _value(stmt.kind),
            "= " + " * ".join(n.text for n in stmt.body),
        )
    if isinstance(stmt, s.GroupStmt):
        return f"group {stmt.name.text}", "", f"= {_value(stmt.members)}"
    if isinstance(stmt, s.ExpertStmt):
        count = f"x{stmt.count.text.lstrip('x')} " if stmt.count else ""
        return f"expert {stmt.name.text}", "", f"{count}= {_value(stmt.block)}"
    if isinstance(stmt, s.TowerStmt):
        return f"tower {stmt.name.text}", "", f"= {_value(stmt.block)}"
    if isinstance(stmt, s.GateStmt):
        return f"gate {stmt.name.text}", "", f"= {_value(stmt.gate)} over {_value(stmt.sources)}"
    if isinstance(stmt, s.TransferStmt):
        return f"transfer {stmt.name.text}", "", f"= {_value(stmt.transfer)}"
    if isinstance(stmt, s.ConstrainStmt):
        weight = f" weight {stmt.weight.text}" if stmt.weight else ""
        return f"constrain {stmt.left.text} <= {stmt.right.text}{weight}", "", ""
    if isinstance(stmt, s.WeightingStmt):
        return f"weighting {_value(stmt.kind)}", "", ""
    raise TypeError(f"unknown statement {word}")  # pragma: no cover - the grammar's kinds


def _value(value: s.Value) -> str:
    if isinstance(value, s.Name):
        return value.text
    if isinstance(value, s.Number):
        return value.text
    if isinstance(value, s.String):
        return _string(value.value)
    if isinstance(value, s.List):
        return "[" + ", ".join(_value(v) for v in value.items) + "]"
    if not value.parens:
        return value.func.text
    args = [_value(a) for a in value.args]
    args += [f"{k.name.text}={_value(k.value)}" for k in value.keywords]
    return f"{value.func.text}({', '.join(args)})"


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def _broken(stmt: s.Statement) -> str | None:
    """The statement broken inside its longest bracket: items filled over indented lines."""
    head, kind, rest = _parts(stmt)
    flat = head + (f" : {kind}" if kind else "") + (f" {rest}" if rest else "")
    best = None
    for value in _brackets(stmt):
        inner = _items_of(value)
        if inner and (best is None or sum(map(len, inner)) > sum(map(len, _items_of(best)))):
            best = value
    if best is None:
        return None
    whole = _value(best)
    start = flat.find(whole)
    if start < 0:
        return None
    opener = whole[: whole.index("[" if isinstance(best, s.List) else "(") + 1]
    lines, line = [], "   "
    for part in _items_of(best):
        piece = f" {part},"
        if len(line) + len(piece) > WIDTH and line.strip():
            lines.append(line)
            line = "   "
        line += piece
    lines.append(line)
    body = "\n".join(
        line.rstrip(",") if i == len(lines) - 1 else line for i, line in enumerate(lines)
    )
    closer = "]" if isinstance(best, s.List) else ")"
    return flat[:start] + opener + "\n" + body + "\n" + closer + flat[start + len(whole) :]


def _brackets(stmt: s.Statement) -> list[s.List | s.Call]:
    """The top-level bracketed values of a statement, in order."""
    values: list[s.Value] = []
    for field in ("kind", "members", "block", "gate", "sources", "transfer"):
        value = getattr(stmt, field, None)
        if isinstance(value, (s.List, s.Call)) and (not isinstance(value, s.Call) or value.parens):
            values.append(value)
    return values  # type: ignore[return-value]


def _items_of(value: s.List | s.Call) -> list[str]:
    if isinstance(value, s.List):
        return [_value(v) for v in value.items]
    return [_value(a) for a in value.args] + [
        f"{k.name.text}={_value(k.value)}" for k in value.keywords
    ]
