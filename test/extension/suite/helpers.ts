/* Helpers for the in-host tests (bundled with them; see scripts/build.mjs --tests). */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { openPg } from '../../../src/db/pg';
import type { AgentVaultApi } from '../../../src/extension/extension';
import { listAgents } from '../../../src/letta/export';
import type { ExtTestPg } from '../pg-setup';

export const EXTENSION_ID = 'agent-vault.agent-vault';

/** The repository root (the extension under development is loaded from it). */
export function repoRoot(): string {
  const ext = vscode.extensions.getExtension(EXTENSION_ID);
  assert.ok(ext, `extension ${EXTENSION_ID} not found`);
  return ext.extensionPath;
}

export function fixturesDir(): string {
  return path.resolve(repoRoot(), '..', 'shared', 'fixtures', 'af');
}

export function fixture(name: string): string {
  return path.join(fixturesDir(), name);
}

export async function api(): Promise<AgentVaultApi> {
  const ext = vscode.extensions.getExtension<AgentVaultApi>(EXTENSION_ID);
  assert.ok(ext);
  return ext.isActive ? ext.exports : ext.activate();
}

export function workspaceDir(): string {
  const f = vscode.workspace.workspaceFolders?.[0];
  assert.ok(f, 'the tests run with a workspace folder');
  return f.uri.fsPath;
}

export function pgInfo(): ExtTestPg {
  const raw = process.env.AGENT_VAULT_EXT_TEST_PG;
  assert.ok(raw, 'AGENT_VAULT_EXT_TEST_PG is not set: run the tests through test/extension/run.ts');
  return JSON.parse(raw) as ExtTestPg;
}

/** Polls `fn` until it returns a truthy value (or throws the last failure after `ms`). */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, ms = 15000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The documents of the active diff editor. */
export async function activeDiff(): Promise<{ left: vscode.TextDocument; right: vscode.TextDocument; label: string }> {
  const tab = await waitFor('a diff editor', () => {
    const t = vscode.window.tabGroups.activeTabGroup.activeTab;
    return t && t.input instanceof vscode.TabInputTextDiff ? t : undefined;
  });
  const input = tab.input as vscode.TabInputTextDiff;
  return { left: await vscode.workspace.openTextDocument(input.original), right: await vscode.workspace.openTextDocument(input.modified), label: tab.label };
}

export async function closeAllEditors(): Promise<void> {
  await vscode.commands.executeCommand('workbench.action.closeAllEditors');
}

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** A URL of a database on the test PostgreSQL server (as its user, or another with a password). */
export function urlOf(db: string, user?: string, password?: string): string {
  const p = pgInfo();
  return `postgres://${encodeURIComponent(user ?? p.user)}${password ? `:${encodeURIComponent(password)}` : ''}@${p.host}:${p.port}/${db}`;
}

/** The agents of a database on the test PostgreSQL server. */
export async function agentsIn(db: string) {
  const d = await openPg({ url: urlOf(db) });
  try {
    return await listAgents(d);
  } finally {
    await d.close();
  }
}

/** Every file under dir (relative paths, sorted). */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out.sort();
}

/** The text of the active editor ('' when none). */
export function activeText(): string {
  return vscode.window.activeTextEditor?.document.getText() ?? '';
}
