/**
 * `Db` over PGlite (PostgreSQL compiled to WASM, in this process) with the pgvector extension,
 * driven through PGlite's own API.
 *
 * PGlite has one backend, so one session: every call takes a mutex; `transaction()` holds it
 * from BEGIN to COMMIT/ROLLBACK, and other callers wait. Inside a transaction use only the `tx`
 * handle — calling `db.query`/`db.transaction` from inside `fn` would wait for itself, so it is
 * refused with AgentVaultError 'db-nested-call'.
 *
 * Result shape is the pg backend's (see ./pg.ts): rows as objects; json/jsonb parsed; bigint and
 * numeric as strings; timestamptz/timestamp as exact ISO 8601 text and date as 'YYYY-MM-DD' text
 * (see ./timestamps.ts); bytea as Buffer; vector columns as text
 * '[1,2,3]' (PGlite has no parser for the vector type, same as pg).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { PGlite, type Results } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { AgentVaultError, errorMessage } from '../core/errors';
import { beginStatement, quoteIdent, transactionAbortedError, transactionFinishedError } from './errors';
import { PG_DATE, PG_TIMESTAMP, PG_TIMESTAMPTZ, pgDateText, pgTimestampToIso } from './timestamps';
import type { Db, QueryResult, Queryable, TransactionOptions } from './types';

export interface PgliteOpenOptions {
  /** Directory holding the database files; undefined = in memory (lost at close). */
  dataDir?: string;
  /** Schema put on search_path (default 'letta'). */
  schema?: string;
  /** Start from a dump made by `PgliteDb.dump()` (only for a new/in-memory database). */
  loadDump?: Blob;
}

const INT8 = 20;
const BYTEA = 17;

/** Parsers that make PGlite's values look like node-postgres's. */
const PG_COMPATIBLE_PARSERS = {
  [INT8]: (v: string) => v,
  [BYTEA]: (v: string) => Buffer.from(v.startsWith('\\x') ? v.slice(2) : v, 'hex'),
  [PG_DATE]: pgDateText,
  [PG_TIMESTAMPTZ]: pgTimestampToIso,
  [PG_TIMESTAMP]: pgTimestampToIso,
};

function toResult<R>(r: Results<any>): QueryResult<R> {
  // pg's rowCount: rows returned for row-returning statements, rows affected otherwise.
  const returnsRows = r.fields.length > 0;
  return { rows: r.rows as R[], rowCount: returnsRows ? r.rows.length : (r.affectedRows ?? 0) };
}

/** A FIFO lock: PGlite has a single backend session. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    await prev;
    return release;
  }
}

export class PgliteDb implements Db {
  readonly kind = 'pglite' as const;
  readonly schema: string;
  /** Where the data lives, for messages. */
  readonly target: string;
  private readonly mutex = new Mutex();
  private readonly inTx = new AsyncLocalStorage<{ active: boolean }>();
  private closed = false;

  private constructor(
    private readonly pg: PGlite,
    schema: string,
    dataDir: string | undefined,
  ) {
    this.schema = schema;
    this.target = dataDir ? `PGlite database in ${dataDir}` : 'in-memory PGlite database';
  }

  static async open(opts: PgliteOpenOptions = {}): Promise<PgliteDb> {
    const schema = opts.schema ?? 'letta';
    const setPath = `SET search_path TO ${quoteIdent(schema)}`;
    let pg: PGlite;
    try {
      pg = await PGlite.create({
        dataDir: opts.dataDir,
        extensions: { vector },
        parsers: PG_COMPATIBLE_PARSERS,
        loadDataDir: opts.loadDump,
      });
      await pg.exec(setPath);
    } catch (e) {
      const where = opts.dataDir ? `the PGlite database in ${opts.dataDir}` : 'an in-memory PGlite database';
      throw new AgentVaultError('db-open', `Cannot open ${where}: ${errorMessage(e)}`, {
        location: opts.dataDir ? { file: opts.dataDir } : undefined,
        hint: opts.dataDir ? 'The directory must be empty or hold a PGlite database created by this version of Agent Vault.' : undefined,
        cause: e,
      });
    }
    return new PgliteDb(pg, schema, opts.dataDir);
  }

  private async locked<T>(work: () => Promise<T>): Promise<T> {
    if (this.inTx.getStore()?.active) {
      throw new AgentVaultError(
        'db-nested-call',
        'A database call was made on the database object from inside one of its transactions; use the transaction handle passed to the callback (internal error).',
      );
    }
    if (this.closed) throw new AgentVaultError('db-closed', `The ${this.target} is closed.`);
    const release = await this.mutex.lock();
    try {
      if (this.closed) throw new AgentVaultError('db-closed', `The ${this.target} is closed.`);
      return await work();
    } finally {
      release();
    }
  }

  async query<R = Record<string, any>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.locked(async () => toResult<R>(await this.pg.query(sql, params as any[] | undefined)));
  }

  async exec(sql: string): Promise<void> {
    await this.locked(async () => {
      await this.pg.exec(sql);
    });
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    const begin = beginStatement(opts);
    return this.locked(async () => {
      const pg = this.pg;
      let active = true;
      const marker = { active: true };
      const tx: Queryable = {
        async query<R = Record<string, any>>(sql: string, params?: readonly unknown[]) {
          if (!active) throw transactionFinishedError();
          return toResult<R>(await pg.query(sql, params as any[] | undefined));
        },
        async exec(sql: string) {
          if (!active) throw transactionFinishedError();
          await pg.exec(sql);
        },
        async copyFrom(sql: string, data: readonly Buffer[]) {
          if (!active) throw transactionFinishedError();
          // PGlite reads COPY data from the virtual file /dev/blob
          const fromBlob = sql.replace(/\bFROM\s+STDIN\b/i, "FROM '/dev/blob'");
          const r = await pg.query(fromBlob, [], { blob: new Blob(data as Buffer[]) });
          return r.affectedRows ?? 0;
        },
      };
      await pg.exec(begin);
      try {
        let result: T;
        try {
          result = await this.inTx.run(marker, () => fn(tx));
        } catch (e) {
          active = false;
          await pg.exec('ROLLBACK').catch(() => undefined);
          throw e;
        }
        active = false;
        const commit = await pg.query('COMMIT');
        if (commit.command === 'ROLLBACK') throw transactionAbortedError(this.target);
        return result;
      } finally {
        active = false;
        marker.active = false;
      }
    });
  }

  /** The whole data directory as a tar Blob, for `openPglite({ loadDump })`. */
  async dump(): Promise<Blob> {
    return this.locked(() => this.pg.dumpDataDir('none'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const release = await this.mutex.lock();
    try {
      if (this.closed) return;
      this.closed = true;
      await this.pg.close();
    } finally {
      release();
    }
  }
}

export function openPglite(opts: PgliteOpenOptions = {}): Promise<PgliteDb> {
  return PgliteDb.open(opts);
}
