"""Syntax errors: Lark's exceptions translated into diagnostics a user understands.

Called only by ``mtlc.frontend.parser``. Three sources of knowledge, tried in order:
the bracket post-lexer (unmatched or unclosed brackets), a catalogue of
known-bad snippets matched against the parser state
(``UnexpectedInput.match_examples``), and the set of tokens the parser expected.
"""

from __future__ import annotations

import re

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from mtlc.diagnostics import Reporter, Span, closest, similar
from mtlc.frontend.lexer import MAX_NESTING, BracketError
from mtlc.frontend.syntax import STATEMENT_WORDS

__all__ = ["translate"]

# Known-bad snippets, by (code, message, help). Each must fail to parse.
_EXAMPLES: dict[tuple[str, str, str], list[str]] = {
    ("MTL008", "missing `=` after the name", "write `NAME = ...`"): [
        "tower t mlp(a, [1])\n",
        "expert e mlp(a, [1])\n",
        "expert e x2 mlp(a, [1])\n",
        "gate g softmax(a) over [e]\n",
        "transfer t ait(a, from=b)\n",
        "group g [a]\n",
        "task t : binary(label=y) n\n",
        "task t : binary n\n",
        "task t : binary(label=y) 1\n",
        "tower t [1]\n",
        "tower t 1\n",
    ],
    (
        "MTL001",
        "missing `:` after the name",
        "write `feature NAME : KIND` or `task NAME : KIND = NODE`",
    ): [
        "feature f dense\n",
        "feature f sparse(vocab=1, dim=1)\n",
        "task t binary = n\n",
    ],
    (
        "MTL001",
        "missing `over [SOURCES]` after the gate",
        "write `gate NAME = softmax(INPUT) over [SOURCE, ...]`",
    ): [
        "gate g = softmax(a)\n",
        "gate g = softmax(a) [e]\n",
        "gate g = softmax(a) e\n",
        "gate g = softmax(a) over e\n",
    ],
    ("MTL001", "a group lists its members in brackets", "write `group NAME = [MEMBER, ...]`"): [
        "group g = a\n",
        "group g = a, b\n",
    ],
    (
        "MTL001",
        "a constraint compares two tasks with `<=`",
        "write `constrain TASK <= TASK [weight W]`",
    ): [
        "constrain a = b\n",
        "constrain a b\n",
    ],
    (
        "MTL001",
        "the constraint weight is a number after `weight`",
        "write `constrain a <= b weight 0.5`",
    ): [
        "constrain a <= b 0.5\n",
        "constrain a <= b weight\n",
        "constrain a <= b weight=0.5\n",
        "constrain a <= b 1\n",
    ],
}

_FRIENDLY = {
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "STRING": "a string",
    "COUNT": "an expert count such as `x4`",
    "EQUAL": "`=`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "STAR": "`*`",
    "MINUS": "`-`",
    "_OVER": "`over`",
    "_LE": "`<=`",
    "_WEIGHT": "`weight`",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}


def translate(
    error: Exception,
    open_brackets: list[Token],
    text: str,
    filename: str,
    lark: Lark,
    reporter: Reporter,
) -> None:
    """Report ``error`` (from ``lark.parse`` or the bracket post-lexer) as one diagnostic."""
    lines = text.split("\n")
    if isinstance(error, BracketError):
        _bracket(error, filename, reporter)
    elif isinstance(error, UnexpectedCharacters):
        _character(error, lines, filename, reporter)
    elif isinstance(error, UnexpectedToken):
        _token(error, open_brackets, lines, filename, lark, reporter)
    else:  # UnexpectedEOF: cannot happen with LALR, but say something useful
        span = Span.at(filename, len(lines), 1, 1)
        reporter.error("MTL001", span, "the spec ends in the middle of a statement", label="here")


