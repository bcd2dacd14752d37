"""``mtlc lsp``: a language server over stdio (pygls), on the compiler's own check.

Diagnostics on open and on every change (``mtlc check``'s codes, messages and
positions), hover on a name (kind, output shape, parameters, the lines of its
inputs), go to definition, completion of the spec's names, calls and options,
and formatting through ``mtlc fmt``. What it shows is computed by
``mtlc.views.editor``; this module only speaks the protocol. Needs the ``lsp``
extra (``pip install 'mtlc[lsp]'``).
"""

from __future__ import annotations

from mtlc.formatter import format_spec
from mtlc.version import __version__
from mtlc.views.editor import Analysis, analyse

__all__ = ["serve"]


def serve() -> None:
    """Run the server on stdin/stdout until the client says exit."""
    from lsprotocol import types as t
    from pygls.lsp.server import LanguageServer

    server = LanguageServer("mtlc", __version__)
    analyses: dict[str, Analysis] = {}

    def refresh(uri: str) -> None:
        document = server.workspace.get_text_document(uri)
        analysis = analyses[uri] = analyse(document.source, document.filename or "spec.mtl")
        diagnostics = [
            t.Diagnostic(
                range=t.Range(
                    start=t.Position(line=d.span.line - 1, character=d.span.column - 1),
                    end=t.Position(line=d.span.end_line - 1, character=d.span.end_column - 1),
                ),
                message=d.message
                + (f"\n{d.label}" if d.label else "")
                + (f"\nhelp: {d.help}" if d.help else ""),
                code=d.code,
                source="mtlc",
                severity=t.DiagnosticSeverity.Error
                if d.severity == "error"
                else t.DiagnosticSeverity.Warning,
            )
            for d in analysis.diagnostics
        ]
        server.text_document_publish_diagnostics(
            t.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
        )

    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: t.DidOpenTextDocumentParams) -> None:
        refresh(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: t.DidChangeTextDocumentParams) -> None:
        refresh(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_HOVER)
    def hover(ls: LanguageServer, params: t.HoverParams) -> t.Hover | None:
        analysis = analyses.get(params.text_document.uri)
        text = analysis and analysis.hover(params.position.line, params.position.character)
        if not text:
            return None
        return t.Hover(contents=t.MarkupContent(kind=t.MarkupKind.Markdown, value=text))

    @server.feature(t.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: LanguageServer, params: t.DefinitionParams) -> t.Location | None:
        analysis = analyses.get(params.text_document.uri)
        found = analysis and analysis.definition(params.position.line, params.position.character)
        if not found:
            return None
        line, start, end = found
        span = t.Range(
            start=t.Position(line=line, character=start), end=t.Position(line=line, character=end)
        )
        return t.Location(uri=params.text_document.uri, range=span)

    kinds = {
        "name": t.CompletionItemKind.Variable,
        "function": t.CompletionItemKind.Function,
        "property": t.CompletionItemKind.Property,
        "keyword": t.CompletionItemKind.Keyword,
    }

    @server.feature(t.TEXT_DOCUMENT_COMPLETION)
    def completion(ls: LanguageServer, params: t.CompletionParams) -> t.CompletionList:
        analysis = analyses.get(params.text_document.uri)
        found = analysis.completions() if analysis else []
        items = [t.CompletionItem(label=label, kind=kinds[kind]) for label, kind in found]
        return t.CompletionList(is_incomplete=False, items=items)

    @server.feature(t.TEXT_DOCUMENT_FORMATTING)
    def formatting(
        ls: LanguageServer, params: t.DocumentFormattingParams
    ) -> list[t.TextEdit] | None:
        document = server.workspace.get_text_document(params.text_document.uri)
        analysis = analyses.get(params.text_document.uri)
        if analysis is None or analysis.diagnostics:  # a spec with errors is not touched
            return None
        text = format_spec(document.source)
        if text == document.source:
            return []
        lines = document.source.split("\n")
        whole = t.Range(
            start=t.Position(line=0, character=0),
            end=t.Position(line=len(lines), character=0),
        )
        return [t.TextEdit(range=whole, new_text=text)]

    server.start_io()
