/**
 * Object stores a vault can live in: a local folder or an S3-compatible bucket (s3.ts). Both
 * hold the same keys ('/'-separated paths relative to the vault's root: `vault.json`,
 * `snapshots/<id>.avsnap`, `runs.jsonl`, `.lock`), so one vault layout serves both and a vault
 * can be copied between them key by key.
 *
 * Visibility rule shared by both: an object becomes visible only whole (a local file by rename,
 * an S3 object when its single or multipart upload completes), so a reader never sees a partial
 * snapshot.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgentVaultError } from '../../core/errors';
import { ioError, publishFile, tempPathFor } from '../../core/fs';

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified?: Date;
  /** SHA-256 (hex) of the whole object as recorded by the writer (S3 object metadata), when known. */
  sha256Hex?: string;
}

export interface ObjectStore {
  /** The location as the user wrote it, without any secret. */
  readonly location: string;
  readonly kind: 'local' | 's3';
  /** Every object whose key starts with `prefix`. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  head(key: string): Promise<ObjectInfo | null>;
  /** Reads a whole (small) object; null when it does not exist. */
  readBytes(key: string): Promise<Buffer | null>;
  /** A stream of the object's bytes. */
  readStream(key: string): Promise<Readable>;
  /**
   * `length` bytes from `start` (a byte range: a pack's blobs are read without the whole pack);
   * fewer when the object is shorter; error 'io' / 's3-…' when the object does not exist.
   */
  readRange(key: string, start: number, length: number): Promise<Buffer>;
  /**
   * Writes a small object whole. With `ifAbsent`, only when no object has that key (false when
   * one had it); an S3 store without conditional writes refuses with `s3-no-conditional-put`.
   */
  writeBytes(key: string, data: Buffer | string, opts?: { ifAbsent?: boolean }): Promise<boolean>;
  /** Streams a local file into the store (multipart on S3), checked against its SHA-256. */
  uploadFile(key: string, file: string, opts: { sha256Hex: string; signal?: AbortSignal }): Promise<void>;
  /** Streams an object into a local file (written whole or not at all) and returns its SHA-256. */
  downloadFile(key: string, file: string, opts?: { signal?: AbortSignal }): Promise<{ sha256Hex: string; bytes: number }>;
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

export { sha256Hex } from '../../core/hash';

/** Writes `source` into `file` whole or not at all, hashing on the way. */
export async function streamToFileAtomic(source: Readable, file: string, signal?: AbortSignal): Promise<{ sha256Hex: string; bytes: number }> {
  await fsp.mkdir(path.dirname(file), { recursive: true }).catch((e) => {
    throw ioError(e, path.dirname(file), 'create');
  });
  const tmp = tempPathFor(file);
  const h = createHash('sha256');
  let bytes = 0;
  source.on('data', (c: Buffer) => {
    h.update(c);
    bytes += c.length;
  });
  let out: WriteStream | undefined;
  try {
    out = createWriteStream(tmp, { flags: 'wx' });
    await pipeline(source, out, { signal });
    const fh = await fsp.open(tmp, 'r+');
    await fh.sync().finally(() => fh.close());
    await publishFile(tmp, file, { overwrite: true });
  } catch (e) {
    // a stream stopped early (cancelled) may still be opening its file: the file exists once the
    // stream has closed, so remove it only then, or it would be created after its removal
    const o = out;
    if (o && !o.closed) await new Promise<void>((resolve) => o.once('close', () => resolve()));
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if (e instanceof AgentVaultError) throw e;
    if ((e as Error)?.name === 'AbortError') throw new AgentVaultError('interrupted', `download into ${file} was cancelled; nothing was written`, { location: { file } });
    throw ioError(e, file, 'write');
  }
  return { sha256Hex: h.digest('hex'), bytes };
}

function checkKey(key: string): void {
  if (!key || key.startsWith('/') || key.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new AgentVaultError('internal', `not a vault object key: ${JSON.stringify(key)}`);
  }
}

/** A vault in a local folder. */
export class LocalStore implements ObjectStore {
  readonly kind = 'local' as const;
  constructor(readonly root: string) {}

  get location(): string {
    return this.root;
  }

