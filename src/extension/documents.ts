/**
 * Read-only virtual documents for agent components (`agentvault:` URIs): a memory block, the
 * system prompt, a tool's source, the rules, the model configs, messages, passages, a Qdrant
 * collection's record and an archive's description. The text comes from the library
 * (src/diff/components.ts, src/format/inspect.ts); this file only maps URIs to it and caches the
 * opened sources.
 *
 * URI: agentvault:/<snapshot>/<agent>/<file name>?<query>, the file name's extension picks the
 * language (…/tools/send_message.py is Python). The query holds the source path (archive or
 * agent file), the agent id and the component.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { AgentVaultError } from '../core/errors';
import { agentComponents, componentFileName, componentText, messagesText, passagesText, safeSegment, type ComponentInfo, type ComponentKind, type ComponentRef } from '../diff/components';
import type { AgentStateSource, AgentState } from '../diff/index';
import { describeSnapshotAny, isStoreSnapshotRef, openSnapshotSourceAny, readSnapshotManifestAny } from '../vault/store-catalog';
import { listCollectionsInArchive } from '../qdrant/archive';
import type { KeyProvider } from './keys';

export const SCHEME = 'agentvault';

export type DocKind = ComponentKind | 'collection' | 'describe' | 'text';

export interface DocTarget {
  /** archive or agent file on disk */
  src: string;
  /** agent id inside the source ('' for 'describe' and 'collection') */
  agent: string;
  kind: DocKind;
  key?: string;
}

/** The URI of a component's document. `snapshotLabel`/`agentLabel` only make the path readable. */
export function docUri(t: DocTarget, labels: { snapshot: string; agent?: string; fileName?: string }): vscode.Uri {
  const fileName =
    labels.fileName ??
    (t.kind === 'collection' ? `qdrant/${safeSegment(t.key ?? '')}.json` : t.kind === 'describe' ? 'snapshot.md' : t.kind === 'text' ? 'text.txt' : componentFileName({ kind: t.kind, key: t.key }));
  const segs = [safeSegment(labels.snapshot), ...(labels.agent !== undefined ? [safeSegment(labels.agent)] : []), ...fileName.split('/').map(safeSegment)];
  const q = new URLSearchParams({ src: t.src, agent: t.agent, kind: t.kind, ...(t.key !== undefined ? { key: t.key } : {}) });
  return vscode.Uri.from({ scheme: SCHEME, path: '/' + segs.join('/'), query: q.toString() });
}

export function parseDocUri(uri: vscode.Uri): DocTarget {
  const q = new URLSearchParams(uri.query);
  const src = q.get('src');
  const kind = q.get('kind') as DocKind | null;
  if (!src || !kind) throw new AgentVaultError('usage', `not an Agent Vault document: ${uri.toString()}`);
  return { src, agent: q.get('agent') ?? '', kind, key: q.get('key') ?? undefined };
}

interface OpenSource {
  source: AgentStateSource;
  states: Map<string, Promise<AgentState>>;
  /** ArchiveSource reads one entry stream at a time: serialise the work on a source. */
  queue: Promise<unknown>;
  /** runs queued or running on it */
  pending: number;
}

/**
 * Opened sources (archives, agent files), a few at a time, closed when evicted or disposed. A
 * snapshot of a store vault (`<vault>#<id>`) is read in place from the store and holds the vault's
 * shared lock while open, so it is closed as soon as no work is queued on it (a backup or prune of
 * the vault is not kept waiting by an editor); its agents' states stay cached (it never changes).
 */
export class SourceCache implements vscode.Disposable {
  private readonly open = new Map<string, Promise<OpenSource>>();
  /** Loaded agent states by source (kept when a store snapshot's reader is closed). */
  private readonly states = new Map<string, Map<string, Promise<AgentState>>>();
  /** Sources opened (tests). */
  opened = 0;
  /** Makes a source's file available before it is read (a snapshot of an s3:// vault is downloaded into the cache). */
  prepare: (src: string) => Promise<unknown> = async () => undefined;

  /** `keys`: the passphrase or key for encrypted archives (asked each time a source is opened). */
  constructor(
    readonly keys: KeyProvider,
    private readonly max = 8,
  ) {}

  private get(src: string): Promise<OpenSource> {
    let o = this.open.get(src);
    if (o) {
      this.open.delete(src);
      this.open.set(src, o); // most recently used last
      return o;
    }
    let states = this.states.get(src);
    if (!states) this.states.set(src, (states = new Map()));
    const st = states;
    o = this.prepare(src)
      .then(() => this.keys())
      .then((decrypt) => openSnapshotSourceAny(src, { decrypt }))
      .then((source) => {
        this.opened++;
        return { source, states: st, queue: Promise.resolve(), pending: 0 };
      });
    o.catch(() => this.open.delete(src));
    this.open.set(src, o);
    while (this.open.size > this.max) {
      const [oldest, p] = this.open.entries().next().value as [string, Promise<OpenSource>];
      this.open.delete(oldest);
      this.states.delete(oldest);
      void p.then((x) => x.source.close()).catch(() => undefined);
    }
    return o;
  }

