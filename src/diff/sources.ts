/**
 * Where the two sides of a diff come from: a snapshot archive, an agent file (.af v1 upgraded,
 * v2, double-encoded v2), or a live agent (any provider of an exported .af v2 document plus its
 * passages — src/letta/export.ts plugs in here).
 *
 * Messages and passages are streamed in batches, never loaded whole from an archive: an archive
 * source cuts each message out of the agent entry as it is inflated (see af-stream.ts), and the
 * same pass leaves the rest of the entry (the agent's configuration) for `loadAgent`.
 */
import { AgentVaultError, errorMessage } from '../core/errors';
import { readAgentFile, toV2 } from '../format/af';
import { openArchive, type ArchiveReader, type ManifestAgent } from '../format/archive';
import type { DecryptOptions } from '../format/crypto';
import { isArchivePath } from '../format/validate-any';
import type { AgentFileV2 } from '../format/types';
import { AgentFileSplitter } from '../format/af-stream';
import { EntryStreams, type EntrySource } from '../format/entry-stream';
import { passageBatches } from '../format/passage-stream';
import { MessageBatch } from './messages';
import { PassageBatch, vectorBytes } from './passages';
import { buildAgentState, componentsOf, isFileLocalId, type AgentRef, type AgentState, type DocComponents } from './state';

export type { AgentRef, AgentState } from './state';
export { MessageBatch, type MessageItem } from './messages';
export { PassageBatch, type PassageItem } from './passages';

export interface AgentStateSource {
  readonly kind: 'archive' | 'agent-file' | 'live';
  readonly label: string;
  /** e.g. "archive v1", "v1", "v2-double-encoded", "live" */
  readonly format: string;
  listAgents(): Promise<AgentRef[]>;
  loadAgent(id: string): Promise<AgentState>;
  /**
   * The agent's messages in sequence order, in batches (iterate a batch for its items). A batch
   * is valid until the next one is asked for: its memory may be reused.
   */
  iterateMessages?(id: string): AsyncIterable<MessageBatch>;
  /**
   * The agent's archival passages with their vectors, in batches (valid until the next one is
   * asked for); absent when the source has none (an agent file).
   */
  iteratePassages?(id: string): AsyncIterable<PassageBatch>;
  /** Skills and blocks/tools no agent attaches, over the whole source; absent when not known (live). */
  components?(): Promise<DocComponents>;
  close(): Promise<void>;
}

const MESSAGE_BATCH = 1024;

function refFor(id: string, name: unknown): AgentRef {
  return { id, name: typeof name === 'string' ? name : null, originalId: !isFileLocalId(id) };
}

function agentsOf(doc: AgentFileV2, where: string): Record<string, unknown>[] {
  if (!Array.isArray(doc.agents)) throw new AgentVaultError('invalid-agent-file', `${where}: "agents" must be a list`, { location: { file: where, pointer: '/agents' } });
  return doc.agents.map((a, i) => {
    if (!a || typeof a !== 'object' || Array.isArray(a) || typeof a.id !== 'string') {
      throw new AgentVaultError('invalid-agent-file', `${where}: agents[${i}] is not an agent with an "id"`, { location: { file: where, pointer: `/agents/${i}` } });
    }
    return a as Record<string, unknown>;
  });
}

function noAgent(label: string, id: string): AgentVaultError {
  return new AgentVaultError('no-agent', `${label} has no agent ${JSON.stringify(id)}`, { kind: 'usage', location: { file: label } });
}

// ---------------------------------------------------------------------------------------------
// a whole .af document in memory: agent files and live exports

/** Something that can export live agents (the Letta database export plugs in here). */
export interface LiveAgentProvider {
  /** e.g. "postgres://…/letta" (no password) */
  label: string;
  /** The agents as one .af v2 document, as Letta's export (or src/letta/export.ts) writes it. */
  exportAgentFile(): Promise<AgentFileV2>;
  /** The database id of a document agent id, when the document uses file-local ids. */
  originalId?(docAgentId: string): string | undefined;
  /** The agent's archival passages (by document agent id), each with its embedding. */
  iteratePassages?(docAgentId: string): AsyncIterable<{ passage: Record<string, unknown>; embedding: ArrayLike<number> | null }>;
  close?(): Promise<void>;
}

class DocumentSource implements AgentStateSource {
  private readonly refs: AgentRef[];
  private readonly indexById = new Map<string, number>();
  private readonly names = new Map<string, string | null>();
  readonly iteratePassages?: (id: string) => AsyncIterable<PassageBatch>;

