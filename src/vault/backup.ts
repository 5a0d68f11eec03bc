/**
 * `agent-vault backup --config agent-vault.json`: one new snapshot in the vault.
 *
 * 1. keys are resolved first (a missing passphrase fails before any work);
 * 2. the vault lock is taken (a second run waits up to lock.waitSeconds, then refuses);
 * 3. temp files of interrupted runs are removed (this project's own temp-file names only); archives
 *    the index does not list are verified and listed again, or reported — never removed
 *    (./reconcile.ts: the archives are the truth, the index is a cache);
 * 4. the agents are exported (src/letta/export.ts) straight into the snapshot archive — encrypted
 *    as it is written with --encrypt (no plaintext copy anywhere), with the agents' secret values
 *    as `secrets/…` entries (encrypted archives only); the vector probes (./probes.ts) are
 *    recorded as the vectors are exported;
 * 5. `vault/probes.json` and the configured Qdrant collections are added; temp file + fsync +
 *    rename (the archive writer's);
 * 7. the index lists it (atomic rewrite) — only now is it a snapshot;
 * 8. optionally prune (only verified snapshots count, ./prune.ts); then the run log line and the webhook.
 * Any failure: nothing is listed, this run's temp file (and archive, if it was renamed into place)
 * is removed, the lock is released, the run log gets the reason, the webhook (if configured for
 * failures) is called, and the error is rethrown. A signal (the CLI calls `onAbortable`'s
 * function) does the same synchronously and logs the run as interrupted.
 */
