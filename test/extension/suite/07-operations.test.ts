/*
 * The vault's operations and health in the editor, against a vault of its own (a temp folder set
 * as agentVault.vaultPath) and the real test PostgreSQL: the welcome view of an empty vault, Run
 * Backup Now (and cancelling it), snapshot labels and tooltips, Drill Snapshot (and cancelling it),
 * the status bar item in its three states, Verify Vault (quick and deep), Prune, Rebuild Index,
 * the status report, and Restore to… from a snapshot item and from an agent item.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AgentGroupNode, SnapshotNode } from '../../../src/extension/snapshotsTree';
import { openPg } from '../../../src/db/pg';
import type { DrillReport } from '../../../src/vault/drill-report';
import type { PruneResult } from '../../../src/vault/prune';
import type { RebuildIndexReport } from '../../../src/vault/reconcile';
import type { VaultStatus } from '../../../src/vault/status';
import type { VerifyReport } from '../../../src/vault/verify';
import type { RestorePlan, RestoreResult } from '../../../src/letta/restore';
import { readIndex, readRunLog, type VaultIndex } from '../../../src/vault/vault';
import { activeText, agentsIn, api, closeAllEditors, filesUnder, pgInfo, urlOf, waitFor } from './helpers';

const SOURCE = 'ops-source';
const TARGET = 'ops-target';

/** Scratch databases of drills left on the server. */
async function scratchDatabases(): Promise<string[]> {
  const d = await openPg({ url: urlOf(pgInfo().source) });
  try {
    return (await d.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'agent_vault_drill_%'`)).rows.map((r) => r.datname);
  } finally {
    await d.close();
  }
}

describe('Vault operations and health in the editor', function () {
  this.timeout(180000);
  let vault: string;

  before(async () => {
    const { services: s } = await api();
    const p = pgInfo();
    await s.connections.upsert({ name: SOURCE, host: p.host, port: p.port, database: p.source, user: p.user, schema: 'letta' });
    await s.connections.upsert({ name: TARGET, host: p.host, port: p.port, database: p.target, user: p.user, schema: 'letta' });
    vault = fs.mkdtempSync(path.join(os.tmpdir(), 'av-ext-ops-vault-'));
    fs.rmdirSync(vault); // a vault that does not exist yet: the first backup creates it
    await vscode.workspace.getConfiguration('agentVault').update('vaultPath', vault, vscode.ConfigurationTarget.Workspace);
    await vscode.workspace.getConfiguration('agentVault').update('drill.connection', SOURCE, vscode.ConfigurationTarget.Workspace);
    await waitFor('the new vault path', async () => (await api()).vaultDir() === vault);
  });

  after(async () => {
    const { testing } = await api();
    testing.progress.cancelWhen = undefined;
    await vscode.workspace.getConfiguration('agentVault').update('vaultPath', undefined, vscode.ConfigurationTarget.Workspace);
    await vscode.workspace.getConfiguration('agentVault').update('drill.connection', undefined, vscode.ConfigurationTarget.Workspace);
    await closeAllEditors();
    fs.rmSync(vault, { recursive: true, force: true });
  });

  const index = (): Promise<VaultIndex> => readIndex(vault);

  async function groups(): Promise<AgentGroupNode[]> {
    const { services: s } = await api();
    s.snapshots.refresh();
    return s.snapshots.agentGroups();
  }

  async function group(name: string): Promise<AgentGroupNode> {
    const g = (await groups()).find((x) => x.name === name);
    assert.ok(g, `no agent ${name} in the Snapshots view`);
    return g;
  }

  it('shows the welcome view for an empty vault (no tree items, no "No snapshots yet" item) and no status bar item', async () => {
    const { services: s } = await api();
    s.snapshots.refresh();
    // archives opened from elsewhere earlier in this session ("Open Snapshot") stay listed; without
    // them the list is empty, so VS Code shows the viewsWelcome content (the e2e test shows it)
    const roots = await s.snapshots.getChildren();
    assert.ok(
      roots.every((n) => n.type === 'agent' && n.snapshots.every((x) => !x.listed && !x.path.startsWith(vault))),
      `no item from the empty vault: ${JSON.stringify(roots.map((n) => n.type))}`,
    );
    assert.ok(!roots.some((n) => n.type === 'message'), 'no "No snapshots yet" item');
    await s.statusBar!.refresh();
    assert.equal(s.statusBar!.state, 'none');
    const pkg = vscode.extensions.getExtension('agent-vault.agent-vault')!.packageJSON as { contributes: { viewsWelcome: Array<{ view: string; contents: string }> } };
    const welcome = pkg.contributes.viewsWelcome.find((w) => w.view === 'agentVault.snapshots');
    assert.ok(welcome, 'the Snapshots view has welcome content');
    for (const cmd of ['agentVault.exportAgents', 'agentVault.importAgentFile', 'agentVault.openSettings']) assert.ok(welcome.contents.includes(`(command:${cmd})`), cmd);
    assert.match(welcome.contents, /A snapshot is/);
  });

  it('cancelling Run Backup Now leaves nothing half-written', async () => {
    const { services: s, testing } = await api();
    testing.progress.cancelWhen = (_title, msg) => /^agent 1\//.test(msg);
    s.log.lastError = undefined;
    try {
      const r = await vscode.commands.executeCommand('agentVault.backupNow', { connection: SOURCE });
      assert.equal(r, undefined, 'the cancelled backup returns nothing');
    } finally {
      testing.progress.cancelWhen = undefined;
    }
    assert.equal(s.log.lastError, undefined, `reported as cancelled, not as a failure: ${JSON.stringify(s.log.lastError)}`);
    assert.deepEqual((await readIndex(vault, { allowMissing: true })).snapshots, [], 'no snapshot is listed');
    const files = filesUnder(vault).filter((f) => !['vault.json', 'runs.jsonl'].includes(f));
    assert.deepEqual(files, [], `nothing else was left in the vault: ${files.join(', ')}`);
    const runs = await readRunLog(vault);
    assert.equal(runs[runs.length - 1]?.ok, false, 'the run log records the run as not completed');
  });

  it('Run Backup Now backs up every agent of the connection into the vault', async () => {
    const { services: s } = await api();
    const r = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.backupNow', { connection: SOURCE });
    assert.ok(r, `backup failed: ${JSON.stringify(s.log.lastError)}`);
    const idx = await index();
    assert.equal(idx.snapshots.length, 1);
    const expected = await agentsIn(pgInfo().source);
    assert.deepEqual(idx.snapshots[0].agents.map((a) => a.id).sort(), expected.map((a) => a.id).sort());
    assert.ok(fs.existsSync(r.path));
  });

  it('labels a snapshot with its local time, agent count and size; the tooltip has the manifest facts; a new snapshot is "never drilled"', async () => {
    const { services: s } = await api();
    const g = await group('Loop');
    const [node] = s.snapshots.snapshotNodes(g);
    const item = s.snapshots.getTreeItem(node);
    const d = new Date(node.snapshot.created_at);
    const p = (n: number) => String(n).padStart(2, '0');
    assert.equal(item.label, `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`);
    assert.match(String(item.description), /^2 agents · \d+(\.\d)? KiB$/); // IEC units: core/bytes.ts formatBytes, one for the CLI and the extension
    assert.ok(!String(item.description).includes(node.snapshot.id), 'the label and description do not repeat the date');
    const resolved = await s.snapshots.resolveTreeItem(item, node);
    const tip = (resolved.tooltip as vscode.MarkdownString).value;
    for (const fact of ['source: postgres', 'Letta revision', 'embedding models', 'not encrypted', 'Loop', 'LettaBot']) assert.ok(tip.includes(fact), `tooltip has "${fact}":\n${tip}`);
    // the agent's status: a snapshot made a minute ago was never drilled (not "overdue")
    const desc = String(s.snapshots.getTreeItem(g).description);
    assert.match(desc, /never drilled/);
    assert.ok(!/overdue|stale/.test(desc), desc);
  });

  it('cancelling a drill writes no drill report', async () => {
    const { testing } = await api();
    const g = await group('Loop');
    testing.progress.cancelWhen = (_title, msg) => /^creating a scratch database/.test(msg);
    try {
      assert.equal(await vscode.commands.executeCommand('agentVault.drillSnapshot', g), undefined);
    } finally {
      testing.progress.cancelWhen = undefined;
    }
    assert.deepEqual(filesUnder(path.join(vault, 'drills')), []);
    assert.deepEqual(await scratchDatabases(), [], 'the scratch database of the cancelled drill was dropped');
  });

  it('Drill Snapshot restores into a scratch database, shows a readable report, and the status bar turns green', async () => {
    const { services: s } = await api();
    const g = await group('Loop');
    const [node] = s.snapshots.snapshotNodes(g);
    const report = await vscode.commands.executeCommand<DrillReport>('agentVault.drillSnapshot', node);
    assert.ok(report, `drill failed to run: ${JSON.stringify(s.log.lastError)}`);
    assert.equal(report.ok, true, JSON.stringify(report.checks));
    assert.deepEqual(
      report.checks.filter((c) => !c.ok).map((c) => c.name),
      [],
    );
    assert.ok(report.timings.rto_ms !== null && report.timings.rto_ms > 0);
    assert.equal(report.snapshot.id, node.snapshot.id);
    assert.match(report.target, /scratch database, dropped after the drill/);
    assert.deepEqual(await scratchDatabases(), [], 'the scratch database was dropped');
    // recorded in the vault, where the status rules read it
    const reports = filesUnder(path.join(vault, 'drills'));
    assert.equal(reports.filter((f) => f.endsWith('.json')).length, 1, reports.join(', '));
    // the report document: RTO, row counts, in-context messages, vector-search probes, pass/fail per check
    const text = await waitFor('the drill report document', () => (/Restore drill: PASSED/.test(activeText()) ? activeText() : undefined));
    for (const part of ['Time to restore (RTO)', '| row-counts | pass', '| in-context-messages | pass', 'vector-search', '| Loop (', 'in context'])
      assert.ok(text.includes(part), `report has "${part}"`);
    await s.statusBar!.refresh();
    assert.equal(s.statusBar!.state, 'green', JSON.stringify(s.statusBar!.status?.agents.map((a) => a.warnings)));
    assert.match(s.statusBar!.item.text, /^\$\(pass-filled\) Vault (just now|\d+ min ago) · drill passed/);
    assert.match(String((await group('Loop')) && s.snapshots.getTreeItem(await group('Loop')).description), /^1 snapshot$/);
  });

  it('the status bar turns "stale" when the newest snapshot is older than the policy', async () => {
    const { services: s } = await api();
    const file = path.join(vault, 'vault.json');
    const original = fs.readFileSync(file, 'utf8');
    const idx = JSON.parse(original) as VaultIndex;
    for (const x of idx.snapshots) x.created_at = new Date(Date.now() - 3 * 24 * 3600_000).toISOString();
    fs.writeFileSync(file, JSON.stringify(idx, null, 2));
    try {
      await s.statusBar!.refresh();
      assert.equal(s.statusBar!.state, 'stale');
      assert.match(s.statusBar!.item.text, /^\$\(warning\) Vault 3 days ago · drill passed/);
      assert.equal((s.statusBar!.item.backgroundColor as vscode.ThemeColor | undefined)?.id, 'statusBarItem.warningBackground');
      assert.match(String(s.snapshots.getTreeItem(await group('Loop')).description), /backup stale/);
    } finally {
      fs.writeFileSync(file, original);
    }
    await s.statusBar!.refresh();
    assert.equal(s.statusBar!.state, 'green');
  });

  let damaged: string;

  it('the status bar turns "failing" when the latest drill failed (a damaged snapshot)', async () => {
    const { services: s } = await api();
    const r = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.backupNow', { connection: SOURCE });
    assert.ok(r, JSON.stringify(s.log.lastError));
    damaged = r.snapshotId;
    // flip bytes in the middle of the archive (inside an entry's data)
    const buf = fs.readFileSync(r.path);
    for (let i = Math.floor(buf.length / 2); i < Math.floor(buf.length / 2) + 64; i++) buf[i] ^= 0xff;
    fs.writeFileSync(r.path, buf);
    const report = await vscode.commands.executeCommand<DrillReport>('agentVault.drillSnapshot', { snapshot: r.snapshotId });
    assert.ok(report, JSON.stringify(s.log.lastError));
    assert.equal(report.ok, false);
    assert.ok(report.failed_checks.includes('integrity'), report.failed_checks.join(', '));
    await waitFor('the failing drill report', () => /Restore drill: FAILED/.test(activeText()));
    await s.statusBar!.refresh();
    assert.equal(s.statusBar!.state, 'failing');
    assert.match(s.statusBar!.item.text, /^\$\(error\) Vault .* · drill failed/);
    assert.equal((s.statusBar!.item.backgroundColor as vscode.ThemeColor | undefined)?.id, 'statusBarItem.errorBackground');
    assert.match(String(s.snapshots.getTreeItem(await group('Loop')).description), /drill failed/);
  });

  it('Verify Vault (quick and deep) reports the damaged snapshot and passes the good one', async () => {
    const { services: s } = await api();
    for (const deep of [false, true]) {
      const r = await vscode.commands.executeCommand<VerifyReport>('agentVault.verifyVault', { deep });
      assert.ok(r, JSON.stringify(s.log.lastError));
      assert.equal(r.deep, deep);
      assert.equal(r.ok, false);
      assert.deepEqual(
        r.snapshots.filter((x) => !x.ok).map((x) => x.id),
        [damaged],
      );
      assert.equal(r.snapshots.filter((x) => x.ok).length, 1);
      const text = await waitFor('the verify report', () => (activeText().startsWith('# Vault verification') ? activeText() : undefined));
      assert.match(text, new RegExp(`${damaged} \\| \\*\\*FAIL\\*\\*`));
      if (deep) assert.match(text, /\(deep\)/);
    }
  });

  it('Rebuild Index rebuilds vault.json from the archives (the damaged one is reported, nothing deleted)', async () => {
    const { services: s } = await api();
    const before = (await index()).snapshots.map((x) => x.id).sort();
    const archives = filesUnder(path.join(vault, 'snapshots'));
    fs.rmSync(path.join(vault, 'vault.json'));
    const r = await vscode.commands.executeCommand<RebuildIndexReport>('agentVault.rebuildIndex');
    assert.ok(r, JSON.stringify(s.log.lastError));
    assert.equal(r.previous, 'missing');
    assert.deepEqual((await index()).snapshots.map((x) => x.id).sort(), r.adopted.map((a) => a.id).sort());
    assert.ok(
      before.filter((id) => id !== damaged).every((id) => r.adopted.some((a) => a.id === id)),
      'the good snapshot is listed again',
    );
    assert.ok(
      r.rejected.some((x) => x.file.includes(damaged)),
      `the damaged archive is reported: ${JSON.stringify(r.rejected)}`,
    );
    assert.deepEqual(filesUnder(path.join(vault, 'snapshots')), archives, 'no archive was deleted');
    assert.match(activeText(), /index written/);
    // put the damaged archive out of the way (the user would), keeping the vault clean for the next steps
    fs.renameSync(path.join(vault, 'snapshots', `${damaged}.avsnap`), path.join(os.tmpdir(), `${damaged}-${process.pid}.avsnap`));
    fs.rmSync(path.join(os.tmpdir(), `${damaged}-${process.pid}.avsnap`));
  });

  it('Prune lists what it would delete (dry run), then deletes after confirmation (Cancel during the dry run deletes nothing)', async () => {
    const { services: s } = await api();
    for (let i = 0; i < 2; i++) assert.ok(await vscode.commands.executeCommand('agentVault.backupNow', { connection: SOURCE }), JSON.stringify(s.log.lastError));
    // oldest first (the index lists snapshots in the order they were made; two may share a second)
    const all = (await index()).snapshots.map((x) => x.id);
    assert.equal(all.length, 3);
    // Cancel while the dry run is planned: nothing is deleted
    const { testing } = await api();
    testing.progress.cancelWhen = (title) => title.startsWith('Planning the prune');
    try {
      assert.equal(await vscode.commands.executeCommand('agentVault.pruneVault', { policy: { keepLast: 1 }, confirmed: true }), undefined);
    } finally {
      testing.progress.cancelWhen = undefined;
    }
    assert.deepEqual(
      (await index()).snapshots.map((x) => x.id),
      all,
      'a cancelled prune deletes nothing',
    );
    assert.equal(filesUnder(path.join(vault, 'snapshots')).length, 3);
    const r = await vscode.commands.executeCommand<{ dryRun: PruneResult; result?: PruneResult }>('agentVault.pruneVault', { policy: { keepLast: 1 }, confirmed: true });
    assert.ok(r?.result, JSON.stringify(s.log.lastError));
    assert.equal(r.dryRun.dryRun, true);
    assert.deepEqual(r.dryRun.plan.remove.map((d) => d.id).sort(), all.slice(0, 2).sort());
    assert.deepEqual(r.result.removed.map((x) => x.id).sort(), all.slice(0, 2).sort());
    assert.deepEqual(
      (await index()).snapshots.map((x) => x.id),
      [all[2]],
    );
    assert.deepEqual(filesUnder(path.join(vault, 'snapshots')), [`${all[2]}.avsnap`]);
    const plan = vscode.workspace.textDocuments.find((d) => d.uri.path.endsWith('prune-plan.txt'));
    assert.ok(plan, 'the dry-run plan was shown');
    assert.match(plan.getText(), new RegExp(`would delete\\s+${all[0]}`));
    assert.match(plan.getText(), new RegExp(`keep\\s+${all[2]}`));
  });

  it('Show Backup Status opens the status report (the same rules as `agent-vault status`)', async () => {
    const st = await vscode.commands.executeCommand<VaultStatus>('agentVault.showStatus');
    assert.ok(st);
    assert.equal(st.snapshots, 1);
    const text = await waitFor('the status report', () => (activeText().startsWith(`vault ${vault}`) ? activeText() : undefined));
    assert.match(text, /Loop/);
    assert.match(text, /LettaBot/);
  });

  it('Restore to… from a snapshot item (its agent, or every agent of the snapshot) and from an agent item: the plan as a document, then the restore', async () => {
    const { services: s } = await api();
    const g = await group('LettaBot');
    const [node] = s.snapshots.snapshotNodes(g) as SnapshotNode[];
    const planned = await vscode.commands.executeCommand<{ plan: RestorePlan }>('agentVault.restoreTo', node, { connection: TARGET, onConflict: 'replace', dryRun: true, scope: 'agent' });
    assert.ok(planned, JSON.stringify(s.log.lastError));
    assert.deepEqual(
      planned.plan.agents.map((a) => a.name),
      ['LettaBot'],
    );
    // the same item, every agent of its snapshot
    const whole = await vscode.commands.executeCommand<{ plan: RestorePlan }>('agentVault.restoreTo', node, { connection: TARGET, onConflict: 'replace', dryRun: true, scope: 'snapshot' });
    assert.ok(whole, JSON.stringify(s.log.lastError));
    assert.deepEqual(whole.plan.agents.map((a) => a.name).sort(), ['LettaBot', 'Loop']);
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
  });
});
