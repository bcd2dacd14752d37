"""The front end: the text of a spec -> its syntax tree (``syntax.Spec``), or a ``SpecError``.

``lexer`` screens the text and tracks brackets, ``parser`` runs Lark and builds
the tree, ``syntax_errors`` turns Lark's exceptions into located diagnostics.
Imports only the shared diagnostics (and ``mtlc.files`` for the table cache).
"""

from mtlc.frontend.parser import parse

__all__ = ["parse"]
