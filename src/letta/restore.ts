/**
 * Restore of Letta agents into a running Letta database, from a snapshot archive (written by
 * `exportAgents` or `pack`) or from a plain agent file (.af v1 — upgraded —, v2, double-encoded
 * v2). docs/RESTORE.md is the user-facing description; the rules in short:
 *
 * - Checksums of an archive are verified BEFORE the transaction opens (a damaged archive changes
 *   nothing); the same pass keeps each agent file without its messages and checks the messages.
 *   Then ONE transaction: the plan is computed from the target as it is inside that transaction,
 *   the guards run, and every table is written in an order that satisfies every foreign key:
 *   small tables with set-based inserts, messages / passages / passage tags with COPY, streamed
 *   from the archive in batches (no agent file is held whole; ./copy.ts, ./rows.ts). Any failure
 *   rolls everything back.
 * - Encrypted archives are read with the key given (`decrypt`); their secret values
 *   (`secrets/` entries) are written into agent_environment_variables.value (value_enc NULL).
 * - Conflict: an agent of the source whose original database id exists in the target; for
 *   sources without database ids (plain .af files, packed archives) or when new ids are asked
 *   for, an agent of the target organization with the same name. `onConflict` decides:
 *   fail (refuse the whole restore), skip (leave the existing agent), replace (delete it and
 *   what only it owned, then restore), copy (restore beside it with new ids and a name suffix).
 * - Ids: original ids are kept where they are free; new `<prefix>-<uuid4>` ids where they are
 *   not (or for copies), with every reference rewritten (message_ids, block links, group
 *   agent_ids, file links, approval ids).
 * - Tools are shared by name within an organization: an existing tool of the same name is used
 *   as is (`tools: 'keep'`) or overwritten with the archived definition (`'replace'`).
 * - Guards: the target's Letta revision and the source's must be equal or both in the
 *   compatible list (./compat.ts), unless `forceSchema`; archival passages whose embedding model
 *   or dimension is not among the target's existing passages/archives are refused unless
 *   `allowEmbeddingMismatch`. Both messages name both sides.
 */
import { randomBytes } from 'node:crypto';
import { AgentVaultError, errorMessage, type ErrorKind, type ErrorRemedy } from '../core/errors';
import type { Db, Queryable } from '../db/types';
import { readAgentFile, toV2, parseAgentFileBytes } from '../format/af';
import { AgentFileSplitter } from '../format/af-stream';
import { openArchive, type ArchiveReader, type ManifestAgent } from '../format/archive';
import { noKeyError, type DecryptOptions } from '../format/crypto';
import type { EntryStreams } from '../format/entry-stream';
import { passageBatches, rawPassageBatch } from '../format/passage-stream';
import { verifyRangesInWorker } from '../format/verify-worker';
import type { AgentFileV1, AgentFileV2, AgentV2, Json } from '../format/types';
import { mergeAgentFiles } from '../format/pack';
import { checkV2References } from '../format/validate';
import { isArchivePath } from '../format/validate-any';
import { COMPATIBLE_REVISIONS, isCompatibleRevision } from './compat';
import { DEFAULT_ORG_ID, DEFAULT_USER_ID } from './ddl';
import { AV_EXT } from './export';
import { binaryKinds, CopyBinary, CopyPump, copySql, CopyText, COPY_BATCH_BYTES, TimestampReader } from './copy';
import { checkMessage, MessageRows, MESSAGE_COPY_COLUMNS, newMessageStats, PassageRows, PASSAGE_COPY_COLUMNS, PASSAGE_COPY_KINDS, PASSAGE_TAG_COPY_COLUMNS, type MessageStats } from './rows';
import { bulkInsert, describeWriteError, loadColumns, newId, qi, readLettaInfo, type ColumnInfo, type LettaDbInfo } from './sql';

export type OnConflict = 'fail' | 'skip' | 'replace' | 'copy';
export type ToolsMode = 'keep' | 'replace';

/** The tables a restore writes, in the order it writes them (each one is an `onStep` step). */
export const RESTORE_STEPS = [
  'delete',
  'tools',
  'mcp_server',
  'sources',
  'block',
  'blocks_tags',
  'identities',
  'agents',
  'files',
  'file_contents',
  'messages',
  'blocks_agents',
  'tools_agents',
  'sources_agents',
  'agents_tags',
  'identities_agents',
  'identities_blocks',
  'files_agents',
  'agent_environment_variables',
  'groups',
  'groups_agents',
  'groups_blocks',
  'archives',
  'archives_agents',
  'archival_passages',
  'passage_tags',
] as const;
export type RestoreStep = (typeof RESTORE_STEPS)[number];

export interface RestoreOptions {
  /** Agents to restore: original database ids, file-local ids (agent-0) or names. Default: all. */
  agents?: string[];
  onConflict?: OnConflict;
  tools?: ToolsMode;
  dryRun?: boolean;
  forceSchema?: boolean;
  allowEmbeddingMismatch?: boolean;
  /** Target organization / acting user (default: Letta's default org and user). */
  organizationId?: string;
  userId?: string;
  /** Appended to the name of a copy (default "_copy", like Letta's import). */
  nameSuffix?: string;
  /** Give every object a new id (what Letta's import does); conflicts are then by name. */
  newIds?: boolean;
  /** With newIds: do not treat an existing agent of the same name as a conflict (Letta's import allows duplicates). */
  allowDuplicateNames?: boolean;
  /**
   * The passphrase or key of an encrypted archive (what openArchive takes). Without it an
   * encrypted archive is refused (error 'no-key', kind 'usage'); a wrong one is 'wrong-key' (kind 'failed').
   */
  decrypt?: DecryptOptions;
  /**
   * Write the secret values an encrypted archive carries (its `secrets/` entries) into
   * agent_environment_variables.value (default true). false: like a plain archive (redacted).
   */
  secrets?: boolean;
  /** Awaited before each table is written (tests pause here to break the connection). */
  onStep?: (step: RestoreStep) => void | Promise<void>;
  onProgress?: (e: { step: RestoreStep; rows: number }) => void | Promise<void>;
}

export type PlanAction = 'create' | 'rename' | 'skip' | 'replace' | 'conflict';

export interface PlanAgent {
  /** original database id when the source has one, else the file-local id */
  source_id: string;
  file_id: string;
  name: string | null;
  action: PlanAction;
  /** id and name the agent will have in the target (null when skipped / in conflict) */
  target_id: string | null;
  target_name: string | null;
  /** the target agent this one conflicts with */
  existing_id: string | null;
  conflict_by: 'id' | 'name' | null;
  counts: { messages: number; in_context_messages: number; blocks: number; tools: number; passages: number };
}

export interface PlanRefusal {
  code: 'conflict' | 'revision-mismatch' | 'embedding-mismatch';
  message: string;
  kind: ErrorKind;
  /** what lifts the refusal (the CLI names its flag) */
  remedy: ErrorRemedy;
}

export interface RestorePlan {
  source: {
    path: string | null;
    kind: 'archive' | 'agent-file';
    format: string | null;
    revision: string | null;
    source_kind: string | null;
    /** an encrypted archive (read with the key given) */
    encrypted: boolean;
    /** secret values (environment variables) the restore writes: only an encrypted archive has them */
    secret_values: number;
  };
  target: { database: string; schema: string; revision: string; organization_id: string; user_id: string };
  dry_run: boolean;
  agents: PlanAgent[];
  /** agent names per outcome (what the CLI prints first) */
  summary: { created: string[]; renamed: string[]; skipped: string[]; replaced: string[]; conflicts: string[] };
  tools: Array<{ name: string; action: 'create' | 'keep' | 'replace'; target_id: string }>;
  groups: Array<{ source_id: string; action: 'create' | 'link' | 'drop'; target_id: string | null }>;
  /** objects deleted before writing (replace) */
  deletes: { agents: string[]; groups: string[]; blocks: string[]; archives: string[] };
  guards: {
    /** interchange: the source is an agent file, upgraded on the way in; only the target's revision is checked */
    revision: { source: string | null; target: string; compatible: boolean; forced: boolean; interchange: boolean };
    embedding: Array<{ agent: string; model: string | null; dim: number | null; target: Array<{ model: string | null; dim: number | null }>; ok: boolean; forced: boolean }>;
  };
  /**
   * What the source holds that a round trip does not carry (issue 12: nothing dropped without a
   * word): skills are not written (Letta keeps no skills table this tool writes); blocks and tools
   * that no restored agent, group or identity attaches are written as free-standing rows, which an
   * export of the agents does not contain.
   */
  not_carried: {
    skills: { count: number; names: string[] };
    unattached_blocks: { count: number; labels: string[] };
    unattached_tools: { count: number; names: string[] };
  };
  warnings: string[];
  /** reasons the restore would be refused (empty = it would run) */
  refusals: PlanRefusal[];
}

export interface RestoreResult {
  plan: RestorePlan;
  /** source agent (source_id) → target agent id, for the agents written */
  agentIds: Record<string, string>;
  /** rows written per table */
  rows: Partial<Record<RestoreStep, number>>;
}

export type RestoreSource = string | { doc: AgentFileV2 | AgentFileV1; name?: string };

// ---------------------------------------------------------------------------------------------
// the source

type Obj = Record<string, any>;
const isObj = (v: unknown): v is Obj => !!v && typeof v === 'object' && !Array.isArray(v);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const num = (v: unknown): number | null => (v === null || v === undefined || v === '' ? null : Number.isFinite(Number(v)) ? Number(v) : null);

interface SrcObject {
  fileId: string;
  dbId: string | null;
  obj: Obj;
  extra: Obj;
}

interface SrcAgent extends SrcObject {
  name: string | null;
  /** the document (archive entry) the agent is in, and its position in that document's agents */
  doc: number;
  slot: number;
  manifest: ManifestAgent | null;
  messageCount: number;
  inContext: string[];
  /** ids of messages other rows refer to: the in-context ids and the approval targets */
  refs: Set<string>;
  /** approval_request_id values that name a message of this agent */
  approvalRefs: Set<string>;
  archive: Obj | null;
  environment: Obj[];
  identities: Obj[];
  passages: number;
}

/** Raw messages (JSON objects), message k = bufs[k] bytes starts[k]..ends[k]. */
interface RawMessages {
  length: number;
  bufs: Buffer[];
  starts: number[];
  ends: number[];
}

interface SourceModel {
  path: string | null;
  kind: 'archive' | 'agent-file';
  format: string | null;
  revision: string | null;
  sourceKind: string | null;
  reader: ArchiveReader | null;
  streams: EntryStreams | null;
  encrypted: boolean;
  /** secret values of an encrypted archive (secrets/ entries): manifest agent id → key → variable */
  secrets: Map<string, Map<string, Obj>>;
  agents: SrcAgent[];
  blocks: Map<string, SrcObject>;
  tools: Map<string, SrcObject>;
  sources: Map<string, SrcObject>;
  files: Map<string, SrcObject>;
  groups: Map<string, SrcObject>;
  mcp: Map<string, SrcObject>;
  /** names (or ids) of the skills over all documents, each once */
  skills: string[];
  /** file id → original db id, over all documents (agents of other slices included) */
  dbIds: Map<string, string>;
  /** file id → columns the .af has no field for (agent_vault.rows) */
  rows: Map<string, Obj>;
  /** The agent's messages in file order, in batches (streamed from an archive, never held whole). */
  messages(a: SrcAgent): AsyncGenerator<RawMessages>;
  close(): Promise<void>;
}

function restoreInvalid(where: string, message: string, pointer?: string): AgentVaultError {
  return new AgentVaultError('restore-invalid', `${where}: ${message}`, { location: { file: where, pointer }, kind: 'failed' });
}

const MESSAGE_BATCH = 1000;

function hasKey(d: DecryptOptions | undefined): d is DecryptOptions {
  return !!d && (d.passphrase !== undefined || d.key !== undefined);
}

