/**
 * The real Letta V1 server (letta 0.16.8, installed by scripts/provision-letta.sh) for tests.
 *
 *   const stub = await startOpenAiStub();                       // test/letta-server/openai-stub.ts
 *   const letta = await startLettaServer({ stub });             // fresh database, migrated by Letta
 *   await fetch(`${letta.baseUrl}/v1/agents/`) …
 *   assert.deepEqual(letta.serverErrors(), []);                 // no server error in Letta's log
 *   await letta.stop();
 *
 * What it does, as Letta's own Docker start-up does (letta/server/startup.sh, init.sql):
 *   1. a new database on the run's PostgreSQL 15 + pgvector server (test/helpers/global-pg.ts),
 *      laid out like Letta's init.sql: schema `letta`, `search_path` = letta, extension `vector`
 *      in schema letta, no `public` schema;
 *   2. `alembic upgrade head` from Letta's 0.16.8 source tree (.tools/letta/src) with
 *      LETTA_PG_URI set: Letta's own migrations build the schema;
 *   3. `letta server --host 127.0.0.1 --port <free port>` in its own process group, stdout and
 *      stderr into a log file; waits until GET /v1/health/ answers 200.
 * stop() ends the process group by pid (SIGTERM, then SIGKILL after 10 s); a process 'exit'
 * handler does the same if stop() is never called.
 *
 * Isolation: the server gets a minimal environment (no API keys or settings of the caller), HOME
 * and LETTA_DIR in a temp directory, OPENAI_API_KEY = a dummy and OPENAI_BASE_URL = the stub (the
 * only model provider Letta enables), Datadog/Sentry/OTLP off (they are off unless configured),
 * and HTTP_PROXY/HTTPS_PROXY/ALL_PROXY pointing at a local sink that refuses and records every
 * request (NO_PROXY = 127.0.0.1,localhost): `outbound` lists any attempt to reach another host.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import type { OpenAiStub } from '../letta-server/openai-stub';
import { sharedTestPostgres } from './global-pg';
import { REPO_ROOT } from './paths';

export const LETTA_VERSION = '0.16.8';
export const LETTA_ALEMBIC_HEAD = '1c28e167b74f';
export const LETTA_SCHEMA = 'letta';

export function lettaToolsDir(): string {
  return path.join(process.env.AGENT_VAULT_TOOLS_DIR ?? path.join(REPO_ROOT, '.tools'), 'letta');
}

/** Throws a clear error unless scripts/provision-letta.sh has installed Letta. */
export function checkLettaInstalled(): { venv: string; src: string } {
  const dir = lettaToolsDir();
  const venv = path.join(dir, 'venv');
  const src = path.join(dir, 'src');
  const stamp = path.join(dir, `.installed-${LETTA_VERSION}`);
  if (!existsSync(stamp) || !existsSync(path.join(venv, 'bin', 'letta')) || !existsSync(path.join(src, 'alembic.ini'))) {
    throw new Error(`Letta ${LETTA_VERSION} is not installed in ${dir}. Run \`bash scripts/provision-letta.sh\` (npm test does).`);
  }
  return { venv, src };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** An HTTP(S) proxy on 127.0.0.1 that refuses everything and records the target host. */
export interface OutboundSink {
  url: string;
  attempts: string[];
  close(): Promise<void>;
}

export async function startOutboundSink(): Promise<OutboundSink> {
  const attempts: string[] = [];
  const server = http.createServer((req, res) => {
    attempts.push(`${req.method} ${req.url}`);
    res.writeHead(403, { 'content-type': 'text/plain' });
    res.end('outbound network is not allowed in the tests\n');
  });
  server.on('connect', (req, socket) => {
    attempts.push(`CONNECT ${req.url}`);
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    attempts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface LettaDatabase {
  name: string;
  /** postgres://… of the database (schema letta, search_path letta) */
  url: string;
}

/** A new database laid out like Letta's init.sql (schema, search_path, vector), without tables. */
export async function createLettaDatabase(): Promise<LettaDatabase> {
  const pg = await sharedTestPostgres();
  const { name, url } = await pg.createDatabase({ name: `letta_${process.pid}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}` });
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`CREATE SCHEMA ${LETTA_SCHEMA}`);
    await c.query(`ALTER DATABASE "${name}" SET search_path TO ${LETTA_SCHEMA}`);
    await c.query(`CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA ${LETTA_SCHEMA}`);
    await c.query('DROP SCHEMA IF EXISTS public CASCADE');
  } finally {
    await c.end();
  }
  return { name, url };
}

function lettaEnv(opts: { home: string; dbUrl: string; stub: OpenAiStub; sinkUrl: string; extra?: Record<string, string> }): NodeJS.ProcessEnv {
  const u = new URL(opts.dbUrl);
  const pgUri = `postgresql://${u.username || 'postgres'}${u.password ? `:${u.password}` : ''}@${u.host}${u.pathname}`;
  return {
    PATH: process.env.PATH,
    LANG: 'C.UTF-8',
    HOME: opts.home,
    LETTA_DIR: path.join(opts.home, '.letta'),
    TMPDIR: opts.home,
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    LETTA_PG_URI: pgUri,
    OPENAI_API_KEY: 'sk-agent-vault-test-stub',
    OPENAI_BASE_URL: opts.stub.baseUrl,
    // Off by default in 0.16.8; set explicitly so a caller's environment cannot turn them on.
    LETTA_TELEMETRY_ENABLE_DATADOG: 'false',
    LETTA_TELEMETRY_DATADOG_PROFILING_ENABLED: 'false',
    LETTA_DISABLE_TRACING: 'true',
    LETTA_ENABLE_DB_POOL_MONITORING: 'false',
    // Every request to another host goes to the refusing sink and is recorded.
    HTTP_PROXY: opts.sinkUrl,
    HTTPS_PROXY: opts.sinkUrl,
    ALL_PROXY: opts.sinkUrl,
    http_proxy: opts.sinkUrl,
    https_proxy: opts.sinkUrl,
    all_proxy: opts.sinkUrl,
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
    ...opts.extra,
  };
}

export interface LettaServer {
  /** http://127.0.0.1:<port> */
  baseUrl: string;
  db: LettaDatabase;
  pid: number;
  logFile: string;
  /** everything Letta wrote (migrations and server) */
  log(): string;
  /** error lines and tracebacks of Letta's log since `from` (a log length), e.g. [] when all went well */
  serverErrors(from?: number): string[];
  /** requests Letta tried to send to hosts other than 127.0.0.1 */
  outbound: string[];
  stub: OpenAiStub;
  /** GET/POST/PATCH/DELETE against the REST API; throws with the body on a non-2xx status */
  api<T = unknown>(method: string, p: string, body?: unknown): Promise<T>;
  /** the raw Response (no throw) */
  request(method: string, p: string, body?: unknown, headers?: Record<string, string>): Promise<Response>;
  stop(): Promise<void>;
}

const ERROR_LINE = /(^|\s)(ERROR|CRITICAL)(\s|:|\])|Traceback \(most recent call last\)|Internal Server Error|"status_code":\s*5\d\d|HTTP\/\d(\.\d)?" 500\b/;

/**
 * The first line of a log record: Letta's `<logger> - LEVEL - …`, uvicorn's/alembic's `LEVEL: …`,
 * `INFO  [alembic…]`, or a Python warning (`/path/x.py:12: SomeWarning: …`). Every other line (a
 * traceback, its chained "The above exception…" part, a continued message) belongs to the record
 * above it.
 */
const RECORD_START = /^(?:[A-Za-z_][\w.-]* - (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) - |(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)(?::|\s+\[)|\/\S+\.py:\d+: \w+)/;

/**
 * Known defects of Letta 0.16.8 itself, independent of the data in the database, whose log records
 * (with their tracebacks) are not counted as server errors. Each entry names the code that causes it.
 *
 * - step_metrics race: `LettaAgentV2._step_checkpoint_start` and `_step_checkpoint_finish`
 *   (letta/agents/letta_agent_v2.py) both schedule `StepManager.record_step_metrics_async` as
 *   fire-and-forget tasks (`safe_create_task`) for the same step id; that method reads the row and
 *   inserts it when absent, without a lock or ON CONFLICT, so when the model answers quickly (the
 *   local stub answers in a millisecond) both tasks may insert and one fails on `step_metrics_pkey`.
 *   The step, its messages and the reply are unaffected (the task's failure is only logged). It
 *   happens as much for agents Letta created itself as for restored ones.
 */
export const KNOWN_LETTA_DEFECTS: { name: string; record: RegExp }[] = [
  {
    name: 'step_metrics race (record_step_metrics scheduled twice per step)',
    record: /^Letta\.letta\.utils - ERROR - record_step_metrics failed with UniqueConstraintViolationError: .*step_metrics_pkey/,
  },
];

/** Error lines of a Letta log (each with the two lines after it), leaving out the records of KNOWN_LETTA_DEFECTS. */
export function errorLines(log: string): string[] {
  const lines = log.split('\n');
  const out: string[] = [];
  let skipping = false;
  for (let i = 0; i < lines.length; i++) {
    if (RECORD_START.test(lines[i])) skipping = KNOWN_LETTA_DEFECTS.some((d) => d.record.test(lines[i]));
    if (skipping) continue;
    if (ERROR_LINE.test(lines[i]))
      out.push(
        lines
          .slice(i, i + 3)
          .join(' | ')
          .slice(0, 600),
      );
  }
  return out;
}

/** How many records of each KNOWN_LETTA_DEFECTS entry a log holds (printed by tests, so they stay visible). */
export function knownDefects(log: string): Record<string, number> {
  const n: Record<string, number> = {};
  for (const line of log.split('\n')) for (const d of KNOWN_LETTA_DEFECTS) if (d.record.test(line)) n[d.name] = (n[d.name] ?? 0) + 1;
  return n;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

export interface StartLettaOptions {
  stub: OpenAiStub;
  /** an existing database (laid out by createLettaDatabase); default: a new one */
  db?: LettaDatabase;
  /** run Letta's migrations first (default true) */
  migrate?: boolean;
  /** more environment for Letta (e.g. LETTA_ENCRYPTION_KEY) */
  env?: Record<string, string>;
  /** more environment for the server only (not for the migrations) */
  serverEnv?: Record<string, string>;
  /** health wait, ms (default 240 s: the first start compiles Python bytecode on 2 cores) */
  startTimeoutMs?: number;
}

export async function startLettaServer(opts: StartLettaOptions): Promise<LettaServer> {
  const { venv, src } = checkLettaInstalled();
  const home = mkdtempSync(path.join(os.tmpdir(), 'av-letta-'));
  const logFile = path.join(home, 'letta.log');
  const sink = await startOutboundSink();
  const db = opts.db ?? (await createLettaDatabase());
  const env = lettaEnv({ home, dbUrl: db.url, stub: opts.stub, sinkUrl: sink.url, extra: opts.env });
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');

  let child: ChildProcess | undefined;
  const exitHandler = () => {
    if (child?.pid && child.exitCode === null) killGroup(child.pid, 'SIGKILL');
    rmSync(home, { recursive: true, force: true });
  };
  process.on('exit', exitHandler);
  const fail = async (msg: string): Promise<never> => {
    const tail = readLog().slice(-4000);
    if (child?.pid) killGroup(child.pid, 'SIGKILL');
    await sink.close();
    process.off('exit', exitHandler);
    rmSync(home, { recursive: true, force: true });
    throw new Error(`${msg}\n--- Letta log (tail) ---\n${tail}`);
  };

  if (opts.migrate !== false) {
    const fd = openSync(logFile, 'a');
    const r = spawnSync(path.join(venv, 'bin', 'alembic'), ['upgrade', 'head'], { cwd: src, env, stdio: ['ignore', fd, fd], timeout: 600_000 });
    closeSync(fd);
    if (r.status !== 0) await fail(`Letta's migrations failed (alembic upgrade head, exit ${r.status ?? r.signal}): ${r.error?.message ?? ''}`);
  }

  const port = await freePort();
  const out = openSync(logFile, 'a');
  // Letta's SQLAlchemy connection pool, on. With Letta's default (LETTA_DISABLE_SQLALCHEMY_POOLING
  // true: NullPool) every database session opens a new asyncpg connection, and on CPython 3.11
  // some of them hang for asyncpg's 60 s connect timeout: Letta closes its per-request model
  // client (httpx → anyio → asyncio transport.close()), whose transport removes the selector's
  // writer registration of its old socket's fd number — by then reused by the new PostgreSQL
  // socket, so that connect's `sock_connect` is never woken (seen as a TCP connection PostgreSQL
  // accepted and never got a startup packet on). Pooled connections are opened once and reused,
  // so requests do not connect while the client closes. In pooled mode Letta asks asyncpg for
  // ssl=require unless the URI names an sslmode: the test cluster has no TLS (127.0.0.1), so the
  // server's URI says sslmode=disable (alembic's pg8000 URI above must not carry it). Pool size
  // 5 + 10 overflow per server keeps the shared cluster well under its max_connections (200).
  const serverEnv: Record<string, string> = {
    LETTA_PG_URI: `${env.LETTA_PG_URI}?sslmode=disable`,
    LETTA_DISABLE_SQLALCHEMY_POOLING: 'false',
    LETTA_PG_POOL_SIZE: '5',
    LETTA_PG_MAX_OVERFLOW: '10',
    ...opts.serverEnv,
  };
  child = spawn(path.join(venv, 'bin', 'letta'), ['server', '--host', '127.0.0.1', '--port', String(port)], {
    cwd: home,
    env: { ...env, ...serverEnv },
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  const pid = child.pid!;
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 240_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) await fail(`letta server exited during start-up (${child.exitCode ?? child.signalCode})`);
    try {
      const r = await fetch(`${baseUrl}/v1/health/`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) await fail(`letta server did not answer GET /v1/health/ within ${(opts.startTimeoutMs ?? 240_000) / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }

  const request = (method: string, p: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${baseUrl}${p}`, {
      method,
      // A new connection per request: uvicorn closes idle keep-alive connections after 5 s, and a
      // request racing that close fails with ECONNRESET.
      headers: { connection: 'close', ...(body === undefined || body instanceof FormData ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : body instanceof FormData ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(600_000),
    });
  let stopped = false;
  return {
    baseUrl,
    db,
    pid,
    logFile,
    log: readLog,
    serverErrors: (from = 0) => {
      const log = readLog().slice(from);
      const known = knownDefects(log);
      for (const [name, n] of Object.entries(known)) console.log(`      Letta log: ${n}× known Letta defect not counted as a server error: ${name}`);
      return errorLines(log);
    },
    outbound: sink.attempts,
    stub: opts.stub,
    request,
    async api<T>(method: string, p: string, body?: unknown): Promise<T> {
      const r = await request(method, p, body);
      const text = await r.text();
      if (!r.ok) {
        const recent = errorLines(readLog().slice(-30000)).slice(-4);
        throw new Error(`Letta ${method} ${p} → HTTP ${r.status}: ${text.slice(0, 2000)}${recent.length ? `\nLetta's log: ${recent.join('\n')}` : ''}`);
      }
      return (text ? JSON.parse(text) : undefined) as T;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const c = child!;
      if (c.exitCode === null && c.signalCode === null) {
        const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
        killGroup(pid, 'SIGTERM');
        const t = setTimeout(() => killGroup(pid, 'SIGKILL'), 10_000);
        await gone;
        clearTimeout(t);
      }
      killGroup(pid, 'SIGKILL'); // anything left in the group (workers)
      await sink.close();
      process.off('exit', exitHandler);
      rmSync(home, { recursive: true, force: true });
    },
  };
}
