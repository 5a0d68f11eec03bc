/**
 * The diff view: the semantic diff of two sides (src/diff) listed in the "Changes" view by
 * category, each change opening `vscode.diff` between the two sides' component documents
 * (system prompt, a block, a tool's source, the rules as text, a config). An embedding-model
 * change is marked as needing re-embedding.
 */
import * as vscode from 'vscode';
import { changeComponents, componentFileName, type ChangeItem } from '../diff/components';
import { diffSnapshotsAny } from '../vault/store-catalog';
import type { DecryptOptions } from '../format/crypto';
import { CATEGORY_TITLES } from '../diff/types';
import { CATEGORIES, type AgentDiff, type Category, type DiffReport } from '../diff/types';
import { docUri, type DocTarget } from './documents';

export const OPEN_CHANGE_COMMAND = 'agentVault.openChange';
export const HAS_DIFF_CONTEXT = 'agentVault.hasDiff';

/** One side of a diff: a file (archive or agent file) and how to call it. */
export interface DiffSide {
  path: string;
  /** e.g. "2026-03-01T120000Z-ab12cd", "live: letta (agent-…)" */
  label: string;
}

export interface CurrentDiff {
  report: DiffReport;
  left: DiffSide;
  right: DiffSide;
}

export type ChangesNode = HeaderNode | AgentNode | CategoryNode | ChangeNode;

interface HeaderNode {
  type: 'header';
  text: string;
  description: string;
}
interface AgentNode {
  type: 'agent';
  diff: AgentDiff;
}
interface CategoryNode {
  type: 'category';
  diff: AgentDiff;
  category: Category;
  items: ChangeItem[];
}
export interface ChangeNode {
  type: 'change';
  diff: AgentDiff;
  item: ChangeItem;
}

/** Categories in the order a reviewer wants them (agent settings after the content). */
const ORDER: Category[] = [...CATEGORIES.filter((c) => c !== 'agent'), 'agent'];

export function diffUris(cur: CurrentDiff, d: AgentDiff, item: ChangeItem): { left: vscode.Uri; right: vscode.Uri; title: string } {
  const fileName = componentFileName(item.ref);
  const side = (s: DiffSide, agent: { id: string } | null): vscode.Uri => {
    const t: DocTarget = { src: s.path, agent: agent?.id ?? '', kind: item.ref.kind, key: item.ref.key };
    return docUri(t, { snapshot: s.label, agent: d.key, fileName });
  };
  const left = side(cur.left, d.a);
  const right = side(cur.right, d.b);
  return { left, right, title: `${d.key}: ${item.label} (${cur.left.label} ↔ ${cur.right.label})` };
}