async function openSource(src: RestoreSource, decrypt: DecryptOptions | undefined): Promise<SourceModel> {
  if (typeof src !== 'string') {
    const parsed = { format: (('agents' in src.doc ? 'v2' : 'v1') as 'v1' | 'v2'), doc: src.doc };
    const doc = toV2(parsed);
    return inMemoryModel(doc, { path: null, format: parsed.format, name: src.name ?? 'agent file' });
  }
  if (await isArchivePath(src)) return openArchiveSource(src, decrypt);
  const parsed = await readAgentFile(src);
  const doc = toV2(parsed);
  return inMemoryModel(doc, { path: src, format: parsed.format, name: src });
}

/** A plain agent file, held whole (it is small: Letta's export keeps 50 messages). */
function inMemoryModel(doc: AgentFileV2, info: { path: string | null; format: string; name: string }): SourceModel {
  const agentsOf = (): AgentV2[] => (Array.isArray(doc.agents) ? doc.agents : []);
  const serialised = (a: AgentV2): RawMessages[] => {
    const msgs: unknown[] = Array.isArray(a.messages) ? a.messages : [];
    const out: RawMessages[] = [];
    for (let i = 0; i < msgs.length; i += MESSAGE_BATCH) {
      const batch: RawMessages = { length: 0, bufs: [], starts: [], ends: [] };
      for (const m of msgs.slice(i, i + MESSAGE_BATCH)) {
        const b = Buffer.from(JSON.stringify(m ?? null), 'utf8');
        batch.bufs.push(b);
        batch.starts.push(0);
        batch.ends.push(b.length);
        batch.length++;
      }
      out.push(batch);
    }
    return out;
  };
  const stats = agentsOf().map((a, ai) => {
    const st = newMessageStats();
    if (!isObj(a)) return st;
    if (a.messages !== undefined && a.messages !== null && !Array.isArray(a.messages)) throw restoreInvalid(info.name, `agent "${a.id}": "messages" must be an array`, `/agents/${ai}/messages`);
    for (const batch of serialised(a)) for (let k = 0; k < batch.length; k++) checkMessage(batch.bufs[k], batch.starts[k], batch.ends[k], st, info.name, String(a.id));
    return st;
  });
  return buildModel([doc], [stats], {
    path: info.path,
    kind: 'agent-file',
    format: info.format,
    revision: revisionOf(doc),
    sourceKind: 'agent-file',
    reader: null,
    streams: null,
    name: info.name,
    messages: async function* (a) {
      yield* serialised(agentsOf()[a.slot]);
    },
  });
}

/**
 * An archive: one pass over every entry before anything else — each entry against its size,
 * CRC-32 and sha256 (a damaged archive is refused, exit code 1, before any transaction opens), and
 * for agent files the document without its messages plus a check of every message (ids, roles,
 * references). The messages are streamed again when they are written; no agent file is held whole.
 */
async function openArchiveSource(file: string, decrypt: DecryptOptions | undefined): Promise<SourceModel> {
  const reader = await openArchive(file, { decrypt: hasKey(decrypt) ? decrypt : undefined });
  try {
    if (reader.encrypted && !reader.decryptable) throw noKeyError(file);
    const streams = reader.entryStreams();
    const m = reader.manifest;
    const bad: Array<{ entry: string; error: string }> = [];
    let invalidDoc: unknown = null;
    const docs: AgentFileV2[] = [];
    const stats: MessageStats[][] = [];
    const agentEntries = new Set(m.agents.map((a) => a.entry));
    // the other entries (vectors, mostly) are hashed on a worker thread while the agent files are read here
    const others = m.entries.filter((e) => !agentEntries.has(e.name));
    const otherBytes = others.reduce((n, e) => n + e.size, 0);
    const othersChecked = otherBytes >= WORKER_MIN_BYTES ? checkOnWorker(streams, file, others.map((e) => e.name)) : null;
    othersChecked?.catch(() => undefined);
    for (const a of m.agents) {
      const where = `${file}!${a.entry}`;
      const splitter = new AgentFileSplitter(where);
      const st: MessageStats[] = [];
      let failed: unknown = null;
      try {
        for await (const chunk of streams.stream(a.entry, { verify: 'sha256' })) {
          if (failed) continue; // keep reading: a damaged entry is reported as such
          try {
            splitter.push(chunk);
            const got = splitter.take();
            for (let k = 0; k < got.length; k++) {
              const ai = got.agents[k];
              checkMessage(got.bufs[k], got.starts[k], got.ends[k], (st[ai] ??= newMessageStats()), where, `agents[${ai}]`);
            }
          } catch (e) {
            failed = e;
          }
        }
      } catch (e) {
        bad.push({ entry: a.entry, error: errorMessage(e) });
        continue;
      }
      if (!failed) {
        try {
          const parsed = parseAgentFileBytes(splitter.end(), where);
          if (parsed.format !== 'v2') throw restoreInvalid(where, `archive agent entries must be plain .af v2, this one is ${parsed.format}`);
          docs.push(parsed.doc as AgentFileV2);
          stats.push(st);
          continue;
        } catch (e) {
          failed = e;
        }
      }
      invalidDoc ??= failed;
    }
    if (othersChecked) bad.push(...(await othersChecked));
    else {
      for (const e of others) {
        try {
          for await (const _ of streams.stored(e.name, { verify: 'sha256' })) {
            /* drain: the stream checks */
          }
        } catch (err) {
          bad.push({ entry: e.name, error: errorMessage(err) });
        }
      }
    }
    if (bad.length) {
      throw new AgentVaultError('checksum', `${file}: ${bad.length === 1 ? 'an entry is' : `${bad.length} entries are`} damaged; nothing was restored. ${bad.map((b) => b.error).join('; ')}`, {
        location: { file, entry: bad[0].entry },
        kind: 'failed',
        hint: 'use another copy of the archive',
      });
    }
    if (invalidDoc) throw invalidDoc;
    // secret values (only encrypted archives have secrets/ entries)
    const secrets = new Map<string, Map<string, Obj>>();
    for (const e of m.entries) {
      if (!e.name.startsWith('secrets/')) continue;
      const chunks: Buffer[] = [];
      for await (const c of streams.stream(e.name)) chunks.push(c);
      let v: unknown;
      try {
        v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        throw restoreInvalid(`${file}!${e.name}`, `invalid JSON: ${errorMessage(err)}`);
      }
      if (!isObj(v) || typeof v.agent_id !== 'string' || !Array.isArray(v.variables)) throw restoreInvalid(`${file}!${e.name}`, 'not a secrets entry ({ agent_id, variables: [...] })');
      const vars = new Map<string, Obj>();
      for (const x of v.variables) if (isObj(x) && typeof x.key === 'string' && typeof x.value === 'string') vars.set(x.key, x);
      secrets.set(v.agent_id, vars);
    }
    const model = buildModel(docs, stats, {
      path: file,
      kind: 'archive',
      format: m.source?.file_format ?? 'v2',
      revision: m.source?.letta_revision ?? revisionOf(docs[0]),
      sourceKind: m.source?.kind ?? null,
      reader,
      streams,
      name: file,
      messages: async function* (a) {
        const entry = m.agents[a.doc].entry;
        const where = `${file}!${entry}`;
        const splitter = new AgentFileSplitter(where, a.slot);
        for await (const chunk of streams.stream(entry)) {
          splitter.push(chunk);
          const got = splitter.take();
          if (got.length) yield got;
        }
        splitter.end();
        if (splitter.messageCounts[a.slot] !== a.messageCount) throw restoreInvalid(where, `agent "${a.fileId}" has ${splitter.messageCounts[a.slot]} messages now, ${a.messageCount} when it was checked`);
      },
    });
    model.encrypted = reader.encrypted;
    model.secrets = secrets;
    model.agents.forEach((a) => {
      a.manifest = m.agents[a.doc] ?? null;
      a.passages = a.manifest?.passages_entry ? (a.manifest.counts?.passages ?? 0) : 0;
    });
    return model;
  } catch (e) {
    await reader.close();
    throw e;
  }
}

/** Below this many bytes of other entries, a worker thread costs more than it saves. */
const WORKER_MIN_BYTES = 16 * 1024 * 1024;

/** Checksums of these entries on a worker thread; the damaged ones, as the pre-pass reports them. */
async function checkOnWorker(streams: EntryStreams, file: string, names: string[]): Promise<Array<{ entry: string; error: string }>> {
  const bad: Array<{ entry: string; error: string }> = [];
  const ranges = [];
  for (const name of names) {
    try {
      ranges.push(await streams.range(name));
    } catch (e) {
      bad.push({ entry: name, error: errorMessage(e) });
    }
  }
  let results: Array<{ name: string; error: string | null }>;
  try {
    results = await verifyRangesInWorker(file, ranges);
  } catch {
    // no worker (or it failed to read): check here instead
    results = [];
    for (const r of ranges) {
      try {
        for await (const _ of streams.stored(r.name, { verify: 'sha256' })) {
          /* drain: the stream checks */
        }
      } catch (e) {
        bad.push({ entry: r.name, error: errorMessage(e) });
      }
    }
  }
  for (const r of results) if (r.error) bad.push({ entry: r.name, error: streams.damaged(r.name, r.error).message });
  return bad;
}

function revisionOf(doc: AgentFileV2 | undefined): string | null {
  const r = doc?.metadata?.revision_id;
  return typeof r === 'string' && r ? r : null;
}

/**
 * The reference checks of `agent-vault validate` (src/format/validate.ts): a dangling reference is
 * invalid input (exit code 1) before anything is planned. An archive's entries are checked
 * together, as `verify` and `drill` do (an entry may name the other members of a group). Message
 * references are left to the restore's own checks: an archive's documents are read without their
 * messages.
 */
function checkReferences(docs: AgentFileV2[], name: string): void {
  if (!docs.length || !docs.every((d) => isObj(d) && Array.isArray(d.agents))) return; // reported below, with its pointer
  let merged: AgentFileV2;
  try {
    merged = docs.length === 1 ? docs[0] : mergeAgentFiles(docs);
  } catch (e) {
    throw restoreInvalid(name, `the agent files cannot be read together: ${errorMessage(e)}`);
  }
  const bad = checkV2References(merged).filter((f) => f.severity === 'error' && f.code === 'dangling-reference' && !/\/(messages|in_context_message_ids)(\/|$)/.test(f.pointer ?? ''));
  if (bad.length) {
    throw restoreInvalid(name, `${bad.length} dangling reference${bad.length === 1 ? '' : 's'} (as agent-vault validate reports): ${bad.slice(0, 3).map((f) => `${f.message}${f.pointer ? ` (at ${f.pointer})` : ''}`).join('; ')}${bad.length > 3 ? `; and ${bad.length - 3} more` : ''}; nothing was restored`, bad[0].pointer);
  }
}

