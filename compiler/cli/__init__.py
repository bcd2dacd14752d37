"""The command-line face.

``mtlc compile|check|fmt|lsp|explain|graph`` are here, ``train|predict|evaluate`` in ``train``.

The only part of the compiler that does I/O or sets exit codes (``exits``: 0
ok, 1 a spec has errors, 2 a usage error such as a bad option or a file that
cannot be read or written). A user's mistake prints a message, never a
traceback, and never leaves a half-written file. ``compile``, ``check``,
``explain`` and ``graph`` never import torch; the training commands import the
runtime when they run. ``demo`` and ``datasets`` are ``make demo`` and its data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mtlc.cli import train_flags
from mtlc.cli.exits import INTERRUPTED, OK, SPEC_ERRORS, USAGE, UsageError
from mtlc.files import atomic_write, shared_mode
from mtlc.version import __version__

if TYPE_CHECKING:
    from mtlc.ir import Model

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (``mtlc`` exits with it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"mtlc: error: {error}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("mtlc: interrupted", file=sys.stderr)
        return INTERRUPTED


def _line_length(text: str) -> int:
    value = int(text)
    if not 79 <= value <= 400:  # the module's fixed lines fit in 79 (PEP 8's length)
        raise argparse.ArgumentTypeError(f"must be between 79 and 400, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlc",
        description="Compile .mtl specs of multi-task recommendation models into PyTorch modules.",
    )
    parser.add_argument("--version", action="version", version=f"mtlc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compile_ = sub.add_parser("compile", help="compile a spec into a PyTorch module")
    compile_.add_argument("spec", metavar="SPEC", help="the .mtl spec")
    compile_.add_argument("-o", "--output", metavar="OUT", help="write here (default: stdout)")
    compile_.add_argument(
        "--emit",
        choices=("python", "ir"),
        default="python",
        help="the module's source (default) or the checked IR as JSON",
    )
    compile_.add_argument(
        "-O",
        dest="opt_level",
        type=int,
        choices=(0, 1),
        default=1,
        help="-O0: plain form; -O1 (default): batched experts, gate banks",
    )
    compile_.add_argument(
        "--line-length",
        type=_line_length,
        default=88,
        metavar="N",
        help="lay the module out as black does at N columns (default 88, black's default)",
    )
    compile_.set_defaults(run=_compile)

    check = sub.add_parser("check", help="check specs; exit 1 if any has errors")
    check.add_argument("specs", nargs="+", metavar="SPEC", help="the .mtl specs")
    check.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (default), json, or GitHub annotations",
    )
    check.set_defaults(run=_check)

    fmt = sub.add_parser("fmt", help="lay specs out in the canonical layout, comments kept")
    fmt.add_argument("specs", nargs="+", metavar="SPEC", help="the .mtl specs (rewritten in place)")
    fmt.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a spec would change"
    )
    fmt.add_argument("--diff", action="store_true", help="change nothing; print the diffs")
    fmt.set_defaults(run=_fmt)

    lsp = sub.add_parser("lsp", help="a language server over stdio, for editors (extra lsp)")
    lsp.set_defaults(run=_lsp)

    explain = sub.add_parser(
        "explain",
        help="a spec's nodes with shapes and parameter counts, or what a diagnostic code means",
    )
    explain.add_argument(
        "code", metavar="SPEC|CODE", help="a .mtl spec, or a diagnostic code such as MTL203"
    )
    explain.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    explain.set_defaults(run=_explain)

    graph = sub.add_parser("graph", help="draw a spec's architecture as SVG or Graphviz DOT")
    graph.add_argument("spec", metavar="SPEC", help="the .mtl spec")
    graph.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        required=True,
        help="arch.svg (SVG), arch.dot or arch.gv (DOT), or - (DOT to stdout)",
    )
    graph.set_defaults(run=_graph)

    train_flags.register(
        sub
    )  # argparse only: the training commands import the runtime when they run
    return parser


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no such spec file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a spec file") from None
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None


def _checked(path: str) -> Model | None:
    """The checked IR of the spec at ``path``, or None (its errors printed) if it has errors."""
    from mtlc.api import compile_ir
    from mtlc.diagnostics import SpecError

    try:
        return compile_ir(_read(path), path)
    except SpecError as error:
        print(str(error), file=sys.stderr)
        return None


def _compile(args: argparse.Namespace) -> int:
    from mtlc.api import compile_spec
    from mtlc.diagnostics import SpecError

    source = _read(args.spec)
    try:
        text = compile_spec(
            source,
            args.spec,
            opt_level=args.opt_level,
            output=args.emit,
            line_length=args.line_length,
        )
    except SpecError as error:
        print(str(error), file=sys.stderr)
        return SPEC_ERRORS
    if args.output is None:
        sys.stdout.write(text)
    else:
        _write(Path(args.output), text)
    return OK


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``mtlc.files.atomic_write``), as ``open()`` would
    set its permissions; a folder that is not there is a usage error, not created."""
    try:
        atomic_write(
            path, lambda f: f.write(text.encode("utf-8")), mode=shared_mode(), make_parents=False
        )
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None


