/**
 * A snapshot of the deduplicating store read in place (docs/FORMAT.md part II), as an
 * ArchiveReader: what `restore`, `drill`, `diff` and `inspect` read a store snapshot through, with
 * no temporary archive. Streaming and bounded: an entry's blobs are read from their packs one
 * range request per run of adjacent blobs (at most MAX_RANGE bytes), with at most `readAhead`
 * bytes of ranges requested ahead of the consumer; nothing holds an entry whole.
 *
 * Integrity: the snapshot file is named by the SHA-256 of its bytes (authenticated too in an
 * encrypted store), it names the entry's list blobs, and every list and data blob is authenticated
 * (encrypted stores), inflated and hashed against its id as it is read (decodeBlob), so an entry's
 * bytes are the ones ingested; its size is checked at its end. A blob read again by the same
 * reader after a full check of it (the restore reads its agent files twice: its checks before the
 * transaction, with `verify: 'sha256'`, then the writes) is checked by size and the CRC-32
 * recorded by that check, as an archive entry is on a re-read; any other read hashes it again.
 * The restore reads the passages entries once, inside its transaction, each blob hashed against
 * its id as it goes (entryStreams().checksOnRead; src/letta/restore/source.ts). The entry's own
 * SHA-256 is recomputed where a full check is asked (readEntry, openStream, verifyAll: the
 * drill's integrity check). A local store's pack files are kept open while an entry is read
 * (LocalStore.rangeReader, closed at its end) and its ranges read into one reused buffer where
 * nothing handed out still shows them (./range-ring.ts). Large entries of a plain local store are
 * read, inflated and checked on the reader's worker thread (./decode-worker.ts), which hands the
 * plaintext over in chunks of about 1 MiB: the caller (a restore writing rows) only consumes, and
 * keeps the garbage of per-chunk decoding off its heap. A damaged or missing pack is AgentVaultError
 * 'checksum' / 'missing-blob' naming the entry, the pack and the blob.
 *
 * The manifest is the snapshot's archive manifest with each entry's size and sha256 of its
 * plaintext (what this reader hands out) and no `encrypted` flags; a snapshot that came from an
 * encrypted archive (it may hold secrets/ entries) is `encrypted`, its manifest's `encryption`
 * being the store's (the key that opened the store opened it).
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { Readable } from 'node:stream';
import { AgentVaultError, errorMessage } from '../../core/errors';
import { MANIFEST_ENTRY, type ArchiveReader, type Manifest, type ManifestEntry } from '../../format/archive';
import type { ChunkReader, EntrySource } from '../../format/entry-stream';
import { decodeBlob, type SnapshotEntry, type SnapshotFile } from './format';
import { LocalStore, type LocalRangeReader } from '../remote/store';
import { RangeRing, type RingSpan } from './range-ring';
import { RangeCache, rangeCacheBytesFromEnv } from './range-cache';
import { DECODE_CHUNK, DecodeError, DecodeWorker, type DecodeFailure, type DecodeJob, type DecodeRange, type DecodeStream } from './decode-worker';
import { ioError } from '../../core/fs';
import { listIdsOf, loadSnapshot, packKey, readBlob, storeWhere, type BlobLoc, type Repo } from './repo';

/** Adjacent blobs of one pack are read with one range request up to this many bytes. */
const MAX_RANGE = 4 * 1024 * 1024;
/** Default bytes of ranges requested ahead of the consumer. */
const READ_AHEAD = 16 * 1024 * 1024;
/** Entries of a plain local store at least this large are read on the reader's worker thread (./decode-worker.ts). */
const WORKER_MIN_BYTES = 2 * 1024 * 1024;
/** Entries of a store in object storage checked side by side (each with its own read-ahead). */
const REMOTE_PARALLEL = 4;
/** Blobs are handed out joined into chunks of about this size (the restore's batches follow the chunks). */
const OUT_CHUNK = 1024 * 1024;
/** Pack files of a local store kept open while an entry is read. */
const FILES_OPEN = 8;