def _bracket(error: BracketError, filename: str, reporter: Reporter) -> None:
    token, opener = error.token, error.opener
    if error.too_deep:
        reporter.error(
            "MTL014",
            Span.of_token(filename, token),
            f"brackets are nested more than {MAX_NESTING} levels deep",
            label="too deep",
        )
    elif opener is None:
        reporter.error(
            "MTL006",
            Span.of_token(filename, token),
            f"`{token}` closes no bracket",
            label="unmatched",
        )
    else:
        expected = ")" if opener.type == "LPAR" else "]"
        reporter.error(
            "MTL006",
            Span.of_token(filename, token),
            f"`{token}` does not match the `{opener}` opened at line {opener.line},"
            f" column {opener.column}",
            label=f"expected `{expected}`",
            help=f"close the `{opener}` with `{expected}` first",
        )


def _character(
    error: UnexpectedCharacters, lines: list[str], filename: str, reporter: Reporter
) -> None:
    line_text = lines[error.line - 1] if error.line <= len(lines) else ""
    char = error.char
    if char == '"':
        width = max(1, len(line_text) - error.column + 1)
        reporter.error(
            "MTL003",
            Span.at(filename, error.line, error.column, width),
            "this string is not closed on its line",
            label="unterminated string",
            help='end the string with `"` on the same line',
        )
        return
    shown = char if char.isprintable() and not char.isspace() else ascii(char)
    help = None
    if not char.isascii():
        help = "names and numbers are ASCII; other text belongs in the model's description string"
    elif char in "<>!":
        help = "a constraint is written `constrain TASK <= TASK`"
    elif char == "'":
        help = 'strings are written in double quotes: "..."'
    elif char == ";":
        help = "statements end at the end of the line; no `;` is needed"
    reporter.error(
        "MTL002",
        Span.at(filename, error.line, error.column, 1),
        f"unexpected character `{shown}`",
        label="not part of the language",
        help=help,
    )


def _token(
    error: UnexpectedToken,
    open_brackets: list[Token],
    lines: list[str],
    filename: str,
    lark: Lark,
    reporter: Reporter,
) -> None:
    token = error.token
    expected = set(getattr(error, "accepts", None) or error.expected) - {"$END"}
    if token.type == "$END" or (open_brackets and _runs_into_next_statement(token, open_brackets)):
        if open_brackets:
            _unclosed(open_brackets[-1], token, filename, reporter)
            return
    line_text = lines[token.line - 1] if 0 < token.line <= len(lines) else ""
    span = (
        Span.of_token(filename, token)
        if token.type not in ("$END", "_NL")
        else _end_of(line_text, token, filename)
    )
    if token.type == "NAME" and "_FEATURE" in expected:
        _unknown_statement(token, span, reporter)
        return
    if re.match(r"\s*expert\s+\w+\s+x\s+\d", line_text) and str(token) == "x":
        reporter.error(
            "MTL009",
            span,
            "the expert count is written without a space",
            label="`x` then a number",
            help="write it as one word, for example `x4`",
        )
        return
    label = _match_example(error, lark)
    if label is not None:
        code, message, help = label
        reporter.error(code, span, message, label=f"found {_describe(token)}", help=help)
    elif token.type == "_NL":
        reporter.error(
            "MTL010",
            span,
            "the statement ends too early",
            label="the line ends here",
            help=(
                f"expected {_expected(expected)};"
                " a statement continues on the next line only inside ( ) or [ ]"
            ),
        )
    elif "COMMA" in expected and token.type in ("NAME", "INT", "FLOAT", "STRING", "LSQB", "MINUS"):
        reporter.error(
            "MTL011",
            span,
            f"missing `,` before {_describe(token)}",
            label="expected `,` before this",
            help="separate arguments and list items with commas",
        )
    else:
        reporter.error(
            "MTL001",
            span,
            f"expected {_expected(expected)}, found {_describe(token)}",
            label="unexpected here",
        )


