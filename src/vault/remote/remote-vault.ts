/**
 * Vault commands on a vault in object storage (`s3://bucket/prefix`), built on the same vault
 * code as a local folder:
 *
 * - backup: the snapshot is written by the ordinary backup into a fresh local staging vault (same
 *   export, probes, encryption with the remote vault's scrypt salt), then uploaded (streaming
 *   multipart, SHA-256 checked), then listed in the remote index — written last, under the remote
 *   lock — and the run logged in the remote `runs.jsonl`. Retention then runs remotely.
 * - prune: the retention plan over the snapshots whose objects pass the quick check (present, the
 *   recorded size and SHA-256): a snapshot failing it is kept and reported, never counted; the
 *   index is written before any object is deleted.
 * - status: the ordinary status over the remote index, run log and drill reports, with the
 *   snapshots' presence taken from a listing of the bucket.
 * - fetchSnapshot: one snapshot downloaded into a local file and checked against the index's
 *   SHA-256 — what `restore`, `drill`, `inspect` and `diff` read from (`s3://…#<snapshot>`).
 *
 * Nothing here deletes an object it did not decide to delete in this run (prune) or write in
 * this run (a failed upload is aborted by the SDK before it becomes visible).
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../../core/errors';
import { TOOL_VERSION } from '../../core/version';
import { runBackup, type BackupOptions, type BackupResult } from '../backup';
import { postWebhook, wantsWebhook } from '../webhook';
import type { RetentionPolicy } from '../retention';
import { planPrune } from '../prune';
import type { StatusPolicy } from '../config';
import { vaultStatus, type VaultStatus } from '../status';
import { verifyArchive, type SnapshotVerifyResult, type VerifyCheck, type VerifyReport } from '../verify';
import type { DecryptOptions } from '../../format/crypto';
import {
  emptyIndex,
  findSnapshot,
  newRunId,
  runLogRecord,
  readIndex,
  readRunLog,
  RUN_LOG,
  SNAPSHOT_EXT,
  SNAPSHOTS_DIR,
  DRILLS_DIR,
  VAULT_INDEX,
  type RunLogRecord,
  type SnapshotRecord,
  type VaultIndex,
} from '../vault';
import { appendStoreRunLog, readStoreIndex, writeStoreIndex } from './copy';
import { acquireRemoteLock, type RemoteLock } from './lock';
import type { ObjectStore } from './store';
import { fileSha256 } from '../../core/hash';

export interface RemoteBackupResult extends BackupResult {
  remote: string;
}

/** The remote index, or an empty one for a new vault. */
async function remoteIndex(store: ObjectStore, allowMissing: boolean): Promise<VaultIndex> {
  const idx = await readStoreIndex(store);
  if (idx) return idx;
  if (allowMissing) return emptyIndex();
  throw new AgentVaultError('no-vault', `${store.location} is not a vault (it has no ${VAULT_INDEX})`, {
    kind: 'usage',
    hint: 'run "agent-vault backup" with this location as "vault", or "agent-vault vault copy <folder> <location>"',
  });
}

/**
 * Quick check of a listed snapshot in the store: present with the recorded size and SHA-256. The
 * SHA-256 is the one stored with the object by the upload (object metadata, one HEAD request);
 * an object without it (replaced by another writer, or a folder's file) is read through once and
 * hashed, so a damaged or replaced object never passes for the snapshot the index records.
 */
export async function quickVerifyRemote(store: ObjectStore, rec: SnapshotRecord, opts: { readThrough?: boolean } = {}): Promise<string | null> {
  const head = await store.head(rec.file);
  if (!head) return `${rec.file} is missing`;
  if (typeof rec.bytes === 'number' && head.size !== rec.bytes) return `${rec.file} is ${head.size} bytes, the index records ${rec.bytes}`;
  if (!rec.sha256) return null;
  if (head.sha256Hex) {
    return head.sha256Hex === rec.sha256 ? null : `${rec.file} was stored with sha256 ${head.sha256Hex}, the index records ${rec.sha256} (damaged or replaced)`;
  }
  if (opts.readThrough === false) return null;
  const sha = await objectSha256Hex(store, rec.file);
  return sha === rec.sha256 ? null : `${rec.file} has sha256 ${sha}, the index records ${rec.sha256} (damaged or replaced)`;
}