export interface StoreSnapshotReaderOptions {
  /** How the reader is named in messages (its `path`); default `<store location>#<snapshot id>`. */
  label?: string;
  /** Called once when the reader is closed (e.g. to release the vault's shared lock). */
  onClose?: () => Promise<void> | void;
  /** Bytes of pack ranges requested ahead of the consumer (default 16 MiB). */
  readAhead?: number;
  /**
   * Bytes of pack ranges kept in a local cache (./range-cache.ts) for a second read of the same
   * entries: a store in object storage; default AGENT_VAULT_CACHE_MB, else 1024 MiB; 0: none. A
   * store in a local folder has no cache (its packs are local already).
   */
  cacheBytes?: number;
  /** A cache shared by several readers of the snapshot (its owner closes it); instead of cacheBytes. */
  cache?: RangeCache;
  /**
   * Bytes of the buffer a local store's pack ranges are read into and reused (./range-ring.ts);
   * default the read-ahead plus twice the largest range. A range that does not fit gets a buffer of its own.
   */
  ringBytes?: number;
  /**
   * Large entries of a plain store in a local folder are read, inflated and checked on a worker
   * thread (./decode-worker.ts); false: everything on the calling thread (default true).
   */
  worker?: boolean;
}

interface Range {
  pack: string;
  offset: number;
  length: number;
  ids: string[];
  locs: BlobLoc[];
}

/** The reader of a store snapshot: an ArchiveReader, plus its entries' checked plaintext as a stream. */
export interface StoreSnapshotArchiveReader extends ArchiveReader {
  /** An entry's plaintext in chunks of about 1 MiB, every blob checked; with `entrySha256` the entry's SHA-256 too. */
  stream(name: string, opts?: { verify?: 'crc32' | 'sha256'; entrySha256?: boolean; readAhead?: number }): AsyncGenerator<Buffer>;
  /** How the local cache of pack ranges served this reader (null: no cache). */
  cacheStats(): { hits: number; misses: number; bytes: number } | null;
}

/**
 * Opens a snapshot of the store for reading in place. The snapshot file is read and checked here
 * (error 'no-snapshot' when there is none); the blobs are read when the entries are.
 */
export async function openStoreSnapshotReader(repo: Repo, snapshotId: string, opts: StoreSnapshotReaderOptions = {}): Promise<StoreSnapshotArchiveReader> {
  const snap = await loadSnapshot(repo, snapshotId);
  return new StoreSnapshotReader(repo, snapshotId, snap, opts);
}

class StoreSnapshotReader implements StoreSnapshotArchiveReader {
  readonly path: string;
  readonly manifest: Manifest;
  readonly encrypted: boolean;
  readonly decryptable = true;
  private readonly entries = new Map<string, SnapshotEntry>();
  private readonly live = new Set<Readable>();
  /**
   * CRC-32 of every blob this reader has hashed against its id: a blob read again (the restore
   * reads each entry twice: checks before its transaction, then the writes) is checked by its size
   * and CRC-32, as an archive's entry is on a re-read, instead of hashed again.
   */
  private readonly verified = new Map<string, number>();
  private readonly readAhead: number;
  /** list blob id → the data blob ids it holds */
  private readonly lists = new Map<string, string[]>();
  /** pack ranges kept for a second read (a store in object storage) */
  private readonly cache: RangeCache | null;
  /** the worker thread reading large entries of a plain local store (undefined: not started yet; null: none) */
  private decoder: DecodeWorker | null | undefined;
  private closed = false;

