/**
 * Export of Letta agents from a running Letta database (PostgreSQL or PGlite) into a snapshot
 * archive (docs/FORMAT.md): one Letta-compatible `.af` v2 per agent, its archival passages
 * (`passages/<id>.jsonl`) and their embeddings at the true dimension (`passages/<id>.vectors`).
 *
 * Consistency: everything is read in ONE `READ ONLY, REPEATABLE READ` transaction, so the archive
 * is a snapshot even while agents keep writing (every in-context message id of an agent names a
 * message that is in the archive).
 *
 * Memory: messages and passages are read with server-side cursors and streamed straight into the
 * archive entries; what is held at once is one batch of rows plus the agent's small objects
 * (blocks, tools, groups, sources, files).
 *
 * The `.af` of each agent follows Letta's own export (letta/services/agent_serialization_manager.py):
 * file-local ids (`agent-0`, `block-3`, `message-17`, …; one id space for the whole archive, so
 * the per-agent files can be merged back into one document), tools sorted by name, messages in
 * `sequence_id` order — but ALL of them, not Letta's last 50. Secrets are redacted in the .af (keys
 * kept, values ''); an encrypted export (`encryption`) writes the whole archive encrypted as it
 * streams (no plaintext file) and carries the values in `secrets/<agent-id>.env.json` entries
 * (./secrets.ts says where a value comes from). What Letta's format has no field for travels in the top-level `agent_vault` object
 * (ignored by Letta's import; see docs/RESTORE.md "The agent_vault extension"): the original
 * database id of every object, the columns the .af drops, identities, the archive row.
 */
import * as path from 'node:path';
import { AgentVaultError } from '../core/errors';
import { iterateBatches } from '../db/cursor';
import type { Db, Queryable } from '../db/types';
import { createArchiveWriter, agentEntryName, passagesEntryName, safeEntrySegment, vectorsEntryName, type ArchiveWriter, type Manifest, type ManifestAgent, type ManifestInput } from '../format/archive';
import type { ArchiveKey } from '../format/crypto';
import type { Json, JsonObject } from '../format/types';
import { VectorWriter } from '../format/vectors';
import { resolveSecretValue, type SecretSource } from './secrets';
import { readLettaInfo, type LettaDbInfo } from './sql';

// ---------------------------------------------------------------------------------------------
// listing

export interface AgentListing {
  id: string;
  name: string | null;
  agent_type: string | null;
  tags: string[];
  messages: number;
  in_context_messages: number;
  passages: number;
  blocks: number;
  tools: number;
  llm_model: string | null;
  embedding_model: string | null;
  embedding_dim: number | null;
  /** updated_at as ISO 8601 text */
  last_updated: string | null;
}

/** The agents of a Letta database with their sizes (one query; nothing is locked). */
export async function listAgents(db: Queryable, opts: { organizationId?: string } = {}): Promise<AgentListing[]> {
  await readLettaInfo(db, describeDb(db));
  const r = await db.query<Omit<AgentListing, 'embedding_dim'> & { embedding_dim: string | null }>(
    `SELECT a.id, a.name, a.agent_type,
            COALESCE((SELECT array_agg(t.tag ORDER BY t.tag) FROM agents_tags t WHERE t.agent_id = a.id), '{}') AS tags,
            (SELECT count(*)::int FROM messages m WHERE m.agent_id = a.id AND NOT m.is_deleted) AS messages,
            CASE WHEN json_typeof(a.message_ids) = 'array' THEN json_array_length(a.message_ids) ELSE 0 END AS in_context_messages,
            (SELECT count(*)::int FROM archives_agents aa JOIN archival_passages p ON p.archive_id = aa.archive_id
              WHERE aa.agent_id = a.id AND NOT p.is_deleted) AS passages,
            (SELECT count(*)::int FROM blocks_agents b WHERE b.agent_id = a.id) AS blocks,
            (SELECT count(*)::int FROM tools_agents t WHERE t.agent_id = a.id) AS tools,
            a.llm_config->>'model' AS llm_model,
            a.embedding_config->>'embedding_model' AS embedding_model,
            a.embedding_config->>'embedding_dim' AS embedding_dim,
            a.updated_at AS last_updated
       FROM agents a
      WHERE NOT a.is_deleted AND ($1::text IS NULL OR a.organization_id = $1)
      ORDER BY a.name NULLS LAST, a.id`,
    [opts.organizationId ?? null],
  );
  return r.rows.map((row) => ({
    ...row,
    tags: Array.isArray(row.tags) ? row.tags : [],
    embedding_dim: num(row.embedding_dim),
  }));
}

// ---------------------------------------------------------------------------------------------
// export

export interface ExportSelect {
  ids?: string[];
  /** ids or names (each must match at least one agent) */
  refs?: string[];
  names?: string[];
  tags?: string[];
  all?: boolean;
}

export interface ExportProgress {
  phase: 'snapshot' | 'agent' | 'messages' | 'passages' | 'warning' | 'done';
  agentId?: string;
  name?: string | null;
  /** 1-based position of the agent and the number of agents */
  index?: number;
  total?: number;
  /** rows written so far for this agent in this phase */
  rows?: number;
  message?: string;
}

export interface ExportOptions {
  select: ExportSelect;
  /** Only agents of this organization (default: any). */
  organizationId?: string;
  /** Archive to write. */
  out: string;
  /** Replace an existing file at `out`. */
  overwrite?: boolean;
  /** Awaited: a slow callback slows the export (tests use it to interleave writers). */
  onProgress?: (e: ExportProgress) => void | Promise<void>;
  /** Rows per cursor FETCH (default 1000 messages, 500 passages). */
  batchSize?: number;
  /** manifest.created_at and the .af created_at (default: now). */
  createdAt?: string;
  /** Read vectors the way pgvector < 0.7 needs (real[] slices instead of subvector); for tests. */
  legacyVectorPath?: boolean;
  /**
   * Write the archive encrypted with this key (docs/FORMAT.md §9): every entry is encrypted as it
   * is streamed (no plaintext file is ever written), and the agents' secret values go into
   * `secrets/<agent-id>.env.json` entries (unless `secrets: false`).
   */
  encryption?: { key: ArchiveKey };
  /** With `encryption`: include the secret values (default true). Without it they are always redacted. */
  secrets?: boolean;
  /**
   * The Letta server's LETTA_ENCRYPTION_KEY, to decrypt the `value_enc` of environment variables
   * (without it, `value_enc` is used only when it holds plain text; else the stored `value`).
   */
  lettaEncryptionKey?: string;
  /**
   * Called inside the export's snapshot transaction before an agent's vectors are written; the
   * returned observer sees every vector as it goes into the archive (the vault records its
   * probes this way).
   */
  onAgentVectors?: (ctx: AgentVectorsContext) => Promise<VectorObserver | null>;
  /**
   * Adds entries after the agents' (the writer is still open; the snapshot transaction has ended)
   * and returns manifest fields to set.
   */
  extraEntries?: (writer: ArchiveWriter, agents: ManifestAgent[]) => Promise<Partial<ManifestInput> | void>;
}

