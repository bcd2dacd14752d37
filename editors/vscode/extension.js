// Starts `mtlc lsp` (the command is the setting `mtlc.command`) for .mtl files.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("mtlc").get("command");
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient(
    "mtlc",
    "mtlc",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "mtl" }] }
  );
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