  constructor(
    private readonly repo: Repo,
    snapshotId: string,
    snap: SnapshotFile,
    private readonly opts: StoreSnapshotReaderOptions,
  ) {
    this.path = opts.label ?? `${repo.store.location.replace(/\/+$/, '')}#${snapshotId}`;
    this.readAhead = Math.max(MAX_RANGE, opts.readAhead ?? READ_AHEAD);
    const cacheBytes = repo.store instanceof LocalStore ? 0 : (opts.cacheBytes ?? rangeCacheBytesFromEnv());
    this.cache = opts.cache ?? (cacheBytes > 0 ? new RangeCache(cacheBytes) : null);
    for (const e of snap.entries) this.entries.set(e.name, e);
    const where = storeWhere(repo.store, `${repo.prefix}snapshots/${snapshotId}`);
    const listed = Array.isArray(snap.manifest.entries) ? snap.manifest.entries : [];
    if (listed.length !== snap.entries.length || listed.some((m) => !this.entries.has(m?.name))) {
      throw new AgentVaultError('store-format', `${where}: the snapshot's manifest and its list of entries disagree`, { location: { file: where } });
    }
    this.encrypted = snap.source?.encrypted === true;
    if (this.encrypted && !repo.crypto) {
      throw new AgentVaultError('store-format', `${where}: the snapshot came from an encrypted archive but the store is not encrypted`, { location: { file: where } });
    }
    const entries: ManifestEntry[] = listed.map((m) => {
      const { encrypted: _e, ...rest } = m;
      const e = this.entries.get(m.name)!;
      return { ...rest, size: e.size, sha256: e.sha256 };
    });
    const { encryption: _x, ...rest } = snap.manifest;
    this.manifest = { ...rest, entries, ...(this.encrypted ? { encryption: repo.config.encryption } : {}) } as Manifest;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  list(): ManifestEntry[] {
    return this.manifest.entries.map((e) => ({ ...e }));
  }

  private entry(name: string): SnapshotEntry {
    if (this.closed) throw new AgentVaultError('closed', `${this.path}: the snapshot reader is closed`, { location: { file: this.path, entry: name } });
    const e = this.entries.get(name);
    if (!e) throw new AgentVaultError('missing-entry', `${this.path}: the snapshot has no entry ${JSON.stringify(name)}`, { location: { file: this.path, entry: name } });
    return e;
  }

  /** An error of the store (a damaged or missing pack or blob) as one naming the entry (and the pack) too. */
  private damaged(e: SnapshotEntry, err: unknown, pack: string | null): AgentVaultError {
    if (err instanceof AgentVaultError && (err.kind === 'io' || err.code === 'closed')) return err;
    const code = err instanceof AgentVaultError ? err.code : 'checksum';
    const from = pack ? ` from pack ${pack}` : '';
    return new AgentVaultError(code, `${this.path}: entry ${JSON.stringify(e.name)} cannot be read${from}: ${errorMessage(err)}`, {
      location: { file: err instanceof AgentVaultError && err.location?.file ? err.location.file : this.path, entry: e.name },
      cause: err,
      hint: 'run "agent-vault verify --read-data" on the vault: it names every snapshot and agent a damaged pack affects',
    });
  }

  /** The entry's data blob ids, list blob by list blob. */
  private async *dataIds(e: SnapshotEntry): AsyncGenerator<string[]> {
    for (const l of e.lists) yield await this.listIds(l, e);
  }

  /**
   * The data blob ids a list blob holds, read once per reader (32 bytes per data blob; the
   * restore and the drill read each entry more than once). Read through the range cache of a
   * store in object storage, checked against its id (decodeBlob).
   */
  private async listIds(l: string, e: SnapshotEntry): Promise<string[]> {
    const known = this.lists.get(l);
    if (known) return known;
    let list: Buffer;
    if (!this.cache) list = await readBlob(this.repo, l, `list of ${e.name}`);
    else {
      const loc = this.repo.index.get(l);
      if (!loc) {
        throw new AgentVaultError('missing-blob', `the store at ${this.repo.store.location} has no blob ${l} (list of ${e.name}): no index names it`, {
          location: { file: this.repo.store.location, entry: e.name },
        });
      }
      const key = packKey(this.repo, loc.pack);
      const where = storeWhere(this.repo.store, key);
      const buf = await this.readRange(key, loc.offset, loc.length);
      if (buf.length !== loc.length) throw new AgentVaultError('checksum', `${where} is truncated: blob ${l} lies beyond its end`, { location: { file: where, entry: e.name } });
      list = decodeBlob(buf, { id: l, type: loc.type, rawLength: loc.rawLength, compression: loc.compression }, this.repo.crypto, where);
    }
    if (list.length % 32 !== 0) throw new AgentVaultError('store-format', `list blob ${l} of ${e.name} is not a multiple of 32 bytes`);
    const ids = listIdsOf(list);
    this.lists.set(l, ids);
    return ids;
  }

  /** The read-ahead of each of the entries read side by side (together about twice one entry's). */
  private get sharedReadAhead(): number {
    return Math.max(MAX_RANGE, Math.floor((2 * this.readAhead) / this.parallel));
  }

  /** Entries read side by side: a store in object storage (its latency overlapped), else one at a time. */
  private get parallel(): number {
    return this.repo.store instanceof LocalStore ? 1 : REMOTE_PARALLEL;
  }

  /** The entry's runs of adjacent blobs, in order. */
  private async *ranges(e: SnapshotEntry): AsyncGenerator<Range> {
    let cur: Range | null = null;
    for await (const ids of this.dataIds(e)) {
      for (const id of ids) {
        const loc = this.repo.index.get(id);
        if (!loc) {
          throw new AgentVaultError('missing-blob', `the store at ${this.repo.store.location} has no blob ${id} (data of ${e.name}): no index names it`, {
            location: { file: this.repo.store.location, entry: e.name },
          });
        }
        if (cur && loc.pack === cur.pack && loc.offset === cur.offset + cur.length && cur.length + loc.length <= MAX_RANGE) {
          cur.length += loc.length;
          cur.ids.push(id);
          cur.locs.push(loc);
          continue;
        }
        if (cur) yield cur;
        cur = { pack: loc.pack, offset: loc.offset, length: loc.length, ids: [id], locs: [loc] };
      }
    }
    if (cur) yield cur;
  }

  /**
   * A pack range: from the cache when it holds it, else from the store (and then kept); through
   * `files` (a local store's open pack files) when given, into `into` when given.
   */
  private async readRange(key: string, offset: number, length: number, files?: LocalRangeReader | null, into?: Buffer): Promise<Buffer> {
    if (files) return files.read(key, offset, length, into);
    const cached = await this.cache?.get(key, offset, length);
    if (cached) return cached;
    const buf = await this.repo.store.readRange(key, offset, length);
    if (buf.length === length) await this.cache?.put(key, offset, buf); // waits only while the disk is behind
    return buf;
  }

  /** How the local cache of pack ranges served this reader (null: none). */
  cacheStats(): { hits: number; misses: number; bytes: number } | null {
    return this.cache ? { hits: this.cache.hits, misses: this.cache.misses, bytes: this.cache.bytes } : null;
  }

  /**
   * The entry's plaintext blob by blob (joined into chunks of about OUT_CHUNK), each checked: hashed
   * against its id (a blob this reader hashed before: by its CRC-32, unless `verify: 'sha256'`);
   * the entry's size checked at its end, and with `entrySha256` its SHA-256 too.
   */
  stream(name: string, opts: { verify?: 'crc32' | 'sha256'; entrySha256?: boolean; readAhead?: number } = {}): AsyncGenerator<Buffer> {
    return this.read(name, opts, false);
  }

  /**
   * stream(), and with `reuse` (chunks()) every chunk handed out valid only until the consumer asks
   * for the next one: the pack ranges of a local store are then read into one reused buffer
   * (./range-ring.ts) instead of a fresh one each. A range whose blobs are all inflated or decrypted
   * (fresh buffers) is read into it either way. A local store's pack files are kept open while the
   * entry is read (at most FILES_OPEN of them) and closed at its end, or when it stops early or fails.
   *
   * The blobs' CRC-32 (what a second read of them checks instead of their SHA-256) is recorded by a
   * full-check read (`verify: 'sha256'`: the restore's checks of its agent files, then read again
   * for the writes) and by checkEntries; a plain first read hashes each blob against its id only.
   */
  private async *read(name: string, opts: { verify?: 'crc32' | 'sha256'; entrySha256?: boolean; readAhead?: number }, reuse: boolean): AsyncGenerator<Buffer> {
    const readAhead = Math.max(MAX_RANGE, opts.readAhead ?? this.readAhead);
    const e = this.entry(name);
    const w = this.workerFor(e);
    if (w) {
      yield* this.readInWorker(w, e, opts, readAhead, reuse);
      return;
    }
    const hash = opts.entrySha256 ? createHash('sha256') : null;
    const rehash = opts.verify === 'sha256';
    const planner = this.ranges(e);
    const local = this.repo.store instanceof LocalStore && !this.cache ? this.repo.store : null;
    const files = local ? local.rangeReader(FILES_OPEN) : null;
    // stored bytes are at most the plaintext's apart from an encrypted store's headers and tags
    const ring = local ? new RangeRing(Math.min(this.opts.ringBytes ?? readAhead + 2 * MAX_RANGE, e.size + (this.repo.crypto ? MAX_RANGE : 0) + 64)) : null;
    const fresh = (r: Range): boolean => !!this.repo.crypto || r.locs.every((l) => l.compression === 'deflate');
    const queue: Array<{ r: Range; data: Promise<Buffer>; span: RingSpan | null }> = [];
    let ahead = 0;
    let planned = false;
    const fill = async (): Promise<void> => {
      while (!planned && ahead < readAhead) {
        const n = await planner.next();
        if (n.done) {
          planned = true;
          break;
        }
        const r = n.value;
        const span = ring && (reuse || fresh(r)) ? ring.alloc(r.length) : null;
        const data = this.readRange(packKey(this.repo, r.pack), r.offset, r.length, files, span?.buf);
        data.catch(() => undefined); // awaited in turn below; a consumer that stops early leaves it unread
        queue.push({ r, data, span });
        ahead += r.length;
      }
    };
    let out: Buffer[] = [];
    let outBytes = 0;
    /** ring spans of ranges decoded whole whose bytes the chunks handed out may still show (reuse) */
    let shown: RingSpan[] = [];
    const take = (b: Buffer): void => {
      const last = out[out.length - 1];
      // blobs stored as they are (plain store, not deflated) lie next to each other in the range: no copy
      if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) out[out.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
      else out.push(b);
      outBytes += b.length;
    };
    const flush = (): Buffer => {
      const b = out.length === 1 ? out[0] : Buffer.concat(out, outBytes);
      out = [];
      outBytes = 0;
      hash?.update(b);
      return b;
    };
    /** hands out a chunk; once the consumer asks for the next, the ranges decoded before it may be reused */
    const handOut = function* (): Generator<Buffer> {
      const seen = shown;
      shown = [];
      yield flush();
      for (const sp of seen) ring!.free(sp);
    };
    let size = 0;
    let pack: string | null = null;
    try {
      await fill();
      while (queue.length) {
        const { r, data, span } = queue.shift()!;
        pack = r.pack;
        const key = packKey(this.repo, r.pack);
        const where = storeWhere(this.repo.store, key);
        let buf: Buffer;
        try {
          buf = await data;
        } catch (err) {
          if (err instanceof AgentVaultError && err.kind === 'usage') {
            // the pack file is not there (LocalStore: ENOENT)
            throw new AgentVaultError('missing-blob', `${where} is missing (blob ${r.ids[0]} and ${r.ids.length - 1} more)`, { location: { file: where, entry: e.name }, cause: err });
          }
          throw err;
        }
        ahead -= r.length;
        pack = null;
        await fill(); // the next ranges are requested while this one is decoded
        pack = r.pack;
        if (buf.length !== r.length) {
          throw new AgentVaultError('checksum', `${where} is truncated: blob ${r.ids[r.ids.length - 1]} lies beyond its end`, {
            location: { file: where, entry: e.name },
          });
        }
        let views = false;
        for (let k = 0; k < r.ids.length; k++) {
          const l = r.locs[k];
          const at = l.offset - r.offset;
          const id = r.ids[k];
          const known = rehash ? undefined : this.verified.get(id);
          const b = decodeBlob(buf.subarray(at, at + l.length), { id, type: l.type, rawLength: l.rawLength, compression: l.compression }, this.repo.crypto, where, known);
          if (rehash && !this.verified.has(id)) this.verified.set(id, crc32(b));
          if (b.buffer === buf.buffer) views = true;
          size += b.length;
          if (size > e.size) throw new AgentVaultError('checksum', `it is longer than the ${e.size} bytes the snapshot records`);
          take(b);
          if (outBytes >= OUT_CHUNK) yield* handOut();
        }
        if (span) {
          if (!views) ring!.free(span);
          else if (reuse) shown.push(span); // freed once the consumer is past the chunk showing its last blob
          // else: a chunk handed out by stream() may be kept; its bytes are never reused
        }
      }
      pack = null;
      if (outBytes) yield* handOut();
      if (size !== e.size) throw new AgentVaultError('checksum', `it is ${size} bytes, the snapshot records ${e.size}`);
      const digest = hash?.digest('hex');
      if (digest !== undefined && digest !== e.sha256) throw new AgentVaultError('checksum', `its sha256 is ${digest}, the snapshot records ${e.sha256}`);
    } catch (err) {
      throw this.damaged(e, err, pack);
    } finally {
      await planner.return(undefined);
      await files?.close();
    }
  }

  /**
   * The reader's worker thread when the entry is read there: a plain store in a local folder
   * (no cache, no encryption) and an entry of at least WORKER_MIN_BYTES; started on first use
   * (null when no worker thread can be started: everything is then read here).
   */
  private workerFor(e: SnapshotEntry): DecodeWorker | null {
    if (this.opts.worker === false || e.size < WORKER_MIN_BYTES || this.repo.crypto || this.cache || !(this.repo.store instanceof LocalStore)) return null;
    if (this.decoder === undefined) {
      try {
        this.decoder = new DecodeWorker();
      } catch {
        this.decoder = null;
      }
    }
    return this.decoder;
  }

  /** The entry's ranges as the worker reads them; a blob this reader checked before is checked by its CRC-32 unless `rehash`. */
  private async decodeJob(e: SnapshotEntry, rehash: boolean, job: Omit<DecodeJob, 'size' | 'ranges' | 'recordCrcs'>): Promise<DecodeJob> {
    const store = this.repo.store as LocalStore;
    const ranges: DecodeRange[] = [];
    for await (const r of this.ranges(e)) {
      const key = packKey(this.repo, r.pack);
      ranges.push({
        file: path.join(store.root, ...key.split('/')),
        where: storeWhere(store, key),
        pack: r.pack,
        offset: r.offset,
        length: r.length,
        blobs: r.ids.map((id, k) => {
          const l = r.locs[k];
          return [id, l.offset - r.offset, l.length, l.rawLength, l.compression === 'deflate', (rehash ? undefined : this.verified.get(id)) ?? -1];
        }),
      });
    }
    return { ...job, size: e.size, ranges, recordCrcs: rehash };
  }

  /** A failure the worker reported, as the error the main thread's read raises (named by damaged()). */
  private failureError(f: DecodeFailure): AgentVaultError {
    const where = f.pack ? storeWhere(this.repo.store, packKey(this.repo, f.pack)) : this.path;
    if (f.code === 'io') return ioError(Object.assign(new Error(f.message), { code: f.errno ?? undefined }), where, f.op ?? 'read');
    return new AgentVaultError(f.code, f.message, { location: { file: where } });
  }

  /**
   * read() of an entry on the worker thread: every check done there, the chunks handed over whole
   * (`deliver` false: only checked, nothing handed over: checkEntries).
   */
  private async *readInWorker(
    w: DecodeWorker,
    e: SnapshotEntry,
    opts: { verify?: 'crc32' | 'sha256'; entrySha256?: boolean },
    readAhead: number,
    reuse: boolean,
    deliver = true,
  ): AsyncGenerator<Buffer> {
    let s: DecodeStream | null = null;
    try {
      const job = await this.decodeJob(e, opts.verify === 'sha256', { deliver, entrySha256: !!opts.entrySha256, ahead: Math.max(2, Math.ceil(readAhead / DECODE_CHUNK / 4)) });
      s = w.start(job);
      // chunks(): a chunk handed out is done with when the next is asked for; its buffer is reused
      for (let c = await s.next(); c; c = await s.next(reuse ? c : undefined)) yield c;
      const end = s.end!;
      for (const [id, crc] of end.crcs) this.verified.set(id, crc);
      if (opts.entrySha256 && end.sha256 !== e.sha256) throw new AgentVaultError('checksum', `its sha256 is ${end.sha256}, the snapshot records ${e.sha256}`);
    } catch (err) {
      if (err instanceof DecodeError) throw this.damaged(e, this.failureError(err.failure), err.failure.pack);
      throw this.damaged(e, err, null);
    } finally {
      s?.stop();
    }
  }

  /** The entry's plaintext chunk by chunk, checked as stream() does; a chunk is valid until the next call to next(). */
  async chunks(name: string): Promise<ChunkReader> {
    const it = this.read(name, {}, true);
    return { next: async () => ((await it.next()).value as Buffer | undefined) ?? null, close: async () => void (await it.return(undefined)) };
  }

  /**
   * Reads each entry through: every blob hashed against its id, the entry's size at its end. A
   * plain store in a local folder has large entries checked on its worker thread
   * (./decode-worker.ts), beside the caller's other work.
   */
  async checkEntries(names: string[]): Promise<Array<{ entry: string; error: string }>> {
    const bad: Array<{ entry: string; error: string }> = [];
    const onMain = async (list: string[]): Promise<void> => {
      const errors = await eachLimited(list, this.parallel, async (name) => {
        for await (const _ of this.stream(name, { verify: 'sha256', readAhead: this.sharedReadAhead })) {
          /* drain: the stream checks */
        }
      });
      list.forEach((name, i) => {
        if (errors[i] !== undefined) bad.push({ entry: name, error: errorMessage(errors[i]) });
      });
    };
    const onWorker = names.filter((name) => this.entries.has(name) && this.workerFor(this.entries.get(name)!));
    const w = this.decoder;
    // on the worker: all at once (it reads them in turn), nothing handed back but the blobs' CRC-32
    await Promise.all([
      onMain(names.filter((name) => !onWorker.includes(name))),
      ...onWorker.map(async (name) => {
        try {
          for await (const _ of this.readInWorker(w!, this.entry(name), { verify: 'sha256' }, this.readAhead, false, false)) {
            /* nothing is handed over */
          }
        } catch (err) {
          bad.push({ entry: name, error: errorMessage(err) });
        }
      }),
    ]);
    return bad;
  }

  async readEntry(name: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const b of this.stream(name, { verify: 'sha256', entrySha256: true })) parts.push(b);
    return Buffer.concat(parts);
  }

