/**
 * Agent Vault for VS Code: a thin layer over the library (src/format, src/diff, src/letta,
 * src/vault, src/qdrant). Activated only by its commands, views and `.af` files.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { PASSPHRASE_SECRET } from '../vault/config';
import * as cmd from './commands';
import { Connections } from './connections';
import { DatabasesTree } from './databasesTree';
import { ChangesTree, OPEN_CHANGE_COMMAND } from './diffView';
import { ComponentDocuments, SCHEME, showDoc, SourceCache } from './documents';
import { AgentFileDiagnostics } from './language';
import { Log, progressTestHooks } from './log';
import { secretKeyProvider } from './keys';
import { OPEN_DOC_COMMAND, SnapshotsTree } from './snapshotsTree';
import { RemoteSnapshotCache } from '../vault/remote/catalog';
import { isS3Location } from '../vault/remote/location';
import { SHOW_STATUS_COMMAND, VaultStatusBar } from './statusBar';
import * as ops from './vaultOps';
import { affects, setting, statusPolicy, textSetting } from './config';

/** Command ids contributed in package.json (`contributes.commands`). */
export const COMMANDS = {
  exportAgents: 'agentVault.exportAgents',
  restoreAgents: 'agentVault.restoreAgents',
  validateAgentFile: 'agentVault.validateAgentFile',
  diffSnapshots: 'agentVault.diffSnapshots',
  diffWithLive: 'agentVault.diffWithLive',
  diffWithPrevious: 'agentVault.diffWithPrevious',
  openSnapshot: 'agentVault.openSnapshot',
  importAgentFile: 'agentVault.importAgentFile',
  revealSnapshot: 'agentVault.revealSnapshot',
  deleteSnapshot: 'agentVault.deleteSnapshot',
  addConnection: 'agentVault.addConnection',
  editConnection: 'agentVault.editConnection',
  removeConnection: 'agentVault.removeConnection',
  testConnection: 'agentVault.testConnection',
  refreshSnapshots: 'agentVault.refreshSnapshots',
  refreshDatabases: 'agentVault.refreshDatabases',
  setPassphrase: 'agentVault.setPassphrase',
  clearChanges: 'agentVault.clearChanges',
  showLog: 'agentVault.showLog',
  openDocument: OPEN_DOC_COMMAND,
  openChange: OPEN_CHANGE_COMMAND,
  restoreTo: 'agentVault.restoreTo',
  backupNow: 'agentVault.backupNow',
  drillSnapshot: 'agentVault.drillSnapshot',
  verifyVault: 'agentVault.verifyVault',
  pruneVault: 'agentVault.pruneVault',
  rebuildIndex: 'agentVault.rebuildIndex',
  showStatus: SHOW_STATUS_COMMAND,
  openSettings: 'agentVault.openSettings',
} as const;

/** What activate() returns: used by the extension's integration tests (and other extensions). */
export interface AgentVaultApi {
  vaultDir(): string;
  services: cmd.Services;
  /** For the extension's own tests: press Cancel on a progress notification (./log.ts). */
  testing: { progress: typeof progressTestHooks };
}

function resolveVaultDir(context: vscode.ExtensionContext): string {
  const configured = textSetting('vaultPath');
  if (isS3Location(configured)) return configured; // a vault in object storage (credentials: the AWS environment/profile chain)
  const expanded = configured.startsWith('~/') ? path.join(os.homedir(), configured.slice(2)) : configured;
  if (path.isAbsolute(expanded)) return expanded;
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (folder && folder.uri.scheme === 'file') return path.join(folder.uri.fsPath, expanded);
  return path.join(context.globalStorageUri.fsPath, expanded);
}

/** Snapshots of an s3:// vault are downloaded into the extension's storage when opened, up to `agentVault.remoteCacheMB`. */
function newRemoteSnapshotCache(context: vscode.ExtensionContext): RemoteSnapshotCache {
  return new RemoteSnapshotCache(path.join(context.globalStorageUri.fsPath, 's3-cache'), { maxBytes: () => Math.max(0, setting('remoteCacheMB')) * 1024 * 1024 });
}