/** An agent's archival vectors, for an observer (ExportOptions.onAgentVectors). */
export interface AgentVectorsContext {
  agentId: string;
  archiveId: string;
  /** the true dimension (what the vectors entry holds) */
  dim: number;
  /** passages (each gets a vector row; one without an embedding a null) */
  count: number;
  /** manifest.created_at of the export */
  createdAt: string;
  /** ids of the agent's passages that have an embedding, in the order the vectors are written */
  embeddedIds(): Promise<string[]>;
  /** the embeddings of these passages at the true dimension, as the archive holds them */
  vectors(ids: string[]): Promise<Map<string, Float32Array>>;
}

export interface VectorObserver {
  /** a passage's vector (null: the passage has no embedding), in the order written */
  add(passageId: string, v: Float32Array | null): void;
  /** after the agent's last vector */
  end(): Promise<void> | void;
}

export interface ExportResult {
  path: string;
  manifest: Manifest;
  bytes: number;
  warnings: string[];
  /** environment variables whose values the archive holds (encrypted exports), 0 otherwise */
  secrets: number;
}

/** `secrets/<agent-id>.env.json`: an agent's environment variables with their values (encrypted archives only). */
export function secretsEntryName(agentId: string): string {
  return `secrets/${safeEntrySegment(agentId)}.env.json`;
}

/** What a secrets entry holds (docs/FORMAT.md, "Entries"). */
export interface SecretsEntry {
  agent_id: string;
  variables: Array<{ id: string; key: string; value: string; value_enc: string | null; value_source: SecretSource; description: string | null; created_at: string | null; updated_at: string | null }>;
}

/** Key of the extension object in each exported .af (see the module comment). */
export const AV_EXT = 'agent_vault';
export const AV_EXT_VERSION = 1;

type Row = Record<string, any>;

const isObj = (v: unknown): v is Record<string, any> => !!v && typeof v === 'object' && !Array.isArray(v);
const num = (v: unknown): number | null => (v === null || v === undefined || v === '' ? null : Number.isFinite(Number(v)) ? Number(v) : null);

function describeDb(db: Queryable): string {
  const t = (db as { target?: unknown }).target;
  return typeof t === 'string' ? t : 'the database';
}

/** Extra columns per table that Letta's .af has no field for (kept in agent_vault.rows). */
const EXTRA_COLUMNS: Record<string, readonly string[]> = {
  agents: ['created_at', 'updated_at', 'last_run_completion', 'last_run_duration_ms', 'last_stop_reason', 'entity_id', 'deployment_id'],
  block: ['created_at', 'updated_at', 'version'],
  tools: ['created_at', 'updated_at'],
  sources: ['created_at', 'updated_at', 'vector_db_provider'],
  files: ['created_at', 'updated_at'],
  files_agents: ['created_at', 'updated_at'],
  groups: ['created_at', 'updated_at', 'turns_counter', 'last_processed_message_id', 'base_template_id', 'template_id', 'deployment_id'],
  mcp_server: ['created_at', 'updated_at'],
};

function extras(table: string, row: Row): JsonObject | undefined {
  const out: JsonObject = {};
  for (const c of EXTRA_COLUMNS[table] ?? []) if (row[c] !== null && row[c] !== undefined) out[c] = row[c] as Json;
  return Object.keys(out).length ? out : undefined;
}

/** Allocates file-local ids (`<prefix>-<n>`) for database ids, one counter per prefix. */
class FileIds {
  private readonly byDb = new Map<string, string>();
  private readonly counters = new Map<string, number>();
  readonly toDb = new Map<string, string>();

  get(dbId: string): string | undefined {
    return this.byDb.get(dbId);
  }

  map(dbId: string, prefix: string): string {
    const have = this.byDb.get(dbId);
    if (have) return have;
    const n = this.counters.get(prefix) ?? 0;
    this.counters.set(prefix, n + 1);
    const id = `${prefix}-${n}`;
    this.byDb.set(dbId, id);
    this.toDb.set(id, dbId);
    return id;
  }

  /** Reserves `count` consecutive numbers for a prefix (messages) and returns the first. */
  reserve(prefix: string, count: number): number {
    const n = this.counters.get(prefix) ?? 0;
    this.counters.set(prefix, n + count);
    return n;
  }
}

interface Loaded {
  agents: Row[];
  blocksById: Map<string, Row>;
  blockLinks: Map<string, Row[]>; // agent → blocks_agents rows
  blockTags: Map<string, string[]>;
  toolsById: Map<string, Row>;
  toolLinks: Map<string, string[]>;
  tags: Map<string, string[]>;
  sourcesById: Map<string, Row>;
  sourceLinks: Map<string, string[]>;
  filesById: Map<string, Row>;
  fileAgents: Map<string, Row[]>;
  groupsById: Map<string, Row>;
  groupBlocks: Map<string, string[]>;
  groupAgents: Map<string, string[]>;
  agentGroups: Map<string, string[]>; // agent → groups it manages or belongs to
  identitiesById: Map<string, Row>;
  identityAgents: Map<string, string[]>; // identity → agents
  identityBlocks: Map<string, string[]>;
  env: Map<string, Row[]>;
  archiveLink: Map<string, Row>; // agent → archives_agents row + archive columns
  mcpById: Map<string, Row>;
  mcpByName: Map<string, Row>;
}

function groupBy<T extends Row>(rows: T[], key: string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const r of rows) {
    const k = r[key] as string;
    let l = m.get(k);
    if (!l) m.set(k, (l = []));
    l.push(r);
  }
  return m;
}

async function selectAgents(tx: Queryable, sel: ExportSelect, org: string | undefined, where: string): Promise<Row[]> {
  const ids = sel.ids ?? [];
  const names = sel.names ?? [];
  const tags = sel.tags ?? [];
  const refs = sel.refs ?? [];
  if (!sel.all && ids.length === 0 && names.length === 0 && tags.length === 0 && refs.length === 0) {
    throw new AgentVaultError('export-no-selection', 'Nothing selected to export: name agents by id, name or tag, or ask for all of them.', { kind: 'usage', remedy: 'select-agents' });
  }
  const r = await tx.query(
    `SELECT a.* FROM agents a
      WHERE NOT a.is_deleted AND ($1::text IS NULL OR a.organization_id = $1)
        AND ($2::boolean OR a.id = ANY($3::text[]) OR a.name = ANY($4::text[]) OR a.id = ANY($6::text[]) OR a.name = ANY($6::text[])
             OR EXISTS (SELECT 1 FROM agents_tags t WHERE t.agent_id = a.id AND t.tag = ANY($5::text[])))
      ORDER BY a.created_at NULLS FIRST, a.id`,
    [org ?? null, !!sel.all, ids, names, tags, refs],
  );
  const found = r.rows;
  const missing = [
    ...ids.filter((id) => !found.some((a) => a.id === id)).map((id) => `id ${JSON.stringify(id)}`),
    ...names.filter((n) => !found.some((a) => a.name === n)).map((n) => `name ${JSON.stringify(n)}`),
    ...refs.filter((r) => !found.some((a) => a.id === r || a.name === r)).map((r) => `id or name ${JSON.stringify(r)}`),
  ];
  if (missing.length) {
    throw new AgentVaultError('agent-not-found', `No agent with ${missing.join(', ')} in ${where}${org ? ` (organization ${org})` : ''}.`, {
      kind: 'usage',
      hint: 'run `agent-vault agents` to list the agents',
    });
  }
  if (found.length === 0) {
    throw new AgentVaultError('agent-not-found', `No agents match the selection in ${where}${tags.length ? ` (tags ${tags.join(', ')})` : ''}.`, { kind: 'usage' });
  }
  return found;
}

