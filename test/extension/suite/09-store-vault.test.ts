/*
 * The Snapshots view and the vault operations on store vaults (`agent-vault vault init --store`:
 * snapshots kept as deduplicated chunks), a folder and one in object storage (s3://, moto on
 * 127.0.0.1, started by test/extension/run.ts). Snapshots are listed from the store's snapshot
 * files and read in place (src/vault/store-catalog.ts): expanding one, opening its components,
 * Diff with Previous Snapshot and Restore to… write no archive anywhere; Run Backup Now, Drill,
 * Verify and Prune work on the store; Rebuild Index and Delete Snapshot refuse with what to do.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { AgentGroupNode, ComponentNode, FolderNode, SnapshotNode } from '../../../src/extension/snapshotsTree';
import type { CurrentDiff } from '../../../src/extension/diffView';
import { packAgentFile } from '../../../src/format/pack';
import type { RestorePlan, RestoreResult } from '../../../src/letta/restore';
import { addSnapshotToVault } from '../../../src/vault/catalog';
import type { DrillReport } from '../../../src/vault/drill-report';
import type { VaultStatus } from '../../../src/vault/status';
import { copyStoreVault, isStoreVault, listStoreVault, migrateToStore, remoteLockTimings, type StorePruneVaultResult, type StoreVerifyReport } from '../../../src/vault/store-vault';
import { withLock } from '../../../src/vault/vault';
import { S3_ENV_NAME, type ExtTestS3 } from '../s3-env';
import { activeText, agentsIn, api, closeAllEditors, filesUnder, fixture, pgInfo, readJson, waitFor } from './helpers';

const SOURCE = 'store-source';
const TARGET = 'store-target';

/** Archives (or temp folders of materialised store snapshots) in the system temp folder. */
function tempArchives(): string[] {
  return fs.readdirSync(os.tmpdir()).filter((n) => /^agent-vault-store-|\.avsnap$/.test(n));
}

type Loop = { agents: Array<{ system: string }>; blocks: Array<{ label: string; value: string }>; tools: Array<{ name: string; source_code: string | null }> };

