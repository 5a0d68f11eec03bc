/**
 * The "Snapshots" view: the vault folder's snapshots grouped by agent, newest first. An agent
 * shows its backup status (stale backup, failed or overdue drill: a warning icon and the reasons);
 * a snapshot expands into the agent's system prompt, memory blocks, tools, tool rules, models,
 * messages (N), passages (N) and the snapshot's Qdrant collections. Components open as read-only
 * documents (./documents.ts).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { errorMessage } from '../core/errors';
import { formatBytes } from '../core/bytes';
import type { ComponentInfo } from '../diff/components';
import { promises as fsp } from 'node:fs';
import { readManifest, type Manifest } from '../format/archive';
import { listCollectionsInArchive, type ArchivedCollectionSummary } from '../qdrant/archive';
import { agentIn, groupSnapshotsByAgent, listVaultSnapshots, type CatalogAgent, type CatalogAgentGroup, type CatalogSnapshot } from '../vault/catalog';
import type { StatusPolicy } from '../vault/config';
import type { AgentStatus } from '../vault/status';
import { vaultStatusOf, type RemoteSnapshotCache } from '../vault/remote/catalog';
import { isS3Location } from '../vault/remote/location';
import { isStoreLocation } from '../vault/store-vault';
import { isStoreSnapshotRef, listStoreVaultSnapshots, readSnapshotManifestAny } from '../vault/store-catalog';
import type { DecryptOptions } from '../format/crypto';
import { isFileLocalId } from '../diff/state';
import { docUri, snapshotLabel, type DocTarget, type SourceCache } from './documents';
import type { Log } from './log';

export const OPEN_DOC_COMMAND = 'agentVault.openDocument';

export type SnapshotsNode = AgentGroupNode | SnapshotNode | FolderNode | ComponentNode | MessageNode;

/** One agent's snapshots (grouped by the vault catalog) with its backup status. */
export interface AgentGroupNode extends CatalogAgentGroup {
  type: 'agent';
  status?: AgentStatus;
}

export interface SnapshotNode {
  type: 'snapshot';
  snapshot: CatalogSnapshot;
  agent: CatalogAgent;
  /** newer snapshots of the same agent come first; this is the index in that list */
  position: number;
  group: AgentGroupNode;
}

export interface FolderNode {
  type: 'folder';
  parent: SnapshotNode;
  folder: 'blocks' | 'tools' | 'models' | 'collections';
  label: string;
  children: SnapshotsNode[];
}

export interface ComponentNode {
  type: 'component';
  parent: SnapshotNode;
  label: string;
  description?: string;
  icon: string;
  target: DocTarget;
  fileName?: string;
}

export interface MessageNode {
  type: 'message';
  label: string;
  description?: string;
  tooltip?: string;
  icon: string;
}

const when = (iso: string): string => {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
};

/** A snapshot's label: its local time ("2026-12-03 23:49:27"); the description says the rest. */
export function snapshotTime(iso: string): string {
  return when(iso);
}

