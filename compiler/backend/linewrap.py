"""Laying out generated lines as black would, one statement at a time.

The template already prints the module in black's style; only a statement
that does not fit on one line goes through ``black.format_str``, alone, at
the width left by its indentation. That gives black's layout at a small
fraction of the cost of formatting the whole module (tests check that black
leaves every generated module unchanged). A trailing comment that would push
a line past the limit goes on the line above instead, so a shape or spec-line
comment never makes black break a statement.
"""

from __future__ import annotations

LINE_LENGTH = 88  # black's default, so a repository that runs black leaves the module as it is


def quote(text: str) -> str:
    """A string literal as black writes it.

    ``repr()``, in double quotes where that adds no escape.
    """
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1] + '"'
    return literal


def fit(
    code: str, indent: int, comment: str = "", *, entry: bool = False, width: int = LINE_LENGTH
) -> str:
    """``code`` (a statement, or with ``entry`` a ``key: value,`` entry of a dict) laid out.

    Args:
        code: one line of code, without indentation.
        indent: the column it starts at.
        comment: the text of a trailing comment, or "".
        entry: ``code`` is a dict entry ending in a comma.
        width: the line length (black's ``--line-length``).

    Returns:
        The text to print at column ``indent``; lines after the first carry
        their own indentation.
    """
    if comment and indent + len(code) + 4 + len(comment) <= width:
        return f"{code}  # {comment}"
    lines = [code] if indent + len(code) <= width else _black(code, indent, entry, width)
    if comment:
        lines.insert(0, f"# {comment}")
    return f"\n{' ' * indent}".join(lines)


def _black(code: str, indent: int, entry: bool, width: int) -> list[str]:
    """The lines black makes of ``code`` at ``indent``, relative to that indentation."""
    import black  # only when a statement needs breaking: it is slow to import

    if not entry:
        text = black.format_str(code, mode=black.Mode(line_length=width - indent))
        return text.rstrip("\n").split("\n")
    wrapped = "{\n    " + code + "\n}"
    text = black.format_str(wrapped, mode=black.Mode(line_length=width - indent + 4))
    inner = text.rstrip("\n").split("\n")[1:-1]
    return [line[4:] for line in inner]
