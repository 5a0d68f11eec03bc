/**
 * The vault's operations in the editor: Run Backup Now, Drill Snapshot, Verify Vault (quick or
 * deep), Prune (the dry-run list first, then a confirmation), Rebuild Index and the status report.
 * Each calls the library (src/vault) and shows what it returned; long work runs under a
 * cancellable progress notification, and a cancelled run leaves nothing half-written (the backup
 * removes the archive it was writing and lists nothing; a cancelled drill writes no report).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { AgentVaultError, errorMessage } from '../core/errors';
import type { Db } from '../db/types';
import { runBackup, type BackupOptions, type BackupResult } from '../vault/backup';
import type { CatalogSnapshot } from '../vault/catalog';
import { listVaultSnapshotsAny, storeSnapshotRef } from '../vault/store-catalog';
import { isStoreLocation, pruneStoreVault, storeBackup, verifyStoreVault, type StoreBackupResult, type StorePruneVaultResult, type StoreVerifyReport } from '../vault/store-vault';
import { renderStoreVerify } from '../cli/store';
import { loadConfig, resolveKeyMaterial, type VaultConfig } from '../vault/config';
import { runDrill } from '../vault/drill';
import { renderDrillMarkdown, writeDrillReport, type DrillReport } from '../vault/drill-report';
import { pruneVault, type PruneResult } from '../vault/prune';
import { rebuildIndex, type RebuildIndexReport } from '../vault/reconcile';
import { describeReasons, type RetentionPolicy } from '../vault/retention';
import { renderStatus, type VaultStatus } from '../vault/status';
import { vaultStatusOf } from '../vault/remote/catalog';
import { requireLocalVault } from '../vault/remote/location';
import { verifyVault, type VerifyReport } from '../vault/verify';
import { DRILLS_DIR } from '../vault/vault';
import { pickConnection, type Services } from './commands';
import { showDoc } from './documents';
import { Cancelled, withProgress } from './log';
import { formatBytes } from '../core/bytes';
import type { AgentGroupNode, SnapshotNode } from './snapshotsTree';
import { setting, statusPolicy, textSetting } from './config';

const isNode = (x: unknown): x is { type: string } => !!x && typeof x === 'object' && typeof (x as { type?: unknown }).type === 'string';

/** The vault configuration file (setting agentVault.configFile), if it exists. */
export function configFile(): string | undefined {
  const configured = textSetting('configFile');
  const expanded = configured.startsWith('~/') ? path.join(os.homedir(), configured.slice(2)) : configured;
  const folder = vscode.workspace.workspaceFolders?.[0];
  const abs = path.isAbsolute(expanded) ? expanded : folder && folder.uri.scheme === 'file' ? path.join(folder.uri.fsPath, expanded) : undefined;
  return abs && existsSync(abs) ? abs : undefined;
}

function refreshViews(s: Services): void {
  s.snapshots.refresh();
  s.statusBar?.refresh();
}

// ---------------------------------------------------------------------------------------------
// backup

export interface BackupNowArgs {
  /** A connection to back up all agents of (when no configuration file is used). */
  connection?: string;
  /** An `agent-vault.json` to run (default: setting agentVault.configFile when it exists). */
  config?: string;
}

/**
 * Run Backup Now: the configured vault (`agent-vault.json`: its source, agents, encryption,
 * retention, Qdrant…), exactly as `agent-vault backup` runs it; without a configuration file, every
 * agent of a connection into the vault folder the Snapshots view shows.
 */
