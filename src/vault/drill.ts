/**
 * `agent-vault drill <snapshot>`: a timed restore drill.
 *
 * 1. integrity — every entry's checksums (and, encrypted, its authentication) are checked;
 * 2. decrypt   — (encrypted snapshots) the key opens the archive and its manifest authenticates;
 * 2b. references — every agent file passes the .af v2 schema and the validator's reference checks
 *                (the same as `agent-vault validate` and `verify --deep`);
 *                the restore reads it with the key (entries decrypted in memory: no decrypted copy
 *                is ever written; the secret values are not restored into the scratch database);
 * 3. restore   — into an embedded in-memory PGlite with Letta's schema (or a given empty scratch
 *                PostgreSQL database), in one transaction, with src/letta/restore.ts;
 *                RTO = drill start → restore committed, minus the time to prepare the empty scratch
 *                database (a real recovery restores into a Letta database that already has its schema);
 * 4. row-counts — per agent, messages / in-context messages / blocks / tools / passages / groups /
 *                files in the database equal the manifest's counts;
 * 5. in-context-messages — every id in agents.message_ids is a message of that agent, the first one a system message;
 * 6. vector-search — every probe recorded at backup (./probes.ts) runs as a pgvector query
 *                (`ORDER BY embedding <=> q, id LIMIT k`) and must return the recorded passage ids
 *                with the recorded distances; time to the first correct search is reported.
 * The report (JSON + Markdown) goes to `<vault>/drills/` (or --report-dir).
 * A snapshot of a store vault is read in place from the store (./store-read.ts), twice (checks,
 * then the restore), under the vault's shared lock: no archive is written.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../core/errors';
import { TOOL_VERSION } from '../core/version';
import { openArchive, type ArchiveReader, type Manifest } from '../format/archive';
import type { DecryptOptions } from '../format/crypto';
import { padTo, LETTA_PADDED_DIM } from '../format/vectors';
import type { Db, Queryable } from '../db/types';
import { openPg } from '../db/pg';
import { openPglite } from '../db/pglite';
import { createLettaSchema } from '../letta/ddl';
import { restoreAgents, type RestoreSource } from '../letta/restore';
import { compareProbe, decodeQuery, readProbes, type ProbeHit, type ProbeSet } from './probes';
import { DRILL_CHECKS, writeDrillReport, type DrillAgentResult, type DrillCheck, type DrillCheckName, type DrillReport } from './drill-report';
import { acquireSharedLock, DRILLS_DIR, findSnapshot, readIndex, snapshotPath, type SnapshotRecord, type VaultLock } from './vault';
import { acquirePlaceReaderLock, isStoreLocation, isStoreVault, openPlace, openPlaceRepo, openVaultRepo } from './store-vault';
import { isS3Location } from './remote/location';
import { RangeCache, rangeCacheBytesFromEnv } from './store/range-cache';
import { findStoreVaultSnapshot } from './store-read';
import { checkAgentFiles } from './verify';

export interface DrillOptions {
  /** Snapshot id, unique id prefix, "latest", or an archive path. */
  snapshot: string;
  /** The vault (needed for ids; without it `snapshot` must be a path). */
  vaultDir?: string;
  decrypt?: DecryptOptions;
  /** An empty scratch database to restore into (the caller closes it). Default: in-memory PGlite. */
  db?: Db;
  /** URL of an empty scratch PostgreSQL database. */
  databaseUrl?: string;
  /** The environment its libpq variables (PG*) come from (src/db/pg.ts; default none). */
  env?: NodeJS.ProcessEnv;
  /** Where to write the report; default `<vault>/drills` (or nowhere for a path without a vault). null: do not write. */
  reportDir?: string | null;
  onProgress?: (message: string) => void;
  /** Wait this long for a running backup/prune before refusing (default 0). */
  waitMs?: number;
}

const MAX_FAILURES = 50;

