/**
 * A bounded local cache of pack ranges for a store read from object storage (./reader.ts): the
 * restore reads each entry twice (its checks before the transaction, then the writes), the drill
 * reads the snapshot twice; the second read is served from here instead of the bucket.
 *
 * The cache is one temporary file, removed from its folder as soon as it is opened where the
 * system allows it (POSIX: the open file lives on unnamed, so no run, however it ends, even by
 * kill -9, leaves it behind); elsewhere it is removed on close and when the process exits. Ranges
 * are appended until the file reaches `maxBytes`, then no more are kept (a snapshot read twice
 * in the same order then finds its first `maxBytes` here). Nothing read from the cache is
 * trusted: the reader checks every blob of it as it would the bucket's bytes.
 */
import { unlinkSync, promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';

/** Default size of the cache (MiB); AGENT_VAULT_CACHE_MB overrides it (0: no cache). */
export const DEFAULT_RANGE_CACHE_MB = 1024;

/** The cache size the environment asks for (AGENT_VAULT_CACHE_MB), in bytes. */
export function rangeCacheBytesFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.AGENT_VAULT_CACHE_MB;
  const mb = v !== undefined && v.trim() !== '' && Number.isFinite(Number(v)) && Number(v) >= 0 ? Number(v) : DEFAULT_RANGE_CACHE_MB;
  return Math.floor(mb * 1024 * 1024);
}

/** About this many bytes at most wait to be written to the cache file; beyond, put() makes its caller wait for the disk. */
const MAX_PENDING = 16 * 1024 * 1024;

const pending = new Set<string>();
let hooked = false;

export class RangeCache {
  private fh: fsp.FileHandle | null = null;
  private opening: Promise<fsp.FileHandle | null> | null = null;
  private file: string | null = null;
  private size = 0;
  private full = false;
  private readonly at = new Map<string, { offset: number; length: number }>();
  private writing: Promise<void> = Promise.resolve();
  /** bytes handed to put() and not yet written (bounded: a slow disk does not hold the read in memory) */
  private pendingBytes = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly dir: string = os.tmpdir(),
  ) {}

  private open(): Promise<fsp.FileHandle | null> {
    this.opening ??= (async () => {
      const file = path.join(this.dir, `agent-vault-cache-${randomBytes(6).toString('hex')}`);
      try {
        this.fh = await fsp.open(file, 'wx+', 0o600);
      } catch {
        this.full = true; // no cache (a read-only temp folder): every range from the bucket
        return null;
      }
      try {
        await fsp.unlink(file); // POSIX: the file now has no name; it goes when the descriptor does
      } catch {
        this.file = file;
        pending.add(file);
        if (!hooked) {
          hooked = true;
          process.once('exit', () => {
            for (const f of pending) {
              try {
                unlinkSync(f);
              } catch {
                /* gone */
              }
            }
          });
        }
      }
      return this.fh;
    })();
    return this.opening;
  }

  private static key(object: string, start: number, length: number): string {
    return `${object}\u0000${start}\u0000${length}`;
  }

  /** The range's bytes from the cache, or null. */
  async get(object: string, start: number, length: number): Promise<Buffer | null> {
    const key = RangeCache.key(object, start, length);
    const loc = this.at.get(key);
    if (loc) await this.writing; // its bytes may still be on their way to the file
    if (!loc || !this.fh || !this.at.has(key)) {
      this.misses++;
      return null;
    }
    const buf = Buffer.allocUnsafe(loc.length);
    let got = 0;
    try {
      while (got < loc.length) {
        const { bytesRead } = await this.fh.read(buf, got, loc.length - got, loc.offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch {
      got = -1;
    }
    if (got !== loc.length) {
      this.misses++;
      return null;
    }
    this.hits++;
    return buf;
  }

  /**
   * Keeps a range read from the store (while the cache has room). Resolves at once while fewer
   * than MAX_PENDING bytes wait for the disk, else once this range is written: the caller is held
   * back instead of the range being dropped (a dropped range is fetched from the bucket again on
   * the second read). Never rejects: a failed write only leaves the range out of the cache.
   */
  put(object: string, start: number, data: Buffer): Promise<void> {
    const key = RangeCache.key(object, start, data.length);
    if (this.full || this.maxBytes <= 0 || this.at.has(key) || data.length === 0) return Promise.resolve();
    if (this.size + data.length > this.maxBytes) {
      this.full = true;
      return Promise.resolve();
    }
    const offset = this.size;
    this.size += data.length;
    this.pendingBytes += data.length;
    this.at.set(key, { offset, length: data.length }); // found by get(), which waits for the write
    const written = this.writing.then(async () => {
      try {
        const fh = await this.open();
        if (!fh) {
          this.at.delete(key);
          return;
        }
        let done = 0;
        while (done < data.length) done += (await fh.write(data, done, data.length - done, offset + done)).bytesWritten;
      } catch {
        this.at.delete(key);
        this.full = true; // a full disk: no more caching, the bucket serves the rest
      } finally {
        this.pendingBytes -= data.length;
      }
    });
    this.writing = written;
    return this.pendingBytes > MAX_PENDING ? written : Promise.resolve();
  }

  /** Bytes kept. */
  get bytes(): number {
    return this.size;
  }

  async close(): Promise<void> {
    await this.writing.catch(() => undefined);
    this.full = true;
    await this.opening?.catch(() => null);
    await this.fh?.close().catch(() => undefined);
    this.fh = null;
    this.at.clear();
    if (this.file) {
      await fsp.rm(this.file, { force: true }).catch(() => undefined);
      pending.delete(this.file);
      this.file = null;
    }
  }
}
