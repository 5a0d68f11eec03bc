/**
 * `agent-vault rebuild-index --vault s3://…`: the bucket's index (`vault.json`) rebuilt from the
 * snapshot objects, under the bucket's lock. The archives are the truth, the index is a cache:
 * each archive is self-describing (its manifest names its agents, time, encryption), so a lost or
 * damaged index is recovered from the objects alone.
 *
 * Rules (the folder's `rebuildIndex` in ../reconcile.ts, in object storage):
 * - A damaged index object is copied to `vault.json.damaged-<time>` first (a new object; the
 *   damaged one is then replaced by the rebuilt index, never deleted without a copy).
 * - A listed snapshot whose object is gone leaves the index; one whose object fails the quick check
 *   (size, recorded SHA-256) stays listed and is reported as damaged.
 * - Every archive object the index does not list is downloaded (one at a time, into a scratch
 *   folder), verified (whole-file SHA-256 against the one recorded with the object, manifest and
 *   every entry's checksum) and listed; one that fails is reported and left where it is.
 * - Objects under snapshots/ that are not archives are reported and left alone. Nothing is deleted.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../../core/errors';
import { openArchive } from '../../format/archive';
import type { KdfDescription } from '../../format/crypto';
import { recordFromArchive, type RebuildIndexReport } from '../reconcile';
import { verifyArchive } from '../verify';
import { emptyIndex, newRunId, runLogRecord, SNAPSHOT_EXT, SNAPSHOTS_DIR, VAULT_INDEX, type SnapshotRecord, type VaultIndex } from '../vault';
import { appendStoreRunLog, readStoreIndex, writeStoreIndex } from './copy';
import { acquireRemoteLock } from './lock';
import { quickVerifyRemote } from './remote-vault';
import { fileSha256 } from '../../core/hash';
import type { ObjectStore } from './store';

export interface RemoteRebuildOptions {
  dryRun?: boolean;
  waitMs?: number;
  /** Scratch folder for the downloads (default: the OS temp folder). */
  tmpDir?: string;
  /** Remote lock timings (tests). */
  lock?: { settleMs?: number; heartbeatMs?: number; staleMs?: number };
  onProgress?: (msg: string) => void;
}

async function readIndexOrState(store: ObjectStore): Promise<{ index: VaultIndex; previous: RebuildIndexReport['previous']; raw: Buffer | null }> {
  try {
    const idx = await readStoreIndex(store);
    if (idx) return { index: idx, previous: 'ok', raw: null };
    return { index: emptyIndex(), previous: 'missing', raw: null };
  } catch (e) {
    if (e instanceof AgentVaultError && e.code === 'vault-index') return { index: emptyIndex(), previous: 'damaged', raw: await store.readBytes(VAULT_INDEX) };
    throw e;
  }
}

