/**
 * The commands. Each asks for what it needs (quick picks, input boxes, confirmations) unless the
 * caller passes it — a tree item from a context menu, or an options object (the extension's own
 * tests drive the commands that way) — then calls the library and reports the result.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { AgentVaultError, errorMessage } from '../core/errors';
import { exportLiveSnapshot } from '../diff/live';
import { isFileLocalId } from '../diff/state';
import { isS3Location, requireLocalVault } from '../vault/remote/location';
import { describeSnapshotAny, isStoreSnapshotRef, listVaultSnapshotsAny, parseStoreSnapshotRef } from '../vault/store-catalog';
import { packAgentFile } from '../format/pack';
import { isArchivePath, validateAnyPath, type ValidationReport } from '../format/validate-any';
import { listAgents, type AgentListing } from '../letta/export';
import { runBackup } from '../vault/backup';
import { addSnapshotToVault, removeVaultSnapshot, type CatalogSnapshot } from '../vault/catalog';
import { PASSPHRASE_SECRET } from '../vault/config';
import { connectionForm, describeConnection, type Connections } from './connections';
import type { DatabasesNode, DatabasesTree } from './databasesTree';
import { agentCountsText } from './databasesTree';
import { computeDiff, openChange, type ChangeNode, type ChangesTree, type CurrentDiff, type DiffSide } from './diffView';
import { docUri, showDoc, snapshotLabel, type ComponentDocuments } from './documents';
import type { AgentFileDiagnostics } from './language';
import { Cancelled, withProgress, type Log } from './log';
import { restoreFlow, type RestoreArgs } from './restore';
import type { SnapshotNode, SnapshotsNode, SnapshotsTree } from './snapshotsTree';
import type { VaultStatusBar } from './statusBar';
import { setting } from './config';

export interface Services {
  context: vscode.ExtensionContext;
  log: Log;
  connections: Connections;
  snapshots: SnapshotsTree;
  snapshotsView: vscode.TreeView<SnapshotsNode>;
  databases: DatabasesTree;
  changes: ChangesTree;
  changesView: vscode.TreeView<import('./diffView').ChangesNode>;
  documents: ComponentDocuments;
  diagnostics: AgentFileDiagnostics;
  vaultDir: () => string;
  /** Temp files of live exports (diff with a live agent), removed on deactivate. */
  tempFiles: Set<string>;
  /** The backup-status item (./statusBar.ts). */
  statusBar?: VaultStatusBar;
}

/** Options the commands accept instead of asking (tests, other extensions). */
export interface ExportArgs {
  connection?: string;
  agentIds?: string[];
}

export interface DiffArgs {
  left?: string;
  right?: string;
  agent?: string;
  /** open the first change's diff editor (default: setting agentVault.diff.openFirstChange) */
  openFirst?: boolean;
}

export interface DeleteArgs {
  snapshot: string;
  /** skip the confirmation (tests) */
  confirmed?: boolean;
}

const isNode = (x: unknown): x is { type: string } => !!x && typeof x === 'object' && typeof (x as { type?: unknown }).type === 'string';