class Checks {
  readonly list: DrillCheck[] = [];
  set(name: DrillCheckName, ok: boolean, message: string, failures?: string[]): void {
    const c: DrillCheck = { name, ok, message };
    if (failures?.length) c.failures = failures.length > MAX_FAILURES ? [...failures.slice(0, MAX_FAILURES), `… and ${failures.length - MAX_FAILURES} more`] : failures;
    const i = this.list.findIndex((x) => x.name === name);
    if (i >= 0) this.list[i] = c;
    else this.list.push(c);
  }
  skip(name: DrillCheckName, message: string): void {
    this.list.push({ name, ok: true, skipped: true, message });
  }
  /** Marks every check not yet run as skipped (after a failure that stops the drill). */
  skipRest(why: string, except: DrillCheckName[] = []): void {
    for (const n of DRILL_CHECKS) if (!except.includes(n) && !this.list.some((c) => c.name === n)) this.skip(n, why);
    this.list.sort((a, b) => DRILL_CHECKS.indexOf(a.name) - DRILL_CHECKS.indexOf(b.name));
  }
}

function redactDbUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return `PostgreSQL ${u.host}${u.pathname}`;
  } catch {
    return 'PostgreSQL (scratch database)';
  }
}

async function prepareScratch(opts: DrillOptions): Promise<{ db: Db; own: boolean; target: string; schemaMs: number }> {
  const t = Date.now();
  if (opts.db) {
    await ensureEmptyLettaSchema(opts.db, 'the given scratch database');
    return { db: opts.db, own: false, target: (opts.db as { target?: string }).target ?? `${opts.db.kind} scratch database`, schemaMs: Date.now() - t };
  }
  if (opts.databaseUrl) {
    const db = await openPg({ url: opts.databaseUrl, env: opts.env });
    try {
      await ensureEmptyLettaSchema(db, redactDbUrl(opts.databaseUrl));
    } catch (e) {
      await db.close().catch(() => undefined);
      throw e;
    }
    return { db, own: true, target: redactDbUrl(opts.databaseUrl), schemaMs: Date.now() - t };
  }
  const db = await openPglite({ loadDump: await pgliteTemplate() });
  return { db, own: true, target: 'embedded PGlite (in memory)', schemaMs: Date.now() - t };
}

let template: Promise<Blob> | undefined;

/**
 * A dump of an in-memory PGlite with Letta's schema, made once per process: creating the schema
 * costs seconds in PGlite, loading the dump a fraction of that (later drills of a long-lived
 * process, e.g. the VS Code extension, start faster).
 */
function pgliteTemplate(): Promise<Blob> {
  template ??= (async () => {
    const db = await openPglite();
    try {
      await createLettaSchema(db);
      return await db.dump();
    } finally {
      await db.close();
    }
  })();
  template.catch(() => {
    template = undefined;
  });
  return template;
}

