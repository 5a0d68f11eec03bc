/**
 * Drift since the last snapshot: `agent-vault diff <snapshot> <live database>` against the real
 * PostgreSQL test server and an embedded PGlite data directory.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openPg } from '../../src/db/pg';
import { openPglite } from '../../src/db/pglite';
import type { Db } from '../../src/db/types';
import { createLettaSchema } from '../../src/letta/ddl';
import { seedAgentFile } from '../../src/letta/seed';
import { exportAgents } from '../../src/letta/export';
import { runCli, STACK_TRACE } from '../helpers/cli';
import { FIXTURES_DIR } from '../helpers/paths';
import { sharedTestPostgres } from '../helpers/global-pg';

async function seedAndSnapshot(db: Db, snap: string): Promise<void> {
  await createLettaSchema(db);
  await seedAgentFile(db, path.join(FIXTURES_DIR, 'memgpt-agent-with-convo.v1.af'), { passages: { count: 6, dim: 32, seed: 7 } });
  await exportAgents(db, { select: { all: true }, out: snap });
}

async function drift(db: Db): Promise<void> {
  await db.query(`UPDATE block SET value = value || ' Prefers short answers.' WHERE label = 'human'`);
  await db.query(`UPDATE agents SET system = system || E'\\nNever share secrets.'`);
}

function jsonDiff(a: string, b: string): { code: number; report: any; stderr: string } {
  const r = runCli(['diff', a, b, '--format', 'json', '--exit-code'], { timeoutMs: 180000 });
  assert.doesNotMatch(r.stdout + r.stderr, STACK_TRACE);
  return { code: r.code, report: r.stdout ? JSON.parse(r.stdout) : null, stderr: r.stderr };
}

function assertDrift(report: any): void {
  assert.equal(report.identical, false);
  assert.equal(report.b.kind, 'live');
  assert.equal(report.agents.length, 1);
  const d = report.agents[0];
  assert.equal(d.matched_by, 'id');
  assert.deepEqual(
    d.memory_blocks.changed.map((c: any) => c.label),
    ['human'],
  );
  assert.ok(d.system_prompt, 'system prompt change reported');
  assert.ok(d.system_prompt.hunks.some((h: any) => JSON.stringify(h).includes('Never share secrets.')));
  for (const c of ['tools', 'workflows', 'llm_config', 'embedding_config', 'messages', 'passages', 'environment']) assert.equal(d.counts[c], 0, `no ${c} change`);
}

describe('diff with a live agent (drift since the last snapshot)', function () {
  this.timeout(300000);
  let dir: string;
  before(() => (dir = mkdtempSync(path.join(tmpdir(), 'av-live-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('PostgreSQL: no drift right after the snapshot, then exactly the edited block and prompt', async () => {
    const server = await sharedTestPostgres();
    const { url } = await server.createDatabase();
    const snap = path.join(dir, 'pg.avsnap');
    const db = await openPg({ url });
    try {
      await seedAndSnapshot(db, snap);
      const same = jsonDiff(snap, url);
      assert.equal(same.code, 0, same.stderr);
      assert.equal(same.report.identical, true);
      await drift(db);
    } finally {
      await db.close();
    }
    const changed = jsonDiff(snap, url);
    assert.equal(changed.code, 1, changed.stderr);
    assertDrift(changed.report);
    // the text form names the block and says nothing of a password
    const text = runCli(['diff', snap, url, '--agent', changed.report.agents[0].key]);
    assert.match(text.stdout, /human/);
  });

  it('PGlite data directory (pglite:<dir>)', async () => {
    const dataDir = path.join(dir, 'pglite-data');
    const snap = path.join(dir, 'pglite.avsnap');
    const db = await openPglite({ dataDir });
    try {
      await seedAndSnapshot(db, snap);
      await drift(db);
    } finally {
      await db.close();
    }
    const changed = jsonDiff(snap, `pglite:${dataDir}`);
    assert.equal(changed.code, 1, changed.stderr);
    assertDrift(changed.report);
  });

  it('an unreachable database is a clear error (exit 2), not a stack trace', () => {
    const r = runCli(['diff', path.join(FIXTURES_DIR, 'memgpt-agent.v1.af'), 'postgres://nobody:secret@127.0.0.1:1/letta']);
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    assert.doesNotMatch(r.stderr, /secret/);
    assert.match(r.stderr, /127\.0\.0\.1/);
  });
});
