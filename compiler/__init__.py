"""mtlc: a compiler for multi-task recommendation models.

``compile_spec(source, filename)`` turns the text of a ``.mtl`` spec into the
source of a plain PyTorch module; ``load_model(path)`` compiles and imports it
and returns the model class; ``SpecError`` carries the diagnostics of a bad
spec. Importing ``mtlc`` is cheap: the pipeline loads on first use, and torch
only when a generated model is executed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mtlc.version import __version__

__all__ = ["compile_spec", "load_model", "SpecError", "__version__"]

if TYPE_CHECKING:
    from mtlc.api import compile_spec, load_model
    from mtlc.diagnostics import SpecError


def __getattr__(name: str) -> Any:
    if name in ("compile_spec", "load_model"):
        from mtlc import api

        return getattr(api, name)
    if name == "SpecError":
        from mtlc.diagnostics import SpecError

        return SpecError
    raise AttributeError(f"module 'mtlc' has no attribute {name!r}")
