"""The compiler from Python: ``compile_spec`` and ``load_model``.

``compile_spec`` is the whole pipeline as one pure function,
``emit(lower(check(parse(source))))``; ``load_model`` compiles a spec (or
reads a generated module) and returns the model class. Neither imports torch
until a generated module is executed.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import types
from pathlib import Path

from mtlc import ir
from mtlc.backend import emit, lower
from mtlc.backend.linewrap import LINE_LENGTH
from mtlc.check import check
from mtlc.frontend import parse

__all__ = ["compile_spec", "compile_ir", "load_model", "load_source"]


def compile_ir(source: str, filename: str = "spec.mtl") -> ir.Model:
    """Parse and check ``source``; raises ``mtlc.SpecError`` carrying every diagnostic."""
    return check(parse(source, filename))


def compile_spec(
    source: str,
    filename: str = "spec.mtl",
    *,
    opt_level: int = 1,
    output: str = "python",
    line_length: int = LINE_LENGTH,
) -> str:
    """Compile the text of a ``.mtl`` spec into the source of a PyTorch module.

    Args:
        source: the spec's text.
        filename: the name diagnostics and the generated header use.
        opt_level: 0 for the plain form, 1 (default) for batched experts and gate banks.
        output: ``"python"`` for the module's source, ``"ir"`` for the checked IR as JSON.
        line_length: the module is laid out as black lays it out at this length
            (default 88, black's own default).

    Raises:
        mtlc.SpecError: the spec has errors (``.diagnostics`` lists them all).
        ValueError: an unknown ``output`` or ``opt_level``.
    """
    if output not in ("python", "ir"):
        raise ValueError(f"output must be 'python' or 'ir', not {output!r}")
    if opt_level not in (0, 1):
        raise ValueError(f"opt_level must be 0 or 1, not {opt_level!r}")
    model = compile_ir(source, filename)
    if output == "ir":
        return model.model_dump_json(indent=2) + "\n"
    return emit(lower(model, opt_level), line_length)


def load_model(path: str | Path, *, opt_level: int = 1) -> type:
    """The model class of a ``.mtl`` spec (compiled now) or of a generated ``.py`` module.

    The module is executed under a name derived from its text and registered in
    ``sys.modules`` and ``linecache``, so tracebacks show the generated lines.

    Raises:
        mtlc.SpecError: the spec has errors.
        OSError: the file cannot be read.
        ValueError: the file defines no model class.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return load_source(text, path.name, opt_level=opt_level)
    return _model_class(_import(text, path.name), path)


def load_source(source: str, filename: str = "spec.mtl", *, opt_level: int = 1) -> type:
    """The model class of the spec text ``source`` (compiled and imported now)."""
    code = compile_spec(source, filename, opt_level=opt_level)
    return _model_class(_import(code, filename), Path(filename))


def _import(code: str, label: str) -> types.ModuleType:
    digest = hashlib.sha1(code.encode("utf-8")).hexdigest()[:12]
    name = f"mtlc_generated_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    filename = f"<mtlc generated from {label}>"
    module = types.ModuleType(name)
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    exec(compile(code, filename, "exec"), module.__dict__)
    sys.modules[name] = module
    return module


def _model_class(module: types.ModuleType, path: Path) -> type:
    import torch.nn as nn

    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, nn.Module)
        and value.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise ValueError(f"{path}: expected one generated model class, found {len(classes)}")
    return classes[0]
