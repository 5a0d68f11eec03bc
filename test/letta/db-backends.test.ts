/**
 * The two `Db` backends (node-postgres on a real PostgreSQL 15 + pgvector, and PGlite) behave
 * the same: transactions, read-only refusal, cursors, vectors, result shapes; plus the pg-only
 * failure modes (connection refused, backend killed mid-transaction).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { AgentVaultError } from '../../src/core/errors';
import { iterateBatches, iterateRows } from '../../src/db/cursor';
import { openPg, type PgDb } from '../../src/db/pg';
import { openPglite } from '../../src/db/pglite';
import type { Db, Queryable } from '../../src/db/types';
import { parseVectorText, toVectorLiteral } from '../../src/db/vector';
import { DEFAULT_ORG_ID, LETTA_EMBEDDING_DIM } from '../../src/letta/ddl';
import { sharedTestPostgres } from '../helpers/global-pg';
import { DB_KINDS, freshLettaDb } from '../helpers/letta-db';

function isAvError(code: string) {
  return (e: unknown) => {
    assert.ok(e instanceof AgentVaultError, `expected AgentVaultError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

/** A Queryable that records the SQL it forwards. */
function recording(tx: Queryable, log: string[]): Queryable {
  return {
    query: (sql, params) => {
      log.push(sql);
      return tx.query(sql, params);
    },
    exec: (sql) => {
      log.push(sql);
      return tx.exec(sql);
    },
  };
}

async function addTool(q: Queryable, id: string): Promise<void> {
  await q.query(`INSERT INTO tools (id, name, organization_id, tool_type, source_type, tags) VALUES ($1, $1, $2, 'custom', 'python', '[]')`, [id, DEFAULT_ORG_ID]);
}

async function toolIds(db: Db): Promise<string[]> {
  return (await db.query<{ id: string }>('SELECT id FROM tools ORDER BY id')).rows.map((r) => r.id);
}