/** Wraps a command: errors are reported (message + Show Log), the result is returned. */
export function command<A extends unknown[], R>(s: Services, title: string, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R | undefined> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (e) {
      let cancelled = false;
      for (let c: unknown = e, n = 0; c && n < 10 && !cancelled; c = (c as { cause?: unknown }).cause, n++) cancelled = c instanceof Cancelled;
      s.log.report(`${title} failed`, cancelled ? new Cancelled() : e);
      return undefined;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// pickers

export async function pickConnection(s: Services, preset?: string): Promise<string | undefined> {
  if (preset) return s.connections.get(preset).name;
  const list = s.connections.list();
  if (list.length === 0) {
    const add = 'Add Connection…';
    const pick = await vscode.window.showWarningMessage('Agent Vault: no database connection is configured.', add);
    if (pick === add) await vscode.commands.executeCommand('agentVault.addConnection');
    return undefined;
  }
  if (list.length === 1) return list[0].name;
  const pick = await vscode.window.showQuickPick(
    list.map((c) => ({ label: c.name, description: describeConnection(c) })),
    { title: 'Agent Vault: database', placeHolder: 'Which Letta database?' },
  );
  return pick?.label;
}

interface SnapshotPick extends vscode.QuickPickItem {
  snapshot?: CatalogSnapshot;
  browse?: boolean;
}

async function pickSnapshot(s: Services, title: string, opts: { exclude?: string; agent?: string } = {}): Promise<{ path: string; label: string } | undefined> {
  const snaps = (await listVaultSnapshotsAny(s.vaultDir(), s.documents.sources.keys)).filter((x) => x.path !== opts.exclude && (!opts.agent || x.agents.some((a) => a.id === opts.agent)));
  const items: SnapshotPick[] = snaps.map((x) => ({
    label: x.listed ? x.id : path.basename(x.path),
    description: new Date(x.created_at).toLocaleString(),
    detail: x.agents.map((a) => a.name ?? a.id).join(', ') + (x.encrypted ? ' · encrypted' : ''),
    snapshot: x,
  }));
  items.push({ label: '$(folder-opened) Browse…', description: 'an archive or .af file elsewhere', browse: true });
  const pick = await vscode.window.showQuickPick(items, { title, placeHolder: 'Pick a snapshot', matchOnDescription: true, matchOnDetail: true });
  if (!pick) return undefined;
  if (pick.browse) {
    const files = await vscode.window.showOpenDialog({ title, canSelectMany: false, filters: { 'Snapshots and agent files': ['avsnap', 'zip', 'af', 'json'] } });
    if (!files?.length) return undefined;
    return { path: files[0].fsPath, label: path.basename(files[0].fsPath) };
  }
  return { path: pick.snapshot!.path, label: pick.label };
}

/** How the diff finds a snapshot's agent on both sides: its database id, or its name for file-local ids. */
function diffAgentKey(node: SnapshotNode): string {
  return isFileLocalId(node.agent.id) ? (node.agent.name ?? node.agent.id) : node.agent.id;
}

function sideOf(x: CatalogSnapshot): DiffSide {
  return { path: x.path, label: snapshotLabel(x.path, x.listed ? x.id : undefined) };
}

// ---------------------------------------------------------------------------------------------
// export

export async function exportCommand(s: Services, arg?: DatabasesNode | ExportArgs): Promise<{ path: string; snapshotId: string } | undefined> {
  const node = isNode(arg) ? arg : undefined;
  const args = !isNode(arg) ? (arg ?? {}) : {};
  const name = await pickConnection(s, node && node.type !== 'dbMessage' ? node.connection.name : args.connection);
  if (!name) return undefined;
  let ids = args.agentIds ?? (node?.type === 'dbAgent' ? [node.agent.id] : undefined);
  if (!ids) {
    const agents: AgentListing[] = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'Agent Vault: listing agents' }, () => s.databases.listAgents(name));
    if (agents.length === 0) {
      void vscode.window.showInformationMessage(`Agent Vault: the database "${name}" has no agents.`);
      return undefined;
    }
    const picks = await vscode.window.showQuickPick(
      agents.map((a) => ({ label: a.name ?? a.id, description: agentCountsText(a), detail: `${a.id}${a.agent_type ? ` · ${a.agent_type}` : ''}`, picked: true, id: a.id })),
      { title: `Agent Vault: export agents of "${name}"`, placeHolder: 'Agents to put in the snapshot', canPickMany: true, ignoreFocusOut: true },
    );
    if (!picks?.length) return undefined;
    ids = picks.map((p) => p.id);
  }
  const vault = requireLocalVault(s.vaultDir(), 'Export into the vault');
  const encrypt = setting('encryptSnapshots');
  const res = await withProgress(`Exporting ${ids.length} agent${ids.length === 1 ? '' : 's'} from "${name}"`, async (p) =>
    s.connections.with(name, async (db, c) => {
      p.check();
      const r = await runBackup({
        config: { vault, source: { kind: 'postgres', schema: c.schema || 'letta' }, agents: { ids } },
        db,
        encrypt,
        keys: { secrets: s.context.secrets },
        onProgress: (msg) => {
          p.check();
          s.log.info(`export: ${msg}`);
          p.report(msg);
        },
      });
      return r;
    }),
  );
  for (const w of res.warnings) s.log.warn(`export: ${w}`);
  s.log.info(`exported ${res.snapshot.agents.length} agent(s) from "${name}" to ${res.path} (${res.snapshot.bytes} bytes)`);
  s.snapshots.refresh();
  void revealSnapshot(s, res.path);
  void vscode.window.showInformationMessage(`Agent Vault: exported ${res.snapshot.agents.map((a) => a.name ?? a.id).join(', ')} to snapshot ${res.snapshot.id}.`);
  return { path: res.path, snapshotId: res.snapshot.id };
}

