/**
 * A real PostgreSQL 15 (+ pgvector) server for tests.
 *
 * - With AGENT_VAULT_TEST_PG_URL set (postgres://user:pass@host:port/db of a server where that
 *   user may CREATE DATABASE and pgvector is available), that server is used: a fresh, uniquely
 *   named database is created in it and dropped by stop().
 * - Otherwise a throwaway cluster is started: a temp directory, `initdb` as user postgres
 *   (when running as root), a random free port on 127.0.0.1, fsync=off, the unix socket in the
 *   temp directory; stop() kills it (`pg_ctl stop -m immediate`) and removes the directory.
 *   A process 'exit' handler does the same if stop() was never called.
 *
 * Most tests should not call this directly but use the one shared server of the test run
 * (test/helpers/global-pg.ts) or freshLettaDb() (test/helpers/letta-db.ts).
 */
import { execFile, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';

const execFileP = promisify(execFile);

export const PG_BIN_DIR = process.env.AGENT_VAULT_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface TestPostgres {
  /** URL of the fresh database made for this server handle. */
  url: string;
  /** URL of the maintenance database (`postgres`), for CREATE/DROP DATABASE. */
  adminUrl: string;
  kind: 'cluster' | 'external';
  /** Creates another database (optionally from a template); it is dropped by stop() for external servers. */
  createDatabase(opts?: { name?: string; template?: string }): Promise<{ name: string; url: string }>;
  dropDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

let dbSeq = 0;
function uniqueDbName(prefix = 'av_test'): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${++dbSeq}`;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = '/' + encodeURIComponent(db);
  return u.toString();
}

async function adminQuery(adminUrl: string, sql: string): Promise<void> {
  const c = new Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

function makeDbOps(adminUrl: string, created: Set<string>) {
  return {
    async createDatabase(opts: { name?: string; template?: string } = {}) {
      const name = opts.name ?? uniqueDbName();
      const template = opts.template ? ` TEMPLATE ${quoteIdent(opts.template)}` : '';
      // A template still in use by a just-closed session makes CREATE DATABASE fail (55006): retry.
      for (let attempt = 0; ; attempt++) {
        try {
          await adminQuery(adminUrl, `CREATE DATABASE ${quoteIdent(name)}${template}`);
          break;
        } catch (e) {
          if ((e as { code?: string }).code === '55006' && attempt < 50) {
            await new Promise((r) => setTimeout(r, 100));
            continue;
          }
          throw e;
        }
      }
      created.add(name);
      return { name, url: withDatabase(adminUrl, name) };
    },
    async dropDatabase(name: string) {
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      created.delete(name);
    },
  };
}

/** A free TCP port on 127.0.0.1 (the OS picks it; released before it is returned). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function pgConfigSharedir(): string {
  const r = spawnSync(path.join(PG_BIN_DIR, 'pg_config'), ['--sharedir'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`Cannot run ${path.join(PG_BIN_DIR, 'pg_config')}: ${r.error?.message ?? r.stderr}`);
  return r.stdout.trim();
}

/** Throws a clear error unless PostgreSQL 15 and pgvector are installed locally. */
export function checkLocalPostgres(): void {
  for (const exe of ['initdb', 'pg_ctl', 'postgres', 'pg_config']) {
    if (!existsSync(path.join(PG_BIN_DIR, exe))) {
      throw new Error(
        `PostgreSQL 15 is not installed (${path.join(PG_BIN_DIR, exe)} is missing). ` +
          'Run `sudo bash scripts/provision-pgvector.sh` (installs postgresql-15 and pgvector), or set AGENT_VAULT_TEST_PG_URL to a server with pgvector.',
      );
    }
  }
  const control = path.join(pgConfigSharedir(), 'extension', 'vector.control');
  if (!existsSync(control)) {
    throw new Error(
      `pgvector is not installed for PostgreSQL 15 (${control} is missing). ` + 'Run `sudo bash scripts/provision-pgvector.sh` once, or set AGENT_VAULT_TEST_PG_URL to a server with pgvector.',
    );
  }
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a PostgreSQL program, as user postgres when we are root (initdb refuses root). */
async function runPg(exe: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const bin = path.join(PG_BIN_DIR, exe);
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return execFileP(cmd, argv, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
}

function runPgSync(exe: string, args: string[]): void {
  const bin = path.join(PG_BIN_DIR, exe);
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  spawnSync(cmd, argv, { stdio: 'ignore' });
}

function ownerIds(): { uid: number; gid: number } | undefined {
  if (!isRoot) return undefined;
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error('Running as root but there is no user "postgres" to run initdb as (install postgresql-15).');
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

async function startExternal(baseUrl: string): Promise<TestPostgres> {
  const adminUrl = baseUrl;
  const created = new Set<string>();
  const ops = makeDbOps(adminUrl, created);
  const c = new Client({ connectionString: adminUrl });
  try {
    await c.connect();
    const r = await c.query(`SELECT 1 FROM pg_available_extensions WHERE name = 'vector'`);
    if (r.rowCount === 0) throw new Error('pgvector is not available on the server in AGENT_VAULT_TEST_PG_URL (no "vector" in pg_available_extensions).');
  } finally {
    await c.end().catch(() => undefined);
  }
  const { url } = await ops.createDatabase();
  let stopped = false;
  return {
    url,
    adminUrl,
    kind: 'external',
    ...ops,
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const name of [...created]) await ops.dropDatabase(name);
    },
  };
}

async function startCluster(): Promise<TestPostgres> {
  checkLocalPostgres();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'av-pg-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const owner = ownerIds();
  if (owner) chownSync(dir, owner.uid, owner.gid);

  let running = false;
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const exitHandler = () => {
    if (running) runPgSync('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']);
    removeDir();
  };
  process.on('exit', exitHandler);

  try {
    await runPg('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const opts = [
        `-c port=${port}`,
        '-c listen_addresses=127.0.0.1',
        `-c unix_socket_directories=${dir}`,
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
        '-c max_connections=200',
      ].join(' ');
      try {
        await runPg('pg_ctl', ['start', '-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', opts]);
        running = true;
        break;
      } catch (e) {
        const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
        if (attempt < 3 && /could not bind|Address already in use/.test(log)) continue;
        throw new Error(`Could not start the test PostgreSQL cluster in ${dir}: ${(e as Error).message}\n${log.slice(-2000)}`, { cause: e });
      }
    }
    const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const ops = makeDbOps(adminUrl, new Set());
    const { url } = await ops.createDatabase({ name: 'av_test' });
    let stopped = false;
    return {
      url,
      adminUrl,
      kind: 'cluster',
      ...ops,
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          if (running) await runPg('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']);
          running = false;
        } finally {
          removeDir();
          process.off('exit', exitHandler);
        }
      },
    };
  } catch (e) {
    exitHandler();
    process.off('exit', exitHandler);
    throw e;
  }
}

export async function startTestPostgres(): Promise<TestPostgres> {
  const external = process.env.AGENT_VAULT_TEST_PG_URL;
  return external ? startExternal(external) : startCluster();
}
