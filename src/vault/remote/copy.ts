/**
 * `agent-vault vault copy <from> <to>`: copies snapshots between vaults (local folder ↔ S3,
 * S3 ↔ S3, folder ↔ folder), skipping what the target already has and verifying what it copies.
 * The 3-2-1 rule in one cron line:
 *
 *   agent-vault vault copy ./vault s3://offsite-bucket/agents
 *
 * Rules (docs/VAULT.md "Copying vaults"):
 * - The target is written under its exclusive lock; the source is only read.
 * - A snapshot the target's index already lists with the same SHA-256 is skipped; one it lists
 *   with a different SHA-256 is a conflict: reported, never overwritten.
 * - An archive object the target holds but does not list (an earlier copy interrupted before its
 *   index was written) is adopted when its SHA-256 matches the source, else reported; never
 *   removed or replaced.
 * - Every copied archive's SHA-256 is checked against the source index's record before upload
 *   (the bytes read are the bytes sent) and after it (size and recorded SHA-256 at the target).
 * - The target's index is written last, so a copy killed at any point leaves the target vault as
 *   it was plus at most unlisted archives that the next copy adopts.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../../core/errors';
import { acquireLock, emptyIndex, newRunId, parseIndexText, RUN_LOG, runLogRecord, VAULT_INDEX, type RunLogRecord, type SnapshotRecord, type VaultIndex } from '../vault';
import { acquireRemoteLock } from './lock';
import { LocalStore, type ObjectStore } from './store';
import { fileSha256 } from '../../core/hash';

export interface CopyOptions {
  /** Only these snapshots (ids or unique id prefixes); default: all. */
  snapshots?: string[];
  /** List what would be copied, change nothing. */
  dryRun?: boolean;
  /** Wait this long for the target's lock (default 0). */
  waitMs?: number;
  /** Scratch folder for S3 → S3 copies (default: the OS temp folder). */
  tmpDir?: string;
  onProgress?: (e: { snapshot: string; action: CopyAction; bytes: number }) => void;
  /** Remote lock timings (tests). */
  lock?: { settleMs?: number; heartbeatMs?: number; staleMs?: number };
}

export type CopyAction = 'copied' | 'skipped' | 'adopted' | 'conflict' | 'missing-at-source' | 'would-copy';

export interface CopyResult {
  from: string;
  to: string;
  items: Array<{ snapshot: string; action: CopyAction; bytes: number; detail?: string }>;
  copied: number;
  skipped: number;
  adopted: number;
  conflicts: number;
  missing: number;
  bytes: number;
  ok: boolean;
}

export async function readStoreIndex(store: ObjectStore): Promise<VaultIndex | null> {
  const b = await store.readBytes(VAULT_INDEX);
  return b === null ? null : parseIndexText(b.toString('utf8'), `${store.location}${store.location.endsWith('/') ? '' : '/'}${VAULT_INDEX}`);
}

export async function writeStoreIndex(store: ObjectStore, index: VaultIndex): Promise<void> {
  index.snapshots.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : 1));
  await store.writeBytes(VAULT_INDEX, JSON.stringify(index, null, 2) + '\n');
}

/** Appends a line to a vault's run log: O_APPEND in a folder; read, add, write back in object storage (under the vault's lock). */
export async function appendStoreRunLog(store: ObjectStore, rec: RunLogRecord): Promise<void> {
  if (store instanceof LocalStore) {
    await fsp.appendFile(path.join(store.root, RUN_LOG), JSON.stringify(rec) + '\n', { mode: 0o600 });
    return;
  }
  // objects cannot be appended to: read, add the line, write back (under the vault's lock)
  const prev = (await store.readBytes(RUN_LOG))?.toString('utf8') ?? '';
  await store.writeBytes(RUN_LOG, prev + (prev && !prev.endsWith('\n') ? '\n' : '') + JSON.stringify(rec) + '\n');
}

function select(index: VaultIndex, refs: string[] | undefined, where: string): SnapshotRecord[] {
  if (!refs?.length) return index.snapshots;
  return refs.map((r) => {
    const hits = index.snapshots.filter((s) => s.id === r || s.id.startsWith(r));
    if (hits.length !== 1) {
      throw new AgentVaultError('usage', hits.length ? `"${r}" matches ${hits.length} snapshots in ${where}; give more of the id` : `no snapshot "${r}" in ${where}`, { kind: 'usage' });
    }
    return hits[0];
  });
}

