import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { SECRET_PREFIX } from '../../../src/extension/connections';
import type { DatabasesNode } from '../../../src/extension/databasesTree';
import type { CurrentDiff } from '../../../src/extension/diffView';
import type { AgentGroupNode, SnapshotNode } from '../../../src/extension/snapshotsTree';
import { openPg } from '../../../src/db/pg';
import { readManifest } from '../../../src/format/archive';
import type { RestorePlan, RestoreResult } from '../../../src/letta/restore';
import { readIndex } from '../../../src/vault/vault';
import { activeDiff, agentsIn, api, closeAllEditors, pgInfo, urlOf, workspaceDir } from './helpers';

const SOURCE = 'letta-test';
const TARGET = 'letta-target';
const SECRET = 'letta-secret';

describe('Databases: connections, export, restore and drift against the real test PostgreSQL', function () {
  this.timeout(90000);
  after(closeAllEditors);

  before(async () => {
    const { services: s } = await api();
    const p = pgInfo();
    await s.connections.upsert({ name: SOURCE, host: p.host, port: p.port, database: p.source, user: p.user, schema: 'letta' });
    await s.connections.upsert({ name: TARGET, host: p.host, port: p.port, database: p.target, user: p.user, schema: 'letta' });
  });

  it('keeps host/database/schema in the settings and the password only in SecretStorage, and connects with it', async () => {
    const { services: s } = await api();
    const p = pgInfo();
    await s.connections.upsert({ name: SECRET, host: p.host, port: p.port, database: p.source, user: p.secretUser, schema: 'letta' }, p.secretPassword);
    // the settings hold the connection without any password
    const inspected = vscode.workspace.getConfiguration('agentVault').inspect<unknown[]>('connections');
    const saved = JSON.stringify(inspected?.workspaceValue);
    assert.match(saved, new RegExp(SECRET));
    assert.match(saved, new RegExp(p.secretUser));
    assert.ok(!saved.includes(p.secretPassword), 'no password in the settings');
    const settingsFile = path.join(workspaceDir(), '.vscode', 'settings.json');
    assert.ok(fs.existsSync(settingsFile), 'workspace settings written');
    assert.ok(!fs.readFileSync(settingsFile, 'utf8').includes(p.secretPassword), 'no password in settings.json');
    // the password is in SecretStorage under the connection's key
    assert.equal(await s.context.secrets.get(SECRET_PREFIX + SECRET), p.secretPassword);
    // and it is what the connection sends: the server requires it for this role
    const db = await s.connections.open(SECRET, { interactive: false });
    try {
      const who = await db.query<{ u: string }>('SELECT current_user AS u');
      assert.equal(who.rows[0].u, p.secretUser);
    } finally {
      await db.close();
    }
    if (p.passwordEnforced) {
      await s.context.secrets.store(SECRET_PREFIX + SECRET, 'wrong-password');
      await assert.rejects(
        () => s.connections.open(SECRET, { interactive: false }),
        (e: Error & { code?: string }) => e.code === 'db-auth' && /refused the stored password/.test(e.message),
      );
      await s.context.secrets.store(SECRET_PREFIX + SECRET, p.secretPassword);
    }
    // removing the connection removes its secret
    assert.equal(await vscode.commands.executeCommand('agentVault.removeConnection', SECRET, { confirmed: true }), true);
    assert.equal(await s.context.secrets.get(SECRET_PREFIX + SECRET), undefined);
    assert.ok(!s.connections.list().some((c) => c.name === SECRET));
  });

  it('"Test Database Connection" counts the agents', async () => {
    const r = await vscode.commands.executeCommand<{ agents: number }>('agentVault.testConnection', SOURCE);
    assert.deepEqual(r, { agents: 2 });
  });

  it('lists connections and their agents with message and passage counts', async () => {
    const { services: s } = await api();
    const tree = s.databases;
    tree.refresh();
    const roots = await tree.getChildren();
    const names = roots.map((n) => String(tree.getTreeItem(n).label));
    assert.ok(names.includes(SOURCE) && names.includes(TARGET), names.join(', '));
    const src = roots.find((n) => tree.getTreeItem(n).label === SOURCE)!;
    const kids = (await tree.getChildren(src)) as Array<Extract<DatabasesNode, { type: 'dbAgent' }>>;
    const expected = await agentsIn(pgInfo().source);
    assert.deepEqual(kids.map((k) => k.agent.id).sort(), expected.map((a) => a.id).sort());
    for (const k of kids) {
      const a = expected.find((x) => x.id === k.agent.id)!;
      assert.equal(tree.getTreeItem(k).label, a.name);
      assert.equal(tree.getTreeItem(k).description, `${a.messages} message${a.messages === 1 ? '' : 's'} · ${a.passages} passage${a.passages === 1 ? '' : 's'}`);
    }
  });

  let exported: string;
  let loopId: string;

  it('exports agents into the vault and the new snapshot shows up in the Snapshots view', async () => {
    const { services: s, vaultDir } = await api();
    const agents = await agentsIn(pgInfo().source);
    loopId = agents.find((a) => a.name === 'Loop')!.id;
    const before = (await readIndex(vaultDir(), { allowMissing: true })).snapshots.length;
    const r = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.exportAgents', { connection: SOURCE, agentIds: agents.map((a) => a.id) });
    assert.ok(r, `export failed: ${JSON.stringify(s.log.lastError)}`);
    exported = r.path;
    const index = await readIndex(vaultDir());
    assert.equal(index.snapshots.length, before + 1);
    const rec = index.snapshots.find((x) => x.id === r.snapshotId)!;
    assert.deepEqual(rec.agents.map((a) => a.id).sort(), agents.map((a) => a.id).sort());
    const m = await readManifest(r.path);
    for (const a of agents) {
      const ma = m.agents.find((x) => x.id === a.id)!;
      assert.equal(ma.counts.messages, a.messages, `${a.name} messages`);
      assert.equal(ma.counts.blocks, a.blocks, `${a.name} blocks`);
    }
    // the tree: the agent (by its database id) has this snapshot
    const groups = await s.snapshots.agentGroups();
    const g = groups.find((x) => x.key === loopId) as AgentGroupNode;
    assert.ok(g, 'Loop (database id) is in the Snapshots view');
    const nodes = s.snapshots.snapshotNodes(g) as SnapshotNode[];
    assert.equal(nodes[0].snapshot.id, r.snapshotId, 'the newest snapshot of Loop is the export');
    assert.equal(s.snapshots.getTreeItem(g).label, 'Loop');
  });

  it('restores a snapshot into another database: dry-run plan, then one transaction', async () => {
    const { services: s } = await api();
    const planned = await vscode.commands.executeCommand<{ plan: RestorePlan }>('agentVault.restoreAgents', {
      snapshot: exported,
      agents: [loopId],
      connection: TARGET,
      onConflict: 'fail',
      dryRun: true,
    });
    assert.ok(planned, JSON.stringify(s.log.lastError));
    assert.deepEqual(planned.plan.summary.created, ['Loop']);
    assert.equal((await agentsIn(pgInfo().target)).length, 0, 'the dry run changed nothing');

    const done = await vscode.commands.executeCommand<{ plan: RestorePlan; result: RestoreResult }>('agentVault.restoreAgents', {
      snapshot: exported,
      agents: [loopId],
      connection: TARGET,
      onConflict: 'fail',
      confirmed: true,
    });
    assert.ok(done?.result, JSON.stringify(s.log.lastError));
    const target = await agentsIn(pgInfo().target);
    const source = await agentsIn(pgInfo().source);
    assert.equal(target.length, 1);
    const a = target[0];
    const b = source.find((x) => x.id === loopId)!;
    assert.equal(a.id, loopId, 'the original id is kept');
    for (const k of ['name', 'messages', 'in_context_messages', 'blocks', 'tools', 'passages'] as const) assert.equal(a[k], b[k], k);

    // again with onConflict "fail": refused, with an actionable message, nothing changed
    s.log.lastError = undefined;
    const again = await vscode.commands.executeCommand('agentVault.restoreAgents', { snapshot: exported, agents: [loopId], connection: TARGET, onConflict: 'fail', confirmed: true });
    assert.equal(again, undefined);
    const err = s.log.lastError as { code?: string; message: string } | undefined;
    assert.equal(err?.code, 'restore-conflict');
    assert.match(err!.message, /Loop|agent/);
    assert.equal((await agentsIn(pgInfo().target)).length, 1);
  });

  it('diffs a snapshot with the live agent (drift) and shows the changed prompt side by side', async () => {
    const { services: s } = await api();
    const d = await openPg({ url: urlOf(pgInfo().source) });
    try {
      await d.query(`UPDATE agents SET system = system || E'\\nDRIFTED: answer briefly.' WHERE id = $1`, [loopId]);
    } finally {
      await d.close();
    }
    const cur = await vscode.commands.executeCommand<CurrentDiff>('agentVault.diffWithLive', { snapshot: exported, agent: loopId, connection: SOURCE, openFirst: true });
    assert.ok(cur, JSON.stringify(s.log.lastError));
    assert.equal(cur.report.agents.length, 1);
    const ad = cur.report.agents[0];
    assert.equal(ad.status, 'changed');
    assert.equal(ad.counts.system_prompt, 1);
    assert.equal(cur.right.label, `live ${SOURCE}`);
    const { left, right } = await activeDiff();
    assert.ok(!left.getText().includes('DRIFTED'), 'the snapshot side has the old prompt');
    assert.match(right.getText(), /DRIFTED: answer briefly\.$/, 'the live side has the new prompt');
  });
});