for (const kind of DB_KINDS) {
  describe(`Db backend: ${kind}`, function () {
    this.timeout(120_000);
    let db: Db;
    before(async () => {
      db = await freshLettaDb(kind);
    });
    after(async () => {
      await db?.close();
    });

    it('uses the letta schema on its connections', async () => {
      const r = await db.query<{ s: string }>('SELECT current_schema() AS s');
      assert.equal(r.rows[0].s, 'letta');
      await db.transaction(async (tx) => {
        assert.equal((await tx.query<{ s: string }>('SELECT current_schema() AS s')).rows[0].s, 'letta');
      });
    });

    it('commits a transaction and returns the callback value', async () => {
      const out = await db.transaction(async (tx) => {
        await addTool(tx, 'tool-commit');
        return 42;
      });
      assert.equal(out, 42);
      assert.ok((await toolIds(db)).includes('tool-commit'));
    });

    it('rolls back when the callback throws, and rethrows the same error', async () => {
      const boom = new Error('boom');
      await assert.rejects(
        db.transaction(async (tx) => {
          await addTool(tx, 'tool-rolled-back');
          assert.equal((await tx.query(`SELECT 1 FROM tools WHERE id = 'tool-rolled-back'`)).rowCount, 1);
          throw boom;
        }),
        (e) => e === boom,
      );
      assert.ok(!(await toolIds(db)).includes('tool-rolled-back'));
      // The connection is usable afterwards (not left inside the failed transaction).
      assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1);
    });

    it('rolls back a transaction whose statement failed even if the callback swallowed the error', async () => {
      await assert.rejects(
        db.transaction(async (tx) => {
          await addTool(tx, 'tool-swallowed');
          await tx.query('SELECT 1/0').catch(() => undefined);
        }),
        isAvError('db-tx-aborted'),
      );
      assert.ok(!(await toolIds(db)).includes('tool-swallowed'));
    });

    it('refuses writes in a read-only transaction and applies the isolation level', async () => {
      await assert.rejects(
        db.transaction((tx) => addTool(tx, 'tool-read-only'), { readOnly: true }),
        (e: { code?: string }) => e.code === '25006', // read_only_sql_transaction
      );
      assert.ok(!(await toolIds(db)).includes('tool-read-only'));
      const iso = await db.transaction(async (tx) => (await tx.query<{ transaction_isolation: string }>('SHOW transaction_isolation')).rows[0].transaction_isolation, {
        isolation: 'repeatable read',
        readOnly: true,
      });
      assert.equal(iso, 'repeatable read');
    });

    it('refuses a handle used after its transaction ended', async () => {
      let saved: Queryable | undefined;
      await db.transaction(async (tx) => {
        saved = tx;
      });
      await assert.rejects(saved!.query('SELECT 1'), isAvError('db-tx-finished'));
    });

    it('iterateRows streams a result through a cursor in FETCH batches', async () => {
      const log: string[] = [];
      const seen = await db.transaction(
        async (tx) => {
          const rows: number[] = [];
          for await (const row of iterateRows<{ n: number }>(recording(tx, log), 'SELECT g AS n FROM generate_series(1, $1::int) g ORDER BY g', [1050], 100)) {
            rows.push(row.n);
          }
          return rows;
        },
        { readOnly: true, isolation: 'repeatable read' },
      );
      assert.equal(seen.length, 1050);
      assert.deepEqual(seen.slice(0, 3), [1, 2, 3]);
      assert.equal(seen[1049], 1050);
      const fetches = log.filter((s) => s.startsWith('FETCH'));
      assert.equal(fetches.length, 11, 'ceil(1050/100) FETCHes');
      assert.ok(fetches.every((s) => s.includes('FORWARD 100')));
      assert.match(log[0], /^DECLARE av_cursor_\d+ NO SCROLL CURSOR FOR SELECT/);
      assert.match(log[log.length - 1], /^CLOSE av_cursor_\d+$/);
    });

    it('iterateBatches yields bounded arrays and closes the cursor when the consumer stops early', async () => {
      await db.transaction(async (tx) => {
        const sizes: number[] = [];
        for await (const batch of iterateBatches(tx, 'SELECT g FROM generate_series(1, 25) g', [], 10)) sizes.push(batch.length);
        assert.deepEqual(sizes, [10, 10, 5]);
        for await (const batch of iterateBatches(tx, 'SELECT g FROM generate_series(1, 25) g', [], 10)) {
          assert.equal(batch.length, 10);
          break;
        }
        const open = await tx.query(`SELECT name FROM pg_cursors WHERE name LIKE 'av_cursor_%'`);
        assert.equal(open.rowCount, 0, 'no cursor left open');
      });
      await assert.rejects(
        db.transaction(async (tx) => {
          for await (const _ of iterateRows(tx, 'SELECT 1', [], 0)) void _;
        }),
        isAvError('db-bad-batch-size'),
      );
    });

    it(`round-trips a ${LETTA_EMBEDDING_DIM}-dimension vector through archival_passages.embedding`, async () => {
      const values = Array.from({ length: LETTA_EMBEDDING_DIM }, (_, i) => Math.fround(Math.sin(i + 1) * 3.75));
      await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO archives (id, name, organization_id, vector_db_provider) VALUES ('archive-1', 'a', $1, 'NATIVE')`, [DEFAULT_ORG_ID]);
        await tx.query(`INSERT INTO archival_passages (id, text, metadata_, embedding, organization_id, archive_id) VALUES ('passage-1', 't', '{}', $1, $2, 'archive-1')`, [
          toVectorLiteral(values),
          DEFAULT_ORG_ID,
        ]);
      });
      const r = await db.query<{ embedding: string; dims: number; dist: number }>(
        `SELECT embedding, vector_dims(embedding) AS dims, embedding <-> $1 AS dist FROM archival_passages WHERE id = 'passage-1'`,
        [toVectorLiteral(values)],
      );
      assert.equal(typeof r.rows[0].embedding, 'string', 'vector columns come back as text');
      assert.equal(r.rows[0].dims, LETTA_EMBEDDING_DIM);
      assert.equal(r.rows[0].dist, 0);
      const back = parseVectorText(r.rows[0].embedding)!;
      assert.equal(back.length, LETTA_EMBEDDING_DIM);
      assert.deepEqual(
        back.map((v) => Math.fround(v)),
        values,
      );
      await assert.rejects(db.query(`UPDATE archival_passages SET embedding = $1 WHERE id = 'passage-1'`, [toVectorLiteral([1, 2, 3])]), (e: { message?: string }) =>
        /expected 4096 dimensions, not 3/.test(e.message ?? ''),
      );
    });

    it('returns values in the shared result shape', async () => {
      const r = await db.query(
        `SELECT 9007199254740993::int8 AS big, 7::int4 AS i, 1.50::numeric AS num, 2.5::float8 AS f, true AS b, 'x'::varchar AS s,
                '{"a":[1,{"b":null}]}'::json AS j, '[1,2]'::jsonb AS jb, $1::json AS jp,
                '2024-01-02T03:04:05.123456Z'::timestamptz AS ts, '2024-01-02 03:04:05.5'::timestamp AS tsl, '2024-01-02'::date AS d, '\\x0102ff'::bytea AS bytes,
                ARRAY['a','b']::text[] AS arr, '[1,2.5]'::vector AS v, NULL::varchar AS nothing`,
        [JSON.stringify({ k: ['v'] })],
      );
      const row = r.rows[0];
      assert.deepEqual(row, {
        big: '9007199254740993',
        i: 7,
        num: '1.50',
        f: 2.5,
        b: true,
        s: 'x',
        j: { a: [1, { b: null }] },
        jb: [1, 2],
        jp: { k: ['v'] },
        // exact text: microseconds and offset kept (both servers run with TimeZone UTC)
        ts: '2024-01-02T03:04:05.123456+00:00',
        tsl: '2024-01-02T03:04:05.5',
        d: '2024-01-02',
        bytes: Buffer.from([1, 2, 255]),
        arr: ['a', 'b'],
        v: '[1,2.5]',
        nothing: null,
      });
      assert.ok(Buffer.isBuffer(row.bytes));
      assert.equal(r.rowCount, 1);
      const ins = await db.query(`UPDATE tools SET description = 'd' WHERE id = 'tool-commit'`);
      assert.equal(ins.rowCount, 1);
      assert.deepEqual(ins.rows, []);
      const seq = await db.query<{ nextval: string }>(`SELECT nextval('message_seq_id')`);
      assert.equal(typeof seq.rows[0].nextval, 'string', 'bigint comes back as a string');
    });

    it('exec runs a multi-statement script', async () => {
      await db.exec(`CREATE TEMP TABLE t_exec (a int); INSERT INTO t_exec VALUES (1), (2);`);
      if (kind === 'pg') return; // temp tables are per connection in the pool
      assert.equal((await db.query('SELECT count(*)::int AS n FROM t_exec')).rows[0].n, 2);
    });
  });
}

describe('Db backend: pg failure modes', function () {
  this.timeout(120_000);

  it('names host, port and database (never the password) when it cannot connect', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    await assert.rejects(openPg({ url: `postgres://someone:s3cr3t-pw@127.0.0.1:${port}/nodb`, connectTimeoutMs: 5000 }), (e: unknown) => {
      isAvError('db-connect')(e);
      const msg = (e as Error).message;
      assert.match(msg, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(msg, /database "nodb"/);
      assert.match(msg, /user "someone"/);
      assert.ok(!msg.includes('s3cr3t-pw'), msg);
      assert.ok(!JSON.stringify((e as AgentVaultError).hint ?? '').includes('s3cr3t-pw'));
      return true;
    });
  });

  it('reads the libpq variables from the environment it is given, never from process.env', async () => {
    const server = await sharedTestPostgres();
    const u = new URL(server.adminUrl);
    const env = {
      PGHOST: u.hostname,
      PGPORT: u.port,
      PGUSER: decodeURIComponent(u.username),
      PGPASSWORD: decodeURIComponent(u.password),
      PGDATABASE: u.pathname.slice(1),
      PGAPPNAME: 'av-env-test',
    };
    for (const k of Object.keys(env)) assert.equal(process.env[k], undefined, `${k} is not set in the test process`);
    const who = async (db: PgDb) => (await db.query<{ u: string; d: string; a: string }>('SELECT current_user AS u, current_database() AS d, current_setting($1) AS a', ['application_name'])).rows[0];
    // no URL: every setting from the given environment
    const a = await openPg({ env, verify: true });
    try {
      assert.deepEqual(await who(a), { u: env.PGUSER, d: env.PGDATABASE, a: 'av-env-test' });
      assert.match(a.target, new RegExp(`${env.PGHOST.replace(/\./g, '\\.')}:${env.PGPORT}, database "${env.PGDATABASE}" as user "${env.PGUSER}"`));
    } finally {
      await a.close();
    }
    // a URL naming only the host: user, password, port and database come from the environment
    const b = await openPg({ url: `postgres://${u.hostname}`, env });
    try {
      assert.deepEqual(await who(b), { u: env.PGUSER, d: env.PGDATABASE, a: 'av-env-test' });
    } finally {
      await b.close();
    }
    // what the URL names wins over the environment
    await assert.rejects(openPg({ url: `postgres://${u.hostname}/no_such_database_here`, env, connectTimeoutMs: 5000 }), (e: unknown) => {
      isAvError('db-connect')(e);
      assert.match((e as Error).message, /database "no_such_database_here"/);
      return true;
    });
    // settings neither the URL nor the environment gives are pg's defaults, never process.env's
    process.env.PGPORT = '1';
    process.env.PGDATABASE = 'from_process_env';
    try {
      const c = await openPg({ url: `postgres://someone@${u.hostname}`, env: {}, verify: false });
      assert.equal(c.target, `${u.hostname}:5432, database "someone" as user "someone"`);
      await c.close();
      const d = await openPg({ env: { PGHOST: u.hostname, PGUSER: 'other' }, verify: false });
      assert.equal(d.target, `${u.hostname}:5432, database "other" as user "other"`);
      await d.close();
    } finally {
      delete process.env.PGPORT;
      delete process.env.PGDATABASE;
    }
  });

  it('reports a missing database as db-connect', async () => {
    const server = await sharedTestPostgres();
    const u = new URL(server.adminUrl);
    u.pathname = '/no_such_database_here';
    await assert.rejects(openPg({ url: u.toString() }), (e: unknown) => {
      isAvError('db-connect')(e);
      assert.match((e as Error).message, /no_such_database_here/);
      return true;
    });
  });

  it('turns a backend killed mid-transaction into db-connection-lost, rolled back, and stays usable', async () => {
    const db = (await freshLettaDb('pg')) as PgDb;
    const server = await sharedTestPostgres();
    const killer = new Client({ connectionString: server.adminUrl });
    await killer.connect();
    try {
      let reached = false;
      await assert.rejects(
        db.transaction(async (tx) => {
          await addTool(tx, 'tool-killed');
          const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
          const killed = await killer.query('SELECT pg_terminate_backend($1) AS ok', [pid]);
          assert.equal(killed.rows[0].ok, true);
          await tx.query('SELECT 1');
          reached = true;
        }),
        (e: unknown) => {
          isAvError('db-connection-lost')(e);
          assert.match((e as Error).message, /127\.0\.0\.1:\d+, database "av_test_/);
          assert.match((e as Error).message, /not committed/);
          return true;
        },
      );
      assert.equal(reached, false);
      assert.ok(!(await toolIds(db)).includes('tool-killed'), 'the killed transaction left nothing behind');
      // Killed between statements (the driver sees the socket close while idle in the transaction).
      await assert.rejects(
        db.transaction(async (tx) => {
          const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
          await killer.query('SELECT pg_terminate_backend($1)', [pid]);
          await new Promise((r) => setTimeout(r, 300));
          return 'done';
        }),
        isAvError('db-connection-lost'),
      );
      assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await killer.end();
      await db.close();
    }
  });

  it('honours sslmode: require against a server without TLS fails as db-connect', async () => {
    const server = await sharedTestPostgres();
    await assert.rejects(openPg({ url: server.url, ssl: { mode: 'require' } }), (e: unknown) => {
      isAvError('db-connect')(e);
      assert.match((e as Error).message, /SSL|ssl/);
      return true;
    });
    const u = new URL(server.url);
    u.searchParams.set('sslmode', 'disable');
    const db = await openPg({ url: u.toString() });
    await db.close();
    await assert.rejects(openPg({ url: server.url, ssl: { mode: 'verify-full', ca: '/nonexistent/ca.pem' } }), isAvError('db-ssl-file'));
  });
});

