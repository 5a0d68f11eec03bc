/**
 * `Db` over node-postgres (`pg`), for a real PostgreSQL server.
 *
 * Connection settings: `url` (postgres://user:pass@host:port/db?sslmode=…) and the libpq
 * environment variables of `env` (an input: the CLI passes its context's environment): PGHOST,
 * PGPORT, PGUSER, PGPASSWORD, PGDATABASE for what the URL leaves out (or everything, without a
 * URL), and PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGCONNECT_TIMEOUT, PGAPPNAME, with
 * libpq's meaning. They are read here and handed to pg explicitly, so pg's own look-up of
 * `process.env` finds them already set; only without any password does pg still look in its
 * password file (~/.pgpass). Every pooled connection gets `SET search_path TO <schema>`
 * (default `letta`) before its first use.
 *
 * Result shape (shared with the PGlite backend): rows are plain objects keyed by column name;
 * json/jsonb are parsed; bigint (int8) and numeric come back as strings; timestamptz/timestamp
 * as exact ISO 8601 text with microseconds and offset ('2024-01-02T03:04:05.123456+00:00', see
 * ./timestamps.ts) and date as 'YYYY-MM-DD' text; bytea as Buffer; vector columns as their text form '[1,2,3]'. Parameters: pass
 * json values as JSON text (JSON.stringify) and vectors as '[…]' text (see ./vector.ts) — pg
 * would send a JS array as a PostgreSQL array literal.
 *
 * Errors: failing to connect → AgentVaultError 'db-connect' (names host, port, database and
 * user, never the password); the connection dropping → 'db-connection-lost'. SQL errors are the
 * driver's error objects (with `code` = SQLSTATE, `constraint`, `table`, `detail`).
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { ConnectionOptions } from 'node:tls';
import { from as copyFromStdin } from 'pg-copy-streams';
import { Client, Pool, types as pgTypes, type PoolClient, type PoolConfig, type QueryResult as PgQueryResult } from 'pg';
import { AgentVaultError, errorMessage } from '../core/errors';
import { beginStatement, connectionLostError, isConnectionLostError, quoteIdent, transactionAbortedError, transactionFinishedError } from './errors';
import { PG_DATE, PG_TIMESTAMP, PG_TIMESTAMPTZ, pgDateText, pgTimestampToIso } from './timestamps';
import type { Db, QueryResult, Queryable, TransactionOptions } from './types';
import { lostCommitError, resolveLostCommit, TX_IDENTITY_SQL, type CommitOutcome, type TxIdentity } from './commit';

/** pg's own parsers, except that dates and timestamps stay exact text (see ./timestamps.ts). */
const PG_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (format !== 'binary') {
      if (oid === PG_TIMESTAMPTZ || oid === PG_TIMESTAMP) return pgTimestampToIso;
      if (oid === PG_DATE) return pgDateText;
    }
    return (pgTypes.getTypeParser as (oid: number, format?: string) => (value: string) => unknown)(oid, format ?? 'text');
  },
};

export type PgSslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface PgSslOptions {
  /**
   * libpq meaning: 'disable'/'prefer' → no TLS (pg cannot fall back, so 'prefer' is plain);
   * 'require' → TLS without certificate checks (with `ca`: like verify-ca); 'verify-ca' → the
   * chain must lead to `ca`; 'verify-full' → chain and host name are checked.
   */
  mode: PgSslMode;
  /** Path of the CA certificate (PEM). */
  ca?: string;
  /** Path of the client certificate (PEM). */
  cert?: string;
  /** Path of the client key (PEM). */
  key?: string;
}

export interface PgOpenOptions {
  /** postgres://… URL; without it the libpq environment variables apply. */
  url?: string;
  /** TLS settings; override sslmode/sslrootcert/… from the URL and PGSSL* variables. */
  ssl?: PgSslOptions;
  /** Schema put on search_path for every connection (default 'letta'). */
  schema?: string;
  /** application_name shown in pg_stat_activity (default 'agent-vault'). */
  applicationName?: string;
  /** Pool size (default 4). */
  maxConnections?: number;
  /** Connect timeout in ms (default PGCONNECT_TIMEOUT seconds, else 15000). */
  connectTimeoutMs?: number;
  /** Check the connection before returning (default true). */
  verify?: boolean;
  /**
   * The environment the libpq variables (PG*) and AGENT_VAULT_COMMIT_CHECK_MS are read from
   * (default: none; a front end passes its own, e.g. the CLI its context's `env`).
   */
  env?: NodeJS.ProcessEnv;
}

const SSL_URL_PARAMS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'uselibpqcompat', 'sslpassword'];

interface ResolvedConfig {
  poolConfig: PoolConfig;
  target: string;
  /** How long to keep asking whether a COMMIT whose connection was lost committed (ms; ./commit.ts). */
  commitCheckMs: number | undefined;
}