  constructor(
    readonly kind: 'agent-file' | 'live',
    readonly label: string,
    readonly format: string,
    private readonly doc: AgentFileV2,
    originalId?: (docAgentId: string) => string | undefined,
    private readonly provider?: LiveAgentProvider,
  ) {
    const agents = agentsOf(doc, label);
    this.refs = agents.map((a, i) => {
      const docId = a.id as string;
      const ref = refFor(originalId?.(docId) ?? docId, a.name);
      this.indexById.set(ref.id, i);
      this.names.set(docId, ref.name);
      return ref;
    });
    if (provider?.iteratePassages) this.iteratePassages = (id: string) => this.passages(id);
  }

  async listAgents(): Promise<AgentRef[]> {
    return this.refs.map((r) => ({ ...r }));
  }

  private index(id: string): number {
    const i = this.indexById.get(id);
    if (i === undefined) throw noAgent(this.label, id);
    return i;
  }

  async components(): Promise<DocComponents> {
    return componentsOf([this.doc]);
  }

  async loadAgent(id: string): Promise<AgentState> {
    const i = this.index(id);
    return buildAgentState(this.doc, i, this.refs[i], (docId) => this.names.get(docId) ?? null);
  }

  async *iterateMessages(id: string): AsyncGenerator<MessageBatch> {
    const agent = this.doc.agents[this.index(id)];
    const list = (Array.isArray(agent.messages) ? agent.messages : []) as Array<Record<string, unknown>>;
    for (let i = 0; i < list.length; i += MESSAGE_BATCH) yield MessageBatch.objects(list.slice(i, i + MESSAGE_BATCH));
  }

  private async *passages(id: string): AsyncGenerator<PassageBatch> {
    const docId = this.doc.agents[this.index(id)].id;
    let objs: Array<Record<string, unknown>> = [];
    let vecs: Array<Buffer | null> = [];
    for await (const rec of this.provider!.iteratePassages!(docId)) {
      objs.push(rec.passage);
      vecs.push(vectorBytes(rec.embedding));
      if (objs.length >= MESSAGE_BATCH) {
        yield PassageBatch.objects(objs, vecs);
        objs = [];
        vecs = [];
      }
    }
    if (objs.length) yield PassageBatch.objects(objs, vecs);
  }

  async close(): Promise<void> {
    await this.provider?.close?.();
  }
}

export async function openAgentFileSource(path: string): Promise<AgentStateSource> {
  const parsed = await readAgentFile(path);
  return new DocumentSource('agent-file', path, parsed.format, toV2(parsed));
}

/** A live agent state: whatever the provider exports now (e.g. drift since the last snapshot). */
export async function openLiveSource(provider: LiveAgentProvider): Promise<AgentStateSource> {
  const doc = await provider.exportAgentFile();
  return new DocumentSource('live', provider.label, 'live', doc, provider.originalId?.bind(provider), provider);
}

// ---------------------------------------------------------------------------------------------
// snapshot archives

interface CachedEntry {
  doc: AgentFileV2;
  messageCounts: number[];
}

class ArchiveSource implements AgentStateSource {
  readonly kind = 'archive' as const;
  readonly format: string;
  private readonly cache = new Map<string, CachedEntry>();
  private readonly names: Map<string, string | null>;

  constructor(
    private readonly reader: ArchiveReader,
    private readonly streams: EntrySource,
  ) {
    this.format = `archive v${reader.manifest.format_version}`;
    this.names = new Map(reader.manifest.agents.map((a) => [a.id, a.name ?? null]));
  }

  get label(): string {
    return this.reader.path;
  }

  async listAgents(): Promise<AgentRef[]> {
    return this.reader.manifest.agents.map((a) => refFor(a.id, a.name));
  }

  async components(): Promise<DocComponents> {
    for (const a of this.reader.manifest.agents) if (!this.cache.has(a.entry)) await this.loadAgent(a.id);
    return componentsOf(this.reader.manifest.agents.filter((a, i, all) => all.findIndex((x) => x.entry === a.entry) === i).map((a) => this.cache.get(a.entry)!.doc));
  }

  private agent(id: string): ManifestAgent {
    const a = this.reader.manifest.agents.find((x) => x.id === id);
    if (!a) throw noAgent(this.label, id);
    return a;
  }

  /** Index of the agent inside its entry: agents sharing an entry are in manifest order. */
  private slot(a: ManifestAgent): number {
    return this.reader.manifest.agents.filter((x) => x.entry === a.entry).findIndex((x) => x.id === a.id);
  }