import { appendFileSync, promises as fsp, readdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../core/errors';
import { isTempNameOf } from '../core/fs';
import { TOOL_VERSION } from '../core/version';
import type { ArchiveWriter, Manifest } from '../format/archive';
import type { Db } from '../db/types';
import type { ArchiveKey } from '../format/crypto';
import { openPg } from '../db/pg';
import { openPglite } from '../db/pglite';
import { exportAgents, secretsEntryName, type ExportReuse } from '../letta/export';
import { QdrantConnection } from '../qdrant/connection';
import { toManifestQdrant } from '../qdrant/archive';
import { backupCollectionsToSink, type ArchiveSink } from '../qdrant/backup';
import type { KeySources, VaultConfig } from './config';
import { resolveKeyMaterial, writingKey } from './config';
import { DEFAULT_PROBES_PER_AGENT, DEFAULT_TOP_K, probeRecorder, probeSet, PROBES_ENTRY, summariseProbes, type AgentProbes } from './probes';
import { pruneVault, type PruneResult } from './prune';
import { adoptUnlisted } from './reconcile';
import {
  acquireLock,
  appendRunLog,
  ensureVaultDirs,
  newRunId,
  newSnapshotId,
  readIndex,
  RUN_LOG,
  sweepTempFiles,
  SNAPSHOTS_DIR,
  SNAPSHOT_EXT,
  TMP_DIR,
  writeIndex,
  type SnapshotRecord,
  type VaultLock,
} from './vault';
import { postWebhook, redactUrl, wantsWebhook, type WebhookResult } from './webhook';
import { fileSha256 } from '../core/hash';

export interface BackupOptions {
  config: VaultConfig;
  /** Force encryption on (like `--encrypt`), whatever the config says. */
  encrypt?: boolean;
  keys?: KeySources;
  /** An open source database (the extension, tests); default: opened from config.source. */
  db?: Db;
  /** Wait for a running backup/prune this long (default: config lock.waitSeconds, else 0). */
  waitMs?: number;
  onProgress?: (message: string) => void;
  /** Called once the lock is held (tests use it to start a competing run). */
  onLocked?: (lock: VaultLock) => void | Promise<void>;
  /**
   * Receives a synchronous abort function for signal handlers: it removes this run's temp files
   * (never a listed snapshot), appends an "interrupted" line to the run log and releases the lock.
   */
  onAbortable?: (abortSync: (reason: string) => void) => void;
  env?: NodeJS.ProcessEnv;
  /**
   * Export into this writer instead of an archive file in the vault (a store vault's backup:
   * ./store-vault.ts). Given the path the archive would have; its `encrypted` stands for the
   * archive key (no key is derived). The snapshot record's `sha256` is then '' and `bytes` what
   * the writer's finish() reports.
   */
  sink?: (archivePath: string) => ArchiveWriter & { readonly encrypted: boolean };
  /**
   * With a sink that reuses unchanged agents from a parent snapshot (ArchiveWriter `reuse`): the
   * parent's probes of a reused agent (null: it has none), so the new snapshot's probes cover
   * every agent.
   */
  reusedProbes?: (agentId: string) => Promise<AgentProbes | null>;
  /** Read every agent from the database, reusing nothing from a parent snapshot (`backup --full`). */
  full?: boolean;
}

export interface BackupResult {
  snapshot: SnapshotRecord;
  path: string;
  duration_ms: number;
  warnings: string[];
  /** Temp files of interrupted runs that were removed (only this project's own temp-file names). */
  cleaned: string[];
  /** Archives the index did not list that verified and were listed again. */
  adopted: string[];
  /** Archives the index did not list that failed verification (left in place, reported). */
  rejected: Array<{ file: string; reason: string }>;
  pruned: PruneResult | null;
  webhook: WebhookResult | null;
  /** agents taken unchanged from a parent snapshot (store vaults) and agents read from the database */
  reuse: ExportReuse;
}

/** What the webhook receives (and the run log records, minus `vault`). */
export interface BackupEvent {
  event: 'backup.succeeded' | 'backup.failed';
  ok: boolean;
  vault: string;
  config: string | null;
  host: string;
  run_id: string;
  started_at: string;
  finished_at: string;
  duration_ms: number;
  snapshot: { id: string; created_at: string; bytes: number; agents: number; encrypted: boolean } | null;
  error: { code: string; message: string } | null;
  tool: { name: 'agent-vault'; version: string };
}

/** Opens the configured source database. */
export async function openSource(cfg: VaultConfig, env: NodeJS.ProcessEnv = process.env): Promise<Db> {
  const src = cfg.source;
  if (src.kind === 'pglite') {
    let ok: boolean;
    try {
      ok = (await fsp.readdir(src.dataDir)).length > 0;
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new AgentVaultError('db-open', `the PGlite database folder ${src.dataDir} does not exist or is empty`, {
        location: { file: src.dataDir },
        kind: 'failed',
        hint: 'check "source.dataDir" in the configuration',
      });
    }
    return openPglite({ dataDir: src.dataDir, schema: src.schema });
  }
  let url = src.url;
  if (src.urlEnv) {
    url = env[src.urlEnv];
    if (!url) throw new AgentVaultError('config', `environment variable ${src.urlEnv} (source.urlEnv) is not set`, { kind: 'usage' });
  }
  return openPg({ url, schema: src.schema, env });
}

export { secretsEntryName };

async function qdrantSection(cfg: VaultConfig, writer: ArchiveWriter, workDir: string, env: NodeJS.ProcessEnv): Promise<NonNullable<Manifest['qdrant']> | undefined> {
  const q = cfg.qdrant;
  if (!q) return undefined;
  const url = q.urlEnv ? env[q.urlEnv] : q.url;
  if (!url) throw new AgentVaultError('config', q.urlEnv ? `environment variable ${q.urlEnv} (qdrant.urlEnv) is not set` : '"qdrant" needs "url" or "urlEnv"', { kind: 'usage' });
  const apiKey = env[q.apiKeyEnv ?? 'QDRANT_API_KEY'] || undefined;
  const conn = new QdrantConnection({ url, apiKey });
  const section = await backupCollectionsToSink(plainSink(writer), conn, { collections: q.collections, points: q.points, workDir });
  return toManifestQdrant(section);
}

/**
 * The Qdrant backup checks that what an entry stored is what was downloaded; for an encrypted
 * archive the writer reports the ciphertext, so the plaintext is measured on the way in.
 */
function plainSink(writer: ArchiveWriter): ArchiveSink {
  return {
    async addStream(name: string, stream: NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array>) {
      const h = createHash('sha256');
      let size = 0;
      async function* measured(): AsyncGenerator<Buffer> {
        for await (const c of stream as AsyncIterable<Buffer | Uint8Array | string>) {
          const b = Buffer.isBuffer(c) ? c : typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
          h.update(b);
          size += b.length;
          yield b;
        }
      }
      const e = await writer.addStream(name, measured());
      return { name: e.name, size, sha256: h.digest('hex') };
    },
  };
}

/** Runs one backup. Throws AgentVaultError on failure (after logging it and calling the webhook). */
export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const cfg = opts.config;
  const env = opts.env ?? process.env;
  const vault = cfg.vault;
  const started = new Date();
  const runId = newRunId();
  const progress = opts.onProgress ?? (() => undefined);
  const warnings: string[] = [];
  let lock: VaultLock | undefined;
  let db: Db | undefined;
  let finalPath: string | undefined;
  let listed = false;
  /** The export renamed this run's archive into place (only then may a failure remove it). */
  let exported = false;
  let snapshot: SnapshotRecord | undefined;
  let cleaned: string[];
  let adopted: string[] = [];
  let rejected: Array<{ file: string; reason: string }> = [];
  let currentId: string | undefined;
  let pruned: PruneResult | null = null;
  let vaultReady = false;
  let lockedAt: string | null = null;
  let unlockedAt: string | null = null;
  const encrypt = opts.encrypt ?? cfg.encryption?.enabled ?? false;
  const includeSecrets = cfg.includeSecrets ?? true;

  const finish = async (error: unknown): Promise<WebhookResult | null> => {
    const finished = new Date();
    const err = error === undefined ? null : { code: error instanceof AgentVaultError ? error.code : 'internal', message: errorMessage(error) };
    const ev: BackupEvent = {
      event: err ? 'backup.failed' : 'backup.succeeded',
      ok: !err,
      vault,
      config: cfg.file ?? null,
      host: os.hostname(),
      run_id: runId,
      started_at: started.toISOString(),
      finished_at: finished.toISOString(),
      duration_ms: finished.getTime() - started.getTime(),
      snapshot: snapshot ? { id: snapshot.id, created_at: snapshot.created_at, bytes: snapshot.bytes, agents: snapshot.agents.length, encrypted: snapshot.encrypted } : null,
      error: err,
      tool: { name: 'agent-vault', version: TOOL_VERSION },
    };
    let hook: WebhookResult | null = null;
    if (wantsWebhook(cfg.webhook, err ? 'failure' : 'success')) {
      hook = await postWebhook(cfg.webhook!, ev, env);
      if (!hook.ok) warnings.push(`webhook ${redactUrl(cfg.webhook!.url)} failed: ${hook.error}`);
    }
    if (vaultReady) {
      await appendRunLog(vault, {
        run_id: runId,
        command: 'backup',
        started_at: ev.started_at,
        locked_at: lockedAt,
        unlocked_at: unlockedAt,
        finished_at: ev.finished_at,
        duration_ms: ev.duration_ms,
        ok: ev.ok,
        host: ev.host,
        pid: process.pid,
        snapshot: snapshot?.id ?? null,
        error: err,
        agents: snapshot?.agents.map((a) => a.id) ?? [],
        bytes: snapshot?.bytes ?? null,
        encrypted: encrypt,
        webhook: hook ? { ok: hook.ok, status: hook.status ?? null, error: hook.error ?? null } : null,
        pruned: pruned ? pruned.removed.map((s) => s.id) : null,
        adopted,
        rejected: rejected.map((r) => r.file),
      }).catch((e) => warnings.push(`cannot write the run log: ${errorMessage(e)}`));
    }
    return hook;
  };

  let finished = false;
  opts.onAbortable?.((reason: string) => {
    if (finished) return;
    finished = true;
    // only this run's own files: the archive writer's temp file of this snapshot and, if the
    // archive was renamed into place but not listed yet, the archive itself (this run wrote it)
    if (currentId && !listed) {
      const snapDir = path.join(vault, SNAPSHOTS_DIR);
      for (const n of (() => {
        try {
          return readdirSync(snapDir);
        } catch {
          return [] as string[];
        }
      })()) {
        if (n === `${currentId}${SNAPSHOT_EXT}` || isTempNameOf(n, `${currentId}${SNAPSHOT_EXT}`)) {
          try {
            rmSync(path.join(snapDir, n), { force: true });
          } catch {
            /* best effort */
          }
        }
      }
    }
    if (vaultReady) {
      const now = new Date();
      try {
        appendFileSync(
          path.join(vault, RUN_LOG),
          JSON.stringify({
            run_id: runId,
            command: 'backup',
            started_at: started.toISOString(),
            locked_at: lockedAt,
            unlocked_at: now.toISOString(),
            finished_at: now.toISOString(),
            duration_ms: now.getTime() - started.getTime(),
            ok: false,
            interrupted: true,
            host: os.hostname(),
            pid: process.pid,
            snapshot: listed ? (snapshot?.id ?? currentId ?? null) : null,
            error: { code: 'interrupted', message: `backup interrupted by ${reason}${listed ? '' : '; no snapshot was written'}` },
            agents: [],
            bytes: null,
            encrypted: encrypt,
          }) + '\n',
          { mode: 0o600 },
        );
      } catch {
        /* best effort */
      }
    }
    lock?.releaseSync();
  });

  try {
    // 1. keys (before anything else)
    let encryption: { key: ArchiveKey } | undefined;
    const material = encrypt ? await resolveKeyMaterial(cfg.encryption, { ...opts.keys, env }) : undefined;
    // 2. lock
    await ensureVaultDirs(vault);
    vaultReady = true;
    lock = await acquireLock(vault, { command: 'backup', waitMs: opts.waitMs ?? (cfg.lock?.waitSeconds ?? 0) * 1000 });
    lockedAt = new Date().toISOString();
    await opts.onLocked?.(lock);
    // 3. temp files of interrupted runs (this project's own names only); archives the index does
    //    not list are verified and listed again, or reported — never removed
    const index = await readIndex(vault, { allowMissing: true });
    cleaned = await sweepTempFiles(vault);
    if (cleaned.length) progress(`removed temp files of an interrupted run: ${cleaned.join(', ')}`);
    const adoption = await adoptUnlisted(vault, index);
    adopted = adoption.adopted.map((s) => s.id);
    rejected = adoption.rejected;
    if (adopted.length) {
      await writeIndex(vault, index);
      warnings.push(`the index did not list ${adopted.length} snapshot archive(s); they verified and are listed again: ${adopted.join(', ')}`);
    }
    for (const r of rejected) warnings.push(`${r.file} is not in the index and fails verification; it was left in place: ${r.reason}`);
    if (material && !opts.sink) {
      const k = await writingKey(material, index.kdf, cfg.encryption?.scrypt);
      encryption = { key: k.key };
      if (k.kdf.name === 'scrypt' && (index.kdf?.name !== 'scrypt' || index.kdf.salt !== k.kdf.salt)) index.kdf = k.kdf;
    }
    // 4. export straight into the snapshot (encrypted as it is written: no plaintext copy),
    //    probes recorded on the way; 5. probes and Qdrant collections added
    db = opts.db ?? (await openSource(cfg, env));
    const at = new Date();
    const id = newSnapshotId(at);
    currentId = id;
    finalPath = path.join(vault, SNAPSHOTS_DIR, `${id}${SNAPSHOT_EXT}`);
    progress(
      opts.sink ? `exporting the agents straight into the store${encrypt ? ' (encrypted)' : ''}` : `writing ${finalPath}${encryption ? ' (encrypted)' : ''}: exporting the agents straight into it`,
    );
    const probeOpts = { perAgent: cfg.probes?.perAgent, topK: cfg.probes?.topK, metric: cfg.probes?.metric };
    const recorded: AgentProbes[] = [];
    let collections: string[] = [];
    let probeCount = 0;
    const res = await exportAgents(db, {
      select: cfg.agents ?? { all: true },
      organizationId: cfg.organizationId,
      out: finalPath,
      writer: opts.sink?.(finalPath),
      createdAt: at.toISOString(),
      encryption,
      secrets: includeSecrets,
      lettaEncryptionKey: env.LETTA_ENCRYPTION_KEY || undefined,
      onProgress: (e) => {
        if (e.phase === 'warning' && e.message) warnings.push(e.message);
        else if (e.phase === 'agent') progress(`agent ${e.index}/${e.total}: ${e.name ?? e.agentId}`);
      },
      onAgentVectors: (ctx) => probeRecorder(ctx, probeOpts, (p) => void (p && recorded.push(p))),
      // a reused agent's probes are the parent's (its vectors are the same; the key covers the probe options)
      onAgentReused: async (m) => {
        if (!opts.reusedProbes) throw new AgentVaultError('internal', `agent ${m.id} was taken from a parent snapshot, and its probes cannot be read`);
        const p = await opts.reusedProbes(m.id);
        if (p) recorded.push(p);
      },
      changeKeyContext: JSON.stringify(['vault-backup-probes-1', probeOpts.perAgent ?? DEFAULT_PROBES_PER_AGENT, probeOpts.topK ?? DEFAULT_TOP_K, probeOpts.metric ?? 'cosine']),
      extraEntries: async (w) => {
        const probes = probeSet(recorded, probeOpts);
        probeCount = summariseProbes(probes).count;
        await w.addJson(PROBES_ENTRY, probes);
        const qdrant = await qdrantSection(cfg, w, path.join(vault, TMP_DIR), env);
        collections = ((qdrant?.collections ?? []) as Array<{ name?: unknown }>).map((c) => String(c.name ?? ''));
        return { probes: summariseProbes(probes), ...(qdrant ? { qdrant } : {}), vault: { snapshot_id: id, run_id: runId } };
      },
    });
    exported = true;
    if (!opts.db) {
      await db.close();
      db = undefined;
    }
    const record: SnapshotRecord = {
      id,
      file: `${SNAPSHOTS_DIR}/${id}${SNAPSHOT_EXT}`,
      created_at: res.manifest.created_at,
      bytes: res.bytes,
      sha256: opts.sink ? '' : (await fileSha256(finalPath)).sha256,
      encrypted: opts.sink ? encrypt : !!encryption,
      agents: res.manifest.agents.map((a) => ({ id: a.id, name: a.name, counts: a.counts })),
      collections,
      probes: probeCount,
      secrets: res.secrets > 0,
      tool_version: TOOL_VERSION,
    };
    // 7. list it
    index.snapshots.push(record);
    await writeIndex(vault, index);
    listed = true;
    snapshot = { ...record, duration_ms: Date.now() - started.getTime() };
    // 8. prune
    if (cfg.retention?.pruneAfterBackup) {
      const { pruneAfterBackup: _p, ...policy } = cfg.retention;
      pruned = await pruneVault(vault, { policy, locked: true, noRunLog: true });
    }
    if (pruned) {
      for (const u of pruned.unverified) warnings.push(`prune: snapshot ${u.id} fails verification and was kept (not counted for retention): ${u.reason}`);
      for (const e of pruned.deleteErrors) warnings.push(`prune: could not delete ${e}`);
    }
    await lock.release();
    unlockedAt = new Date().toISOString();
    lock = undefined;
    finished = true;
    const webhook = await finish(undefined);
    return { snapshot, path: finalPath, duration_ms: Date.now() - started.getTime(), warnings, cleaned, adopted, rejected, pruned, webhook, reuse: res.reuse };
  } catch (e) {
    finished = true;
    // only the archive this run wrote (the writer removes its own temp file on failure)
    if (finalPath && exported && !listed) await fsp.rm(finalPath, { force: true }).catch(() => undefined);
    if (db && !opts.db) await db.close().catch(() => undefined);
    if (lock) {
      await lock.release();
      unlockedAt = new Date().toISOString();
    }
    const err = e instanceof AgentVaultError ? e : new AgentVaultError('backup-failed', `backup failed: ${errorMessage(e)}`, { cause: e });
    const hook = await finish(err);
    (err as AgentVaultError & { webhook?: WebhookResult | null; warnings?: string[] }).webhook = hook;
    (err as AgentVaultError & { warnings?: string[] }).warnings = warnings;
    throw err;
  }
}
