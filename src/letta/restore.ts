/**
 * Restore of Letta agents into a running Letta database, from a snapshot archive (written by
 * `exportAgents` or `pack`) or from a plain agent file (.af v1 — upgraded —, v2, double-encoded
 * v2). docs/RESTORE.md is the user-facing description; the rules in short:
 *
 * - Checksums of an archive are verified BEFORE the transaction opens (a damaged archive changes
 *   nothing). Then ONE transaction: the plan is computed from the target as it is inside that
 *   transaction, the guards run, and every table is written with set-based bulk inserts in an
 *   order that satisfies every foreign key. Any failure rolls everything back.
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
import { AgentVaultError } from '../core/errors';
import type { Db, Queryable } from '../db/types';
import { readAgentFile, toV2, parseAgentFileBytes } from '../format/af';
import { openArchive, type ArchiveReader, type ManifestAgent } from '../format/archive';
import { readPassages } from '../format/pack';
import type { AgentFileV1, AgentFileV2, AgentV2, Json, JsonObject, MessageV2 } from '../format/types';
import { isArchivePath } from '../format/validate-any';
import { COMPATIBLE_REVISIONS, isCompatibleRevision } from './compat';
import { DEFAULT_ORG_ID, DEFAULT_USER_ID } from './ddl';
import { AV_EXT } from './export';
import { BulkInserter, bulkInsert, describeWriteError, type BulkInsertOptions, loadColumns, newId, qi, readLettaInfo, type ColumnInfo, type LettaDbInfo } from './sql';

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
  exitCode: number;
}

export interface RestorePlan {
  source: { path: string | null; kind: 'archive' | 'agent-file'; format: string | null; revision: string | null; source_kind: string | null };
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
    revision: { source: string | null; target: string; compatible: boolean; forced: boolean };
    embedding: Array<{ agent: string; model: string | null; dim: number | null; target: Array<{ model: string | null; dim: number | null }>; ok: boolean; forced: boolean }>;
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
  doc: number;
  manifest: ManifestAgent | null;
  messageCount: number;
  inContext: string[];
  /** original database ids of the in-context messages (null where the file has none) */
  inContextDb: (string | null)[];
  archive: Obj | null;
  environment: Obj[];
  identities: Obj[];
  passages: number;
}

interface SourceModel {
  path: string | null;
  kind: 'archive' | 'agent-file';
  format: string | null;
  revision: string | null;
  sourceKind: string | null;
  reader: ArchiveReader | null;
  agents: SrcAgent[];
  blocks: Map<string, SrcObject>;
  tools: Map<string, SrcObject>;
  sources: Map<string, SrcObject>;
  files: Map<string, SrcObject>;
  groups: Map<string, SrcObject>;
  mcp: Map<string, SrcObject>;
  /** file id → original db id, over all documents (agents of other slices included) */
  dbIds: Map<string, string>;
  /** file id → columns the .af has no field for (agent_vault.rows) */
  rows: Map<string, Obj>;
  /** the full document of slice i (messages included) */
  loadDoc(i: number): Promise<AgentFileV2>;
  close(): Promise<void>;
}

function restoreInvalid(where: string, message: string, pointer?: string): AgentVaultError {
  return new AgentVaultError('restore-invalid', `${where}: ${message}`, { location: { file: where, pointer }, exitCode: 1 });
}

