/**
 * Bulk reading of archive entries (the diff and the restore): the bytes ArchiveReader.openStream
 * gives, read with 1 MiB file reads and 1 MiB inflate chunks instead of yauzl's 16 KiB pipeline
 * of five streams (on a 2-core machine that per-chunk overhead was most of the time of streaming
 * a 100 MB agent entry). Entries of an encrypted archive are decrypted (and every segment
 * authenticated) on the way when the streams were opened with the archive's keys
 * (`ArchiveReader.entryStreams()`).
 *
 * Integrity: every byte is checked against the zip's CRC-32 and the entry's size against the
 * manifest, which catches a damaged or truncated archive. The manifest's sha256 is not
 * recomputed here: at ~1 GB/s it alone would take ~0.8 s of the 2 s budget for two 200k-message
 * snapshots; `agent-vault validate` verifies it (and `verify: 'sha256'` does it here too).
 *
 * yauzl still reads the zip's central directory and local headers; only the entry data is read
 * here, for an archive that ArchiveReader has already opened and checked (manifest schema,
 * manifest ⇄ zip directory agreement).
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { createInflateRaw, crc32 } from 'node:zlib';
import * as yauzl from 'yauzl';
import { AgentVaultError, errorMessage } from '../core/errors';
import { ioError } from '../core/fs';
import type { ManifestEntry } from './archive';
import type { ArchiveCrypto } from './crypto';
import { verifyRangesInWorker, type StoredRange } from './verify-worker';

const READ_CHUNK = 1 << 20;
const INFLATE_CHUNK = 1 << 20;

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: false, decodeStrings: true, validateEntrySizes: true }, (err, zip) => (err ? reject(err) : resolve(zip)));
  });
}

function checksumError(file: string, entry: string, why: string, cause?: unknown): AgentVaultError {
  return new AgentVaultError('checksum', `${file}!${entry} is damaged: ${why}`, { location: { file, entry }, cause });
}

/**
 * What the restore and the diff read a snapshot's entries through: the zip archive's EntryStreams
 * below, or another container's (the vault's deduplicating store, src/vault/store/reader.ts).
 * Every implementation hands out the entries' plaintext and checks it on the way (a mismatch is
 * AgentVaultError 'checksum' naming the entry).
 */
export interface EntrySource {
  /** what the entries come from, as messages name it */
  readonly file: string;
  /** The entry's plaintext as a stream of Buffers, checked as it goes by (with `verify: 'sha256'` also against the manifest's sha256). */
  stream(name: string, opts?: { verify?: 'crc32' | 'sha256' }): AsyncGenerator<Buffer>;
  /** The entry's plaintext chunk by chunk; a chunk may be overwritten by the next call to next(). */
  chunks(name: string): Promise<ChunkReader>;
  /**
   * Reads these entries through and checks them completely (size and sha256, or what the
   * container's own integrity checks are), where it can beside the caller's other work (a worker
   * thread); resolves with the damaged ones and why.
   */
  checkEntries(names: string[]): Promise<Array<{ entry: string; error: string }>>;
  /**
   * True when stream() checks an entry completely on its first read (every chunk against its
   * content id, the size at the end), as checkEntries would: a reader that reads an entry once,
   * inside a transaction that a failure rolls back, may then skip checkEntries for it (the
   * restore does: src/letta/restore/source.ts). The zip archive's streams check a first read by
   * CRC-32 and sha256 only at the end, so they leave this unset.
   */
  readonly checksOnRead?: boolean;
  close(): void;
}

/** Below this many bytes, a worker thread costs more than it saves. */
const WORKER_MIN_BYTES = 16 * 1024 * 1024;

export class EntryStreams implements EntrySource {
  private constructor(
    readonly file: string,
    private readonly zip: yauzl.ZipFile,
    private readonly entries: Map<string, yauzl.Entry>,
    private readonly manifest: Map<string, ManifestEntry>,
    private readonly crypto: ArchiveCrypto | undefined,
    private readonly ownsZip: boolean,
  ) {}

  /**
   * Streams over a zip an ArchiveReader already opened (and checked); closing them leaves the
   * zip open (the reader closes it). With `crypto`, encrypted entries are decrypted.
   */
  static fromOpenZip(file: string, zip: yauzl.ZipFile, entries: Map<string, yauzl.Entry>, manifestEntries: ManifestEntry[], crypto?: ArchiveCrypto): EntryStreams {
    return new EntryStreams(file, zip, entries, new Map(manifestEntries.map((m) => [m.name, m])), crypto, false);
  }

  static async open(file: string, manifestEntries: ManifestEntry[]): Promise<EntryStreams> {
    let zip: yauzl.ZipFile;
    try {
      zip = await openZip(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code) throw ioError(e, file, 'read');
      throw new AgentVaultError('truncated', `${file} is truncated or damaged: ${errorMessage(e)}`, { location: { file }, cause: e });
    }
    const entries = new Map<string, yauzl.Entry>();
    await new Promise<void>((resolve, reject) => {
      zip.on('entry', (e: yauzl.Entry) => {
        entries.set(e.fileName, e);
        zip.readEntry();
      });
      zip.on('end', () => resolve());
      zip.on('error', reject);
      zip.readEntry();
    }).catch((e: unknown) => {
      zip.close();
      throw new AgentVaultError('truncated', `${file} is truncated or damaged: ${errorMessage(e)}`, { location: { file }, cause: e });
    });
    return new EntryStreams(file, zip, entries, new Map(manifestEntries.map((m) => [m.name, m])), undefined, true);
  }