  private file(key: string): string {
    checkKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const walk = async function* (dir: string, rel: string): AsyncGenerator<ObjectInfo> {
      let ents: import('node:fs').Dirent[];
      try {
        ents = await fsp.readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw ioError(e, dir, 'read');
      }
      for (const d of ents.sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const key = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) yield* walk(path.join(dir, d.name), key);
        else if (d.isFile()) {
          const st = await fsp.stat(path.join(dir, d.name)).catch(() => null);
          if (st) yield { key, size: st.size, lastModified: st.mtime };
        }
      }
    };
    for await (const o of walk(this.root, '')) if (o.key.startsWith(prefix)) yield o;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const st = await fsp.stat(this.file(key)).catch((e) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError(e, this.file(key), 'read');
    });
    return st && st.isFile() ? { key, size: st.size, lastModified: st.mtime } : null;
  }

  async readBytes(key: string): Promise<Buffer | null> {
    try {
      return await fsp.readFile(this.file(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError(e, this.file(key), 'read');
    }
  }

  async readStream(key: string): Promise<Readable> {
    const f = this.file(key);
    const fh = await fsp.open(f, 'r').catch((e) => {
      throw ioError(e, f, 'open');
    });
    return fh.createReadStream();
  }

  async readRange(key: string, start: number, length: number): Promise<Buffer> {
    const f = this.file(key);
    const fh = await fsp.open(f, 'r').catch((e) => {
      throw ioError(e, f, 'open');
    });
    try {
      return await readFully(fh, f, Buffer.allocUnsafe(length), start);
    } finally {
      await fh.close();
    }
  }

  /**
   * A reader of byte ranges that keeps up to `maxOpen` of the files it read open (least recently
   * used closed first), for a reader that reads many ranges of the same few packs (./store/reader.ts
   * reads an entry's runs of chunks pack by pack). Its owner closes it when done (on error too):
   * the files stay open until then. A file removed meanwhile (a prune sweeping a pack, which runs
   * only when no reader holds the vault's shared lock) would still be read through its open
   * descriptor: the caller holds that lock for the reader's whole life.
   */
  rangeReader(maxOpen = 8): LocalRangeReader {
    return new LocalRangeReader((key) => this.file(key), maxOpen);
  }

  async writeBytes(key: string, data: Buffer | string, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    const f = this.file(key);
    await fsp.mkdir(path.dirname(f), { recursive: true }).catch((e) => {
      throw ioError(e, path.dirname(f), 'create');
    });
    const tmp = tempPathFor(f);
    try {
      await fsp.writeFile(tmp, data, { flag: 'wx' });
      const fh = await fsp.open(tmp, 'r+');
      await fh.sync().finally(() => fh.close());
      try {
        // without overwriting, publishing is the local form of If-None-Match: *
        await publishFile(tmp, f, { overwrite: !opts.ifAbsent });
      } catch (e) {
        if (e instanceof AgentVaultError && e.code === 'exists') return false;
        throw e;
      }
      return true;
    } catch (e) {
      throw ioError(e, f, 'write');
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  async uploadFile(key: string, file: string, opts: { sha256Hex: string; signal?: AbortSignal }): Promise<void> {
    const got = await streamToFileAtomic(createReadStream(file), this.file(key), opts.signal);
    if (got.sha256Hex !== opts.sha256Hex) {
      await fsp.rm(this.file(key), { force: true });
      throw new AgentVaultError('checksum', `${file} changed while it was copied to ${this.file(key)} (sha256 ${got.sha256Hex}, expected ${opts.sha256Hex}); the copy was removed`, {
        location: { file },
      });
    }
  }

  async downloadFile(key: string, file: string, opts: { signal?: AbortSignal } = {}): Promise<{ sha256Hex: string; bytes: number }> {
    return streamToFileAtomic(await this.readStream(key), file, opts.signal);
  }

  async delete(key: string): Promise<void> {
    await fsp.rm(this.file(key), { force: true }).catch((e) => {
      throw ioError(e, this.file(key), 'write');
    });
  }

  async close(): Promise<void> {}
}

/** Reads `into.length` bytes from `start` (fewer when the file ends first: the returned view is shorter). */
async function readFully(fh: fsp.FileHandle, file: string, into: Buffer, start: number): Promise<Buffer> {
  const length = into.length;
  let got = 0;
  try {
    while (got < length) {
      const { bytesRead } = await fh.read(into, got, length - got, start + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
  } catch (e) {
    throw ioError(e, file, 'read');
  }
  return got === length ? into : into.subarray(0, got);
}

/** Byte ranges of a local store's files through a small cache of open files (LocalStore.rangeReader). */
export class LocalRangeReader {
  /** key → its open file (Map order: least recently used first) and the reads in flight on it */
  private readonly open = new Map<string, { fh: Promise<fsp.FileHandle>; busy: number }>();
  private closed = false;
  /** files opened (for tests and measurements) */
  opened = 0;

  constructor(
    private readonly fileOf: (key: string) => string,
    private readonly maxOpen: number,
  ) {}

  /** How many files are open now. */
  get openFiles(): number {
    return this.open.size;
  }

  /**
   * `length` bytes of `key` from `start` (into `into` when given: its first `length` bytes); fewer
   * when the file is shorter; error 'io' (kind 'usage' when the file does not exist) as readRange's.
   */
  async read(key: string, start: number, length: number, into?: Buffer): Promise<Buffer> {
    if (this.closed) throw new AgentVaultError('closed', `the range reader of ${this.fileOf(key)} is closed`);
    const f = this.fileOf(key);
    let slot = this.open.get(key);
    if (slot) {
      this.open.delete(key); // re-inserted below: most recently used
    } else {
      const fh = fsp.open(f, 'r');
      slot = { fh, busy: 0 };
      this.opened++;
    }
    this.open.set(key, slot);
    const s = slot;
    s.busy++;
    try {
      let fh: fsp.FileHandle;
      try {
        fh = await s.fh;
      } catch (e) {
        if (this.open.get(key) === s) this.open.delete(key);
        throw ioError(e, f, 'open');
      }
      return await readFully(fh, f, into ? into.subarray(0, length) : Buffer.allocUnsafe(length), start);
    } finally {
      s.busy--;
      await this.evict();
    }
  }

  /** Closes the least recently used idle files beyond the bound. */
  private async evict(): Promise<void> {
    if (this.open.size <= this.maxOpen) return;
    const closing: Array<Promise<void>> = [];
    for (const [key, slot] of this.open) {
      if (this.open.size <= this.maxOpen) break;
      if (slot.busy) continue;
      this.open.delete(key);
      closing.push(slot.fh.then((fh) => fh.close()).catch(() => undefined));
    }
    await Promise.all(closing);
  }

  /** Closes every file it holds open (waiting for reads in flight); reads after this fail. */
  async close(): Promise<void> {
    this.closed = true;
    const slots = [...this.open.values()];
    this.open.clear();
    await Promise.all(slots.map((s) => s.fh.then((fh) => fh.close()).catch(() => undefined)));
  }
}