export async function rebuildRemoteIndex(store: ObjectStore, opts: RemoteRebuildOptions = {}): Promise<RebuildIndexReport> {
  // a location with neither an index nor any snapshot object is not a vault: refuse before locking
  let anything = (await store.head(VAULT_INDEX)) !== null;
  if (!anything)
    for await (const _o of store.list(`${SNAPSHOTS_DIR}/`)) {
      anything = true;
      break;
    }
  if (!anything) {
    throw new AgentVaultError('no-vault', `${store.location} is not a vault (it has no ${VAULT_INDEX} and no ${SNAPSHOTS_DIR}/ objects)`, { kind: 'usage', remedy: 'vault' });
  }
  const started = new Date();
  const runId = newRunId();
  const lock = await acquireRemoteLock(store, { command: opts.dryRun ? 'rebuild-index --dry-run' : 'rebuild-index', waitMs: opts.waitMs, ...opts.lock });
  const scratch = await fsp.mkdtemp(path.join(opts.tmpDir ?? os.tmpdir(), 'agent-vault-rebuild-'));
  let failure: unknown;
  let report: RebuildIndexReport | undefined;
  try {
    const { index, previous, raw } = await readIndexOrState(store);
    report = { vault: store.location, dryRun: !!opts.dryRun, previous, backup: null, kept: [], damaged: [], missing: [], adopted: [], rejected: [], swept: [], foreign: [] };
    if (previous === 'damaged') {
      const backup = `${VAULT_INDEX}.damaged-${new Date().toISOString().replace(/[:.]/g, '')}`;
      if (!opts.dryRun && raw) await store.writeBytes(backup, raw);
      report.backup = `${store.location}${backup}`;
    }
    const objects = new Map<string, { size: number; sha256Hex?: string }>();
    for await (const o of store.list(`${SNAPSHOTS_DIR}/`)) objects.set(o.key, { size: o.size });

    const still: SnapshotRecord[] = [];
    for (const rec of index.snapshots) {
      if (!objects.has(rec.file)) {
        report.missing.push({ id: rec.id, file: rec.file });
        continue;
      }
      still.push(rec);
      const why = await quickVerifyRemote(store, rec);
      if (why) report.damaged.push({ id: rec.id, reason: why });
      else report.kept.push(rec.id);
    }
    index.snapshots = still;

    const listedFiles = new Set(index.snapshots.map((s) => s.file));
    const ids = new Set(index.snapshots.map((s) => s.id));
    let newestKdf: { at: string; kdf: KdfDescription } | null = null;
    for (const key of [...objects.keys()].sort()) {
      if (listedFiles.has(key)) continue;
      const name = key.slice(SNAPSHOTS_DIR.length + 1);
      if (name.includes('/') || !name.endsWith(SNAPSHOT_EXT)) {
        report.foreign.push(key);
        continue;
      }
      opts.onProgress?.(`verifying ${key}`);
      const local = path.join(scratch, SNAPSHOTS_DIR, name);
      try {
        const got = await store.downloadFile(key, local);
        const head = await store.head(key);
        if (head?.sha256Hex && head.sha256Hex !== got.sha256Hex) {
          report.rejected.push({ file: key, reason: `its bytes have sha256 ${got.sha256Hex}, the object was stored with sha256 ${head.sha256Hex} (damaged or replaced)` });
          continue;
        }
        const checks = await verifyArchive(local, {});
        const bad = checks.filter((c) => !c.ok && c.name !== 'decrypt');
        if (bad.length) {
          report.rejected.push({ file: key, reason: bad.map((c) => `[${c.name}] ${c.message ?? 'failed'}`).join('; ') });
          continue;
        }
        const rec = await recordFromArchive(scratch, `${SNAPSHOTS_DIR}/${name}`);
        if (rec.sha256 !== (await fileSha256(local)).sha256) throw new AgentVaultError('checksum', `${key} changed while it was read`);
        if (ids.has(rec.id)) {
          report.rejected.push({ file: key, reason: `the index already lists another object as snapshot ${rec.id}` });
          continue;
        }
        if (rec.encrypted && (!newestKdf || rec.created_at > newestKdf.at)) {
          const r = await openArchive(local, { verifyManifestOnly: true });
          const kdf = (r.manifest.encryption as { kdf?: KdfDescription } | undefined)?.kdf;
          await r.close();
          if (kdf?.name === 'scrypt') newestKdf = { at: rec.created_at, kdf };
        }
        ids.add(rec.id);
        index.snapshots.push(rec);
        report.adopted.push(rec);
      } catch (e) {
        if (e instanceof AgentVaultError && /^s3-(auth|no-bucket)$/.test(e.code)) throw e;
        report.rejected.push({ file: key, reason: errorMessage(e) });
      } finally {
        await fsp.rm(local, { force: true });
      }
    }
    if ((!index.kdf || index.kdf.name !== 'scrypt') && newestKdf) index.kdf = newestKdf.kdf;
    if (!opts.dryRun) await writeStoreIndex(store, index);
  } catch (e) {
    failure = e;
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true }).catch(() => undefined);
  }
  try {
    if (!opts.dryRun) {
      const ok = !failure && !!report && !report.rejected.length && !report.damaged.length;
      const fields = report
        ? {
            previous: report.previous,
            adopted: report.adopted.map((a) => a.id),
            dropped: report.missing.map((m) => m.id),
            damaged: report.damaged.map((d) => d.id),
            rejected: report.rejected.map((r) => r.file),
          }
        : {};
      await appendStoreRunLog(
        store,
        runLogRecord(
          'rebuild-index',
          started,
          ok,
          { ...fields, error: failure ? { code: failure instanceof AgentVaultError ? failure.code : 'internal', message: errorMessage(failure) } : null },
          runId,
        ),
      ).catch(() => undefined);
    }
  } finally {
    await lock.release().catch(() => undefined);
  }
  if (failure) throw failure;
  return report!;
}
