/*
 * Encrypted snapshots the extension writes itself ("agentVault.encryptSnapshots" with the
 * passphrase in SecretStorage) are read back on every read path: the Snapshots tree and its
 * component documents (the document cache), the diff view and restore.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { CurrentDiff } from '../../../src/extension/diffView';
import { formatBytes } from '../../../src/core/bytes';
import type { ComponentNode, FolderNode, SnapshotNode, SnapshotsNode } from '../../../src/extension/snapshotsTree';
import { openPg } from '../../../src/db/pg';
import { openArchive, readManifest } from '../../../src/format/archive';
import { listAgents } from '../../../src/letta/export';
import type { RestorePlan, RestoreResult } from '../../../src/letta/restore';
import { PASSPHRASE_SECRET } from '../../../src/vault/config';
import { activeDiff, api, closeAllEditors, fixture, pgInfo, readJson, waitFor } from './helpers';

const SOURCE = 'enc-source';
const TARGET = 'enc-target';
const PASSPHRASE = 'correct horse battery staple (extension test)';
const PROMPT_LINE = 'ENCRYPTED-DIFF: a line added between two encrypted snapshots.';

function urlOf(db: string): string {
  const p = pgInfo();
  return `postgres://${encodeURIComponent(p.user)}@${p.host}:${p.port}/${db}`;
}

async function withDb<T>(db: string, fn: (d: Awaited<ReturnType<typeof openPg>>) => Promise<T>): Promise<T> {
  const d = await openPg({ url: urlOf(db) });
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

describe('Encrypted snapshots written by the extension are readable on every read path', function () {
  this.timeout(120000);
  let vault: string;
  let loopId: string;
  let first: string;

  before(async () => {
    const { services: s } = await api();
    const p = pgInfo();
    await s.connections.upsert({ name: SOURCE, host: p.host, port: p.port, database: p.source, user: p.user, schema: 'letta' });
    await s.connections.upsert({ name: TARGET, host: p.host, port: p.port, database: p.target, user: p.user, schema: 'letta' });
    vault = fs.mkdtempSync(path.join(os.tmpdir(), 'av-ext-enc-vault-'));
    const cfg = vscode.workspace.getConfiguration('agentVault');
    await cfg.update('vaultPath', vault, vscode.ConfigurationTarget.Workspace);
    await cfg.update('encryptSnapshots', true, vscode.ConfigurationTarget.Workspace);
    assert.equal(await vscode.commands.executeCommand('agentVault.setPassphrase', PASSPHRASE), true);
    loopId = (await withDb(p.source, (d) => listAgents(d))).find((a) => a.name === 'Loop')!.id;
  });

  after(async () => {
    const { services: s } = await api();
    const cfg = vscode.workspace.getConfiguration('agentVault');
    await cfg.update('vaultPath', undefined, vscode.ConfigurationTarget.Workspace);
    await cfg.update('encryptSnapshots', undefined, vscode.ConfigurationTarget.Workspace);
    await s.context.secrets.delete(PASSPHRASE_SECRET);
    await closeAllEditors();
    fs.rmSync(vault, { recursive: true, force: true });
  });

  async function loopSnapshots(): Promise<SnapshotNode[]> {
    const { services: s } = await api();
    const groups = await s.snapshots.agentGroups();
    const g = groups.find((x) => x.key === loopId);
    assert.ok(g, `Loop is not in the Snapshots view of ${vault}`);
    return s.snapshots.snapshotNodes(g);
  }

  it('exports an encrypted snapshot and opens its components through the document cache', async () => {
    const { services: s, vaultDir } = await api();
    assert.equal(vaultDir(), vault);
    const r = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.exportAgents', { connection: SOURCE, agentIds: [loopId] });
    assert.ok(r, `export failed: ${JSON.stringify(s.log.lastError)}`);
    first = r.path;
    const m = await readManifest(first);
    assert.ok(m.encryption, 'the snapshot is encrypted');
    // no block text in the clear anywhere in the archive
    const persona = readJson<{ blocks: Array<{ label: string; value: string }> }>(fixture('loop.v2.af')).blocks.find((b) => b.label === 'persona')!;
    assert.ok(!fs.readFileSync(first).includes(Buffer.from(persona.value.slice(0, 40))), 'the persona block is not stored in plain text');

    const [node] = await loopSnapshots();
    assert.equal(s.snapshots.getTreeItem(node).description, `1 agent · ${formatBytes(fs.statSync(first).size)} · encrypted`);
    const kids = await s.snapshots.getChildren(node);
    const labels = kids.map((k) => String(s.snapshots.getTreeItem(k).label));
    assert.ok(labels.includes('System prompt'), `the encrypted snapshot expands into its components: ${labels.join(', ')}`);
    const blocks = kids.find((k) => /^Memory blocks/.test(String(s.snapshots.getTreeItem(k).label))) as FolderNode;
    const block = (await s.snapshots.getChildren(blocks)).find((k) => s.snapshots.getTreeItem(k).label === 'persona') as ComponentNode;
    const uri = s.snapshots.getTreeItem(block).command!.arguments![0] as vscode.Uri;
    const doc = await vscode.workspace.openTextDocument(uri);
    assert.ok(doc.getText().includes(persona.value.slice(0, 60)), 'the persona block document has the decrypted text');

    // the snapshot's description document (Open Snapshot) authenticates with the key
    const opened = await vscode.commands.executeCommand<string>('agentVault.openSnapshot', first);
    assert.equal(opened, first);
    const describe = await waitFor('the snapshot description', () => {
      const d = vscode.window.activeTextEditor?.document;
      return d && d.uri.path.endsWith('snapshot.md') ? d : undefined;
    });
    assert.match(describe.getText(), /encrypted/i);
  });

  it('without the passphrase the snapshot says it is encrypted; setting it again reads it', async () => {
    const { services: s } = await api();
    await s.context.secrets.delete(PASSPHRASE_SECRET);
    const node = await waitFor('the tree re-read without a key', async () => {
      const [n] = await loopSnapshots();
      const kids = await s.snapshots.getChildren(n);
      return kids.length === 1 && kids[0].type === 'message' ? kids[0] : undefined;
    });
    assert.equal(s.snapshots.getTreeItem(node as SnapshotsNode).label, 'Encrypted snapshot');
    assert.match(String(s.snapshots.getTreeItem(node as SnapshotsNode).description), /encrypted|passphrase|key/i);
    await vscode.commands.executeCommand('agentVault.setPassphrase', PASSPHRASE);
    await waitFor('the tree re-read with the key', async () => {
      const [n] = await loopSnapshots();
      const kids = await s.snapshots.getChildren(n);
      return kids.some((k) => s.snapshots.getTreeItem(k).label === 'System prompt');
    });
  });

  it('diffs two encrypted snapshots and opens the changed prompt side by side', async () => {
    const { services: s } = await api();
    await withDb(pgInfo().source, (d) => d.query(`UPDATE agents SET system = system || $2 WHERE id = $1`, [loopId, `\n${PROMPT_LINE}`]));
    const r = await vscode.commands.executeCommand<{ path: string }>('agentVault.exportAgents', { connection: SOURCE, agentIds: [loopId] });
    assert.ok(r, JSON.stringify(s.log.lastError));
    // "Diff with Previous Snapshot" on the newer snapshot item
    const nodes = await loopSnapshots();
    assert.equal(nodes.length, 2);
    assert.equal(nodes[0].snapshot.path, r.path);
    const cur = await vscode.commands.executeCommand<CurrentDiff>('agentVault.diffWithPrevious', nodes[0]);
    assert.ok(cur, `diff failed: ${JSON.stringify(s.log.lastError)}`);
    assert.equal(cur.report.agents.length, 1);
    assert.equal(cur.report.agents[0].counts.system_prompt, 1);
    const { left, right } = await activeDiff();
    assert.ok(!left.getText().includes(PROMPT_LINE), 'the older encrypted snapshot has the old prompt');
    assert.ok(right.getText().includes(PROMPT_LINE), 'the newer encrypted snapshot has the new prompt');
  });

  it('restores from an encrypted snapshot (plan, then one transaction); a wrong passphrase is a clear error', async () => {
    const { services: s } = await api();
    const planned = await vscode.commands.executeCommand<{ plan: RestorePlan }>('agentVault.restoreAgents', {
      snapshot: first,
      agents: [loopId],
      connection: TARGET,
      onConflict: 'replace',
      dryRun: true,
    });
    assert.ok(planned, JSON.stringify(s.log.lastError));
    assert.deepEqual([...planned.plan.summary.created, ...planned.plan.summary.replaced], ['Loop']);
    const done = await vscode.commands.executeCommand<{ result: RestoreResult }>('agentVault.restoreAgents', {
      snapshot: first,
      agents: [loopId],
      connection: TARGET,
      onConflict: 'replace',
      confirmed: true,
    });
    assert.ok(done?.result, JSON.stringify(s.log.lastError));
    const target = (await withDb(pgInfo().target, (d) => listAgents(d))).find((a) => a.id === loopId);
    assert.ok(target, 'Loop is in the target database');
    const m = (await readManifest(first)).agents.find((a) => a.id === loopId)!;
    assert.equal(target.messages, m.counts.messages);
    assert.equal(target.blocks, m.counts.blocks);
    const sys = await withDb(pgInfo().target, (d) => d.query<{ system: string }>('SELECT system FROM agents WHERE id = $1', [loopId]));
    assert.ok(!sys.rows[0].system.includes(PROMPT_LINE), 'the first (older) snapshot was restored');

    await s.context.secrets.store(PASSPHRASE_SECRET, 'not the passphrase');
    s.log.lastError = undefined;
    const refused = await vscode.commands.executeCommand('agentVault.restoreAgents', { snapshot: first, agents: [loopId], connection: TARGET, onConflict: 'replace', dryRun: true });
    assert.equal(refused, undefined);
    const err = s.log.lastError as { code?: string } | undefined;
    assert.equal(err?.code, 'wrong-key', JSON.stringify(err));
    await s.context.secrets.store(PASSPHRASE_SECRET, PASSPHRASE);
    // the archive itself was never touched
    const reader = await openArchive(first, { decrypt: { passphrase: PASSPHRASE } });
    assert.ok((await reader.verifyAll()).every((x) => x.ok));
    await reader.close();
  });
});
