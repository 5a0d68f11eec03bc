import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';

const EXTENSION_ID = 'agent-vault.agent-vault';
const VALIDATE = 'agentVault.validateAgentFile';

describe('extension smoke', () => {
  it('is installed under its publisher.name id and activates only on its own events', () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `extension ${EXTENSION_ID} not found`);
    const pkg = ext.packageJSON as { activationEvents?: string[] };
    assert.ok(pkg.activationEvents?.includes(`onCommand:${VALIDATE}`), 'activates on its command');
    assert.ok(!pkg.activationEvents?.includes('*'), 'activationEvents must not contain "*"');
  });

  it('registers agentVault.validateAgentFile, and running it resolves and activates the extension', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext);
    assert.equal(ext.isActive, false, 'nothing activated the extension before its command ran');
    await vscode.commands.executeCommand(VALIDATE);
    assert.equal(ext.isActive, true, 'running the command activated the extension');
    const commands = await vscode.commands.getCommands(true);
    assert.ok(commands.includes(VALIDATE), `${VALIDATE} is not registered`);
  });
});