let services: cmd.Services | undefined;

export function activate(context: vscode.ExtensionContext): AgentVaultApi {
  const log = new Log();
  const vaultDir = () => resolveVaultDir(context);
  const sources = new SourceCache(secretKeyProvider(context.secrets));
  const documents = new ComponentDocuments(sources);
  const connections = new Connections(context.secrets);
  const remoteCache = newRemoteSnapshotCache(context);
  sources.prepare = (src) => remoteCache.ensure(src);
  const snapshots = new SnapshotsTree(vaultDir, statusPolicy, sources, log, remoteCache);
  const databases = new DatabasesTree(connections, log);
  const changes = new ChangesTree();
  const snapshotsView = vscode.window.createTreeView('agentVault.snapshots', { treeDataProvider: snapshots, showCollapseAll: true });
  const databasesView = vscode.window.createTreeView('agentVault.databases', { treeDataProvider: databases, showCollapseAll: true });
  const changesView = vscode.window.createTreeView('agentVault.changes', { treeDataProvider: changes });
  const diagnostics = new AgentFileDiagnostics(() => setting('validation.enabled'));
  const statusBar = new VaultStatusBar(vaultDir, statusPolicy, log, remoteCache, sources.keys);
  const s: cmd.Services = { context, log, connections, snapshots, snapshotsView, databases, changes, changesView, documents, diagnostics, vaultDir, tempFiles: new Set(), statusBar };
  services = s;
  log.info(`activated; vault ${vaultDir()}`);

  // Refresh the Snapshots view when the vault changes on disk (a CLI backup, a prune, a copy).
  let watcher: vscode.FileSystemWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  const watch = () => {
    watcher?.dispose();
    watcher = undefined;
    if (isS3Location(vaultDir())) return; // a bucket is not watched: Refresh re-reads its index
    watcher = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(vaultDir()), '{vault.json,*.avsnap,*.zip,drills/*.json}'));
    const poke = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        snapshots.refresh();
        void statusBar.refresh();
      }, 300);
    };
    watcher.onDidCreate(poke);
    watcher.onDidChange(poke);
    watcher.onDidDelete(poke);
  };
  watch();

  const reg = <A extends unknown[], R>(id: string, title: string, fn: (...args: A) => Promise<R>) => context.subscriptions.push(vscode.commands.registerCommand(id, cmd.command(s, title, fn)));

  reg(COMMANDS.exportAgents, 'Export', (arg?: Parameters<typeof cmd.exportCommand>[1]) => cmd.exportCommand(s, arg));
  reg(COMMANDS.restoreAgents, 'Restore', (arg?: Parameters<typeof cmd.restoreFlow>[1]) => cmd.restoreFlow(s, arg));
  reg(COMMANDS.validateAgentFile, 'Validation', (arg?: vscode.Uri | string) => cmd.validateCommand(s, arg));
  reg(COMMANDS.diffSnapshots, 'Diff', (arg?: Parameters<typeof cmd.diffSnapshotsCommand>[1]) => cmd.diffSnapshotsCommand(s, arg));
  reg(COMMANDS.diffWithLive, 'Diff with live agent', (arg?: Parameters<typeof cmd.diffWithLiveCommand>[1]) => cmd.diffWithLiveCommand(s, arg));
  reg(COMMANDS.diffWithPrevious, 'Diff with previous snapshot', (arg?: Parameters<typeof cmd.diffWithPreviousCommand>[1]) => cmd.diffWithPreviousCommand(s, arg));
  reg(COMMANDS.openSnapshot, 'Open snapshot', (arg?: vscode.Uri | string) => cmd.openSnapshotCommand(s, arg));
  reg(COMMANDS.importAgentFile, 'Import', (arg?: vscode.Uri | string) => cmd.importCommand(s, arg));
  reg(COMMANDS.revealSnapshot, 'Reveal', (arg?: Parameters<typeof cmd.revealFileCommand>[1]) => cmd.revealFileCommand(s, arg));
  reg(COMMANDS.deleteSnapshot, 'Delete snapshot', (arg?: Parameters<typeof cmd.deleteSnapshotCommand>[1]) => cmd.deleteSnapshotCommand(s, arg));
  reg(COMMANDS.addConnection, 'Add connection', () => cmd.addConnectionCommand(s));
  reg(COMMANDS.editConnection, 'Edit connection', (arg?: Parameters<typeof cmd.editConnectionCommand>[1]) => cmd.editConnectionCommand(s, arg));
  reg(COMMANDS.removeConnection, 'Remove connection', (arg?: Parameters<typeof cmd.removeConnectionCommand>[1], opts?: { confirmed?: boolean }) => cmd.removeConnectionCommand(s, arg, opts));
  reg(COMMANDS.testConnection, 'Connection test', (arg?: Parameters<typeof cmd.testConnectionCommand>[1]) => cmd.testConnectionCommand(s, arg));
  reg(COMMANDS.setPassphrase, 'Set passphrase', (preset?: string) => cmd.setPassphraseCommand(s, preset));
  reg(COMMANDS.restoreTo, 'Restore', (arg?: Parameters<typeof cmd.restoreFlow>[1], extra?: Parameters<typeof cmd.restoreFlow>[2]) => cmd.restoreFlow(s, arg, extra));
  reg(COMMANDS.backupNow, 'Backup', (arg?: ops.BackupNowArgs) => ops.backupNowCommand(s, arg));
  reg(COMMANDS.drillSnapshot, 'Drill', (arg?: Parameters<typeof ops.drillCommand>[1]) => ops.drillCommand(s, arg));
  reg(COMMANDS.verifyVault, 'Verify', (arg?: ops.VerifyArgs) => ops.verifyCommand(s, arg));
  reg(COMMANDS.pruneVault, 'Prune', (arg?: ops.PruneArgs) => ops.pruneCommand(s, arg));
  reg(COMMANDS.rebuildIndex, 'Rebuild index', () => ops.rebuildIndexCommand(s));
  reg(COMMANDS.showStatus, 'Status', () => ops.showStatusCommand(s));
  reg(COMMANDS.openSettings, 'Open settings', async () => {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'agentVault');
  });
  reg(COMMANDS.refreshSnapshots, 'Refresh', async () => {
    snapshots.refresh();
    await statusBar.refresh();
  });
  reg(COMMANDS.refreshDatabases, 'Refresh', async () => databases.refresh());
  reg(COMMANDS.clearChanges, 'Close changes', async () => changes.set(undefined));
  reg(COMMANDS.showLog, 'Show log', async () => log.show());
  reg(COMMANDS.openDocument, 'Open', (uri: vscode.Uri) => showDoc(uri));
  reg(COMMANDS.openChange, 'Open diff', (node?: Parameters<typeof cmd.openChangeCommand>[1]) => cmd.openChangeCommand(s, node));

  context.subscriptions.push(
    log,
    sources,
    documents,
    connections,
    snapshots,
    databases,
    changes,
    snapshotsView,
    databasesView,
    changesView,
    diagnostics,
    statusBar,
    // a new passphrase: what was read (or refused) with the old one is read again
    context.secrets.onDidChange((e) => {
      if (e.key === PASSPHRASE_SECRET) {
        documents.refreshAll();
        snapshots.refresh();
      }
    }),
    vscode.workspace.registerTextDocumentContentProvider(SCHEME, documents),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (affects(e, 'vaultPath')) {
        watch();
        snapshots.refresh();
      } else if (affects(e, 'status')) snapshots.refresh();
      if (affects(e, 'vaultPath') || affects(e, 'status')) void statusBar.refresh();
    }),
    { dispose: () => watcher?.dispose() },
    { dispose: () => timer && clearTimeout(timer) },
  );
  void vscode.commands.executeCommand('setContext', 'agentVault.hasDiff', false);

  return { vaultDir, services: s, testing: { progress: progressTestHooks } };
}

export async function deactivate(): Promise<void> {
  if (services) await cmd.cleanupTempFiles(services.tempFiles);
  services = undefined;
}