/** The user name when neither the URL nor PGUSER gives one: the login's, as pg (from `env`) and libpq. */
function defaultUser(env: NodeJS.ProcessEnv): string | undefined {
  const fromEnv = process.platform === 'win32' ? env.USERNAME : env.USER;
  if (fromEnv) return fromEnv;
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

/**
 * The connection string with what it leaves out (host, port, user, password, database) filled from
 * the libpq variables of `env`, then pg's defaults (localhost, 5432, the login name, the user's
 * database): pg would otherwise read them from `process.env` itself.
 */
function fillFromEnv(u: URL, env: NodeJS.ProcessEnv): void {
  if (!u.hostname && !u.searchParams.has('host')) {
    const host = env.PGHOST || 'localhost';
    if (host.startsWith('/')) u.searchParams.set('host', host);
    else u.hostname = host;
  }
  const user = env.PGUSER || defaultUser(env);
  if (u.hostname) {
    if (!u.port && !u.searchParams.has('port')) u.port = env.PGPORT || '5432';
    if (!u.username && !u.searchParams.has('user') && user) u.username = encodeURIComponent(user);
    if (!u.password && !u.searchParams.has('password') && env.PGPASSWORD && u.username) u.password = encodeURIComponent(env.PGPASSWORD);
  } else {
    // no host part (a Unix socket in ?host=): the rest goes in as parameters, as pg reads them
    if (!u.searchParams.has('port')) u.searchParams.set('port', env.PGPORT || '5432');
    if (!u.searchParams.has('user') && user) u.searchParams.set('user', user);
    if (!u.searchParams.has('password') && env.PGPASSWORD) u.searchParams.set('password', env.PGPASSWORD);
  }
  if (u.pathname === '' || u.pathname === '/') {
    const db = env.PGDATABASE || (u.username ? decodeURIComponent(u.username) : u.searchParams.get('user'));
    if (db) u.pathname = `/${encodeURIComponent(db)}`;
  }
}

/** Without a URL: every connection setting from the libpq variables of `env`, then pg's defaults. */
function configFromEnv(env: NodeJS.ProcessEnv): Pick<PoolConfig, 'host' | 'port' | 'user' | 'password' | 'database'> {
  const port = Number(env.PGPORT || 5432);
  const user = env.PGUSER || defaultUser(env);
  return {
    host: env.PGHOST || 'localhost',
    port: Number.isInteger(port) ? port : 5432,
    user,
    password: env.PGPASSWORD || undefined,
    database: env.PGDATABASE || user,
  };
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new AgentVaultError('db-ssl-file', `Cannot read the ${what} file ${path}: ${errorMessage(e)}`, { location: { file: path }, cause: e });
  }
}

