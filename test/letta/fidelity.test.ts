/**
 * Letta fidelity of a restore (issue 12): what Letta's own import writes, and what a round trip
 * keeps. Facts from Letta 0.16.8 (letta/services/group_manager.py, agent_serialization_manager.py).
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Db } from '../../src/db/types';
import { readFileSync, writeFileSync } from 'node:fs';
import { AgentVaultError } from '../../src/core/errors';
import { validateAnyPath } from '../../src/format/validate-any';
import { exportAgents } from '../../src/letta/export';
import { restoreAgents } from '../../src/letta/restore';
import { verifyArchive } from '../../src/vault/verify';
import { readArchiveAgents } from './support';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR } from '../helpers/paths';

describe('letta restore fidelity (issue 12)', function () {
  this.timeout(120000);
  let dir: string;
  let db: Db;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-fidelity-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    db = await freshLettaDb('pg');
  });
  afterEach(async () => db.close());

  it("a sleeptime group gets turns_counter -1 when sleeptime_agent_frequency is set, as Letta's create_group writes it", async () => {
    await restoreAgents(db, path.join(FIXTURES_DIR, 'lettabot-builder.v2.af'));
    const g = await db.query<{ manager_type: string; sleeptime_agent_frequency: number | null; turns_counter: number | null }>(
      'SELECT manager_type, sleeptime_agent_frequency, turns_counter FROM groups',
    );
    assert.equal(g.rows.length, 1);
    assert.equal(g.rows[0].manager_type, 'sleeptime');
    assert.ok(g.rows[0].sleeptime_agent_frequency, 'the fixture sets a frequency');
    assert.equal(g.rows[0].turns_counter, -1);
  });

  it('a group whose members are in several entries: every entry is valid on its own (validate exits 0), the group is kept in the extension and restored whole', async () => {
    await restoreAgents(db, path.join(FIXTURES_DIR, 'lettabot-builder.v2.af'));
    const archive = path.join(dir, 'pair.avs');
    await exportAgents(db, { select: { all: true }, out: archive });
    const rep = await validateAnyPath(archive);
    assert.deepEqual(
      rep.errors.map((f) => `${f.code} ${f.message}`),
      [],
    );
    assert.equal(rep.valid, true);
    const { agents } = await readArchiveAgents(archive);
    assert.equal(agents.length, 2);
    for (const e of agents) {
      const own = new Set((e.doc.agents as any[]).map((a) => a.id));
      for (const g of (e.doc.groups ?? []) as any[])
        for (const m of [...g.agent_ids, g.manager_config?.manager_agent_id].filter(Boolean)) assert.ok(own.has(m), `${e.name}: group ${g.id} names ${m}, which is in the entry`);
      for (const a of e.doc.agents as any[])
        for (const gid of a.group_ids ?? [])
          assert.ok(
            (e.doc.groups ?? []).some((g: any) => g.id === gid),
            `${e.name}: group_ids ${gid} is in the entry`,
          );
    }
    assert.equal(agents.reduce((n, e) => n + ((e.doc as any).agent_vault.groups?.length ?? 0), 0) >= 1, true, 'the group is kept in the extension');
    const dst = await freshLettaDb('pg');
    const groupOf = async (d: Db) =>
      (
        await d.query(
          `SELECT g.id, g.manager_type, g.manager_agent_id, g.agent_ids, g.sleeptime_agent_frequency, g.turns_counter,
                  (SELECT array_agg(agent_id ORDER BY agent_id) FROM groups_agents ga WHERE ga.group_id = g.id) AS linked
             FROM groups g`,
        )
      ).rows;
    try {
      await restoreAgents(dst, archive);
      const want = await groupOf(db);
      assert.equal(want.length, 1);
      assert.equal((want[0] as any).linked.length + ((want[0] as any).manager_agent_id ? 1 : 0), 2, 'the pair: manager and member');
      assert.deepEqual(await groupOf(dst), want);
    } finally {
      await dst.close();
    }
  });

  it("restore runs validate's reference checks: a dangling reference is invalid input (exit 1), nothing written", async () => {
    const doc = JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'co-3.v2.af'), 'utf8'));
    doc.agents[0].tool_ids = [...(doc.agents[0].tool_ids ?? []), 'tool-999'];
    const bad = path.join(dir, 'dangling.af');
    writeFileSync(bad, JSON.stringify(doc));
    const rep = await validateAnyPath(bad);
    assert.ok(rep.errors.some((f) => f.code === 'dangling-reference'));
    await assert.rejects(restoreAgents(db, bad), (e: unknown) => {
      assert.ok(e instanceof AgentVaultError && e.code === 'restore-invalid' && e.kind === 'failed', String(e));
      assert.match((e as Error).message, /tool-999/);
      return true;
    });
    assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM agents')).rows[0].n, 0);
  });

  it('nothing dropped without a word: skills and blocks/tools no agent attaches are counted in the restore report and its JSON', async () => {
    const r = await restoreAgents(db, path.join(FIXTURES_DIR, 'ezra.v2.af'));
    const nc = r.plan.not_carried;
    assert.equal(nc.skills.count, 4);
    assert.equal(nc.skills.names.length, 4);
    assert.equal(nc.unattached_blocks.count, 35);
    assert.equal(nc.unattached_tools.count, 4);
    assert.ok(
      r.plan.warnings.some((w) => /4 skills of the source are not restored/.test(w)),
      r.plan.warnings.join('\n'),
    );
    assert.ok(
      r.plan.warnings.some((w) => /35 blocks and 4 tools that no restored agent attaches/.test(w)),
      r.plan.warnings.join('\n'),
    );
    const lb = await restoreAgents(
      await (async () => {
        await db.close();
        db = await freshLettaDb('pg');
        return db;
      })(),
      path.join(FIXTURES_DIR, 'lettabot.v2.af'),
    );
    assert.equal(lb.plan.not_carried.skills.count, 46);
    const plain = await restoreAgents(
      await (async () => {
        await db.close();
        db = await freshLettaDb('pg');
        return db;
      })(),
      path.join(FIXTURES_DIR, 'co-3.v2.af'),
    );
    assert.deepEqual(plain.plan.not_carried, { skills: { count: 0, names: [] }, unattached_blocks: { count: 0, labels: [] }, unattached_tools: { count: 0, names: [] } });
  });

  it("files of an .af (no chunks in it) are laid out as Letta's import does: parsing, no error, counts cleared", async () => {
    await restoreAgents(db, path.join(FIXTURES_DIR, 'void.v2.af'));
    const f = await db.query<{ processing_status: string; error_message: string | null; total_chunks: number | null; chunks_embedded: number | null }>(
      'SELECT processing_status, error_message, total_chunks, chunks_embedded FROM files',
    );
    assert.ok(f.rows.length > 0, 'void.v2.af has files');
    for (const r of f.rows) assert.deepEqual(r, { processing_status: 'parsing', error_message: null, total_chunks: null, chunks_embedded: null });
  });

  it('file chunks (source_passages) with their embeddings: exported into file-passages entries and restored; the file keeps its processed state, so no re-embedding is needed', async () => {
    await restoreAgents(db, path.join(FIXTURES_DIR, 'void.v2.af'));
    // what Letta's file processing leaves: chunks with embeddings (1536 values padded to 4096), the file completed
    const files = (await db.query<{ id: string; source_id: string; file_name: string }>('SELECT id, source_id, file_name FROM files ORDER BY file_name, id')).rows;
    assert.ok(files.length > 0, 'void.v2.af has files');
    const f0 = files[0];
    const org = (await db.query<{ organization_id: string }>('SELECT organization_id FROM files WHERE id = $1', [f0.id])).rows[0].organization_id;
    const vec = (k: number) => `[${Array.from({ length: 4096 }, (_, i) => (i < 1536 ? ((((i * 7 + k * 13) % 97) - 48) / 97).toFixed(6) : '0')).join(',')}]`;
    const embCfg = JSON.stringify({ embedding_endpoint_type: 'openai', embedding_model: 'text-embedding-3-small', embedding_dim: 1536, embedding_chunk_size: 300 });
    for (let k = 0; k < 3; k++) {
      await db.query(
        `INSERT INTO source_passages (id, text, embedding_config, metadata_, embedding, organization_id, file_id, source_id, file_name, is_deleted)
         VALUES ($1, $2, $3::json, '{}'::json, $4::vector, $5, $6, $7, $8, false)`,
        [`passage-00000000-0000-4000-8000-00000000000${k}`, `chunk ${k} of ${f0.file_name}`, embCfg, vec(k), org, f0.id, f0.source_id, f0.file_name],
      );
    }
    await db.query(`UPDATE files SET processing_status = 'completed', total_chunks = 3, chunks_embedded = 3 WHERE id = $1`, [f0.id]);
    const archive = path.join(dir, 'void-chunks.avsnap');
    await exportAgents(db, { select: { all: true }, out: archive });
    const rep = await validateAnyPath(archive);
    assert.deepEqual(
      rep.errors.map((e) => `${e.code} ${e.message}`),
      [],
    );
    const { manifest } = await readArchiveAgents(archive);
    const withChunks = (manifest.agents as any[]).filter((a) => a.file_passages_entry);
    assert.ok(withChunks.length >= 1, 'an agent of the archive carries the chunks');
    for (const a of withChunks) assert.equal(a.counts.file_passages, 3);
    const deep = await verifyArchive(archive, { deep: true });
    assert.deepEqual(
      deep.filter((c) => !c.ok).map((c) => `${c.name}: ${c.message}`),
      [],
      'deep verification reads the file chunks and their vectors',
    );
    assert.ok(deep.some((c) => c.name === 'passages' && c.ok));

    const dst = await freshLettaDb('pg');
    try {
      const r = await restoreAgents(dst, archive);
      assert.equal(r.rows.source_passages, 3, 'each chunk written once');
      const got = await dst.query<{ id: string; text: string; file_id: string; dims: number }>(`SELECT p.id, p.text, p.file_id, vector_dims(p.embedding) AS dims FROM source_passages p ORDER BY p.id`);
      assert.deepEqual(
        got.rows.map((x) => [x.id, x.text, x.file_id, x.dims]),
        [0, 1, 2].map((k) => [`passage-00000000-0000-4000-8000-00000000000${k}`, `chunk ${k} of ${f0.file_name}`, f0.id, 4096]),
      );
      const src = await db.query<{ id: string; e: string }>(`SELECT id, embedding::text AS e FROM source_passages ORDER BY id`);
      const dstE = await dst.query<{ id: string; e: string }>(`SELECT id, embedding::text AS e FROM source_passages ORDER BY id`);
      assert.deepEqual(dstE.rows, src.rows, 'embeddings bit-identical (padding included)');
      const st = await dst.query<{ id: string; processing_status: string; total_chunks: number | null; chunks_embedded: number | null }>(
        'SELECT id, processing_status, total_chunks, chunks_embedded FROM files ORDER BY file_name, id',
      );
      for (const x of st.rows) {
        if (x.id === f0.id) assert.deepEqual([x.processing_status, x.total_chunks, x.chunks_embedded], ['completed', 3, 3], 'the file with chunks keeps its state');
        else assert.deepEqual([x.processing_status, x.total_chunks, x.chunks_embedded], ['parsing', null, null], 'a file without chunks is laid out for Letta to process');
      }
      // a second restore as a copy: a new folder, new file ids, the chunks written again under them
      const c = await restoreAgents(dst, archive, { onConflict: 'copy' });
      assert.equal(c.rows.source_passages, 3);
      const n = await dst.query<{ files: number; ids: number }>('SELECT count(DISTINCT file_id)::int AS files, count(DISTINCT id)::int AS ids FROM source_passages');
      assert.deepEqual(n.rows[0], { files: 2, ids: 6 });
    } finally {
      await dst.close();
    }
  });

  it('--on-conflict=copy of an agent with files: a new folder "<name>_<8 hex>", never two rows of one file name in one folder', async () => {
    const af = path.join(FIXTURES_DIR, 'void.v2.af');
    await restoreAgents(db, af);
    const before = await db.query<{ name: string }>('SELECT name FROM sources ORDER BY name');
    const r = await restoreAgents(db, af, { onConflict: 'copy' });
    const after = await db.query<{ name: string }>('SELECT name FROM sources ORDER BY created_at, name');
    assert.equal(after.rows.length, before.rows.length * 2);
    for (const b of before.rows)
      assert.ok(
        after.rows.some((x) => new RegExp(`^${b.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_[0-9a-f]{8}$`).test(x.name)),
        `a new folder for ${b.name}`,
      );
    assert.ok(r.plan.warnings.some((w) => /restored into a new folder/.test(w)));
    const dup = await db.query('SELECT source_id, file_name, count(*) FROM files GROUP BY source_id, file_name HAVING count(*) > 1');
    assert.deepEqual(dup.rows, []);
  });
});