def _runs_into_next_statement(token: Token, open_brackets: list[Token]) -> bool:
    """A statement word on a later line than the innermost open bracket: it was never closed."""
    return _line(token) > _line(open_brackets[-1]) and str(token) in STATEMENT_WORDS


def _line(token: Token) -> int:
    """The token's line: Lark types it as optional, but its lexer and parser always set it."""
    assert token.line is not None, token
    return token.line


def _unclosed(opener: Token, token: Token, filename: str, reporter: Reporter) -> None:
    closer = ")" if opener.type == "LPAR" else "]"
    where = "the end of the file" if token.type == "$END" else f"line {token.line}"
    reporter.error(
        "MTL005",
        Span.of_token(filename, opener),
        f"this `{opener}` is never closed",
        label="opened here",
        help=f"add `{closer}` where the list of items ends",
        notes=[f"the parser reached {where} still inside it"],
    )


def _unknown_statement(token: Token, span: Span, reporter: Reporter) -> None:
    word = str(token)
    guess = closest(word, STATEMENT_WORDS)
    help = (
        similar("statement", guess)
        if guess
        else "a statement starts with " + ", ".join(STATEMENT_WORDS)
    )
    reporter.error(
        "MTL007", span, f"unknown statement `{word}`", label="not a statement", help=help
    )


def _end_of(line_text: str, token: Token, filename: str) -> Span:
    """A one-character span just after the last visible character of the line."""
    line = _line(token) if token.type == "_NL" else max(1, _line(token))
    stripped = line_text.split("#", 1)[0].rstrip() if '"' not in line_text else line_text.rstrip()
    return Span.at(filename, line, len(stripped) + 1, 1)


def _match_example(error: UnexpectedToken, lark: Lark) -> tuple[str, str, str] | None:
    """The catalogue entry whose snippet fails in the same parser state on the same kind of token.

    This is ``UnexpectedInput.match_examples`` done locally: in Lark 1.3 that method
    compares a ``ParserState`` object (what the contextual lexer's fallback stores)
    as if it were a state number, so it never matches those errors.
    """
    state = _state_number(error)
    for st, token_type, label in _example_states(lark):
        if st == state and token_type == error.token.type:
            return label
    return None


_STATES: list[tuple[tuple, str, tuple[str, str, str]]] = []


def _example_states(lark: Lark) -> list[tuple[tuple, str, tuple[str, str, str]]]:
    """(parser state, token type, label) of every catalogue snippet; computed once."""
    if not _STATES:
        for label, snippets in _EXAMPLES.items():
            for snippet in [*snippets, *("model M\n" + snippet for snippet in snippets)]:
                try:
                    lark.parse(snippet)
                except UnexpectedToken as failure:
                    _STATES.append((_state_number(failure), failure.token.type, label))
                except Exception:  # noqa: BLE001 - a snippet failing otherwise just does not count
                    continue
    return _STATES


def _state_number(error: UnexpectedToken) -> tuple:
    """The parser's whole state stack. With LALR the failing state alone is shared by
    unrelated contexts (the error is found before the last name is reduced), but the stack
    of one statement pins down where in which statement the error is; the statements
    before it reduce to one entry, so the snippets are recorded as a first statement
    and as a later one."""
    state = error.state
    stack = getattr(state, "state_stack", None)
    return tuple(stack) if stack is not None else (state,)


def _describe(token: Token) -> str:
    if token.type in ("_NL", "$END"):
        return _FRIENDLY[token.type]
    if token.type == "NAME":
        return f"the name `{token}`"
    if token.type in ("INT", "FLOAT"):
        return f"the number `{token}`"
    if token.type == "STRING":
        return "a string"
    return f"`{token}`"


def _expected(expected: set[str]) -> str:
    words = sorted(
        {_FRIENDLY.get(name, f"`{name.lower()}`") for name in expected if name != "__IGNORE_0"}
    )
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    if len(words) > 6:
        return "a statement" if "_FEATURE" in expected else "another token"
    return ", ".join(words[:-1]) + " or " + words[-1]
