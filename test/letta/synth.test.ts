/**
 * The synthetic database generator (N agents × M messages × P passages of D dimensions, set-based
 * SQL, deterministic from the seed), the timestamp text the backends return, and listAgents.
 */
import { strict as assert } from 'node:assert';
import { pgTimestampToIso } from '../../src/db/timestamps';
import { exportAgents, listAgents } from '../../src/letta/export';
import { generateSyntheticDb } from '../../src/letta/synth';
import { freshLettaDb } from '../helpers/letta-db';
import { readArchiveAgents, tableSnapshot } from './support';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

describe('db timestamps as exact ISO 8601 text', () => {
  it('keeps microseconds and the offset, converts only the layout', () => {
    assert.equal(pgTimestampToIso('2024-01-02 03:04:05.123456+00'), '2024-01-02T03:04:05.123456+00:00');
    assert.equal(pgTimestampToIso('2024-01-02 03:04:05+05:30'), '2024-01-02T03:04:05+05:30');
    assert.equal(pgTimestampToIso('2024-01-02 03:04:05.5-08'), '2024-01-02T03:04:05.5-08:00');
    assert.equal(pgTimestampToIso('2024-01-02 03:04:05.000001'), '2024-01-02T03:04:05.000001');
    assert.equal(pgTimestampToIso('infinity'), 'infinity');
    assert.equal(pgTimestampToIso('0044-03-15 12:00:00+00 BC'), '0044-03-15 12:00:00+00 BC');
    assert.equal(new Date(pgTimestampToIso('2024-01-02 03:04:05.123456+02')).toISOString(), '2024-01-02T01:04:05.123Z');
  });
});

describe('letta synthetic databases', function () {
  this.timeout(120000);
  const opts = { agents: 3, messagesPerAgent: 60, passagesPerAgent: 25, dim: 16, seed: 42 };

  it("pg: the requested shape, Letta's layout (zero-padded vectors, in-context window), identical for the same seed", async () => {
    const a = await freshLettaDb('pg');
    const b = await freshLettaDb('pg');
    const c = await freshLettaDb('pg');
    try {
      const r = await generateSyntheticDb(a, opts);
      assert.equal(r.agentIds.length, 3);
      assert.equal(r.messages, 180);
      assert.equal(r.passages, 75);
      await generateSyntheticDb(b, opts);
      const sa = await tableSnapshot(a);
      assert.deepEqual(await tableSnapshot(b), sa, 'same seed, same rows in every table');
      await generateSyntheticDb(c, { ...opts, seed: 43 });
      const sc = await tableSnapshot(c);
      assert.notEqual(sc.archival_passages.md5, sa.archival_passages.md5, 'another seed, other data');
      assert.equal(sc.archival_passages.rows, sa.archival_passages.rows);

      const dims = await a.query(
        `SELECT DISTINCT vector_dims(embedding) AS d, vector_norm(subvector(embedding, 17, 4080)) AS pad, (embedding_config->>'embedding_dim')::int AS ed FROM archival_passages`,
      );
      assert.deepEqual(dims.rows, [{ d: 4096, pad: 0, ed: 16 }], 'true dimension 16, zero-padded to 4096');
      const distinct = await a.query(`SELECT count(DISTINCT embedding::text)::int AS n FROM archival_passages`);
      assert.equal(distinct.rows[0].n, 75, 'every passage has its own vector');
      const ctx = await a.query<{ n: number; first_role: string; last_is_newest: boolean }>(
        `SELECT json_array_length(a.message_ids) AS n,
                (SELECT role FROM messages m WHERE m.id = a.message_ids->>0) AS first_role,
                (a.message_ids->>(json_array_length(a.message_ids) - 1)) = (SELECT id FROM messages m WHERE m.agent_id = a.id ORDER BY sequence_id DESC LIMIT 1) AS last_is_newest
           FROM agents a`,
      );
      for (const row of ctx.rows) assert.deepEqual(row, { n: 20, first_role: 'system', last_is_newest: true });
      const listing = await listAgents(a);
      assert.deepEqual(
        listing.map((x) => [x.messages, x.in_context_messages, x.passages, x.blocks, x.tools, x.embedding_model, x.embedding_dim]),
        [0, 1, 2].map(() => [60, 20, 25, 2, 3, 'synthetic-embedding', 16]),
      );
      assert.match(listing[0].last_updated!, /^2025-01-01T00:0\d:00\+00:00$/);
      // pgvector < 0.7 has no subvector(): the export's real[] path reads the same bytes
      const dir = mkdtempSync(path.join(os.tmpdir(), 'av-synth-'));
      try {
        const e1 = await exportAgents(a, { select: { all: true }, out: path.join(dir, '1.avs') });
        const e2 = await exportAgents(a, { select: { all: true }, out: path.join(dir, '2.avs'), legacyVectorPath: true });
        const [x, y] = [await readArchiveAgents(e1.path), await readArchiveAgents(e2.path)];
        for (const [i, ag] of x.agents.entries()) {
          assert.equal(ag.dim, 16);
          assert.ok(ag.vectors!.equals(y.agents[i].vectors!), 'both vector paths give the same bytes');
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      assert.deepEqual(listing[0].tags, ['seed-42', 'synthetic']);
    } finally {
      await a.close();
      await b.close();
      await c.close();
    }
  });

  it('pglite: the same generator on the embedded database', async () => {
    const db = await freshLettaDb('pglite');
    try {
      const r = await generateSyntheticDb(db, { agents: 2, messagesPerAgent: 10, passagesPerAgent: 4, dim: 8, seed: 1 });
      assert.equal(r.messages, 20);
      assert.equal(r.passages, 8);
      const n = await db.query(`SELECT count(*)::int AS n FROM passage_tags`);
      assert.ok(n.rows[0].n > 0);
    } finally {
      await db.close();
    }
  });

  it('refuses impossible options with a clear message', async () => {
    const db = await freshLettaDb('pg');
    try {
      await assert.rejects(generateSyntheticDb(db, { ...opts, dim: 5000 }), /dim 5000 is larger than the 4096 dimensions/);
      await assert.rejects(generateSyntheticDb(db, { ...opts, agents: 0 }), /agents must be an integer from 1/);
    } finally {
      await db.close();
    }
  });
});