  /** Where the entry's stored bytes are in the file and what they must match (for ./verify-worker.ts). */
  async range(name: string): Promise<StoredRange> {
    const entry = this.entries.get(name);
    const expected = this.manifest.get(name);
    if (!entry || !expected) throw new AgentVaultError('missing-entry', `${this.file}: the archive has no entry ${JSON.stringify(name)}`, { location: { file: this.file, entry: name } });
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) throw checksumError(this.file, name, `unsupported zip compression method ${entry.compressionMethod}`);
    let start: number;
    try {
      start = (await this.zip.readLocalFileHeaderPromise(entry, { minimal: true })).fileDataStart;
    } catch (e) {
      throw checksumError(this.file, name, errorMessage(e), e);
    }
    return { name, start, length: entry.compressedSize, method: entry.compressionMethod, size: expected.size, sha256: expected.sha256, crc32: entry.crc32 };
  }

  /** A mismatch found by a check of the entry (e.g. on a worker thread) as the error stream() would throw. */
  damaged(name: string, why: string): AgentVaultError {
    return checksumError(this.file, name, why);
  }

  /**
   * Checks the entries' stored bytes (size, sha256, CRC-32): on a worker thread when they are
   * large (the restore reads its agent files meanwhile), else here.
   */
  async checkEntries(names: string[]): Promise<Array<{ entry: string; error: string }>> {
    const bad: Array<{ entry: string; error: string }> = [];
    const drain = async (name: string): Promise<void> => {
      try {
        for await (const _ of this.stored(name, { verify: 'sha256' })) {
          /* drain: the stream checks */
        }
      } catch (e) {
        bad.push({ entry: name, error: errorMessage(e) });
      }
    };
    const bytes = names.reduce((n, name) => n + (this.manifest.get(name)?.size ?? 0), 0);
    if (bytes < WORKER_MIN_BYTES) {
      for (const name of names) await drain(name);
      return bad;
    }
    const ranges: StoredRange[] = [];
    for (const name of names) {
      try {
        ranges.push(await this.range(name));
      } catch (e) {
        bad.push({ entry: name, error: errorMessage(e) });
      }
    }
    let results: Array<{ name: string; error: string | null }>;
    try {
      results = await verifyRangesInWorker(this.file, ranges);
    } catch {
      // no worker (or it failed to read): check here instead
      for (const r of ranges) await drain(r.name);
      return bad;
    }
    for (const r of results) if (r.error) bad.push({ entry: r.name, error: this.damaged(r.name, r.error).message });
    return bad;
  }

  /** Whether the entry is stored encrypted (manifest `encrypted`). */
  isEncrypted(name: string): boolean {
    return this.manifest.get(name)?.encrypted === true;
  }

  /**
   * The entry's bytes as a stream of Buffers (decrypted for an encrypted entry). Size and CRC-32
   * (and sha256 when asked) of the stored bytes are checked as they go by; a mismatch is thrown
   * (AgentVaultError 'checksum', naming the entry) at the end. An encrypted entry's segments are
   * authenticated before they are released ('decrypt' errors); without the archive's keys it is
   * error 'encrypted'.
   */
  async *stream(name: string, opts: { verify?: 'crc32' | 'sha256' } = {}): AsyncGenerator<Buffer> {
    if (!this.isEncrypted(name)) {
      yield* this.stored(name, opts);
      return;
    }
    if (!this.crypto) {
      throw new AgentVaultError('encrypted', `${this.file}: entry ${JSON.stringify(name)} is encrypted; give the passphrase or key to read it`, {
        location: { file: this.file, entry: name },
        kind: 'usage',
        remedy: 'key',
      });
    }
    const dec = this.crypto.decryptor(name, this.file);
    const fed = pipeline(Readable.from(this.stored(name, opts)), dec);
    fed.catch(() => undefined);
    try {
      for await (const chunk of dec as AsyncIterable<Buffer>) yield chunk;
      await fed;
    } finally {
      dec.destroy();
    }
  }

  /** The stored bytes (ciphertext of an encrypted entry), checked as stream() says. */
  async *stored(name: string, opts: { verify?: 'crc32' | 'sha256' } = {}): AsyncGenerator<Buffer> {
    const entry = this.entries.get(name);
    const expected = this.manifest.get(name);
    if (!entry || !expected) throw new AgentVaultError('missing-entry', `${this.file}: the archive has no entry ${JSON.stringify(name)}`, { location: { file: this.file, entry: name } });
    if (entry.isEncrypted()) throw new AgentVaultError('encrypted', `${this.file}!${name} is encrypted (zip encryption is not supported)`, { location: { file: this.file, entry: name } });
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
      throw checksumError(this.file, name, `unsupported zip compression method ${entry.compressionMethod}`);
    }
    let start: number;
    try {
      start = (await this.zip.readLocalFileHeaderPromise(entry, { minimal: true })).fileDataStart;
    } catch (e) {
      throw checksumError(this.file, name, errorMessage(e), e);
    }
    const raw = entry.compressedSize === 0 ? null : createReadStream(this.file, { start, end: start + entry.compressedSize - 1, highWaterMark: READ_CHUNK });
    const inflate = raw && entry.compressionMethod === 8 ? createInflateRaw({ chunkSize: INFLATE_CHUNK }) : null;
    if (raw && inflate) {
      raw.on('error', (e) => inflate.destroy(e));
      raw.pipe(inflate);
    }
    const source = (inflate ?? raw ?? []) as AsyncIterable<Buffer>;
    const hash = opts.verify === 'sha256' ? createHash('sha256') : null;
    let crc = 0;
    let size = 0;
    try {
      for await (const chunk of source) {
        hash?.update(chunk);
        crc = crc32(chunk, crc);
        size += chunk.length;
        if (size > expected.size) throw checksumError(this.file, name, `it is longer than the ${expected.size} bytes the manifest records`);
        yield chunk;
      }
    } catch (e) {
      if (e instanceof AgentVaultError) throw e;
      if ((e as NodeJS.ErrnoException).code && !String((e as NodeJS.ErrnoException).code).startsWith('Z_')) throw ioError(e, this.file, 'read');
      throw checksumError(this.file, name, errorMessage(e), e);
    } finally {
      raw?.destroy();
      inflate?.destroy();
    }
    if (size !== expected.size) throw checksumError(this.file, name, `it is ${size} bytes, the manifest records ${expected.size}`);
    const digest = hash?.digest('hex');
    if (digest !== undefined && digest !== expected.sha256) throw checksumError(this.file, name, `its sha256 is ${digest}, the manifest records ${expected.sha256}`);
    if (crc >>> 0 !== entry.crc32 >>> 0) throw checksumError(this.file, name, `its CRC-32 is ${(crc >>> 0).toString(16)}, the zip directory records ${(entry.crc32 >>> 0).toString(16)}`);
  }

  /**
   * The entry's bytes chunk by chunk into one reused buffer (for a stored entry; a deflated one
   * falls back to stream()): each chunk is valid only until the next call to next(). Streaming
   * 300 MB of vectors this way allocates 1 MiB instead of 300 MB, which on a small VM saves both
   * page faults and garbage collection. Checks as stream() does.
   */
  async chunks(name: string): Promise<ChunkReader> {
    const entry = this.entries.get(name);
    const expected = this.manifest.get(name);
    if (!entry || !expected) throw new AgentVaultError('missing-entry', `${this.file}: the archive has no entry ${JSON.stringify(name)}`, { location: { file: this.file, entry: name } });
    if (entry.compressionMethod !== 0 || entry.isEncrypted() || this.isEncrypted(name)) {
      const it = this.stream(name);
      return { next: async () => ((await it.next()).value as Buffer | undefined) ?? null, close: async () => void (await it.return(undefined)) };
    }
    let start: number;
    try {
      start = (await this.zip.readLocalFileHeaderPromise(entry, { minimal: true })).fileDataStart;
    } catch (e) {
      throw checksumError(this.file, name, errorMessage(e), e);
    }
    const fh = await fsp.open(this.file, 'r').catch((e: unknown) => {
      throw ioError(e, this.file, 'read');
    });
    const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(1, entry.compressedSize)));
    const total = entry.compressedSize;
    let pos = 0;
    let crc = 0;
    let closed = false;
    const close = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      await fh.close().catch(() => undefined);
    };
    const next = async (): Promise<Buffer | null> => {
      if (closed) return null;
      if (pos >= total) {
        await close();
        if (total !== expected.size) throw checksumError(this.file, name, `it is ${total} bytes, the manifest records ${expected.size}`);
        if (crc >>> 0 !== entry.crc32 >>> 0) throw checksumError(this.file, name, `its CRC-32 is ${(crc >>> 0).toString(16)}, the zip directory records ${(entry.crc32 >>> 0).toString(16)}`);
        return null;
      }
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, Math.min(buf.length, total - pos), start + pos));
      } catch (e) {
        await close();
        throw ioError(e, this.file, 'read');
      }
      if (n === 0) {
        await close();
        throw checksumError(this.file, name, `the archive ends inside this entry (${pos} of ${total} bytes)`);
      }
      pos += n;
      const chunk = buf.subarray(0, n);
      crc = crc32(chunk, crc);
      return chunk;
    };
    return { next, close };
  }

  close(): void {
    if (this.ownsZip && this.zip.isOpen) this.zip.close();
  }
}

/** Chunks of an entry; a chunk may be overwritten by the next call to next(). */
export interface ChunkReader {
  next(): Promise<Buffer | null>;
  close(): Promise<void>;
}