export async function backupNowCommand(s: Services, arg?: BackupNowArgs): Promise<{ path: string; snapshotId: string; result: BackupResult | StoreBackupResult } | undefined> {
  const args = isNode(arg) ? {} : (arg ?? {});
  const file = args.config ?? (args.connection ? undefined : configFile());
  // a store vault (`agent-vault vault init --store`, a folder or s3://) keeps the snapshot as deduplicated chunks
  const run = async (opts: BackupOptions): Promise<BackupResult | StoreBackupResult> => ((await isStoreLocation(opts.config.vault)) ? storeBackup(opts) : runBackup(opts));
  let res: BackupResult | StoreBackupResult;
  if (file) {
    const config = await loadConfig(file);
    res = await withProgress(`Backing up (${path.basename(file)})`, (p) =>
      run({
        config,
        keys: { secrets: s.context.secrets },
        onProgress: (msg) => {
          s.log.info(`backup: ${msg}`);
          p.report(msg);
          p.check();
        },
      }),
    );
  } else {
    const name = await pickConnection(s, args.connection);
    if (!name) return undefined;
    const encrypt = setting('encryptSnapshots');
    const dir = s.vaultDir();
    const vault = (await isStoreLocation(dir)) ? dir : requireLocalVault(dir, 'Run Backup Now');
    res = await withProgress(`Backing up every agent of "${name}"`, (p) =>
      s.connections.with(name, (db, c) => {
        const config: VaultConfig = { vault, source: { kind: 'postgres', schema: c.schema || 'letta' }, agents: { all: true } };
        return run({
          config,
          db,
          encrypt,
          keys: { secrets: s.context.secrets },
          onProgress: (msg) => {
            s.log.info(`backup: ${msg}`);
            p.report(msg);
            p.check();
          },
        });
      }),
    );
  }
  for (const w of res.warnings) s.log.warn(`backup: ${w}`);
  const done =
    'snapshot' in res
      ? { id: res.snapshot.id, agents: res.snapshot.agents.length, bytes: res.snapshot.bytes, path: res.path, pruned: res.pruned?.removed.length ?? 0, added: '' }
      : {
          id: res.id,
          agents: res.agents.length,
          bytes: res.archiveBytes,
          path: storeSnapshotRef(file ? (await loadConfig(file)).vault : s.vaultDir(), res.id),
          pruned: res.pruned?.removed.length ?? 0,
          added: `, ${formatBytes(res.ingest.bytesAdded)} new in the store`,
        };
  s.log.info(`backup: snapshot ${done.id} (${done.agents} agents, ${done.bytes} bytes${done.added}) at ${done.path}`);
  refreshViews(s);
  void vscode.window.showInformationMessage(
    `Agent Vault: backup done — snapshot ${done.id} of ${done.agents} agent${done.agents === 1 ? '' : 's'} (${formatBytes(done.bytes)}${done.added})${done.pruned ? `; pruned ${done.pruned}` : ''}.`,
  );
  return { path: done.path, snapshotId: done.id, result: res };
}

// ---------------------------------------------------------------------------------------------
// drill

export interface DrillArgs {
  /** A snapshot id of the vault, or the path of an archive. */
  snapshot?: string;
  /** The connection whose server hosts the scratch database (default: setting agentVault.drill.connection). */
  connection?: string;
}

/**
 * A throwaway database on the connection's server for a drill to restore into: created empty
 * (CREATE DATABASE needs the CREATEDB privilege), handed to `fn`, and dropped afterwards whatever
 * happened, cancelled runs included. (The extension has no embedded PGlite; the CLI's drill does.)
 */