def _check(args: argparse.Namespace) -> int:
    from mtlc.api import compile_ir
    from mtlc.diagnostics import SpecError, render_github, render_json

    failed, diagnostics = [], []
    for path in args.specs:
        source = _read(path)
        try:
            compile_ir(source, path)
        except SpecError as error:
            failed.append(error)
            diagnostics.extend(error.diagnostics)
    if args.format == "json":
        print(render_json(diagnostics))
    elif args.format == "github":
        for diagnostic in diagnostics:
            print(render_github(diagnostic))
    else:
        for failure in failed:
            print(str(failure), file=sys.stderr)
        if len(args.specs) > 1 or not failed:
            ok = len(args.specs) - len(failed)
            print(f"{ok} of {len(args.specs)} specs ok", file=sys.stderr if failed else sys.stdout)
    return SPEC_ERRORS if failed else OK


def _fmt(args: argparse.Namespace) -> int:
    """Rewrite each spec in the canonical layout; a spec with errors gets them, untouched."""
    import difflib

    from mtlc.api import compile_ir
    from mtlc.diagnostics import SpecError
    from mtlc.formatter import format_spec

    changed, failed = [], 0
    for path in args.specs:
        source = _read(path)
        try:
            compile_ir(source, path)  # a spec with errors is reported and left as it is
            text = format_spec(source, path)
        except SpecError as error:
            print(str(error), file=sys.stderr)
            failed += 1
            continue
        except ValueError as error:  # a layout the formatter does not know: left as it is
            print(f"mtlc: error: cannot format {path}: {error}", file=sys.stderr)
            failed += 1
            continue
        if text == source:
            continue
        changed.append(path)
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    source.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"{path} (as written)",
                    f"{path} (formatted)",
                )
            )
        elif args.check:
            print(f"would reformat {path}", file=sys.stderr)
        else:
            _write(Path(path), text)
            print(f"reformatted {path}", file=sys.stderr)
    if not args.diff:
        kept = len(args.specs) - len(changed) - failed
        done = "would be reformatted" if args.check else "reformatted"
        print(f"{len(changed)} {done}, {kept} unchanged", file=sys.stderr)
    if failed:
        return SPEC_ERRORS
    return SPEC_ERRORS if changed and args.check else OK


def _lsp(args: argparse.Namespace) -> int:
    from mtlc.cli.extras import needs_extra

    try:
        from mtlc.cli.lsp import serve

        serve()
    except ModuleNotFoundError as error:
        line = needs_extra("lsp", error)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return USAGE
    return OK


def _explain(args: argparse.Namespace) -> int:
    if args.code.endswith(".mtl") or Path(args.code).is_file():
        return _explain_spec(args.code, args.format)
    from mtlc.diagnostics import explain_code

    text = explain_code(args.code)
    if not text:
        raise UsageError(
            f"unknown diagnostic code {args.code!r} (codes look like MTL203), "
            "and no spec file of that name"
        )
    if args.format == "json":
        print(json.dumps({"code": args.code.upper(), "explanation": text}, indent=2))
    else:
        print(text)
    return OK


def _explain_spec(path: str, format: str) -> int:
    """``mtlc explain spec.mtl``: each node's kind, shape and parameters (no torch)."""
    from mtlc.views.summary import explain, render_json, render_text

    model = _checked(path)
    if model is None:
        return SPEC_ERRORS
    render = render_json if format == "json" else render_text
    sys.stdout.write(render(explain(model)))
    return OK


_GRAPH_FORMATS = {".svg": "svg", ".dot": "dot", ".gv": "dot"}


def _graph(args: argparse.Namespace) -> int:
    """``mtlc graph spec.mtl -o arch.svg``: the architecture, drawn without graphviz."""
    from mtlc.views.graph import to_dot
    from mtlc.views.svg import draw

    output = args.output
    suffix = Path(output).suffix.lower()
    if output != "-" and suffix not in _GRAPH_FORMATS:
        raise UsageError(f"cannot tell the format of {output}: name it .svg, .dot or .gv, or -")
    model = _checked(args.spec)
    if model is None:
        return SPEC_ERRORS
    if output == "-":
        sys.stdout.write(to_dot(model))
        return OK
    text = draw(model) if _GRAPH_FORMATS[suffix] == "svg" else to_dot(model)
    _write(Path(output), text)
    return OK
