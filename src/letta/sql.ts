/**
 * SQL helpers shared by export, restore, seed and the synthetic generator: facts about the
 * connected Letta database, the column catalog, set-based bulk inserts, and new ids.
 *
 * Bulk inserts send one JSON array per statement and let the server turn it into rows:
 *
 *   INSERT INTO t (a, b) SELECT r.a, r.b FROM json_to_recordset($1::json) AS r(a varchar, b json)
 *
 * The column types come from the target's catalog, so the same code writes any revision whose
 * columns it knows. A batch holds at most BULK_MAX_ROWS rows or about BULK_MAX_BYTES of JSON;
 * there is never one round trip per row.
 */
import { randomUUID } from 'node:crypto';
import { AgentVaultError, errorMessage } from '../core/errors';
import type { Queryable } from '../db/types';

export const BULK_MAX_ROWS = 5000;
export const BULK_MAX_BYTES = 8 * 1024 * 1024;

/** A new Letta id: `<prefix>-<uuid4>` (Letta's own format, letta/validators.py). */
export function newId(prefix: string): string {
  return `${prefix}-${randomUUID()}`;
}

/** The id prefix of a Letta id ("agent-…" → "agent", "passage-tag-…" → "passage-tag"). */
export function idPrefix(id: string): string {
  const m = /^(.*)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.exec(id);
  return m ? m[1] : id.replace(/-\d+$/, '');
}