async function openSource(src: RestoreSource): Promise<SourceModel> {
  if (typeof src !== 'string') {
    const parsed = { format: (('agents' in src.doc ? 'v2' : 'v1') as 'v1' | 'v2'), doc: src.doc };
    const doc = toV2(parsed);
    return buildModel([doc], { path: null, kind: 'agent-file', format: parsed.format, revision: revisionOf(doc), sourceKind: 'agent-file', reader: null, name: src.name ?? 'agent file' });
  }
  if (await isArchivePath(src)) {
    const reader = await openArchive(src);
    try {
      // Every entry is read and hashed before anything touches the database.
      const bad = (await reader.verifyAll()).filter((r) => !r.ok);
      if (bad.length) {
        throw new AgentVaultError('checksum', `${src}: ${bad.length === 1 ? 'an entry is' : `${bad.length} entries are`} damaged; nothing was restored. ${bad.map((b) => b.error ?? b.entry).join('; ')}`, {
          location: { file: src, entry: bad[0].entry },
          exitCode: 1,
          hint: 'use another copy of the archive',
        });
      }
      const docs: AgentFileV2[] = [];
      for (const a of reader.manifest.agents) docs.push(await readArchiveDoc(reader, a));
      const m = reader.manifest;
      const model = await buildModel(docs, {
        path: src,
        kind: 'archive',
        format: m.source?.file_format ?? 'v2',
        revision: m.source?.letta_revision ?? revisionOf(docs[0]),
        sourceKind: m.source?.kind ?? null,
        reader,
        name: src,
      });
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
  const parsed = await readAgentFile(src);
  const doc = toV2(parsed);
  return buildModel([doc], { path: src, kind: 'agent-file', format: parsed.format, revision: revisionOf(doc), sourceKind: 'agent-file', reader: null, name: src });
}

async function readArchiveDoc(reader: ArchiveReader, a: ManifestAgent): Promise<AgentFileV2> {
  const parsed = parseAgentFileBytes(await reader.readEntry(a.entry), `${reader.path}!${a.entry}`);
  if (parsed.format !== 'v2') throw restoreInvalid(`${reader.path}!${a.entry}`, `archive agent entries must be plain .af v2, this one is ${parsed.format}`);
  return parsed.doc as AgentFileV2;
}

function revisionOf(doc: AgentFileV2 | undefined): string | null {
  const r = doc?.metadata?.revision_id;
  return typeof r === 'string' && r ? r : null;
}

async function buildModel(
  docs: AgentFileV2[],
  info: { path: string | null; kind: 'archive' | 'agent-file'; format: string | null; revision: string | null; sourceKind: string | null; reader: ArchiveReader | null; name: string },
): Promise<SourceModel> {
  const model: SourceModel = {
    path: info.path,
    kind: info.kind,
    format: info.format,
    revision: info.revision,
    sourceKind: info.sourceKind,
    reader: info.reader,
    agents: [],
    blocks: new Map(),
    tools: new Map(),
    sources: new Map(),
    files: new Map(),
    groups: new Map(),
    mcp: new Map(),
    dbIds: new Map(),
    rows: new Map(),
    loadDoc: info.reader ? async (i) => readArchiveDoc(info.reader!, info.reader!.manifest.agents[i]) : async (i) => inMemory[i],
    close: async () => {
      await info.reader?.close();
    },
  };
  const keepDocs = !info.reader;
  // a plain .af is held whole; archive documents are re-read per agent when written
  const inMemory: AgentFileV2[] = keepDocs ? docs : [];
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
    add(model.mcp, 'mcp_servers', doc.mcp_servers);
    doc.agents.forEach((a: AgentV2, ai: number) => {
      const p = `/agents/${ai}`;
      if (!isObj(a) || typeof a.id !== 'string') throw restoreInvalid(where, `agents[${ai}] has no string "id"`, `${p}/id`);
      if (model.agents.some((x) => x.fileId === a.id)) throw restoreInvalid(where, `agent id "${a.id}" occurs twice`, `${p}/id`);
      const messages = Array.isArray(a.messages) ? a.messages : [];
      const msgIds = new Set<string>();
      const msgDb = new Map<string, string | null>();
      messages.forEach((m, mi) => {
        if (!isObj(m) || typeof m.id !== 'string') throw restoreInvalid(where, `agent "${a.id}": messages[${mi}] has no string "id"`, `${p}/messages/${mi}/id`);
        if (typeof m.role !== 'string') throw restoreInvalid(where, `agent "${a.id}": message "${m.id}" has no string "role"`, `${p}/messages/${mi}/role`);
        if (msgIds.has(m.id)) throw restoreInvalid(where, `agent "${a.id}": message id "${m.id}" occurs twice`, `${p}/messages/${mi}/id`);
        msgIds.add(m.id);
        const x = (m as Obj)[AV_EXT];
        msgDb.set(m.id, isObj(x) && typeof x.id === 'string' ? x.id : null);
      });
      const inContext = strs(a.in_context_message_ids);
      inContext.forEach((id, k) => {
        if (!msgIds.has(id)) throw restoreInvalid(where, `agent "${a.id}": in_context_message_ids[${k}] names message "${id}", which is not one of the agent's messages`, `${p}/in_context_message_ids/${k}`);
      });
      const { messages: _m, ...rest } = a as Obj;
      model.agents.push({
        fileId: a.id,
        dbId: typeof ids[a.id] === 'string' ? ids[a.id] : null,
        obj: keepDocs ? (a as Obj) : rest,
        extra: isObj(rows[a.id]) ? rows[a.id] : {},
        name: typeof a.name === 'string' ? a.name : null,
        doc: di,
        manifest: null,
        messageCount: messages.length,
        inContext,
        inContextDb: inContext.map((id) => msgDb.get(id) ?? null),
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
    throw new AgentVaultError('agent-not-found', `${model.path ?? 'the source'} has no agent ${missing.map((m) => JSON.stringify(m)).join(', ')}; it holds: ${avail}`, { exitCode: 2 });
  }
  return model.agents.filter((a) => out.includes(a));
}

async function computePlan(tx: Queryable, model: SourceModel, opts: RestoreOptions, where: string): Promise<Planned> {
  const info = await readLettaInfo(tx, where);
  const org = opts.organizationId ?? DEFAULT_ORG_ID;
  const user = opts.userId ?? DEFAULT_USER_ID;
  const orgRow = await tx.query(`SELECT id FROM organizations WHERE id = $1`, [org]);
  if (orgRow.rows.length === 0) throw new AgentVaultError('restore-target', `The target database has no organization ${org}.`, { exitCode: 2, hint: 'pass an existing organization id with --org' });
  const userRow = await tx.query<{ organization_id: string }>(`SELECT organization_id FROM users WHERE id = $1`, [user]);
  if (userRow.rows.length === 0) throw new AgentVaultError('restore-target', `The target database has no user ${user}.`, { exitCode: 2 });
  if (userRow.rows[0].organization_id !== org) throw new AgentVaultError('restore-target', `User ${user} belongs to organization ${userRow.rows[0].organization_id}, not to ${org}.`, { exitCode: 2 });

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
        .join(', ')}. Nothing was restored; choose --on-conflict=skip, replace or copy.`,
      exitCode: 4,
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
  // sources: shared by (name, organization); files: reused when their id exists
  for (const sf of wantSources) {
    const s = model.sources.get(sf)!;
    const r = await tx.query<{ id: string }>(`SELECT id FROM sources WHERE organization_id = $1 AND name = $2`, [org, s.obj.name]);
    if (r.rows.length) assign.sources.set(sf, r.rows[0].id);
    else {
      const free = s.dbId && !newIds && !(await existing(tx, 'sources', [s.dbId])).has(s.dbId);
      assign.sources.set(sf, free ? s.dbId! : newId('source'));
      assign.sourceInsert.add(sf);
    }
  }
  const takenFiles = await existing(tx, 'files', [...wantFiles].map((f) => model.files.get(f)!.dbId).filter((x): x is string => !!x && !newIds));
  for (const ff of wantFiles) {
    const f = model.files.get(ff)!;
    const db = newIds ? null : f.dbId;
    if (db && takenFiles.has(db)) assign.files.set(ff, db);
    else {
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
  const revOk = (srcRev === info.revision && isCompatibleRevision(info.revision)) || (isCompatibleRevision(srcRev) && isCompatibleRevision(info.revision));
  const forcedRev = !revOk && !!opts.forceSchema;
  if (!revOk && !opts.forceSchema) {
    const known = COMPATIBLE_REVISIONS.map((r) => r.revision).join(', ');
    refusals.push({
      code: 'revision-mismatch',
      message:
        `Letta schema revision mismatch: the source was written at revision ${srcRev ?? 'unknown'} and the target database is at revision ${info.revision}. ` +
        (isCompatibleRevision(info.revision) ? `${srcRev ?? 'An unknown revision'} is not in the compatible list` : `the target's revision is not one this version of Agent Vault writes`) +
        ` (compatible: ${known}; see docs/RESTORE.md). Pass --force-schema to restore anyway.`,
      exitCode: 6,
    });
  } else if (forcedRev) {
    warnings.push(`schema revision ${srcRev ?? 'unknown'} → ${info.revision} is not in the compatible list; restoring because --force-schema was given`);
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
        throw new AgentVaultError('embedding-mismatch', `agent ${JSON.stringify(a.name)}: its embeddings have ${dim} dimensions, more than the ${colDim} the target's archival_passages.embedding column holds.`, { exitCode: 6 });
      }
      const ok = target.length === 0 || target.some((x) => x.model === model_ && x.dim === dim);
      embeddingGuards.push({ agent: a.name ?? a.fileId, model: model_, dim, target, ok, forced: !ok && !!opts.allowEmbeddingMismatch });
      if (!ok && !opts.allowEmbeddingMismatch) {
        refusals.push({
          code: 'embedding-mismatch',
          message:
            `Embedding mismatch for agent ${JSON.stringify(a.name)}: its archival passages were embedded with ${model_ ?? 'an unknown model'} (${dim ?? '?'} dimensions), ` +
            `but the target's existing passages/archives use ${target.map((x) => `${x.model ?? 'an unknown model'} (${x.dim ?? '?'} dimensions)`).join(', ')}. ` +
            `Pass --allow-embedding-mismatch to restore anyway.`,
          exitCode: 6,
        });
      } else if (!ok) warnings.push(`agent ${JSON.stringify(a.name)}: embedding model ${model_} (${dim}) differs from the target's; restoring because --allow-embedding-mismatch was given`);
    }
  }

  const nameOf = (p: PlanAgent) => p.name ?? p.source_id;
  const plan: RestorePlan = {
    source: { path: model.path, kind: model.kind, format: model.format, revision: model.revision, source_kind: model.sourceKind },
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
    guards: { revision: { source: srcRev, target: info.revision, compatible: revOk, forced: forcedRev }, embedding: embeddingGuards },
    warnings,
    refusals,
  };
  return { plan, restored, assign, info, org, user };
}

