/**
 * Change keys: whether an agent's entries would come out byte for byte as an earlier export wrote
 * them, decided without reading its messages or passages (docs/FORMAT.md, "Change keys"). Like
 * restic's parent snapshot, which skips a file whose metadata is unchanged, a backup into a store
 * vault copies an agent's entries from the parent snapshot when the agent's key is the one the
 * parent recorded (src/vault/store/repo.ts, StoreSnapshotWriter).
 *
 * The key is a SHA-256 over everything the bytes of the agent's entries (`.af`, passages, vectors,
 * file-passages, file-vectors) depend on, computed inside the export's one REPEATABLE READ
 * transaction before any message or passage is read:
 *
 * 1. CHANGE_KEY_VERSION, the archive format version, the extension version (AV_EXT_VERSION) and the
 *    tool version: a new Agent Vault may write other bytes, so it re-reads once;
 * 2. the export's settings that shape the bytes (the vector read path, whether secrets go in) and a
 *    caller's context (the vault's probe options: a reused agent's probes come from the parent);
 * 3. the database (databaseState): its relation oid and `pg_relation_filenode` of each big table
 *    read (messages, archival_passages, passage_tags, source_passages: TRUNCATE, VACUUM FULL,
 *    CLUSTER or a rewriting ALTER give a new file, hence a new key) and the names and types of
 *    their columns. The database itself (system identifier from pg_control_system() and the
 *    database oid, databaseIdentity) chooses the parent and goes into every key too;
 * 4. the agent's small objects exactly as the export writes them: the agent object of the `.af`
 *    (`head`: agent row, tags, block / tool / source / file ids; the in-context message ids as the
 *    agent row holds them: their file ids follow from them, messageBase and the order of the
 *    agent's messages, which the marker covers) and the rest of the document (blocks, tools, sources, files with their contents, groups,
 *    MCP servers, the agent_vault extension with every original id and row) with `created_at` left
 *    out (a reused `.af` keeps the `created_at` of the snapshot that first wrote it); the first
 *    message file id (messageBase: ids are numbered across the whole snapshot), the file ids the
 *    messages' group ids and the file chunks' file and source ids map to, and the embedding
 *    dimension the export chose for the agent's vectors;
 * 5. a row-version marker over EVERY row the agent's entries are read from, soft-deleted ones
 *    included (a flip of is_deleted is an UPDATE): count(*) and the exact sum of
 *    hashtextextended(xmin || ':' || ctid) over `messages WHERE agent_id = $1`,
 *    `archival_passages WHERE archive_id = $1`, the `passage_tags` of those passages and
 *    `source_passages WHERE file_id = ANY($1)` (the agent's files).
 *
 * Why a change cannot be missed: rows are never changed in place in PostgreSQL. Every INSERT,
 * UPDATE (also of a toasted embedding: the new version has a new toast pointer) and DELETE makes a
 * new tuple version or removes one; a new version gets the xid of the transaction that wrote it
 * (xmin), which no version visible to the earlier export's snapshot can carry (that transaction
 * had not committed, or had not started, when the earlier snapshot was taken), and a ctid (page,
 * offset) in the same relation file. So the set of (xmin, ctid) pairs the snapshot sees changes
 * with any change of a row; only a rewrite of the file (VACUUM FULL…) keeps xmins while moving
 * rows, and that changes the filenode (3). Two clusters (or databases) restored from the same
 * dump can show the same pairs: the system identifier and the database oid tell them apart. The
 * multiset of pairs is summarised by its size and the exact (numeric) sum of 64-bit hashes: two
 * different sets agree only if the hashes collide (about 2^-64). Freezing and hint bits do not
 * change a row's data (the xmin column shows the raw xmin). What the export derives from these
 * rows (message order by sequence_id, approval ranks, true dimensions, counts) is a function of
 * the rows, hence covered. The marker reads only the tables' main heap (the toasted vectors are
 * not read): ~100 ms per 200 000 messages.
 *
 * Reuse is offered only for PostgreSQL (a PGlite data directory can share its system identifier
 * with a copy of itself) and only when pg_control_system() may be called (PostgreSQL 15 lets any
 * role call it; a server that revokes it gets a full read, and the backup says so).
 */
import { createHash } from 'node:crypto';
import { TOOL_VERSION } from '../../core/version';
import type { Queryable } from '../../db/types';
import { ARCHIVE_FORMAT_VERSION } from '../../format/archive';
import { AV_EXT_VERSION } from '../ext';

/** Bumped whenever what a key covers changes. */
export const CHANGE_KEY_VERSION = 1;

/** The tables whose rows an agent's big entries are read from (marker over each). */
const BIG_TABLES = ['messages', 'archival_passages', 'passage_tags', 'source_passages'] as const;

/** Which database this is, or why reuse is off. */
export type DatabaseIdentity = { identity: string } | { identity: null; reason: string };

/**
 * The database's identity: its cluster's system identifier and its database oid. Null (with the
 * reason) for PGlite and when pg_control_system() may not be called.
 */