function sslConfig(ssl: PgSslOptions | undefined): false | ConnectionOptions {
  if (!ssl) return false;
  const mode = ssl.mode;
  const tls: ConnectionOptions = {};
  if (ssl.ca) tls.ca = readPem(ssl.ca, 'SSL CA certificate');
  if (ssl.cert) tls.cert = readPem(ssl.cert, 'SSL client certificate');
  if (ssl.key) tls.key = readPem(ssl.key, 'SSL client key');
  switch (mode) {
    case 'disable':
    case 'prefer':
      return false;
    case 'require':
      if (!tls.ca) return { ...tls, rejectUnauthorized: false };
      return { ...tls, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-ca':
      return { ...tls, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { ...tls, rejectUnauthorized: true };
    default:
      throw new AgentVaultError('db-bad-sslmode', `Unknown SSL mode ${JSON.stringify(mode)} (use disable, prefer, require, verify-ca or verify-full).`);
  }
}

function parseSslMode(value: string, where: string): PgSslMode {
  const v = value.trim().toLowerCase();
  if (v === 'allow') return 'prefer';
  if (v === 'no-verify') return 'require';
  if (v === 'disable' || v === 'prefer' || v === 'require' || v === 'verify-ca' || v === 'verify-full') return v;
  throw new AgentVaultError('db-bad-sslmode', `Unknown sslmode ${JSON.stringify(value)} in ${where} (use disable, prefer, require, verify-ca or verify-full).`);
}

function resolveConfig(opts: PgOpenOptions): ResolvedConfig {
  const env = opts.env ?? {};
  let connectionString: string | undefined;
  let ssl: PgSslOptions | undefined;

  if (opts.url !== undefined) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new AgentVaultError('db-bad-url', 'The database URL is not a valid postgres:// URL.', { hint: 'Expected postgres://user:password@host:port/database' });
    }
    if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
      throw new AgentVaultError('db-bad-url', `The database URL must start with postgres:// or postgresql:// (got ${u.protocol}//…).`);
    }
    const mode = u.searchParams.get('sslmode');
    if (mode !== null) {
      ssl = {
        mode: parseSslMode(mode, 'the database URL'),
        ca: u.searchParams.get('sslrootcert') ?? undefined,
        cert: u.searchParams.get('sslcert') ?? undefined,
        key: u.searchParams.get('sslkey') ?? undefined,
      };
    }
    for (const p of SSL_URL_PARAMS) u.searchParams.delete(p);
    fillFromEnv(u, env);
    connectionString = u.toString();
  }
  if (!ssl && env.PGSSLMODE) {
    ssl = { mode: parseSslMode(env.PGSSLMODE, 'PGSSLMODE'), ca: env.PGSSLROOTCERT || undefined, cert: env.PGSSLCERT || undefined, key: env.PGSSLKEY || undefined };
  }
  if (opts.ssl) ssl = opts.ssl;

  const envTimeout = env.PGCONNECT_TIMEOUT ? Number(env.PGCONNECT_TIMEOUT) * 1000 : undefined;
  const poolConfig: PoolConfig = {
    ...(connectionString === undefined ? configFromEnv(env) : { connectionString }),
    types: PG_TYPES as PoolConfig['types'],
    ssl: sslConfig(ssl),
    application_name: opts.applicationName ?? env.PGAPPNAME ?? 'agent-vault',
    max: opts.maxConnections ?? 4,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? (envTimeout && envTimeout > 0 ? envTimeout : 15000),
    idleTimeoutMillis: 10000,
    allowExitOnIdle: true,
  };
  // The values pg will use (URL, then PG* variables, then its defaults), for messages.
  const probe = new Client(connectionString === undefined ? configFromEnv(env) : { connectionString });
  const p = probe as unknown as { host?: string; port?: number; database?: string; user?: string };
  const host = p.host ?? 'localhost';
  const target = `${host.startsWith('/') ? `socket ${host}` : host}:${p.port ?? 5432}, database "${p.database ?? ''}" as user "${p.user ?? ''}"`;
  return { poolConfig, target, commitCheckMs: Number(env.AGENT_VAULT_COMMIT_CHECK_MS) || undefined };
}

function toResult<R>(r: PgQueryResult): QueryResult<R> {
  return { rows: r.rows as R[], rowCount: r.rowCount ?? r.rows.length };
}

export class PgDb implements Db {
  readonly kind = 'pg' as const;
  /** "host:port, database "x" as user "y"" — for messages (no password). */
  readonly target: string;
  readonly schema: string;
  private readonly pool: Pool;
  private readonly commitCheckMs: number | undefined;
  private closed = false;
  /**
   * The last read-write transaction's COMMIT: its id and outcome; `connectionLost` when the
   * connection was lost at COMMIT and a new connection established the outcome (./commit.ts).
   */
  lastCommit: (TxIdentity & { outcome: CommitOutcome; detail: string; connectionLost: boolean }) | null = null;

  constructor(opts: PgOpenOptions = {}) {
    this.schema = opts.schema ?? 'letta';
    const setPath = `SET search_path TO ${quoteIdent(this.schema)}`;
    const { poolConfig, target, commitCheckMs } = resolveConfig(opts);
    this.target = target;
    this.commitCheckMs = commitCheckMs;
    this.pool = new Pool(poolConfig);
    // Idle clients whose server connection drops emit 'error' on the pool; the pool discards
    // them. Without a listener Node would crash the process.
    this.pool.on('error', () => undefined);
    this.pool.on('connect', (client) => {
      client.query(setPath).catch(() => undefined);
    });
  }

  private async checkout(): Promise<PoolClient> {
    if (this.closed) throw new AgentVaultError('db-closed', `The database connection to ${this.target} is closed.`);
    try {
      return await this.pool.connect();
    } catch (e) {
      throw connectError(this.target, e);
    }
  }

  /** Runs `work` on one pooled client; discards the client when the connection broke. */
  private async withClient<T>(during: string, work: (c: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.checkout();
    let broken: unknown;
    const onError = (e: unknown) => {
      broken ??= e;
    };
    client.on('error', onError);
    try {
      return await work(client);
    } catch (e) {
      if (broken !== undefined || isConnectionLostError(e)) {
        broken ??= e;
        throw connectionLostError(this.target, during, e);
      }
      throw e;
    } finally {
      client.off('error', onError);
      client.release(broken !== undefined ? asError(broken) : undefined);
    }
  }

  async query<R = Record<string, any>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.withClient('while running a query', async (c) => toResult<R>(await c.query(sql, params as unknown[] | undefined)));
  }