/** Creates Letta's schema when absent; refuses a database that already holds agents. */
async function ensureEmptyLettaSchema(db: Db, what: string): Promise<void> {
  const r = await db.query<{ t: string | null }>(`SELECT to_regclass('agents')::text AS t`);
  if (!r.rows[0]?.t) {
    await createLettaSchema(db);
    return;
  }
  const n = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM agents`);
  if (n.rows[0].n > 0) {
    throw new AgentVaultError('scratch-not-empty', `${what} already holds ${n.rows[0].n} agent(s); a drill restores only into an empty scratch database`, {
      kind: 'usage',
      hint: 'create a new empty database for drills (never point a drill at the live Letta database)',
    });
  }
}

// ---------------------------------------------------------------------------------------------
// checks against the restored database

interface AgentIds {
  manifest: Manifest['agents'][number];
  dbId: string;
}

async function countsOf(q: Queryable, agentId: string): Promise<Record<string, number>> {
  const r = await q.query<Record<string, number>>(
    `SELECT
       (SELECT count(*)::int FROM messages m WHERE m.agent_id = a.id AND NOT m.is_deleted) AS messages,
       CASE WHEN json_typeof(a.message_ids) = 'array' THEN json_array_length(a.message_ids) ELSE 0 END AS in_context_messages,
       (SELECT count(*)::int FROM blocks_agents b WHERE b.agent_id = a.id) AS blocks,
       (SELECT count(*)::int FROM tools_agents t WHERE t.agent_id = a.id) AS tools,
       (SELECT count(*)::int FROM archives_agents aa JOIN archival_passages p ON p.archive_id = aa.archive_id WHERE aa.agent_id = a.id AND NOT p.is_deleted) AS passages,
       (SELECT count(*)::int FROM groups g WHERE g.manager_agent_id = a.id OR EXISTS (SELECT 1 FROM groups_agents ga WHERE ga.group_id = g.id AND ga.agent_id = a.id)) AS groups,
       (SELECT count(DISTINCT f.id)::int FROM files f
          WHERE f.source_id IN (SELECT sa.source_id FROM sources_agents sa WHERE sa.agent_id = a.id
                                UNION SELECT fa.source_id FROM files_agents fa WHERE fa.agent_id = a.id)
             OR f.id IN (SELECT fa.file_id FROM files_agents fa WHERE fa.agent_id = a.id)) AS files
     FROM agents a WHERE a.id = $1`,
    [agentId],
  );
  if (!r.rows[0]) throw new AgentVaultError('drill', `agent ${agentId} is not in the restored database`);
  return r.rows[0];
}

async function checkRowCounts(db: Db, agents: AgentIds[], results: Map<string, DrillAgentResult>): Promise<{ ok: boolean; failures: string[] }> {
  const failures: string[] = [];
  const keys = ['messages', 'in_context_messages', 'blocks', 'tools', 'passages', 'groups', 'files'] as const;
  for (const a of agents) {
    let actual: Record<string, number>;
    try {
      actual = await countsOf(db, a.dbId);
    } catch (e) {
      failures.push(`agent ${a.manifest.id}: ${errorMessage(e)}`);
      continue;
    }
    const expected: Record<string, number> = {};
    for (const k of keys) {
      expected[k] = a.manifest.counts[k];
      if (actual[k] !== expected[k]) failures.push(`agent ${a.manifest.name ?? a.manifest.id} (${a.manifest.id}): ${k} ${actual[k]} in the database, ${expected[k]} in the manifest`);
    }
    results.get(a.manifest.id)!.counts = { expected, actual: Object.fromEntries(keys.map((k) => [k, actual[k]])) };
  }
  return { ok: failures.length === 0, failures };
}

async function checkInContext(db: Db, agents: AgentIds[]): Promise<{ ok: boolean; failures: string[]; total: number }> {
  const failures: string[] = [];
  let total = 0;
  for (const a of agents) {
    const r = await db.query<{ ids: unknown }>(`SELECT message_ids AS ids FROM agents WHERE id = $1`, [a.dbId]);
    const ids = Array.isArray(r.rows[0]?.ids) ? (r.rows[0].ids as unknown[]) : [];
    const who = `agent ${a.manifest.name ?? a.manifest.id} (${a.manifest.id})`;
    if (ids.some((x) => typeof x !== 'string')) {
      failures.push(`${who}: message_ids holds a value that is not a message id`);
      continue;
    }
    total += ids.length;
    if (ids.length === 0) continue;
    const found = await db.query<{ id: string; agent_id: string; role: string; is_deleted: boolean }>(`SELECT id, agent_id, role, is_deleted FROM messages WHERE id = ANY($1::text[])`, [ids]);
    const byId = new Map(found.rows.map((m) => [m.id, m]));
    ids.forEach((id, i) => {
      const m = byId.get(id as string);
      if (!m) failures.push(`${who}: in-context message ${i} (${String(id)}) does not exist`);
      else if (m.agent_id !== a.dbId) failures.push(`${who}: in-context message ${i} (${String(id)}) belongs to agent ${m.agent_id}`);
      else if (m.is_deleted) failures.push(`${who}: in-context message ${i} (${String(id)}) is marked deleted`);
    });
    const first = byId.get(ids[0] as string);
    if (first && first.role !== 'system') failures.push(`${who}: the first in-context message (${first.id}) has role "${first.role}", not "system"`);
  }
  return { ok: failures.length === 0, failures, total };
}

async function searchProbe(db: Db, agentDbId: string, metric: 'cosine' | 'l2', query: Float32Array, k: number): Promise<ProbeHit[]> {
  const op = metric === 'l2' ? '<->' : '<=>';
  const lit = `[${Array.from(padTo(query, LETTA_PADDED_DIM), (x) => (x === 0 ? '0' : String(x))).join(',')}]`;
  const r = await db.query<{ id: string; d: number }>(
    `SELECT p.id, (p.embedding ${op} $1::vector)::float8 AS d
       FROM archival_passages p JOIN archives_agents aa ON aa.archive_id = p.archive_id
      WHERE aa.agent_id = $2 AND NOT p.is_deleted AND p.embedding IS NOT NULL
      ORDER BY p.embedding ${op} $1::vector, p.id
      LIMIT $3`,
    [lit, agentDbId, k],
  );
  return r.rows.map((x) => ({ id: x.id, distance: Number(x.d) }));
}

async function checkProbes(
  db: Db,
  set: ProbeSet,
  agents: AgentIds[],
  results: Map<string, DrillAgentResult>,
  onFirstCorrect: () => void,
): Promise<{ ok: boolean; failures: string[]; total: number; passed: number }> {
  const failures: string[] = [];
  let total = 0;
  let passed = 0;
  const byManifestId = new Map(agents.map((a) => [a.manifest.id, a]));
  for (const ap of set.agents) {
    const a = byManifestId.get(ap.agent_id);
    if (!a) {
      failures.push(`probes name agent ${ap.agent_id}, which the snapshot does not hold`);
      continue;
    }
    let agentPassed = 0;
    for (const p of ap.probes) {
      total++;
      const q = decodeQuery(p.query, ap.dim, `probe ${p.id} of ${ap.agent_id}`);
      let got: ProbeHit[];
      try {
        got = await searchProbe(db, a.dbId, set.metric, q, set.top_k);
      } catch (e) {
        failures.push(`agent ${ap.agent_id} ${p.id}: the vector search failed: ${errorMessage(e)}`);
        continue;
      }
      const cmp = compareProbe(p, got);
      if (cmp.ok) {
        passed++;
        agentPassed++;
        onFirstCorrect();
      } else failures.push(`agent ${a.manifest.name ?? ap.agent_id} (${ap.agent_id}) ${p.id} (near passage ${p.source_passage_id}): ${cmp.problems.slice(0, 3).join('; ')}`);
    }
    results.get(ap.agent_id)!.probes = { total: ap.probes.length, passed: agentPassed };
  }
  return { ok: failures.length === 0, failures, total, passed };
}

// ---------------------------------------------------------------------------------------------

async function resolveSnapshot(opts: DrillOptions): Promise<{ file: string; rec: SnapshotRecord | null }> {
  if (opts.vaultDir) {
    const direct = await fsp.stat(opts.snapshot).then(
      (s) => s.isFile(),
      () => false,
    );
    let index;
    try {
      index = await readIndex(opts.vaultDir);
    } catch (e) {
      // an archive path needs no index: drill it even when vault.json is missing or damaged
      if (direct) return { file: path.resolve(opts.snapshot), rec: null };
      throw e;
    }
    if (direct && !index.snapshots.some((s) => s.id === opts.snapshot)) {
      const abs = path.resolve(opts.snapshot);
      const rec = index.snapshots.find((s) => path.resolve(snapshotPath(opts.vaultDir!, s)) === abs) ?? null;
      return { file: abs, rec };
    }
    const rec = findSnapshot(index, opts.snapshot, opts.vaultDir);
    return { file: snapshotPath(opts.vaultDir, rec), rec };
  }
  const ok = await fsp.stat(opts.snapshot).then(
    (s) => s.isFile(),
    () => false,
  );
  if (!ok) throw new AgentVaultError('usage', `${opts.snapshot} is not an archive file (a snapshot id needs its vault)`, { kind: 'usage', remedy: 'vault' });
  return { file: path.resolve(opts.snapshot), rec: null };
}

/**
 * Runs a drill and returns its report (also written to the report folder). A drill that fails
 * returns ok: false with the failed checks named; only a drill that cannot start (no such
 * snapshot, an encrypted snapshot without a key, a scratch database that is not empty) throws.
 */
export async function runDrill(opts: DrillOptions): Promise<DrillReport> {
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const progress = opts.onProgress ?? (() => undefined);
  if (opts.vaultDir && isStoreVault(opts.vaultDir) && !(await isFile(opts.snapshot))) {
    // a snapshot of the store, read in place under the vault's shared lock
    const shared = await acquireSharedLock(opts.vaultDir, { command: `drill ${opts.snapshot}`, waitMs: opts.waitMs });
    try {
      const repo = await openVaultRepo(opts.vaultDir, opts.decrypt);
      const s = await findStoreVaultSnapshot(repo, opts.vaultDir, opts.snapshot);
      return await drillLocked(opts, s.label, s.record, t0, startedAt, progress, s.open);
    } finally {
      await shared.release();
    }
  }
  if (opts.vaultDir && isS3Location(opts.vaultDir) && (await isStoreLocation(opts.vaultDir))) {
    // a snapshot of a store vault in object storage, read in place (ranged reads of its packs,
    // kept in a local cache the drill's reads share) under a reader lock in the bucket
    const place = await openPlace(opts.vaultDir);
    const cache = new RangeCache(rangeCacheBytesFromEnv(opts.env ?? process.env));
    try {
      const shared = await acquirePlaceReaderLock(place, { command: `drill ${opts.snapshot}`, waitMs: opts.waitMs });
      try {
        const repo = await openPlaceRepo(place, opts.decrypt);
        const s = await findStoreVaultSnapshot(repo, place.vault, opts.snapshot, cache);
        // the report is written where asked (the bucket is not written to): by default nowhere
        return await drillLocked({ ...opts, reportDir: opts.reportDir ?? null }, s.label, s.record, t0, startedAt, progress, s.open);
      } finally {
        await shared.release();
      }
    } finally {
      await cache.close();
      await place.close();
    }
  }
  const { file, rec } = await resolveSnapshot(opts);
  // a shared lock on the vault: prune waits for (or refuses during) the drill instead of deleting
  // the snapshot it reads
  let shared: VaultLock | undefined;
  if (
    opts.vaultDir &&
    (await fsp.stat(opts.vaultDir).then(
      (s) => s.isDirectory(),
      () => false,
    ))
  ) {
    shared = await acquireSharedLock(opts.vaultDir, { command: `drill ${rec?.id ?? path.basename(file)}`, waitMs: opts.waitMs });
  }
  try {
    return await drillLocked(opts, file, rec, t0, startedAt, progress);
  } finally {
    await shared?.release();
  }
}

async function isFile(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** `open`: a snapshot read otherwise than from the archive file (a store snapshot); `file` then only names it. */
async function drillLocked(
  opts: DrillOptions,
  file: string,
  rec: Pick<SnapshotRecord, 'id' | 'file' | 'created_at' | 'encrypted'> | null,
  t0: number,
  startedAt: string,
  progress: (m: string) => void,
  open?: () => Promise<ArchiveReader>,
): Promise<DrillReport> {
  if (
    !open &&
    !(await fsp.stat(file).then(
      (s) => s.isFile(),
      () => false,
    ))
  ) {
    throw new AgentVaultError('no-snapshot', `the archive ${file}${rec ? ` of snapshot ${rec.id}` : ''} is missing`, {
      location: { file },
      kind: 'failed',
      hint: 'run "agent-vault verify" and "agent-vault rebuild-index" to see what the vault holds',
    });
  }
  const checks = new Checks();
  const agentResults = new Map<string, DrillAgentResult>();
  const timings = {
    rto_ms: null as number | null,
    first_vector_search_ms: null as number | null,
    verify_ms: null as number | null,
    schema_ms: null as number | null,
    restore_ms: null as number | null,
    checks_ms: null as number | null,
  };
  let encrypted = rec?.encrypted ?? false;
  let createdAt = rec?.created_at ?? null;
  let target = opts.databaseUrl ? redactDbUrl(opts.databaseUrl) : opts.db ? 'the given scratch database' : 'embedded PGlite (in memory)';
  let error: { code: string; message: string } | null = null;
  let scratch: { db: Db; own: boolean } | undefined;
  let reader: ArchiveReader | undefined;

  try {
    // 1 + 2: integrity and decryption
    progress(`checking ${file}`);
    if (!open) {
      try {
        const peek = await openArchive(file, { verifyManifestOnly: true });
        encrypted = peek.encrypted;
        createdAt = peek.manifest.created_at;
        await peek.close();
      } catch (e) {
        checks.set('integrity', false, `the archive cannot be opened: ${errorMessage(e)}`);
        throw new StopDrill();
      }
    }
    if (encrypted && !opts.decrypt) {
      throw new AgentVaultError('no-key', `${file} is encrypted; give the passphrase or key to drill it`, { kind: 'usage', remedy: 'key', hint: 'AGENT_VAULT_PASSPHRASE is read too when it is set' });
    }
    try {
      reader = open ? await open() : await openArchive(file, { decrypt: encrypted ? { ...opts.decrypt, requireEncrypted: rec?.encrypted } : undefined });
    } catch (e) {
      const code = e instanceof AgentVaultError ? e.code : '';
      if (['wrong-key', 'tampered', 'not-encrypted', 'unsupported-encryption', 'encryption'].includes(code)) {
        checks.set('decrypt', false, errorMessage(e));
      } else checks.set('integrity', false, errorMessage(e));
      throw new StopDrill();
    }
    const results = await reader.verifyAll();
    const bad = results.filter((r) => !r.ok);
    if (bad.length) {
      checks.set(
        'integrity',
        false,
        `${bad.length} of ${results.length} entries are damaged${encrypted ? ' or fail authentication' : ''}: ${bad.map((b) => b.entry).join(', ')}`,
        bad.map((b) => b.error ?? b.entry),
      );
      throw new StopDrill();
    }
    checks.set('integrity', true, `${results.length} entries match their checksums${encrypted ? ' and authenticate' : ''}`);
    const manifest = reader.manifest;
    for (const a of manifest.agents) agentResults.set(a.id, { id: a.id, name: a.name });
    const probes = await readProbes(reader);
    if (encrypted) {
      checks.set(
        'decrypt',
        true,
        `decrypted with the ${manifest.encryption && (manifest.encryption as { kdf?: { name?: string } }).kdf?.name === 'raw' ? 'key file' : 'passphrase'}; the manifest authenticates`,
      );
    } else checks.skip('decrypt', 'the snapshot is not encrypted');
    const files = await checkAgentFiles(reader);
    const refProblems = [...files.problems];
    if (refProblems.length) {
      checks.set('references', false, `${refProblems.length} problem(s) in the agent files (schema or references)`, refProblems);
      throw new StopDrill();
    }
    checks.set('references', true, `${manifest.agents.length} agent file(s) pass the .af v2 schema and the reference checks`);
    await reader.close();
    reader = undefined;
    timings.verify_ms = Date.now() - t0;

    // 3: restore
    progress('preparing the scratch database');
    const prepared = await prepareScratch(opts);
    scratch = prepared;
    target = prepared.target;
    timings.schema_ms = prepared.schemaMs;
    const tRestore = Date.now();
    progress(`restoring into ${target}`);
    let idMap: Map<string, string>;
    try {
      idMap = await restoreInto(prepared.db, open ? { open } : file, manifest, encrypted ? opts.decrypt : undefined);
    } catch (e) {
      timings.restore_ms = Date.now() - tRestore;
      checks.set('restore', false, `the restore failed: ${errorMessage(e)}`);
      throw new StopDrill();
    }
    timings.restore_ms = Date.now() - tRestore;
    // what a real recovery takes: verify + decrypt + restore (preparing an empty scratch database is not part of it)
    timings.rto_ms = Date.now() - t0 - prepared.schemaMs;
    checks.set('restore', true, `${manifest.agents.length} agent(s) restored in one transaction`);
    const agents: AgentIds[] = manifest.agents.map((m) => ({ manifest: m, dbId: idMap.get(m.id) ?? m.id }));
    for (const a of agents) if (a.dbId !== a.manifest.id) agentResults.get(a.manifest.id)!.restored_id = a.dbId;

    // 4-6: checks
    const tChecks = Date.now();
    const counts = await checkRowCounts(prepared.db, agents, agentResults);
    checks.set(
      'row-counts',
      counts.ok,
      counts.ok
        ? `messages, in-context messages, blocks, tools, passages, groups and files of ${agents.length} agent(s) match the manifest`
        : `${counts.failures.length} count(s) differ from the manifest`,
      counts.failures,
    );
    const ctx = await checkInContext(prepared.db, agents);
    checks.set(
      'in-context-messages',
      ctx.ok,
      ctx.ok ? `all ${ctx.total} in-context message ids resolve to messages of their agent` : `${ctx.failures.length} in-context message reference(s) do not resolve`,
      ctx.failures,
    );
    if (!probes || probes.agents.length === 0) {
      checks.skip('vector-search', 'no vector probes were recorded (no passages with embeddings)');
    } else {
      const pr = await checkProbes(prepared.db, probes, agents, agentResults, () => {
        timings.first_vector_search_ms ??= Date.now() - t0 - prepared.schemaMs;
      });
      checks.set(
        'vector-search',
        pr.ok,
        pr.ok
          ? `${pr.passed}/${pr.total} probe searches (top-${probes.top_k}, ${probes.metric}) return the recorded passages`
          : `${pr.total - pr.passed} of ${pr.total} probe searches return other passages than recorded`,
        pr.failures,
      );
    }
    timings.checks_ms = Date.now() - tChecks;
  } catch (e) {
    if (!(e instanceof StopDrill)) {
      if (e instanceof AgentVaultError && (e.code === 'no-key' || e.code === 'scratch-not-empty' || e.code === 'no-snapshot' || e.code === 'usage' || e.code === 'no-vault')) {
        await cleanup();
        throw e;
      }
      error = { code: e instanceof AgentVaultError ? e.code : 'internal', message: errorMessage(e) };
    }
  }
  await cleanup();

  async function cleanup(): Promise<void> {
    await reader?.close().catch(() => undefined);
    if (scratch?.own) await scratch.db.close().catch(() => undefined);
    scratch = undefined;
  }

  checks.skipRest('not run: an earlier check failed', []);
  const failed = checks.list.filter((c) => !c.ok && !c.skipped).map((c) => c.name);
  const report: DrillReport = {
    format: 'agent-vault-drill-report',
    version: 1,
    snapshot: { id: rec?.id ?? null, file: opts.vaultDir && rec ? rec.file : file, created_at: createdAt, encrypted },
    target,
    started_at: startedAt,
    finished_at: new Date().toISOString(),
    ok: failed.length === 0 && !error,
    failed_checks: failed,
    checks: checks.list,
    timings: { ...timings, total_ms: Date.now() - t0 },
    agents: [...agentResults.values()],
    tool_version: TOOL_VERSION,
    error,
    files: null,
  };
  const dir = opts.reportDir === null ? undefined : (opts.reportDir ?? (opts.vaultDir ? path.join(opts.vaultDir, DRILLS_DIR) : undefined));
  if (dir) await writeDrillReport(dir, report, opts.vaultDir && !opts.reportDir ? opts.vaultDir : undefined);
  return report;
}

class StopDrill extends Error {}

/**
 * Restores the (plain) archive into the scratch database; returns manifest agent id → id in the
 * database.
 */
async function restoreInto(db: Db, source: RestoreSource, manifest: Manifest, decrypt: DecryptOptions | undefined): Promise<Map<string, string>> {
  // secrets stay out of the scratch database (restored redacted, as from a plain snapshot)
  const res = await restoreAgents(db, source, { onConflict: 'fail', decrypt, secrets: false });
  const map = new Map<string, string>();
  for (const a of manifest.agents) map.set(a.id, res.agentIds[a.id] ?? a.id);
  return map;
}
