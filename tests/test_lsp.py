"""``mtlc lsp``, spoken to over stdio as an editor would: JSON-RPC with Content-Length frames.

One server per test module: open a spec with an error (its diagnostics arrive,
with ``mtlc check``'s code and position), fix it (they clear), then hover,
go to definition, completion and formatting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the lsp extra: pip install 'mtlc[lsp]'")

ROOT = Path(__file__).resolve().parents[1]
URI = "file:///tmp/spec.mtl"
GOOD = (ROOT / "specs" / "mmoe.mtl").read_text(encoding="utf-8")
BAD = GOOD.replace("mlp(to_ctr, [64])", "mlp(to_ctx, [64])")


class Client:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mtlc", "lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.next_id = 0
        self.notifications: list[dict] = []

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.process.stdin.flush()

    def receive(self) -> dict:
        length = None
        while True:
            line = self.process.stdout.readline()
            assert line, self.process.stderr.read().decode()
            if line in (b"\r\n", b"\n"):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return json.loads(self.process.stdout.read(length))

    def request(self, method: str, params: dict) -> dict:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == self.next_id and "method" not in message:
                return message
            self.notifications.append(message)

    def notify(self, method: str, params: dict) -> None:
        self.send({"method": method, "params": params})

    def diagnostics(self) -> list[dict]:
        """The next diagnostics published for the spec."""
        while True:
            message = self.notifications.pop(0) if self.notifications else self.receive()
            if message.get("method") == "textDocument/publishDiagnostics":
                return message["params"]["diagnostics"]


@pytest.fixture(scope="module")
def client():
    client = Client()
    reply = client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    capabilities = reply["result"]["capabilities"]
    assert capabilities["hoverProvider"] and capabilities["definitionProvider"]
    client.notify("initialized", {})
    yield client
    client.request("shutdown", None)
    client.notify("exit", None)
    client.process.wait(timeout=20)


def at(line: int, character: int) -> dict:
    return {"textDocument": {"uri": URI}, "position": {"line": line, "character": character}}


def test_diagnostics_on_open_and_on_change(client):
    client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": URI, "languageId": "mtl", "version": 1, "text": BAD}},
    )
    (diagnostic,) = client.diagnostics()
    assert diagnostic["code"] == "MTL203" and "unknown name `to_ctx`" in diagnostic["message"]
    line = BAD.split("\n").index("tower ctr_net = mlp(to_ctx, [64])")
    column = "tower ctr_net = mlp(to_ctx, [64])".index("to_ctx")
    assert diagnostic["range"]["start"] == {"line": line, "character": column}
    client.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": URI, "version": 2},
            "contentChanges": [{"text": GOOD}],
        },
    )
    assert client.diagnostics() == []


def test_hover_definition_completion_and_formatting(client):
    lines = GOOD.split("\n")
    row = next(i for i, text in enumerate(lines) if text.startswith("tower ctr_net"))
    hover = client.request("textDocument/hover", at(row, lines[row].index("to_ctr") + 1))
    text = hover["result"]["contents"]["value"]
    assert "**to_ctr**: gate" in text and "`[B, 128]`" in text and "parameters" in text
    assert "reads `all` (line" in text
    found = client.request("textDocument/definition", at(row, lines[row].index("to_ctr")))
    declared = next(i for i, text in enumerate(lines) if text.startswith("gate to_ctr"))
    assert found["result"]["range"]["start"] == {"line": declared, "character": 5}
    items = client.request("textDocument/completion", at(row, 0))["result"]["items"]
    labels = {item["label"] for item in items}
    assert {"shared", "to_cvr", "mlp", "dropout", "softmax"} <= labels
    edits = client.request(
        "textDocument/formatting",
        {"textDocument": {"uri": URI}, "options": {"tabSize": 4, "insertSpaces": True}},
    )["result"]
    assert edits == []  # specs/mmoe.mtl is formatted already


def test_lsp_without_the_extra_says_which(tmp_path):
    from tests.test_extras import run

    done = run("pygls", "lsp")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mtlc: error: mtlc lsp needs the lsp extra: pip install 'mtlc[lsp]' (missing: pygls)"
    ]


def test_the_vscode_grammar_knows_the_language_words():
    from mtlc.frontend.syntax import STATEMENT_WORDS

    folder = ROOT / "editors" / "vscode"
    grammar = json.loads((folder / "syntaxes" / "mtl.tmLanguage.json").read_text())
    statement = grammar["repository"]["statement"]["match"]
    assert all(f"{word}|" in statement or f"|{word})" in statement for word in STATEMENT_WORDS)
    import re

    assert re.search(grammar["repository"]["comment"]["match"], "tower t = x  # note")
    package = json.loads((folder / "package.json").read_text())
    assert package["contributes"]["languages"][0]["extensions"] == [".mtl"]
    configuration = json.loads((folder / "language-configuration.json").read_text())
    assert configuration["comments"]["lineComment"] == "#"
