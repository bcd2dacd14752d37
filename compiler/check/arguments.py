"""Reading the arguments of a call (``mlp(...)``, ``sparse(...)``, ...) with checks.

Used by ``mtlc.check``. Each reader reports what is wrong with one value
(wrong type, out of range, not one of the choices) and returns ``None`` then,
so the checker can go on and report every error of the spec in one pass.
The limits below are documented in docs/language.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from mtlc import ir
from mtlc.diagnostics import Reporter, closest, similar
from mtlc.frontend import syntax as s

__all__ = [
    "MAX_VOCAB",
    "MAX_WIDTH",
    "MAX_MAXLEN",
    "MAX_EXPERTS",
    "MAX_DOMAINS",
    "MAX_CLASSES",
    "MAX_LAYERS",
    "MAX_PARAMETERS",
    "MAX_REAL",
    "FUTURE_CALLS",
    "describe",
    "expect_call",
    "read_keywords",
    "read_positionals",
    "integer",
    "real",
    "choice",
    "boolean",
    "name",
    "int_list",
    "options_of_layers",
]

MAX_VOCAB = 2**31 - 1  # ids are int64, but tables this size do not fit in memory anyway
MAX_WIDTH = 1_000_000  # any width: feature dim, layer width, gate hidden width
MAX_MAXLEN = 100_000  # ids per example of a sequence feature
MAX_EXPERTS = 1_024  # experts in one pool, and experts mixed by one gate
MAX_DOMAINS = 1_024  # the domains of one star block (one network each)
MAX_CLASSES = 1_000_000
MAX_LAYERS = 64  # layers of one mlp
MAX_PARAMETERS = 2_000_000_000  # the model's total estimated parameter count
MAX_REAL = 1e6  # upper bound of weights, temperatures and alpha

# Calls of the next part of the language (LANGUAGE.md's last section): MTL309, not MTL301.
FUTURE_CALLS = (
    "dcn",
    "apg",
    "epnet",
    "ppnet",
    "poso",
    "condition",
)


def describe(value: s.Value) -> str:
    """How a value reads in a message: 'the name `x`', 'the number `3`', 'a list'."""
    if isinstance(value, s.Name):
        return f"the name `{value.text}`"
    if isinstance(value, s.Number):
        return f"the number `{value.text}`"
    if isinstance(value, s.String):
        return "a string"
    if isinstance(value, s.List):
        return "a list"
    return f"a call of `{value.func.text}`"


def expect_call(
    value: s.Value,
    known: Iterable[str],
    future: Iterable[str],
    r: Reporter,
    role: str,
    parens: bool = True,
) -> s.Call | None:
    """``value`` as a call of one of ``known`` (``mlp``, ``softmax``, ...), or None after reporting.

    Args:
        known: the call names that exist; an unknown one gets a suggestion.
        future: names planned for a later version (MTL309 instead of MTL301).
        role: what the call is, in words ("block", "gate", "feature kind").
        parens: whether ``name(...)`` is required (a bare ``name`` is fine if False).
    """
    known = tuple(known)
    example = f"`{known[0]}(...)`" if known else "a name"
    if not isinstance(value, s.Call) or (parens and not value.parens):
        head = value.func.text if isinstance(value, s.Call) else None
        if head in known:
            r.error(
                "MTL303",
                value.span,
                f"`{head}` needs its arguments in parentheses",
                label="arguments missing",
                help=f"write {example}",
            )
        else:
            r.error(
                "MTL304",
                value.span,
                f"expected a {role} such as {example}, found {describe(value)}",
                label=f"not a {role}",
            )
        return None
    func = value.func
    if func.text in known:
        return value
    if func.text in future:
        r.error(
            "MTL309",
            func.span,
            f"`{func.text}` is not supported yet",
            label="planned, not yet available",
            help=("supported here: " + ", ".join(f"`{k}`" for k in known)) if known else None,
        )
        return None
    guess = closest(func.text, known)
    help = similar(role, guess) if guess else "known: " + ", ".join(f"`{k}`" for k in known)
    r.error("MTL301", func.span, f"unknown {role} `{func.text}`", label=f"not a {role}", help=help)
    return None


def read_keywords(call: s.Call, allowed: Iterable[str], r: Reporter) -> dict[str, s.Keyword]:
    """The call's keyword arguments by name; reports unknown and repeated ones (MTL302, MTL306)."""
    allowed = tuple(allowed)
    found: dict[str, s.Keyword] = {}
    for keyword in call.keywords:
        key = keyword.name.text
        if key not in allowed:
            guess = closest(key, allowed)
            if guess:
                help = similar("option", guess)
            elif allowed:
                help = f"`{call.func.text}` takes " + ", ".join(f"`{a}`" for a in allowed)
            else:
                help = f"`{call.func.text}` takes no options"
            r.error(
                "MTL302",
                keyword.name.span,
                f"`{call.func.text}` has no option `{key}`",
                label="unknown option",
                help=help,
            )
        elif key in found:
            r.error(
                "MTL306",
                keyword.name.span,
                f"option `{key}` is given twice",
                label="repeated",
                notes=[
                    f"first given at line {found[key].span.line}, column {found[key].span.column}"
                ],
            )
        else:
            found[key] = keyword
    return found


