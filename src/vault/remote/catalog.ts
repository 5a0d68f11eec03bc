/**
 * Browsing a vault in object storage (the extension's Snapshots view on `s3://bucket/prefix`):
 * the snapshots come from the bucket's index (one small GET, no archive read), and a snapshot is
 * downloaded into a local cache only when it is opened, checked against the SHA-256 the index
 * records, and kept there for the documents that read it.
 *
 * The cache is bounded: after a download, the least recently used archives this cache wrote are
 * removed until the cache holds at most `maxBytes` (never the archive just fetched). It only ever
 * removes files of its own (`<cache>/<location hash>/<snapshot id>.avsnap`), never anything in a
 * vault. Credentials come from the AWS environment/profile chain, as for the CLI.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { AgentVaultError } from '../../core/errors';
import type { DecryptOptions } from '../../format/crypto';
import { isStoreLocation, storeVaultStatus } from '../store-vault';
import { catalogEntry, newestFirst, type CatalogSnapshot } from '../catalog';
import type { StatusPolicy } from '../config';
import { vaultStatus, type VaultStatus } from '../status';
import { SNAPSHOT_EXT, type SnapshotRecord } from '../vault';
import { readStoreIndex } from './copy';
import { isS3Location } from './location';
import { remoteVaultStatus } from './remote-vault';
import { S3Store } from './s3';
import type { ObjectStore } from './store';

export const DEFAULT_REMOTE_CACHE_BYTES = 1024 * 1024 * 1024;

export interface RemoteCacheOptions {
  /** Upper bound of the cache in bytes (default 1 GiB); read each time, so a setting change applies at once. */
  maxBytes?: () => number;
  /** Opens the store of a location (default: an S3Store; tests may pass another). */
  openStore?: (location: string) => Promise<ObjectStore>;
}

export class RemoteSnapshotCache {
  /** Cache path → the snapshot it holds, for every snapshot listed by this cache. */
  private readonly known = new Map<string, { location: string; rec: SnapshotRecord }>();
  private readonly inflight = new Map<string, Promise<string>>();
  /** Downloads done (tests). */
  downloads = 0;

  constructor(
    readonly dir: string,
    private readonly opts: RemoteCacheOptions = {},
  ) {}

  private async store(location: string): Promise<ObjectStore> {
    if (this.opts.openStore) return this.opts.openStore(location);
    return new S3Store(location);
  }

  private async withStore<T>(location: string, fn: (s: ObjectStore) => Promise<T>): Promise<T> {
    const s = await this.store(location);
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  }

  /** Where a snapshot of `location` is cached (whether or not it is there yet). */
  pathFor(location: string, rec: Pick<SnapshotRecord, 'id'>): string {
    const h = createHash('sha256').update(location).digest('hex').slice(0, 16);
    return path.join(this.dir, h, `${rec.id}${SNAPSHOT_EXT}`);
  }

  /** Every snapshot the bucket's index lists, newest first; `path` is the cache path. */
  async list(location: string): Promise<CatalogSnapshot[]> {
    if (!isS3Location(location)) throw new AgentVaultError('usage', `${location} is not an s3:// location`, { kind: 'usage' });
    const index = await this.withStore(location, readStoreIndex);
    const out: CatalogSnapshot[] = [];
    for (const s of index?.snapshots ?? []) {
      const p = this.pathFor(location, s);
      this.known.set(p, { location, rec: s });
      out.push(catalogEntry(s, p));
    }
    out.sort(newestFirst);
    return out;
  }

  /** The status of the remote vault (`agent-vault status` on it). */
  async status(location: string, policy: StatusPolicy = {}): Promise<VaultStatus> {
    return this.withStore(location, (s) => remoteVaultStatus(s, policy, { readThrough: false }));
  }

  /** Whether `file` is a path of this cache (a listed remote snapshot). */
  owns(file: string): boolean {
    return this.known.has(path.resolve(file));
  }

  /** Whether the snapshot is in the cache now (nothing is downloaded). */
  async isCached(file: string): Promise<boolean> {
    const k = this.known.get(path.resolve(file));
    if (!k) return false;
    const st = await fsp.stat(file).catch(() => null);
    return !!st && st.isFile() && st.size === k.rec.bytes;
  }

  /**
   * Makes sure the cached archive at `file` (a path from `list`) is there: downloads it when it
   * is not (checked against the index's SHA-256; written whole or not at all), then trims the
   * cache. Returns the path. A path this cache does not know is returned as it is.
   */
  async ensure(file: string): Promise<string> {
    const p = path.resolve(file);
    const k = this.known.get(p);
    if (!k) return file;
    if (await this.isCached(p)) {
      const now = new Date();
      await fsp.utimes(p, now, now).catch(() => undefined); // most recently used
      return p;
    }
    let job = this.inflight.get(p);
    if (!job) {
      job = this.download(p, k.location, k.rec).finally(() => this.inflight.delete(p));
      this.inflight.set(p, job);
    }
    return job;
  }

  private async download(p: string, location: string, rec: SnapshotRecord): Promise<string> {
    await this.withStore(location, async (s) => {
      const got = await s.downloadFile(rec.file, p);
      this.downloads++;
      if (got.sha256Hex !== rec.sha256) {
        await fsp.rm(p, { force: true });
        throw new AgentVaultError('checksum', `${location}: ${rec.file} has sha256 ${got.sha256Hex} but the index records ${rec.sha256}; the download was removed`, {
          hint: 'run "agent-vault verify" on the vault',
        });
      }
    });
    await this.trim(p);
    return p;
  }

  /** Removes the least recently used cached archives until the cache fits (never `keep`). */
  async trim(keep?: string): Promise<string[]> {
    const max = this.opts.maxBytes?.() ?? DEFAULT_REMOTE_CACHE_BYTES;
    const files: Array<{ file: string; size: number; used: number }> = [];
    for (const sub of await fsp.readdir(this.dir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{16}$/.test(sub)) continue;
      for (const n of await fsp.readdir(path.join(this.dir, sub)).catch(() => [] as string[])) {
        if (!n.endsWith(SNAPSHOT_EXT)) continue;
        const f = path.join(this.dir, sub, n);
        const st = await fsp.stat(f).catch(() => null);
        if (st?.isFile()) files.push({ file: f, size: st.size, used: st.mtimeMs });
      }
    }
    let total = files.reduce((n, f) => n + f.size, 0);
    const removed: string[] = [];
    for (const f of files.sort((a, b) => a.used - b.used)) {
      if (total <= max) break;
      if (keep && path.resolve(f.file) === path.resolve(keep)) continue;
      await fsp.rm(f.file, { force: true });
      total -= f.size;
      removed.push(f.file);
    }
    return removed;
  }
}

/**
 * The status of a vault wherever it is and whatever its kind: a store vault (folder or s3://; an
 * encrypted store needs `decrypt`), a folder, or an `s3://…` archive vault through `remote`.
 */
export async function vaultStatusOf(location: string, policy: StatusPolicy, remote: RemoteSnapshotCache | undefined, decrypt?: () => Promise<DecryptOptions | undefined>): Promise<VaultStatus> {
  if (await isStoreLocation(location)) return (await storeVaultStatus(location, policy, await decrypt?.())).status;
  if (isS3Location(location)) {
    if (!remote) throw new AgentVaultError('usage', `${location}: an s3:// vault needs a remote snapshot cache here`, { kind: 'usage' });
    return remote.status(location, policy);
  }
  return vaultStatus(location, policy);
}
