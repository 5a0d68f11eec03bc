/**
 * Source databases for vault tests: fixtures seeded into PGlite (or the test PostgreSQL), plus
 * synthetic archival passages with real (clustered, normalised) embedding vectors so that vector
 * searches have meaningful neighbours.
 */
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import type { Db } from '../../src/db/types';
import { DEFAULT_ORG_ID } from '../../src/letta/ddl';
import { seedAgentFile } from '../../src/letta/seed';
import { SeededRandom } from '../../src/vault/probes';
import { FIXTURES_DIR } from '../helpers/paths';

export function fixturePath(name: string): string {
  return path.join(FIXTURES_DIR, name);
}

/** Seeds fixture files (as Letta's import would); returns the database ids of the agents created, in order. */
export async function seedFixtures(db: Db, files: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const f of files) {
    const r = await seedAgentFile(db, fixturePath(f));
    ids.push(...r.agents.map((a) => a.id));
  }
  return ids;
}

/** Unit vectors around a few cluster centres, deterministic for a seed. */
export function clusteredVectors(n: number, dim: number, seed: string, clusters = 6): Float32Array[] {
  const rng = new SeededRandom(seed);
  const centres = Array.from({ length: clusters }, () => Float32Array.from({ length: dim }, () => rng.gaussian()));
  return Array.from({ length: n }, (_, i) => {
    const c = centres[i % clusters];
    const v = Float32Array.from({ length: dim }, (_, d) => c[d] + 0.6 * rng.gaussian());
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    return v.map((x) => x / norm);
  });
}

function literal(v: Float32Array, padTo = 4096): string {
  const parts: string[] = new Array(padTo);
  for (let i = 0; i < padTo; i++) parts[i] = i < v.length ? String(v[i]) : '0';
  return `[${parts.join(',')}]`;
}

/**
 * Gives an agent an archive with `n` archival passages embedded at the agent's embedding
 * dimension (zero-padded to 4096 as Letta stores them). Returns the passage ids.
 */
export async function addSyntheticPassages(db: Db, agentId: string, n: number, seed: string): Promise<string[]> {
  const a = await db.query<{ name: string; embedding_config: Record<string, unknown> | null; organization_id: string }>('SELECT name, embedding_config, organization_id FROM agents WHERE id = $1', [
    agentId,
  ]);
  const agent = a.rows[0];
  const ec = agent.embedding_config ?? { embedding_model: 'text-embedding-3-small', embedding_dim: 1536, embedding_endpoint_type: 'openai' };
  const dim = Number(ec.embedding_dim) || 1536;
  const org = agent.organization_id ?? DEFAULT_ORG_ID;
  const archiveId = `archive-${randomUUID()}`;
  await db.query(`INSERT INTO archives (id, name, organization_id, vector_db_provider, embedding_config, metadata_) VALUES ($1, $2, $3, 'NATIVE', $4, '{}')`, [
    archiveId,
    `${agent.name}'s Archive`,
    org,
    JSON.stringify(ec),
  ]);
  await db.query(`INSERT INTO archives_agents (agent_id, archive_id, is_owner) VALUES ($1, $2, true)`, [agentId, archiveId]);
  const vecs = clusteredVectors(n, dim, seed);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `passage-${randomUUID()}`;
    ids.push(id);
    await db.query(`INSERT INTO archival_passages (id, text, embedding_config, metadata_, embedding, organization_id, archive_id, tags) VALUES ($1, $2, $3, '{}', $4::vector, $5, $6, $7)`, [
      id,
      `memory ${i} of ${agent.name}: topic ${i % 6}`,
      JSON.stringify(ec),
      literal(vecs[i]),
      org,
      archiveId,
      JSON.stringify([`topic-${i % 6}`]),
    ]);
  }
  return ids;
}

/** Appends 1 % more messages (copies of the latest ones, new ids, dated later) and edits 1 % of the passages (text and embedding). */
export async function changeOnePercent(db: Db): Promise<{ messages: number; passages: number }> {
  const cols = (
    await db.query<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'messages' AND table_schema = current_schema() ORDER BY ordinal_position`)
  ).rows.map((r) => r.column_name);
  const insertCols = cols.filter((c) => c !== 'sequence_id');
  const sel = insertCols.map((c) => (c === 'id' ? `'message-' || gen_random_uuid()` : c === 'created_at' ? `created_at + interval '100 days'` : c)).join(', ');
  const n = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages`)).rows[0].n;
  const k = Math.max(1, Math.round(n / 100));
  await db.query(`INSERT INTO messages (${insertCols.join(', ')}) SELECT ${sel} FROM (SELECT * FROM messages ORDER BY sequence_id DESC LIMIT ${k}) m`);
  const p = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM archival_passages`)).rows[0].n;
  const kp = Math.max(1, Math.round(p / 100));
  await db.query(
    `WITH pick AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM archival_passages),
          chosen AS (SELECT id, rn FROM pick WHERE rn % ${Math.floor(p / kp)} = 0 LIMIT ${kp}),
          donor AS (SELECT c.id, (SELECT q.embedding FROM archival_passages q JOIN pick pq ON pq.id = q.id WHERE pq.rn = CASE WHEN c.rn = 1 THEN 2 ELSE c.rn - 1 END) AS emb FROM chosen c)
     UPDATE archival_passages a SET text = a.text || ' (edited)', embedding = d.emb FROM donor d WHERE a.id = d.id`,
  );
  return { messages: k, passages: kp };
}