  /** Runs `fn` on the source, after whatever else is running on it. */
  async run<T>(src: string, fn: (s: OpenSource) => Promise<T>): Promise<T> {
    const p = this.get(src);
    const o = await p;
    o.pending++;
    const next = o.queue.then(() => fn(o));
    o.queue = next
      .catch(() => undefined)
      .then(() => {
        if (--o.pending === 0 && isStoreSnapshotRef(src) && this.open.get(src) === p) {
          this.open.delete(src);
          return o.source.close().catch(() => undefined);
        }
      });
    return next;
  }

  state(src: string, agent: string): Promise<AgentState> {
    const cached = this.states.get(src)?.get(agent);
    if (cached) return cached;
    return this.run(src, (o) => {
      let st = o.states.get(agent);
      if (!st) {
        st = o.source.loadAgent(agent);
        st.catch(() => o.states.delete(agent));
        o.states.set(agent, st);
      }
      return st;
    });
  }

  components(src: string, agent: string): Promise<{ state: AgentState; components: ComponentInfo[] }> {
    return this.state(src, agent).then((state) => ({ state, components: agentComponents(state) }));
  }

  /** Forgets a source (its file changed or was deleted). */
  forget(src: string): void {
    const o = this.open.get(src);
    this.open.delete(src);
    this.states.delete(src);
    void o?.then((x) => x.source.close()).catch(() => undefined);
  }

  /** Forgets every source (e.g. the passphrase changed). */
  forgetAll(): void {
    for (const src of new Set([...this.open.keys(), ...this.states.keys()])) this.forget(src);
  }

  dispose(): void {
    this.forgetAll();
  }
}

export class ComponentDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  /** Texts made by commands (a restore plan), by key. */
  private readonly texts = new Map<string, string>();
  private textSeq = 0;

  constructor(readonly sources: SourceCache) {}

  /** A read-only document holding `text` (e.g. a restore plan); `fileName` picks its language. */
  textUri(fileName: string, text: string): vscode.Uri {
    const key = String(++this.textSeq);
    this.texts.set(key, text);
    if (this.texts.size > 50) this.texts.delete(this.texts.keys().next().value as string);
    return docUri({ src: 'text', agent: '', kind: 'text', key }, { snapshot: 'agent-vault', fileName });
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const t = parseDocUri(uri);
    return (await this.text(t)) ?? '';
  }

  /** The text of a target; undefined when that side has no such component (e.g. an added block). */
  async text(t: DocTarget): Promise<string | undefined> {
    if (t.kind === 'describe' || t.kind === 'collection') await this.sources.prepare(t.src);
    switch (t.kind) {
      case 'describe':
        return (await describeSnapshotAny(t.src, { decrypt: await this.sources.keys() })).text;
      case 'text':
        return this.texts.get(t.key ?? '') ?? '(this document is no longer available)\n';
      case 'collection': {
        const c = listCollectionsInArchive(await readSnapshotManifestAny(t.src, { decrypt: await this.sources.keys() })).find((x) => x.name === t.key);
        return c ? `${JSON.stringify(c, null, 2)}\n` : undefined;
      }
      case 'messages':
        return this.sources.run(t.src, async (o) => (await messagesText(o.source, t.agent)).text);
      case 'passages':
        return this.sources.run(t.src, async (o) => (await passagesText(o.source, t.agent)).text);
      default: {
        const state = await this.sources.state(t.src, t.agent);
        return componentText(state, { kind: t.kind, key: t.key } as ComponentRef);
      }
    }
  }

  /** Re-read every open document (e.g. after the passphrase changed). */
  refreshAll(): void {
    this.sources.forgetAll();
    for (const d of vscode.workspace.textDocuments) if (d.uri.scheme === SCHEME) this.changed.fire(d.uri);
  }

  /** Re-read documents of a source (after its file changed). */
  refresh(src: string): void {
    this.sources.forget(src);
    for (const d of vscode.workspace.textDocuments) {
      if (d.uri.scheme === SCHEME && new URLSearchParams(d.uri.query).get('src') === src) this.changed.fire(d.uri);
    }
  }

  dispose(): void {
    this.changed.dispose();
  }
}

/** Opens a target's document in a preview editor. */
export async function showDoc(uri: vscode.Uri, opts: { preview?: boolean } = {}): Promise<vscode.TextEditor> {
  const doc = await vscode.workspace.openTextDocument(uri);
  return vscode.window.showTextDocument(doc, { preview: opts.preview ?? true });
}

/** A short name for a snapshot in titles: its id, or the archive's file name (a store snapshot's: its id after "#"). */
export function snapshotLabel(file: string, id?: string): string {
  if (id) return id;
  const at = file.lastIndexOf('#');
  if (at > 0 && isStoreSnapshotRef(file)) return decodeURIComponent(file.slice(at + 1));
  return path.basename(file).replace(/\.(avsnap|zip)$/i, '');
}