export async function databaseIdentity(tx: Queryable, kind: 'pg' | 'pglite'): Promise<DatabaseIdentity> {
  if (kind !== 'pg') return { identity: null, reason: 'the source is PGlite, whose data folders can share one system identifier' };
  const can = await tx.query<{ ok: boolean }>(`SELECT has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') AS ok`);
  if (!can.rows[0]?.ok) return { identity: null, reason: 'the database role may not call pg_control_system(), so the database cannot be told apart from a copy of it' };
  const r = await tx.query<{ sysid: string; dboid: string }>(
    `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS sysid, (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS dboid`,
  );
  const row = r.rows[0];
  if (!row?.sysid || !row.dboid) return { identity: null, reason: 'the database did not report its system identifier' };
  return { identity: `postgres:${row.sysid}:${row.dboid}` };
}

/**
 * What every key of this database shares: the relation oid, relation file and columns of each big
 * table (a rewrite or a schema change re-reads every agent).
 */
export async function databaseState(tx: Queryable): Promise<string> {
  const r = await tx.query<{ t: string; oid: string | null; node: string | null; cols: string | null }>(
    `SELECT u.t, c.oid::text AS oid, pg_relation_filenode(c.oid)::text AS node,
            (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols
       FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) LEFT JOIN pg_class c ON c.oid = to_regclass(u.t)
      ORDER BY u.n`, // in a fixed order: a join's order follows the plan, which changes with the statistics
    [[...BIG_TABLES]],
  );
  return JSON.stringify(r.rows.map((x) => [x.t, x.oid, x.node, x.cols]));
}

interface Marker {
  n: string;
  s: string;
  ids: string[] | null;
}

const MARK = `count(*)::text AS n, COALESCE(sum(hashtextextended(xmin::text || ':' || ctid::text, 0)::numeric), 0)::text AS s`;

/** The inputs of one agent's key (see the module comment). */
export interface AgentKeyInput {
  /** identity + databaseState + the export's settings + the caller's context */
  context: string;
  agentId: string;
  /** the agent object of the `.af`, as written */
  head: string;
  /** the rest of the `.af` document, as written except `created_at` */
  rest: string;
  messageBase: number;
  /** the archive whose passages the agent's entries hold (null: none) */
  archiveId: string | null;
  /** the embedding dimension recorded for the agent (null: the export derives it from the vectors) */
  dim: number | null;
  /** the database ids of the agent's files (their chunks go into file-passages) */
  fileIds: string[];
  /** the file id the export gives a database id (undefined: none) */
  fileIdOf: (dbId: string) => string | undefined;
}

/** The agent's change key (hex SHA-256); reads only the main heap of the rows it covers. */
export async function agentChangeKey(tx: Queryable, k: AgentKeyInput): Promise<string> {
  const msg = (await tx.query<Marker>(`SELECT ${MARK}, array_agg(DISTINCT group_id) FILTER (WHERE group_id IS NOT NULL) AS ids FROM messages WHERE agent_id = $1`, [k.agentId])).rows[0];
  let passages: Marker | null = null;
  let tags: Marker | null = null;
  if (k.archiveId !== null) {
    passages = (await tx.query<Marker>(`SELECT ${MARK}, NULL::text[] AS ids FROM archival_passages WHERE archive_id = $1`, [k.archiveId])).rows[0];
    tags = (await tx.query<Marker>(`SELECT ${MARK}, NULL::text[] AS ids FROM passage_tags WHERE passage_id IN (SELECT id FROM archival_passages WHERE archive_id = $1)`, [k.archiveId])).rows[0];
  }
  let chunks: Marker | null = null;
  if (k.fileIds.length) {
    chunks = (await tx.query<Marker>(`SELECT ${MARK}, array_agg(DISTINCT source_id) FILTER (WHERE source_id IS NOT NULL) AS ids FROM source_passages WHERE file_id = ANY($1::text[])`, [k.fileIds]))
      .rows[0];
  }
  const mapped = (ids: string[] | null | undefined) => (ids ?? []).map((id) => [id, k.fileIdOf(id) ?? null]);
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      v: CHANGE_KEY_VERSION,
      format: ARCHIVE_FORMAT_VERSION,
      ext: AV_EXT_VERSION,
      tool: TOOL_VERSION,
      context: k.context,
      agent: k.agentId,
      base: k.messageBase,
      archive: k.archiveId,
      dim: k.dim,
      files: k.fileIds.map((f) => [f, k.fileIdOf(f) ?? null]),
      messages: [msg.n, msg.s, mapped(msg.ids)],
      passages: passages ? [passages.n, passages.s] : null,
      tags: tags ? [tags.n, tags.s] : null,
      chunks: chunks ? [chunks.n, chunks.s, mapped(chunks.ids)] : null,
    }),
  );
  h.update('\u0000');
  h.update(k.head);
  h.update('\u0000');
  h.update(k.rest);
  return h.digest('hex');
}