/** Adds the other members (and managers) of every group a selected agent belongs to. */
async function addGroupMembers(tx: Queryable, agents: Row[], warnings: string[]): Promise<Row[]> {
  const have = new Map(agents.map((a) => [a.id as string, a]));
  for (;;) {
    const r = await tx.query<{ agent_id: string }>(
      `WITH g AS (
         SELECT group_id AS id FROM groups_agents WHERE agent_id = ANY($1::text[])
         UNION SELECT id FROM groups WHERE manager_agent_id = ANY($1::text[]))
       SELECT DISTINCT x.agent_id FROM (
         SELECT ga.agent_id FROM groups_agents ga JOIN g ON g.id = ga.group_id
         UNION SELECT gr.manager_agent_id FROM groups gr JOIN g ON g.id = gr.id WHERE gr.manager_agent_id IS NOT NULL) x
       WHERE NOT (x.agent_id = ANY($1::text[]))`,
      [[...have.keys()]],
    );
    if (r.rows.length === 0) break;
    const more = await tx.query(`SELECT * FROM agents WHERE id = ANY($1::text[]) AND NOT is_deleted ORDER BY created_at NULLS FIRST, id`, [r.rows.map((x) => x.agent_id)]);
    if (more.rows.length === 0) break;
    for (const a of more.rows) {
      have.set(a.id, a);
      warnings.push(`added agent ${JSON.stringify(a.name)} (${a.id}): it is in a group with a selected agent`);
    }
  }
  return [...have.values()].sort((a, b) => String(a.created_at ?? '').localeCompare(String(b.created_at ?? '')) || String(a.id).localeCompare(String(b.id)));
}

async function loadRelated(tx: Queryable, agents: Row[]): Promise<Loaded> {
  const ids = agents.map((a) => a.id as string);
  const q = async (sql: string, params: unknown[] = [ids]) => (await tx.query(sql, params)).rows;

  const blockLinks = groupBy(await q(`SELECT agent_id, block_id, block_label FROM blocks_agents WHERE agent_id = ANY($1::text[])`), 'agent_id');
  const groupRows = await q(
    `SELECT * FROM groups WHERE NOT is_deleted AND (manager_agent_id = ANY($1::text[]) OR id IN (SELECT group_id FROM groups_agents WHERE agent_id = ANY($1::text[])))
      ORDER BY created_at NULLS FIRST, id`,
  );
  const groupIds = groupRows.map((g) => g.id as string);
  const groupBlockRows = await q(`SELECT group_id, block_id FROM groups_blocks WHERE group_id = ANY($1::text[]) ORDER BY block_id`, [groupIds]);
  const groupAgentRows = await q(`SELECT group_id, agent_id FROM groups_agents WHERE group_id = ANY($1::text[])`, [groupIds]);
  const identityAgentRows = await q(`SELECT identity_id, agent_id FROM identities_agents WHERE agent_id = ANY($1::text[])`);
  const identityIds = [...new Set(identityAgentRows.map((r) => r.identity_id as string))];
  const identityRows = await q(`SELECT * FROM identities WHERE id = ANY($1::text[]) AND NOT is_deleted ORDER BY id`, [identityIds]);
  const identityBlockRows = await q(`SELECT identity_id, block_id FROM identities_blocks WHERE identity_id = ANY($1::text[])`, [identityIds]);

  const blockIds = new Set<string>();
  for (const l of blockLinks.values()) for (const r of l) blockIds.add(r.block_id);
  for (const r of groupBlockRows) blockIds.add(r.block_id);
  const blockRows = await q(`SELECT * FROM block WHERE id = ANY($1::text[])`, [[...blockIds]]);
  const blockTagRows = await q(`SELECT block_id, tag FROM blocks_tags WHERE block_id = ANY($1::text[]) AND NOT is_deleted ORDER BY tag`, [[...blockIds]]);

  const toolLinkRows = await q(`SELECT agent_id, tool_id FROM tools_agents WHERE agent_id = ANY($1::text[])`);
  const toolRows = await q(`SELECT * FROM tools WHERE id = ANY($1::text[])`, [[...new Set(toolLinkRows.map((r) => r.tool_id as string))]]);
  const tagRows = await q(`SELECT agent_id, tag FROM agents_tags WHERE agent_id = ANY($1::text[]) ORDER BY tag`);

  const sourceLinkRows = await q(`SELECT agent_id, source_id FROM sources_agents WHERE agent_id = ANY($1::text[])`);
  const fileAgentRows = await q(`SELECT * FROM files_agents WHERE agent_id = ANY($1::text[]) AND NOT is_deleted ORDER BY file_name, id`);
  const sourceIds = new Set<string>([...sourceLinkRows.map((r) => r.source_id as string), ...fileAgentRows.map((r) => r.source_id as string)]);
  const fileRows = await q(
    `SELECT f.*, c.text AS content FROM files f LEFT JOIN file_contents c ON c.file_id = f.id
      WHERE NOT f.is_deleted AND (f.source_id = ANY($1::text[]) OR f.id = ANY($2::text[])) ORDER BY f.file_name, f.id`,
    [[...sourceIds], fileAgentRows.map((r) => r.file_id)],
  );
  for (const f of fileRows) sourceIds.add(f.source_id);
  const sourceRows = await q(`SELECT * FROM sources WHERE id = ANY($1::text[])`, [[...sourceIds]]);

  const envRows = await q(`SELECT * FROM agent_environment_variables WHERE agent_id = ANY($1::text[]) AND NOT is_deleted ORDER BY key`);
  const archiveRows = await q(
    `SELECT aa.agent_id, aa.is_owner, aa.created_at AS link_created_at, ar.*
       FROM archives_agents aa JOIN archives ar ON ar.id = aa.archive_id WHERE aa.agent_id = ANY($1::text[]) AND NOT ar.is_deleted`,
  );

  // MCP servers named by the tools' metadata_.mcp (by id, else by name), as Letta's export does.
  const mcpIds = new Set<string>();
  const mcpNames = new Set<string>();
  for (const t of toolRows) {
    const mcp = isObj(t.metadata_) ? t.metadata_.mcp : undefined;
    if (isObj(mcp)) {
      if (typeof mcp.server_id === 'string') mcpIds.add(mcp.server_id);
      else if (typeof mcp.server_name === 'string') mcpNames.add(mcp.server_name);
    }
  }
  const mcpRows = mcpIds.size || mcpNames.size ? await q(`SELECT * FROM mcp_server WHERE (id = ANY($1::text[]) OR server_name = ANY($2::text[])) AND NOT is_deleted ORDER BY server_name, id`, [[...mcpIds], [...mcpNames]]) : [];

  const agentGroups = new Map<string, string[]>();
  const addAG = (agent: string, group: string) => {
    const l = agentGroups.get(agent) ?? [];
    if (!l.includes(group)) l.push(group);
    agentGroups.set(agent, l);
  };
  for (const g of groupRows) {
    if (g.manager_agent_id) addAG(g.manager_agent_id, g.id);
    for (const r of groupAgentRows) if (r.group_id === g.id) addAG(r.agent_id, g.id);
    for (const a of Array.isArray(g.agent_ids) ? g.agent_ids : []) if (typeof a === 'string') addAG(a, g.id);
  }

  const byId = (rows: Row[]) => new Map(rows.map((r) => [r.id as string, r]));
  const strMap = (m: Map<string, Row[]>, field: string) => new Map([...m].map(([k, v]) => [k, v.map((r) => r[field] as string)]));
  return {
    agents,
    blocksById: byId(blockRows),
    blockLinks,
    blockTags: strMap(groupBy(blockTagRows, 'block_id'), 'tag'),
    toolsById: byId(toolRows),
    toolLinks: strMap(groupBy(toolLinkRows, 'agent_id'), 'tool_id'),
    tags: strMap(groupBy(tagRows, 'agent_id'), 'tag'),
    sourcesById: byId(sourceRows),
    sourceLinks: strMap(groupBy(sourceLinkRows, 'agent_id'), 'source_id'),
    filesById: byId(fileRows),
    fileAgents: groupBy(fileAgentRows, 'agent_id'),
    groupsById: byId(groupRows),
    groupBlocks: strMap(groupBy(groupBlockRows, 'group_id'), 'block_id'),
    groupAgents: strMap(groupBy(groupAgentRows, 'group_id'), 'agent_id'),
    agentGroups,
    identitiesById: byId(identityRows),
    identityAgents: strMap(groupBy(identityAgentRows, 'identity_id'), 'agent_id'),
    identityBlocks: strMap(groupBy(identityBlockRows, 'identity_id'), 'block_id'),
    env: groupBy(envRows, 'agent_id'),
    archiveLink: new Map(archiveRows.map((r) => [r.agent_id as string, r])),
    mcpById: byId(mcpRows),
    mcpByName: new Map(mcpRows.map((r) => [r.server_name as string, r])),
  };
}