  async exec(sql: string): Promise<void> {
    await this.withClient('while running SQL', async (c) => {
      await c.query(sql);
    });
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    const begin = beginStatement(opts);
    const client = await this.checkout();
    let broken: unknown;
    const onError = (e: unknown) => {
      broken ??= e;
    };
    client.on('error', onError);
    let active = true;
    const target = this.target;
    const run = async (sql: string, params?: readonly unknown[]) => {
      if (!active) throw transactionFinishedError();
      try {
        return await client.query(sql, params as unknown[] | undefined);
      } catch (e) {
        if (broken !== undefined || isConnectionLostError(e)) {
          broken ??= e;
          throw connectionLostError(target, 'during a transaction', e);
        }
        throw e;
      }
    };
    const tx: Queryable = {
      async query<R = Record<string, any>>(sql: string, params?: readonly unknown[]) {
        return toResult<R>(await run(sql, params));
      },
      async exec(sql: string) {
        await run(sql);
      },
      async copyFrom(sql: string, data: readonly Buffer[]) {
        if (!active) throw transactionFinishedError();
        try {
          const stream = client.query(copyFromStdin(sql));
          const done = new Promise<void>((resolve, reject) => {
            stream.on('finish', () => resolve());
            stream.on('error', reject);
          });
          for (const chunk of data) {
            // a stream that fails (connection lost) never drains: wait for whichever comes first
            if (!stream.write(chunk)) await Promise.race([new Promise<void>((r) => stream.once('drain', () => r())), done]);
          }
          stream.end();
          await done;
          return stream.rowCount ?? 0;
        } catch (e) {
          if (broken !== undefined || isConnectionLostError(e)) {
            broken ??= e;
            throw connectionLostError(target, 'during a transaction', e);
          }
          throw e;
        }
      },
    };
    let identity: TxIdentity | undefined;
    try {
      await run(begin);
      if (!opts.readOnly) {
        // recorded before COMMIT so that a connection lost at COMMIT can be resolved (./commit.ts)
        const r = await run(TX_IDENTITY_SQL);
        identity = { txid: String(r.rows[0].txid), pid: Number(r.rows[0].pid) };
      }
      let result: T;
      try {
        result = await fn(tx);
      } catch (e) {
        if (broken !== undefined || isConnectionLostError(e)) {
          broken ??= e;
          throw connectionLostError(target, 'during a transaction', e);
        }
        try {
          await client.query('ROLLBACK');
        } catch (re) {
          broken ??= re;
        }
        throw e;
      }
      if (broken !== undefined) throw connectionLostError(target, 'during a transaction', broken);
      let commit: PgQueryResult;
      try {
        commit = await client.query('COMMIT');
      } catch (e) {
        if (broken !== undefined || isConnectionLostError(e)) {
          broken ??= e;
          if (!identity) throw connectionLostError(target, 'at COMMIT', e);
          const res = await resolveLostCommit(identity, {
            // how long to keep asking (default 20 s; AGENT_VAULT_COMMIT_CHECK_MS of the environment overrides it)
            timeoutMs: this.commitCheckMs,
            connect: async () => {
              const c = await this.pool.connect();
              return {
                q: { query: async (sql: string, params?: readonly unknown[]) => toResult(await c.query(sql, params as unknown[] | undefined)), exec: async (sql: string) => void (await c.query(sql)) },
                release: () => c.release(true),
              };
            },
          });
          this.lastCommit = { ...identity, outcome: res.outcome, detail: res.detail, connectionLost: true };
          if (res.outcome === 'committed') return result;
          throw lostCommitError(target, identity, res, broken);
        }
        throw e; // e.g. a deferred constraint failed: the server rolled back
      }
      this.lastCommit = identity ? { ...identity, outcome: 'committed', detail: 'committed', connectionLost: false } : null;
      if (commit.command === 'ROLLBACK') throw transactionAbortedError(target);
      return result;
    } finally {
      active = false;
      client.off('error', onError);
      client.release(broken !== undefined ? asError(broken) : undefined);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function connectError(target: string, e: unknown): AgentVaultError {
  if (e instanceof AgentVaultError) return e;
  const code = (e as { code?: string } | null)?.code;
  let reason = errorMessage(e);
  if (code === 'ECONNREFUSED') reason = 'connection refused (is the server running and listening there?)';
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') reason = 'host name not found';
  else if (/timeout/i.test(reason)) reason = 'timed out';
  return new AgentVaultError('db-connect', `Cannot connect to PostgreSQL at ${target}: ${reason}`, {
    hint: 'Check the URL or the PGHOST/PGPORT/PGUSER/PGDATABASE/PGPASSWORD variables.',
    cause: e,
  });
}

/** Opens a pool; unless `verify: false`, connects once so a bad address fails here ('db-connect'). */
export async function openPg(opts: PgOpenOptions = {}): Promise<PgDb> {
  const db = new PgDb(opts);
  if (opts.verify ?? true) {
    try {
      await db.query('SELECT 1');
    } catch (e) {
      await db.close().catch(() => undefined);
      throw e;
    }
  }
  return db;
}