async function withScratchDatabase<T>(s: Services, connection: string, fn: (db: Db, target: string) => Promise<T>): Promise<T> {
  const name = `agent_vault_drill_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const c = s.connections.get(connection);
  const target = `PostgreSQL ${c.host}:${c.port ?? 5432}/${name} (a scratch database, dropped after the drill)`;
  await s.connections.with(connection, (admin) => admin.query(`CREATE DATABASE "${name}"`));
  try {
    const db = await s.connections.open(connection, { interactive: false, database: name });
    try {
      return await fn(Object.assign(db, { target }), target);
    } finally {
      await db.close().catch(() => undefined);
    }
  } finally {
    // FORCE (PostgreSQL 13+) ends a session a cancelled drill left behind instead of waiting for it
    const drop = (admin: Db) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => admin.query(`DROP DATABASE IF EXISTS "${name}"`));
    await s.connections.with(connection, drop).catch((e) => s.log.warn(`drill: could not drop the scratch database ${name}: ${errorMessage(e)}`));
  }
}

async function pickVaultSnapshot(s: Services, title: string): Promise<CatalogSnapshot | undefined> {
  const snaps = (await listVaultSnapshotsAny(s.vaultDir(), s.documents.sources.keys)).filter((x) => !x.error);
  if (snaps.length === 0) throw new AgentVaultError('no-snapshot', `the vault ${s.vaultDir()} has no snapshots`, { hint: 'run "Agent Vault: Run Backup Now" or "Export Agents…" first' });
  const pick = await vscode.window.showQuickPick(
    snaps.map((x) => ({
      label: x.listed ? x.id : path.basename(x.path),
      description: new Date(x.created_at).toLocaleString(),
      detail: x.agents.map((a) => a.name ?? a.id).join(', ') + (x.encrypted ? ' · encrypted' : ''),
      snap: x,
    })),
    { title, matchOnDetail: true },
  );
  return pick?.snap;
}

/** Which snapshot a drill or restore is about: a tree item, an id or path, or the user's pick. */
async function snapshotOf(s: Services, arg: SnapshotNode | AgentGroupNode | DrillArgs | undefined, title: string): Promise<CatalogSnapshot | undefined> {
  if (isNode(arg) && arg.type === 'snapshot') return (arg as SnapshotNode).snapshot;
  if (isNode(arg) && arg.type === 'agent') return (arg as AgentGroupNode).snapshots[0];
  const ref = (arg as DrillArgs | undefined)?.snapshot;
  if (!ref) return pickVaultSnapshot(s, title);
  const snaps = await listVaultSnapshotsAny(s.vaultDir(), s.documents.sources.keys);
  const hit = snaps.find((x) => x.id === ref || x.path === path.resolve(ref));
  if (hit) return hit;
  if (!existsSync(ref)) throw new AgentVaultError('no-snapshot', `no snapshot ${JSON.stringify(ref)} in the vault ${s.vaultDir()}`);
  return { id: path.basename(ref), path: path.resolve(ref), created_at: '', bytes: 0, encrypted: false, agents: [], collections: [], listed: false };
}

/**
 * Drill Snapshot: restore it into a scratch database (created on a connection's server, dropped
 * after) and check row counts, in-context
 * message ids and vector-search probes (runDrill), then show the report. A drill of a vault
 * snapshot is recorded in `<vault>/drills/` (the status rules read it); a cancelled one is not.
 */
export async function drillCommand(s: Services, arg?: SnapshotNode | AgentGroupNode | DrillArgs): Promise<DrillReport | undefined> {
  const snap = await snapshotOf(s, arg, 'Agent Vault: drill which snapshot?');
  if (!snap) return undefined;
  const vault = requireLocalVault(s.vaultDir(), 'Run Drill');
  const decrypt = await s.documents.sources.keys();
  const label = snap.listed ? snap.id : path.basename(snap.path);
  const args = isNode(arg) ? {} : (arg ?? {});
  const connection = await pickConnection(s, args.connection ?? (setting('drill.connection') || undefined));
  if (!connection) return undefined;
  const report = await withProgress(`Drilling ${label}`, async (p) => {
    p.report('creating a scratch database');
    p.check();
    const r = await withScratchDatabase(s, connection, (db) =>
      runDrill({
        snapshot: snap.listed ? snap.id : snap.path,
        vaultDir: snap.listed ? vault : undefined,
        decrypt,
        db,
        reportDir: null, // written below, unless cancelled
        onProgress: (msg) => {
          s.log.info(`drill ${label}: ${msg}`);
          p.report(msg);
          p.check();
        },
      }),
    );
    if (p.cancelled()) throw new Cancelled();
    if (snap.listed) await writeDrillReport(path.join(vault, DRILLS_DIR), r, vault);
    return r;
  });
  s.log.info(`drill ${label}: ${report.ok ? 'passed' : `FAILED (${report.failed_checks.join(', ') || report.error?.message})`}; RTO ${report.timings.rto_ms ?? '—'} ms`);
  await showDoc(s.documents.textUri(`drill-${label}.md`, renderDrillMarkdown(report)), { preview: false });
  refreshViews(s);
  const rto = report.timings.rto_ms === null ? '' : ` RTO ${(report.timings.rto_ms / 1000).toFixed(1)} s.`;
  if (report.ok) void vscode.window.showInformationMessage(`Agent Vault: drill of ${label} passed.${rto}`);
  else void vscode.window.showErrorMessage(`Agent Vault: drill of ${label} FAILED: ${report.failed_checks.join(', ') || report.error?.message || 'error'}.`);
  return report;
}

// ---------------------------------------------------------------------------------------------
// verify

export interface VerifyArgs {
  deep?: boolean;
}

export function verifyMarkdown(r: VerifyReport): string {
  const bad = r.snapshots.filter((x) => !x.ok);
  const lines = [
    `# Vault verification${r.deep ? ' (deep)' : ''}: ${r.ok ? 'OK' : 'PROBLEMS FOUND'}`,
    '',
    `- Vault: \`${r.vault}\``,
    `- ${r.snapshots.length} snapshot(s), ${bad.length} with problems, ${(r.duration_ms / 1000).toFixed(1)} s`,
    '',
  ];
  lines.push('| snapshot | result | checks |', '|---|---|---|');
  for (const x of r.snapshots) {
    const checks = x.ok
      ? x.checks.map((c) => c.name).join(', ')
      : x.checks
          .filter((c) => !c.ok)
          .map((c) => `**${c.name}**: ${(c.message ?? '').replace(/\|/g, '\\|')}`)
          .join('; ');
    lines.push(`| ${x.id}${x.encrypted ? ' (encrypted)' : ''} | ${x.ok ? 'ok' : '**FAIL**'} | ${checks} |`);
  }
  for (const u of r.unlisted) lines.push('', `- ${u} is not in the index; Rebuild Index (or the next backup) verifies it and lists it again`);
  for (const l of r.leftovers) lines.push('', `- ${l}: a temp file of an interrupted run`);
  return lines.join('\n') + '\n';
}