describe('Db backend: PGlite specifics', function () {
  this.timeout(120_000);

  it('keeps data in dataDir across close and reopen', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'av-pglite-'));
    try {
      const a = await openPglite({ dataDir: path.join(dir, 'db') });
      await a.exec("CREATE SCHEMA letta; CREATE TABLE letta.kept (v text); INSERT INTO letta.kept VALUES ('persisted');");
      await a.close();
      const b = await openPglite({ dataDir: path.join(dir, 'db') });
      assert.deepEqual((await b.query('SELECT v FROM kept')).rows, [{ v: 'persisted' }]);
      await b.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serialises concurrent callers and refuses db calls from inside a transaction', async () => {
    const db = await freshLettaDb('pglite');
    try {
      const order: string[] = [];
      const t1 = db.transaction(async (tx) => {
        order.push('t1 start');
        await addTool(tx, 'tool-a');
        await new Promise((r) => setTimeout(r, 50));
        order.push('t1 end');
      });
      const q = db.query(`SELECT count(*)::int AS n FROM tools WHERE id = 'tool-a'`).then((r) => {
        order.push(`query sees ${r.rows[0].n}`);
      });
      await Promise.all([t1, q]);
      assert.deepEqual(order, ['t1 start', 't1 end', 'query sees 1']);
      await assert.rejects(
        db.transaction(async () => {
          await db.query('SELECT 1');
        }),
        isAvError('db-nested-call'),
      );
      assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await db.close();
    }
  });
});