// ---------------------------------------------------------------------------------------------
// public API

/** The plan of a restore, without changing anything (a read-only transaction). */
export async function planRestore(db: Db, source: RestoreSource, opts: RestoreOptions = {}): Promise<RestorePlan> {
  const model = await openSource(source);
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
  const model = await openSource(source); // archive checksums are verified here, before any transaction
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
        throw new AgentVaultError(refusal.code === 'conflict' ? 'restore-conflict' : refusal.code, planned.plan.refusals.map((r) => r.message).join('\n'), { exitCode: refusal.exitCode });
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

/** Shortest decimal that reads back as the same float32 (7-9 significant digits). */
function f32(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  for (let p = 7; p < 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return Number(x.toPrecision(9));
}

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
      return { id: A.sources.get(sf), name: s.obj.name, ...stamps(s.extra), embedding_config: ec, description: s.obj.description ?? null, metadata_: s.obj.metadata ?? null, ...base, instructions: s.obj.instructions ?? null, vector_db_provider: s.extra.vector_db_provider ?? 'NATIVE' };
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

  // 6. agents, with their final in-context message ids (message_ids has no foreign key)
  const msgMaps = new Map<string, Map<string, string>>(); // agent file id → message file id → target id
  const agentRows: Obj[] = [];
  for (const a of restored) {
    const o = a.obj;
    const keep = A.keepIds.has(a.fileId);
    const map = new Map<string, string>();
    a.inContext.forEach((m, k) => map.set(m, keep && a.inContextDb[k] ? a.inContextDb[k]! : newId('message')));
    msgMaps.set(a.fileId, map);
    const pa = plan.agents.find((p) => p.file_id === a.fileId)!;
    agentRows.push({
      id: A.agents.get(a.fileId),
      name: pa.target_name,
      ...stamps(a.extra),
      description: o.description ?? null,
      message_ids: a.inContext.map((m) => map.get(m)!),
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
        processing_status: o.processing_status ?? 'parsing',
        error_message: o.error_message ?? null,
        original_file_name: o.original_file_name ?? null,
        total_chunks: o.total_chunks ?? null,
        chunks_embedded: o.chunks_embedded ?? null,
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

  // 8. messages, agent by agent, in file order (sequence ids are assigned in that order)
  await step('messages');
  const msgCols = ['id', 'agent_id', 'role', 'text', 'model', 'name', 'tool_calls', 'tool_call_id', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'otid', 'tool_returns', 'group_id', 'content', 'sender_id', 'batch_item_id', 'is_err', 'approval_request_id', 'approve', 'denial_reason', 'approvals'];
  const groupFileIds = new Set(model.groups.keys());
  for (const a of restored) {
    const doc = await model.loadDoc(a.doc);
    const full = (doc.agents as AgentV2[]).find((x) => x.id === a.fileId)!;
    const map = msgMaps.get(a.fileId)!;
    const keep = A.keepIds.has(a.fileId);
    const messages = (Array.isArray(full.messages) ? full.messages : []) as MessageV2[];
    for (const m of messages) {
      if (map.has(m.id)) continue;
      const x: unknown = m[AV_EXT];
      map.set(m.id, keep && isObj(x) && typeof x.id === 'string' ? x.id : newId('message'));
    }
    const agentTarget = A.agents.get(a.fileId)!;
    const inserter = new BulkInserter(tx, 'messages', catalog, msgCols, { defaults: { created_at: 'now()', updated_at: 'now()' }, onBatch: (k) => opts.onProgress?.({ step: 'messages', rows: k }) });
    for (const m of messages) {
      const ext: Obj = isObj(m[AV_EXT]) ? (m[AV_EXT] as Obj) : {};
      let content: Json | undefined = m.content;
      if (typeof content === 'string') content = [{ type: 'text', text: content }];
      const gid = typeof m.group_id === 'string' ? m.group_id : null;
      await inserter.add({
        id: map.get(m.id),
        agent_id: agentTarget,
        role: m.role,
        text: ext.text ?? null,
        model: m.model ?? null,
        name: m.name ?? null,
        tool_calls: Array.isArray(m.tool_calls) ? m.tool_calls : [],
        tool_call_id: m.tool_call_id ?? null,
        created_at: m.created_at ?? null,
        updated_at: ext.updated_at ?? null,
        ...base,
        otid: m.otid ?? null,
        tool_returns: m.tool_returns ?? null,
        group_id: gid === null ? null : groupFileIds.has(gid) ? (A.groups.get(gid) ?? null) : (model.dbIds.has(gid) ? null : gid),
        content: content ?? null,
        sender_id: m.sender_id ?? null,
        batch_item_id: m.batch_item_id ?? null,
        is_err: ext.is_err ?? null,
        approval_request_id: typeof m.approval_request_id === 'string' ? (map.get(m.approval_request_id) ?? m.approval_request_id) : null,
        approve: m.approve ?? null,
        denial_reason: m.denial_reason ?? null,
        approvals: m.approvals ?? null,
      });
    }
    await inserter.flush();
    rows.messages = (rows.messages ?? 0) + inserter.total;
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
      const carry = A.envCarry.get(a.fileId);
      return [...keys.values()].map((e) => {
        const kept = carry?.get(e.key);
        return {
          id: A.keepIds.has(a.fileId) && typeof e.id === 'string' ? e.id : newId('agent-env'),
          key: e.key,
          value: kept ? kept.value : (e.value ?? ''),
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
        turns_counter: g.extra.turns_counter ?? null,
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

  await step('archival_passages');
  const staging = tx.copyFrom ? await VectorStaging.create(tx, catalog) : null;
  const tagRows: Obj[] = [];
  const passageCols = ['id', 'text', 'embedding_config', 'metadata_', 'embedding', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'archive_id', 'tags'];
  for (const a of restored) {
    if (!A.archiveInsert.has(a.fileId) || !a.manifest?.passages_entry || !model.reader) continue;
    const archiveId = A.archives.get(a.fileId)!;
    const keep = A.archiveKeepsIds.has(a.fileId);
    const inserter = new BulkInserter(tx, 'archival_passages', catalog, passageCols, {
      defaults: now,
      onBatch: (k) => opts.onProgress?.({ step: 'archival_passages', rows: k }),
      ...(staging ? staging.inserterOptions() : {}),
    });
    for await (const rec of readPassages(model.reader, a.manifest)) {
      const p = rec.passage;
      const id = keep && typeof p.id === 'string' ? p.id : newId('passage');
      const row: Obj = {
        id,
        text: typeof p.text === 'string' ? p.text : '',
        embedding_config: p.embedding_config ?? null,
        metadata_: p.metadata_ ?? {},
        embedding: null,
        created_at: p.created_at ?? null,
        updated_at: p.updated_at ?? null,
        ...base,
        archive_id: archiveId,
        tags: p.tags ?? null,
      };
      if (staging) row.av_ord = staging.add(rec.embedding);
      else row.embedding = rec.embedding ? Array.from(rec.embedding, f32) : null;
      await inserter.add(row);
      const tags = Array.isArray(p.passage_tags) ? p.passage_tags : Array.isArray(p.tags) ? p.tags : [];
      for (const tag of new Set(tags.filter((t): t is string => typeof t === 'string'))) tagRows.push({ id: newId('passage-tag'), tag, passage_id: id, archive_id: archiveId, ...base });
    }
    await inserter.flush();
    rows.archival_passages = (rows.archival_passages ?? 0) + inserter.total;
  }
  await ins('passage_tags', ['id', 'tag', 'passage_id', 'archive_id', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id'], tagRows, { defaults: now });
  return rows;
}

/**
 * Embeddings travel to the server in COPY's binary format (pgvector's own wire form: no float is
 * ever printed as text), into a temporary table, and are joined to the passage rows by a batch
 * position; the INSERT pads them to the column's dimension on the server.
 */
class VectorStaging {
  private chunks: Buffer[] = [];
  private ord = 0;

  private constructor(
    private readonly tx: Queryable,
    private readonly padTo: number | null,
    private readonly columnType: string,
  ) {}

  static async create(tx: Queryable, catalog: Map<string, ColumnInfo[]>): Promise<VectorStaging> {
    const col = catalog.get('archival_passages')!.find((c) => c.name === 'embedding');
    // the vector type as the catalog names it (schema-qualified when not on the search path)
    const vectorType = (col?.type ?? 'vector').replace(/\(\d+\)$/, '');
    await tx.query(`CREATE TEMP TABLE IF NOT EXISTS av_restore_vectors (ord integer NOT NULL, v ${vectorType}) ON COMMIT DROP`);
    await tx.query(`TRUNCATE av_restore_vectors`);
    return new VectorStaging(tx, col?.vectorDim ?? null, col?.type ?? 'vector');
  }

  /** Queues a vector for the current batch; returns its position (the join key). */
  add(v: Float32Array | null): number {
    const ord = ++this.ord;
    if (v === null) return ord;
    const dim = v.length;
    const b = Buffer.allocUnsafe(2 + 4 + 4 + 4 + 4 + dim * 4);
    b.writeInt16BE(2, 0); // fields
    b.writeInt32BE(4, 2);
    b.writeInt32BE(ord, 6);
    b.writeInt32BE(4 + dim * 4, 10);
    b.writeInt16BE(dim, 14); // pgvector: dim, unused, float4 values big-endian
    b.writeInt16BE(0, 16);
    const body = b.subarray(18);
    Buffer.from(v.buffer, v.byteOffset, v.byteLength).copy(body);
    body.swap32();
    this.chunks.push(b);
    return ord;
  }

  inserterOptions(): Partial<BulkInsertOptions> {
    const pad = this.padTo !== null ? `(x.v::real[] || array_fill(0::real, ARRAY[${this.padTo} - vector_dims(x.v)]))::${this.columnType}` : 'x.v';
    return {
      expressions: { embedding: `CASE WHEN x.v IS NULL THEN NULL ELSE ${pad} END` },
      extraFields: { av_ord: 'integer' },
      join: 'LEFT JOIN av_restore_vectors x ON x.ord = r.av_ord',
      beforeFlush: () => this.flush(),
      afterFlush: async () => {
        await this.tx.query(`TRUNCATE av_restore_vectors`);
      },
    };
  }

  private async flush(): Promise<void> {
    const chunks = this.chunks;
    this.chunks = [];
    if (chunks.length === 0) return;
    const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
    const trailer = Buffer.from([0xff, 0xff]);
    await this.tx.copyFrom!(`COPY av_restore_vectors (ord, v) FROM STDIN WITH (FORMAT binary)`, [header, ...chunks, trailer]);
  }
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