/** Verify Vault: every snapshot's checksums, manifest and decryptability (deep: every entry read through). */
export function storeVerifyMarkdown(r: StoreVerifyReport, deep: boolean): string {
  return [
    `# Vault verification${deep ? ' (deep: every pack read)' : ''}: ${r.ok ? 'OK' : 'PROBLEMS FOUND'}`,
    '',
    `- Store vault: \`${r.vault}\``,
    `- ${r.snapshots} snapshot(s), ${r.packs} pack(s), ${r.blobs} chunk(s), ${(r.duration_ms / 1000).toFixed(1)} s`,
    '',
    '```',
    renderStoreVerify(r).trimEnd(),
    '```',
    '',
  ].join('\n');
}

/** Verify Vault on a store vault: every snapshot file, index and pack; deep reads every pack and checks every chunk. */
async function verifyStore(s: Services, vault: string, deep: boolean): Promise<StoreVerifyReport> {
  const material = await resolveKeyMaterial(undefined, { secrets: s.context.secrets });
  // read-only: a Cancel pressed meanwhile drops the report
  const report = await withProgress(`Verifying ${deep ? '(deep) ' : ''}${vault}`, async (p) => {
    const r = await verifyStoreVault(vault, { readData: deep, material });
    p.check();
    return r;
  });
  await showDoc(s.documents.textUri(`verify${deep ? '-deep' : ''}.md`, storeVerifyMarkdown(report, deep)), { preview: false });
  s.log.info(`verify${deep ? ' --deep' : ''} ${vault}: ${report.snapshots} snapshot(s), ${report.problems.length} problem(s)`);
  refreshViews(s);
  if (report.ok) void vscode.window.showInformationMessage(`Agent Vault: ${report.snapshots} snapshot${report.snapshots === 1 ? '' : 's'} verified${deep ? ' (deep)' : ''}, all ok.`);
  else void vscode.window.showErrorMessage(`Agent Vault: verification found ${report.problems.length} problem(s) in the store.`);
  return report;
}

