/**
 * The pieces of the streaming restore: the JSON field scanner (against JSON.parse on every
 * fixture message), COPY's text and binary encodings and timestamps (read back through the real
 * PostgreSQL test server), the worker-thread checksums, and the restore paths the fixtures do not
 * reach (approvals that name a later message, content given as a bare string).
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import type { Db } from '../../src/db/types';
import { readAgentFile, toV2 } from '../../src/format/af';
import { createArchiveWriter, openArchive } from '../../src/format/archive';
import { ObjectFieldScanner, stringEnd } from '../../src/format/json-scan';
import { verifyRangesInWorker } from '../../src/format/verify-worker';
import type { AgentFileV2 } from '../../src/format/types';
import { CopyBinary, CopyText, parseTimestampMicros, TimestampReader } from '../../src/letta/copy';
import { exportAgents } from '../../src/letta/export';
import { restoreAgents } from '../../src/letta/restore';
import { seedAgentFile } from '../../src/letta/seed';
import { sharedTestPostgres } from '../helpers/global-pg';
import { freshLettaDb } from '../helpers/letta-db';
import { fixtures, FIXTURES_DIR } from '../helpers/paths';
import { corruptEntry } from './support';

describe('restore streaming: JSON field scanner', () => {
  it('finds every top-level field of every fixture message exactly as JSON.parse reads it (compact, pretty, escaped keys)', async () => {
    let n = 0;
    for (const f of fixtures()) {
      const doc = toV2(await readAgentFile(f.path)) as AgentFileV2;
      for (const a of doc.agents) {
        for (const m of (a.messages ?? []) as Array<Record<string, unknown>>) {
          const keys = Object.keys(m);
          const sc = new ObjectFieldScanner([...keys, 'not_there']);
          for (const text of [JSON.stringify(m), JSON.stringify(m, null, 2), JSON.stringify(m).replace('"id":', '"\\u0069d":')]) {
            const b = Buffer.from(`xx${text}yy`, 'utf8');
            assert.ok(sc.scan(b, 2, b.length - 2), `${f.file}: scans`);
            keys.forEach((k, i) => assert.deepEqual(JSON.parse(b.toString('utf8', sc.starts[i], sc.ends[i])), m[k], `${f.file}: ${k}`));
            assert.equal(sc.starts[keys.length], -1, 'an absent key');
            n++;
          }
        }
      }
    }
    assert.ok(n > 600, `${n} messages`);
  });

  it('refuses what is not one object, and ends strings at the right quote', () => {
    const sc = new ObjectFieldScanner(['a']);
    for (const bad of ['[1]', '{"a" 1}', '{"a":1,}', '{"a":"x}', '{"a":1} {}', '{"a":[1,2}', '', '"a"']) {
      const b = Buffer.from(bad);
      assert.equal(sc.scan(b, 0, b.length), false, bad);
    }
    for (const s of ['plain', 'with \\"quote\\" inside', 'ends with a backslash \\\\', 'x'.repeat(100) + '\\"' + 'y'.repeat(100), '\\\\\\"'.repeat(30)]) {
      const b = Buffer.from(`"${s}" tail"`);
      assert.equal(stringEnd(b, 1, b.length), s.length + 1, s.slice(0, 20));
      assert.equal(JSON.parse(b.toString('utf8', 0, s.length + 2)), JSON.parse(`"${s}"`));
    }
  });
});

describe('restore streaming: COPY encodings against PostgreSQL', function () {
  this.timeout(60000);
  let c: Client;
  before(async () => {
    const server = await sharedTestPostgres();
    const { url } = await server.createDatabase();
    c = new Client({ connectionString: url });
    await c.connect();
    await c.query(`CREATE EXTENSION IF NOT EXISTS vector`);
  });
  after(async () => c?.end());

  async function copy(sql: string, data: Buffer): Promise<void> {
    const { from } = await import('pg-copy-streams');
    const s = c.query(from(sql));
    await new Promise<void>((resolve, reject) => {
      s.on('finish', resolve);
      s.on('error', reject);
      s.end(data);
    });
  }

  it('text format: escapes, NULL and "now" read back as written', async () => {
    await c.query(`CREATE TEMP TABLE t_text (k int, s text, j json, ts timestamptz)`);
    const values = ['plain', 'tab\there', 'new\nline', 'cr\rhere', 'back\\slash \\N', '\\.', 'unicode é 漢字 😀', ''];
    const out = new CopyText();
    values.forEach((v, k) => {
      out.str(String(k));
      out.tab();
      out.str(v);
      out.tab();
      const j = Buffer.from(JSON.stringify({ v }));
      out.bytes(j, 0, j.length);
      out.tab();
      out.raw(Buffer.from('now'));
      out.endRow();
    });
    out.str('99');
    out.tab();
    out.nul();
    out.tab();
    out.nul();
    out.tab();
    out.str('2024-01-02T03:04:05.123456+05:30');
    out.endRow();
    assert.equal(out.rows, values.length + 1);
    await c.query('BEGIN');
    await copy(`COPY t_text FROM STDIN`, out.take());
    const r = await c.query(`SELECT k, s, j::text AS j, ts = now() AS is_now, extract(epoch from ts)::text AS e FROM t_text ORDER BY k`);
    await c.query('COMMIT');
    values.forEach((v, k) => {
      assert.equal(r.rows[k].s, v);
      assert.deepEqual(JSON.parse(r.rows[k].j), { v });
      assert.equal(r.rows[k].is_now, true);
    });
    assert.deepEqual([r.rows[values.length].s, r.rows[values.length].j], [null, null]);
    assert.ok(Math.abs(Number(r.rows[values.length].e) - (Date.UTC(2024, 0, 1, 21, 34, 5) / 1000 + 0.123456)) < 1e-6, r.rows[values.length].e);
  });

  it('binary format: vectors zero-padded, json and timestamps as PostgreSQL reads them', async () => {
    await c.query(`CREATE TEMP TABLE t_bin (id varchar, j json, v vector(8), ts timestamptz, b boolean)`);
    const out = new CopyBinary();
    const f = new Float32Array([0.1, -2.5, 3e-8]);
    const fb = Buffer.from(f.buffer);
    out.beginRow(5);
    out.str('row-1 é');
    out.constant(Buffer.from('{"a": [1, 2]}'));
    out.vector(fb, 0, fb.length, 8);
    out.timestamp(parseTimestampMicros('2001-02-03T04:05:06.000007Z')!);
    out.bool(true);
    out.beginRow(5);
    out.str('row-2');
    out.nul();
    out.nul();
    out.timestamp(Infinity);
    out.bool(false);
    await copy(`COPY t_bin FROM STDIN WITH (FORMAT binary)`, out.take());
    const r = await c.query(`SELECT id, j::text AS j, v::real[] AS v, (ts AT TIME ZONE 'UTC')::text AS ts, b FROM t_bin ORDER BY id`);
    assert.deepEqual({ ...r.rows[0], v: undefined }, { id: 'row-1 é', j: '{"a": [1, 2]}', v: undefined, ts: '2001-02-03 04:05:06.000007', b: true });
    assert.deepEqual(
      r.rows[0].v.map((x: number) => Math.fround(x)),
      [...f, 0, 0, 0, 0, 0],
      'the float32 values exactly, then zeros to 8',
    );
    assert.deepEqual(r.rows[1], { id: 'row-2', j: null, v: null, ts: 'infinity', b: false });
  });

  it('timestamps: the ISO layout with an offset is parsed here, anything else by the server in its time zone', async () => {
    await c.query(`SET TimeZone = 'America/New_York'`);
    const reader = new TimestampReader({
      query: async (sql: string, params?: readonly unknown[]) => {
        const r = await c.query(sql, params as unknown[]);
        return { rows: r.rows, rowCount: r.rowCount ?? 0 };
      },
      exec: async () => undefined,
    });
    for (const text of [
      '2024-03-10T01:59:59.5-05:00',
      '2024-01-02 03:04:05+00',
      '1999-12-31T23:59:59.999999Z',
      '2024-06-01T12:00:00+05:45',
      '2024-06-01T12:00:00',
      '2024-06-01 12:00:00.25',
      'January 8, 1999 04:05:06 PST',
    ]) {
      const want = (await c.query(`SELECT (extract(epoch from $1::timestamptz) * 1000000)::bigint::text AS us`, [text])).rows[0].us;
      assert.equal(String(await reader.micros(text)), want, text);
      if (/[zZ]$|[+-]\d\d(:?\d\d)?$/.test(text)) assert.equal(String(parseTimestampMicros(text)), want, `${text} parsed here`);
    }
    assert.equal(parseTimestampMicros('2024-06-01T12:00:00'), null, 'no offset: the server decides');
    assert.equal(parseTimestampMicros('2024-02-30T00:00:00Z'), null, 'an impossible date is left to the server');
  });
});

describe('restore streaming: checksums on a worker thread', () => {
  it('finds a changed byte in a stored and in a deflated entry, and passes intact ones', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'av-worker-'));
    try {
      const file = path.join(dir, 'a.avsnap');
      const w = await createArchiveWriter(file);
      await w.addBuffer('data/a.vectors', Buffer.alloc(300_000, 7), { compress: false });
      await w.addBuffer('data/b.jsonl', Buffer.from('{"x":1}\n'.repeat(50_000)), { compress: true });
      await w.addBuffer('data/c.json', Buffer.from('{}'));
      await w.finish({ agents: [] });
      const ranges = async (f: string) => {
        const r = await openArchive(f);
        try {
          const s = r.entryStreams();
          return await Promise.all(r.manifest.entries.map((e) => s.range(e.name)));
        } finally {
          await r.close();
        }
      };
      assert.deepEqual(
        (await verifyRangesInWorker(file, await ranges(file))).map((x) => x.error),
        [null, null, null],
      );
      let bytes = corruptEntry(readFileSync(file), 'data/a.vectors', 1000);
      bytes = corruptEntry(bytes, 'data/b.jsonl', 10);
      const bad = path.join(dir, 'bad.avsnap');
      writeFileSync(bad, bytes);
      const res = await verifyRangesInWorker(bad, await ranges(bad));
      assert.match(res[0].error!, /^its sha256 is [0-9a-f]{64}, the manifest records/);
      assert.ok(res[1].error, 'the deflated entry is damaged too');
      assert.equal(res[2].error, null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('restore streaming: approvals and bare-string content', function () {
  this.timeout(60000);
  let src: Db;
  let dst: Db;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-approvals-'));
    src = await freshLettaDb('pg');
    dst = await freshLettaDb('pg');
  });
  after(async () => {
    await src?.close();
    await dst?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an approval naming a later message and one naming an earlier one both point to the right rows after a restore that keeps ids', async () => {
    const doc = toV2(await readAgentFile(path.join(FIXTURES_DIR, 'loop.v2.af'))) as AgentFileV2;
    const msgs = doc.agents[0].messages as Array<Record<string, unknown>>;
    const base = { ...msgs[1], tool_calls: null, tool_returns: null, approvals: null, content: [] };
    msgs.push(
      { ...base, id: 'message-100', role: 'user', approval_request_id: 'message-102', content: 'a bare string becomes one text part' },
      { ...base, id: 'message-101', role: 'assistant', approval_request_id: null },
      { ...base, id: 'message-102', role: 'approval', approval_request_id: 'message-101', approve: true },
    );
    const seeded = await seedAgentFile(src, doc);
    const agentId = seeded.agents[0].id;
    const q = `SELECT id, role, content::jsonb AS content, approval_request_id, approve FROM messages WHERE agent_id = $1 ORDER BY sequence_id`;
    const before = (await src.query(q, [agentId])).rows;
    const at = (i: number) => before[before.length - 3 + i];
    assert.equal(at(0).approval_request_id, at(2).id, 'seeded (new ids): a forward reference');
    assert.equal(at(2).approval_request_id, at(1).id, 'seeded (new ids): a backward reference');
    assert.deepEqual(at(0).content, [{ type: 'text', text: 'a bare string becomes one text part' }]);
    const archive = path.join(dir, 'a.avsnap');
    await exportAgents(src, { select: { ids: [agentId] }, out: archive });
    await restoreAgents(dst, archive);
    assert.deepEqual((await dst.query(q, [agentId])).rows, before, 'the same ids, references and content after export → restore');
  });
});