export function qi(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export interface LettaDbInfo {
  /** alembic_version.version_num */
  revision: string;
  pgvectorVersion: string | null;
  postgresVersion: string;
  database: string;
  schema: string;
  /** pgvector ≥ 0.7 has subvector(); older servers get the real[] path. */
  hasSubvector: boolean;
}

/** How messages name a database (its redacted target when the connection has one). */
export function describeDb(db: Queryable): string {
  const t = (db as { target?: unknown }).target;
  return typeof t === 'string' ? t : 'the database';
}

/** Reads what a manifest/plan needs to know about the database; fails clearly when it is not Letta's. */
export async function readLettaInfo(q: Queryable, where: string): Promise<LettaDbInfo> {
  const r = await q.query<{ alembic: string | null; schema: string; database: string; version: string }>(
    `SELECT to_regclass('alembic_version')::text AS alembic, current_schema() AS schema, current_database() AS database, current_setting('server_version') AS version`,
  );
  const row = r.rows[0];
  if (!row.alembic || !row.schema) {
    throw new AgentVaultError('letta-not-found', `${where} has no Letta schema on its search path (no alembic_version table${row.schema ? ` in schema "${row.schema}"` : ''}).`, {
      remedy: 'schema',
      hint: 'Check the database name.',
      kind: 'usage',
    });
  }
  const rev = await q.query<{ version_num: string }>(`SELECT version_num FROM alembic_version`);
  if (rev.rows.length !== 1) {
    throw new AgentVaultError('letta-not-found', `${where}: alembic_version holds ${rev.rows.length} rows, expected exactly one (is the Letta schema initialised?)`, { kind: 'usage' });
  }
  const vec = await q.query<{ extversion: string; has_sub: boolean }>(
    `SELECT e.extversion, EXISTS (SELECT 1 FROM pg_proc p WHERE p.proname = 'subvector' AND p.pronamespace = e.extnamespace) AS has_sub
       FROM pg_extension e WHERE e.extname = 'vector'`,
  );
  return {
    revision: rev.rows[0].version_num,
    pgvectorVersion: vec.rows[0]?.extversion ?? null,
    postgresVersion: row.version,
    database: row.database,
    schema: row.schema,
    hasSubvector: vec.rows[0]?.has_sub ?? false,
  };
}

export interface ColumnInfo {
  name: string;
  /** format_type(): 'character varying', 'json', 'vector(4096)', … */
  type: string;
  notNull: boolean;
  hasDefault: boolean;
  /** For vector columns: the declared dimension (typmod), or null when unconstrained. */
  vectorDim: number | null;
}

/** Columns of the tables (resolved through search_path), in catalog order. */
export async function loadColumns(q: Queryable, tables: readonly string[]): Promise<Map<string, ColumnInfo[]>> {
  const r = await q.query<{ tbl: string; name: string; type: string; not_null: boolean; has_default: boolean; is_vector: boolean; typmod: number }>(
    `SELECT t.tbl, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null, a.atthasdef AS has_default,
            (ty.typname = 'vector') AS is_vector, a.atttypmod AS typmod
       FROM unnest($1::text[]) AS t(tbl)
       JOIN pg_attribute a ON a.attrelid = to_regclass(quote_ident(t.tbl))
       JOIN pg_type ty ON ty.oid = a.atttypid
      WHERE a.attnum > 0 AND NOT a.attisdropped
      ORDER BY t.tbl, a.attnum`,
    [tables],
  );
  const out = new Map<string, ColumnInfo[]>();
  for (const t of tables) out.set(t, []);
  for (const c of r.rows) {
    out.get(c.tbl)!.push({
      name: c.name,
      type: c.type,
      notNull: c.not_null,
      hasDefault: c.has_default,
      vectorDim: c.is_vector ? (c.typmod > 0 ? c.typmod : null) : null,
    });
  }
  return out;
}

export interface BulkInsertOptions {
  /** SQL expressions for columns whose value is null/absent in a row, e.g. { updated_at: 'now()' }. */
  defaults?: Record<string, string>;
  /** `ON CONFLICT …` clause appended to the statement. */
  onConflict?: string;
  /** Called after every statement (for progress). */
  onBatch?: (rows: number) => void | Promise<void>;
  /** SQL expressions that replace a column's value (e.g. a join to a staging table). */
  expressions?: Record<string, string>;
  /** Recordset fields that are read but not inserted (e.g. a join key), with their types. */
  extraFields?: Record<string, string>;
  /** Appended after `json_to_recordset(…) AS r(…)` (e.g. `LEFT JOIN staging x ON …`). */
  join?: string;
  /** Awaited before / after each statement (staging data for the batch). */
  beforeFlush?: () => Promise<void>;
  afterFlush?: () => Promise<void>;
}

/**
 * Inserts rows (objects keyed by column name) into `table` with set-based statements. Only the
 * columns named in `columns` are written; vector columns take a JSON array of numbers (the true
 * dimension) and are zero-padded on the server to the column's declared dimension.
 */
export class BulkInserter {
  private readonly sql: string;
  private rows: string[] = [];
  private bytes = 0;
  total = 0;

  constructor(
    private readonly q: Queryable,
    readonly table: string,
    catalog: Map<string, ColumnInfo[]>,
    columns: readonly string[],
    private readonly opts: BulkInsertOptions = {},
  ) {
    const known = catalog.get(table);
    if (!known || known.length === 0) {
      throw new AgentVaultError('letta-schema-mismatch', `The target database has no table "${table}" (is it a Letta database at a revision Agent Vault supports?)`, { kind: 'mismatch' });
    }
    const byName = new Map(known.map((c) => [c.name, c]));
    const defs: string[] = [];
    const sel: string[] = [];
    for (const name of columns) {
      const c = byName.get(name);
      if (!c) {
        throw new AgentVaultError('letta-schema-mismatch', `The target table "${table}" has no column "${name}" (its Letta schema revision differs from the one Agent Vault writes).`, {
          kind: 'mismatch',
        });
      }
      const col = `r.${qi(name)}`;
      if (opts.expressions?.[name]) {
        sel.push(opts.expressions[name]);
      } else if (c.vectorDim !== null || c.type === 'vector') {
        defs.push(`${qi(name)} real[]`);
        const padded = c.vectorDim !== null ? `(${col} || array_fill(0::real, ARRAY[${c.vectorDim} - cardinality(${col})]))` : col;
        sel.push(`CASE WHEN ${col} IS NULL THEN NULL ELSE ${padded}::${c.type} END`);
      } else {
        defs.push(`${qi(name)} ${c.type}`);
        const d = opts.defaults?.[name];
        sel.push(d ? `COALESCE(${col}, ${d})` : col);
      }
    }
    for (const [name, type] of Object.entries(opts.extraFields ?? {})) defs.push(`${qi(name)} ${type}`);
    this.sql =
      `INSERT INTO ${qi(table)} (${columns.map(qi).join(', ')}) SELECT ${sel.join(', ')} FROM json_to_recordset($1::json) AS r(${defs.join(', ')})` +
      (opts.join ? ` ${opts.join}` : '') +
      (opts.onConflict ? ` ${opts.onConflict}` : '');
  }

  async add(row: Record<string, unknown>): Promise<void> {
    const text = JSON.stringify(row);
    this.rows.push(text);
    this.bytes += text.length;
    if (this.rows.length >= BULK_MAX_ROWS || this.bytes >= BULK_MAX_BYTES) await this.flush();
  }

  async addAll(rows: Iterable<Record<string, unknown>>): Promise<void> {
    for (const r of rows) await this.add(r);
  }

  async flush(): Promise<void> {
    if (this.rows.length === 0) return;
    const payload = `[${this.rows.join(',')}]`;
    const n = this.rows.length;
    this.rows = [];
    this.bytes = 0;
    try {
      await this.opts.beforeFlush?.();
      await this.q.query(this.sql, [payload]);
      await this.opts.afterFlush?.();
    } catch (e) {
      throw describeWriteError(e, this.table);
    }
    this.total += n;
    await this.opts.onBatch?.(n);
  }
}

/** Inserts all rows at once (several statements if large). */
export async function bulkInsert(
  q: Queryable,
  catalog: Map<string, ColumnInfo[]>,
  table: string,
  columns: readonly string[],
  rows: Iterable<Record<string, unknown>>,
  opts: BulkInsertOptions = {},
): Promise<number> {
  const ins = new BulkInserter(q, table, catalog, columns, opts);
  await ins.addAll(rows);
  await ins.flush();
  return ins.total;
}

/**
 * A failed write as an AgentVaultError naming the table, the constraint and PostgreSQL's detail
 * (connection losses and AgentVaultErrors pass through unchanged).
 */
export function describeWriteError(e: unknown, table: string): unknown {
  if (e instanceof AgentVaultError) return e;
  const pg = e as { code?: string; constraint?: string; detail?: string; table?: string };
  if (typeof pg?.code !== 'string' || pg.code.startsWith('08') || pg.code.startsWith('57')) return e;
  const what = pg.constraint ? ` (constraint ${pg.constraint})` : '';
  const detail = pg.detail ? `: ${pg.detail}` : '';
  return new AgentVaultError('restore-write-failed', `Writing table "${pg.table ?? table}" failed${what}: ${errorMessage(e)}${detail}. Nothing was changed: the whole restore was rolled back.`, {
    kind: 'rolledBack',
    cause: e,
  });
}

/** JSON value of a column that node-postgres/PGlite already parsed (json) — or text to parse. */
export function jsonValue(v: unknown): unknown {
  if (typeof v === 'string') {
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  }
  return v ?? null;
}