export async function verifyCommand(s: Services, arg?: VerifyArgs): Promise<VerifyReport | StoreVerifyReport | undefined> {
  let deep = isNode(arg) ? undefined : arg?.deep;
  if (deep === undefined) {
    const pick = await vscode.window.showQuickPick(
      [
        { label: 'Quick', detail: 'file checksums, manifests, entry checksums, decryptability', deep: false },
        { label: 'Deep', detail: 'also decrypt and read everything: .af schemas, passages, every vector', deep: true },
      ],
      { title: 'Agent Vault: verify the vault' },
    );
    if (!pick) return undefined;
    deep = pick.deep;
  }
  if (await isStoreLocation(s.vaultDir())) return verifyStore(s, s.vaultDir(), deep);
  const vault = requireLocalVault(s.vaultDir(), 'Verify Vault');
  const decrypt = await s.documents.sources.keys();
  const report = await withProgress(`Verifying ${deep ? '(deep) ' : ''}${vault}`, (p) =>
    verifyVault(vault, {
      deep,
      decrypt,
      onSnapshot: (r) => {
        p.report(`${r.id}: ${r.ok ? 'ok' : 'FAIL'}`);
        p.check();
      },
    }),
  );
  await showDoc(s.documents.textUri(`verify${deep ? '-deep' : ''}.md`, verifyMarkdown(report)), { preview: false });
  const bad = report.snapshots.filter((x) => !x.ok).length;
  s.log.info(`verify${deep ? ' --deep' : ''} ${vault}: ${report.snapshots.length} snapshot(s), ${bad} with problems`);
  refreshViews(s);
  if (report.ok) void vscode.window.showInformationMessage(`Agent Vault: ${report.snapshots.length} snapshot${report.snapshots.length === 1 ? '' : 's'} verified${deep ? ' (deep)' : ''}, all ok.`);
  else void vscode.window.showErrorMessage(`Agent Vault: verification found problems in ${bad} snapshot${bad === 1 ? '' : 's'}.`);
  return report;
}

// ---------------------------------------------------------------------------------------------
// prune

export interface PruneArgs {
  policy?: RetentionPolicy;
  /** skip the confirmation (tests) */
  confirmed?: boolean;
}

/** The retention policy: the configuration file's "retention", else setting agentVault.retention. */
export async function retentionPolicy(): Promise<RetentionPolicy> {
  const file = configFile();
  if (file) {
    const cfg = await loadConfig(file);
    if (cfg.retention) {
      const { pruneAfterBackup: _p, ...policy } = cfg.retention;
      return policy;
    }
  }
  return setting('retention');
}

export function prunePlanText(r: PruneResult, names: ReadonlyMap<string, string>): string {
  const lines = [
    `Prune ${r.dryRun ? '(dry run)' : ''}: keep ${r.plan.keep.length + r.unverified.length}, ${r.dryRun ? 'would delete' : 'deleted'} ${r.plan.remove.length} snapshot(s), ${formatBytes(r.freedBytes)}`,
    '',
  ];
  for (const d of r.plan.decisions)
    lines.push(d.keep ? `keep          ${d.id}  ${d.created_at}  ${describeReasons(d.reasons, { names })}` : `${r.dryRun ? 'would delete' : 'deleted     '}  ${d.id}  ${d.created_at}`);
  for (const u of r.unverified) lines.push(`KEEP          ${u.id}  fails verification, not counted for retention: ${u.reason}`);
  return lines.join('\n') + '\n';
}

/** Prune: list what the retention policy would delete (dry run), confirm, then prune. */
export function storePrunePlanText(r: StorePruneVaultResult): string {
  const lines = [`Prune ${r.dryRun ? '(dry run)' : ''}: keep ${r.kept.length + r.unreadable.length}, ${r.dryRun ? 'would delete' : 'deleted'} ${r.removed.length} snapshot(s)`, ''];
  for (const d of r.plan.decisions) {
    const id = d.keep ? r.kept[r.plan.keep.indexOf(d)] : r.removed[r.plan.remove.indexOf(d)]?.id;
    lines.push(d.keep ? `keep          ${id}  ${d.created_at}  ${describeReasons(d.reasons)}` : `${r.dryRun ? 'would delete' : 'deleted     '}  ${id}  ${d.created_at}`);
  }
  for (const u of r.unreadable) lines.push(`KEEP          ${u.id}  cannot be read, not counted for retention: ${u.reason}`);
  const sw = r.sweep;
  if (sw)
    lines.push(
      '',
      `swept ${sw.blobsRemoved} unreferenced chunk(s): ${sw.packsDeleted} pack(s) deleted, ${sw.packsRepacked} repacked; store ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}`,
    );
  return lines.join('\n') + '\n';
}