async function withTargetLock<T>(to: ObjectStore, opts: CopyOptions, fn: () => Promise<T>): Promise<T> {
  if (to instanceof LocalStore) {
    await fsp.mkdir(to.root, { recursive: true });
    const lock = await acquireLock(to.root, { command: 'vault copy', waitMs: opts.waitMs });
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  }
  const lock = await acquireRemoteLock(to, { command: 'vault copy', waitMs: opts.waitMs, ...opts.lock });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** The SHA-256 of an object the target already has, reading it whole only when nothing recorded it. */
async function targetSha(to: ObjectStore, key: string, scratch: string): Promise<string | null> {
  const head = await to.head(key);
  if (!head) return null;
  if (head.sha256Hex) return head.sha256Hex;
  if (to instanceof LocalStore) return (await fileSha256(path.join(to.root, ...key.split('/')))).sha256;
  const tmp = path.join(scratch, `check-${path.basename(key)}`);
  try {
    return (await to.downloadFile(key, tmp)).sha256Hex;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

export async function copyVault(from: ObjectStore, to: ObjectStore, opts: CopyOptions = {}): Promise<CopyResult> {
  const srcIndex = await readStoreIndex(from);
  if (!srcIndex) {
    throw new AgentVaultError('no-vault', `${from.location} is not a vault (it has no ${VAULT_INDEX})`, { kind: 'usage', hint: 'check the source location' });
  }
  const wanted = select(srcIndex, opts.snapshots, from.location);
  const result: CopyResult = { from: from.location, to: to.location, items: [], copied: 0, skipped: 0, adopted: 0, conflicts: 0, missing: 0, bytes: 0, ok: true };
  const started = new Date();
  const runId = newRunId();

  const body = async (): Promise<void> => {
    const dstIndex = (await readStoreIndex(to)) ?? { ...emptyIndex(), kdf: srcIndex.kdf ?? null };
    const listed = new Map(dstIndex.snapshots.map((s) => [s.id, s]));
    const scratch = await fsp.mkdtemp(path.join(opts.tmpDir ?? os.tmpdir(), 'agent-vault-copy-'));
    const added: SnapshotRecord[] = [];
    try {
      for (const rec of wanted) {
        const item = (action: CopyAction, bytes = 0, detail?: string): void => {
          result.items.push({ snapshot: rec.id, action, bytes, detail });
          opts.onProgress?.({ snapshot: rec.id, action, bytes });
        };
        const have = listed.get(rec.id);
        if (have) {
          if (have.sha256 === rec.sha256) {
            result.skipped++;
            item('skipped');
          } else {
            result.conflicts++;
            item('conflict', 0, `the target lists ${rec.id} with sha256 ${have.sha256}, the source ${rec.sha256}; left as it is`);
          }
          continue;
        }
        const existing = await targetSha(to, rec.file, scratch);
        if (existing !== null) {
          if (existing === rec.sha256) {
            result.adopted++;
            added.push({ ...rec });
            item('adopted', 0, `${rec.file} was already at the target (an interrupted copy); listed now`);
          } else {
            result.conflicts++;
            item('conflict', 0, `the target holds a different ${rec.file} (sha256 ${existing}) that its index does not list; left as it is`);
          }
          continue;
        }
        if (opts.dryRun) {
          item('would-copy', rec.bytes);
          continue;
        }
        // stage the source archive as a local file (a local source is read in place)
        let file: string;
        if (from instanceof LocalStore) {
          file = path.join(from.root, ...rec.file.split('/'));
          if (!(await from.head(rec.file))) {
            result.missing++;
            item('missing-at-source', 0, `${rec.file} is listed by the source index but missing`);
            continue;
          }
        } else {
          file = path.join(scratch, path.basename(rec.file));
          if (!(await from.head(rec.file))) {
            result.missing++;
            item('missing-at-source', 0, `${rec.file} is listed by the source index but missing`);
            continue;
          }
          await from.downloadFile(rec.file, file);
        }
        const sha = (await fileSha256(file)).sha256;
        if (sha !== rec.sha256) {
          throw new AgentVaultError('checksum', `${from.location}: ${rec.file} has sha256 ${sha} but the source index records ${rec.sha256}; nothing of it was copied`, {
            hint: 'run "agent-vault verify" on the source vault',
          });
        }
        await to.uploadFile(rec.file, file, { sha256Hex: sha });
        const head = await to.head(rec.file);
        if (!head || head.size !== rec.bytes || (head.sha256Hex && head.sha256Hex !== sha)) {
          throw new AgentVaultError(
            'checksum',
            `${to.location}: ${rec.file} arrived as ${head ? `${head.size} bytes${head.sha256Hex ? `, sha256 ${head.sha256Hex}` : ''}` : 'nothing'}, expected ${rec.bytes} bytes, sha256 ${sha}`,
          );
        }
        if (!(from instanceof LocalStore)) await fsp.rm(file, { force: true });
        added.push({ ...rec });
        result.copied++;
        result.bytes += rec.bytes;
        item('copied', rec.bytes);
      }
      if (added.length && !opts.dryRun) {
        dstIndex.snapshots.push(...added);
        await writeStoreIndex(to, dstIndex);
      }
    } finally {
      await fsp.rm(scratch, { recursive: true, force: true });
    }
  };

  let failure: unknown;
  try {
    await withTargetLock(to, opts, body);
  } catch (e) {
    failure = e;
  }
  result.ok = !failure && result.conflicts === 0 && result.missing === 0;
  if (!opts.dryRun && !(failure instanceof AgentVaultError && failure.code === 'locked')) {
    const rec = runLogRecord(
      'copy',
      started,
      result.ok,
      {
        from: from.location,
        copied: result.copied,
        adopted: result.adopted,
        skipped: result.skipped,
        conflicts: result.conflicts,
        bytes: result.bytes,
        error: failure ? { code: failure instanceof AgentVaultError ? failure.code : 'internal', message: errorMessage(failure) } : null,
      },
      runId,
    );
    await appendStoreRunLog(to, rec).catch(() => undefined);
  }
  if (failure) throw failure;
  return result;
}