/** The SHA-256 of an object's bytes, read through once (nothing written to disk). */
export async function objectSha256Hex(store: ObjectStore, key: string): Promise<string> {
  const h = createHash('sha256');
  const body = await store.readStream(key);
  try {
    for await (const c of body) h.update(c as Buffer);
  } catch (e) {
    throw e instanceof AgentVaultError ? e : new AgentVaultError('s3-io', `reading ${store.location}${key} failed: ${errorMessage(e)}`, { kind: 'connection', cause: e });
  }
  return h.digest('hex');
}

export interface RemotePruneResult {
  dryRun: boolean;
  removed: SnapshotRecord[];
  kept: SnapshotRecord[];
  unverified: Array<{ id: string; file: string; reason: string }>;
  freedBytes: number;
  deleteErrors: string[];
}

async function pruneRemoteLocked(store: ObjectStore, policy: RetentionPolicy, dryRun: boolean): Promise<RemotePruneResult> {
  const index = await remoteIndex(store, false);
  const { removed, kept, unverified } = await planPrune(index.snapshots, policy, (s) => quickVerifyRemote(store, s));
  const result: RemotePruneResult = { dryRun, removed, kept, unverified, freedBytes: removed.reduce((n, s) => n + s.bytes, 0), deleteErrors: [] };
  if (dryRun || !removed.length) return result;
  index.snapshots = kept;
  await writeStoreIndex(store, index);
  for (const s of removed) {
    try {
      await store.delete(s.file);
    } catch (e) {
      result.deleteErrors.push(`${s.file}: ${errorMessage(e)}`);
    }
  }
  return result;
}

/** Retention on a remote vault (under its lock unless `lock` is given). */
export async function pruneRemote(
  store: ObjectStore,
  policy: RetentionPolicy,
  opts: { dryRun?: boolean; waitMs?: number; lock?: RemoteLock | null; lockTimings?: { settleMs?: number } } = {},
): Promise<RemotePruneResult> {
  if (opts.lock) return pruneRemoteLocked(store, policy, !!opts.dryRun);
  await remoteIndex(store, false);
  const started = new Date();
  const lock = await acquireRemoteLock(store, { command: opts.dryRun ? 'prune --dry-run' : 'prune', waitMs: opts.waitMs, ...opts.lockTimings });
  try {
    const r = await pruneRemoteLocked(store, policy, !!opts.dryRun);
    if (!opts.dryRun) {
      await appendStoreRunLog(store, runLogRecord('prune', started, true, { removed: r.removed.map((s) => s.id), kept: r.kept.length, unverified: r.unverified.map((u) => u.id) })).catch(
        () => undefined,
      );
    }
    return r;
  } catch (e) {
    if (!opts.dryRun) {
      await appendStoreRunLog(store, runLogRecord('prune', started, false, { error: { code: e instanceof AgentVaultError ? e.code : 'internal', message: errorMessage(e) } })).catch(() => undefined);
    }
    throw e;
  } finally {
    await lock.release();
  }
}

/**
 * A backup into a remote vault. The options are `runBackup`'s, with `config.vault` an s3://
 * location. The webhook reports the outcome of the whole run (upload included).
 */
