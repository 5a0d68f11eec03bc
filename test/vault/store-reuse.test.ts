/**
 * A backup into a store vault copies the agents that have not changed since the parent snapshot
 * (src/letta/export/change-key.ts, StoreSnapshotWriter in src/vault/store/repo.ts; docs/VAULT.md
 * "Unchanged agents"), on a real PostgreSQL 15 + pgvector source: a second backup of an unchanged
 * database reuses every agent and reads no message or passage (every query is recorded), and its
 * snapshot restores like a direct export; each kind of change re-reads the agent it touches (and
 * the agents after it when message numbering shifts) and the snapshot then equals a direct export
 * of the changed database; VACUUM FULL, a second database restored from the same snapshot, an
 * encrypted store and `--full` re-read what they must; a drill of a snapshot with reused agents
 * checks every agent's probes.
 */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { Db, Queryable } from '../../src/db/types';
import { diffPaths } from '../../src/diff';
import { keyFromPassphrase } from '../../src/format/crypto';
import { exportAgents } from '../../src/letta/export';
import { restoreAgents } from '../../src/letta/restore';
import type { VaultConfig } from '../../src/vault/config';
import { openStoreVaultSnapshot } from '../../src/vault/store-read';
import { exportStoreSnapshot, initStoreVault, openVaultRepo, storeBackup, type StoreBackupResult } from '../../src/vault/store-vault';
import { listSnapshots, loadSnapshot } from '../../src/vault/store/repo';
import { verifyArchive } from '../../src/vault/verify';
import { reuseLine } from '../../src/cli/store';
import { ensureCliBuilt, runCli } from '../helpers/cli';
import { sharedTestPostgres } from '../helpers/global-pg';
import { freshLettaDb } from '../helpers/letta-db';
import { openPg } from '../../src/db/pg';
import { addSyntheticPassages, seedFixtures } from './letta-data';
import { makeTmpRoot } from './helpers';

const FIXTURES = ['lettabot-builder.v2.af', 'void.v2.af', 'customer-service.v1.af'];
const PACK_SIZE = 128 * 1024;