def read_positionals(call: s.Call, names: list[str], r: Reporter) -> list[s.Value | None]:
    """Exactly ``len(names)`` positional arguments.

    Reports too many (MTL308) or too few (MTL303).
    """
    args = list(call.args)
    signature = (
        f"`{call.func.text}({', '.join(names)}, ...)`" if names else f"`{call.func.text}(...)`"
    )
    for extra in args[len(names) :]:
        if names:
            message = (
                f"`{call.func.text}` takes {len(names)} positional argument(s); options go by name"
            )
        else:
            message = f"`{call.func.text}` takes its options by name, as `name=value`"
        r.error("MTL308", extra.span, message, label="extra argument", help=f"write {signature}")
    if len(args) < len(names):
        missing = names[len(args)]
        r.error(
            "MTL303",
            call.span,
            f"`{call.func.text}` needs its {missing}",
            label=f"{missing} missing",
            help=f"write {signature}",
        )
    return [*args[: len(names)], *[None] * (len(names) - len(args))]


def integer(value: s.Value, r: Reporter, what: str, low: int, high: int) -> int | None:
    """A whole number in ``[low, high]``, or None after reporting."""
    if (
        not isinstance(value, s.Number)
        or isinstance(value.value, float)
        and math.isfinite(value.value)
    ):
        r.error(
            "MTL304",
            value.span,
            f"{what} must be a whole number, not {describe(value)}",
            label="not a whole number",
        )
        return None
    if not low <= value.value <= high:
        r.error(
            "MTL305",
            value.span,
            f"{what} must be between {low:,} and {high:,}, not {value.text}",
            label="out of range",
        )
        return None
    return int(value.value)


def real(
    value: s.Value,
    r: Reporter,
    what: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float | None:
    """A finite number in the interval (open or closed at each end), or None after reporting."""
    if not isinstance(value, s.Number):
        r.error(
            "MTL304",
            value.span,
            f"{what} must be a number, not {describe(value)}",
            label="not a number",
        )
        return None
    number = float(value.value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        lower = f"{'greater than' if low_open else 'at least'} {_number(low)}"
        upper = f"{'less than' if high_open else 'at most'} {_number(high)}"
        r.error(
            "MTL305",
            value.span,
            f"{what} must be {lower} and {upper}, not {value.text}",
            label="out of range",
        )
        return None
    return number


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def choice(value: s.Value, r: Reporter, what: str, choices: Iterable[str]) -> str | None:
    """One of the words ``choices`` (``relu``, ``mean``, ...), or None after reporting."""
    choices = tuple(choices)
    listed = ", ".join(f"`{c}`" for c in choices)
    if not isinstance(value, s.Name):
        r.error(
            "MTL304",
            value.span,
            f"{what} is one of {listed}, not {describe(value)}",
            label="not a word",
        )
        return None
    if value.text in choices:
        return value.text
    guess = closest(value.text, choices)
    help = similar(what, guess) if guess else f"choose one of {listed}"
    r.error(
        "MTL307",
        value.span,
        f"`{value.text}` is not a valid {what}",
        label="invalid choice",
        help=help,
    )
    return None


def boolean(value: s.Value, r: Reporter, what: str) -> bool | None:
    """``true`` or ``false``, or None after reporting."""
    word = choice(value, r, what, ("true", "false"))
    return None if word is None else word == "true"


def name(value: s.Value, r: Reporter, what: str) -> s.Name | None:
    """A name (of a node or a column), or None after reporting."""
    if isinstance(value, s.Name):
        return value
    r.error(
        "MTL304", value.span, f"{what} must be a name, not {describe(value)}", label="not a name"
    )
    return None


def options_of_layers(options: dict[str, s.Keyword], r: Reporter) -> dict[str, object]:
    """``activation=``, ``norm=`` and ``dropout=`` of an mlp's (or a gate's hidden) layers, read."""
    fields: dict[str, object] = {}
    if "activation" in options:
        fields["activation"] = choice(
            options["activation"].value, r, "activation", [a.value for a in ir.Activation]
        )
    if "norm" in options:
        fields["norm"] = choice(options["norm"].value, r, "norm", [n.value for n in ir.Norm])
    if "dropout" in options:
        fields["dropout"] = real(options["dropout"].value, r, "dropout", 0.0, 1.0, high_open=True)
    return fields


def int_list(
    value: s.Value, r: Reporter, what: str, low: int, high: int, *, allow_empty: bool = False
) -> list[int] | None:
    """A list of whole numbers, each in ``[low, high]``; at most ``MAX_LAYERS`` long."""
    if not isinstance(value, s.List):
        r.error(
            "MTL304",
            value.span,
            f"{what} must be a list such as `[64, 32]`, not {describe(value)}",
            label="not a list",
        )
        return None
    if not value.items and not allow_empty:
        r.error("MTL305", value.span, f"{what} needs at least one width", label="empty list")
        return None
    if len(value.items) > MAX_LAYERS:
        r.error(
            "MTL305",
            value.span,
            f"{what} has {len(value.items)} entries; at most {MAX_LAYERS} are allowed",
            label="too long",
        )
        return None
    numbers = [integer(item, r, f"each width in {what}", low, high) for item in value.items]
    checked = [n for n in numbers if n is not None]
    return checked if len(checked) == len(numbers) else None