/** The source model from the documents (without messages, or with them for a plain file) and the checks of their messages. */
function buildModel(
  docs: AgentFileV2[],
  stats: MessageStats[][],
  info: {
    path: string | null;
    kind: 'archive' | 'agent-file';
    format: string | null;
    revision: string | null;
    sourceKind: string | null;
    reader: ArchiveReader | null;
    streams: EntryStreams | null;
    name: string;
    messages: (a: SrcAgent) => AsyncGenerator<RawMessages>;
  },
): SourceModel {
  const model: SourceModel = {
    path: info.path,
    kind: info.kind,
    format: info.format,
    revision: info.revision,
    sourceKind: info.sourceKind,
    reader: info.reader,
    streams: info.streams,
    encrypted: false,
    secrets: new Map(),
    agents: [],
    blocks: new Map(),
    tools: new Map(),
    sources: new Map(),
    files: new Map(),
    groups: new Map(),
    mcp: new Map(),
    skills: [],
    dbIds: new Map(),
    rows: new Map(),
    messages: info.messages,
    close: async () => {
      await info.reader?.close();
    },
  };
  checkReferences(docs, info.name);
  docs.forEach((doc, di) => {
    const where = info.reader ? `${info.name}!${info.reader.manifest.agents[di]?.entry}` : info.name;
    if (!isObj(doc) || !Array.isArray(doc.agents)) throw restoreInvalid(where, 'not an agent file v2 (no "agents" list)', '/agents');
    const ext = isObj((doc as Obj)[AV_EXT]) ? ((doc as Obj)[AV_EXT] as Obj) : {};
    const ids: Obj = isObj(ext.ids) ? ext.ids : {};
    const rows: Obj = isObj(ext.rows) ? ext.rows : {};
    for (const [f, d] of Object.entries(ids)) if (typeof d === 'string' && !model.dbIds.has(f)) model.dbIds.set(f, d);
    for (const [f, r] of Object.entries(rows)) if (isObj(r) && !model.rows.has(f)) model.rows.set(f, r);
    const add = (map: Map<string, SrcObject>, key: string, list: unknown) => {
      if (list === undefined || list === null) return;
      if (!Array.isArray(list)) throw restoreInvalid(where, `"${key}" must be an array`, `/${key}`);
      list.forEach((o, i) => {
        if (!isObj(o) || typeof o.id !== 'string') throw restoreInvalid(where, `${key}[${i}] has no string "id"`, `/${key}/${i}`);
        if (!map.has(o.id)) map.set(o.id, { fileId: o.id, dbId: typeof ids[o.id] === 'string' ? ids[o.id] : null, obj: o, extra: isObj(rows[o.id]) ? rows[o.id] : {} });
      });
    };
    add(model.blocks, 'blocks', doc.blocks);
    add(model.tools, 'tools', doc.tools);
    add(model.sources, 'sources', doc.sources);
    add(model.files, 'files', doc.files);
    add(model.groups, 'groups', doc.groups);
    // groups whose members span several entries of an archive (docs/FORMAT.md, agent_vault.groups)
    add(model.groups, `${AV_EXT}.groups`, ext.groups);
    add(model.mcp, 'mcp_servers', doc.mcp_servers);
    for (const [k, sk] of (Array.isArray(doc.skills) ? doc.skills : []).entries()) {
      const label = isObj(sk) ? (typeof sk.name === 'string' ? sk.name : typeof sk.id === 'string' ? sk.id : `skills[${k}]`) : `skills[${k}]`;
      if (!model.skills.includes(label)) model.skills.push(label);
    }
    doc.agents.forEach((a: AgentV2, ai: number) => {
      const p = `/agents/${ai}`;
      if (!isObj(a) || typeof a.id !== 'string') throw restoreInvalid(where, `agents[${ai}] has no string "id"`, `${p}/id`);
      if (model.agents.some((x) => x.fileId === a.id)) throw restoreInvalid(where, `agent id "${a.id}" occurs twice`, `${p}/id`);
      const st = stats[di]?.[ai] ?? newMessageStats();
      const inContext = strs(a.in_context_message_ids);
      inContext.forEach((id, k) => {
        if (!st.ids.has(id)) throw restoreInvalid(where, `agent "${a.id}": in_context_message_ids[${k}] names message "${id}", which is not one of the agent's messages`, `${p}/in_context_message_ids/${k}`);
      });
      const approvalRefs = new Set([...st.approvalRefs].filter((r) => st.ids.has(r)));
      st.ids.clear(); // only needed for the checks above
      const { messages: _m, ...rest } = a as Obj;
      model.agents.push({
        fileId: a.id,
        dbId: typeof ids[a.id] === 'string' ? ids[a.id] : null,
        obj: rest,
        extra: isObj(rows[a.id]) ? rows[a.id] : {},
        name: typeof a.name === 'string' ? a.name : null,
        doc: di,
        slot: ai,
        manifest: null,
        messageCount: st.count,
        inContext,
        refs: new Set([...inContext, ...approvalRefs]),
        approvalRefs,
        archive: isObj(ext.archive) ? ext.archive : null,
        environment: Array.isArray(ext.environment) ? ext.environment.filter(isObj) : [],
        identities: Array.isArray(ext.identities) ? ext.identities.filter(isObj) : [],
        passages: 0,
      });
    });
  });
  if (model.agents.length === 0) throw restoreInvalid(info.name, 'contains no agents');
  // references every write needs
  for (const a of model.agents) {
    const where = `${info.name} (agent "${a.fileId}")`;
    for (const b of strs(a.obj.block_ids)) if (!model.blocks.has(b)) throw restoreInvalid(where, `block_ids names block "${b}", which is not in the file`);
    for (const t of strs(a.obj.tool_ids)) if (!model.tools.has(t)) throw restoreInvalid(where, `tool_ids names tool "${t}", which is not in the file`);
    for (const s of [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)]) if (!model.sources.has(s)) throw restoreInvalid(where, `source_ids names source "${s}", which is not in the file`);
    for (const fa of Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []) {
      if (!isObj(fa) || !model.files.has(fa.file_id) || !model.sources.has(fa.source_id)) throw restoreInvalid(where, `files_agents names file "${fa?.file_id}" / source "${fa?.source_id}", which are not in the file`);
    }
    const labels = new Set<string>();
    for (const b of strs(a.obj.block_ids)) {
      const label = model.blocks.get(b)!.obj.label;
      if (labels.has(label)) throw restoreInvalid(where, `two of its blocks have the label "${label}" (Letta allows one block per label per agent)`);
      labels.add(label);
    }
  }
  for (const f of model.files.values()) if (!model.sources.has(f.obj.source_id)) throw restoreInvalid(info.name, `file "${f.fileId}" names source "${f.obj.source_id}", which is not in the file`);
  return model;
}

// ---------------------------------------------------------------------------------------------
// planning

interface Assign {
  agents: Map<string, string>; // agent file id → target id (restored agents)
  agentRef: Map<string, string>; // any agent file id → target id (restored, skipped-existing, present in target)
  copy: Set<string>; // agent file ids restored as copies
  keepIds: Set<string>; // agent file ids that keep their original id (messages etc. keep theirs too)
  blocks: Map<string, string>;
  linkedBlocks: Set<string>; // block file ids that map to an existing block (no insert)
  blockLabels: Map<string, string>; // target block id → label (for linked blocks)
  tools: Map<string, string>;
  toolInsert: Set<string>;
  toolUpdate: Set<string>;
  mcp: Map<string, string>;
  mcpInsert: Set<string>;
  sources: Map<string, string>;
  sourceInsert: Set<string>;
  /** new names of folders whose name was taken (Letta's import adds "_<8 hex>") */
  sourceNames: Map<string, string>;
  files: Map<string, string>;
  fileInsert: Set<string>;
  groups: Map<string, string>;
  groupInsert: Set<string>;
  identities: Map<string, string>; // identity db id → target id
  identityInsert: Set<string>;
  archives: Map<string, string>; // agent file id → target archive id
  archiveInsert: Set<string>; // agent file ids whose archive row is inserted (and passages written)
  archiveKeepsIds: Set<string>;
  envCarry: Map<string, Map<string, { value: string; value_enc: string | null }>>; // agent file id → key → value
}

interface Planned {
  plan: RestorePlan;
  restored: SrcAgent[];
  assign: Assign;
  info: LettaDbInfo;
  org: string;
  user: string;
}

async function existing(q: Queryable, table: string, ids: Iterable<string>): Promise<Set<string>> {
  const list = [...new Set(ids)];
  if (list.length === 0) return new Set();
  const r = await q.query<{ id: string }>(`SELECT id FROM ${qi(table)} WHERE id = ANY($1::text[])`, [list]);
  return new Set(r.rows.map((x) => x.id));
}

function selectAgents(model: SourceModel, wanted: string[] | undefined): SrcAgent[] {
  if (!wanted || wanted.length === 0) return model.agents;
  const out: SrcAgent[] = [];
  const missing: string[] = [];
  for (const w of wanted) {
    const hits = model.agents.filter((a) => a.dbId === w || a.fileId === w || a.name === w);
    if (hits.length === 0) missing.push(w);
    for (const h of hits) if (!out.includes(h)) out.push(h);
  }
  if (missing.length) {
    const avail = model.agents.map((a) => `${a.name ?? '(unnamed)'} (${a.dbId ?? a.fileId})`).join(', ');
    throw new AgentVaultError('agent-not-found', `${model.path ?? 'the source'} has no agent ${missing.map((m) => JSON.stringify(m)).join(', ')}; it holds: ${avail}`, { kind: 'usage' });
  }
  return model.agents.filter((a) => out.includes(a));
}

