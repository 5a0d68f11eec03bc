/**
 * Agent file ⇄ snapshot archive: split an .af (any layout) into one self-contained .af v2 per agent
 * inside an archive, write them back out, and merge per-agent files into one document again.
 */
import { canonicalJson } from '../core/json';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { AgentVaultError, errorMessage } from '../core/errors';
import { ioError, publishFile, tempPathFor } from '../core/fs';
import { readAgentFile, toV2 } from './af';
import { agentEntryName, createArchiveWriter, openArchive, type ArchiveReader, type Manifest, type ManifestAgent, type ManifestAgentCounts } from './archive';
import { formatFloat32, readVectorsStream } from './vectors';
import { noKeyError, type DecryptOptions } from './crypto';
import type { AgentFileV2, AgentV2, Json, JsonObject } from './types';
import { fileSha256 } from '../core/hash';

/** The top-level collections of an .af v2, in Letta's order. */
export const AF_COLLECTIONS = ['agents', 'groups', 'blocks', 'files', 'sources', 'tools', 'mcp_servers', 'skills'] as const;
type Collection = (typeof AF_COLLECTIONS)[number];

export interface AgentSlice {
  agent: AgentV2;
  /** A complete .af v2 holding this agent and everything it references (ids kept). */
  doc: AgentFileV2;
  counts: ManifestAgentCounts;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function objects(doc: AgentFileV2, key: Collection, where: string): JsonObject[] {
  const v = (doc as JsonObject)[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new AgentVaultError('invalid-agent-file', `${where}: "${key}" must be an array`, { location: { file: where, pointer: `/${key}` } });
  return v.map((o, i) => {
    if (!o || typeof o !== 'object' || Array.isArray(o)) {
      throw new AgentVaultError('invalid-agent-file', `${where}: ${key}[${i}] must be an object`, { location: { file: where, pointer: `/${key}/${i}` } });
    }
    return o as JsonObject;
  });
}

function idOf(o: JsonObject): string | undefined {
  return typeof o.id === 'string' ? o.id : undefined;
}

function mcpRefs(tool: JsonObject): string[] {
  const meta = tool.metadata_;
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) return [];
  const mcp = (meta as JsonObject).mcp;
  if (!mcp || typeof mcp !== 'object' || Array.isArray(mcp)) return [];
  return [(mcp as JsonObject).server_id, (mcp as JsonObject).server_name].filter((x): x is string => typeof x === 'string');
}

/**
 * Splits a v2 document into one document per agent. Each holds the agent and what it references:
 * blocks (block_ids, and the shared blocks of its groups), tools (tool_ids), groups (group_ids),
 * sources (source_ids, folder_ids, files_agents) with their files, files (files_agents), and the
 * MCP servers its tools name. Objects no agent references go with the first agent, and objects
 * without ids (skills) plus all other top-level fields are copied into every document, so that
 * mergeAgentFiles() of the slices gives back the whole input.
 */
export function splitAgentFile(doc: AgentFileV2, where = 'agent file'): AgentSlice[] {
  const agents = objects(doc, 'agents', where) as AgentV2[];
  if (agents.length === 0) throw new AgentVaultError('invalid-agent-file', `${where} contains no agents; there is nothing to put in a snapshot`, { location: { file: where, pointer: '/agents' } });
  const seenAgents = new Set<string>();
  agents.forEach((a, i) => {
    if (typeof a.id !== 'string' || a.id === '') throw new AgentVaultError('invalid-agent-file', `${where}: agents[${i}] has no "id"`, { location: { file: where, pointer: `/agents/${i}/id` } });
    if (seenAgents.has(a.id)) throw new AgentVaultError('invalid-agent-file', `${where}: agent id "${a.id}" occurs twice`, { location: { file: where, pointer: `/agents/${i}/id` } });
    seenAgents.add(a.id);
  });
  const all: Record<Exclude<Collection, 'agents'>, JsonObject[]> = {
    groups: objects(doc, 'groups', where),
    blocks: objects(doc, 'blocks', where),
    files: objects(doc, 'files', where),
    sources: objects(doc, 'sources', where),
    tools: objects(doc, 'tools', where),
    mcp_servers: objects(doc, 'mcp_servers', where),
    skills: objects(doc, 'skills', where),
  };
  const byId = (list: JsonObject[]): Map<string, JsonObject> => new Map(list.filter((o) => idOf(o) !== undefined).map((o) => [idOf(o)!, o]));
  const groupsById = byId(all.groups);
  const toolsById = byId(all.tools);

  type Refs = Record<'groups' | 'blocks' | 'files' | 'sources' | 'tools' | 'mcp_servers', Set<string>>;
  const refsOf = (a: AgentV2): Refs => {
    const r: Refs = { groups: new Set(), blocks: new Set(), files: new Set(), sources: new Set(), tools: new Set(), mcp_servers: new Set() };
    strings(a.block_ids).forEach((id) => r.blocks.add(id));
    strings(a.tool_ids).forEach((id) => r.tools.add(id));
    strings(a.group_ids).forEach((id) => r.groups.add(id));
    strings(a.source_ids).forEach((id) => r.sources.add(id));
    strings((a as JsonObject).folder_ids).forEach((id) => r.sources.add(id));
    for (const fa of Array.isArray(a.files_agents) ? a.files_agents : []) {
      if (fa && typeof fa === 'object') {
        if (typeof fa.file_id === 'string') r.files.add(fa.file_id);
        if (typeof fa.source_id === 'string') r.sources.add(fa.source_id);
      }
    }
    for (const gid of r.groups) strings(groupsById.get(gid)?.shared_block_ids).forEach((id) => r.blocks.add(id));
    // a folder brings its files; a file brings its folder
    for (const f of all.files) if (typeof f.source_id === 'string' && r.sources.has(f.source_id) && idOf(f)) r.files.add(idOf(f)!);
    for (const f of all.files) if (r.files.has(idOf(f) ?? '\0') && typeof f.source_id === 'string') r.sources.add(f.source_id);
    for (const tid of r.tools) mcpRefs(toolsById.get(tid) ?? {}).forEach((ref) => r.mcp_servers.add(ref));
    return r;
  };
  const refs = agents.map(refsOf);
  const referencedAnywhere = (key: keyof Refs, o: JsonObject): boolean => {
    const id = idOf(o);
    if (key === 'mcp_servers') {
      const name = typeof o.server_name === 'string' ? o.server_name : undefined;
      return refs.some((r) => (id !== undefined && r.mcp_servers.has(id)) || (name !== undefined && r.mcp_servers.has(name)));
    }
    return id !== undefined && refs.some((r) => r[key].has(id));
  };
  const selects = (r: Refs, key: keyof Refs, o: JsonObject): boolean => {
    const id = idOf(o);
    if (key === 'mcp_servers') {
      const name = typeof o.server_name === 'string' ? o.server_name : undefined;
      return (id !== undefined && r.mcp_servers.has(id)) || (name !== undefined && r.mcp_servers.has(name));
    }
    return id !== undefined && r[key].has(id);
  };
  const keys = ['groups', 'blocks', 'files', 'sources', 'tools', 'mcp_servers'] as const;

  return agents.map((agent, i) => {
    const r = refs[i];
    const picked = {} as Record<(typeof keys)[number], JsonObject[]>;
    for (const key of keys) {
      picked[key] = all[key].filter((o) => selects(r, key, o) || (i === 0 && !referencedAnywhere(key, o)));
    }
    // A group naming an agent of another slice is kept in the extension object (agent_vault.groups,
    // agent_vault.group_ids), so that every slice is importable by Letta on its own and validates;
    // mergeAgentFiles() puts it back.
    const members = (g: JsonObject): string[] => {
      const mc = g.manager_config && typeof g.manager_config === 'object' && !Array.isArray(g.manager_config) ? (g.manager_config as JsonObject) : {};
      return [...strings(g.agent_ids), ...(typeof mc.manager_agent_id === 'string' ? [mc.manager_agent_id] : [])];
    };
    const cross = picked.groups.filter((g) => members(g).some((m) => m !== agent.id));
    let sliceAgent: AgentV2 = agent;
    let ext: JsonObject | null = null;
    if (cross.length) {
      const crossIds = new Set(cross.map((g) => idOf(g)).filter((x): x is string => !!x));
      picked.groups = picked.groups.filter((g) => !cross.includes(g));
      const ids = strings(agent.group_ids);
      sliceAgent = { ...agent, group_ids: ids.filter((g) => !crossIds.has(g)) } as AgentV2;
      const prev = (doc as JsonObject)[SPLIT_EXT];
      ext = { ...(prev && typeof prev === 'object' && !Array.isArray(prev) ? (prev as JsonObject) : {}), groups: cross as Json[], group_ids: ids.filter((g) => crossIds.has(g)) };
    }
    const out: JsonObject = {};
    for (const k of Object.keys(doc)) {
      if (k === 'agents') out.agents = [sliceAgent as unknown as Json];
      else if ((keys as readonly string[]).includes(k)) out[k] = picked[k as (typeof keys)[number]] as Json[];
      else out[k] = (doc as JsonObject)[k];
    }
    // always emit the required collections, even when the input omitted them
    for (const k of ['agents', ...keys] as const) if (!(k in out)) out[k] = k === 'agents' ? [sliceAgent as unknown as Json] : (picked[k] as Json[]);
    if (ext) out[SPLIT_EXT] = ext;
    const ownGroups = [...picked.groups, ...cross].filter((g) => r.groups.has(idOf(g) ?? '\0'));
    const counts: ManifestAgentCounts = {
      messages: Array.isArray(agent.messages) ? agent.messages.length : 0,
      in_context_messages: strings(agent.in_context_message_ids).length,
      blocks: new Set(strings(agent.block_ids)).size,
      tools: new Set(strings(agent.tool_ids)).size,
      passages: 0,
      groups: ownGroups.length,
      files: picked.files.filter((f) => r.files.has(idOf(f) ?? '\0')).length,
    };
    return { agent, doc: out as AgentFileV2, counts };
  });
}

/**
 * One combined .af v2 from several (e.g. the per-agent files of an archive). Objects are deduped
 * by id (by name for skills); the same id with different content is an error ('merge-conflict').
 * Other top-level fields come from the first document.
 */
export function mergeAgentFiles(input: AgentFileV2[]): AgentFileV2 {
  if (input.length === 0) throw new AgentVaultError('merge-conflict', 'nothing to merge: no agent files given');
  const docs = input.map(unsplitGroups);
  const out: JsonObject = {};
  const keyOrder: string[] = [];
  for (const d of docs) for (const k of Object.keys(d)) if (!keyOrder.includes(k)) keyOrder.push(k);
  for (const k of keyOrder) {
    if (!(AF_COLLECTIONS as readonly string[]).includes(k)) {
      const first = docs.find((d) => k in d);
      out[k] = (first as JsonObject)[k];
      continue;
    }
    const merged: Json[] = [];
    const seen = new Map<string, string>();
    for (const [di, d] of docs.entries()) {
      const list = (d as JsonObject)[k];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) throw new AgentVaultError('invalid-agent-file', `agent file ${di + 1}: "${k}" must be an array`, { location: { pointer: `/${k}` } });
      for (const item of list) {
        const o = item as JsonObject;
        const canon = canonicalJson(o);
        const key =
          o && typeof o === 'object' && typeof o.id === 'string' ? `id:${o.id}` : k === 'skills' && o && typeof o === 'object' && typeof o.name === 'string' ? `name:${o.name}` : `json:${canon}`;
        const prev = seen.get(key);
        if (prev === undefined) {
          seen.set(key, canon);
          merged.push(item);
        } else if (prev !== canon) {
          throw new AgentVaultError('merge-conflict', `cannot merge: two different ${k} entries share ${key.replace(':', ' ')} (agent file ${di + 1})`, {
            hint: 'the files come from different exports whose file-local ids collide',
          });
        }
      }
    }
    out[k] = merged;
  }
  return out as AgentFileV2;
}