describe('Snapshots view and vault operations on store vaults (folder and s3://)', function () {
  this.timeout(180000);
  let staging: string;
  let folder: string;
  let s3loc: string;
  let changed: string;
  const loop = readJson<Loop>(fixture('loop.v2.af'));
  const CHANGED_SYSTEM = `${loop.agents[0].system}\nAlways answer in one sentence.`;

  const setVault = async (v: string | undefined) => {
    await vscode.workspace.getConfiguration('agentVault').update('vaultPath', v, vscode.ConfigurationTarget.Workspace);
    if (v) await waitFor('the new vault path', async () => (await api()).vaultDir() === (v.startsWith('s3://') ? v : path.resolve(v)));
  };

  async function groups(): Promise<AgentGroupNode[]> {
    const { services: s } = await api();
    s.snapshots.refresh();
    assert.equal(s.snapshots.lastError, undefined);
    return (await s.snapshots.agentGroups()).filter((g) => g.snapshots.some((x) => x.listed));
  }

  /** The agent's group; Loop is in the vault twice (packed from the .af file, and backed up from the database): `packed` picks the first. */
  async function group(name: string, packed = false): Promise<AgentGroupNode> {
    const g = (await groups()).find((x) => x.name === name && x.key.startsWith('name:') === packed);
    assert.ok(g, `no agent ${name} in the Snapshots view`);
    return g;
  }

  before(async () => {
    const { services: s } = await api();
    const p = pgInfo();
    await s.connections.upsert({ name: SOURCE, host: p.host, port: p.port, database: p.source, user: p.user, schema: 'letta' });
    await s.connections.upsert({ name: TARGET, host: p.host, port: p.port, database: p.target, user: p.user, schema: 'letta' });
    await vscode.workspace.getConfiguration('agentVault').update('drill.connection', SOURCE, vscode.ConfigurationTarget.Workspace);
    // three snapshots packed from .af files (Loop twice, its system prompt changed in the second), put into a store
    staging = fs.mkdtempSync(path.join(os.tmpdir(), 'av-ext-store-staging-'));
    changed = path.join(staging, 'loop-changed.af');
    const doc = readJson<Loop>(fixture('loop.v2.af'));
    doc.agents[0].system = CHANGED_SYSTEM;
    fs.writeFileSync(changed, JSON.stringify(doc));
    for (const f of [fixture('loop.v2.af'), fixture('deep-research-agent.v2.af'), changed]) await addSnapshotToVault(staging, (dest) => packAgentFile(f, dest), { command: 'test' });
    const m = await migrateToStore(staging);
    assert.equal(m.failed.length, 0, JSON.stringify(m.failed));
    // a store vault holding only its store (no archive, no vault.json)
    folder = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'av-ext-store-')), 'vault');
    const c = await copyStoreVault(staging, folder);
    assert.equal(c.copied, 3);
    assert.ok(isStoreVault(folder));
    assert.deepEqual(
      filesUnder(folder).filter((f) => !f.startsWith('store/')),
      ['runs.jsonl'],
    );
    await setVault(folder);
  });

  after(async () => {
    const { testing } = await api();
    testing.progress.cancelWhen = undefined;
    await setVault(undefined);
    await vscode.workspace.getConfiguration('agentVault').update('drill.connection', undefined, vscode.ConfigurationTarget.Workspace);
    await closeAllEditors();
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(path.dirname(folder), { recursive: true, force: true });
  });

  it('lists a folder store vault from its snapshot files, grouped by agent, with labels, counts and the manifest tooltip', async () => {
    const { services: s } = await api();
    const g = await groups();
    assert.deepEqual(g.map((x) => x.name).sort(), ['Loop', 'deep-thought-research-agent']);
    const l = await group('Loop', true);
    const nodes = s.snapshots.snapshotNodes(l);
    assert.equal(nodes.length, 2);
    const ids = (await listStoreVault(folder)).map((x) => x.vault_id);
    for (const n of nodes) {
      assert.ok(ids.includes(n.snapshot.id), n.snapshot.id);
      assert.equal(n.snapshot.path, `${folder}#${n.snapshot.id}`, 'a store snapshot is named <vault>#<id>, as the CLI takes it');
      assert.ok(n.agent.counts && typeof n.agent.counts.blocks === 'number', 'the row counts come from the snapshot file');
      assert.equal(n.agent.counts.blocks, loop.blocks.length);
    }
    assert.ok(nodes[0].snapshot.created_at > nodes[1].snapshot.created_at, 'newest first');
    const item = s.snapshots.getTreeItem(nodes[0]);
    assert.equal(item.contextValue, 'snapshotInStore', 'no Reveal or Delete on a store snapshot');
    assert.match(String(item.description), /^1 agent · \d+(\.\d)? KiB$/);
    const tip = (await s.snapshots.resolveTreeItem(item, nodes[0])).tooltip as vscode.MarkdownString;
    for (const fact of ['not encrypted', 'embedding models', 'Loop']) assert.ok(tip.value.includes(fact), `tooltip has "${fact}":\n${tip.value}`);
    assert.match(String(s.snapshots.getTreeItem(l).description), /^2 snapshots/);
  });

  it('expands a store snapshot and opens its components read in place: the .af text, no archive written, the vault lock released', async () => {
    const { services: s } = await api();
    const temps = tempArchives();
    const [newest, older] = s.snapshots.snapshotNodes(await group('Loop', true)) as SnapshotNode[];
    const kids = await s.snapshots.getChildren(older);
    const labels = kids.map((k) => String(s.snapshots.getTreeItem(k).label));
    assert.ok(labels.includes('System prompt'), labels.join(', '));
    const blocks = kids.find((k) => /^Memory blocks/.test(String(s.snapshots.getTreeItem(k).label))) as FolderNode;
    const persona = (await s.snapshots.getChildren(blocks)).find((k) => s.snapshots.getTreeItem(k).label === 'persona') as ComponentNode;
    const personaDoc = await vscode.workspace.openTextDocument(s.snapshots.getTreeItem(persona).command!.arguments![0] as vscode.Uri);
    assert.equal(personaDoc.getText(), loop.blocks.find((b) => b.label === 'persona')!.value);
    const tools = kids.find((k) => /^Tools/.test(String(s.snapshots.getTreeItem(k).label))) as FolderNode;
    const note = (await s.snapshots.getChildren(tools)).find((k) => s.snapshots.getTreeItem(k).label === 'note') as ComponentNode;
    const noteDoc = await vscode.workspace.openTextDocument(s.snapshots.getTreeItem(note).command!.arguments![0] as vscode.Uri);
    assert.equal(noteDoc.getText(), loop.tools.find((t) => t.name === 'note')!.source_code);
    // the newer snapshot's system prompt is the changed one
    const sys = (await s.snapshots.getChildren(newest)).find((k) => s.snapshots.getTreeItem(k).label === 'System prompt') as ComponentNode;
    const sysDoc = await vscode.workspace.openTextDocument(s.snapshots.getTreeItem(sys).command!.arguments![0] as vscode.Uri);
    assert.equal(sysDoc.getText(), CHANGED_SYSTEM);
    const messages = kids.find((k) => /^Messages/.test(String(s.snapshots.getTreeItem(k).label))) as ComponentNode;
    const msgDoc = await vscode.workspace.openTextDocument(s.snapshots.getTreeItem(messages).command!.arguments![0] as vscode.Uri);
    assert.ok(msgDoc.getText().length > 0);
    assert.deepEqual(tempArchives(), temps, 'no archive was written to the temp folder');
    assert.deepEqual(
      filesUnder(folder).filter((f) => !f.startsWith('store/') && !f.startsWith('.readers/') && f !== 'runs.jsonl'),
      [],
      'nothing but the store in the vault',
    );
    // the readers are closed when idle: the vault's exclusive lock can be taken at once (a backup is not kept waiting)
    await waitFor('the shared lock released', () => withLock(folder, { command: 'test' }, async () => true).catch(() => false));
  });

  it('"Diff with Previous Snapshot" on a store snapshot shows the changed system prompt', async () => {
    const { services: s } = await api();
    const [newest, older] = s.snapshots.snapshotNodes(await group('Loop', true));
    const r = await vscode.commands.executeCommand<CurrentDiff>('agentVault.diffWithPrevious', newest);
    assert.ok(r, JSON.stringify(s.log.lastError));
    assert.equal(r.left.path, older.snapshot.path);
    assert.equal(r.right.path, newest.snapshot.path);
    assert.equal(r.report.agents[0].counts.system_prompt, 1);
  });

  let backedUp: string;

  it('cancelling Run Backup Now on a store vault while it exports into the store (its first agent written) leaves nothing behind: no snapshot, no pack', async () => {
    const { services: s, testing } = await api();
    const before = (await listStoreVault(folder)).map((x) => x.id);
    const packs = filesUnder(path.join(folder, 'store')).filter((f) => f.startsWith('data/'));
    testing.progress.cancelWhen = (_title, msg) => /^agent 2\/2: /.test(msg);
    s.log.lastError = undefined;
    try {
      assert.equal(await vscode.commands.executeCommand('agentVault.backupNow', { connection: SOURCE }), undefined, 'the cancelled backup returns nothing');
    } finally {
      testing.progress.cancelWhen = undefined;
    }
    assert.equal(s.log.lastError, undefined, `reported as cancelled, not as a failure: ${JSON.stringify(s.log.lastError)}`);
    assert.deepEqual(
      (await listStoreVault(folder)).map((x) => x.id),
      before,
      'no snapshot was added',
    );
    assert.deepEqual(
      filesUnder(path.join(folder, 'store')).filter((f) => f.startsWith('data/')),
      packs,
      'no pack was written',
    );
    const stray = filesUnder(folder).filter((f) => !f.startsWith('store/') && !(f === 'runs.jsonl' || f.startsWith('.readers/')));
    assert.deepEqual(stray, [], 'the staging archive was removed');
  });

  it('Run Backup Now into the store vault: a new store snapshot, no archive left in the vault', async () => {
    const { services: s } = await api();
    const r = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.backupNow', { connection: SOURCE });
    assert.ok(r, `backup failed: ${JSON.stringify(s.log.lastError)}`);
    backedUp = r.snapshotId;
    assert.equal(r.path, `${folder}#${r.snapshotId}`);
    const listed = await listStoreVault(folder);
    assert.equal(listed.length, 4);
    const mine = listed.find((x) => x.vault_id === r.snapshotId)!;
    assert.deepEqual(mine.agents.map((a) => a.id).sort(), (await agentsIn(pgInfo().source)).map((a) => a.id).sort());
    const stray = filesUnder(folder).filter((f) => !f.startsWith('store/') && !(f === 'runs.jsonl' || f.startsWith('.readers/')));
    assert.deepEqual(stray, [], 'the staging archive was removed');
    const g = await group('LettaBot');
    assert.equal(s.snapshots.snapshotNodes(g)[0].snapshot.id, r.snapshotId);
    // the agent's status by the rules of `agent-vault status` on the store: a snapshot made a minute ago was never drilled
    assert.match(String(s.snapshots.getTreeItem(g).description), /^1 snapshot · never drilled$/);
  });

  it('Restore to… from a store snapshot item and from its agent item: the plan as a document, then the restore', async () => {
    const { services: s } = await api();
    const temps = tempArchives();
    const g = await group('LettaBot');
    const [node] = s.snapshots.snapshotNodes(g);
    assert.equal(node.snapshot.id, backedUp);
    const planned = await vscode.commands.executeCommand<{ plan: RestorePlan }>('agentVault.restoreTo', node, { connection: TARGET, onConflict: 'replace', dryRun: true, scope: 'agent' });
    assert.ok(planned, JSON.stringify(s.log.lastError));
    assert.deepEqual(
      planned.plan.agents.map((a) => a.name),
      ['LettaBot'],
    );
    const done = await vscode.commands.executeCommand<{ plan: RestorePlan; result: RestoreResult }>('agentVault.restoreTo', g, { connection: TARGET, onConflict: 'replace', confirmed: true });
    assert.ok(done?.result, JSON.stringify(s.log.lastError));
    assert.ok(
      vscode.workspace.textDocuments.some((d) => d.uri.path.endsWith('restore-plan.txt')),
      'the plan was shown as a document',
    );
    const target = (await agentsIn(pgInfo().target)).find((a) => a.id === g.id);
    const source = (await agentsIn(pgInfo().source)).find((a) => a.id === g.id)!;
    assert.ok(target, 'LettaBot is in the target database');
    for (const k of ['name', 'messages', 'blocks', 'tools', 'passages'] as const) assert.equal(target[k], source[k], k);
    assert.deepEqual(tempArchives(), temps, 'no archive was written to the temp folder');
  });

  it('Drill Snapshot, Verify Vault (quick and deep), the status report and the status bar on the store vault', async () => {
    const { services: s } = await api();
    const g = await group('LettaBot');
    const report = await vscode.commands.executeCommand<DrillReport>('agentVault.drillSnapshot', s.snapshots.snapshotNodes(g)[0]);
    assert.ok(report, `drill failed to run: ${JSON.stringify(s.log.lastError)}`);
    assert.equal(report.ok, true, JSON.stringify(report.checks));
    assert.equal(report.snapshot.id, backedUp);
    await waitFor('the drill report document', () => /Restore drill: PASSED/.test(activeText()));
    assert.equal(filesUnder(path.join(folder, 'drills')).filter((f) => f.endsWith('.json')).length, 1, 'the drill is recorded in the vault');
    assert.equal(String(s.snapshots.getTreeItem(await group('LettaBot')).description), '1 snapshot', 'drilled and fresh: no warning');
    for (const deep of [false, true]) {
      const v = await vscode.commands.executeCommand<StoreVerifyReport>('agentVault.verifyVault', { deep });
      assert.ok(v, JSON.stringify(s.log.lastError));
      assert.equal(v.ok, true, JSON.stringify(v.problems));
      assert.equal(v.snapshots, 4);
      assert.equal(v.packsRead > 0, deep, 'a deep verify reads the packs');
      await waitFor('the verify report', () => (activeText().startsWith('# Vault verification') ? activeText() : undefined));
      assert.match(activeText(), /: OK/);
    }
    const st = await vscode.commands.executeCommand<VaultStatus>('agentVault.showStatus');
    assert.ok(st, JSON.stringify(s.log.lastError));
    assert.equal(st.snapshots, 4);
    await waitFor('the status report', () => /LettaBot/.test(activeText()));
    await s.statusBar!.refresh();
    assert.notEqual(s.statusBar!.state, 'none', 'the status bar reads the store vault');
    assert.equal(s.statusBar!.status?.snapshots, 4);
  });

  it('Prune on the store vault lists the dry run, then forgets and sweeps after confirmation; Rebuild Index and Delete Snapshot refuse with what to do', async () => {
    const { services: s } = await api();
    const before = (await listStoreVault(folder)).map((x) => x.vault_id);
    // Cancel while the dry run is planned: nothing is deleted
    const { testing } = await api();
    testing.progress.cancelWhen = (title) => title.startsWith('Planning the prune');
    try {
      assert.equal(await vscode.commands.executeCommand('agentVault.pruneVault', { policy: { keepLast: 1 }, confirmed: true }), undefined);
    } finally {
      testing.progress.cancelWhen = undefined;
    }
    assert.deepEqual(
      (await listStoreVault(folder)).map((x) => x.vault_id),
      before,
      'a cancelled prune deletes nothing',
    );
    const r = await vscode.commands.executeCommand<{ dryRun: StorePruneVaultResult; result?: StorePruneVaultResult }>('agentVault.pruneVault', { policy: { keepLast: 1 }, confirmed: true });
    assert.ok(r?.result, JSON.stringify(s.log.lastError));
    assert.equal(r.dryRun.dryRun, true);
    // keep-last 1 per agent: the older Loop snapshot goes; the newest of every agent stays
    const older = s.snapshots.snapshotNodes(await group('Loop', true))[1]?.snapshot.id;
    assert.deepEqual(
      r.dryRun.removed.map((x) => x.id),
      r.result.removed.map((x) => x.id),
    );
    assert.ok(r.result.removed.length >= 1);
    // the dry-run plan shown (the latest prune-plan.txt document: an earlier suite may have left one open)
    const plan = vscode.workspace.textDocuments.filter((d) => d.uri.path.endsWith('prune-plan.txt')).find((d) => d.getText().includes(backedUp));
    assert.ok(plan, 'the dry-run plan was shown');
    for (const x of r.dryRun.removed) assert.match(plan.getText(), new RegExp(`would delete\\s+${x.id}`));
    assert.match(plan.getText(), new RegExp(`keep\\s+${backedUp}`));
    const after = (await listStoreVault(folder)).map((x) => x.vault_id);
    assert.deepEqual(after.sort(), before.filter((id) => !r.result!.removed.some((x) => x.id === id)).sort());
    assert.ok(older === undefined || !after.includes(older));
    assert.ok(after.includes(backedUp));

    s.log.lastError = undefined;
    assert.equal(await vscode.commands.executeCommand('agentVault.rebuildIndex'), undefined);
    assert.match(JSON.stringify(s.log.lastError), /is a store vault: it has no index to rebuild/);
    s.log.lastError = undefined;
    const node = s.snapshots.snapshotNodes(await group('LettaBot'))[0];
    assert.equal(await vscode.commands.executeCommand('agentVault.deleteSnapshot', node), undefined);
    assert.match(JSON.stringify(s.log.lastError), /snapshot of a store vault: it has no file of its own to delete/);
    assert.ok(
      (await listStoreVault(folder)).some((x) => x.vault_id === backedUp),
      'nothing was deleted',
    );
  });

  it('an s3:// store vault: listed from the bucket, a snapshot expanded and opened in place, Diff with Previous, Restore to…, Run Backup Now, Verify, the status report; Drill refused', async () => {
    const raw = process.env[S3_ENV_NAME];
    assert.ok(raw, `${S3_ENV_NAME} is not set: run the tests through test/extension/run.ts`);
    const { endpoint } = JSON.parse(raw) as ExtTestS3;
    const c = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true });
    await c.send(new CreateBucketCommand({ Bucket: 'av-ext-store' }));
    c.destroy();
    s3loc = `s3://av-ext-store/team?endpoint=${encodeURIComponent(endpoint)}&path-style=true`;
    remoteLockTimings.settleMs = 20;
    const copied = await copyStoreVault(staging, s3loc);
    assert.equal(copied.copied, 3);
    const more = await copyStoreVault(folder, s3loc, { snapshots: [backedUp] });
    assert.equal(more.copied, 1);
    await setVault(s3loc);
    const { services: s } = await api();
    const temps = tempArchives();

    const l = await group('Loop', true);
    const [newest, older] = s.snapshots.snapshotNodes(l);
    assert.match(newest.snapshot.path, /^s3:\/\/av-ext-store\/team.*#/);
    const kids = await s.snapshots.getChildren(older);
    const blocks = kids.find((k) => /^Memory blocks/.test(String(s.snapshots.getTreeItem(k).label))) as FolderNode;
    const persona = (await s.snapshots.getChildren(blocks)).find((k) => s.snapshots.getTreeItem(k).label === 'persona') as ComponentNode;
    const personaDoc = await vscode.workspace.openTextDocument(s.snapshots.getTreeItem(persona).command!.arguments![0] as vscode.Uri);
    assert.equal(personaDoc.getText(), loop.blocks.find((b) => b.label === 'persona')!.value);

    const d = await vscode.commands.executeCommand<CurrentDiff>('agentVault.diffWithPrevious', newest);
    assert.ok(d, JSON.stringify(s.log.lastError));
    assert.equal(d.report.agents[0].counts.system_prompt, 1);

    const g = await group('LettaBot');
    const planned = await vscode.commands.executeCommand<{ plan: RestorePlan }>('agentVault.restoreTo', s.snapshots.snapshotNodes(g)[0], {
      connection: TARGET,
      onConflict: 'replace',
      dryRun: true,
      scope: 'agent',
    });
    assert.ok(planned, JSON.stringify(s.log.lastError));
    assert.deepEqual(
      planned.plan.agents.map((a) => a.name),
      ['LettaBot'],
    );
    const done = await vscode.commands.executeCommand<{ result: RestoreResult }>('agentVault.restoreTo', s.snapshots.snapshotNodes(g)[0], {
      connection: TARGET,
      onConflict: 'replace',
      confirmed: true,
      scope: 'agent',
    });
    assert.ok(done?.result, JSON.stringify(s.log.lastError));
    assert.equal(Object.keys(done.result.agentIds).length, 1);

    assert.deepEqual(tempArchives(), temps, 'no archive was written to the temp folder');

    // Run Backup Now into the bucket's store, then Verify Vault on it; a drill refuses (it needs a vault folder)
    const b = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.backupNow', { connection: SOURCE });
    assert.ok(b, `backup failed: ${JSON.stringify(s.log.lastError)}`);
    assert.equal(b.path, `${s3loc}#${b.snapshotId}`);
    assert.ok((await listStoreVault(s3loc)).some((x) => x.vault_id === b.snapshotId));
    const v = await vscode.commands.executeCommand<StoreVerifyReport>('agentVault.verifyVault', { deep: false });
    assert.ok(v, JSON.stringify(s.log.lastError));
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    assert.equal(v.snapshots, 5);
    const st = await vscode.commands.executeCommand<VaultStatus>('agentVault.showStatus');
    assert.ok(st, JSON.stringify(s.log.lastError));
    assert.equal(st.snapshots, 5);
    s.log.lastError = undefined;
    assert.equal(await vscode.commands.executeCommand('agentVault.drillSnapshot', s.snapshots.snapshotNodes(await group('LettaBot'))[0]), undefined);
    assert.match(JSON.stringify(s.log.lastError), /vault in object storage/);
  });
});