/** Prune on a store vault: the dry-run list, the confirmation, then forget and sweep (pruneStoreVault). */
async function pruneStore(s: Services, vault: string, policy: RetentionPolicy, confirmed: boolean): Promise<{ dryRun: StorePruneVaultResult; result?: StorePruneVaultResult }> {
  const material = await resolveKeyMaterial(undefined, { secrets: s.context.secrets });
  const dry = await withProgress('Planning the prune (dry run)', async (p) => {
    p.report('applying the retention policy');
    const r = await pruneStoreVault(vault, { policy, dryRun: true, material });
    p.check(); // a dry run writes nothing: Cancel stops before anything is deleted
    return r;
  });
  await showDoc(s.documents.textUri('prune-plan.txt', storePrunePlanText(dry)), { preview: true });
  if (dry.removed.length === 0) {
    void vscode.window.showInformationMessage('Agent Vault: the retention policy keeps every snapshot; nothing to prune.');
    return { dryRun: dry };
  }
  if (!confirmed) {
    const del = 'Delete';
    const pick = await vscode.window.showWarningMessage(
      `Delete ${dry.removed.length} snapshot${dry.removed.length === 1 ? '' : 's'} from the store?`,
      { modal: true, detail: `${dry.removed.map((d) => d.id).join(', ')}.\nChunks no kept snapshot uses are swept. The newest snapshot of every agent is always kept. This cannot be undone.` },
      del,
    );
    if (pick !== del) return { dryRun: dry };
  }
  const result = await withProgress('Pruning', () => pruneStoreVault(vault, { policy, material }), { cancellable: false });
  s.log.info(`prune ${vault}: deleted ${result.removed.map((x) => x.id).join(', ') || 'nothing'}`);
  for (const x of result.removed) s.documents.refresh(storeSnapshotRef(vault, x.id));
  refreshViews(s);
  void vscode.window.showInformationMessage(
    `Agent Vault: pruned ${result.removed.length} snapshot${result.removed.length === 1 ? '' : 's'}; the store went from ${formatBytes(result.bytesBefore)} to ${formatBytes(result.bytesAfter)}.`,
  );
  return { dryRun: dry, result };
}

export async function pruneCommand(s: Services, arg?: PruneArgs): Promise<{ dryRun: PruneResult | StorePruneVaultResult; result?: PruneResult | StorePruneVaultResult } | undefined> {
  const args = isNode(arg) ? {} : (arg ?? {});
  const policy = args.policy ?? (await retentionPolicy());
  if (await isStoreLocation(s.vaultDir())) return pruneStore(s, s.vaultDir(), policy, !!args.confirmed);
  const vault = requireLocalVault(s.vaultDir(), 'Prune Snapshots');
  const names = new Map<string, string>();
  for (const x of await listVaultSnapshotsAny(vault, s.documents.sources.keys)) for (const a of x.agents) if (a.name) names.set(a.id, a.name);
  const dry = await withProgress('Planning the prune (dry run)', async (p) => {
    p.report('applying the retention policy');
    const r = await pruneVault(vault, { policy, dryRun: true });
    p.check(); // a dry run writes nothing: Cancel stops before anything is deleted
    return r;
  });
  await showDoc(s.documents.textUri('prune-plan.txt', prunePlanText(dry, names)), { preview: true });
  if (dry.plan.remove.length === 0) {
    void vscode.window.showInformationMessage('Agent Vault: the retention policy keeps every snapshot; nothing to prune.');
    return { dryRun: dry };
  }
  if (!args.confirmed) {
    const del = 'Delete';
    const pick = await vscode.window.showWarningMessage(
      `Delete ${dry.plan.remove.length} snapshot${dry.plan.remove.length === 1 ? '' : 's'} (${formatBytes(dry.freedBytes)})?`,
      { modal: true, detail: `${dry.plan.remove.map((d) => d.id).join(', ')}.\nThe newest snapshot of every agent is always kept. This cannot be undone.` },
      del,
    );
    if (pick !== del) return { dryRun: dry };
  }
  const result = await withProgress('Pruning', () => pruneVault(vault, { policy }), { cancellable: false });
  s.log.info(`prune ${vault}: deleted ${result.removed.map((x) => x.id).join(', ') || 'nothing'}`);
  for (const e of result.deleteErrors) s.log.warn(`prune: could not delete ${e}`);
  for (const x of result.removed) s.documents.refresh(path.resolve(vault, x.file));
  refreshViews(s);
  void vscode.window.showInformationMessage(`Agent Vault: pruned ${result.removed.length} snapshot${result.removed.length === 1 ? '' : 's'} (${formatBytes(result.freedBytes)}).`);
  return { dryRun: dry, result };
}

