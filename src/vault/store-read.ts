/**
 * Reading a snapshot of a store vault in place (src/vault/store/reader.ts): what `restore`,
 * `drill`, `diff`, `inspect` and `vault export` do with `<store vault>#<snapshot>`, streaming the
 * snapshot's chunks out of the store as they go, with no temporary archive. The vault is a folder
 * or `s3://bucket/prefix`: in object storage the packs' byte ranges are read with ranged GETs and
 * kept in a bounded local cache for a second read (./store/range-cache.ts). The vault's shared
 * lock (a folder's `.readers/`, or a reader lock object in the bucket, ./remote/lock.ts) is held
 * from before the store's index is read until the reader is closed, so a prune never sweeps a
 * chunk a reader is about to read.
 *
 * The library entry point is openStoreVaultSnapshot(vault, ref, { decrypt }): its `reader` is an
 * ArchiveReader (src/format/archive.ts) like an opened archive's; close it when done.
 */
import type { ArchiveReader } from '../format/archive';
import type { DecryptOptions } from '../format/crypto';
import { listSnapshots, type Repo, type SnapshotInfo } from './store/repo';
import { openStoreSnapshotReader } from './store/reader';
import type { RangeCache } from './store/range-cache';
import { acquirePlaceReaderLock, findStoreSnapshot, openPlace, openPlaceRepo, placeIsStore, STORE_DIR, vaultIdOf } from './store-vault';
import type { SnapshotRecord } from './vault';

export interface OpenStoreVaultSnapshotOptions {
  /** the store's passphrase or key (an encrypted store needs it) */
  decrypt?: DecryptOptions;
  /** wait this long for a running backup or prune (default 0: refuse) */
  waitMs?: number;
  /** the command the shared lock names (default `read <ref>`) */
  command?: string;
  /** bytes of the local cache of pack ranges (object storage; default AGENT_VAULT_CACHE_MB, else 1024 MiB) */
  cacheBytes?: number;
}

export interface StoreVaultSnapshot {
  /** reads the snapshot in place; closing it releases the vault's shared lock */
  reader: ArchiveReader;
  /** the snapshot's vault id and store id */
  id: string;
  snapshotId: string;
  info: SnapshotInfo;
}

/** What a store snapshot is called in messages: `<vault>#<vault id>`, as the user names it. */
export function storeSnapshotLabel(vaultDir: string, s: Pick<SnapshotInfo, 'id' | 'source'>): string {
  return `${vaultDir}#${vaultIdOf(s)}`;
}

/** The fields of a vault index record a drill report takes from a store snapshot (as storeVaultIndex lists it). */
export function storeSnapshotRecord(s: SnapshotInfo): Pick<SnapshotRecord, 'id' | 'file' | 'created_at' | 'encrypted'> {
  return { id: vaultIdOf(s), file: `${STORE_DIR}/snapshots/${s.id}`, created_at: s.created_at ?? s.time, encrypted: !!s.source?.encrypted };
}

/**
 * Opens the snapshot `ref` (vault id, unique prefix, store id, "latest") of a store vault (a
 * folder or s3://…) for reading in place, under the vault's shared lock (released when the reader
 * is closed, or here on failure).
 */
export async function openStoreVaultSnapshot(vault: string, ref: string, opts: OpenStoreVaultSnapshotOptions = {}): Promise<StoreVaultSnapshot> {
  const place = await openPlace(vault);
  let lock: { release(): Promise<void> } | undefined;
  try {
    if (!(await placeIsStore(place))) await openPlaceRepo(place); // its error says what the location is
    lock = await acquirePlaceReaderLock(place, { command: opts.command ?? `read ${ref}`, waitMs: opts.waitMs });
    const repo = await openPlaceRepo(place, opts.decrypt);
    const s = findStoreSnapshot(await listSnapshots(repo), ref, place.vault);
    const held = lock;
    const reader = await openStoreSnapshotReader(repo, s.id, {
      label: storeSnapshotLabel(place.vault, s),
      cacheBytes: opts.cacheBytes,
      onClose: async () => {
        await held.release();
        await place.close();
      },
    });
    return { reader, id: vaultIdOf(s), snapshotId: s.id, info: s };
  } catch (e) {
    await lock?.release();
    await place.close();
    throw e;
  }
}

/**
 * A snapshot of an opened store, found by reference, and a way to open readers of it (the
 * caller holds the vault's lock): for the drill, which reads the snapshot twice (with `cache`, a
 * cache of pack ranges its readers share; the caller closes it).
 */
export async function findStoreVaultSnapshot(
  repo: Repo,
  vaultDir: string,
  ref: string,
  cache?: RangeCache,
): Promise<{ info: SnapshotInfo; label: string; record: Pick<SnapshotRecord, 'id' | 'file' | 'created_at' | 'encrypted'>; open: () => Promise<ArchiveReader> }> {
  const s = findStoreSnapshot(await listSnapshots(repo), ref, vaultDir);
  const label = storeSnapshotLabel(vaultDir, s);
  return { info: s, label, record: storeSnapshotRecord(s), open: () => openStoreSnapshotReader(repo, s.id, { label, cache }) };
}