export async function runRemoteBackup(
  store: ObjectStore,
  opts: BackupOptions & {
    lockTimings?: { settleMs?: number; heartbeatMs?: number };
    stagingRoot?: string;
    /** Cancels the run (an interrupt): an upload in flight is aborted, nothing is listed, the lock is released. */ signal?: AbortSignal;
  },
): Promise<RemoteBackupResult> {
  const cfg = opts.config;
  const started = new Date();
  const lock = await acquireRemoteLock(store, { command: 'backup', waitMs: opts.waitMs ?? (cfg.lock?.waitSeconds ?? 0) * 1000, ...opts.lockTimings });
  const staging = await fsp.mkdtemp(path.join(opts.stagingRoot ?? os.tmpdir(), 'agent-vault-staging-'));
  let result: BackupResult | undefined;
  let failure: unknown;
  let listed = false;
  try {
    const index = await remoteIndex(store, true);
    // the staging vault starts with the remote vault's scrypt salt, so one key serves both
    await fsp.writeFile(path.join(staging, VAULT_INDEX), JSON.stringify({ ...emptyIndex(), kdf: index.kdf ?? null }, null, 2) + '\n');
    const { pruneAfterBackup: _p, ...policy } = cfg.retention ?? {};
    result = await runBackup({ ...opts, config: { ...cfg, vault: staging, retention: undefined, webhook: undefined } });
    if (opts.signal?.aborted) throw new AgentVaultError('interrupted', `the backup into ${store.location} was interrupted before its upload; nothing was uploaded`);
    const rec = result.snapshot;
    const sha = (await fileSha256(result.path)).sha256;
    if (sha !== rec.sha256) throw new AgentVaultError('checksum', `${result.path} changed after it was written (sha256 ${sha}, recorded ${rec.sha256}); not uploaded`);
    opts.onProgress?.(`uploading ${rec.file} (${rec.bytes} bytes) to ${store.location}`);
    await store.uploadFile(rec.file, result.path, { sha256Hex: sha, signal: opts.signal });
    const head = await store.head(rec.file);
    if (!head || head.size !== rec.bytes || (head.sha256Hex && head.sha256Hex !== sha)) {
      throw new AgentVaultError('checksum', `${store.location}: ${rec.file} arrived as ${head ? `${head.size} bytes` : 'nothing'}, expected ${rec.bytes} bytes with sha256 ${sha}`);
    }
    const stagedIndex = await readIndex(staging);
    index.kdf ??= stagedIndex.kdf ?? null;
    index.snapshots.push(rec);
    await writeStoreIndex(store, index);
    listed = true;
    if (cfg.retention?.pruneAfterBackup) {
      const pr = await pruneRemote(store, policy, { lock });
      for (const u of pr.unverified) result.warnings.push(`prune: snapshot ${u.id} fails verification and was kept (not counted for retention): ${u.reason}`);
      for (const e of pr.deleteErrors) result.warnings.push(`prune: could not delete ${e}`);
    }
  } catch (e) {
    failure = e;
  } finally {
    // the staging run's own log line goes to the remote run log, with the upload's outcome
    const local = (await readRunLog(staging).catch(() => [] as RunLogRecord[])).at(-1);
    const rec: RunLogRecord = {
      ...(local ?? { run_id: newRunId(), command: 'backup', host: os.hostname(), pid: process.pid, started_at: started.toISOString() }),
      finished_at: new Date().toISOString(),
      duration_ms: Date.now() - started.getTime(),
      ok: !failure,
      snapshot: listed ? (result?.snapshot.id ?? null) : null,
      error: failure ? { code: failure instanceof AgentVaultError ? failure.code : 'internal', message: errorMessage(failure) } : null,
      remote: store.location,
    } as RunLogRecord;
    await appendStoreRunLog(store, rec).catch(() => undefined);
    await lock.release().catch(() => undefined);
    await fsp.rm(staging, { recursive: true, force: true }).catch(() => undefined);
  }
  if (cfg.webhook) {
    if (wantsWebhook(cfg.webhook, failure ? 'failure' : 'success')) {
      const hook = await postWebhook(
        cfg.webhook,
        {
          event: failure ? 'backup.failed' : 'backup.succeeded',
          ok: !failure,
          vault: store.location,
          config: cfg.file ?? null,
          host: os.hostname(),
          run_id: newRunId(),
          started_at: started.toISOString(),
          finished_at: new Date().toISOString(),
          duration_ms: Date.now() - started.getTime(),
          snapshot:
            listed && result
              ? { id: result.snapshot.id, created_at: result.snapshot.created_at, bytes: result.snapshot.bytes, agents: result.snapshot.agents.length, encrypted: result.snapshot.encrypted }
              : null,
          error: failure ? { code: failure instanceof AgentVaultError ? failure.code : 'internal', message: errorMessage(failure) } : null,
          tool: { name: 'agent-vault', version: TOOL_VERSION },
        },
        opts.env ?? process.env,
      );
      if (!hook.ok && result) result.warnings.push(`webhook failed: ${hook.error}`);
    }
  }
  if (failure) throw failure;
  return { ...result!, path: `${store.location}${result!.snapshot.file}`, remote: store.location };
}

