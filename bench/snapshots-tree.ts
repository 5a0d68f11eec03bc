/**
 * bench/snapshots-tree: the VS Code Snapshots view over a big vault — 500 snapshots of 50 agents
 * each. Target (issue 17): the tree opens (the agent list) and expands an agent (its 500
 * snapshots) in under 1 s. Manifests are read lazily (a snapshot's tooltip, when hovered) and
 * cached; the figures show what a first and a cached hover cost.
 *
 *   npx tsx bench/snapshots-tree.ts [--snapshots 500] [--agents 50] [--keep]
 *
 * The tree runs outside VS Code against a minimal stand-in for the `vscode` module (tree items,
 * icons, events, markdown): what is measured is the extension's own work — reading the index, the
 * drill reports and the run log, grouping by agent, building the items.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import Module from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SnapshotsTree as SnapshotsTreeClass } from '../src/extension/snapshotsTree';
import { readManifest } from '../src/format/archive';
import { packAgentFile } from '../src/format/pack';
import { emptyIndex, SNAPSHOT_EXT, SNAPSHOTS_DIR, writeIndex } from '../src/vault/vault';

const args = process.argv.slice(2);
const num = (flag: string, dflt: number): number => {
  const i = args.indexOf(flag);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const SNAPSHOTS = num('--snapshots', 500);
const AGENTS = num('--agents', 50);
const LIMIT_MS = 1000;

// --- a stand-in for the parts of `vscode` the tree uses -------------------------------------
class EventEmitter<T> {
  private listeners: Array<(e: T) => void> = [];
  event = (l: (e: T) => void) => {
    this.listeners.push(l);
    return { dispose: () => undefined };
  };
  fire(e: T): void {
    for (const l of this.listeners) l(e);
  }
  dispose(): void {
    this.listeners = [];
  }
}
class TreeItem {
  id?: string;
  description?: string;
  tooltip?: unknown;
  iconPath?: unknown;
  contextValue?: string;
  resourceUri?: unknown;
  command?: unknown;
  constructor(
    public label: string,
    public collapsibleState = 0,
  ) {}
}
class MarkdownString {
  value = '';
  supportThemeIcons = false;
  appendMarkdown(s: string): this {
    this.value += s;
    return this;
  }
}
const vscodeStub = {
  EventEmitter,
  TreeItem,
  MarkdownString,
  ThemeIcon: class {
    constructor(
      public id: string,
      public color?: unknown,
    ) {}
  },
  ThemeColor: class {
    constructor(public id: string) {}
  },
  TreeItemCollapsibleState: { None: 0, Collapsed: 1, Expanded: 2 },
  Uri: {
    file: (p: string) => ({ scheme: 'file', fsPath: p, path: p }),
    from: (c: { scheme: string; path: string; query?: string }) => ({ ...c, fsPath: c.path }),
  },
};
const load = (Module as unknown as { _load: (req: string, ...rest: unknown[]) => unknown })._load;
(Module as unknown as { _load: (req: string, ...rest: unknown[]) => unknown })._load = function (req: string, ...rest: unknown[]) {
  return req === 'vscode' ? vscodeStub : load.call(this, req, ...rest);
};

async function main(): Promise<number> {
  // loaded after the stand-in is in place (it imports `vscode`)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { SnapshotsTree } = require('../src/extension/snapshotsTree') as { SnapshotsTree: typeof SnapshotsTreeClass };
  type Tree = SnapshotsTreeClass;

  // --- the vault: one real archive copied 500 times, an index listing 500 snapshots × 50 agents
  const root = mkdtempSync(path.join(tmpdir(), 'av-bench-tree-'));
  const vault = path.join(root, 'vault');
  mkdirSync(path.join(vault, SNAPSHOTS_DIR), { recursive: true });
  mkdirSync(path.join(vault, 'drills'), { recursive: true });
  const t0 = Date.now();
  const sample = path.join(root, 'sample.avsnap');
  await packAgentFile(path.resolve(__dirname, '..', '..', 'shared', 'fixtures', 'af', 'loop.v2.af'), sample);
  const m = await readManifest(sample);
  const bytes = statSync(sample).size;
  const index = emptyIndex();
  const start = Date.parse('2026-01-01T00:00:00Z');
  const agentIds = Array.from({ length: AGENTS }, (_, i) => `agent-${String(i).padStart(8, '0')}-4a5b-8c9d-${String(i).padStart(12, '0')}`);
  for (let i = 0; i < SNAPSHOTS; i++) {
    const created = new Date(start + i * 6 * 3600_000);
    const id = `${created
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${i.toString(16).padStart(6, '0')}`;
    const file = `${SNAPSHOTS_DIR}/${id}${SNAPSHOT_EXT}`;
    copyFileSync(sample, path.join(vault, file));
    index.snapshots.push({
      id,
      file,
      created_at: created.toISOString(),
      bytes,
      sha256: '0'.repeat(64),
      encrypted: false,
      agents: agentIds.map((a, k) => ({ id: a, name: `agent ${k}`, counts: m.agents[0].counts })),
      collections: [],
      probes: 0,
      secrets: false,
      tool_version: 'bench',
    } as (typeof index.snapshots)[number]);
  }
  await writeIndex(vault, index);
  console.log(
    `vault: ${SNAPSHOTS} snapshots × ${AGENTS} agents (${(statSync(path.join(vault, 'vault.json')).size / 1048576).toFixed(1)} MiB index), made in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );

  const log = { info: () => undefined, warn: (msg: string) => console.warn(`warn: ${msg}`) };
  const fresh = (): Tree =>
    new SnapshotsTree(
      () => vault,
      () => ({}),
      {} as never,
      log as never,
    );
  const time = async <T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> => {
    const t = process.hrtime.bigint();
    const value = await fn();
    return { ms: Number(process.hrtime.bigint() - t) / 1e6, value };
  };

  const runs: Array<{ open: number; expand: number; expandAll: number }> = [];
  let tree!: Tree;
  for (let run = 0; run < 3; run++) {
    tree = fresh();
    const open = await time(async () => {
      const groups = await tree.getChildren();
      for (const g of groups) tree.getTreeItem(g);
      return groups;
    });
    if (open.value.length !== AGENTS) throw new Error(`expected ${AGENTS} agents, the tree shows ${open.value.length}`);
    const expand = await time(async () => {
      const kids = await tree.getChildren(open.value[0]);
      for (const k of kids) tree.getTreeItem(k);
      return kids;
    });
    if (expand.value.length !== SNAPSHOTS) throw new Error(`expected ${SNAPSHOTS} snapshots under an agent, got ${expand.value.length}`);
    const expandAll = await time(async () => {
      let n = 0;
      for (const g of open.value) {
        for (const k of await tree.getChildren(g)) {
          tree.getTreeItem(k);
          n++;
        }
      }
      return n;
    });
    runs.push({ open: open.ms, expand: expand.ms, expandAll: expandAll.ms });
  }
  // hovering snapshots: the manifest is read on the first hover, then cached
  const readsOpening = tree.manifests.reads;
  const [g] = await tree.getChildren();
  const kids = (await tree.getChildren(g)).slice(0, 20);
  const cold = await time(async () => {
    for (const k of kids) await tree.resolveTreeItem(tree.getTreeItem(k), k);
  });
  const readsCold = tree.manifests.reads - readsOpening;
  const warm = await time(async () => {
    for (const k of kids) await tree.resolveTreeItem(tree.getTreeItem(k), k);
  });
  const best = (k: 'open' | 'expand' | 'expandAll') => Math.min(...runs.map((r) => r[k]));
  const first = runs[0];
  console.log(`open (${AGENTS} agents):                   first ${first.open.toFixed(0)} ms, best ${best('open').toFixed(0)} ms`);
  console.log(`expand one agent (${SNAPSHOTS} snapshots):     first ${first.expand.toFixed(0)} ms, best ${best('expand').toFixed(0)} ms`);
  console.log(`open + expand one agent:              first ${(first.open + first.expand).toFixed(0)} ms (target < ${LIMIT_MS} ms)`);
  console.log(`expand every agent (${AGENTS * SNAPSHOTS} items):   first ${first.expandAll.toFixed(0)} ms, best ${best('expandAll').toFixed(0)} ms`);
  console.log(
    `manifests read while opening/expanding: ${readsOpening}; 20 tooltips: ${cold.ms.toFixed(0)} ms first (${readsCold} manifest reads), ${warm.ms.toFixed(0)} ms cached (${tree.manifests.reads - readsOpening - readsCold} reads)`,
  );
  if (!args.includes('--keep')) rmSync(root, { recursive: true, force: true });
  else console.log(`kept ${root}`);
  const ok = first.open + first.expand < LIMIT_MS;
  console.log(ok ? 'PASS' : `FAIL: opening and expanding took ${(first.open + first.expand).toFixed(0)} ms`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