  async readJson<T>(name: string): Promise<T> {
    const buf = await this.readEntry(name);
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch (e) {
      throw new AgentVaultError('json-syntax', `${this.path}!${name}: invalid JSON: ${errorMessage(e)}`, { location: { file: this.path, entry: name } });
    }
  }

  async openStream(name: string): Promise<NodeJS.ReadableStream> {
    this.entry(name);
    const s = Readable.from(this.stream(name, { verify: 'sha256', entrySha256: true }), { objectMode: false });
    this.live.add(s);
    s.on('close', () => this.live.delete(s));
    return s;
  }

  async verifyAll(): Promise<{ entry: string; ok: boolean; error?: string }[]> {
    // the manifest is part of the snapshot file, which was checked when the reader opened
    const out: { entry: string; ok: boolean; error?: string }[] = [{ entry: MANIFEST_ENTRY, ok: true }];
    const names = this.manifest.entries.map((e) => e.name);
    const errors = await eachLimited(names, this.parallel, async (name) => {
      for await (const _ of this.stream(name, { verify: 'sha256', entrySha256: true, readAhead: this.sharedReadAhead })) {
        /* drain: the stream checks */
      }
    });
    names.forEach((name, i) => out.push(errors[i] === undefined ? { entry: name, ok: true } : { entry: name, ok: false, error: errorMessage(errors[i]) }));
    return out;
  }

  /** The bulk streams (the restore's and the diff's); they are the reader's own: closing them does nothing, closing the reader ends them. */
  entryStreams(): EntrySource {
    if (this.closed) throw new AgentVaultError('closed', `${this.path}: the snapshot reader is closed`, { location: { file: this.path } });
    return {
      file: this.path,
      stream: (name, opts) => this.stream(name, opts),
      chunks: (name) => this.chunks(name),
      checkEntries: (names) => this.checkEntries(names),
      // a blob this reader has not read before is hashed against its id (stream() above)
      checksOnRead: true,
      close: () => undefined,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.live]) s.destroy();
    if (!this.opts.cache) await this.cache?.close();
    await this.decoder?.close();
    await this.opts.onClose?.();
  }
}

/** Runs `fn` over the items, at most `limit` at a time; the error of each item (undefined: it succeeded), in order. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<unknown[]> {
  const errors: unknown[] = new Array(items.length).fill(undefined);
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        await fn(items[i]);
      } catch (e) {
        errors[i] = e ?? new Error('failed');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, run));
  return errors;
}