async function computePlan(tx: Queryable, model: SourceModel, opts: RestoreOptions, where: string): Promise<Planned> {
  const info = await readLettaInfo(tx, where);
  const org = opts.organizationId ?? DEFAULT_ORG_ID;
  const user = opts.userId ?? DEFAULT_USER_ID;
  const orgRow = await tx.query(`SELECT id FROM organizations WHERE id = $1`, [org]);
  if (orgRow.rows.length === 0) throw new AgentVaultError('restore-target', `The target database has no organization ${org}.`, { kind: 'usage', hint: 'restore into an existing organization' });
  const userRow = await tx.query<{ organization_id: string }>(`SELECT organization_id FROM users WHERE id = $1`, [user]);
  if (userRow.rows.length === 0) throw new AgentVaultError('restore-target', `The target database has no user ${user}.`, { kind: 'usage' });
  if (userRow.rows[0].organization_id !== org) throw new AgentVaultError('restore-target', `User ${user} belongs to organization ${userRow.rows[0].organization_id}, not to ${org}.`, { kind: 'usage' });

  const onConflict = opts.onConflict ?? 'fail';
  const newIds = !!opts.newIds;
  const suffix = opts.nameSuffix ?? '_copy';
  const selected = selectAgents(model, opts.agents);
  const warnings: string[] = [];
  const refusals: PlanRefusal[] = [];
  const dbOf = (a: SrcAgent) => (newIds ? null : a.dbId);

  // conflicts
  const byId = await tx.query<{ id: string; name: string | null }>(`SELECT id, name FROM agents WHERE id = ANY($1::text[])`, [selected.map(dbOf).filter((x): x is string => !!x)]);
  const existingById = new Map(byId.rows.map((r) => [r.id, r]));
  const names = selected.filter((a) => !dbOf(a) && a.name !== null).map((a) => a.name!);
  const byName = names.length && !opts.allowDuplicateNames
    ? await tx.query<{ id: string; name: string }>(`SELECT id, name FROM agents WHERE organization_id = $1 AND NOT is_deleted AND name = ANY($2::text[]) ORDER BY created_at NULLS FIRST, id`, [org, names])
    : { rows: [] as { id: string; name: string }[] };
  const existingByName = new Map<string, string[]>();
  for (const r of byName.rows) existingByName.set(r.name, [...(existingByName.get(r.name) ?? []), r.id]);

  const planAgents: PlanAgent[] = [];
  const assign: Assign = {
    agents: new Map(),
    agentRef: new Map(),
    copy: new Set(),
    keepIds: new Set(),
    blocks: new Map(),
    linkedBlocks: new Set(),
    blockLabels: new Map(),
    tools: new Map(),
    toolInsert: new Set(),
    toolUpdate: new Set(),
    mcp: new Map(),
    mcpInsert: new Set(),
    sources: new Map(),
    sourceInsert: new Set(),
    sourceNames: new Map(),
    files: new Map(),
    fileInsert: new Set(),
    groups: new Map(),
    groupInsert: new Set(),
    identities: new Map(),
    identityInsert: new Set(),
    archives: new Map(),
    archiveInsert: new Set(),
    archiveKeepsIds: new Set(),
    envCarry: new Map(),
  };
  const deleteAgents: string[] = [];
  const usedNames = new Set<string>();
  const copies: SrcAgent[] = [];
  for (const a of selected) {
    const db = dbOf(a);
    const hitId = db ? existingById.get(db) : undefined;
    const hitNames = !db && a.name !== null ? existingByName.get(a.name) ?? [] : [];
    const existingId = hitId ? hitId.id : hitNames[0] ?? null;
    const counts = {
      messages: a.messageCount,
      in_context_messages: a.inContext.length,
      blocks: strs(a.obj.block_ids).length,
      tools: strs(a.obj.tool_ids).length,
      passages: a.passages,
    };
    const pa: PlanAgent = {
      source_id: a.dbId ?? a.fileId,
      file_id: a.fileId,
      name: a.name,
      action: 'create',
      target_id: null,
      target_name: a.name,
      existing_id: existingId,
      conflict_by: hitId ? 'id' : hitNames.length ? 'name' : null,
      counts,
    };
    if (!existingId) {
      pa.target_id = db ?? newId('agent');
      if (db) assign.keepIds.add(a.fileId);
    } else if (onConflict === 'fail') {
      pa.action = 'conflict';
      pa.target_name = null;
    } else if (onConflict === 'skip') {
      pa.action = 'skip';
      pa.target_name = null;
      if (hitId) assign.agentRef.set(a.fileId, hitId.id);
    } else if (onConflict === 'replace') {
      pa.action = 'replace';
      if (hitId) {
        pa.target_id = hitId.id;
        assign.keepIds.add(a.fileId);
        deleteAgents.push(hitId.id);
      } else {
        // Letta allows several agents with one name: only the oldest is replaced
        pa.target_id = newId('agent');
        deleteAgents.push(hitNames[0]);
        if (hitNames.length > 1) warnings.push(`${hitNames.length} agents are named ${JSON.stringify(a.name)}; only the oldest (${hitNames[0]}) is replaced`);
      }
    } else {
      pa.action = 'rename';
      pa.target_id = newId('agent');
      assign.copy.add(a.fileId);
      copies.push(a);
    }
    if (pa.target_id) {
      assign.agents.set(a.fileId, pa.target_id);
      assign.agentRef.set(a.fileId, pa.target_id);
    }
    planAgents.push(pa);
  }
  // names for copies: "<name><suffix>", then "<name><suffix>2", … — free in the target and in this restore
  if (copies.length) {
    const candidates = copies.flatMap((a) => Array.from({ length: 50 }, (_, i) => `${a.name ?? 'agent'}${suffix}${i === 0 ? '' : i + 1}`));
    const taken = await tx.query<{ name: string }>(`SELECT name FROM agents WHERE organization_id = $1 AND name = ANY($2::text[])`, [org, candidates]);
    for (const t of taken.rows) usedNames.add(t.name);
    for (const a of copies) {
      const pa = planAgents.find((p) => p.file_id === a.fileId)!;
      let name: string | null = null;
      for (let i = 0; i < 50 && name === null; i++) {
        const c = `${a.name ?? 'agent'}${suffix}${i === 0 ? '' : i + 1}`;
        if (!usedNames.has(c)) name = c;
      }
      name ??= `${a.name ?? 'agent'}${suffix}-${pa.target_id!.slice(-8)}`;
      usedNames.add(name);
      pa.target_name = name;
    }
  }
  // agents of the source that are not restored but exist in the target under their id
  const others = model.agents.filter((a) => !assign.agentRef.has(a.fileId) && a.dbId && !newIds);
  const present = await existing(tx, 'agents', others.map((a) => a.dbId!));
  for (const a of others) if (present.has(a.dbId!) && !deleteAgents.includes(a.dbId!)) assign.agentRef.set(a.fileId, a.dbId!);
  for (const [f, d] of model.dbIds) if (f.startsWith('agent-') && !assign.agentRef.has(f) && !newIds && !model.agents.some((a) => a.fileId === f)) {
    if ((await existing(tx, 'agents', [d])).has(d) && !deleteAgents.includes(d)) assign.agentRef.set(f, d);
  }

  const conflicts = planAgents.filter((p) => p.action === 'conflict');
  if (conflicts.length) {
    refusals.push({
      code: 'conflict',
      message: `${conflicts.length === 1 ? 'An agent' : `${conflicts.length} agents`} already exist${conflicts.length === 1 ? 's' : ''} in the target: ${conflicts
        .map((c) => `${JSON.stringify(c.name)} (${c.conflict_by === 'id' ? `same id ${c.existing_id}` : `same name as ${c.existing_id}`})`)
        .join(', ')}. Nothing was restored; choose to skip, replace or copy them.`,
      kind: 'conflict',
      remedy: 'on-conflict',
    });
  }

  const restored = selected.filter((a) => assign.agents.has(a.fileId));
  const restoredSet = new Set(restored.map((a) => a.fileId));

  // what a replace deletes
  let deleteGroups: string[] = [];
  let deleteBlocks: string[] = [];
  let deleteArchives: string[] = [];
  if (deleteAgents.length) {
    deleteGroups = (
      await tx.query<{ id: string }>(`SELECT id FROM groups WHERE manager_agent_id = ANY($1::text[]) OR id IN (SELECT group_id FROM groups_agents WHERE agent_id = ANY($1::text[])) ORDER BY id`, [deleteAgents])
    ).rows.map((r) => r.id);
    deleteBlocks = (
      await tx.query<{ block_id: string }>(
        `SELECT block_id FROM blocks_agents WHERE agent_id = ANY($1::text[])
         EXCEPT SELECT block_id FROM blocks_agents WHERE NOT (agent_id = ANY($1::text[]))
         EXCEPT SELECT block_id FROM groups_blocks WHERE NOT (group_id = ANY($2::text[]))
         EXCEPT SELECT block_id FROM blocks_conversations bc JOIN conversations c ON c.id = bc.conversation_id WHERE NOT (c.agent_id = ANY($1::text[]))
         ORDER BY 1`,
        [deleteAgents, deleteGroups],
      )
    ).rows.map((r) => r.block_id);
    deleteArchives = (
      await tx.query<{ archive_id: string }>(
        `SELECT archive_id FROM archives_agents WHERE agent_id = ANY($1::text[]) EXCEPT SELECT archive_id FROM archives_agents WHERE NOT (agent_id = ANY($1::text[])) ORDER BY 1`,
        [deleteAgents],
      )
    ).rows.map((r) => r.archive_id);
    // secrets are redacted in archives: a replaced agent keeps its current values for the same keys
    const env = await tx.query<{ agent_id: string; key: string; value: string; value_enc: string | null }>(
      `SELECT agent_id, key, value, value_enc FROM agent_environment_variables WHERE agent_id = ANY($1::text[])`,
      [deleteAgents],
    );
    for (const pa of planAgents.filter((p) => p.action === 'replace')) {
      const m = new Map<string, { value: string; value_enc: string | null }>();
      for (const r of env.rows) if (r.agent_id === pa.existing_id) m.set(r.key, { value: r.value, value_enc: r.value_enc });
      if (m.size) assign.envCarry.set(pa.file_id, m);
    }
  }
  const freedBlocks = new Set(deleteBlocks);
  const freedGroups = new Set(deleteGroups);
  const freedArchives = new Set(deleteArchives);

  // objects the restored agents reference
  const wantBlocks = new Set<string>();
  const wantTools = new Set<string>();
  const wantSources = new Set<string>();
  const wantFiles = new Set<string>();
  for (const a of restored) {
    strs(a.obj.block_ids).forEach((b) => wantBlocks.add(b));
    strs(a.obj.tool_ids).forEach((t) => wantTools.add(t));
    [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)].forEach((s) => wantSources.add(s));
    for (const fa of Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []) {
      wantFiles.add(fa.file_id);
      wantSources.add(fa.source_id);
    }
    for (const i of a.identities) strs(i.block_ids).forEach((b) => model.blocks.has(b) && wantBlocks.add(b));
  }
  // groups with at least one restored member or manager
  const wantGroups: SrcObject[] = [];
  for (const g of model.groups.values()) {
    const mgr = isObj(g.obj.manager_config) && typeof g.obj.manager_config.manager_agent_id === 'string' ? g.obj.manager_config.manager_agent_id : null;
    const members = [...strs(g.obj.agent_ids), ...(mgr ? [mgr] : [])];
    if (members.some((m) => restoredSet.has(m))) {
      wantGroups.push(g);
      strs(g.obj.shared_block_ids).forEach((b) => model.blocks.has(b) && wantBlocks.add(b));
    }
  }
  const allSelected = !opts.agents || opts.agents.length === 0;
  if (allSelected) {
    // like Letta's import: every object of the file, referenced or not
    for (const b of model.blocks.keys()) wantBlocks.add(b);
    for (const t of model.tools.keys()) wantTools.add(t);
    for (const s of model.sources.keys()) wantSources.add(s);
  }
  for (const f of model.files.values()) if (wantSources.has(f.obj.source_id)) wantFiles.add(f.fileId);
  // written, but attached to nothing restored: an export of the agents will not hold them
  const attachedBlocks = new Set<string>();
  const attachedTools = new Set<string>();
  for (const a of restored) {
    strs(a.obj.block_ids).forEach((b) => attachedBlocks.add(b));
    strs(a.obj.tool_ids).forEach((t) => attachedTools.add(t));
    for (const i of a.identities) strs(i.block_ids).forEach((b) => attachedBlocks.add(b));
  }
  for (const g of wantGroups) strs(g.obj.shared_block_ids).forEach((b) => attachedBlocks.add(b));
  const looseBlocks = [...wantBlocks].filter((b) => !attachedBlocks.has(b)).map((b) => String(model.blocks.get(b)!.obj.label ?? b));
  const looseTools = [...wantTools].filter((t) => !attachedTools.has(t)).map((t) => String(model.tools.get(t)!.obj.name ?? t));
  const notCarried: RestorePlan['not_carried'] = {
    skills: { count: model.skills.length, names: [...model.skills] },
    unattached_blocks: { count: looseBlocks.length, labels: looseBlocks },
    unattached_tools: { count: looseTools.length, names: looseTools },
  };
  if (model.skills.length) warnings.push(`${model.skills.length} skill${model.skills.length === 1 ? '' : 's'} of the source ${model.skills.length === 1 ? 'is' : 'are'} not restored (Agent Vault writes no skills): ${model.skills.slice(0, 5).join(', ')}${model.skills.length > 5 ? ', …' : ''}`);
  if (looseBlocks.length || looseTools.length) {
    warnings.push(
      `${looseBlocks.length} block${looseBlocks.length === 1 ? '' : 's'} and ${looseTools.length} tool${looseTools.length === 1 ? '' : 's'} that no restored agent attaches are written as free-standing rows; an export of these agents will not contain them`,
    );
  }

  // blocks
  const blockDb = [...wantBlocks].map((b) => model.blocks.get(b)!).filter((b) => b.dbId && !newIds);
  const takenBlocks = await existing(tx, 'block', blockDb.map((b) => b.dbId!));
  const referencing = (blockFile: string) => restored.filter((a) => strs(a.obj.block_ids).includes(blockFile));
  for (const bf of wantBlocks) {
    const b = model.blocks.get(bf)!;
    const refs = referencing(bf);
    const allCopies = refs.length > 0 && refs.every((a) => assign.copy.has(a.fileId));
    const db = newIds ? null : b.dbId;
    if (db && takenBlocks.has(db) && !freedBlocks.has(db)) {
      if (allCopies) assign.blocks.set(bf, newId('block'));
      else {
        assign.blocks.set(bf, db);
        assign.linkedBlocks.add(bf);
        warnings.push(`block "${b.obj.label}" (${db}) already exists in the target (attached elsewhere); it is linked as it is, not overwritten`);
      }
    } else assign.blocks.set(bf, db && !allCopies ? db : newId('block'));
  }
  if (assign.linkedBlocks.size) {
    const r = await tx.query<{ id: string; label: string }>(`SELECT id, label FROM block WHERE id = ANY($1::text[])`, [[...assign.linkedBlocks].map((b) => assign.blocks.get(b)!)]);
    for (const x of r.rows) assign.blockLabels.set(x.id, x.label);
  }

  // tools: shared by (name, organization)
  const toolMode = opts.tools ?? 'keep';
  const toolNames = [...wantTools].map((t) => model.tools.get(t)!.obj.name).filter((n): n is string => typeof n === 'string');
  const existingTools = await tx.query<{ id: string; name: string }>(`SELECT id, name FROM tools WHERE organization_id = $1 AND name = ANY($2::text[])`, [org, toolNames]);
  const toolByName = new Map(existingTools.rows.map((r) => [r.name, r.id]));
  const takenToolIds = await existing(tx, 'tools', [...wantTools].map((t) => model.tools.get(t)!.dbId).filter((x): x is string => !!x && !newIds));
  const toolPlan: RestorePlan['tools'] = [];
  for (const tf of wantTools) {
    const t = model.tools.get(tf)!;
    const name = t.obj.name;
    if (typeof name !== 'string' || name === '') throw restoreInvalid(model.path ?? 'the source', `tool "${tf}" has no name`);
    const hit = toolByName.get(name);
    if (hit) {
      assign.tools.set(tf, hit);
      if (toolMode === 'replace') assign.toolUpdate.add(tf);
      toolPlan.push({ name, action: toolMode === 'replace' ? 'replace' : 'keep', target_id: hit });
    } else {
      const id = t.dbId && !newIds && !takenToolIds.has(t.dbId) ? t.dbId : newId('tool');
      assign.tools.set(tf, id);
      assign.toolInsert.add(tf);
      toolByName.set(name, id);
      toolPlan.push({ name, action: 'create', target_id: id });
    }
  }
  // MCP servers named by the tools, shared by (server_name, organization)
  for (const m of model.mcp.values()) {
    const used = [...wantTools].some((t) => {
      const meta = model.tools.get(t)!.obj.metadata_;
      const mcp = isObj(meta) && isObj(meta.mcp) ? meta.mcp : null;
      return !!mcp && (mcp.server_id === m.fileId || mcp.server_name === m.obj.server_name || (m.dbId !== null && mcp.server_id === m.dbId));
    });
    if (!used && !allSelected) continue;
    const r = await tx.query<{ id: string }>(`SELECT id FROM mcp_server WHERE organization_id = $1 AND server_name = $2`, [org, m.obj.server_name]);
    if (r.rows.length) assign.mcp.set(m.fileId, r.rows[0].id);
    else {
      const free = m.dbId && !newIds && !(await existing(tx, 'mcp_server', [m.dbId])).has(m.dbId);
      assign.mcp.set(m.fileId, free ? m.dbId! : newId('mcp_server'));
      assign.mcpInsert.add(m.fileId);
    }
  }
  // sources (folders): the same folder (same id, not a copy) is reused; a folder whose name is
  // taken otherwise gets a new one named "<name>_<8 hex>", as Letta's import does, so two restores
  // never put two rows of one file name into one folder. Files: reused when their id exists.
  const copiedSources = new Set<string>();
  for (const sf of wantSources) {
    const users = restored.filter((a) => [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)].includes(sf) || (Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []).some((fa: Obj) => isObj(fa) && fa.source_id === sf));
    if (users.length > 0 && users.every((a) => assign.copy.has(a.fileId))) copiedSources.add(sf);
  }
  for (const sf of wantSources) {
    const s = model.sources.get(sf)!;
    const r = await tx.query<{ id: string }>(`SELECT id FROM sources WHERE organization_id = $1 AND name = $2`, [org, s.obj.name]);
    if (r.rows.length && !copiedSources.has(sf) && !newIds && s.dbId === r.rows[0].id) assign.sources.set(sf, r.rows[0].id);
    else if (r.rows.length) {
      const name = `${String(s.obj.name)}_${randomBytes(4).toString('hex')}`;
      assign.sources.set(sf, newId('source'));
      assign.sourceInsert.add(sf);
      assign.sourceNames.set(sf, name);
      warnings.push(`folder "${String(s.obj.name)}" exists in the target; its files are restored into a new folder "${name}" (as Letta's import does)`);
    } else {
      const free = s.dbId && !newIds && !(await existing(tx, 'sources', [s.dbId])).has(s.dbId);
      assign.sources.set(sf, free ? s.dbId! : newId('source'));
      assign.sourceInsert.add(sf);
    }
  }
  const takenFiles = await existing(tx, 'files', [...wantFiles].map((f) => model.files.get(f)!.dbId).filter((x): x is string => !!x && !newIds));
  for (const ff of wantFiles) {
    const f = model.files.get(ff)!;
    const db = newIds ? null : f.dbId;
    if (db && takenFiles.has(db) && !assign.sourceNames.has(f.obj.source_id)) assign.files.set(ff, db);
    else if (assign.sourceNames.has(f.obj.source_id)) {
      assign.files.set(ff, newId('file'));
      assign.fileInsert.add(ff);
    } else {
      assign.files.set(ff, db ?? newId('file'));
      assign.fileInsert.add(ff);
    }
  }
  // identities (only in archives written by exportAgents)
  for (const a of restored) {
    for (const i of a.identities) {
      if (typeof i.id !== 'string' || assign.identities.has(i.id)) continue;
      const r = await tx.query<{ id: string }>(
        `SELECT id FROM identities WHERE id = $1 OR (identifier_key = $2 AND project_id IS NOT DISTINCT FROM $3 AND organization_id = $4) ORDER BY (id = $1) DESC LIMIT 1`,
        [i.id, i.identifier_key, i.project_id ?? null, org],
      );
      if (r.rows.length) assign.identities.set(i.id, r.rows[0].id);
      else {
        assign.identities.set(i.id, newIds ? newId('identity') : i.id);
        assign.identityInsert.add(i.id);
      }
    }
  }
  // groups
  const groupPlan: RestorePlan['groups'] = [];
  const takenGroups = await existing(tx, 'groups', wantGroups.map((g) => g.dbId).filter((x): x is string => !!x && !newIds));
  for (const g of wantGroups) {
    const mgr = isObj(g.obj.manager_config) && typeof g.obj.manager_config.manager_agent_id === 'string' && g.obj.manager_config.manager_agent_id !== '' ? g.obj.manager_config.manager_agent_id : null;
    if (mgr && !assign.agentRef.has(mgr)) {
      warnings.push(`group ${g.dbId ?? g.fileId} is not restored: its manager agent ${model.dbIds.get(mgr) ?? mgr} is neither restored nor in the target`);
      groupPlan.push({ source_id: g.dbId ?? g.fileId, action: 'drop', target_id: null });
      continue;
    }
    const members = strs(g.obj.agent_ids);
    const anyCopy = [...members, ...(mgr ? [mgr] : [])].some((m) => assign.copy.has(m));
    const db = newIds ? null : g.dbId;
    if (db && takenGroups.has(db) && !freedGroups.has(db) && !anyCopy) {
      assign.groups.set(g.fileId, db);
      warnings.push(`group ${db} already exists in the target; the restored agents are added to it, it is not overwritten`);
      groupPlan.push({ source_id: db, action: 'link', target_id: db });
    } else {
      const id = db && !anyCopy && !(takenGroups.has(db) && !freedGroups.has(db)) ? db : newId('group');
      assign.groups.set(g.fileId, id);
      assign.groupInsert.add(g.fileId);
      groupPlan.push({ source_id: g.dbId ?? g.fileId, action: 'create', target_id: id });
    }
    for (const m of members) {
      if (!assign.agentRef.has(m)) warnings.push(`group ${g.dbId ?? g.fileId}: member ${model.dbIds.get(m) ?? m} is neither restored nor in the target; left out of the group`);
    }
  }
  // archives
  const archiveDbIds = restored.map((a) => (a.archive && typeof a.archive.id === 'string' ? a.archive.id : null)).filter((x): x is string => !!x);
  const takenArchives = await existing(tx, 'archives', newIds ? [] : archiveDbIds);
  const seenArchive = new Map<string, string>();
  for (const a of restored) {
    if (!a.archive && a.passages === 0) continue;
    const db = a.archive && typeof a.archive.id === 'string' && !newIds ? (a.archive.id as string) : null;
    if (db && seenArchive.has(db) && !assign.copy.has(a.fileId)) {
      assign.archives.set(a.fileId, seenArchive.get(db)!);
      continue;
    }
    const keep = !!db && !assign.copy.has(a.fileId) && (!takenArchives.has(db) || freedArchives.has(db));
    const id = keep ? db! : newId('archive');
    assign.archives.set(a.fileId, id);
    assign.archiveInsert.add(a.fileId);
    if (keep) assign.archiveKeepsIds.add(a.fileId);
    if (db && !assign.copy.has(a.fileId)) seenArchive.set(db, id);
  }

  // guards: revision
  const srcRev = model.revision;
  // An agent file (plain, or packed into an archive) is interchange: it is upgraded on the way in
  // (v1 → v2, missing fields defaulted), as Letta's own import takes any revision. Only a snapshot
  // of a database at another revision is held to the compatible list; the target always is.
  const interchange = model.sourceKind === 'agent-file';
  const revOk = interchange
    ? isCompatibleRevision(info.revision)
    : (srcRev === info.revision && isCompatibleRevision(info.revision)) || (isCompatibleRevision(srcRev) && isCompatibleRevision(info.revision));
  const forcedRev = !revOk && !!opts.forceSchema;
  if (!revOk && !opts.forceSchema) {
    const known = COMPATIBLE_REVISIONS.map((r) => r.revision).join(', ');
    refusals.push({
      code: 'revision-mismatch',
      message:
        `Letta schema revision mismatch: the source was written at revision ${srcRev ?? 'unknown'} and the target database is at revision ${info.revision}. ` +
        (isCompatibleRevision(info.revision) ? `${srcRev ?? 'An unknown revision'} is not in the compatible list` : `the target's revision is not one this version of Agent Vault writes`) +
        ` (compatible: ${known}; see docs/RESTORE.md).`,
      kind: 'mismatch',
      remedy: 'force-schema',
    });
  } else if (forcedRev) {
    warnings.push(`schema revision ${srcRev ?? 'unknown'} → ${info.revision} is not in the compatible list; restoring anyway, as asked (force schema)`);
  }

  // guards: embeddings of archival passages
  const withPassages = restored.filter((a) => a.passages > 0);
  const embeddingGuards: RestorePlan['guards']['embedding'] = [];
  if (withPassages.length) {
    const t = await tx.query<{ model: string | null; dim: string | null }>(
      `SELECT DISTINCT model, dim FROM (
          SELECT embedding_config->>'embedding_model' AS model, embedding_config->>'embedding_dim' AS dim FROM archives
           WHERE organization_id = $1 AND embedding_config IS NOT NULL AND NOT (id = ANY($2::text[]))
          UNION ALL
          SELECT embedding_config->>'embedding_model', embedding_config->>'embedding_dim' FROM archival_passages
           WHERE organization_id = $1 AND embedding_config IS NOT NULL AND NOT (archive_id = ANY($2::text[]))) x
        ORDER BY 1, 2`,
      [org, deleteArchives],
    );
    const target = t.rows.map((r) => ({ model: r.model, dim: num(r.dim) }));
    const cols = await loadColumns(tx, ['archival_passages']);
    const colDim = cols.get('archival_passages')!.find((c) => c.name === 'embedding')?.vectorDim ?? null;
    for (const a of withPassages) {
      const ec = (a.archive && isObj(a.archive.embedding_config) ? a.archive.embedding_config : null) ?? (isObj(a.obj.embedding_config) ? a.obj.embedding_config : null);
      const model_ = (a.manifest?.embedding?.model ?? (ec?.embedding_model as string | undefined)) ?? null;
      const dim = a.manifest?.embedding?.dim ?? num(ec?.embedding_dim);
      if (colDim !== null && dim !== null && dim > colDim) {
        throw new AgentVaultError('embedding-mismatch', `agent ${JSON.stringify(a.name)}: its embeddings have ${dim} dimensions, more than the ${colDim} the target's archival_passages.embedding column holds.`, { kind: 'mismatch' });
      }
      const ok = target.length === 0 || target.some((x) => x.model === model_ && x.dim === dim);
      embeddingGuards.push({ agent: a.name ?? a.fileId, model: model_, dim, target, ok, forced: !ok && !!opts.allowEmbeddingMismatch });
      if (!ok && !opts.allowEmbeddingMismatch) {
        refusals.push({
          code: 'embedding-mismatch',
          message:
            `Embedding mismatch for agent ${JSON.stringify(a.name)}: its archival passages were embedded with ${model_ ?? 'an unknown model'} (${dim ?? '?'} dimensions), ` +
            `but the target's existing passages/archives use ${target.map((x) => `${x.model ?? 'an unknown model'} (${x.dim ?? '?'} dimensions)`).join(', ')}. ` +
            `Nothing was restored.`,
          kind: 'mismatch',
          remedy: 'allow-embedding-mismatch',
        });
      } else if (!ok) warnings.push(`agent ${JSON.stringify(a.name)}: embedding model ${model_} (${dim}) differs from the target's; restoring anyway, as asked (embedding mismatch allowed)`);
    }
  }

  const nameOf = (p: PlanAgent) => p.name ?? p.source_id;
  const plan: RestorePlan = {
    source: {
      path: model.path,
      kind: model.kind,
      format: model.format,
      revision: model.revision,
      source_kind: model.sourceKind,
      encrypted: model.encrypted,
      secret_values: opts.secrets === false ? 0 : restored.reduce((n, a) => n + (a.manifest ? (model.secrets.get(a.manifest.id)?.size ?? 0) : 0), 0),
    },
    target: { database: info.database, schema: info.schema, revision: info.revision, organization_id: org, user_id: user },
    dry_run: !!opts.dryRun,
    agents: planAgents,
    summary: {
      created: planAgents.filter((p) => p.action === 'create').map(nameOf),
      renamed: planAgents.filter((p) => p.action === 'rename').map((p) => `${nameOf(p)} → ${p.target_name}`),
      skipped: planAgents.filter((p) => p.action === 'skip').map(nameOf),
      replaced: planAgents.filter((p) => p.action === 'replace').map(nameOf),
      conflicts: planAgents.filter((p) => p.action === 'conflict').map(nameOf),
    },
    tools: toolPlan,
    groups: groupPlan,
    deletes: { agents: deleteAgents, groups: deleteGroups, blocks: deleteBlocks, archives: deleteArchives },
    guards: { revision: { source: srcRev, target: info.revision, compatible: revOk, forced: forcedRev, interchange }, embedding: embeddingGuards },
    not_carried: notCarried,
    warnings,
    refusals,
  };
  return { plan, restored, assign, info, org, user };
}