/** Status of a remote vault: the ordinary rules over its index, run log and drill reports. */
/** `readThrough: false`: objects without a recorded SHA-256 are not read through (a status polled often, as the extension's status bar does). */
export async function remoteVaultStatus(store: ObjectStore, policy: StatusPolicy = {}, opts: { now?: Date; readThrough?: boolean } = {}): Promise<VaultStatus> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-vault-status-'));
  try {
    const index = await remoteIndex(store, false);
    await fsp.writeFile(path.join(dir, VAULT_INDEX), JSON.stringify(index));
    const runs = await store.readBytes(RUN_LOG);
    if (runs) await fsp.writeFile(path.join(dir, RUN_LOG), runs);
    await fsp.mkdir(path.join(dir, DRILLS_DIR));
    for await (const o of store.list(`${DRILLS_DIR}/`)) {
      if (!o.key.endsWith('.json')) continue;
      const b = await store.readBytes(o.key);
      if (b) await fsp.writeFile(path.join(dir, DRILLS_DIR, path.basename(o.key)), b);
    }
    const present = new Set<string>();
    for await (const o of store.list(`${SNAPSHOTS_DIR}/`)) present.add(o.key);
    const s = await vaultStatus(dir, policy, { now: opts.now, present: (rec) => present.has(rec.file), label: store.location });
    // a present object must also be the snapshot the index records (size and stored SHA-256)
    s.damaged = [];
    for (const rec of index.snapshots) {
      if (!present.has(rec.file)) continue;
      const why = await quickVerifyRemote(store, rec, { readThrough: opts.readThrough });
      if (why) s.damaged.push({ id: rec.id, file: rec.file, reason: why });
    }
    // archives in the bucket that the index does not list (an upload whose run was cut short)
    const listedFiles = new Set(index.snapshots.map((r) => r.file));
    s.unlisted = [...present].filter((k) => !listedFiles.has(k) && k.endsWith(SNAPSHOT_EXT)).sort();
    if (s.unlisted.length) {
      if (s.level === 'ok') s.level = 'warning';
      s.warnings.push(`${s.unlisted.length} archive(s) in snapshots/ are not in the index: ${s.unlisted.join(', ')}; "agent-vault rebuild-index" verifies and lists them`);
    }
    if (s.damaged.length) {
      s.level = 'error';
      s.warnings.push(
        `${s.damaged.length} listed snapshot(s) fail the quick check: ${s.damaged.map((d) => `${d.id} (${d.reason})`).join('; ')}; prune keeps them and does not count them; run "agent-vault verify"`,
      );
    }
    return s;
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** Downloads one snapshot (by id or unique prefix) and checks it against the index's SHA-256. */
export async function fetchSnapshot(store: ObjectStore, ref: string, destDir: string): Promise<{ path: string; record: SnapshotRecord }> {
  const index = await remoteIndex(store, false);
  const rec = findSnapshot(index, ref, store.location);
  const dest = path.join(destDir, path.basename(rec.file));
  const got = await store.downloadFile(rec.file, dest);
  if (got.sha256Hex !== rec.sha256) {
    await fsp.rm(dest, { force: true });
    throw new AgentVaultError('checksum', `${store.location}: ${rec.file} has sha256 ${got.sha256Hex} but the index records ${rec.sha256}; the download was removed`, {
      hint: 'run "agent-vault vault copy" from another copy, or "agent-vault verify" on the vault',
    });
  }
  return { path: dest, record: rec };
}

/**
 * `verify` on a remote vault: every listed snapshot is downloaded (one at a time, into a temp
 * folder removed afterwards) and verified exactly as in a folder — size and SHA-256 against the
 * index, manifest, every entry's checksum, decryptability; `deep` reads everything through.
 * Objects under snapshots/ that the index does not list are reported, never touched.
 */
export async function verifyRemote(
  store: ObjectStore,
  opts: { deep?: boolean; decrypt?: DecryptOptions; only?: string[]; onSnapshot?: (r: SnapshotVerifyResult) => void } = {},
): Promise<VerifyReport> {
  const started = Date.now();
  const index = await remoteIndex(store, false);
  const wanted = opts.only?.length ? opts.only.map((r) => findSnapshot(index, r, store.location)) : index.snapshots;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-vault-verify-'));
  const results: SnapshotVerifyResult[] = [];
  try {
    for (const rec of wanted) {
      let checks: VerifyCheck[];
      const quick = await quickVerifyRemote(store, rec);
      if (quick && !(await store.head(rec.file))) checks = [{ name: 'file', ok: false, message: quick }];
      else {
        const local = path.join(dir, path.basename(rec.file));
        await store.downloadFile(rec.file, local);
        try {
          checks = await verifyArchive(local, { deep: opts.deep, decrypt: opts.decrypt, rec });
        } finally {
          await fsp.rm(local, { force: true });
        }
      }
      const r: SnapshotVerifyResult = { id: rec.id, file: `${store.location}${rec.file}`, encrypted: rec.encrypted, ok: checks.every((c) => c.ok), checks };
      results.push(r);
      opts.onSnapshot?.(r);
    }
    const listed = new Set(index.snapshots.map((s) => s.file));
    const unlisted: string[] = [];
    for await (const o of store.list(`${SNAPSHOTS_DIR}/`)) if (!listed.has(o.key)) unlisted.push(o.key);
    return { vault: store.location, deep: !!opts.deep, ok: results.every((r) => r.ok), snapshots: results, unlisted, leftovers: [], foreign: [], duration_ms: Date.now() - started };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