// ---------------------------------------------------------------------------------------------
// rows → .af objects

function blockJson(b: Row, fileId: string, tags: string[] | undefined): JsonObject {
  return {
    value: b.value,
    limit: b.limit,
    project_id: b.project_id,
    template_name: b.template_name,
    is_template: b.is_template,
    template_id: b.template_id,
    base_template_id: b.base_template_id,
    deployment_id: b.deployment_id,
    entity_id: b.entity_id,
    preserve_on_migration: b.preserve_on_migration,
    label: b.label,
    read_only: b.read_only,
    description: b.description,
    metadata: isObj(b.metadata_) ? b.metadata_ : {},
    hidden: b.hidden,
    tags: tags && tags.length ? tags : null,
    id: fileId,
  };
}

function toolJson(t: Row, fileId: string): JsonObject {
  const o: JsonObject = {
    id: fileId,
    tool_type: t.tool_type,
    description: t.description,
    source_type: t.source_type,
    name: t.name,
    tags: Array.isArray(t.tags) ? t.tags : [],
    source_code: t.source_code,
    json_schema: t.json_schema,
    args_json_schema: t.args_json_schema,
  };
  // Letta's ToolSchema: return_char_limit is an integer (1…1 000 000) when present, never null.
  if (typeof t.return_char_limit === 'number') o.return_char_limit = t.return_char_limit;
  Object.assign(o, {
    pip_requirements: t.pip_requirements,
    npm_requirements: t.npm_requirements,
    default_requires_approval: t.default_requires_approval,
    enable_parallel_execution: t.enable_parallel_execution,
    created_by_id: t._created_by_id,
    last_updated_by_id: t._last_updated_by_id,
    metadata_: t.metadata_,
    project_id: t.project_id,
  });
  return o;
}

function sourceJson(s: Row, fileId: string): JsonObject {
  return {
    name: s.name,
    description: s.description,
    instructions: s.instructions,
    metadata: s.metadata_,
    embedding: null,
    embedding_chunk_size: null,
    embedding_config: s.embedding_config,
    id: fileId,
  };
}

function fileJson(f: Row, fileId: string, sourceFileId: string): JsonObject {
  return {
    source_id: sourceFileId,
    file_name: f.file_name,
    original_file_name: f.original_file_name,
    file_path: f.file_path,
    file_type: f.file_type,
    file_size: f.file_size,
    file_creation_date: f.file_creation_date,
    file_last_modified_date: f.file_last_modified_date,
    processing_status: f.processing_status,
    error_message: f.error_message,
    total_chunks: f.total_chunks,
    chunks_embedded: f.chunks_embedded,
    content: f.content ?? null,
    id: fileId,
  };
}

function managerConfig(g: Row, ids: FileIds): JsonObject {
  const mgr = g.manager_agent_id ? (ids.get(g.manager_agent_id) ?? g.manager_agent_id) : '';
  switch (g.manager_type) {
    case 'round_robin':
      return { manager_type: 'round_robin', max_turns: g.max_turns };
    case 'supervisor':
      return { manager_type: 'supervisor', manager_agent_id: mgr };
    case 'dynamic':
      return { manager_type: 'dynamic', manager_agent_id: mgr, termination_token: g.termination_token, max_turns: g.max_turns };
    case 'sleeptime':
      return { manager_type: 'sleeptime', manager_agent_id: mgr, sleeptime_agent_frequency: g.sleeptime_agent_frequency };
    case 'voice_sleeptime':
      return { manager_type: 'voice_sleeptime', manager_agent_id: mgr, max_message_buffer_length: g.max_message_buffer_length, min_message_buffer_length: g.min_message_buffer_length };
    default:
      return { manager_type: g.manager_type ?? 'round_robin', ...(g.manager_agent_id ? { manager_agent_id: mgr } : {}) };
  }
}

function groupJson(g: Row, fileId: string, ids: FileIds, sharedBlocks: string[], members: string[]): JsonObject {
  return {
    agent_ids: members.map((a) => ids.get(a) ?? a),
    description: g.description,
    manager_config: managerConfig(g, ids),
    project_id: g.project_id,
    shared_block_ids: sharedBlocks.map((b) => ids.get(b) ?? b),
    hidden: g.hidden,
    id: fileId,
  };
}

function mcpJson(m: Row, fileId: string): JsonObject {
  const stdio = isObj(m.stdio_config) ? Object.fromEntries(Object.entries(m.stdio_config).filter(([k]) => k !== 'env')) : null;
  return { id: fileId, server_type: m.server_type, server_name: m.server_name, server_url: m.server_url, stdio_config: stdio as Json, metadata_: m.metadata_ };
}

function messageJson(m: Row, fileId: string, agentFileId: string, ids: FileIds, approvalFileId: string | null): JsonObject {
  let content = m.content;
  if ((content === null || content === undefined) && typeof m.text === 'string') content = [{ type: 'text', text: m.text }];
  const ext: JsonObject = { id: m.id };
  if (m.updated_at) ext.updated_at = m.updated_at;
  if (m.is_err !== null && m.is_err !== undefined) ext.is_err = m.is_err;
  if (typeof m.text === 'string' && m.content !== null && m.content !== undefined) ext.text = m.text;
  return {
    type: 'message',
    role: m.role,
    content: content ?? [],
    name: m.name,
    otid: m.otid,
    sender_id: m.sender_id,
    batch_item_id: m.batch_item_id,
    group_id: m.group_id ? (ids.get(m.group_id) ?? m.group_id) : null,
    id: fileId,
    model: m.model,
    agent_id: agentFileId,
    tool_calls: Array.isArray(m.tool_calls) && m.tool_calls.length ? m.tool_calls : null,
    tool_call_id: m.tool_call_id,
    tool_returns: m.tool_returns,
    created_at: m.created_at,
    approve: m.approve,
    approval_request_id: approvalFileId ?? m.approval_request_id,
    denial_reason: m.denial_reason,
    approvals: m.approvals,
    [AV_EXT]: ext,
  };
}