export class ChangesTree implements vscode.TreeDataProvider<ChangesNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<ChangesNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  current: CurrentDiff | undefined;

  set(cur: CurrentDiff | undefined): void {
    this.current = cur;
    void vscode.commands.executeCommand('setContext', HAS_DIFF_CONTEXT, !!cur);
    this.changed.fire(undefined);
  }

  /** Every change of the current diff, in display order. */
  changes(): ChangeNode[] {
    const cur = this.current;
    if (!cur) return [];
    const out: ChangeNode[] = [];
    for (const d of cur.report.agents) {
      const per = changeComponents(d);
      for (const c of ORDER) for (const item of per[c]) out.push({ type: 'change', diff: d, item });
    }
    return out;
  }

  private categories(d: AgentDiff): CategoryNode[] {
    const per = changeComponents(d);
    return ORDER.filter((c) => per[c].length > 0 || d.counts[c] > 0).map((c) => ({ type: 'category', diff: d, category: c, items: per[c] }));
  }

  getChildren(node?: ChangesNode): ChangesNode[] {
    const cur = this.current;
    if (!cur) return [];
    if (!node) {
      const r = cur.report;
      const header: HeaderNode = {
        type: 'header',
        text: `${cur.left.label} ↔ ${cur.right.label}`,
        description: r.identical ? 'identical' : `${r.summary.total_changes} change${r.summary.total_changes === 1 ? '' : 's'}`,
      };
      const agents = r.agents.filter((d) => d.status !== 'unchanged');
      if (r.agents.length === 1 && agents.length === 1 && agents[0].status === 'changed') return [header, ...this.categories(agents[0])];
      return [header, ...agents.map((d): AgentNode => ({ type: 'agent', diff: d }))];
    }
    if (node.type === 'agent') return this.categories(node.diff);
    if (node.type === 'category') return node.items.map((item) => ({ type: 'change', diff: node.diff, item }));
    return [];
  }

  getTreeItem(node: ChangesNode): vscode.TreeItem {
    switch (node.type) {
      case 'header': {
        const item = new vscode.TreeItem(node.text, vscode.TreeItemCollapsibleState.None);
        item.description = node.description;
        item.iconPath = new vscode.ThemeIcon('git-compare');
        item.contextValue = 'diffHeader';
        return item;
      }
      case 'agent': {
        const d = node.diff;
        const item = new vscode.TreeItem(d.key, d.status === 'changed' ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None);
        const n = CATEGORIES.reduce((sum, c) => sum + d.counts[c], 0);
        item.description = d.status === 'changed' ? `${n} change${n === 1 ? '' : 's'}` : d.status;
        item.iconPath = new vscode.ThemeIcon(d.status === 'added' ? 'diff-added' : d.status === 'removed' ? 'diff-removed' : 'hubot');
        return item;
      }
      case 'category': {
        const item = new vscode.TreeItem(CATEGORY_TITLES[node.category], node.items.length ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None);
        item.id = `category:${node.diff.key}:${node.category}`;
        const reembed = node.category === 'embedding_config' && node.diff.embedding_config.reembedding_required;
        item.description = `${node.diff.counts[node.category]}${reembed ? ' · needs re-embedding' : ''}`;
        item.iconPath = new vscode.ThemeIcon(reembed ? 'warning' : 'symbol-folder', reembed ? new vscode.ThemeColor('list.warningForeground') : undefined);
        item.contextValue = `category-${node.category}`;
        if (reembed) item.tooltip = 'The embedding model changed: the stored passage vectors do not match the new model and must be re-embedded.';
        return item;
      }
      case 'change': {
        const it = node.item;
        const item = new vscode.TreeItem(it.label, vscode.TreeItemCollapsibleState.None);
        item.id = `change:${node.diff.key}:${it.category}:${it.status}:${it.label}`;
        item.description = `${it.reembedding ? 'needs re-embedding · ' : ''}${it.detail}`;
        item.iconPath = it.reembedding
          ? new vscode.ThemeIcon('warning', new vscode.ThemeColor('list.warningForeground'))
          : new vscode.ThemeIcon(it.status === 'added' ? 'diff-added' : it.status === 'removed' ? 'diff-removed' : 'diff-modified');
        item.tooltip = `${it.status} ${it.label}${it.detail ? `: ${it.detail}` : ''}${it.reembedding ? '\nThe embedding model changed: stored vectors must be re-embedded.' : ''}`;
        item.contextValue = 'change';
        item.command = { command: OPEN_CHANGE_COMMAND, title: 'Open Diff', arguments: [node] };
        return item;
      }
    }
  }

  dispose(): void {
    this.changed.dispose();
  }
}

/** Computes the semantic diff of two files (optionally one agent). */
export function computeDiff(left: DiffSide, right: DiffSide, agent: string | undefined, decrypt: DecryptOptions | undefined): Promise<CurrentDiff> {
  return diffSnapshotsAny(left.path, right.path, { ...(agent ? { agent } : {}), decrypt }).then((report) => ({ report, left, right }));
}

/** Opens the side-by-side diff of one change. */
export async function openChange(cur: CurrentDiff, node: ChangeNode): Promise<{ left: vscode.Uri; right: vscode.Uri; title: string }> {
  const u = diffUris(cur, node.diff, node.item);
  await vscode.commands.executeCommand('vscode.diff', u.left, u.right, u.title, { preview: true });
  return u;
}