/** The database with every query it runs (also inside its transactions) recorded in `log`. */
function recording(db: Db, log: string[]): Db {
  const wrap = <T extends Queryable>(q: T, more: (t: T, k: string | symbol) => unknown = () => undefined): T =>
    new Proxy(q, {
      get(t, k) {
        if (k === 'query')
          return (sql: string, params?: readonly unknown[]) => {
            log.push(sql);
            return t.query(sql, params);
          };
        const m = more(t, k);
        if (m !== undefined) return m;
        const v = Reflect.get(t, k) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
  return wrap(db, (t, k) => (k === 'transaction' ? (fn: (tx: Queryable) => Promise<unknown>, o?: unknown) => t.transaction((tx) => fn(wrap(tx)), o as never) : undefined));
}

describe('vault: a store backup copies unchanged agents from the parent snapshot', function () {
  this.timeout(300000);
  const tmp = makeTmpRoot('store-reuse');
  let source: Db;
  let agents: string[]; // in export order
  let withPassages: string;
  let store: string;
  const log: string[] = [];
  let rec: Db;
  const config = (vault: string): VaultConfig => ({ vault, source: { kind: 'pglite', dataDir: '/not-used' }, probes: { perAgent: 3, topK: 5 } });

  before(async () => {
    ensureCliBuilt();
    source = await freshLettaDb('pg');
    const seeded = await seedFixtures(source, FIXTURES);
    withPassages = seeded[1];
    await addSyntheticPassages(source, withPassages, 300, 'store-reuse-a');
    await addSyntheticPassages(source, seeded[2], 100, 'store-reuse-b');
    store = path.join(tmp.dir('store'), 'vault');
    await initStoreVault(store, { packSize: PACK_SIZE });
    rec = recording(source, log);
  });
  after(async () => {
    await source?.close();
    tmp.cleanup();
  });

  /** The store snapshot equals a direct export of the database as it is now (diff: identical). */
  async function sameAsDirect(r: StoreBackupResult, what: string): Promise<void> {
    const dir = tmp.dir('cmp');
    const direct = path.join(dir, 'direct.avsnap');
    await exportAgents(source, { select: { all: true }, out: direct });
    const out = path.join(dir, 'store.avsnap');
    await exportStoreSnapshot(store, r.id, out);
    const deep = await verifyArchive(out, { deep: true });
    assert.ok(
      deep.every((c) => c.ok),
      `${what}: ${JSON.stringify(deep.filter((c) => !c.ok))}`,
    );
    const d = await diffPaths(direct, out);
    assert.equal(d.identical, true, `${what}: the snapshot differs from a direct export: ${JSON.stringify(d.summary)}`);
  }

  /** A backup after `change`: `exported` agents read (the rest copied from the previous snapshot), and the snapshot equals a direct export. */
  async function backupAfter(what: string, change: () => Promise<unknown>, exported: string[]): Promise<StoreBackupResult> {
    const before = (await listSnapshots(await openVaultRepo(store))).length;
    await change();
    const r = await storeBackup({ config: config(store), db: source });
    // which: the agents read are the ones whose .af entry has new lists
    const repo = await openVaultRepo(store);
    const snaps = await listSnapshots(repo);
    assert.equal(snaps.length, before + 1);
    const [prev, cur] = [await loadSnapshot(repo, snaps[snaps.length - 2].id), await loadSnapshot(repo, snaps[snaps.length - 1].id)];
    const createdOf = (s: typeof prev, id: string) => s.entries.find((e) => e.name === s.manifest.agents.find((a) => a.id === id)!.entry)!;
    const fresh = agents.filter((id) => createdOf(prev, id).lists.join() !== createdOf(cur, id).lists.join() || createdOf(prev, id).sha256 !== createdOf(cur, id).sha256);
    assert.deepEqual(fresh.sort(), [...exported].sort(), `${what}: the agents written anew`);
    assert.equal(r.reuse.exported, exported.length, `${what}: agents read (expected ${exported.join(', ')})`);
    assert.equal(r.reuse.reused, agents.length - exported.length, `${what}: agents copied`);
    await sameAsDirect(r, what);
    return r;
  }

  it('a second backup of the unchanged database reads no message or passage and copies every agent; its snapshot restores like a direct export', async () => {
    const first = await storeBackup({ config: config(store), db: rec });
    assert.equal(first.reuse.parent, null);
    assert.equal(first.reuse.off, null);
    agents = (await loadSnapshot(await openVaultRepo(store), first.snapshotId)).manifest.agents.map((a) => a.id);
    assert.equal(first.reuse.exported, agents.length);
    assert.ok(log.some((q) => /DECLARE/.test(q) && /FROM messages/.test(q)) && log.some((q) => /vector_send/.test(q)), 'the first backup reads messages and vectors');
    log.length = 0;
    const second = await storeBackup({ config: config(store), db: rec });
    assert.deepEqual([second.reuse.reused, second.reuse.exported, second.reuse.parent, second.reuse.parent_store_id], [agents.length, 0, first.id, first.snapshotId]);
    // no cursor, no vectors, no message numbering: only the small objects and the row-version markers
    const reads = log.filter((q) => /DECLARE|vector_send|row_number\(\)|SELECT m\.\*|p\.text/.test(q));
    assert.deepEqual(reads, [], 'no message or passage row is read');
    assert.ok(
      log.some((q) => /hashtextextended/.test(q)),
      'the markers were computed',
    );
    assert.match(
      reuseLine(second.reuse),
      new RegExp(`^${agents.length} agent\\(s\\) unchanged, copied from parent snapshot ${first.id} \\(store ${first.snapshotId.slice(0, 12)}\\); 0 agent\\(s\\) read from the database$`),
    );
    assert.match(reuseLine(first.reuse), /^\d+ agent\(s\) read from the database; no parent snapshot of this database in the store$/);
    assert.equal(second.ingest.bytesRead, first.ingest.bytesRead, 'the same entries');
    assert.equal(first.ingest.bytesCopied, 0, 'the first backup copies nothing');
    const agentBytes = second.ingest.bytesCopied ?? 0;
    assert.ok(agentBytes > 0 && agentBytes < second.ingest.bytesRead, `the agents' entries are copied, the snapshot's own entries (probes…) written: ${agentBytes} of ${second.ingest.bytesRead}`);
    assert.ok(second.ingest.newBlobs <= 2, `only the manifest-side entries may be new: ${second.ingest.newBlobs}`);
    await sameAsDirect(second, 'unchanged');
    // the snapshot restores: the same rows as a restore of a direct export
    const direct = path.join(tmp.dir('direct'), 'd.avsnap');
    await exportAgents(source, { select: { all: true }, out: direct });
    const a = await freshLettaDb('pg');
    const b = await freshLettaDb('pg');
    try {
      const ra = await restoreAgents(a, direct);
      const rs = await restoreAgents(b, { open: async () => (await openStoreVaultSnapshot(store, second.id)).reader });
      assert.deepEqual(rs.rows, ra.rows);
      assert.ok((rs.rows.messages ?? 0) > 0 && (rs.rows.archival_passages ?? 0) >= 400, JSON.stringify(rs.rows));
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a drill of a snapshot with reused agents checks the probes of every agent with passages', () => {
    const r = runCli(['drill', 'latest', '--vault', store]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^drill PASSED/);
    const m = /(\d+)\/(\d+) probe searches/.exec(r.stdout);
    assert.ok(m && m[1] === m[2] && Number(m[1]) >= 6, r.stdout);
  });

  it('each change re-reads the agent it touches (and the agents after it when message numbering shifts); the snapshot equals a direct export', async () => {
    const first = agents[0];
    const last = agents[agents.length - 1];
    const msg = async (agent: string, order: 'ASC' | 'DESC') =>
      (await source.query<{ id: string }>(`SELECT id FROM messages WHERE agent_id = $1 AND NOT is_deleted ORDER BY sequence_id ${order} LIMIT 1`, [agent])).rows[0].id;
    const lastMsg = await msg(last, 'DESC');
    const cols = (
      await source.query<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'messages' AND table_schema = current_schema() ORDER BY ordinal_position`)
    ).rows
      .map((r) => r.column_name)
      .filter((c) => c !== 'sequence_id');
    const sel = cols.map((c) => (c === 'id' ? `'message-reuse-test-1'` : c === 'created_at' ? `created_at + interval '1 day'` : c)).join(', ');
    await backupAfter('a message inserted', () => source.query(`INSERT INTO messages (${cols.join(', ')}) SELECT ${sel} FROM messages WHERE id = $1`, [lastMsg]), [last]);
    const firstMsg = await msg(first, 'DESC');
    await backupAfter('a message updated', () => source.query(`UPDATE messages SET content = '[{"type":"text","text":"edited"}]'::json WHERE id = $1`, [firstMsg]), [first]);
    await backupAfter('a message soft-deleted', () => source.query(`UPDATE messages SET is_deleted = true WHERE id = 'message-reuse-test-1'`), [last]);
    await backupAfter('a message hard-deleted', () => source.query(`DELETE FROM messages WHERE id = 'message-reuse-test-1'`), [last]);
    // the first agent gets one more message: every later agent's message ids shift
    const sel2 = cols.map((c) => (c === 'id' ? `'message-reuse-test-2'` : c === 'created_at' ? `created_at + interval '1 day'` : c)).join(', ');
    await backupAfter(
      'a message of the first agent inserted (numbering shifts)',
      () => source.query(`INSERT INTO messages (${cols.join(', ')}) SELECT ${sel2} FROM messages WHERE id = $1`, [firstMsg]),
      agents,
    );
    const passage = (
      await source.query<{ id: string }>(`SELECT p.id FROM archival_passages p JOIN archives_agents aa ON aa.archive_id = p.archive_id WHERE aa.agent_id = $1 ORDER BY p.id LIMIT 1`, [withPassages])
    ).rows[0].id;
    await backupAfter('a passage text updated', () => source.query(`UPDATE archival_passages SET text = text || ' (edited)' WHERE id = $1`, [passage]), [withPassages]);
    await backupAfter(
      'an embedding updated',
      () =>
        source.query(
          `UPDATE archival_passages a SET embedding = (SELECT q.embedding FROM archival_passages q WHERE q.archive_id = a.archive_id AND q.id <> a.id ORDER BY q.id DESC LIMIT 1) WHERE a.id = $1`,
          [passage],
        ),
      [withPassages],
    );
    await backupAfter('a passage deleted', () => source.query(`DELETE FROM archival_passages WHERE id = $1`, [passage]), [withPassages]);
    const block = (
      await source.query<{ block_id: string }>(`SELECT block_id FROM blocks_agents WHERE agent_id = $1 AND block_id NOT IN (SELECT block_id FROM blocks_agents WHERE agent_id <> $1) LIMIT 1`, [first])
    ).rows[0].block_id;
    await backupAfter('a block value edited', () => source.query(`UPDATE block SET value = value || ' (edited)' WHERE id = $1`, [block]), [first]);
    const tool = (await source.query<{ tool_id: string }>(`SELECT tool_id FROM tools_agents WHERE agent_id = $1 ORDER BY tool_id LIMIT 1`, [last])).rows[0].tool_id;
    const users = (await source.query<{ agent_id: string }>(`SELECT agent_id FROM tools_agents WHERE tool_id = $1`, [tool])).rows.map((r) => r.agent_id);
    await backupAfter('a tool changed', () => source.query(`UPDATE tools SET description = coalesce(description, '') || ' (edited)' WHERE id = $1`, [tool]), users);
    await backupAfter(
      'the in-context message ids changed',
      () =>
        source.query(
          `UPDATE agents SET message_ids = (SELECT json_agg(x ORDER BY n) FROM json_array_elements(message_ids) WITH ORDINALITY AS e(x, n) WHERE n < json_array_length(message_ids)) WHERE id = $1`,
          [last],
        ),
      [last],
    );
    // statistics and hint bits change no row: a plan that reads the catalog in another order must not change a key
    await backupAfter('VACUUM ANALYZE (no row changes)', () => source.query(`VACUUM ANALYZE`), []);
    await backupAfter('VACUUM FULL messages', () => source.query(`VACUUM FULL messages`), agents);
    await backupAfter('nothing changed', async () => undefined, []);
  });

  it('a second database restored from the same snapshot (same agent ids) is read in full into the same vault; each database reuses only its own snapshots', async () => {
    const copy = await freshLettaDb('pg');
    try {
      await restoreAgents(copy, { open: async () => (await openStoreVaultSnapshot(store, 'latest')).reader });
      const n = (await copy.query<{ n: number }>(`SELECT count(*)::int AS n FROM agents`)).rows[0].n;
      assert.equal(n, agents.length);
      const c1 = await storeBackup({ config: config(store), db: copy });
      assert.deepEqual([c1.reuse.parent, c1.reuse.reused, c1.reuse.exported], [null, 0, agents.length], 'another database is no parent');
      const s = await storeBackup({ config: config(store), db: source });
      assert.deepEqual([s.reuse.reused, s.reuse.exported], [agents.length, 0], 'the source reuses its own latest snapshot, not the copy');
      assert.notEqual(s.reuse.parent, c1.id);
      await sameAsDirect(s, 'after the copy');
      const c2 = await storeBackup({ config: config(store), db: copy });
      assert.deepEqual([c2.reuse.parent, c2.reuse.reused], [c1.id, agents.length]);
    } finally {
      await copy.close();
    }
  });

  it('a role that may not call pg_control_system() gets every agent read in full, and the backup says so', async () => {
    const server = await sharedTestPostgres();
    const name = (await source.query<{ d: string }>(`SELECT current_database() AS d`)).rows[0].d;
    const role = `av_noctl_${process.pid}_${Date.now().toString(36)}`;
    await source.query(`CREATE ROLE ${role} LOGIN PASSWORD 'reuse-test'`);
    let db: Db | undefined;
    try {
      // pg_proc is per database: the revoke holds in this test's database only
      await source.query(`REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC`);
      await source.query(`GRANT USAGE ON SCHEMA letta TO ${role}`);
      await source.query(`GRANT SELECT ON ALL TABLES IN SCHEMA letta TO ${role}`);
      const u = new URL(server.url);
      u.pathname = `/${name}`;
      u.username = role;
      u.password = 'reuse-test';
      db = await openPg({ url: u.toString() });
      const v = path.join(tmp.dir('noctl'), 'vault');
      await initStoreVault(v, { packSize: PACK_SIZE });
      for (const run of ['first', 'second']) {
        const r = await storeBackup({ config: config(v), db });
        assert.deepEqual([r.reuse.reused, r.reuse.exported, r.reuse.parent], [0, agents.length, null], run);
        assert.match(r.reuse.off ?? '', /may not call pg_control_system\(\)/);
        assert.ok(
          r.warnings.some((w) => /every agent is read in full: .*pg_control_system/.test(w)),
          `${run}: ${r.warnings.join('; ')}`,
        );
        assert.match(reuseLine(r.reuse), /read from the database; none copied from an earlier snapshot: the database role may not call pg_control_system\(\)/);
      }
    } finally {
      await db?.close();
      await source.query(`GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() TO PUBLIC`);
      await source.query(`DROP OWNED BY ${role}`);
      await source.query(`DROP ROLE ${role}`);
    }
  });

  it('backup --full reads every agent and records keys the next backup reuses', async () => {
    const full = await storeBackup({ config: config(store), db: source, full: true });
    assert.deepEqual([full.reuse.reused, full.reuse.exported, full.reuse.parent], [0, agents.length, null]);
    const next = await storeBackup({ config: config(store), db: source });
    assert.deepEqual([next.reuse.reused, next.reuse.parent], [agents.length, full.id]);
  });

  it('an encrypted store vault reuses unchanged agents too, and the snapshot deep-verifies', async () => {
    const dir = path.join(tmp.dir('enc'), 'vault');
    const PASS = 'store reuse passphrase';
    await initStoreVault(dir, { key: await keyFromPassphrase(PASS, { scrypt: { N: 1024, r: 8, p: 1 } }), packSize: PACK_SIZE });
    const env = { AGENT_VAULT_PASSPHRASE: PASS };
    const cfg: VaultConfig = { ...config(dir), encryption: { enabled: true, scrypt: { N: 1024, r: 8, p: 1 } } };
    const a = await storeBackup({ config: cfg, db: source, keys: { env }, env });
    const b = await storeBackup({ config: cfg, db: source, keys: { env }, env });
    assert.deepEqual([a.reuse.exported, b.reuse.reused, b.reuse.exported, b.reuse.parent], [agents.length, agents.length, 0, a.id]);
    const material = { kind: 'passphrase', passphrase: PASS, from: 'test' } as const;
    const out = path.join(tmp.dir('enc-out'), 'e.avsnap');
    await exportStoreSnapshot(dir, b.id, out, { material });
    const deep = await verifyArchive(out, { deep: true, decrypt: { passphrase: PASS } });
    assert.ok(
      deep.every((c) => c.ok),
      JSON.stringify(deep.filter((c) => !c.ok)),
    );
    const outA = path.join(tmp.dir('enc-out-a'), 'a.avsnap');
    await exportStoreSnapshot(dir, a.id, outA, { material });
    const d = await diffPaths(outA, out, { decrypt: { passphrase: PASS } });
    assert.equal(d.identical, true, JSON.stringify(d.summary));
  });
});