/** "just now", "12 min ago", "5 h ago", "3 days ago". */
export function relativeAge(iso: string, now = Date.now()): string {
  const ms = now - Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  const min = Math.round(ms / 60000);
  if (min < 1) return 'just now';
  if (min < 60) return `${min} min ago`;
  const h = Math.round(min / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} days ago`;
}

/** The agent's status in words, by the rules of `agent-vault status` (src/vault/status.ts). */
export function statusWords(st: AgentStatus | undefined): string[] {
  if (!st) return [];
  const out: string[] = [];
  if (st.stale) out.push('backup stale');
  if (st.drill_failed) out.push('drill failed');
  else if (!st.last_drill) out.push('never drilled');
  else if (st.drill_overdue) out.push('drill overdue');
  return out;
}

/**
 * Manifests by path; an entry is read again when the file's size or mtime changed. A snapshot of a
 * store vault (`<vault>#<id>`, src/vault/store-catalog.ts) is read from the store once: it never
 * changes.
 */
export class ManifestCache {
  private readonly cache = new Map<string, { stamp: string; manifest: Promise<Manifest> }>();
  reads = 0;

  constructor(private readonly keys: () => Promise<DecryptOptions | undefined> = async () => undefined) {}

  async get(file: string): Promise<Manifest> {
    const store = isStoreSnapshotRef(file);
    const stamp = store ? 'store' : await fsp.stat(file).then((st) => `${st.size}:${st.mtimeMs}`);
    const hit = this.cache.get(file);
    if (hit && hit.stamp === stamp) return hit.manifest;
    this.reads++;
    const manifest = store ? this.keys().then((decrypt) => readSnapshotManifestAny(file, { decrypt })) : readManifest(file);
    this.cache.set(file, { stamp, manifest });
    manifest.catch(() => this.cache.delete(file));
    return manifest;
  }
}

export class SnapshotsTree implements vscode.TreeDataProvider<SnapshotsNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<SnapshotsNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private groups: Promise<AgentGroupNode[]> | undefined;
  /** Archives opened from elsewhere ("Open Snapshot"), shown with the vault's for this session. */
  private readonly opened = new Set<string>();
  private readonly children = new WeakMap<SnapshotNode, Promise<SnapshotsNode[]>>();
  /** Manifests, read lazily (tooltips, collections) and cached by file, size and mtime. */
  readonly manifests: ManifestCache;
  lastError: string | undefined;

  constructor(
    private readonly vaultDir: () => string,
    private readonly policy: () => StatusPolicy,
    private readonly sources: SourceCache,
    private readonly log: Log,
    /** Snapshots of an s3:// vault: listed from the bucket's index, downloaded when opened (src/vault/remote/catalog.ts). */
    readonly remote?: RemoteSnapshotCache,
  ) {
    this.manifests = new ManifestCache(() => this.sources.keys());
  }

  refresh(): void {
    this.groups = undefined;
    this.changed.fire(undefined);
  }

  addOpened(file: string): void {
    this.opened.add(path.resolve(file));
    this.refresh();
  }

  /** The agent groups, loading the catalog once per refresh. */
  agentGroups(): Promise<AgentGroupNode[]> {
    this.groups ??= this.load();
    return this.groups;
  }

  private async load(): Promise<AgentGroupNode[]> {
    const dir = this.vaultDir();
    this.lastError = undefined;
    let snaps: CatalogSnapshot[] = [];
    try {
      // a store vault (folder or s3://) lists the snapshot files of its store (src/vault/store-catalog.ts)
      if (await isStoreLocation(dir)) snaps = await listStoreVaultSnapshots(dir, await this.sources.keys());
      else snaps = isS3Location(dir) && this.remote ? await this.remote.list(dir) : await listVaultSnapshots(dir);
    } catch (e) {
      this.lastError = errorMessage(e);
      this.log.warn(`reading the vault ${dir}: ${this.lastError}`);
    }
    for (const file of this.opened) {
      if (snaps.some((s) => s.path === file)) continue;
      try {
        const m = await this.manifests.get(file);
        snaps.push({
          id: path.basename(file),
          path: file,
          created_at: m.created_at,
          bytes: 0,
          encrypted: m.encryption !== undefined && m.encryption !== null,
          agents: m.agents.map((a) => ({ id: a.id, name: a.name, counts: a.counts })),
          collections: [],
          listed: false,
        });
      } catch (e) {
        this.log.warn(`reading ${file}: ${errorMessage(e)}`);
      }
    }
    let statuses = new Map<string, AgentStatus>();
    if (snaps.some((s) => s.listed)) {
      try {
        const st = await vaultStatusOf(dir, this.policy(), this.remote, () => this.sources.keys());
        statuses = new Map(st.agents.map((a) => [a.id, a]));
      } catch (e) {
        this.log.warn(`backup status of ${dir}: ${errorMessage(e)}`);
      }
    }
    return groupSnapshotsByAgent(snaps).map((g) => ({ type: 'agent', ...g, status: isFileLocalId(g.id) ? undefined : statuses.get(g.id) }));
  }

  /** The snapshot nodes of an agent, newest first. */
  snapshotNodes(g: AgentGroupNode): SnapshotNode[] {
    return g.snapshots.map((s, i) => ({ type: 'snapshot', snapshot: s, agent: agentIn(s, g), position: i, group: g }));
  }

  async getChildren(node?: SnapshotsNode): Promise<SnapshotsNode[]> {
    if (!node) {
      const groups = await this.agentGroups();
      if (groups.length === 0) {
        // no snapshots: an empty list, so VS Code shows the view's welcome content (package.json viewsWelcome)
        if (!this.lastError) return [];
        return [{ type: 'message', label: 'The vault cannot be read', description: this.lastError, tooltip: this.lastError, icon: 'error' }];
      }
      return groups;
    }
    switch (node.type) {
      case 'agent':
        return this.snapshotNodes(node);
      case 'snapshot': {
        let c = this.children.get(node);
        if (!c) {
          c = this.snapshotChildren(node);
          this.children.set(node, c);
        }
        return c;
      }
      case 'folder':
        return node.children;
      default:
        return [];
    }
  }

  private async snapshotChildren(n: SnapshotNode): Promise<SnapshotsNode[]> {
    const s = n.snapshot;
    if (s.error) return [{ type: 'message', label: 'Cannot read this archive', description: s.error, tooltip: s.error, icon: 'error' }];
    const src = s.path;
    if (this.remote?.owns(src)) {
      // a snapshot in object storage: downloaded into the cache (checked against the index's SHA-256) when first opened
      try {
        await this.remote.ensure(src);
      } catch (e) {
        const msg = errorMessage(e);
        this.log.warn(`downloading snapshot ${s.id}: ${msg}`);
        return [{ type: 'message', label: 'Cannot download this snapshot', description: msg, tooltip: msg, icon: 'error' }];
      }
    }
    const comp = (c: ComponentInfo, icon: string): ComponentNode => ({
      type: 'component',
      parent: n,
      label: c.title,
      description: c.detail,
      icon,
      target: { src, agent: n.agent.id, kind: c.ref.kind, key: c.ref.key },
      fileName: c.fileName,
    });
    let components: ComponentInfo[];
    try {
      components = (await this.sources.components(src, n.agent.id)).components;
    } catch (e) {
      const msg = errorMessage(e);
      this.log.warn(`reading ${s.path} (agent ${n.agent.id}): ${msg}`);
      return [{ type: 'message', label: s.encrypted ? 'Encrypted snapshot' : 'Cannot read this snapshot', description: msg, tooltip: msg, icon: s.encrypted ? 'lock' : 'error' }];
    }
    const out: SnapshotsNode[] = [];
    const byKind = (k: string) => components.filter((c) => c.ref.kind === k);
    out.push(...byKind('system').map((c) => comp(c, 'comment-discussion')));
    const blocks = byKind('block');
    out.push({ type: 'folder', parent: n, folder: 'blocks', label: `Memory blocks (${blocks.length})`, children: blocks.map((c) => comp(c, 'note')) });
    const tools = byKind('tool');
    out.push({ type: 'folder', parent: n, folder: 'tools', label: `Tools (${tools.length})`, children: tools.map((c) => comp(c, 'tools')) });
    out.push(...byKind('rules').map((c) => comp(c, 'type-hierarchy')));
    out.push({ type: 'folder', parent: n, folder: 'models', label: 'Models', children: [...byKind('llm'), ...byKind('embedding')].map((c) => comp(c, 'symbol-misc')) });
    const counts = n.agent.counts;
    out.push({
      type: 'component',
      parent: n,
      label: `Messages (${counts?.messages ?? '?'})`,
      description: counts ? `${counts.in_context_messages} in context` : undefined,
      icon: 'comment',
      target: { src, agent: n.agent.id, kind: 'messages' },
    });
    out.push({ type: 'component', parent: n, label: `Passages (${counts?.passages ?? '?'})`, icon: 'database', target: { src, agent: n.agent.id, kind: 'passages' } });
    let collections: ArchivedCollectionSummary[] = [];
    try {
      collections = listCollectionsInArchive(await this.manifests.get(src));
    } catch (e) {
      this.log.warn(`Qdrant collections of ${src}: ${errorMessage(e)}`);
    }
    if (collections.length) {
      out.push({
        type: 'folder',
        parent: n,
        folder: 'collections',
        label: `Qdrant collections (${collections.length})`,
        children: collections.map((c) => ({
          type: 'component',
          parent: n,
          label: c.name,
          description: `${c.points_count} points${c.vectors.length ? ` · ${c.vectors.join(', ')}` : ''}${c.has_points_export ? ' · points export' : ''}`,
          icon: 'layers',
          target: { src, agent: '', kind: 'collection', key: c.name },
        })),
      });
    }
    return out;
  }

  getTreeItem(node: SnapshotsNode): vscode.TreeItem {
    switch (node.type) {
      case 'agent': {
        const item = new vscode.TreeItem(node.name ?? node.id, vscode.TreeItemCollapsibleState.Collapsed);
        item.id = `agent:${node.key}`;
        item.contextValue = 'vaultAgent';
        const st = node.status;
        const latest = node.snapshots[0];
        item.description = [`${node.snapshots.length} snapshot${node.snapshots.length === 1 ? '' : 's'}`, ...statusWords(st)].join(' · ');
        const tip = new vscode.MarkdownString();
        tip.appendMarkdown(`**${node.name ?? node.id}**  \n\`${node.id}\`  \n`);
        if (latest) tip.appendMarkdown(`latest snapshot: ${when(latest.created_at)}  \n`);
        if (st) {
          tip.appendMarkdown(`backup status: **${st.level}**  \n`);
          for (const w of st.warnings) tip.appendMarkdown(`- ${w}\n`);
        }
        item.tooltip = tip;
        if (st && st.level !== 'ok') {
          item.iconPath = new vscode.ThemeIcon(st.level === 'error' ? 'error' : 'warning', new vscode.ThemeColor(st.level === 'error' ? 'list.errorForeground' : 'list.warningForeground'));
        } else item.iconPath = new vscode.ThemeIcon('hubot');
        return item;
      }
      case 'snapshot': {
        const s = node.snapshot;
        const item = new vscode.TreeItem(snapshotTime(s.created_at), vscode.TreeItemCollapsibleState.Collapsed);
        item.id = `snapshot:${node.group.key}:${s.path}`;
        const inStore = isStoreSnapshotRef(s.path);
        // a store vault's snapshot has no file of its own: no Reveal or Delete (Prune removes it)
        item.contextValue = inStore ? 'snapshotInStore' : s.listed ? 'snapshot' : 'snapshotLoose';
        const n = s.agents.length;
        item.description = [`${n} agent${n === 1 ? '' : 's'}`, s.bytes ? formatBytes(s.bytes) : '', s.encrypted ? 'encrypted' : '', s.listed ? '' : 'not in index'].filter(Boolean).join(' · ');
        item.iconPath = new vscode.ThemeIcon(s.error ? 'error' : s.encrypted ? 'lock' : 'archive');
        if (!inStore) item.resourceUri = vscode.Uri.file(s.path);
        // the tooltip (the manifest's facts) is filled in by resolveTreeItem, when hovered
        return item;
      }
      case 'folder': {
        const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.Collapsed);
        item.id = `folder:${node.parent.group.key}:${node.parent.snapshot.path}:${node.folder}`;
        item.contextValue = `folder-${node.folder}`;
        item.iconPath = new vscode.ThemeIcon(node.folder === 'blocks' ? 'notebook' : node.folder === 'tools' ? 'tools' : node.folder === 'models' ? 'chip' : 'layers');
        return item;
      }
      case 'component': {
        const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
        const t = node.target;
        item.id = `component:${node.parent.group.key}:${node.parent.snapshot.path}:${t.kind}:${t.key ?? ''}`;
        item.description = node.description;
        item.contextValue = `component-${t.kind}`;
        item.iconPath = new vscode.ThemeIcon(node.icon);
        const s = node.parent.snapshot;
        const uri = docUri(t, { snapshot: snapshotLabel(s.path, s.listed ? s.id : undefined), agent: node.parent.agent.name ?? node.parent.agent.id, fileName: node.fileName });
        item.command = { command: OPEN_DOC_COMMAND, title: 'Open', arguments: [uri] };
        item.tooltip = `${node.label}${node.description ? ` — ${node.description}` : ''}`;
        return item;
      }
      case 'message': {
        const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
        item.description = node.description;
        item.tooltip = node.tooltip;
        item.iconPath = new vscode.ThemeIcon(node.icon);
        item.contextValue = 'message';
        return item;
      }
    }
  }

  /** The tooltip of a snapshot: the facts of its manifest, read when the item is hovered (and cached). */
  async resolveTreeItem(item: vscode.TreeItem, node: SnapshotsNode): Promise<vscode.TreeItem> {
    if (node.type === 'snapshot') item.tooltip = await this.snapshotTooltip(node);
    return item;
  }

  async snapshotTooltip(node: SnapshotNode): Promise<vscode.MarkdownString> {
    const s = node.snapshot;
    const tip = new vscode.MarkdownString();
    tip.appendMarkdown(`**${s.listed ? s.id : path.basename(s.path)}**  \n`);
    tip.appendMarkdown(`${when(s.created_at)} (${relativeAge(s.created_at)})  \n`);
    tip.appendMarkdown(`${s.encrypted ? '$(lock) encrypted' : 'not encrypted'} · ${formatBytes(s.bytes)}  \n`);
    let m: Manifest | undefined;
    if (this.remote?.owns(s.path) && !(await this.remote.isCached(s.path))) {
      tip.appendMarkdown(`in ${this.vaultDir()} (expand to download it)  \n`);
    } else {
      try {
        m = await this.manifests.get(s.path);
      } catch (e) {
        tip.appendMarkdown(`cannot read the manifest: ${errorMessage(e)}  \n`);
      }
    }
    const src = m?.source;
    if (src) {
      const db = [src.database, src.schema].filter(Boolean).join('.');
      tip.appendMarkdown(`source: ${src.kind}${db ? ` \`${db}\`` : ''}  \n`);
      tip.appendMarkdown(
        `Letta revision: ${src.letta_revision ?? 'unknown'}${src.postgres_version ? ` · PostgreSQL ${src.postgres_version}` : ''}${src.pgvector_version ? ` · pgvector ${src.pgvector_version}` : ''}  \n`,
      );
    }
    if (m) {
      const models = [...new Set(m.agents.map((a) => (a.embedding?.model ? `${a.embedding.model}${a.embedding.dim ? ` (${a.embedding.dim})` : ''}` : null)).filter((x): x is string => !!x))];
      tip.appendMarkdown(`embedding models: ${models.length ? models.join(', ') : 'none recorded'}  \n`);
    }
    const agents = m ? m.agents.map((a) => ({ name: a.name, id: a.id, counts: a.counts })) : s.agents;
    tip.appendMarkdown(`\n${agents.length} agent${agents.length === 1 ? '' : 's'}:\n`);
    for (const a of agents.slice(0, 20)) {
      const c = a.counts;
      tip.appendMarkdown(`- ${a.name ?? a.id}${c ? `: ${c.messages} messages, ${c.passages} passages, ${c.blocks} blocks, ${c.tools} tools` : ''}\n`);
    }
    if (agents.length > 20) tip.appendMarkdown(`- … and ${agents.length - 20} more\n`);
    if (s.collections.length) tip.appendMarkdown(`\nQdrant: ${s.collections.join(', ')}  \n`);
    if (s.error) tip.appendMarkdown(`\n$(error) ${s.error}  \n`);
    return tip;
  }

  getParent(node: SnapshotsNode): SnapshotsNode | undefined {
    switch (node.type) {
      case 'snapshot':
        return node.group;
      case 'folder':
        return node.parent;
      case 'component':
        return node.parent;
      default:
        return undefined;
    }
  }

  dispose(): void {
    this.changed.dispose();
  }
}