  private where(entry: string): string {
    return `${this.reader.path}!${entry}`;
  }

  async *iterateMessages(id: string): AsyncGenerator<MessageBatch> {
    const a = this.agent(id);
    const where = this.where(a.entry);
    const slot = this.slot(a);
    const splitter = new AgentFileSplitter(where, slot);
    const stream = this.streams.stream(a.entry);
    try {
      for await (const chunk of stream) {
        splitter.push(chunk);
        const got = splitter.take();
        if (got.length) yield MessageBatch.raw(got.bufs, got.starts, got.ends);
      }
      const outer = splitter.end();
      let doc: AgentFileV2;
      try {
        doc = JSON.parse(outer.toString('utf8')) as AgentFileV2;
      } catch (e) {
        throw new AgentVaultError('invalid-agent-file', `${where}: invalid JSON: ${errorMessage(e)}`, { location: { file: this.reader.path, entry: a.entry } });
      }
      const agents = agentsOf(doc, where);
      const found = agents.length === 1 ? 0 : agents.findIndex((x) => x.id === a.id);
      if (found !== slot && !(agents.length === 1 && slot === 0)) {
        throw new AgentVaultError('invalid-archive', `${where}: agent ${JSON.stringify(a.id)} is not where the manifest order puts it in this entry`, {
          location: { file: this.reader.path, entry: a.entry },
        });
      }
      this.cache.set(a.entry, { doc, messageCounts: splitter.messageCounts });
    } finally {
      await stream.return(undefined);
    }
  }

  async loadAgent(id: string): Promise<AgentState> {
    const a = this.agent(id);
    if (!this.cache.has(a.entry)) {
      for await (const _ of this.iterateMessages(id)) {
        /* one pass that skips the messages fills the cache */
      }
    }
    const { doc, messageCounts } = this.cache.get(a.entry)!;
    const slot = this.slot(a);
    const index = doc.agents.length === 1 ? 0 : slot;
    // a group may name an agent of another entry by its file-local id: the extension maps it to the original id
    const ext = (doc as unknown as { agent_vault?: { ids?: Record<string, unknown> } }).agent_vault;
    const original = (docId: string): string => (ext && ext.ids && typeof ext.ids[docId] === 'string' ? (ext.ids[docId] as string) : docId);
    return buildAgentState(doc, index, refFor(a.id, a.name), (docId) => this.names.get(docId) ?? this.names.get(original(docId)) ?? null, messageCounts[index] ?? 0);
  }

  async *iteratePassages(id: string): AsyncGenerator<PassageBatch> {
    const a = this.agent(id);
    if (!a.passages_entry) return;
    const lines = this.streams.stream(a.passages_entry);
    const vectors = a.vectors_entry ? await this.streams.chunks(a.vectors_entry) : null;
    try {
      yield* passageBatches(lines, vectors, this.where(a.passages_entry), a.vectors_entry ? this.where(a.vectors_entry) : '', PassageBatch.lines);
    } finally {
      await Promise.allSettled([lines.return(undefined), vectors?.close()]);
    }
  }

  async close(): Promise<void> {
    this.streams.close();
    await this.reader.close();
  }
}

/** How to open an encrypted archive: its passphrase or key (without one, its entries cannot be read). */
export interface OpenSourceOptions {
  decrypt?: DecryptOptions;
}

export async function openArchiveSource(path: string, opts: OpenSourceOptions = {}): Promise<AgentStateSource> {
  const d = opts.decrypt;
  const reader = await openArchive(path, { decrypt: d && (d.passphrase !== undefined || d.key !== undefined) ? d : undefined });
  try {
    // an encrypted archive's entries are decrypted by the reader's own streams
    return new ArchiveSource(reader, reader.encrypted ? reader.entryStreams() : await EntryStreams.open(path, reader.manifest.entries));
  } catch (e) {
    await reader.close();
    throw e;
  }
}

/**
 * An opened archive reader as a diff side (a snapshot of the vault's store is read in place this
 * way: src/vault/store/reader.ts); closing the source closes the reader.
 */
export function openReaderSource(reader: ArchiveReader): AgentStateSource {
  return new ArchiveSource(reader, reader.entryStreams());
}

/** An archive (detected by its zip signature, not its name) or an agent file. */
export async function openSource(path: string, opts: OpenSourceOptions = {}): Promise<AgentStateSource> {
  return (await isArchivePath(path)) ? openArchiveSource(path, opts) : openAgentFileSource(path);
}