// ---------------------------------------------------------------------------------------------
// public API

/** The plan of a restore, without changing anything (a read-only transaction). */
export async function planRestore(db: Db, source: RestoreSource, opts: RestoreOptions = {}): Promise<RestorePlan> {
  const model = await openSource(source, opts.decrypt);
  try {
    return await db.transaction(async (tx) => (await computePlan(tx, model, { ...opts, dryRun: true }, describeDb(db))).plan, { isolation: 'repeatable read', readOnly: true });
  } finally {
    await model.close();
  }
}

/**
 * Restores the agents of `source` into `db` in one transaction (see the module comment). With
 * `dryRun`, returns the plan and changes nothing. Throws AgentVaultError when the plan has a
 * refusal (conflict: exit code 4; revision or embedding mismatch: 6) or a write fails (5; the
 * transaction is rolled back).
 */
export async function restoreAgents(db: Db, source: RestoreSource, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const model = await openSource(source, opts.decrypt); // archive checksums are verified here, before any transaction
  const where = describeDb(db);
  try {
    if (opts.dryRun) {
      const plan = await db.transaction(async (tx) => (await computePlan(tx, model, opts, where)).plan, { isolation: 'repeatable read', readOnly: true });
      return { plan, agentIds: {}, rows: {} };
    }
    return await db.transaction(async (tx) => {
      const planned = await computePlan(tx, model, opts, where);
      const refusal = planned.plan.refusals[0];
      if (refusal) {
        throw new AgentVaultError(refusal.code === 'conflict' ? 'restore-conflict' : refusal.code, planned.plan.refusals.map((r) => r.message).join('\n'), { kind: refusal.kind, remedy: [...new Set(planned.plan.refusals.map((r) => r.remedy))] });
      }
      const rows = await writeAll(tx, model, planned, opts);
      const agentIds: Record<string, string> = {};
      for (const p of planned.plan.agents) if (p.target_id && p.action !== 'skip' && p.action !== 'conflict') agentIds[p.source_id] = p.target_id;
      return { plan: planned.plan, agentIds, rows };
    });
  } finally {
    await model.close();
  }
}

