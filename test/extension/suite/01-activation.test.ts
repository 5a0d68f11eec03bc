import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { EXTENSION_ID } from './helpers';

interface Pkg {
  activationEvents?: string[];
  contributes: {
    commands: Array<{ command: string; title: string; category?: string }>;
    views: Record<string, Array<{ id: string }>>;
    languages: Array<{ id: string; extensions: string[] }>;
    grammars: Array<{ language: string; path: string }>;
    jsonValidation: Array<{ fileMatch: string | string[]; url: string }>;
    configuration: { properties: Record<string, unknown> };
  };
}

describe('activation and commands', () => {
  const pkg = () => vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as Pkg;

  it('declares no activation events: VS Code (engines ^1.100, ≥ 1.74) derives them from its own commands, views and .af language, never "*"', () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `extension ${EXTENSION_ID} not found`);
    assert.equal(pkg().activationEvents, undefined, 'activationEvents are derived from contributes');
    assert.match((ext.packageJSON as { engines: { vscode: string } }).engines.vscode, /^\^1\.(\d{3,}|[89]\d)\./);
    assert.ok(pkg().contributes.commands.length > 0 && pkg().contributes.views.agentVault.length > 0);
    assert.ok(pkg().contributes.languages.some((l) => l.id === 'agentfile'));
  });

  it('contributes the palette commands under the "Agent Vault" category, settings under agentVault.*, the .af language and schemas', () => {
    const c = pkg().contributes;
    const titles = new Map(c.commands.map((x) => [x.command, x]));
    for (const [id, title] of [
      ['agentVault.exportAgents', 'Export Agents…'],
      ['agentVault.restoreAgents', 'Restore Agents…'],
      ['agentVault.validateAgentFile', 'Validate Agent File'],
      ['agentVault.diffSnapshots', 'Diff Snapshots…'],
      ['agentVault.diffWithLive', 'Diff with Live Agent'],
      ['agentVault.openSnapshot', 'Open Snapshot'],
      ['agentVault.importAgentFile', 'Import .af into Vault'],
    ]) {
      assert.equal(titles.get(id)?.title, title, id);
      assert.equal(titles.get(id)?.category, 'Agent Vault', id);
    }
    assert.ok(Object.keys(c.configuration.properties).every((k) => k.startsWith('agentVault.')));
    assert.ok(c.languages.some((l) => l.id === 'agentfile' && l.extensions.includes('.af')));
    assert.ok(c.grammars.some((g) => g.language === 'agentfile' && g.path === './syntaxes/agentfile.tmLanguage.json'));
    const urls = c.jsonValidation.map((j) => j.url);
    assert.ok(urls.includes('./schemas/agent-file.v2.schema.json') && urls.includes('./schemas/agent-file.v1.schema.json'));
  });

  it('is not active before one of its events, and a command activates it and finds every command registered', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID)!;
    assert.equal(ext.isActive, false, 'nothing activated the extension before its command ran');
    await vscode.commands.executeCommand('agentVault.refreshSnapshots');
    assert.equal(ext.isActive, true, 'running the command activated the extension');
    const registered = new Set(await vscode.commands.getCommands(true));
    for (const c of pkg().contributes.commands) assert.ok(registered.has(c.command), `${c.command} is not registered`);
  });
});