// ---------------------------------------------------------------------------------------------
// the export

interface AgentPlan {
  row: Row;
  fileId: string;
  blockIds: string[]; // db ids, in .af order
  toolIds: string[];
  sourceIds: string[];
  fileIds: string[]; // db ids of files in this slice
  groupIds: string[]; // groups in this slice (manager or member)
  managedGroupIds: string[]; // agent.group_ids (Letta: the group the agent manages)
  messageBase: number;
  messageCount: number;
}

export async function exportAgents(db: Db, opts: ExportOptions): Promise<ExportResult> {
  const out = path.resolve(opts.out);
  const where = describeDb(db);
  const createdAt = opts.createdAt ?? new Date().toISOString();
  const warnings: string[] = [];
  const progress = async (e: ExportProgress) => {
    if (e.phase === 'warning' && e.message) warnings.push(e.message);
    await opts.onProgress?.(e);
  };
  const writer = await createArchiveWriter(out, { overwrite: opts.overwrite, encryption: opts.encryption });
  const withSecrets = !!opts.encryption && opts.secrets !== false;
  let secretCount = 0;
  try {
    const input = await db.transaction(
      async (tx) => {
        const info = await readLettaInfo(tx, where);
        if (opts.legacyVectorPath) info.hasSubvector = false;
        await progress({ phase: 'snapshot' });
        let agents = await selectAgents(tx, opts.select, opts.organizationId, where);
        const added: string[] = [];
        agents = await addGroupMembers(tx, agents, added);
        for (const w of added) await progress({ phase: 'warning', message: w });
        const L = await loadRelated(tx, agents);
        const ids = new FileIds();
        const plans = await planIds(tx, L, ids);
        const manifestAgents: ManifestAgent[] = [];
        for (const [i, p] of plans.entries()) {
          await progress({ phase: 'agent', agentId: p.row.id, name: p.row.name, index: i + 1, total: plans.length });
          manifestAgents.push(
            await writeAgent(tx, writer, info, L, ids, p, { createdAt, batchSize: opts.batchSize, progress, index: i + 1, total: plans.length, onAgentVectors: opts.onAgentVectors }),
          );
          if (withSecrets) secretCount += await writeSecrets(writer, p.row.id as string, L.env.get(p.row.id) ?? [], opts.lettaEncryptionKey, progress);
        }
        return { info, manifestAgents };
      },
      { isolation: 'repeatable read', readOnly: true },
    );
    const source = {
      kind: db.kind === 'pglite' ? ('pglite' as const) : ('postgres' as const),
      letta_revision: input.info.revision,
      pgvector_version: input.info.pgvectorVersion,
      postgres_version: input.info.postgresVersion,
      database: input.info.database,
      schema: input.info.schema,
      organization_id: opts.organizationId ?? null,
    };
    const more = (await opts.extraEntries?.(writer, input.manifestAgents)) ?? {};
    const res = await writer.finish({
      created_at: createdAt,
      source,
      agents: input.manifestAgents,
      secrets: !withSecrets ? 'redacted' : secretCount > 0 ? 'encrypted' : 'none',
      ...more,
    });
    await progress({ phase: 'done' });
    return { ...res, warnings, secrets: secretCount };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** The agent's environment variables with their values, as an entry of an encrypted archive; returns how many. */
async function writeSecrets(writer: ArchiveWriter, agentId: string, env: Row[], lettaKey: string | undefined, progress: (e: ExportProgress) => Promise<void>): Promise<number> {
  if (env.length === 0) return 0;
  const variables: SecretsEntry['variables'] = [];
  for (const e of env) {
    const r = resolveSecretValue({ key: String(e.key), value: e.value, value_enc: e.value_enc }, lettaKey);
    if (r.warning) await progress({ phase: 'warning', agentId, message: `agent ${agentId}: ${r.warning}` });
    variables.push({
      id: e.id,
      key: e.key,
      value: r.value,
      value_enc: typeof e.value_enc === 'string' ? e.value_enc : null,
      value_source: r.source,
      description: e.description ?? null,
      created_at: e.created_at ?? null,
      updated_at: e.updated_at ?? null,
    });
  }
  const entry: SecretsEntry = { agent_id: agentId, variables };
  await writer.addJson(secretsEntryName(agentId), entry, { mediaType: 'application/json' });
  return variables.length;
}

async function planIds(tx: Queryable, L: Loaded, ids: FileIds): Promise<AgentPlan[]> {
  const plans: AgentPlan[] = [];
  for (const a of L.agents) plans.push({ row: a, fileId: ids.map(a.id, 'agent'), blockIds: [], toolIds: [], sourceIds: [], fileIds: [], groupIds: [], managedGroupIds: [], messageBase: 0, messageCount: 0 });
  const counts = await tx.query<{ agent_id: string; n: number }>(
    `SELECT agent_id, count(*)::int AS n FROM messages WHERE agent_id = ANY($1::text[]) AND NOT is_deleted GROUP BY agent_id`,
    [L.agents.map((a) => a.id)],
  );
  const msgCount = new Map(counts.rows.map((r) => [r.agent_id, r.n]));
  for (const p of plans) {
    const id = p.row.id as string;
    const links = (L.blockLinks.get(id) ?? []).slice().sort((x, y) => String(x.block_label).localeCompare(String(y.block_label)) || String(x.block_id).localeCompare(String(y.block_id)));
    p.blockIds = links.map((l) => l.block_id).filter((b) => L.blocksById.has(b));
    p.blockIds.forEach((b) => ids.map(b, 'block'));
    p.toolIds = (L.toolLinks.get(id) ?? []).filter((t) => L.toolsById.has(t)).sort((x, y) => String(L.toolsById.get(x)!.name).localeCompare(String(L.toolsById.get(y)!.name)) || x.localeCompare(y));
    const srcs = new Set<string>(L.sourceLinks.get(id) ?? []);
    for (const fa of L.fileAgents.get(id) ?? []) srcs.add(fa.source_id);
    p.sourceIds = [...srcs].filter((s) => L.sourcesById.has(s)).sort((x, y) => String(L.sourcesById.get(x)!.name).localeCompare(String(L.sourcesById.get(y)!.name)) || x.localeCompare(y));
    const files = new Set<string>();
    for (const f of L.filesById.values()) if (p.sourceIds.includes(f.source_id)) files.add(f.id);
    for (const fa of L.fileAgents.get(id) ?? []) if (L.filesById.has(fa.file_id)) files.add(fa.file_id);
    p.fileIds = [...files];
    p.groupIds = (L.agentGroups.get(id) ?? []).filter((g) => L.groupsById.has(g));
    p.managedGroupIds = p.groupIds.filter((g) => L.groupsById.get(g)!.manager_agent_id === id);
    p.messageCount = msgCount.get(id) ?? 0;
    p.messageBase = ids.reserve('message', p.messageCount);
  }
  // Second pass, in agent order: tools, sources, files, file-agent links, groups, shared blocks.
  for (const p of plans) p.toolIds.forEach((t) => ids.map(t, 'tool'));
  for (const p of plans) p.sourceIds.forEach((s) => ids.map(s, 'source'));
  for (const p of plans) p.fileIds.forEach((f) => ids.map(f, 'file'));
  for (const p of plans) for (const fa of L.fileAgents.get(p.row.id) ?? []) ids.map(fa.id, 'file_agent');
  for (const p of plans) p.groupIds.forEach((g) => ids.map(g, 'group'));
  for (const g of L.groupsById.values()) for (const b of L.groupBlocks.get(g.id) ?? []) if (L.blocksById.has(b)) ids.map(b, 'block');
  for (const m of L.mcpById.values()) ids.map(m.id, 'mcp_server');
  for (const i of L.identitiesById.values()) ids.map(i.id, 'identity');
  return plans;
}

function groupMembers(L: Loaded, g: Row): string[] {
  const fromJson = Array.isArray(g.agent_ids) ? (g.agent_ids as unknown[]).filter((x): x is string => typeof x === 'string') : [];
  const linked = L.groupAgents.get(g.id) ?? [];
  return [...fromJson, ...linked.filter((a) => !fromJson.includes(a)).sort()];
}

async function writeAgent(
  tx: Queryable,
  writer: Awaited<ReturnType<typeof createArchiveWriter>>,
  info: LettaDbInfo,
  L: Loaded,
  ids: FileIds,
  p: AgentPlan,
  o: { createdAt: string; batchSize?: number; progress: (e: ExportProgress) => Promise<void>; index: number; total: number; onAgentVectors?: ExportOptions['onAgentVectors'] },
): Promise<ManifestAgent> {
  const a = p.row;
  const agentId = a.id as string;

  // in-context ids → file ids (by position in sequence order), in one query
  const inContextDb: string[] = Array.isArray(a.message_ids) ? a.message_ids.filter((x: unknown): x is string => typeof x === 'string') : [];
  const rankRows = inContextDb.length
    ? (
        await tx.query<{ id: string; rank: string }>(
          `SELECT id, rank FROM (SELECT id, row_number() OVER (ORDER BY sequence_id) - 1 AS rank FROM messages WHERE agent_id = $1 AND NOT is_deleted) m WHERE m.id = ANY($2::text[])`,
          [agentId, inContextDb],
        )
      ).rows
    : [];
  const rank = new Map(rankRows.map((r) => [r.id, Number(r.rank)]));
  const inContext: string[] = [];
  for (const mid of inContextDb) {
    const k = rank.get(mid);
    if (k === undefined) {
      await o.progress({ phase: 'warning', agentId, message: `agent ${JSON.stringify(a.name)} (${agentId}): in-context message ${mid} does not exist; left out of in_context_message_ids` });
      continue;
    }
    inContext.push(`message-${p.messageBase + k}`);
  }

  const env = L.env.get(agentId) ?? [];
  const redacted = env.length ? Object.fromEntries(env.map((e) => [e.key as string, ''])) : null;
  const slice = {
    blocks: new Set<string>(p.blockIds),
    groups: p.groupIds,
  };
  for (const g of p.groupIds) for (const b of L.groupBlocks.get(g) ?? []) if (L.blocksById.has(b)) slice.blocks.add(b);
  const identities = [...L.identitiesById.values()].filter((i) => (L.identityAgents.get(i.id) ?? []).includes(agentId));
  for (const i of identities) for (const b of L.identityBlocks.get(i.id) ?? []) if (L.blocksById.has(b)) slice.blocks.add(b);
  const tools = p.toolIds.map((t) => L.toolsById.get(t)!);
  const mcp = new Map<string, Row>();
  for (const t of tools) {
    const m = isObj(t.metadata_) && isObj(t.metadata_.mcp) ? t.metadata_.mcp : undefined;
    const srv = m ? (typeof m.server_id === 'string' ? L.mcpById.get(m.server_id) : typeof m.server_name === 'string' ? L.mcpByName.get(m.server_name) : undefined) : undefined;
    if (srv) mcp.set(srv.id, srv);
  }

  // A group goes into the entry's `groups` only when every member and its manager are in the
  // entry (this agent); a group with other members is kept in the extension (agent_vault.groups),
  // so that each entry is importable by Letta on its own and a restore still rebuilds the group.
  const whole = new Set(p.groupIds.filter((g) => [...groupMembers(L, L.groupsById.get(g)!), L.groupsById.get(g)!.manager_agent_id].every((m) => m === null || m === undefined || m === agentId)));
  const agentFile = p.fileId;
  const agentObj: JsonObject = {
    name: a.name,
    memory_blocks: [],
    tools: [],
    tool_ids: p.toolIds.map((t) => ids.get(t)!),
    source_ids: p.sourceIds.map((s) => ids.get(s)!),
    folder_ids: null,
    block_ids: p.blockIds.map((b) => ids.get(b)!),
    tool_rules: a.tool_rules ?? null,
    tags: L.tags.get(agentId) ?? [],
    system: a.system,
    agent_type: a.agent_type,
    initial_message_sequence: null,
    include_base_tools: false,
    include_multi_agent_tools: false,
    include_base_tool_rules: false,
    include_default_source: false,
    description: a.description,
    metadata: a.metadata_,
    llm_config: a.llm_config,
    embedding_config: a.embedding_config,
    model: null,
    embedding: null,
    model_settings: null,
    compaction_settings: a.compaction_settings,
    context_window_limit: null,
    embedding_chunk_size: null,
    max_tokens: null,
    max_reasoning_tokens: null,
    enable_reasoner: false,
    reasoning: null,
    from_template: null,
    template: false,
    project: null,
    tool_exec_environment_variables: redacted ?? {},
    secrets: redacted,
    memory_variables: null,
    project_id: a.project_id,
    template_id: a.template_id,
    base_template_id: a.base_template_id,
    identity_ids: null,
    message_buffer_autoclear: a.message_buffer_autoclear,
    enable_sleeptime: a.enable_sleeptime,
    response_format: a.response_format,
    timezone: a.timezone,
    max_files_open: a.max_files_open,
    per_file_view_window_char_limit: a.per_file_view_window_char_limit,
    hidden: a.hidden,
    parallel_tool_calls: null,
    id: agentFile,
    in_context_message_ids: inContext,
    files_agents: (L.fileAgents.get(agentId) ?? [])
      .filter((fa) => ids.get(fa.file_id) && ids.get(fa.source_id))
      .map((fa) => ({
        agent_id: agentFile,
        file_id: ids.get(fa.file_id)!,
        source_id: ids.get(fa.source_id)!,
        file_name: fa.file_name,
        is_open: fa.is_open,
        visible_content: fa.visible_content,
        last_accessed_at: fa.last_accessed_at,
        start_line: fa.start_line,
        end_line: fa.end_line,
        id: ids.get(fa.id)!,
      })),
    // only groups held in this entry: Letta's import maps every id through its own table
    group_ids: p.managedGroupIds.filter((g) => whole.has(g)).map((g) => ids.get(g)!),
  };

  // The extension: original ids and what the .af cannot hold.
  const idMap: Record<string, string> = { [agentFile]: agentId };
  const rows: Record<string, JsonObject> = {};
  const note = (fileId: string, dbId: string, table: string, row: Row) => {
    idMap[fileId] = dbId;
    const x = extras(table, row);
    if (x) rows[fileId] = x;
  };
  note(agentFile, agentId, 'agents', a);
  const blocks = [...slice.blocks].map((b) => L.blocksById.get(b)!).sort((x, y) => Number(ids.get(x.id)!.slice(6)) - Number(ids.get(y.id)!.slice(6)));
  for (const b of blocks) note(ids.get(b.id)!, b.id, 'block', b);
  for (const t of tools) note(ids.get(t.id)!, t.id, 'tools', t);
  const sources = p.sourceIds.map((s) => L.sourcesById.get(s)!);
  for (const s of sources) note(ids.get(s.id)!, s.id, 'sources', s);
  const files = p.fileIds.map((f) => L.filesById.get(f)!).sort((x, y) => Number(ids.get(x.id)!.slice(5)) - Number(ids.get(y.id)!.slice(5)));
  for (const f of files) note(ids.get(f.id)!, f.id, 'files', f);
  for (const fa of L.fileAgents.get(agentId) ?? []) if (ids.get(fa.id)) note(ids.get(fa.id)!, fa.id, 'files_agents', fa);
  const groups = p.groupIds.map((g) => L.groupsById.get(g)!);
  for (const g of groups) note(ids.get(g.id)!, g.id, 'groups', g);
  for (const m of mcp.values()) note(ids.get(m.id)!, m.id, 'mcp_server', m);
  // group members that are agents of this archive, so a restore can map them
  for (const g of groups) {
    for (const mId of [...groupMembers(L, g), g.manager_agent_id].filter((x): x is string => typeof x === 'string')) {
      const f = ids.get(mId);
      if (f) idMap[f] = mId;
    }
  }
  const link = L.archiveLink.get(agentId);
  const ext: JsonObject = {
    version: AV_EXT_VERSION,
    source_revision: info.revision,
    ids: idMap,
    rows,
    environment: env.map((e) => ({ key: e.key, description: e.description, created_at: e.created_at, updated_at: e.updated_at, id: e.id })),
    identities: identities.map((i) => ({
      id: i.id,
      identifier_key: i.identifier_key,
      name: i.name,
      identity_type: i.identity_type,
      project_id: i.project_id,
      properties: i.properties,
      created_at: i.created_at,
      updated_at: i.updated_at,
      block_ids: (L.identityBlocks.get(i.id) ?? []).map((b) => ids.get(b)).filter((x): x is string => !!x),
    })),
    archive: link
      ? {
          id: link.id,
          name: link.name,
          description: link.description,
          metadata_: link.metadata_,
          embedding_config: link.embedding_config,
          vector_db_provider: link.vector_db_provider,
          _vector_db_namespace: link._vector_db_namespace,
          created_at: link.created_at,
          updated_at: link.updated_at,
          is_owner: link.is_owner,
          link_created_at: link.link_created_at,
        }
      : null,
    secrets: env.length ? 'redacted' : null,
    groups: groups
      .filter((g) => !whole.has(g.id))
      .map((g) => groupJson(g, ids.get(g.id)!, ids, (L.groupBlocks.get(g.id) ?? []).filter((b) => L.blocksById.has(b)), groupMembers(L, g))),
    group_ids: p.managedGroupIds.filter((g) => !whole.has(g)).map((g) => ids.get(g)!),
  };

  const doc: JsonObject = {
    agents: [], // replaced by the streamed agent below
    groups: groups.filter((g) => whole.has(g.id)).map((g) => groupJson(g, ids.get(g.id)!, ids, (L.groupBlocks.get(g.id) ?? []).filter((b) => L.blocksById.has(b)), groupMembers(L, g))),
    blocks: blocks.map((b) => blockJson(b, ids.get(b.id)!, L.blockTags.get(b.id))),
    files: files.map((f) => fileJson(f, ids.get(f.id)!, ids.get(f.source_id) ?? f.source_id)),
    sources: sources.map((s) => sourceJson(s, ids.get(s.id)!)),
    tools: tools.map((t) => toolJson(t, ids.get(t.id)!)),
    mcp_servers: [...mcp.values()].map((m) => mcpJson(m, ids.get(m.id)!)),
    skills: [],
    metadata: { revision_id: info.revision },
    created_at: o.createdAt,
    [AV_EXT]: ext,
  };

  // Stream: {"agents":[{…agent…,"messages":[ …cursor… ]}], …rest of the document…}
  const head = JSON.stringify(agentObj);
  const restJson = JSON.stringify(doc);
  const rest = restJson.slice(restJson.indexOf('"agents":[]') + '"agents":[]'.length); // ',"groups":…}'
  let messages = 0;
  const batch = o.batchSize ?? 1000;
  async function* afStream(): AsyncGenerator<Buffer> {
    yield Buffer.from(`{"agents":[${head.slice(0, -1)},"messages":[`, 'utf8');
    const sql = `WITH r AS (SELECT m.*, row_number() OVER (ORDER BY m.sequence_id) - 1 AS rank FROM messages m WHERE m.agent_id = $1 AND NOT m.is_deleted)
                 SELECT r.*, ar.rank AS approval_rank FROM r LEFT JOIN r ar ON ar.id = r.approval_request_id ORDER BY r.rank`;
    for await (const rowsBatch of iterateBatches(tx, sql, [agentId], batch)) {
      const parts: string[] = [];
      for (const m of rowsBatch) {
        const fileId = `message-${p.messageBase + Number(m.rank)}`;
        const approval = m.approval_rank !== null && m.approval_rank !== undefined ? `message-${p.messageBase + Number(m.approval_rank)}` : null;
        parts.push(JSON.stringify(messageJson(m, fileId, agentFile, ids, approval)));
      }
      yield Buffer.from((messages > 0 ? ',' : '') + parts.join(','), 'utf8');
      messages += rowsBatch.length;
      await o.progress({ phase: 'messages', agentId, name: a.name, index: o.index, total: o.total, rows: messages });
    }
    yield Buffer.from(`]}]${rest}`, 'utf8');
  }
  const entry = agentEntryName(agentId);
  await writer.addStream(entry, afStream(), { mediaType: 'application/json' });
  if (messages !== p.messageCount) {
    // cannot happen inside one snapshot; a guard against a broken isolation level
    throw new AgentVaultError('export-inconsistent', `agent ${agentId}: counted ${p.messageCount} messages but read ${messages}; the export snapshot was not consistent`);
  }

  // passages
  let passages = 0;
  let passagesEntry: string | null = null;
  let vectorsEntry: string | null = null;
  const emb = isObj(a.embedding_config) ? a.embedding_config : null;
  const archiveEmb = link && isObj(link.embedding_config) ? link.embedding_config : null;
  let dim = num(archiveEmb?.embedding_dim) ?? num(emb?.embedding_dim);
  if (link) {
    const cnt = await tx.query<{ n: number; maxdim: number | null }>(
      `SELECT count(*)::int AS n, max(vector_dims(embedding)) AS maxdim FROM archival_passages WHERE archive_id = $1 AND NOT is_deleted`,
      [link.id],
    );
    passages = cnt.rows[0].n;
    if (passages > 0) {
      if (dim === null || !Number.isInteger(dim) || dim < 1) dim = await trueDimension(tx, link.id, cnt.rows[0].maxdim);
      passagesEntry = passagesEntryName(agentId);
      vectorsEntry = vectorsEntryName(agentId);
      const vdim = dim ?? 1;
      const observer = o.onAgentVectors
        ? await o.onAgentVectors({
            agentId,
            archiveId: link.id as string,
            dim: vdim,
            count: passages,
            createdAt: o.createdAt,
            embeddedIds: async () =>
              (await tx.query<{ id: string }>(`SELECT id FROM archival_passages WHERE archive_id = $1 AND NOT is_deleted AND embedding IS NOT NULL ORDER BY id`, [link.id])).rows.map((r) => r.id),
            vectors: (pids) => readVectorsById(tx, info, link.id as string, vdim, pids),
          })
        : null;
      await writePassages(tx, writer, info, link.id as string, agentId, vdim, passages, passagesEntry, vectorsEntry, {
        batchSize: o.batchSize ?? 500,
        progress: (n) => o.progress({ phase: 'passages', agentId, name: a.name, index: o.index, total: o.total, rows: n }),
        observer,
      });
      await observer?.end();
    }
  }

  return {
    id: agentId,
    name: a.name ?? null,
    agent_type: a.agent_type ?? null,
    entry,
    counts: {
      messages,
      in_context_messages: inContext.length,
      blocks: p.blockIds.length,
      tools: p.toolIds.length,
      passages,
      groups: p.groupIds.length,
      files: p.fileIds.length,
    },
    embedding: emb || archiveEmb
      ? {
          model: ((archiveEmb?.embedding_model ?? emb?.embedding_model) as string | undefined) ?? null,
          dim: passages > 0 ? dim : (num(emb?.embedding_dim) ?? null),
          endpoint_type: ((archiveEmb?.embedding_endpoint_type ?? emb?.embedding_endpoint_type) as string | undefined) ?? null,
        }
      : null,
    llm: isObj(a.llm_config) ? { model: (a.llm_config.model as string | undefined) ?? null } : null,
    passages_entry: passagesEntry,
    vectors_entry: vectorsEntry,
    file_id: agentFile,
  } as ManifestAgent;
}

/** Some passages' embeddings at the true dimension (the first `dim` values; what the archive holds). */
async function readVectorsById(tx: Queryable, info: LettaDbInfo, archiveId: string, dim: number, ids: string[]): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  if (ids.length === 0) return out;
  const trimmed = info.hasSubvector ? `subvector(embedding, 1, $3)` : `((embedding::real[])[1:$3])::vector`;
  const r = await tx.query<{ id: string; v: Buffer }>(
    `SELECT id, vector_send(${trimmed}) AS v FROM archival_passages WHERE archive_id = $1 AND id = ANY($2::text[]) AND embedding IS NOT NULL AND vector_dims(embedding) >= $3`,
    [archiveId, ids, dim],
  );
  for (const row of r.rows) {
    const vec = new Float32Array(dim);
    const bytes = Buffer.from(vec.buffer);
    row.v.copy(bytes, 0, 4, 4 + dim * 4);
    bytes.swap32();
    out.set(row.id, vec);
  }
  return out;
}

/** Without a recorded embedding_dim: the position of the last non-zero value over all passages. */
async function trueDimension(tx: Queryable, archiveId: string, maxDims: number | null): Promise<number> {
  const r = await tx.query<{ d: number | null }>(
    `SELECT max(u.i)::int AS d FROM archival_passages p, LATERAL unnest(p.embedding::real[]) WITH ORDINALITY AS u(x, i)
      WHERE p.archive_id = $1 AND NOT p.is_deleted AND u.x <> 0`,
    [archiveId],
  );
  return r.rows[0].d ?? maxDims ?? 1;
}

async function writePassages(
  tx: Queryable,
  writer: Awaited<ReturnType<typeof createArchiveWriter>>,
  info: LettaDbInfo,
  archiveId: string,
  agentId: string,
  dim: number,
  count: number,
  passagesEntry: string,
  vectorsEntry: string,
  o: { batchSize: number; progress: (n: number) => Promise<void>; observer?: VectorObserver | null },
): Promise<void> {
  const lineSql = `SELECT p.id, p.text, p.archive_id, p.embedding_config, p.metadata_, p.tags,
            COALESCE((SELECT json_agg(t.tag ORDER BY t.tag) FROM passage_tags t WHERE t.passage_id = p.id AND NOT t.is_deleted), '[]'::json) AS passage_tags,
            p.created_at, p.updated_at, (p.embedding IS NULL) AS no_embedding
       FROM archival_passages p WHERE p.archive_id = $1 AND NOT p.is_deleted ORDER BY p.id`;
  let n = 0;
  async function* lines(): AsyncGenerator<Buffer> {
    for await (const rows of iterateBatches(tx, lineSql, [archiveId], o.batchSize)) {
      const out: string[] = [];
      for (const r of rows) {
        const { no_embedding, ...rest } = r;
        if (no_embedding) (rest as Row).embedding = null;
        out.push(JSON.stringify(rest));
      }
      yield Buffer.from(out.join('\n') + '\n', 'utf8');
    }
  }
  await writer.addStream(passagesEntry, lines(), { mediaType: 'application/x-ndjson' });

  // The vectors: pgvector's binary form of the first `dim` values (big-endian float32 after a
  // 4-byte header), plus a check that nothing but zeros follows (the padding Letta adds).
  const trimmed = info.hasSubvector ? `subvector(p.embedding, 1, $2)` : `((p.embedding::real[])[1:$2])::vector`;
  const padCheck = info.hasSubvector
    ? `CASE WHEN vector_dims(p.embedding) > $2 THEN vector_norm(subvector(p.embedding, $2 + 1, vector_dims(p.embedding) - $2)) <> 0 ELSE false END`
    : `EXISTS (SELECT 1 FROM unnest((p.embedding::real[])[$2 + 1:]) AS x WHERE x <> 0)`;
  const vecSql = `SELECT p.id, CASE WHEN p.embedding IS NULL THEN NULL WHEN vector_dims(p.embedding) < $2 THEN NULL ELSE vector_send(${trimmed}) END AS v,
            CASE WHEN p.embedding IS NULL THEN false ELSE (vector_dims(p.embedding) < $2 OR ${padCheck}) END AS bad,
            CASE WHEN p.embedding IS NULL THEN 0 ELSE vector_dims(p.embedding) END AS dims
       FROM archival_passages p WHERE p.archive_id = $1 AND NOT p.is_deleted ORDER BY p.id`;
  const vw = new VectorWriter({ dim, count });
  const consumed = writer.addStream(vectorsEntry, vw.stream, { mediaType: 'application/vnd.agent-vault.vectors' });
  consumed.catch(() => undefined);
  const zero = new Float32Array(dim);
  try {
    for await (const rows of iterateBatches<{ id: string; v: Buffer | null; bad: boolean; dims: number }>(tx, vecSql, [archiveId, dim], o.batchSize)) {
      for (const r of rows) {
        if (r.bad) {
          throw new AgentVaultError(
            'vector-dim',
            `agent ${agentId}: passage ${r.id} has an embedding of ${r.dims} values that is not the embedding dimension ${dim} followed by zero padding; the recorded embedding_dim does not fit this vector`,
          );
        }
        if (r.v === null) {
          o.observer?.add(r.id, null);
          await vw.append(zero);
          continue;
        }
        const vec = new Float32Array(dim);
        const bytes = Buffer.from(vec.buffer);
        r.v.copy(bytes, 0, 4, 4 + dim * 4);
        bytes.swap32(); // big-endian → little-endian (and aligned, unlike the driver's buffer)
        o.observer?.add(r.id, vec);
        await vw.append(vec);
      }
      n += rows.length;
      await o.progress(n);
    }
    await vw.end();
  } catch (e) {
    vw.abort(e instanceof Error ? e : new Error(String(e)));
    await consumed.catch(() => undefined);
    throw e;
  }
  await consumed;
}