function describeDb(db: Queryable): string {
  const t = (db as { target?: unknown }).target;
  return typeof t === 'string' ? t : 'the database';
}

// ---------------------------------------------------------------------------------------------
// writing

const WRITTEN_TABLES = RESTORE_STEPS.filter((s) => s !== 'delete');

async function writeAll(tx: Queryable, model: SourceModel, P: Planned, opts: RestoreOptions): Promise<Partial<Record<RestoreStep, number>>> {
  const { assign: A, restored, org, user, plan } = P;
  const newIdsOr = (id: string | undefined) => (opts.newIds ? undefined : id);
  const rows: Partial<Record<RestoreStep, number>> = {};
  const catalog = await loadColumns(tx, WRITTEN_TABLES);
  const step = async (s: RestoreStep) => {
    await opts.onStep?.(s);
  };
  const base = { is_deleted: false, organization_id: org, _created_by_id: user, _last_updated_by_id: user };
  const stamps = (extra: Obj, fallback?: unknown) => ({ created_at: extra.created_at ?? fallback ?? null, updated_at: extra.updated_at ?? null });
  const now = { created_at: 'now()', updated_at: 'now()' };
  const ins = async (table: RestoreStep, columns: string[], data: Iterable<Obj>, o: { defaults?: Record<string, string>; onConflict?: string } = {}) => {
    await step(table);
    const n = await bulkInsert(tx, catalog, table, columns, data, { ...o, onBatch: (k) => opts.onProgress?.({ step: table, rows: k }) });
    rows[table] = (rows[table] ?? 0) + n;
  };

  // 0. deletions of replaced agents and what only they owned
  await step('delete');
  const del = plan.deletes;
  try {
    if (del.agents.length) {
      await tx.query(`DELETE FROM groups WHERE id = ANY($1::text[])`, [del.groups]);
      await tx.query(`DELETE FROM agents_tags WHERE agent_id = ANY($1::text[])`, [del.agents]);
      await tx.query(`DELETE FROM archives WHERE id = ANY($1::text[])`, [del.archives]);
      await tx.query(`DELETE FROM agents WHERE id = ANY($1::text[])`, [del.agents]);
      await tx.query(`UPDATE block SET current_history_entry_id = NULL WHERE id = ANY($1::text[])`, [del.blocks]);
      await tx.query(`DELETE FROM blocks_tags WHERE block_id = ANY($1::text[])`, [del.blocks]);
      await tx.query(`DELETE FROM block WHERE id = ANY($1::text[])`, [del.blocks]);
    }
  } catch (e) {
    throw describeWriteError(e, 'agents');
  }

  // 1. tools (insert new; overwrite existing ones of the same name with tools: replace)
  const toolRow = (tf: string): Obj => {
    const t = model.tools.get(tf)!;
    const o = t.obj;
    return {
      id: A.tools.get(tf),
      name: o.name,
      description: o.description ?? null,
      source_type: o.source_type ?? 'python',
      source_code: o.source_code ?? null,
      json_schema: o.json_schema ?? null,
      tags: Array.isArray(o.tags) ? o.tags : [],
      ...stamps(t.extra),
      ...base,
      return_char_limit: o.return_char_limit ?? null,
      tool_type: o.tool_type ?? 'custom',
      args_json_schema: o.args_json_schema ?? null,
      metadata_: remapMcp(o.metadata_, model, A),
      pip_requirements: o.pip_requirements ?? null,
      npm_requirements: o.npm_requirements ?? null,
      default_requires_approval: o.default_requires_approval ?? null,
      enable_parallel_execution: o.enable_parallel_execution ?? null,
      project_id: o.project_id ?? null,
    };
  };
  const toolCols = ['id', 'name', 'description', 'source_type', 'source_code', 'json_schema', 'tags', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'return_char_limit', 'tool_type', 'args_json_schema', 'metadata_', 'pip_requirements', 'npm_requirements', 'default_requires_approval', 'enable_parallel_execution', 'project_id'];
  await ins('tools', toolCols, [...A.toolInsert].map(toolRow), { defaults: now });
  if (A.toolUpdate.size) {
    const upd = ['description', 'source_type', 'source_code', 'json_schema', 'tags', 'return_char_limit', 'tool_type', 'args_json_schema', 'metadata_', 'pip_requirements', 'npm_requirements', 'default_requires_approval', 'enable_parallel_execution', 'project_id', '_last_updated_by_id'];
    const cols = catalog.get('tools')!;
    const defs = ['id', ...upd].map((c) => `${qi(c)} ${cols.find((x) => x.name === c)!.type}`).join(', ');
    try {
      await tx.query(
        `UPDATE tools t SET ${upd.map((c) => `${qi(c)} = r.${qi(c)}`).join(', ')}, updated_at = now() FROM json_to_recordset($1::json) AS r(${defs}) WHERE t.id = r.id`,
        [JSON.stringify([...A.toolUpdate].map(toolRow))],
      );
    } catch (e) {
      throw describeWriteError(e, 'tools');
    }
    rows.tools = (rows.tools ?? 0) + A.toolUpdate.size;
  }

  // 2. MCP servers (no credentials: exports never carry them)
  await ins(
    'mcp_server',
    ['id', 'server_name', 'server_type', 'server_url', 'stdio_config', 'organization_id', 'is_deleted', 'created_at', 'updated_at', '_created_by_id', '_last_updated_by_id', 'metadata_'],
    [...A.mcpInsert].map((mf) => {
      const m = model.mcp.get(mf)!;
      return { id: A.mcp.get(mf), server_name: m.obj.server_name, server_type: m.obj.server_type ?? 'sse', server_url: m.obj.server_url ?? null, stdio_config: m.obj.stdio_config ?? null, ...base, ...stamps(m.extra), metadata_: m.obj.metadata_ ?? null };
    }),
    { defaults: now },
  );

  // 3. sources
  const fallbackEmbedding = restored.map((a) => a.obj.embedding_config).find(isObj) ?? null;
  await ins(
    'sources',
    ['id', 'name', 'created_at', 'embedding_config', 'description', 'metadata_', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'instructions', 'vector_db_provider'],
    [...A.sourceInsert].map((sf) => {
      const s = model.sources.get(sf)!;
      const ec = s.obj.embedding_config ?? fallbackEmbedding;
      if (!isObj(ec)) throw restoreInvalid(model.path ?? 'the source', `source "${s.obj.name}" has no embedding_config (Letta requires one)`);
      return { id: A.sources.get(sf), name: A.sourceNames.get(sf) ?? s.obj.name, ...stamps(s.extra), embedding_config: ec, description: s.obj.description ?? null, metadata_: s.obj.metadata ?? null, ...base, instructions: s.obj.instructions ?? null, vector_db_provider: s.extra.vector_db_provider ?? 'NATIVE' };
    }),
    { defaults: now },
  );

  // 4. blocks + their tags
  const newBlocks = [...A.blocks.keys()].filter((b) => !A.linkedBlocks.has(b));
  await ins(
    'block',
    ['id', 'value', 'limit', 'template_name', 'label', 'metadata_', 'description', 'is_template', 'organization_id', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'version', 'read_only', 'preserve_on_migration', 'project_id', 'entity_id', 'base_template_id', 'template_id', 'deployment_id', 'hidden'],
    newBlocks.map((bf) => {
      const b = model.blocks.get(bf)!;
      const o = b.obj;
      return {
        id: A.blocks.get(bf),
        value: typeof o.value === 'string' ? o.value : '',
        limit: typeof o.limit === 'number' ? o.limit : 100000,
        template_name: o.template_name ?? null,
        label: o.label,
        metadata_: o.metadata ?? o.metadata_ ?? {},
        description: o.description ?? null,
        is_template: o.is_template ?? false,
        ...base,
        ...stamps(b.extra),
        version: b.extra.version ?? 1,
        read_only: o.read_only ?? false,
        preserve_on_migration: o.preserve_on_migration ?? null,
        project_id: o.project_id ?? null,
        entity_id: o.entity_id ?? null,
        base_template_id: o.base_template_id ?? null,
        template_id: o.template_id ?? null,
        deployment_id: o.deployment_id ?? null,
        hidden: o.hidden ?? null,
      };
    }),
    { defaults: now },
  );
  await ins(
    'blocks_tags',
    ['block_id', 'tag', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id'],
    newBlocks.flatMap((bf) => [...new Set(strs(model.blocks.get(bf)!.obj.tags))].map((tag) => ({ block_id: A.blocks.get(bf), tag, ...base }))),
    { defaults: now },
  );

  // 5. identities
  const identityObjs = new Map<string, Obj>();
  for (const a of restored) for (const i of a.identities) if (typeof i.id === 'string' && !identityObjs.has(i.id)) identityObjs.set(i.id, i);
  await ins(
    'identities',
    ['id', 'identifier_key', 'name', 'identity_type', 'project_id', 'organization_id', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'properties'],
    [...A.identityInsert].map((iid) => {
      const i = identityObjs.get(iid)!;
      return { id: A.identities.get(iid), identifier_key: i.identifier_key, name: i.name, identity_type: i.identity_type, project_id: i.project_id ?? null, ...base, created_at: i.created_at ?? null, updated_at: i.updated_at ?? null, properties: i.properties ?? [] };
    }),
    { defaults: { ...now, properties: `'[]'::json` } },
  );

  // 6. agents, with their in-context message ids (message_ids has no foreign key). Messages that
  // get new ids have them chosen here; agents keeping their messages' ids learn them while the
  // messages are written, and their message_ids are set then.
  const msgMaps = new Map<string, Map<string, string>>(); // agent file id → message file id → target id (referenced messages)
  const agentRows: Obj[] = [];
  for (const a of restored) {
    const o = a.obj;
    const keep = A.keepIds.has(a.fileId);
    const map = new Map<string, string>();
    if (!keep) for (const m of a.refs) map.set(m, newId('message'));
    msgMaps.set(a.fileId, map);
    const pa = plan.agents.find((p) => p.file_id === a.fileId)!;
    agentRows.push({
      id: A.agents.get(a.fileId),
      name: pa.target_name,
      ...stamps(a.extra),
      description: o.description ?? null,
      message_ids: keep ? [] : a.inContext.map((m) => map.get(m)!),
      system: o.system ?? null,
      agent_type: o.agent_type ?? null,
      llm_config: o.llm_config ?? null,
      embedding_config: o.embedding_config ?? null,
      metadata_: o.metadata ?? o.metadata_ ?? null,
      tool_rules: o.tool_rules ?? null,
      ...base,
      project_id: o.project_id ?? null,
      template_id: o.template_id ?? null,
      base_template_id: o.base_template_id ?? null,
      message_buffer_autoclear: o.message_buffer_autoclear ?? false,
      enable_sleeptime: o.enable_sleeptime ?? null,
      response_format: o.response_format ?? null,
      last_run_completion: a.extra.last_run_completion ?? null,
      last_run_duration_ms: a.extra.last_run_duration_ms ?? null,
      timezone: o.timezone ?? null,
      max_files_open: o.max_files_open ?? null,
      per_file_view_window_char_limit: o.per_file_view_window_char_limit ?? null,
      hidden: o.hidden ?? null,
      entity_id: a.extra.entity_id ?? null,
      deployment_id: a.extra.deployment_id ?? null,
      last_stop_reason: a.extra.last_stop_reason ?? null,
      compaction_settings: o.compaction_settings ?? null,
    });
  }
  await ins(
    'agents',
    ['id', 'name', 'created_at', 'updated_at', 'description', 'message_ids', 'system', 'agent_type', 'llm_config', 'embedding_config', 'metadata_', 'tool_rules', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'project_id', 'template_id', 'base_template_id', 'message_buffer_autoclear', 'enable_sleeptime', 'response_format', 'last_run_completion', 'last_run_duration_ms', 'timezone', 'max_files_open', 'per_file_view_window_char_limit', 'hidden', 'entity_id', 'deployment_id', 'last_stop_reason', 'compaction_settings'],
    agentRows,
    { defaults: now },
  );

  // 7. files + contents
  await ins(
    'files',
    ['id', 'source_id', 'file_name', 'file_path', 'file_type', 'file_size', 'file_creation_date', 'file_last_modified_date', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'processing_status', 'error_message', 'original_file_name', 'total_chunks', 'chunks_embedded'],
    [...A.fileInsert].map((ff) => {
      const f = model.files.get(ff)!;
      const o = f.obj;
      return {
        id: A.files.get(ff),
        source_id: A.sources.get(o.source_id),
        file_name: o.file_name ?? null,
        file_path: o.file_path ?? null,
        file_type: o.file_type ?? null,
        file_size: o.file_size ?? null,
        file_creation_date: o.file_creation_date ?? null,
        file_last_modified_date: o.file_last_modified_date ?? null,
        ...stamps(f.extra),
        ...base,
        // the file's chunks (source_passages) are not in the source: laid out as Letta's import
        // does (parsing, no error, counts cleared) so that Letta processes the file again rather
        // than claiming embeddings that do not exist
        processing_status: 'parsing',
        error_message: null,
        original_file_name: o.original_file_name ?? null,
        total_chunks: null,
        chunks_embedded: null,
      };
    }),
    { defaults: now },
  );
  await ins(
    'file_contents',
    ['file_id', 'text', 'id', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id'],
    [...A.fileInsert]
      .filter((ff) => typeof model.files.get(ff)!.obj.content === 'string')
      .map((ff) => ({ file_id: A.files.get(ff), text: model.files.get(ff)!.obj.content, id: newId('file_content'), is_deleted: false, _created_by_id: user, _last_updated_by_id: user })),
    { defaults: now },
  );

  // 8. messages, agent by agent, in file order (sequence ids are assigned in that order), streamed
  // from the source into COPY batches (one batch loads while the next is built)
  await step('messages');
  const groupFileIds = new Set(model.groups.keys());
  const msgPump = new CopyPump(tx, copySql('messages', MESSAGE_COPY_COLUMNS, false), 'messages', (k) => opts.onProgress?.({ step: 'messages', rows: k }));
  const msgOut = new CopyText();
  const msgRows = new MessageRows(msgOut);
  const keptIds: Array<{ id: string; message_ids: string }> = [];
  const approvalFixes: Array<{ id: string; target: string }> = [];
  const flushMessages = async () => {
    const n = msgOut.rows;
    await msgPump.send(msgOut.take(), n);
  };
  for (const a of restored) {
    const map = msgMaps.get(a.fileId)!;
    const keep = A.keepIds.has(a.fileId);
    msgRows.beginAgent({
      agentId: A.agents.get(a.fileId)!,
      keepIds: keep,
      refs: a.refs,
      approvalRefs: a.approvalRefs,
      targets: map,
      group: (gid) => (groupFileIds.has(gid) ? (A.groups.get(gid) ?? null) : model.dbIds.has(gid) ? null : gid),
      userId: user,
      organizationId: org,
      where: `${model.path ?? 'agent file'} (agent "${a.fileId}")`,
    });
    for await (const batch of model.messages(a)) {
      for (let k = 0; k < batch.length; k++) {
        msgRows.add(batch.bufs[k], batch.starts[k], batch.ends[k]);
        if (msgOut.size >= COPY_BATCH_BYTES) await flushMessages();
      }
    }
    if (keep) keptIds.push({ id: A.agents.get(a.fileId)!, message_ids: JSON.stringify(a.inContext.map((m) => map.get(m)!)) });
    for (const p of msgRows.pending.splice(0)) {
      const t = map.get(p.ref);
      if (t !== undefined) approvalFixes.push({ id: p.id, target: t });
    }
  }
  if (msgOut.size) await flushMessages();
  await msgPump.wait();
  rows.messages = msgPump.total;
  try {
    // in-context ids learned while writing, and approvals that named a later message
    if (keptIds.length) {
      await tx.query(`UPDATE agents a SET message_ids = x.ids::json FROM unnest($1::text[], $2::text[]) AS x(id, ids) WHERE a.id = x.id`, [keptIds.map((k) => k.id), keptIds.map((k) => k.message_ids)]);
    }
    if (approvalFixes.length) {
      await tx.query(`UPDATE messages m SET approval_request_id = x.target FROM unnest($1::text[], $2::text[]) AS x(id, target) WHERE m.id = x.id`, [approvalFixes.map((p) => p.id), approvalFixes.map((p) => p.target)]);
    }
  } catch (e) {
    throw describeWriteError(e, 'messages');
  }

  // 9. link tables
  const blockLabel = (bf: string): string => {
    const id = A.blocks.get(bf)!;
    return A.linkedBlocks.has(bf) ? (A.blockLabels.get(id) ?? model.blocks.get(bf)!.obj.label) : model.blocks.get(bf)!.obj.label;
  };
  await ins(
    'blocks_agents',
    ['agent_id', 'block_id', 'block_label'],
    restored.flatMap((a) => [...new Set(strs(a.obj.block_ids))].map((bf) => ({ agent_id: A.agents.get(a.fileId), block_id: A.blocks.get(bf), block_label: blockLabel(bf) }))),
  );
  await ins('tools_agents', ['agent_id', 'tool_id'], dedupe(restored.flatMap((a) => strs(a.obj.tool_ids).map((tf) => ({ agent_id: A.agents.get(a.fileId), tool_id: A.tools.get(tf) })))));
  await ins(
    'sources_agents',
    ['agent_id', 'source_id'],
    dedupe(restored.flatMap((a) => [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)].map((sf) => ({ agent_id: A.agents.get(a.fileId), source_id: A.sources.get(sf) })))),
  );
  await ins('agents_tags', ['agent_id', 'tag'], dedupe(restored.flatMap((a) => strs(a.obj.tags).map((tag) => ({ agent_id: A.agents.get(a.fileId), tag })))));
  await ins(
    'identities_agents',
    ['identity_id', 'agent_id'],
    dedupe(restored.flatMap((a) => a.identities.filter((i) => typeof i.id === 'string').map((i) => ({ identity_id: A.identities.get(i.id), agent_id: A.agents.get(a.fileId) })))),
    { onConflict: 'ON CONFLICT DO NOTHING' },
  );
  await ins(
    'identities_blocks',
    ['identity_id', 'block_id'],
    dedupe([...identityObjs.values()].flatMap((i) => strs(i.block_ids).filter((b) => A.blocks.has(b)).map((b) => ({ identity_id: A.identities.get(i.id), block_id: A.blocks.get(b) })))),
    { onConflict: 'ON CONFLICT DO NOTHING' },
  );
  await ins(
    'files_agents',
    ['id', 'file_id', 'agent_id', 'is_open', 'visible_content', 'last_accessed_at', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'file_name', 'source_id', 'start_line', 'end_line'],
    restored.flatMap((a) =>
      (Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []).map((fa: Obj) => {
        const x: Obj = model.rows.get(fa.id) ?? {};
        const dbId = newIdsOr(model.dbIds.get(fa.id));
        return {
          id: A.keepIds.has(a.fileId) && dbId ? dbId : newId('file_agent'),
          file_id: A.files.get(fa.file_id),
          agent_id: A.agents.get(a.fileId),
          is_open: fa.is_open ?? false,
          visible_content: fa.visible_content ?? null,
          last_accessed_at: fa.last_accessed_at ?? null,
          created_at: x.created_at ?? null,
          updated_at: x.updated_at ?? null,
          ...base,
          file_name: fa.file_name,
          source_id: A.sources.get(fa.source_id),
          start_line: fa.start_line ?? null,
          end_line: fa.end_line ?? null,
        };
      }),
    ),
    { defaults: { ...now, last_accessed_at: 'now()' } },
  );
  await ins(
    'agent_environment_variables',
    ['id', 'key', 'value', 'description', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'agent_id', 'value_enc'],
    restored.flatMap((a) => {
      const keys = new Map<string, Obj>();
      const vars = isObj(a.obj.secrets) ? a.obj.secrets : isObj(a.obj.tool_exec_environment_variables) ? a.obj.tool_exec_environment_variables : {};
      for (const [k, v] of Object.entries(vars)) keys.set(k, { key: k, value: typeof v === 'string' ? v : '' });
      for (const e of a.environment) if (typeof e.key === 'string') keys.set(e.key, { ...(keys.get(e.key) ?? { value: '' }), ...e });
      // an encrypted archive carries the values (secrets/ entries); a plain one has them redacted
      const secret = a.manifest && opts.secrets !== false ? model.secrets.get(a.manifest.id) : undefined;
      for (const [k, v] of secret ?? []) keys.set(k, { ...(keys.get(k) ?? {}), key: k, description: keys.get(k)?.description ?? v.description ?? null, secret: v.value });
      const carry = A.envCarry.get(a.fileId);
      return [...keys.values()].map((e) => {
        const kept = typeof e.secret === 'string' ? undefined : carry?.get(e.key);
        return {
          id: A.keepIds.has(a.fileId) && typeof e.id === 'string' ? e.id : newId('agent-env'),
          key: e.key,
          // value_enc stays NULL: Letta encrypts it with its own server key, which this tool cannot know
          value: typeof e.secret === 'string' ? e.secret : kept ? kept.value : (e.value ?? ''),
          description: e.description ?? null,
          created_at: e.created_at ?? null,
          updated_at: e.updated_at ?? null,
          ...base,
          agent_id: A.agents.get(a.fileId),
          value_enc: kept ? kept.value_enc : null,
        };
      });
    }),
    { defaults: now },
  );

  // 10. groups
  const groupRows: Obj[] = [];
  const groupAgentRows: Obj[] = [];
  const groupBlockRows: Obj[] = [];
  for (const [gf, gid] of A.groups) {
    const g = model.groups.get(gf)!;
    const mc: Obj = isObj(g.obj.manager_config) ? g.obj.manager_config : { manager_type: 'round_robin' };
    const members = strs(g.obj.agent_ids).filter((m) => A.agentRef.has(m)).map((m) => A.agentRef.get(m)!);
    if (A.groupInsert.has(gf)) {
      groupRows.push({
        id: gid,
        description: typeof g.obj.description === 'string' ? g.obj.description : '',
        manager_type: mc.manager_type ?? 'round_robin',
        manager_agent_id: typeof mc.manager_agent_id === 'string' && mc.manager_agent_id ? (A.agentRef.get(mc.manager_agent_id) ?? null) : null,
        termination_token: mc.termination_token ?? null,
        max_turns: mc.max_turns ?? null,
        ...stamps(g.extra),
        ...base,
        agent_ids: members,
        sleeptime_agent_frequency: mc.sleeptime_agent_frequency ?? null,
        // a snapshot keeps the database's counter; otherwise as Letta's create_group writes it:
        // -1 for a sleeptime group with a sleeptime_agent_frequency (it adds to it every turn)
        turns_counter: 'turns_counter' in g.extra ? (g.extra.turns_counter ?? null) : mc.manager_type === 'sleeptime' && mc.sleeptime_agent_frequency ? -1 : null,
        last_processed_message_id: g.extra.last_processed_message_id ?? null,
        max_message_buffer_length: mc.max_message_buffer_length ?? null,
        min_message_buffer_length: mc.min_message_buffer_length ?? null,
        project_id: g.obj.project_id ?? null,
        base_template_id: g.extra.base_template_id ?? null,
        template_id: g.extra.template_id ?? null,
        deployment_id: g.extra.deployment_id ?? null,
        hidden: g.obj.hidden ?? null,
      });
      for (const b of strs(g.obj.shared_block_ids)) if (A.blocks.has(b)) groupBlockRows.push({ group_id: gid, block_id: A.blocks.get(b) });
    }
    for (const m of members) groupAgentRows.push({ group_id: gid, agent_id: m });
  }
  await ins(
    'groups',
    ['id', 'description', 'manager_type', 'manager_agent_id', 'termination_token', 'max_turns', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'agent_ids', 'sleeptime_agent_frequency', 'turns_counter', 'last_processed_message_id', 'max_message_buffer_length', 'min_message_buffer_length', 'project_id', 'base_template_id', 'template_id', 'deployment_id', 'hidden'],
    groupRows,
    { defaults: now },
  );
  await ins('groups_agents', ['group_id', 'agent_id'], dedupe(groupAgentRows), { onConflict: 'ON CONFLICT DO NOTHING' });
  await ins('groups_blocks', ['group_id', 'block_id'], dedupe(groupBlockRows), { onConflict: 'ON CONFLICT DO NOTHING' });

  // 11. archives, links, passages, passage tags
  const archiveRows: Obj[] = [];
  for (const a of restored) {
    if (!A.archiveInsert.has(a.fileId)) continue;
    const x = a.archive ?? {};
    archiveRows.push({
      name: typeof x.name === 'string' ? x.name : `${plan.agents.find((p) => p.file_id === a.fileId)!.target_name ?? 'agent'}'s Archive`,
      description: x.description ?? null,
      metadata_: x.metadata_ ?? null,
      id: A.archives.get(a.fileId),
      created_at: x.created_at ?? null,
      updated_at: x.updated_at ?? null,
      ...base,
      vector_db_provider: x.vector_db_provider ?? 'NATIVE',
      _vector_db_namespace: x._vector_db_namespace ?? null,
      embedding_config: x.embedding_config ?? a.obj.embedding_config ?? null,
    });
  }
  await ins('archives', ['name', 'description', 'metadata_', 'id', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'vector_db_provider', '_vector_db_namespace', 'embedding_config'], archiveRows, { defaults: now });
  await ins(
    'archives_agents',
    ['agent_id', 'archive_id', 'created_at', 'is_owner'],
    restored.filter((a) => A.archives.has(a.fileId)).map((a) => ({ agent_id: A.agents.get(a.fileId), archive_id: A.archives.get(a.fileId), created_at: a.archive?.link_created_at ?? null, is_owner: a.archive?.is_owner ?? true })),
    { defaults: { created_at: 'now()' } },
  );

  // archival passages (binary COPY: embeddings in pgvector's binary form, zero-padded to the
  // column's dimension) and their tags (text COPY), streamed from the archive
  await step('archival_passages');
  if (binaryKinds(catalog, 'archival_passages', PASSAGE_COPY_COLUMNS).some((k, i) => k !== PASSAGE_COPY_KINDS[i])) {
    throw new AgentVaultError('letta-schema-mismatch', `The target table "archival_passages" has column types Agent Vault does not write (its Letta schema revision differs).`, { kind: 'mismatch' });
  }
  const padTo = catalog.get('archival_passages')!.find((c) => c.name === 'embedding')?.vectorDim ?? null;
  const nowMicros = Number((await tx.query<{ us: string }>(`SELECT (EXTRACT(EPOCH FROM now()) * 1000000)::bigint::text AS us`)).rows[0].us);
  const passagePump = new CopyPump(tx, copySql('archival_passages', PASSAGE_COPY_COLUMNS, true), 'archival_passages', (k) => opts.onProgress?.({ step: 'archival_passages', rows: k }));
  const tagPump = new CopyPump(tx, copySql('passage_tags', PASSAGE_TAG_COPY_COLUMNS, false), 'passage_tags', (k) => opts.onProgress?.({ step: 'passage_tags', rows: k }));
  const passageOut = new CopyBinary();
  const tagOut = new CopyText();
  const passageRows = new PassageRows(passageOut, tagOut, new TimestampReader(tx));
  let tagsStarted = false;
  const flushPassages = async () => {
    const n = passageOut.rows;
    if (n) await passagePump.send(passageOut.take(), n);
  };
  const flushTags = async () => {
    const n = tagOut.rows;
    if (!n) return;
    // tags name passages: every passage row so far is sent first (one connection: in order)
    await flushPassages();
    if (!tagsStarted) {
      await passagePump.wait();
      await step('passage_tags');
      tagsStarted = true;
    }
    await tagPump.send(tagOut.take(), n);
  };
  for (const a of restored) {
    if (!A.archiveInsert.has(a.fileId) || !a.manifest?.passages_entry || !model.streams) continue;
    const m = a.manifest;
    const where = `${model.path}!${m.passages_entry}`;
    passageRows.beginAgent({ archiveId: A.archives.get(a.fileId)!, keepIds: A.archiveKeepsIds.has(a.fileId), userId: user, organizationId: org, padTo, nowMicros, where });
    const lines = model.streams.stream(m.passages_entry!);
    const vectors = m.vectors_entry ? await model.streams.chunks(m.vectors_entry) : null;
    try {
      for await (const batch of passageBatches(lines, vectors, where, m.vectors_entry ? `${model.path}!${m.vectors_entry}` : '', rawPassageBatch)) {
        for (let k = 0; k < batch.length; k++) {
          const vb = batch.vecBufs ? batch.vecBufs[k] : null;
          await passageRows.add(batch.lineBufs![k], batch.lineStarts![k], batch.lineEnds![k], vb, vb ? batch.vecStarts![k] : 0, vb ? batch.vecEnds![k] : 0);
          if (passageOut.size >= COPY_BATCH_BYTES) await flushPassages();
          if (tagOut.size >= COPY_BATCH_BYTES) await flushTags();
        }
      }
    } finally {
      await Promise.allSettled([lines.return(undefined), vectors?.close()]);
    }
  }
  await flushPassages();
  await passagePump.wait();
  rows.archival_passages = passagePump.total;
  if (!tagsStarted) {
    await step('passage_tags');
    tagsStarted = true;
  }
  await flushTags();
  await tagPump.wait();
  rows.passage_tags = tagPump.total;
  return rows;
}

function dedupe<T extends Obj>(rows: T[]): T[] {
  const seen = new Set<string>();
  return rows.filter((r) => {
    const k = JSON.stringify(r);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function remapMcp(meta: unknown, model: SourceModel, A: Assign): Json {
  if (!isObj(meta) || !isObj(meta.mcp)) return (meta ?? null) as Json;
  const mcp = { ...meta.mcp };
  if (typeof mcp.server_id === 'string' && A.mcp.has(mcp.server_id)) mcp.server_id = A.mcp.get(mcp.server_id);
  return { ...meta, mcp } as Json;
}

// ---------------------------------------------------------------------------------------------
// presentation

/** The plan as text for a terminal (the CLI prints this; the VS Code extension shows the object). */
export function formatPlan(plan: RestorePlan): string {
  const lines: string[] = [];
  lines.push(`${plan.dry_run ? 'Dry run: nothing will be changed.\n' : ''}Restore from ${plan.source.path ?? 'an agent file'} (${plan.source.kind}${plan.source.format ? `, ${plan.source.format}` : ''}, Letta revision ${plan.source.revision ?? 'unknown'})`);
  lines.push(`into ${plan.target.database} schema ${plan.target.schema} (revision ${plan.target.revision}), organization ${plan.target.organization_id}`);
  if (plan.source.encrypted) lines.push(`The archive is encrypted; ${plan.source.secret_values ? `${plan.source.secret_values} secret value${plan.source.secret_values === 1 ? '' : 's'} (environment variables) will be written` : 'no secret values are written'}.`);
  const verb: Record<PlanAction, string> = { create: 'create ', rename: 'copy   ', skip: 'skip   ', replace: 'replace', conflict: 'CONFLICT' };
  lines.push('');
  lines.push('Agents:');
  for (const a of plan.agents) {
    const target = a.action === 'rename' ? ` as ${JSON.stringify(a.target_name)} (${a.target_id})` : a.target_id ? ` → ${a.target_id}` : '';
    const why = a.existing_id ? ` [exists: ${a.existing_id}, same ${a.conflict_by}]` : '';
    lines.push(`  ${verb[a.action]} ${JSON.stringify(a.name)}${target}${why}  (${a.counts.messages} messages, ${a.counts.in_context_messages} in context, ${a.counts.blocks} blocks, ${a.counts.tools} tools, ${a.counts.passages} passages)`);
  }
  const s = plan.summary;
  lines.push('');
  lines.push(`Created: ${s.created.length}  Renamed: ${s.renamed.length}  Skipped: ${s.skipped.length}  Replaced: ${s.replaced.length}  Conflicts: ${s.conflicts.length}`);
  const tc = (k: string) => plan.tools.filter((t) => t.action === k).length;
  if (plan.tools.length) lines.push(`Tools: ${tc('create')} created, ${tc('keep')} kept as they are, ${tc('replace')} overwritten`);
  if (plan.groups.length) lines.push(`Groups: ${plan.groups.map((g) => `${g.action} ${g.source_id}`).join(', ')}`);
  const d = plan.deletes;
  if (d.agents.length) lines.push(`Deleted first: ${d.agents.length} agents, ${d.blocks.length} blocks only they used, ${d.archives.length} archives, ${d.groups.length} groups`);
  for (const w of plan.warnings) lines.push(`warning: ${w}`);
  for (const r of plan.refusals) lines.push(`refused: ${r.message}`);
  return lines.join('\n') + '\n';
}

export type { ColumnInfo };