// ---------------------------------------------------------------------------------------------
// rebuild index, status

export function rebuildText(r: RebuildIndexReport): string {
  const lines: string[] = [];
  if (r.previous !== 'ok') lines.push(`the index was ${r.previous}${r.backup ? `; kept as ${r.backup}` : ''}`);
  for (const a of r.adopted) lines.push(`listed again ${a.id}  ${a.created_at}  ${a.agents.map((x) => x.name ?? x.id).join(', ')}`);
  for (const m of r.missing) lines.push(`dropped ${m.id}: its archive ${m.file} is missing`);
  for (const d of r.damaged) lines.push(`DAMAGED ${d.id}: ${d.reason} (kept listed; run Verify Vault)`);
  for (const x of r.rejected) lines.push(`NOT LISTED ${x.file}: fails verification (left in place): ${x.reason}`);
  for (const f of r.foreign) lines.push(`note: ${f} was not written by Agent Vault; left alone`);
  for (const t of r.swept) lines.push(`removed temp file ${t}`);
  lines.push(
    `index written: ${r.kept.length + r.damaged.length + r.adopted.length} snapshot(s) (${r.adopted.length} listed again, ${r.missing.length} dropped as missing, ${r.rejected.length} archive(s) failing verification)`,
  );
  return lines.join('\n') + '\n';
}

/** Rebuild Index: `vault.json` rebuilt from the archives (rebuildIndex); nothing is deleted. */
export async function rebuildIndexCommand(s: Services): Promise<RebuildIndexReport> {
  if (await isStoreLocation(s.vaultDir()))
    throw new AgentVaultError('usage', `${s.vaultDir()} is a store vault: it has no index to rebuild (its snapshots are the store's own snapshot files)`, {
      kind: 'usage',
      hint: 'run "Agent Vault: Verify Vault…" to check the store',
    });
  const vault = requireLocalVault(s.vaultDir(), 'Rebuild Index');
  const r = await withProgress(`Rebuilding the index of ${vault}`, () => rebuildIndex(vault), { cancellable: false });
  s.log.info(`rebuild-index ${vault}:\n${rebuildText(r)}`);
  await showDoc(s.documents.textUri('rebuild-index.txt', rebuildText(r)), { preview: true });
  refreshViews(s);
  const problems = r.rejected.length + r.damaged.length;
  const msg = `Agent Vault: index rebuilt — ${r.kept.length + r.damaged.length + r.adopted.length} snapshot(s), ${r.adopted.length} listed again, ${r.missing.length} dropped as missing`;
  if (problems) void vscode.window.showWarningMessage(`${msg}; ${problems} archive(s) fail verification (see the report).`);
  else void vscode.window.showInformationMessage(`${msg}.`);
  return r;
}

/** The status report (`agent-vault status`) of the vault, as a document. */
export async function showStatusCommand(s: Services): Promise<VaultStatus> {
  const st = await vaultStatusOf(s.vaultDir(), statusPolicy(), s.snapshots.remote, s.documents.sources.keys);
  await showDoc(s.documents.textUri('vault-status.txt', renderStatus(st)), { preview: true });
  return st;
}