/** Expands the new snapshot's agent in the Snapshots view (if the view is visible). */
async function revealSnapshot(s: Services, file: string): Promise<void> {
  try {
    const groups = await s.snapshots.agentGroups();
    for (const g of groups) {
      const node = s.snapshots.snapshotNodes(g).find((n) => n.snapshot.path === path.resolve(file));
      if (node) {
        await s.snapshotsView.reveal(node, { select: true, focus: false, expand: false });
        return;
      }
    }
  } catch (e) {
    s.log.warn(`reveal ${file}: ${errorMessage(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// import, open, validate

export async function importCommand(s: Services, arg?: vscode.Uri | string): Promise<{ path: string; snapshotId: string } | undefined> {
  let file = typeof arg === 'string' ? arg : arg instanceof vscode.Uri ? arg.fsPath : undefined;
  if (!file) {
    const active = vscode.window.activeTextEditor?.document;
    if (active && active.uri.scheme === 'file' && active.uri.fsPath.toLowerCase().endsWith('.af')) file = active.uri.fsPath;
  }
  if (!file) {
    const files = await vscode.window.showOpenDialog({ title: 'Import an agent file into the vault', canSelectMany: false, filters: { 'Agent files': ['af', 'json'] } });
    if (!files?.length) return undefined;
    file = files[0].fsPath;
  }
  const src = file;
  const res = await withProgress(`Importing ${path.basename(src)}`, async (p) => {
    p.report('packing');
    return addSnapshotToVault(requireLocalVault(s.vaultDir(), 'Import into the vault'), (dest) => packAgentFile(src, dest), { command: 'vscode import' });
  });
  s.snapshots.refresh();
  void revealSnapshot(s, res.path);
  void vscode.window.showInformationMessage(
    `Agent Vault: imported ${path.basename(src)} as snapshot ${res.record.id} (${res.record.agents.length} agent${res.record.agents.length === 1 ? '' : 's'}).`,
  );
  return { path: res.path, snapshotId: res.record.id };
}

export async function openSnapshotCommand(s: Services, arg?: vscode.Uri | string): Promise<string | undefined> {
  let file = typeof arg === 'string' ? arg : arg instanceof vscode.Uri ? arg.fsPath : undefined;
  if (!file) {
    const picked = await pickSnapshot(s, 'Agent Vault: open a snapshot');
    if (!picked) return undefined;
    file = picked.path;
  }
  if (!(await isArchivePath(file))) {
    // an agent file: open it as such (the language support validates it)
    await vscode.window.showTextDocument(vscode.Uri.file(file));
    return file;
  }
  const abs = path.resolve(file);
  const inVault = !path.relative(path.resolve(s.vaultDir()), abs).startsWith('..');
  if (!inVault) s.snapshots.addOpened(abs);
  await showDoc(docUri({ src: abs, agent: '', kind: 'describe' }, { snapshot: snapshotLabel(abs) }));
  void revealSnapshot(s, abs);
  return abs;
}

export async function validateCommand(s: Services, arg?: vscode.Uri | string): Promise<ValidationReport | undefined> {
  let uri = typeof arg === 'string' ? vscode.Uri.file(arg) : arg instanceof vscode.Uri ? arg : undefined;
  if (!uri) {
    const active = vscode.window.activeTextEditor?.document;
    if (active && (active.languageId === 'agentfile' || active.uri.path.endsWith('.af'))) uri = active.uri;
  }
  if (!uri) {
    const files = await vscode.window.showOpenDialog({ title: 'Validate an agent file or snapshot', canSelectMany: false, filters: { 'Agent files and snapshots': ['af', 'json', 'avsnap', 'zip'] } });
    if (!files?.length) return undefined;
    uri = files[0];
  }
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri!.toString());
  let report: ValidationReport;
  if (open && open.languageId !== 'plaintext') report = s.diagnostics.validate(open);
  else if (uri.scheme === 'file' && (await isArchivePath(uri.fsPath))) report = await validateAnyPath(uri.fsPath);
  else {
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { preview: true });
    report = s.diagnostics.validate(doc);
  }
  const name = path.basename(uri.path);
  const nErr = report.errors.length;
  const nWarn = report.warnings.length;
  s.log.info(`validate ${uri.fsPath || uri.toString()}: ${nErr} error(s), ${nWarn} warning(s)`);
  for (const f of [...report.errors, ...report.warnings]) s.log.info(`  ${f.line ? `${f.line}:${f.column ?? 1} ` : ''}${f.severity} [${f.code}] ${f.message}`);
  if (report.valid) {
    void vscode.window.showInformationMessage(`Agent Vault: ${name} is valid${report.format ? ` (${report.format})` : ''}${nWarn ? `, ${nWarn} warning${nWarn === 1 ? '' : 's'}` : ''}.`);
  } else {
    const problems = 'Show Problems';
    void vscode.window.showErrorMessage(`Agent Vault: ${name} has ${nErr} error${nErr === 1 ? '' : 's'}${nWarn ? ` and ${nWarn} warning${nWarn === 1 ? '' : 's'}` : ''}.`, problems).then((pick) => {
      if (pick === problems) void vscode.commands.executeCommand('workbench.actions.view.problems');
    });
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// diff

export async function showDiff(s: Services, left: DiffSide, right: DiffSide, agent?: string, openFirst?: boolean): Promise<CurrentDiff> {
  const cur = await withProgress(`Comparing ${left.label} with ${right.label}`, async (p) => {
    p.report('semantic diff');
    return computeDiff(left, right, agent, await s.documents.sources.keys());
  });
  s.changes.set(cur);
  const total = cur.report.summary.total_changes;
  s.log.info(`diff ${left.path} ↔ ${right.path}${agent ? ` (agent ${agent})` : ''}: ${total} change(s)`);
  await vscode.commands.executeCommand('agentVault.changes.focus');
  const first = s.changes.changes()[0];
  if (cur.report.identical) void vscode.window.showInformationMessage(`Agent Vault: ${left.label} and ${right.label} hold the same agent state.`);
  else if (first && (openFirst ?? setting('diff.openFirstChange'))) await openChange(cur, first);
  return cur;
}

export async function diffSnapshotsCommand(s: Services, arg?: SnapshotNode | DiffArgs): Promise<CurrentDiff | undefined> {
  const args: DiffArgs = isNode(arg) ? {} : (arg ?? {});
  let left: DiffSide | undefined = args.left ? { path: args.left, label: snapshotLabel(args.left) } : undefined;
  let right: DiffSide | undefined = args.right ? { path: args.right, label: snapshotLabel(args.right) } : undefined;
  if (isNode(arg) && arg.type === 'snapshot') left = sideOf(arg.snapshot);
  if (!left) {
    const p = await pickSnapshot(s, 'Agent Vault: diff — first (older) snapshot');
    if (!p) return undefined;
    left = p;
  }
  if (!right) {
    const p = await pickSnapshot(s, `Agent Vault: diff ${left.label} with…`, { exclude: left.path });
    if (!p) return undefined;
    right = p;
  }
  return showDiff(s, left, right, args.agent ?? (isNode(arg) && arg.type === 'snapshot' ? diffAgentKey(arg as SnapshotNode) : undefined), args.openFirst);
}

export async function diffWithPreviousCommand(s: Services, node?: SnapshotNode): Promise<CurrentDiff | undefined> {
  if (!node || node.type !== 'snapshot') {
    void vscode.window.showInformationMessage('Agent Vault: run "Diff with Previous Snapshot" from a snapshot in the Snapshots view.');
    return undefined;
  }
  const older = node.group.snapshots[node.position + 1];
  if (!older) {
    void vscode.window.showInformationMessage(`Agent Vault: this is the oldest snapshot of ${node.group.name ?? node.group.id}.`);
    return undefined;
  }
  return showDiff(s, sideOf(older), sideOf(node.snapshot), diffAgentKey(node));
}

export interface LiveDiffArgs {
  snapshot?: string;
  agent?: string;
  connection?: string;
  openFirst?: boolean;
}

/** Drift: the agent as a snapshot holds it against the same agent in the database now. */
export async function diffWithLiveCommand(s: Services, arg?: SnapshotNode | DatabasesNode | LiveDiffArgs): Promise<CurrentDiff | undefined> {
  let snapshot: DiffSide | undefined;
  let agent: string | undefined;
  let connection: string | undefined;
  if (isNode(arg) && arg.type === 'snapshot') {
    snapshot = sideOf((arg as SnapshotNode).snapshot);
    agent = (arg as SnapshotNode).agent.id;
  } else if (isNode(arg) && arg.type === 'dbAgent') {
    agent = (arg as Extract<DatabasesNode, { type: 'dbAgent' }>).agent.id;
    connection = (arg as Extract<DatabasesNode, { type: 'dbAgent' }>).connection.name;
  } else if (!isNode(arg) && arg) {
    snapshot = arg.snapshot ? { path: arg.snapshot, label: snapshotLabel(arg.snapshot) } : undefined;
    agent = arg.agent;
    connection = arg.connection;
  }
  if (!snapshot) {
    if (agent) {
      const latest = (await listVaultSnapshotsAny(s.vaultDir(), s.documents.sources.keys)).find((x) => x.agents.some((a) => a.id === agent));
      if (!latest) throw new AgentVaultError('no-snapshot', `the vault has no snapshot of agent ${agent}`, { hint: 'export it first ("Agent Vault: Export Agents…")' });
      snapshot = sideOf(latest);
    } else {
      const p = await pickSnapshot(s, 'Agent Vault: diff a snapshot with the live agent');
      if (!p) return undefined;
      snapshot = p;
    }
  }
  const name = await pickConnection(s, connection);
  if (!name) return undefined;
  if (!agent) {
    const desc = await describeSnapshotAny(snapshot.path, { decrypt: await s.documents.sources.keys() });
    if (desc.agents.length === 1) agent = desc.agents[0].id;
    else {
      const pick = await vscode.window.showQuickPick(
        desc.agents.map((a) => ({ label: a.name ?? a.id, description: a.id, id: a.id })),
        { title: 'Agent Vault: which agent?' },
      );
      if (!pick) return undefined;
      agent = pick.id;
    }
  }
  // An agent packed from an .af file has a file-local id (agent-0): find it by name in the database.
  const agentId = agent;
  let agentName: string | null = null;
  if (isFileLocalId(agentId)) {
    agentName = (await describeSnapshotAny(snapshot.path, { decrypt: await s.documents.sources.keys() })).agents.find((a) => a.id === agentId)?.name ?? null;
    if (!agentName) throw new AgentVaultError('no-agent', `the agent ${agentId} of ${snapshot.label} has no name to find it by in "${name}"`);
  }
  const select = agentName ? { names: [agentName] } : { ids: [agentId] };
  // the live side is a temp snapshot (diff/live.ts), kept while its documents may be open: removed on deactivation
  const live = await withProgress(`Reading ${agentName ?? agentId} from "${name}"`, (p) => s.connections.with(name, (db) => exportLiveSnapshot(db, { select, onProgress: () => p.check() })));
  s.tempFiles.add(live.dir);
  return showDiff(s, snapshot, { path: live.path, label: `live ${name}` }, agentName ?? agentId, (arg as LiveDiffArgs | undefined)?.openFirst);
}

// ---------------------------------------------------------------------------------------------
// snapshot context menu: reveal, delete

export async function revealFileCommand(_s: Services, node?: SnapshotNode): Promise<void> {
  if (!node || node.type !== 'snapshot') return;
  // a store vault's snapshot has no file of its own: reveal the vault folder
  const ref = parseStoreSnapshotRef(node.snapshot.path);
  if (ref && isS3Location(ref.vault)) return;
  const uri = vscode.Uri.file(ref ? ref.vault : node.snapshot.path);
  const inWorkspace = vscode.workspace.getWorkspaceFolder(uri) !== undefined;
  await vscode.commands.executeCommand(inWorkspace ? 'revealInExplorer' : 'revealFileInOS', uri);
}

export async function deleteSnapshotCommand(s: Services, arg?: SnapshotNode | DeleteArgs): Promise<boolean> {
  const file = isNode(arg) && arg.type === 'snapshot' ? (arg as SnapshotNode).snapshot.path : (arg as DeleteArgs | undefined)?.snapshot;
  if (!file) {
    void vscode.window.showInformationMessage('Agent Vault: run "Delete Snapshot" from a snapshot in the Snapshots view.');
    return false;
  }
  if (isStoreSnapshotRef(file))
    throw new AgentVaultError('usage', `${file} is a snapshot of a store vault: it has no file of its own to delete`, {
      kind: 'usage',
      hint: 'run "Agent Vault: Prune Snapshots…" (it forgets snapshots by the retention policy and sweeps the chunks only they used)',
    });
  requireLocalVault(s.vaultDir(), 'Delete Snapshot');
  const snap = (await listVaultSnapshotsAny(s.vaultDir(), s.documents.sources.keys)).find((x) => x.path === path.resolve(file));
  const label = snap ? (snap.listed ? snap.id : path.basename(snap.path)) : path.basename(file);
  if (!(arg as DeleteArgs | undefined)?.confirmed) {
    const del = 'Delete';
    const agents = snap ? snap.agents.map((a) => a.name ?? a.id).join(', ') : '';
    const pick = await vscode.window.showWarningMessage(
      `Delete snapshot ${label}?`,
      { modal: true, detail: `${agents ? `It holds ${agents}. ` : ''}The archive file is deleted; this cannot be undone.` },
      del,
    );
    if (pick !== del) return false;
  }
  await removeVaultSnapshot(s.vaultDir(), file, { command: 'vscode delete' });
  s.documents.refresh(path.resolve(file));
  s.snapshots.refresh();
  s.log.info(`deleted snapshot ${label} (${file})`);
  return true;
}

// ---------------------------------------------------------------------------------------------
// connections

export async function addConnectionCommand(s: Services): Promise<string | undefined> {
  const form = await connectionForm(
    undefined,
    s.connections.list().map((c) => c.name),
  );
  if (!form) return undefined;
  await s.connections.upsert(form.config, form.password);
  s.databases.refresh();
  return form.config.name;
}

export async function editConnectionCommand(s: Services, node?: DatabasesNode): Promise<string | undefined> {
  const name = node?.type === 'connection' ? node.connection.name : await pickConnection(s);
  if (!name) return undefined;
  const existing = s.connections.get(name);
  const form = await connectionForm(
    existing,
    s.connections.list().map((c) => c.name),
  );
  if (!form) return undefined;
  await s.connections.upsert(form.config, form.password, name);
  s.databases.refresh();
  return form.config.name;
}

export async function removeConnectionCommand(s: Services, node?: DatabasesNode | string, opts: { confirmed?: boolean } = {}): Promise<boolean> {
  const name = typeof node === 'string' ? node : node?.type === 'connection' ? node.connection.name : await pickConnection(s);
  if (!name) return false;
  if (!opts.confirmed) {
    const remove = 'Remove';
    const pick = await vscode.window.showWarningMessage(
      `Remove the connection "${name}"?`,
      { modal: true, detail: 'Its settings and its stored password are removed. The database is not touched.' },
      remove,
    );
    if (pick !== remove) return false;
  }
  await s.connections.remove(name);
  s.databases.refresh();
  return true;
}

export async function testConnectionCommand(s: Services, node?: DatabasesNode | string): Promise<{ agents: number } | undefined> {
  const name = typeof node === 'string' ? node : node?.type === 'connection' ? node.connection.name : await pickConnection(s);
  if (!name) return undefined;
  const agents = await withProgress(`Testing "${name}"`, () => s.connections.with(name, (db) => listAgents(db)));
  void vscode.window.showInformationMessage(`Agent Vault: "${name}" works — ${agents.length} agent${agents.length === 1 ? '' : 's'}.`);
  s.databases.refresh();
  return { agents: agents.length };
}

export async function setPassphraseCommand(s: Services, preset?: string): Promise<boolean> {
  const value =
    typeof preset === 'string'
      ? preset
      : await vscode.window.showInputBox({
          title: 'Agent Vault: vault passphrase',
          prompt: "Passphrase for encrypted snapshots (kept in VS Code's secret storage; empty removes it)",
          password: true,
          ignoreFocusOut: true,
        });
  if (value === undefined) return false;
  if (value === '') await s.context.secrets.delete(PASSPHRASE_SECRET);
  else await s.context.secrets.store(PASSPHRASE_SECRET, value);
  // what was read (or refused) with the old passphrase is read again with the new one
  s.documents.refreshAll();
  s.snapshots.refresh();
  return true;
}

// ---------------------------------------------------------------------------------------------

export async function openChangeCommand(s: Services, node?: ChangeNode): Promise<void> {
  if (!s.changes.current || !node) return;
  await openChange(s.changes.current, node);
}

export async function cleanupTempFiles(files: Set<string>): Promise<void> {
  for (const f of files) await fsp.rm(f, { recursive: true, force: true }).catch(() => undefined);
  files.clear();
}

export { restoreFlow, type RestoreArgs };