/** The extension object of Agent Vault in an agent file (docs/FORMAT.md, docs/RESTORE.md). */
const SPLIT_EXT = 'agent_vault';

/** A slice's groups kept in its extension (see splitAgentFile), put back into `groups` / `group_ids`. */
function unsplitGroups(d: AgentFileV2): AgentFileV2 {
  const ext = (d as JsonObject)[SPLIT_EXT];
  if (!ext || typeof ext !== 'object' || Array.isArray(ext)) return d;
  const e = ext as JsonObject;
  if (!Array.isArray(e.groups) && !Array.isArray(e.group_ids)) return d;
  const out: JsonObject = { ...(d as JsonObject) };
  const { groups, group_ids, ...rest } = e;
  out.groups = [...(Array.isArray(out.groups) ? out.groups : []), ...(Array.isArray(groups) ? groups : [])];
  const extra = strings(group_ids);
  if (extra.length && Array.isArray(out.agents) && out.agents.length === 1 && out.agents[0] && typeof out.agents[0] === 'object') {
    const a = out.agents[0] as JsonObject;
    out.agents = [{ ...a, group_ids: [...strings(a.group_ids), ...extra.filter((g) => !strings(a.group_ids).includes(g))] }];
  }
  if (Object.keys(rest).length) out[SPLIT_EXT] = rest;
  else delete out[SPLIT_EXT];
  return out as AgentFileV2;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function manifestAgent(slice: AgentSlice): ManifestAgent {
  const a = slice.agent;
  const emb = a.embedding_config && typeof a.embedding_config === 'object' ? a.embedding_config : null;
  const llm = a.llm_config && typeof a.llm_config === 'object' ? a.llm_config : null;
  const dim = emb && typeof emb.embedding_dim === 'number' && Number.isInteger(emb.embedding_dim) && emb.embedding_dim >= 1 ? emb.embedding_dim : null;
  return {
    id: a.id,
    name: str(a.name),
    agent_type: str(a.agent_type),
    entry: agentEntryName(a.id),
    counts: slice.counts,
    embedding: emb ? { model: str(emb.embedding_model), dim, endpoint_type: str(emb.embedding_endpoint_type) } : null,
    llm: llm ? { model: str(llm.model) } : null,
    passages_entry: null,
    vectors_entry: null,
  };
}

export interface PackOptions {
  overwrite?: boolean;
  /** ISO time for manifest.created_at (default: now). */
  createdAt?: string;
}

/** Turns one .af (v1, v2 or double-encoded v2) into a snapshot archive with one .af v2 per agent. */
export async function packAgentFile(afPath: string, archivePath: string, opts: PackOptions = {}): Promise<{ path: string; manifest: Manifest; bytes: number }> {
  const parsed = await readAgentFile(afPath);
  const v2 = toV2(parsed);
  const slices = splitAgentFile(v2, afPath);
  const sha = (await fileSha256(afPath)).sha256;
  const writer = await createArchiveWriter(archivePath, { overwrite: opts.overwrite });
  try {
    const agents: ManifestAgent[] = [];
    for (const s of slices) {
      const entry = manifestAgent(s);
      await writer.addJson(entry.entry, s.doc, { mediaType: 'application/json' });
      agents.push(entry);
    }
    return await writer.finish({
      created_at: opts.createdAt ?? new Date().toISOString(),
      source: {
        kind: 'agent-file',
        letta_revision: parsed.revision,
        file: path.basename(afPath),
        file_format: parsed.format,
        file_sha256: sha,
      },
      agents,
    });
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** Every agent .af of an archive, in manifest order. */
export async function readAgentDocs(reader: ArchiveReader): Promise<AgentFileV2[]> {
  const out: AgentFileV2[] = [];
  for (const a of reader.manifest.agents) out.push(await reader.readJson<AgentFileV2>(a.entry));
  return out;
}

export interface PassageRecord {
  /** The passage row as stored (without the embedding). */
  passage: JsonObject;
  /** Its embedding at the true dimension, or null when the passage has none. */
  embedding: Float32Array | null;
}

/** Which passages of an agent: its archival memory, or the chunks of its files (Letta `source_passages`). */
export type PassageKind = 'archival' | 'file';

/** The entries holding an agent's passages of a kind (null when it has none). */
export function passageEntries(agent: ManifestAgent, kind: PassageKind): { jsonl: string | null; vectors: string | null } {
  return kind === 'file' ? { jsonl: agent.file_passages_entry ?? null, vectors: agent.file_vectors_entry ?? null } : { jsonl: agent.passages_entry ?? null, vectors: agent.vectors_entry ?? null };
}

/**
 * Streams an agent's passages (archival, or with kind 'file' its files' chunks) joined with their
 * vectors (record i ↔ line i). Neither entry is held in memory whole.
 */
export async function* readPassages(reader: ArchiveReader, agent: ManifestAgent, kind: PassageKind = 'archival'): AsyncGenerator<PassageRecord> {
  const { jsonl: passagesEntry, vectors: vectorsEntry } = passageEntries(agent, kind);
  if (!passagesEntry) return;
  const where = `${reader.path}!${passagesEntry}`;
  const vecStream = vectorsEntry ? await reader.openStream(vectorsEntry) : undefined;
  const vectors = vecStream ? readVectorsStream(vecStream as AsyncIterable<Buffer>, `${reader.path}!${vectorsEntry}`) : undefined;
  let input: NodeJS.ReadableStream;
  try {
    input = await reader.openStream(passagesEntry);
  } catch (e) {
    (vecStream as Readable | undefined)?.destroy();
    throw e;
  }
  // readline drops lines emitted before its iterator exists: create both with no await between
  const lines = createInterface({ input, crlfDelay: Infinity });
  const lineIter = lines[Symbol.asyncIterator]();
  let n = 0;
  try {
    for (let r = await lineIter.next(); !r.done; r = await lineIter.next()) {
      const line = r.value;
      n++;
      if (line.trim() === '') continue;
      let passage: JsonObject;
      try {
        passage = JSON.parse(line) as JsonObject;
      } catch (e) {
        throw new AgentVaultError('json-syntax', `${where}:${n}: invalid JSON: ${errorMessage(e)}`, { location: { file: reader.path, entry: passagesEntry, line: n } });
      }
      let embedding: Float32Array | null = null;
      if (vectors) {
        const next = await vectors.next();
        if (next.done)
          throw new AgentVaultError('corrupt', `${where}:${n}: there are more passages than vectors in ${vectorsEntry}`, { location: { file: reader.path, entry: vectorsEntry ?? undefined } });
        embedding = passage.embedding === null ? null : next.value;
      }
      yield { passage, embedding };
    }
    if (vectors) {
      const rest = await vectors.next();
      if (!rest.done)
        throw new AgentVaultError('corrupt', `${reader.path}!${vectorsEntry}: there are more vectors than passages in ${passagesEntry}`, {
          location: { file: reader.path, entry: vectorsEntry ?? undefined },
        });
    }
  } finally {
    lines.close();
    (input as Readable).destroy();
    (vecStream as Readable | undefined)?.destroy();
  }
}

/** One passage as a JSON line with its embedding (shortest float32 decimals). */
export function passageLine(rec: PassageRecord): string {
  const { embedding: _drop, ...rest } = rec.passage;
  const base = JSON.stringify(rest);
  const emb = rec.embedding ? `[${Array.from(rec.embedding, (x) => (Number.isFinite(x) ? formatFloat32(x) : 'null')).join(',')}]` : 'null';
  return base === '{}' ? `{"embedding":${emb}}` : `${base.slice(0, -1)},"embedding":${emb}}`;
}

export interface UnpackOptions {
  overwrite?: boolean;
  /** Passphrase or key of an encrypted archive (without it, error 'no-key' (kind 'usage'), and nothing is written). */
  decrypt?: DecryptOptions;
  /** Also extract every entry at its own path under outDir (manifest.json included). */
  raw?: boolean;
}

function inside(root: string, rel: string): string {
  const target = path.resolve(root, rel);
  const r = path.relative(root, target);
  if (r === '' || r.startsWith('..') || path.isAbsolute(r)) {
    throw new AgentVaultError('entry-name', `refusing to write ${JSON.stringify(rel)} outside ${root}`, { location: { entry: rel } });
  }
  return target;
}

async function writeStreamAtomic(dest: string, produce: (write: (s: string | Buffer) => Promise<void>) => Promise<void>, overwrite: boolean): Promise<void> {
  const tmp = tempPathFor(dest);
  const ws = createWriteStream(tmp, { flags: 'wx' });
  try {
    await once(ws, 'open');
    await produce(async (s) => {
      if (!ws.write(s)) await once(ws, 'drain');
    });
    ws.end();
    await once(ws, 'finish');
    await new Promise<void>((res, rej) => ws.close((e) => (e ? rej(e) : res())));
    await publishFile(tmp, dest, { overwrite });
  } catch (e) {
    ws.destroy();
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw e instanceof AgentVaultError ? e : ioError(e, dest, 'write');
  }
}

/**
 * Writes each agent of an archive as `<outDir>/<agent-id>.af` (pretty-printed .af v2) and its
 * passages as `<outDir>/<agent-id>.passages.jsonl` (each line with its embedding). Refuses to
 * replace existing files unless `overwrite` (and then writes nothing at all).
 */
export async function unpackArchive(archivePath: string, outDir: string, opts: UnpackOptions = {}): Promise<{ files: string[] }> {
  const hasKey = !!opts.decrypt && (opts.decrypt.passphrase !== undefined || opts.decrypt.key !== undefined);
  const reader = await openArchive(archivePath, { decrypt: hasKey ? opts.decrypt : undefined });
  try {
    if (reader.encrypted && !reader.decryptable) throw noKeyError(archivePath, 'nothing was written');
    const root = path.resolve(outDir);
    const plan: Array<{ target: string; kind: 'af' | 'passages' | 'file-passages' | 'raw'; entry: string; agent?: ManifestAgent }> = [];
    for (const a of reader.manifest.agents) {
      const base = path.posix.basename(a.entry).replace(/\.af$/, '');
      plan.push({ target: inside(root, `${base}.af`), kind: 'af', entry: a.entry, agent: a });
      if (a.passages_entry) plan.push({ target: inside(root, `${base}.passages.jsonl`), kind: 'passages', entry: a.passages_entry, agent: a });
      if (a.file_passages_entry) plan.push({ target: inside(root, `${base}.file-passages.jsonl`), kind: 'file-passages', entry: a.file_passages_entry, agent: a });
    }
    if (opts.raw) {
      for (const name of ['manifest.json', ...reader.manifest.entries.map((e) => e.name)]) plan.push({ target: inside(root, name), kind: 'raw', entry: name });
    }
    const targets = new Set<string>();
    for (const p of plan) {
      if (targets.has(p.target)) throw new AgentVaultError('entry-name', `${archivePath}: two entries would be written to ${p.target}`, { location: { file: archivePath, entry: p.entry } });
      targets.add(p.target);
    }
    if (!opts.overwrite) {
      const existing: string[] = [];
      for (const t of targets) {
        try {
          await fsp.lstat(t);
          existing.push(t);
        } catch {
          /* free */
        }
      }
      if (existing.length) {
        throw new AgentVaultError(
          'exists',
          `${existing.length === 1 ? `${existing[0]} already exists` : `${existing.length} files already exist (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', …' : ''})`}`,
          {
            location: { file: existing[0] },
            kind: 'usage',
            remedy: 'overwrite',
          },
        );
      }
    }
    const written: string[] = [];
    for (const p of plan) {
      try {
        await fsp.mkdir(path.dirname(p.target), { recursive: true });
      } catch (e) {
        throw ioError(e, path.dirname(p.target), 'create');
      }
      if (p.kind === 'af') {
        const doc = await reader.readJson<AgentFileV2>(p.entry);
        await writeStreamAtomic(p.target, async (w) => w(JSON.stringify(doc, null, 2) + '\n'), !!opts.overwrite);
      } else if (p.kind === 'passages' || p.kind === 'file-passages') {
        const kind = p.kind === 'passages' ? 'archival' : 'file';
        await writeStreamAtomic(
          p.target,
          async (w) => {
            for await (const rec of readPassages(reader, p.agent!, kind)) await w(passageLine(rec) + '\n');
          },
          !!opts.overwrite,
        );
      } else {
        await writeStreamAtomic(
          p.target,
          async (w) => {
            for await (const chunk of (await reader.openStream(p.entry)) as AsyncIterable<Buffer>) await w(chunk);
          },
          !!opts.overwrite,
        );
      }
      written.push(p.target);
    }
    return { files: written };
  } finally {
    await reader.close();
  }
}

/** Objects of a JSON-lines file (e.g. unpacked passages), one per non-blank line. */
export async function* readJsonLines(file: string): AsyncGenerator<JsonObject> {
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    if (line.trim() === '') continue;
    try {
      yield JSON.parse(line) as JsonObject;
    } catch (e) {
      throw new AgentVaultError('json-syntax', `${file}:${n}: invalid JSON: ${errorMessage(e)}`, { location: { file, line: n } });
    }
  }
}
