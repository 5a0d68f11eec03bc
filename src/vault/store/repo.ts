/**
 * The deduplicating store (docs/FORMAT.md, part II): content-addressed blobs in pack files, index
 * files mapping blob → pack, snapshot files listing an archive's manifest and per entry its blobs,
 * all in one ObjectStore (a local folder or an S3 bucket, one file = one object) under a prefix
 * (default `store/`, beside a vault's own files).
 *
 * Writing order makes every run crash-safe: packs first, then the index naming them, then the
 * snapshot file; prune writes its new packs and its new index before it deletes anything, and a
 * reader ignores what is not complete (an unindexed pack is invisible; a superseded index is
 * ignored). Every file except the config is named by the SHA-256 of its stored bytes, so damage
 * is detectable without the key.
 *
 * Concurrency: one writer at a time (ingest, forget, prune); the caller holds the vault lock
 * (src/vault/remote/lock.ts). Readers (export, list, check) may run beside an ingest.
 */
import { randomBytes, createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../../core/errors';
import {
  buildManifest,
  checkManifest,
  createArchiveWriter,
  jsonEntryBytes,
  MEDIA_TYPES,
  openArchive,
  reserveEntry,
  safeEntrySegment,
  type AddEntryOptions,
  type AgentReuse,
  type ArchiveWriter,
  type Manifest,
  type ManifestAgent,
  type ManifestAgentCounts,
  type ManifestEntry,
  type ManifestInput,
} from '../../format/archive';
import { ArchiveCrypto, noKeyError, openArchiveCrypto, parseEncryptionSection, type ArchiveKey, type DecryptOptions } from '../../format/crypto';
import type { ObjectStore } from '../remote/store';
import { fileSha256 } from '../../core/hash';
import { BlobIndex } from './blob-index';
import { Chunker, chunkKindFor, DEFAULT_CHUNKER, listCut, type ChunkerParams, type ChunkKind } from './chunker';
import {
  checkPackHeader,
  compressible,
  configMac,
  decodeBlob,
  decodeMeta,
  DEFAULT_PACK_SIZE,
  encodeBlobAsync,
  encodeMeta,
  encodeMetaText,
  finishPack,
  headerLength,
  ID_RE,
  PACK_TRAILER_SIZE,
  parseConfig,
  sha256Hex,
  STORE_FORMAT,
  STORE_VERSION,
  typeCode,
  typeOf,
  verifyConfigMac,
  type AgentKeys,
  type BlobType,
  type Compression,
  type IndexFile,
  type PackedBlob,
  type PackHeader,
  type SnapshotEntry,
  type SnapshotFile,
  type StoreConfig,
} from './format';

export const DEFAULT_PREFIX = 'store/';
const CONFIG_KEY = 'config.json';
/** The temp file of a store file (`<name>.tmp-<12 hex>` beside it, src/core/fs.ts tempPathFor; older writers: `.<name>.tmp-<12 hex>`), left by a killed write. */
const STORE_TEMP = /^(data\/[0-9a-f]{2}|index|snapshots)\/\.?[0-9a-f]{64}\.tmp-[0-9a-f]{12}$/;
/** Blobs of one pack read with one range request when they lie next to each other, up to this many bytes. */
const MAX_RANGE = 8 * 1024 * 1024;

export { BlobIndex, type BlobLoc } from './blob-index';

/** A live pack: its size, and its blob records rebuilt from the compact index on each read of `blobs`. */
export interface StorePack {
  readonly size: number;
  readonly blobs: PackedBlob[];
}

class IndexedPack implements StorePack {
  constructor(
    readonly id: string,
    readonly size: number,
    private readonly index: BlobIndex,
  ) {}
  get blobs(): PackedBlob[] {
    return this.index.packBlobs(this.id);
  }
}

/** Adds a pack's records to the in-memory index (a pack indexed already is left as it is). */
function indexPack(repo: Repo, id: string, size: number, blobs: readonly PackedBlob[]): void {
  if (repo.index.addPack(id, blobs)) repo.packs.set(id, new IndexedPack(id, size, repo.index));
}

export interface Repo {
  readonly store: ObjectStore;
  /** '' or ends with '/' */
  readonly prefix: string;
  readonly config: StoreConfig;
  /** the keys of an encrypted store; undefined for a plain one */
  readonly crypto: ArchiveCrypto | undefined;
  /** blob id → where it is (live indexes only); compact (./blob-index.ts): get / has / iteration */
  index: BlobIndex;
  /** live pack id → its size and blob records (from the index) */
  packs: Map<string, StorePack>;
  /** every index file present (live or superseded) */
  indexFiles: string[];
  /** index files that could not be read (hash mismatch, undecodable) */
  damagedIndexes: Array<{ key: string; message: string }>;
}

/** The full name of a store file, for messages. */
export function storeWhere(store: ObjectStore, key: string): string {
  return `${store.location.replace(/\/+$/, '')}/${key}`;
}

function normPrefix(p: string | undefined): string {
  const s = p ?? DEFAULT_PREFIX;
  if (s === '') return '';
  if (s.startsWith('/') || s.split('/').some((x, i, a) => (x === '' && i !== a.length - 1) || x === '.' || x === '..')) {
    throw new AgentVaultError('usage', `not a store prefix: ${JSON.stringify(s)}`, { kind: 'usage' });
  }
  return s.endsWith('/') ? s : `${s}/`;
}

/** The object key of a pack. */
export const packKey = (r: Repo, id: string): string => `${r.prefix}data/${id.slice(0, 2)}/${id}`;
const indexKey = (r: Repo, id: string): string => `${r.prefix}index/${id}`;
const snapshotKey = (r: Repo, id: string): string => `${r.prefix}snapshots/${id}`;

// ---------------------------------------------------------------------------------------------
// init / open

export interface InitOptions {
  prefix?: string;
  /** encrypt the store with this key (from a passphrase or a key file) */
  key?: ArchiveKey;
  chunker?: ChunkerParams;
  packSize?: number;
}

/** Creates a new store (error 'exists' when one is there already). */
export async function initStore(store: ObjectStore, opts: InitOptions = {}): Promise<Repo> {
  const prefix = normPrefix(opts.prefix);
  const crypto = opts.key ? ArchiveCrypto.forWriting(opts.key) : undefined;
  const chunker = opts.chunker ?? DEFAULT_CHUNKER;
  const config: StoreConfig = {
    format: STORE_FORMAT,
    version: STORE_VERSION,
    id: randomBytes(16).toString('hex'),
    created_at: new Date().toISOString(),
    chunker: { records: { ...chunker.records }, bytes: { ...chunker.bytes }, lists: { ...chunker.lists }, gear: 'sha256-v1', record_hash: 'fnv1a-32' },
    pack_size: opts.packSize ?? DEFAULT_PACK_SIZE,
    encryption: crypto ? crypto.section() : null,
    mac: null,
  };
  parseConfig(Buffer.from(JSON.stringify(config)), 'new store config'); // checks the parameters
  if (crypto) config.mac = configMac(config, crypto);
  const key = `${prefix}${CONFIG_KEY}`;
  const bytes = Buffer.from(JSON.stringify(config, null, 2) + '\n', 'utf8');
  let created: boolean;
  try {
    created = await store.writeBytes(key, bytes, { ifAbsent: true });
  } catch (e) {
    if ((e as AgentVaultError)?.code !== 's3-no-conditional-put') throw e;
    if (await store.head(key)) created = false;
    else created = await store.writeBytes(key, bytes);
  }
  if (!created) throw new AgentVaultError('exists', `${storeWhere(store, key)} exists: there is a store here already; nothing was changed`, { location: { file: storeWhere(store, key) } });
  const repo: Repo = { store, prefix, config, crypto, index: new BlobIndex(), packs: new Map(), indexFiles: [], damagedIndexes: [] };
  return repo;
}

export interface OpenOptions extends DecryptOptions {
  prefix?: string;
}

/** Opens a store: reads its config (checking the key of an encrypted one) and its index. */
export async function openRepo(store: ObjectStore, opts: OpenOptions = {}): Promise<Repo> {
  const prefix = normPrefix(opts.prefix);
  const key = `${prefix}${CONFIG_KEY}`;
  const where = storeWhere(store, key);
  const bytes = await store.readBytes(key);
  if (!bytes)
    throw new AgentVaultError('no-store', `${where} does not exist: there is no store at ${store.location}${prefix ? ` (prefix ${prefix})` : ''}`, { location: { file: where }, kind: 'usage' });
  const config = parseConfig(bytes, where);
  let crypto: ArchiveCrypto | undefined;
  if (config.encryption) {
    const section = parseEncryptionSection(config.encryption, where);
    if (opts.passphrase === undefined && opts.key === undefined) throw noKeyError(where, 'nothing was read');
    crypto = await openArchiveCrypto(section, opts, where);
    if (!verifyConfigMac(config, crypto)) {
      throw new AgentVaultError('tampered', `${where}: the store config failed authentication: it was changed after the store was created`, {
        location: { file: where },
        hint: 'do not trust this store; use another copy',
      });
    }
  } else if (opts.requireEncrypted) {
    throw new AgentVaultError('not-encrypted', `${where}: the store is not encrypted, but an encrypted one was expected`, { location: { file: where } });
  }
  const repo: Repo = { store, prefix, config, crypto, index: new BlobIndex(), packs: new Map(), indexFiles: [], damagedIndexes: [] };
  await loadIndex(repo);
  return repo;
}

async function listIds(repo: Repo, dir: 'index' | 'snapshots' | 'data'): Promise<{ ids: string[]; sizes: Map<string, number>; unexpected: string[] }> {
  const ids: string[] = [];
  const sizes = new Map<string, number>();
  const unexpected: string[] = [];
  const base = `${repo.prefix}${dir}/`;
  for await (const o of repo.store.list(base)) {
    const rest = o.key.slice(base.length);
    let id: string | undefined;
    if (dir === 'data') {
      const m = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(rest);
      if (m && m[2].startsWith(m[1])) id = m[2];
    } else if (ID_RE.test(rest)) id = rest;
    if (id) {
      ids.push(id);
      sizes.set(id, o.size);
    } else unexpected.push(o.key);
  }
  return { ids, sizes, unexpected };
}

/** Reads a file named by the SHA-256 of its bytes; null when absent; error 'checksum' when the bytes do not match. */
async function readNamed(repo: Repo, key: string, id: string): Promise<Buffer | null> {
  const b = await repo.store.readBytes(key);
  if (!b) return null;
  if (sha256Hex(b) !== id)
    throw new AgentVaultError('checksum', `${storeWhere(repo.store, key)} is damaged: its content does not hash to its name`, { location: { file: storeWhere(repo.store, key) } });
  return b;
}

/** (Re)loads the live index: every index file not superseded by another one present. */
export async function loadIndex(repo: Repo): Promise<void> {
  const { ids } = await listIds(repo, 'index');
  // the stored (deflated) bytes of each readable index file are kept, not its decoded records: the
  // records go into the compact index one file at a time once the superseded files are known
  const files = new Map<string, Buffer>();
  const damaged: Array<{ key: string; message: string }> = [];
  const superseded = new Set<string>();
  for (const id of ids) {
    const key = indexKey(repo, id);
    try {
      const b = await readNamed(repo, key, id);
      if (!b) continue; // deleted meanwhile
      const f = decodeIndexFile(repo, key, b);
      files.set(id, b);
      for (const s of f.supersedes) superseded.add(s);
    } catch (e) {
      damaged.push({ key, message: errorMessage(e) });
    }
  }
  repo.index = new BlobIndex();
  repo.packs = new Map();
  for (const id of [...files.keys()].sort()) {
    if (superseded.has(id)) continue;
    const f = decodeIndexFile(repo, indexKey(repo, id), files.get(id)!);
    files.delete(id);
    for (const p of f.packs) indexPack(repo, p.id, p.size, p.blobs);
  }
  repo.indexFiles = ids;
  repo.damagedIndexes = damaged;
}

/** An index file decoded and its records checked (error 'store-format' when they are not what FORMAT.md says). */
function decodeIndexFile(repo: Repo, key: string, b: Buffer): IndexFile {
  const where = storeWhere(repo.store, key);
  const f = decodeMeta<IndexFile>(b, 'index', repo.crypto, where);
  const bad = (): never => {
    throw new AgentVaultError('store-format', `${where} is not a version 1 index file`, { location: { file: where } });
  };
  if (!f || f.version !== 1 || !Array.isArray(f.packs) || !Array.isArray(f.supersedes)) bad();
  for (const p of f.packs) {
    if (!p || typeof p.id !== 'string' || !ID_RE.test(p.id) || typeof p.size !== 'number' || !Array.isArray(p.blobs)) bad();
    for (const r of p.blobs) if (!Array.isArray(r) || typeof r[0] !== 'string' || !ID_RE.test(r[0])) bad();
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// writing blobs

interface NewPack {
  id: string;
  size: number;
  readonly blobs: PackedBlob[];
}

/** Collects blobs into packs of about config.pack_size and uploads each when full. */
class PackWriter {
  private parts: Buffer[] = [];
  private records: PackedBlob[] = [];
  private size = 0;
  /**
   * ids queued (BlobPipeline) or in the pack being filled: at most a pack's blobs plus the
   * pipeline's depth; a written pack's ids move to `own`
   */
  private readonly current = new Set<string>();
  /** the records of the packs this writer wrote (not yet indexed), compact (./blob-index.ts) */
  private readonly own = new BlobIndex();
  readonly written: NewPack[] = [];
  storedBytes = 0;

  constructor(
    private readonly repo: Repo,
    private readonly onPackWritten?: () => Promise<void> | void,
  ) {}

  /** the blob is queued, in the pack being filled or in a pack this writer wrote */
  has(id: string): boolean {
    return this.current.has(id) || this.own.has(id);
  }

  /** marks a blob as queued (it reaches add() later) */
  reserve(id: string): void {
    this.current.add(id);
  }

  async add(id: string, type: BlobType, stored: Buffer, rawLength: number, compression: Compression): Promise<void> {
    this.records.push([id, typeCode(type), this.size, stored.length, rawLength, compression === 'deflate' ? 'd' : 'n']);
    this.parts.push(stored);
    this.size += stored.length;
    this.current.add(id);
    if (this.size >= this.repo.config.pack_size) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.records.length === 0) return;
    const header: PackHeader = { version: 1, blobs: this.records };
    const data = finishPack(this.parts, header, this.repo.crypto);
    const id = sha256Hex(data);
    await this.repo.store.writeBytes(packKey(this.repo, id), data);
    this.own.addPack(id, this.records);
    for (const r of this.records) this.current.delete(r[0]);
    const own = this.own;
    this.written.push({
      id,
      size: data.length,
      get blobs(): PackedBlob[] {
        return own.packBlobs(id);
      },
    });
    this.storedBytes += data.length;
    this.parts = [];
    this.records = [];
    this.size = 0;
    await this.onPackWritten?.();
  }
}

/**
 * Writes an index file for packs just written; they become visible to readers. The JSON text is
 * built pack by pack (the same text as JSON.stringify of the whole IndexFile), so that the records
 * of one pack at a time exist as arrays.
 */
async function writeIndex(repo: Repo, packs: NewPack[], supersedes: string[]): Promise<{ id: string; bytes: number }> {
  const parts: Buffer[] = [Buffer.from(`{"version":1,"supersedes":${JSON.stringify(supersedes)},"packs":[`, 'utf8')];
  packs.forEach((p, i) => parts.push(Buffer.from((i ? ',' : '') + JSON.stringify({ id: p.id, size: p.size, blobs: p.blobs }), 'utf8')));
  parts.push(Buffer.from(']}', 'utf8'));
  const data = encodeMetaText(Buffer.concat(parts), 'index', repo.crypto);
  const id = sha256Hex(data);
  await repo.store.writeBytes(indexKey(repo, id), data);
  return { id, bytes: data.length };
}

function addToIndex(repo: Repo, packs: NewPack[]): void {
  for (const p of packs) indexPack(repo, p.id, p.size, p.blobs);
}

interface BlobStats {
  blobs: number;
  newBlobs: number;
  newBytes: number;
}

/**
 * putBlob with the compression of new blobs in the thread pool, up to `depth` blobs in flight, so
 * that deflating overlaps with reading and chunking; blobs reach the pack writer in order. Call
 * drain() before the pack writer's flush().
 */
class BlobPipeline {
  private queue: Array<{ id: string; type: BlobType; rawLength: number; p: Promise<{ stored: Buffer; compression: Compression }> }> = [];

  constructor(
    private readonly repo: Repo,
    readonly w: PackWriter,
    readonly st: BlobStats,
    private readonly depth = 4,
  ) {}

  async put(plain: Buffer, type: BlobType, kind: ChunkKind | 'list'): Promise<string> {
    const id = sha256Hex(plain);
    this.st.blobs++;
    if (this.repo.index.has(id) || this.w.has(id)) return id;
    this.w.reserve(id);
    this.st.newBlobs++;
    this.st.newBytes += plain.length;
    // a blob stored as it is must not pin the (larger) buffer its plaintext may be a view of
    const p = encodeBlobAsync(plain, type, id, compressible(kind), this.repo.crypto).then((r) => (r.stored === plain ? { ...r, stored: Buffer.from(plain) } : r));
    p.catch(() => undefined);
    this.queue.push({ id, type, rawLength: plain.length, p });
    while (this.queue.length > this.depth) await this.next();
    return id;
  }

  private async next(): Promise<void> {
    const q = this.queue.shift()!;
    const r = await q.p;
    await this.w.add(q.id, q.type, r.stored, q.rawLength, r.compression);
  }

  async drain(): Promise<void> {
    while (this.queue.length) await this.next();
  }
}

/**
 * One entry's bytes into the store: cut into chunks as they arrive (./chunker.ts), each chunk
 * hashed, and only chunks the store (or this writer) lacks are compressed, encrypted and packed;
 * the chunk ids go into list blobs. Returns the entry's plaintext size, SHA-256 and list blobs.
 */
async function putEntry(repo: Repo, bp: BlobPipeline, kind: ChunkKind, source: AsyncIterable<Buffer>, borrow = false): Promise<{ size: number; sha256: string; lists: string[] }> {
  const params = repo.config.chunker;
  const chunker = new Chunker(kind, params, borrow);
  const h = createHash('sha256');
  let size = 0;
  const lists: string[] = [];
  let list: Buffer[] = [];
  const addId = async (id: string): Promise<void> => {
    const raw = Buffer.from(id, 'hex');
    list.push(raw);
    if (listCut(raw, list.length, params.lists)) {
      lists.push(await bp.put(Buffer.concat(list), 'list', 'list'));
      list = [];
    }
  };
  for await (const b of source) {
    h.update(b);
    size += b.length;
    for (const c of chunker.push(b)) await addId(await bp.put(c, 'data', kind));
  }
  for (const c of chunker.end()) await addId(await bp.put(c, 'data', kind));
  if (list.length) lists.push(await bp.put(Buffer.concat(list), 'list', 'list'));
  return { size, sha256: h.digest('hex'), lists };
}

// ---------------------------------------------------------------------------------------------
// ingest

export interface IngestResult {
  snapshotId: string;
  entries: number;
  /** plaintext bytes of the archive's (the snapshot's) entries, those copied from a parent snapshot included */
  bytesRead: number;
  /** of those, the bytes of entries copied unchanged from the parent snapshot (not read, not chunked) */
  bytesCopied?: number;
  blobs: number;
  newBlobs: number;
  /** plaintext bytes of the new blobs */
  newBytes: number;
  /** bytes written to the store: packs + index + snapshot file */
  bytesAdded: number;
}

export interface IngestOptions {
  /** passphrase or key of an encrypted archive (the store must be encrypted too) */
  decrypt?: DecryptOptions;
  /** snapshot time (default: now) */
  time?: string;
  /**
   * SHA-256 of the archive file, recorded in the snapshot (`source.sha256`) so that a migration can
   * tell which archives it has imported: the hex digest when the caller knows it (the vault index
   * does), or true to compute it (one more read of the file).
   */
  sourceSha256?: string | true;
}

/**
 * Puts a snapshot archive into the store, entry by entry, streaming: writes only the blobs the
 * store lacks, then the index, then the snapshot file. Checks every entry's size and SHA-256 (plain
 * archives) or authenticates it (encrypted ones) on the way; nothing becomes visible on failure.
 */
export async function ingestArchive(repo: Repo, archivePath: string, opts: IngestOptions = {}): Promise<IngestResult> {
  const reader = await openArchive(archivePath, { decrypt: opts.decrypt });
  try {
    if (reader.encrypted && !repo.crypto) {
      throw new AgentVaultError('store-not-encrypted', `${archivePath} is encrypted and the store at ${repo.store.location} is not: its secrets would be stored in plain text; nothing was written`, {
        location: { file: archivePath },
        hint: 'put encrypted archives into an encrypted store',
      });
    }
    if (reader.encrypted && !reader.decryptable) throw noKeyError(archivePath);
    const st: BlobStats = { blobs: 0, newBlobs: 0, newBytes: 0 };
    const w = new PackWriter(repo);
    const bp = new BlobPipeline(repo, w, st);
    const streams = reader.entryStreams();
    const entries: SnapshotEntry[] = [];
    let bytesRead = 0;
    for (const e of reader.manifest.entries) {
      const kind = chunkKindFor(e.name);
      const cr = await streams.chunks(e.name);
      const put = await putEntry(repo, bp, kind, {
        async *[Symbol.asyncIterator]() {
          try {
            for (;;) {
              const b = await cr.next();
              if (!b) break;
              yield b;
            }
          } finally {
            await cr.close();
          }
        },
      });
      const { size, lists } = put;
      const sha = put.sha256;
      if (!reader.encrypted && (size !== e.size || sha !== e.sha256)) {
        throw new AgentVaultError(
          'checksum',
          `${archivePath}!${e.name} is damaged: ${size} bytes with sha256 ${sha}, the manifest says ${e.size} bytes with ${e.sha256}; nothing was written to the store`,
          {
            location: { file: archivePath, entry: e.name },
          },
        );
      }
      bytesRead += size;
      entries.push({ name: e.name, size, sha256: sha, media_type: e.media_type, ...(e.compression ? { compression: e.compression } : {}), lists });
    }
    await bp.drain();
    await w.flush();
    let bytesAdded = w.storedBytes;
    if (w.written.length) {
      const ix = await writeIndex(repo, w.written, []);
      repo.indexFiles.push(ix.id);
      bytesAdded += ix.bytes;
      addToIndex(repo, w.written);
    }
    const st0 = await fsp.stat(archivePath);
    const sourceSha = opts.sourceSha256 === true ? (await fileSha256(archivePath)).sha256 : (opts.sourceSha256 ?? null);
    const manifest: Manifest = { ...reader.manifest };
    delete manifest.encryption;
    const snap: SnapshotFile = {
      version: 1,
      time: opts.time ?? new Date().toISOString(),
      source: { file: path.basename(archivePath), size: st0.size, sha256: sourceSha, encrypted: reader.encrypted },
      manifest,
      entries,
    };
    const data = encodeMeta(snap, 'snapshot', repo.crypto);
    const snapshotId = sha256Hex(data);
    await repo.store.writeBytes(snapshotKey(repo, snapshotId), data);
    bytesAdded += data.length;
    return { snapshotId, entries: entries.length, bytesRead, blobs: st.blobs, newBlobs: st.newBlobs, newBytes: st.newBytes, bytesAdded };
  } finally {
    await reader.close();
  }
}

// ---------------------------------------------------------------------------------------------
// writing a snapshot straight from an export (no archive in between)

export interface SnapshotWriterOptions {
  /**
   * The archive name the snapshot is known by (`<vault id>.avsnap`), recorded as `source.file`;
   * no such file is written (`source.size` 0, `source.sha256` null).
   */
  sourceFile: string;
  /**
   * The snapshot holds what an encrypted archive would (secrets/ entries; an export of it is
   * encrypted): needs an encrypted store.
   */
  encrypted: boolean;
  /** a path named in messages; its folder is a work folder for entries staged on disk (Qdrant) */
  path: string;
  /**
   * Copy unchanged agents from the parent snapshot (default true). false: every agent is written
   * (the keys are still recorded, so the next backup can reuse them).
   */
  reuseParent?: boolean;
}

/** The parent snapshot an export reuses agents from. */
export interface ParentSnapshot {
  /** its id in the store */
  id: string;
  /** the archive name it is known by (`<vault id>.avsnap`) */
  file: string;
  snap: SnapshotFile;
  keys: Map<string, { key: string; entries: string[] }>;
}

/**
 * An ArchiveWriter whose entries go straight into the store: each entry is cut into chunks as its
 * bytes are produced (the same chunks an ingest of the archive would make), each chunk hashed,
 * and only the chunks the store lacks are compressed (in the thread pool), encrypted and packed.
 * finish() writes the last pack and the index naming the new packs and builds the snapshot file;
 * commit() writes the snapshot file, which lists the snapshot (so the caller decides when it is
 * listed). Until finish() the packs are not indexed and abort() removes them (they are this run's
 * own files); after it they are indexed and, if the snapshot is never committed, unreferenced
 * (a prune sweeps them). Entries are consumed in the order they are added (addStream resolves
 * once its stream is read through), the manifest is built as the archive writer builds it, and
 * the snapshot file is the same (version 1) as an ingest of that archive would write, except for
 * `source` (no file), each manifest entry's size and sha256, which are the plaintext's (an
 * archive's are those of the stored bytes), and `agent_keys`: with `reuse` (the export's change
 * keys, src/letta/export/change-key.ts) an agent whose key the parent snapshot recorded is copied
 * from it, entries and manifest record, without its data being read.
 */
export class StoreSnapshotWriter implements ArchiveWriter {
  readonly path: string;
  readonly encrypted: boolean;
  private readonly st: BlobStats = { blobs: 0, newBlobs: 0, newBytes: 0 };
  private readonly w: PackWriter;
  private readonly bp: BlobPipeline;
  private readonly entries: SnapshotEntry[] = [];
  private readonly manifestEntries: ManifestEntry[] = [];
  private readonly names = new Map<string, string>();
  private state: 'open' | 'busy' | 'finished' | 'committed' | 'failed' = 'open';
  private snap: SnapshotFile | undefined;
  private bytesAdded = 0;
  private indexed = false;
  private keys: AgentKeys | undefined;
  private parentSnap: ParentSnapshot | null = null;
  /** agents copied from the parent snapshot */
  reusedAgents = 0;
  /** plaintext bytes of the entries copied from the parent snapshot */
  private copiedBytes = 0;

  /** Copying unchanged agents from the parent snapshot (src/letta/export/change-key.ts). */
  readonly reuse: AgentReuse = {
    begin: (database) => this.beginReuse(database),
    reuseAgent: (agentId, key) => this.reuseAgent(agentId, key),
    recordAgent: (agentId, key, agent) => {
      this.keys?.agents.push({ id: agentId, key, entries: agentEntries(agent) });
    },
  };

  /** The parent snapshot chosen by the export (null: none). */
  get parent(): ParentSnapshot | null {
    return this.parentSnap;
  }

  constructor(
    private readonly repo: Repo,
    private readonly opts: SnapshotWriterOptions,
  ) {
    if (opts.encrypted && !repo.crypto) {
      throw new AgentVaultError(
        'store-not-encrypted',
        `the backup is to be encrypted and the store at ${repo.store.location} is not (its secrets would be stored in plain text); nothing was written`,
        {
          kind: 'usage',
          remedy: 'init-store',
        },
      );
    }
    this.path = opts.path;
    this.encrypted = opts.encrypted;
    this.w = new PackWriter(repo);
    this.bp = new BlobPipeline(repo, this.w, this.st);
  }

  private reserve(name: string, opts: AddEntryOptions | undefined): ManifestEntry {
    if (this.state !== 'open')
      throw new AgentVaultError('write-failed', `snapshot ${this.opts.sourceFile} is ${this.state === 'busy' ? 'busy with another entry' : 'no longer open'}; ${JSON.stringify(name)} cannot be added`);
    return reserveEntry(this.names, name, opts, { file: this.path, encrypted: this.encrypted, what: 'a snapshot' });
  }

  async addJson(name: string, value: unknown, opts?: AddEntryOptions): Promise<void> {
    await this.addBuffer(name, jsonEntryBytes(name, value, this.path), { mediaType: MEDIA_TYPES.json, ...opts });
  }

  async addBuffer(name: string, data: Buffer, opts?: AddEntryOptions): Promise<void> {
    await this.addStream(name, [data], opts);
  }

  async addStream(name: string, data: NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer>, opts?: AddEntryOptions): Promise<ManifestEntry> {
    const entry = this.reserve(name, opts);
    this.state = 'busy';
    const src = data as AsyncIterable<Buffer | Uint8Array | string>;
    async function* buffers(): AsyncGenerator<Buffer> {
      for await (const c of src) yield Buffer.isBuffer(c) ? c : typeof c === 'string' ? Buffer.from(c, 'utf8') : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    }
    let put: { size: number; sha256: string; lists: string[] };
    try {
      // an export's buffers are fresh and never changed after they are handed over (the archive
      // writer relies on that too): chunks are views of them
      put = await putEntry(this.repo, this.bp, chunkKindFor(name), buffers(), true);
    } catch (e) {
      this.state = 'failed';
      if (e instanceof AgentVaultError) throw e;
      const errno = (e as NodeJS.ErrnoException)?.code;
      throw new AgentVaultError('write-failed', `cannot write entry ${JSON.stringify(name)} into the store at ${this.repo.store.location}: ${errorMessage(e)}`, {
        location: { file: this.path, entry: name },
        cause: e,
        ...(errno && /^E[A-Z]+$/.test(errno) ? {} : { kind: 'usage' as const }),
      });
    }
    this.state = 'open';
    entry.size = put.size;
    entry.sha256 = put.sha256;
    this.manifestEntries.push(entry);
    this.entries.push({ name, size: put.size, sha256: put.sha256, media_type: entry.media_type, ...(entry.compression ? { compression: entry.compression } : {}), lists: put.lists });
    return { ...entry };
  }

  /**
   * The newest snapshot of the store written from `database` that records change keys becomes the
   * parent (unless reuseParent is false); keys are recorded for this snapshot from here on.
   */
  private async beginReuse(database: string): Promise<{ parent: string } | null> {
    this.keys = { database, agents: [] };
    if (this.opts.reuseParent === false) return null;
    let best: { id: string; snap: SnapshotFile } | null = null;
    for (const id of (await listIds(this.repo, 'snapshots')).ids) {
      let snap: SnapshotFile;
      try {
        snap = await loadSnapshot(this.repo, id);
      } catch {
        continue; // deleted meanwhile or unreadable: not a parent
      }
      const k = snap.agent_keys;
      if (!k || k.database !== database || !Array.isArray(k.agents)) continue;
      if (!best || snap.time > best.snap.time || (snap.time === best.snap.time && id > best.id)) best = { id, snap };
    }
    if (!best) return null;
    const keys = new Map<string, { key: string; entries: string[] }>();
    for (const a of best.snap.agent_keys!.agents) if (a && typeof a.id === 'string' && typeof a.key === 'string' && Array.isArray(a.entries)) keys.set(a.id, { key: a.key, entries: a.entries });
    this.parentSnap = { id: best.id, file: best.snap.source?.file ?? '', snap: best.snap, keys };
    return { parent: this.parentSnap.file.replace(/\.avsnap$/, '') || best.id };
  }

  /**
   * On a key match: the agent's entries (name, size, SHA-256, media type, lists: no data is read)
   * and manifest record are copied from the parent. Not when any of them is missing from the
   * parent or a list blob is not in the store's index.
   */
  private async reuseAgent(agentId: string, key: string): Promise<ManifestAgent | null> {
    const p = this.parentSnap;
    const rec = p?.keys.get(agentId);
    if (!p || !rec || rec.key !== key) return null;
    const agent = (p.snap.manifest.agents ?? []).find((a) => a.id === agentId);
    if (!agent) return null;
    const names = agentEntries(agent);
    if (names.length !== rec.entries.length || names.some((n) => !rec.entries.includes(n))) return null;
    const found: SnapshotEntry[] = [];
    for (const n of names) {
      const e = p.snap.entries.find((x) => x.name === n);
      if (!e || !Array.isArray(e.lists) || e.lists.some((l) => !this.repo.index.has(l))) return null;
      found.push(e);
    }
    for (const e of found) {
      const entry = this.reserve(e.name, { mediaType: e.media_type });
      entry.size = e.size;
      entry.sha256 = e.sha256;
      this.manifestEntries.push(entry);
      this.entries.push({ name: e.name, size: e.size, sha256: e.sha256, media_type: entry.media_type, ...(entry.compression ? { compression: entry.compression } : {}), lists: [...e.lists] });
    }
    this.keys?.agents.push({ id: agentId, key, entries: names });
    this.reusedAgents++;
    this.copiedBytes += found.reduce((n, e) => n + e.size, 0);
    return JSON.parse(JSON.stringify(agent)) as ManifestAgent;
  }

  /** Writes the last pack and the index; the snapshot is listed by commit(). `bytes`: bytes added to the store so far. */
  async finish(input: ManifestInput): Promise<{ path: string; manifest: Manifest; bytes: number }> {
    if (this.state !== 'open') throw new AgentVaultError('write-failed', `snapshot ${this.opts.sourceFile} is ${this.state}; it cannot be finished`);
    this.state = 'busy';
    try {
      const manifest = buildManifest(input, this.manifestEntries);
      delete manifest.encryption;
      // checked as the archive's manifest would be (an encrypted one has an `encryption` section; the snapshot file drops it)
      checkManifest(JSON.parse(JSON.stringify(this.encrypted ? { ...manifest, encryption: this.repo.config.encryption } : manifest)), this.path);
      await this.bp.drain();
      await this.w.flush();
      this.bytesAdded = this.w.storedBytes;
      if (this.w.written.length) {
        const ix = await writeIndex(this.repo, this.w.written, []);
        this.repo.indexFiles.push(ix.id);
        this.bytesAdded += ix.bytes;
        addToIndex(this.repo, this.w.written);
      }
      this.indexed = true;
      this.snap = {
        version: 1,
        time: '',
        source: { file: this.opts.sourceFile, size: 0, sha256: null, encrypted: this.encrypted },
        manifest,
        entries: this.entries,
        ...(this.keys ? { agent_keys: this.keys } : {}),
      };
      this.state = 'finished';
      return { path: this.path, manifest, bytes: this.bytesAdded };
    } catch (e) {
      this.state = 'failed';
      throw e;
    }
  }

  /** Writes the snapshot file (after finish()): from here on the snapshot is listed. */
  async commit(time: string): Promise<IngestResult> {
    if (this.state !== 'finished' || !this.snap) throw new AgentVaultError('write-failed', `snapshot ${this.opts.sourceFile} is not finished; it cannot be committed`);
    const snap: SnapshotFile = { ...this.snap, time };
    const data = encodeMeta(snap, 'snapshot', this.repo.crypto);
    const snapshotId = sha256Hex(data);
    await this.repo.store.writeBytes(snapshotKey(this.repo, snapshotId), data);
    this.state = 'committed';
    const bytesRead = this.entries.reduce((n, e) => n + e.size, 0);
    return {
      snapshotId,
      entries: this.entries.length,
      bytesRead,
      bytesCopied: this.copiedBytes,
      blobs: this.st.blobs,
      newBlobs: this.st.newBlobs,
      newBytes: this.st.newBytes,
      bytesAdded: this.bytesAdded + data.length,
    };
  }

  /** Stops: packs this writer wrote and no index names yet are removed (its own files). Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.state === 'committed') return;
    this.state = 'failed';
    if (this.indexed) return;
    for (const p of this.w.written.splice(0)) await this.repo.store.delete(packKey(this.repo, p.id)).catch(() => undefined);
  }
}

/** The entries of an agent's manifest record (the `.af`, passages, vectors, file chunks and their vectors). */
function agentEntries(a: ManifestAgent): string[] {
  return [a.entry, a.passages_entry, a.vectors_entry, a.file_passages_entry, a.file_vectors_entry].filter((x): x is string => typeof x === 'string' && x !== '');
}

// ---------------------------------------------------------------------------------------------
// reading

export async function loadSnapshot(repo: Repo, id: string): Promise<SnapshotFile> {
  if (!ID_RE.test(id)) throw new AgentVaultError('no-snapshot', `not a snapshot id: ${JSON.stringify(id)} (64 hex digits)`, { kind: 'usage' });
  const key = snapshotKey(repo, id);
  const b = await readNamed(repo, key, id);
  if (!b) throw new AgentVaultError('no-snapshot', `there is no snapshot ${id} in the store at ${repo.store.location}`, { location: { file: storeWhere(repo.store, key) }, kind: 'usage' });
  const s = decodeMeta<SnapshotFile>(b, 'snapshot', repo.crypto, storeWhere(repo.store, key));
  if (!s || s.version !== 1 || !Array.isArray(s.entries) || !s.manifest)
    throw new AgentVaultError('store-format', `${storeWhere(repo.store, key)} is not a version 1 snapshot file`, { location: { file: storeWhere(repo.store, key) } });
  return s;
}

function missingBlob(repo: Repo, id: string, what: string): AgentVaultError {
  return new AgentVaultError('missing-blob', `the store at ${repo.store.location} has no blob ${id} (${what}); run a check`, { location: { file: repo.store.location } });
}

/** Reads blobs in order, one range request per run of adjacent blobs of one pack. */
async function* readBlobs(repo: Repo, ids: string[], what: string): AsyncGenerator<Buffer> {
  let i = 0;
  while (i < ids.length) {
    const first = repo.index.get(ids[i]);
    if (!first) throw missingBlob(repo, ids[i], what);
    let j = i + 1;
    let end = first.offset + first.length;
    const locs = [first];
    while (j < ids.length) {
      const l = repo.index.get(ids[j]);
      if (!l || l.pack !== first.pack || l.offset !== end || end + l.length - first.offset > MAX_RANGE) break;
      locs.push(l);
      end += l.length;
      j++;
    }
    const key = packKey(repo, first.pack);
    const where = storeWhere(repo.store, key);
    const buf = await repo.store.readRange(key, first.offset, end - first.offset);
    if (buf.length !== end - first.offset) throw new AgentVaultError('checksum', `${where} is truncated: blob ${ids[i]} lies beyond its end`, { location: { file: where } });
    for (let k = 0; k < locs.length; k++) {
      const l = locs[k];
      yield decodeBlob(
        buf.subarray(l.offset - first.offset, l.offset - first.offset + l.length),
        { id: ids[i + k], type: l.type, rawLength: l.rawLength, compression: l.compression },
        repo.crypto,
        where,
      );
    }
    i = j;
  }
}

/** One blob, checked (decodeBlob); error 'missing-blob' when no index names it. */
export async function readBlob(repo: Repo, id: string, what: string): Promise<Buffer> {
  for await (const b of readBlobs(repo, [id], what)) return b;
  throw missingBlob(repo, id, what);
}

/** The blob ids (hex) a list blob holds, 32 bytes each. */
export function listIdsOf(list: Buffer): string[] {
  const out: string[] = [];
  for (let o = 0; o + 32 <= list.length; o += 32) out.push(list.subarray(o, o + 32).toString('hex'));
  return out;
}

/** The data blob ids of an entry, list blob by list blob. */
async function* entryDataIds(repo: Repo, e: SnapshotEntry): AsyncGenerator<string[]> {
  for (const l of e.lists) {
    const list = await readBlob(repo, l, `list of ${e.name}`);
    if (list.length % 32 !== 0) throw new AgentVaultError('store-format', `list blob ${l} of ${e.name} is not a multiple of 32 bytes`);
    yield listIdsOf(list);
  }
}

/** An entry's plaintext, streamed and checked against its recorded size and SHA-256. */
export async function* entryContent(repo: Repo, snapshotId: string, e: SnapshotEntry): AsyncGenerator<Buffer> {
  const h = createHash('sha256');
  let size = 0;
  for await (const ids of entryDataIds(repo, e)) {
    for await (const b of readBlobs(repo, ids, e.name)) {
      h.update(b);
      size += b.length;
      yield b;
    }
  }
  const sha = h.digest('hex');
  if (size !== e.size || sha !== e.sha256) {
    throw new AgentVaultError('checksum', `snapshot ${snapshotId}: entry ${e.name} reads back as ${size} bytes with sha256 ${sha}, expected ${e.size} bytes with ${e.sha256}`, {
      location: { entry: e.name },
    });
  }
}

export interface ExportOptions {
  /** encrypt the archive with this key (required for snapshots that came from an encrypted archive) */
  encryption?: { key: ArchiveKey };
  overwrite?: boolean;
  /** an entry's plaintext, checked (default entryContent; the reader of ./reader.ts reads ahead) */
  content?: (e: SnapshotEntry) => AsyncIterable<Buffer>;
}

/**
 * Writes a snapshot as a single-file `.avsnap` (streaming, bounded memory): the same manifest and
 * the same entries (byte for byte: each entry's SHA-256 is checked against the snapshot's).
 */
export async function exportSnapshotToArchive(repo: Repo, snapshotId: string, outPath: string, opts: ExportOptions = {}): Promise<{ path: string; bytes: number; manifest: Manifest }> {
  const snap = await loadSnapshot(repo, snapshotId);
  if (snap.source.encrypted && !opts.encryption) {
    throw new AgentVaultError(
      'no-key',
      `snapshot ${snapshotId} came from an encrypted archive (it may hold agent secrets); exporting it needs a key to encrypt the new archive with; nothing was written`,
      { kind: 'usage' },
    );
  }
  const writer = await createArchiveWriter(outPath, { overwrite: opts.overwrite, encryption: opts.encryption });
  try {
    for (const e of snap.entries) {
      await writer.addStream(e.name, opts.content ? opts.content(e) : entryContent(repo, snapshotId, e), {
        mediaType: e.media_type,
        compress: e.compression === undefined ? undefined : e.compression === 'deflate',
      });
    }
    const { format: _f, format_version: _v, entries: _e, encryption: _x, ...rest } = snap.manifest;
    return await writer.finish(rest as ManifestInput);
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

export interface SnapshotInfo {
  id: string;
  time: string;
  created_at: string | null;
  source: SnapshotFile['source'] | null;
  /** the manifest's agents (with their row counts when the manifest records them) */
  agents: Array<{ id: string; name: string | null; counts?: ManifestAgentCounts }>;
  /** the Qdrant collections the snapshot holds (by name) */
  collections?: string[];
  entries: number;
  /** plaintext bytes of its entries */
  size: number;
  /** the snapshot file could not be read */
  error?: string;
}

/** Every snapshot in the store, oldest first (an unreadable one is listed with `error`). */
export async function listSnapshots(repo: Repo): Promise<SnapshotInfo[]> {
  const { ids } = await listIds(repo, 'snapshots');
  const out: SnapshotInfo[] = [];
  for (const id of ids) {
    try {
      const s = await loadSnapshot(repo, id);
      out.push({
        id,
        time: s.time,
        created_at: typeof s.manifest.created_at === 'string' ? s.manifest.created_at : null,
        source: s.source,
        agents: (s.manifest.agents ?? []).map((a) => (a.counts ? { id: a.id, name: a.name, counts: a.counts } : { id: a.id, name: a.name })),
        collections: Array.isArray(s.manifest.qdrant?.collections) ? s.manifest.qdrant.collections.map((c) => (c as { name?: unknown }).name).filter((x): x is string => typeof x === 'string') : [],
        entries: s.entries.length,
        size: s.entries.reduce((n, e) => n + e.size, 0),
      });
    } catch (e) {
      if ((e as AgentVaultError)?.code === 'no-snapshot') continue; // deleted meanwhile
      out.push({ id, time: '', created_at: null, source: null, agents: [], entries: 0, size: 0, error: errorMessage(e) });
    }
  }
  return out.sort((a, b) => (a.time === b.time ? (a.id < b.id ? -1 : 1) : a.time < b.time ? -1 : 1));
}

// ---------------------------------------------------------------------------------------------
// check

export interface CheckProblem {
  kind: 'damaged-index' | 'damaged-snapshot' | 'missing-pack' | 'pack-size' | 'damaged-pack' | 'missing-blob';
  /** the object key concerned */
  key: string;
  message: string;
  /** snapshots that lose data through it */
  snapshots: string[];
  /** agents (ids) whose entries lose data, and the entries */
  agents: string[];
  entries: Array<{ snapshot: string; entry: string }>;
}

export interface CheckReport {
  ok: boolean;
  snapshots: number;
  packs: number;
  blobs: number;
  /** packs read whole and their blobs decrypted and hashed (read-data) */
  packsRead: number;
  bytesRead: number;
  problems: CheckProblem[];
  /** not damage: unindexed packs (an interrupted run; prune adopts them), unexpected files */
  warnings: Array<{ kind: 'unindexed-pack' | 'unexpected-file' | 'temp-file'; key: string; message: string }>;
}

export interface CheckOptions {
  /**
   * read packs whole and decrypt + hash every blob: all (true), none (false), this fraction (0…1)
   * of the packs chosen at random, or the part-th of `of` groups (a pack is in group
   * 1 + (first byte of its id mod of), as restic's --read-data-subset n/m)
   */
  readData?: boolean | number | { part: number; of: number };
}

function agentsForEntry(m: Manifest, entry: string): string[] {
  return (m.agents ?? [])
    .filter(
      (a) =>
        a.entry === entry ||
        a.passages_entry === entry ||
        a.vectors_entry === entry ||
        a.file_passages_entry === entry ||
        a.file_vectors_entry === entry ||
        entry === `secrets/${safeEntrySegment(a.id)}.env.json`,
    )
    .map((a) => a.id);
}

/**
 * Checks the store: every index and snapshot file readable, every pack the index names present
 * with its size, every blob a snapshot needs indexed; with readData, packs read whole, hashed and
 * every blob authenticated and hashed. Each problem names the snapshots, agents and entries it
 * affects.
 */
export async function checkRepo(repo: Repo, opts: CheckOptions = {}): Promise<CheckReport> {
  await loadIndex(repo);
  const problems: CheckProblem[] = [];
  const warnings: CheckReport['warnings'] = [];
  const mk = (kind: CheckProblem['kind'], key: string, message: string): CheckProblem => ({ kind, key, message, snapshots: [], agents: [], entries: [] });
  for (const d of repo.damagedIndexes) problems.push(mk('damaged-index', d.key, d.message));
  // unexpected files anywhere under the prefix
  const known = /^(config\.json|data\/[0-9a-f]{2}\/[0-9a-f]{64}|index\/[0-9a-f]{64}|snapshots\/[0-9a-f]{64})$/;
  for await (const o of repo.store.list(repo.prefix)) {
    const rest = o.key.slice(repo.prefix.length);
    if (repo.prefix === '' && !/^(config\.json|data\/|index\/|snapshots\/)/.test(rest)) continue; // a store at the root shares it with the vault's files
    if (STORE_TEMP.test(rest)) warnings.push({ kind: 'temp-file', key: o.key, message: `${o.key} is a temp file of an interrupted write (the next prune removes it)` });
    else if (!known.test(rest)) warnings.push({ kind: 'unexpected-file', key: o.key, message: `${o.key} is not a file of the store (left alone)` });
  }
  const data = await listIds(repo, 'data');
  for (const id of data.ids)
    if (!repo.packs.has(id)) warnings.push({ kind: 'unindexed-pack', key: packKey(repo, id), message: `pack ${id} is in no index (left by an interrupted run; prune adopts or removes it)` });
  // packs: present, right size
  const badBlobs = new Map<string, CheckProblem>();
  const flagPack = (p: CheckProblem, blobIds: Iterable<string>): void => {
    problems.push(p);
    for (const b of blobIds) if (!badBlobs.has(b)) badBlobs.set(b, p);
  };
  for (const [id, p] of repo.packs) {
    const size = data.sizes.get(id);
    if (size === undefined)
      flagPack(
        mk('missing-pack', packKey(repo, id), `pack ${id} is missing`),
        p.blobs.map((b) => b[0]),
      );
    else if (size !== p.size)
      flagPack(
        mk('pack-size', packKey(repo, id), `pack ${id} is ${size} bytes, the index says ${p.size}`),
        p.blobs.map((b) => b[0]),
      );
  }
  // read data
  let packsRead = 0;
  let bytesRead = 0;
  const rd = opts.readData;
  const group = typeof rd === 'object' && rd !== null ? rd : undefined;
  const frac = rd === true || group ? 1 : typeof rd === 'number' ? Math.max(0, Math.min(1, rd)) : 0;
  if (frac > 0) {
    const candidates = [...repo.packs.keys()].filter((id) => data.sizes.get(id) === repo.packs.get(id)!.size && (!group || 1 + (parseInt(id.slice(0, 2), 16) % group.of) === group.part));
    const chosen = frac >= 1 ? candidates : candidates.filter(() => Math.random() < frac);
    if (frac < 1 && chosen.length === 0 && candidates.length > 0) chosen.push(candidates[Math.floor(Math.random() * candidates.length)]);
    for (const id of chosen) {
      const key = packKey(repo, id);
      const where = storeWhere(repo.store, key);
      const buf = await repo.store.readBytes(key);
      packsRead++;
      if (!buf) {
        flagPack(
          mk('missing-pack', key, `pack ${id} is missing`),
          repo.packs.get(id)!.blobs.map((b) => b[0]),
        );
        continue;
      }
      bytesRead += buf.length;
      const damaged: string[] = [];
      const reasons: string[] = [];
      for (const b of repo.packs.get(id)!.blobs) {
        try {
          decodeBlob(buf.subarray(b[2], b[2] + b[3]), { id: b[0], type: typeOf(b[1]), rawLength: b[4], compression: b[5] === 'd' ? 'deflate' : 'none' }, repo.crypto, where);
        } catch (e) {
          damaged.push(b[0]);
          if (reasons.length < 3) reasons.push(errorMessage(e));
        }
      }
      const hashOk = sha256Hex(buf) === id;
      if (damaged.length || !hashOk) {
        const msg = `pack ${id} is damaged: ${damaged.length ? `${damaged.length} blob(s) fail their check (${reasons.join('; ')})` : 'its content does not hash to its name (the damage is outside the blobs)'}`;
        flagPack(mk('damaged-pack', key, msg), damaged);
      }
    }
  }
  // snapshots: every blob they need indexed (and the lists readable)
  const snaps = await listIds(repo, 'snapshots');
  const loaded: Array<{ id: string; snap: SnapshotFile }> = [];
  for (const id of snaps.ids) {
    try {
      loaded.push({ id, snap: await loadSnapshot(repo, id) });
    } catch (e) {
      if ((e as AgentVaultError)?.code === 'no-snapshot') continue;
      const p = mk('damaged-snapshot', snapshotKey(repo, id), errorMessage(e));
      p.snapshots.push(id);
      problems.push(p);
    }
  }
  const blobsSeen = new Set<string>();
  for (const { id, snap } of loaded) {
    for (const e of snap.entries) {
      const hit = (p: CheckProblem): void => {
        if (!p.snapshots.includes(id)) p.snapshots.push(id);
        if (!p.entries.some((x) => x.snapshot === id && x.entry === e.name)) p.entries.push({ snapshot: id, entry: e.name });
        for (const a of agentsForEntry(snap.manifest, e.name)) if (!p.agents.includes(a)) p.agents.push(a);
      };
      for (const l of e.lists) {
        blobsSeen.add(l);
        const bad = badBlobs.get(l);
        if (bad) {
          hit(bad);
          continue;
        }
        if (!repo.index.has(l)) {
          const p = mk('missing-blob', snapshotKey(repo, id), `list blob ${l} of ${e.name} is in no index`);
          badBlobs.set(l, p);
          problems.push(p);
          hit(p);
          continue;
        }
        let ids: string[];
        try {
          const list = await readBlob(repo, l, `list of ${e.name}`);
          ids = listIdsOf(list);
        } catch (err) {
          const p = mk('damaged-pack', packKey(repo, repo.index.get(l)!.pack), errorMessage(err));
          badBlobs.set(l, p);
          problems.push(p);
          hit(p);
          continue;
        }
        for (const d of ids) {
          blobsSeen.add(d);
          const b = badBlobs.get(d);
          if (b) hit(b);
          else if (!repo.index.has(d)) {
            const p = mk('missing-blob', snapshotKey(repo, id), `data blob ${d} of ${e.name} is in no index`);
            badBlobs.set(d, p);
            problems.push(p);
            hit(p);
          }
        }
      }
    }
  }
  for (const p of problems) {
    if ((p.kind === 'damaged-pack' || p.kind === 'missing-pack' || p.kind === 'pack-size') && p.snapshots.length) {
      p.message += `; it affects snapshot(s) ${p.snapshots.join(', ')}${p.agents.length ? `, agent(s) ${p.agents.join(', ')}` : ''} (entries ${[...new Set(p.entries.map((x) => x.entry))].join(', ')})`;
    }
  }
  return { ok: problems.length === 0, snapshots: loaded.length, packs: repo.packs.size, blobs: blobsSeen.size, packsRead, bytesRead, problems, warnings };
}

// ---------------------------------------------------------------------------------------------
// forget and prune

/** Removes snapshot files (all ids are checked first: an unknown one changes nothing). */
export async function forgetSnapshots(repo: Repo, ids: string[]): Promise<{ removed: string[] }> {
  for (const id of ids) {
    if (!ID_RE.test(id) || !(await repo.store.head(snapshotKey(repo, id)))) {
      throw new AgentVaultError('no-snapshot', `there is no snapshot ${JSON.stringify(id)} in the store at ${repo.store.location}; nothing was removed`, { kind: 'usage' });
    }
  }
  for (const id of ids) await repo.store.delete(snapshotKey(repo, id));
  return { removed: [...ids] };
}

export type PruneFaultPoint = 'pack-written' | 'index-written' | 'index-deleted' | 'pack-deleted';

export interface PruneOptions {
  /** a partly used pack is repacked when more than this fraction of its bytes is unused (default 0.05) */
  maxUnused?: number;
  /** tests: called at each step; throwing there stops the prune as a kill would */
  faultHook?: (point: PruneFaultPoint) => void | Promise<void>;
}

export interface PruneResult {
  snapshots: number;
  blobsKept: number;
  blobsRemoved: number;
  packsKept: number;
  packsDeleted: number;
  packsRepacked: number;
  packsWritten: number;
  /** unindexed packs (of an interrupted run) taken into account */
  packsAdopted: number;
  /** temp files of killed writes removed (the object-store layer's own names only) */
  tempRemoved: string[];
  bytesBefore: number;
  bytesAfter: number;
}

function storeDamaged(repo: Repo, why: string): AgentVaultError {
  return new AgentVaultError('store-damaged', `the store at ${repo.store.location} is damaged (${why}); prune removed nothing. Run a check`, { location: { file: repo.store.location } });
}

/**
 * Removes the temp files of killed writes of the store (`<id>.tmp-<12 hex>` beside a file of the
 * store; only this pattern, nothing else). Call only while holding the vault's exclusive lock (no
 * other writer runs). Returns their keys.
 */
export async function sweepStoreTemp(repo: Repo): Promise<string[]> {
  const removed: string[] = [];
  for await (const o of repo.store.list(repo.prefix)) {
    if (!STORE_TEMP.test(o.key.slice(repo.prefix.length))) continue;
    await repo.store.delete(o.key);
    removed.push(o.key);
  }
  return removed;
}

/**
 * Mark and sweep: every blob a snapshot references is kept; packs holding only unreferenced
 * blobs are deleted, packs with more than `maxUnused` unreferenced bytes are repacked. Order:
 * new packs, then one new index superseding every index present, then deletion of the old
 * indexes, then of the old packs. A kill at any point leaves every blob a snapshot needs in an
 * indexed pack (or in an unindexed one that the next prune adopts).
 */
export async function pruneUnreferenced(repo: Repo, opts: PruneOptions = {}): Promise<PruneResult> {
  const hook = opts.faultHook ?? (() => undefined);
  const maxUnused = opts.maxUnused ?? 0.05;
  const tempRemoved = await sweepStoreTemp(repo);
  await loadIndex(repo);
  if (repo.damagedIndexes.length) throw storeDamaged(repo, `index file(s) ${repo.damagedIndexes.map((d) => d.key).join(', ')} cannot be read`);
  const data = await listIds(repo, 'data');
  for (const [id, p] of repo.packs) {
    const size = data.sizes.get(id);
    if (size === undefined) throw storeDamaged(repo, `pack ${id} is missing`);
    if (size !== p.size) throw storeDamaged(repo, `pack ${id} has the wrong size`);
  }
  // adopt unindexed packs: read their (authenticated) header
  const adopted = new Map<string, { size: number; blobs: PackedBlob[] }>();
  for (const id of data.ids) {
    if (repo.packs.has(id)) continue;
    const key = packKey(repo, id);
    const where = storeWhere(repo.store, key);
    const buf = await repo.store.readBytes(key);
    if (!buf || sha256Hex(buf) !== id || buf.length < PACK_TRAILER_SIZE) continue; // not a complete pack of ours: left alone (check reports it)
    try {
      const hl = headerLength(buf.subarray(buf.length - PACK_TRAILER_SIZE), where);
      const h = checkPackHeader(decodeMeta<PackHeader>(buf.subarray(buf.length - PACK_TRAILER_SIZE - hl, buf.length - PACK_TRAILER_SIZE), 'pack-header', repo.crypto, where), buf.length, where);
      adopted.set(id, { size: buf.length, blobs: h.blobs });
    } catch {
      continue; // unreadable: left alone
    }
  }
  // where each blob lives: the index first, then adopted packs
  const loc = new Map<string, string>();
  for (const [id, l] of repo.index) loc.set(id, l.pack);
  for (const [pid, p] of adopted) for (const b of p.blobs) if (!loc.has(b[0])) loc.set(b[0], pid);
  const allPacks = new Map([...repo.packs, ...adopted]);
  const blobRecord = (id: string): PackedBlob | undefined => allPacks.get(loc.get(id) ?? '')?.blobs.find((b) => b[0] === id);
  // mark
  const used = new Set<string>();
  const snaps = await listIds(repo, 'snapshots');
  let snapshots = 0;
  const readAny = async (id: string, what: string): Promise<Buffer> => {
    const pid = loc.get(id);
    if (!pid) throw storeDamaged(repo, `blob ${id} (${what}) is in no pack`);
    const b = repo.packs.has(pid) ? undefined : blobRecord(id);
    if (!b) return readBlob(repo, id, what);
    const key = packKey(repo, pid);
    const raw = await repo.store.readRange(key, b[2], b[3]);
    return decodeBlob(raw, { id, type: typeOf(b[1]), rawLength: b[4], compression: b[5] === 'd' ? 'deflate' : 'none' }, repo.crypto, storeWhere(repo.store, key));
  };
  for (const sid of snaps.ids) {
    let snap: SnapshotFile;
    try {
      snap = await loadSnapshot(repo, sid);
    } catch (e) {
      if ((e as AgentVaultError)?.code === 'no-snapshot') continue;
      throw storeDamaged(repo, `snapshot ${sid} cannot be read: ${errorMessage(e)}`);
    }
    snapshots++;
    for (const e of snap.entries) {
      for (const l of e.lists) {
        used.add(l);
        let list: Buffer;
        try {
          list = await readAny(l, `list of ${e.name} in snapshot ${sid}`);
        } catch (err) {
          if ((err as AgentVaultError)?.code === 'store-damaged') throw err;
          throw storeDamaged(repo, errorMessage(err));
        }
        for (const d of listIdsOf(list)) {
          if (!loc.has(d)) throw storeDamaged(repo, `blob ${d} of ${e.name} in snapshot ${sid} is in no pack`);
          used.add(d);
        }
      }
    }
  }
  // classify packs
  const keep: string[] = [];
  const drop: string[] = [];
  const repack: string[] = [];
  let bytesBefore = 0;
  for (const [pid, p] of allPacks) {
    bytesBefore += p.size;
    let usedBytes = 0;
    let usedCount = 0;
    let blobBytes = 0;
    for (const b of p.blobs) {
      blobBytes += b[3];
      if (used.has(b[0]) && loc.get(b[0]) === pid) {
        usedBytes += b[3];
        usedCount++;
      }
    }
    if (usedCount === p.blobs.length) keep.push(pid);
    else if (usedCount === 0) drop.push(pid);
    else if ((blobBytes - usedBytes) / p.size > maxUnused) repack.push(pid);
    else keep.push(pid);
  }
  const result: PruneResult = {
    snapshots,
    blobsKept: used.size,
    blobsRemoved: 0,
    packsKept: keep.length,
    packsDeleted: drop.length,
    packsRepacked: repack.length,
    packsWritten: 0,
    packsAdopted: adopted.size,
    tempRemoved,
    bytesBefore,
    bytesAfter: bytesBefore,
  };
  for (const [pid, p] of allPacks) for (const b of p.blobs) if (!(used.has(b[0]) && loc.get(b[0]) === pid)) result.blobsRemoved++;
  if (drop.length === 0 && repack.length === 0 && adopted.size === 0) return result;
  // repack: copy the used blobs' stored bytes (checked first) into new packs
  const w = new PackWriter(repo, () => hook('pack-written'));
  for (const pid of repack) {
    const key = packKey(repo, pid);
    const where = storeWhere(repo.store, key);
    const buf = await repo.store.readBytes(key);
    if (!buf) throw storeDamaged(repo, `pack ${pid} vanished`);
    for (const b of allPacks.get(pid)!.blobs) {
      if (!(used.has(b[0]) && loc.get(b[0]) === pid)) continue;
      const stored = buf.subarray(b[2], b[2] + b[3]);
      try {
        decodeBlob(stored, { id: b[0], type: typeOf(b[1]), rawLength: b[4], compression: b[5] === 'd' ? 'deflate' : 'none' }, repo.crypto, where);
      } catch (e) {
        throw storeDamaged(repo, errorMessage(e));
      }
      await w.add(b[0], typeOf(b[1]), Buffer.from(stored), b[4], b[5] === 'd' ? 'deflate' : 'none');
    }
  }
  await w.flush();
  result.packsWritten = w.written.length;
  // one index for everything that stays, superseding every index file present
  const kept: NewPack[] = keep.map((pid) => ({ id: pid, size: allPacks.get(pid)!.size, blobs: allPacks.get(pid)!.blobs }));
  const oldIndexes = [...repo.indexFiles];
  await writeIndex(repo, [...kept, ...w.written], oldIndexes);
  await hook('index-written');
  for (const id of oldIndexes) {
    await repo.store.delete(indexKey(repo, id));
    await hook('index-deleted');
  }
  // a repacked pack can come out byte-identical to an unindexed one of an interrupted prune
  // (plain stores): same name, now indexed again, so it is not deleted
  const indexed = new Set([...kept, ...w.written].map((p) => p.id));
  for (const pid of [...drop, ...repack]) {
    if (indexed.has(pid)) continue;
    await repo.store.delete(packKey(repo, pid));
    await hook('pack-deleted');
  }
  await loadIndex(repo);
  result.bytesAfter = [...repo.packs.values()].reduce((n, p) => n + p.size, 0);
  return result;
}

/** Bytes of the store's files (packs, indexes, snapshots, config): its footprint. */
export async function storeBytes(repo: Repo): Promise<number> {
  let n = 0;
  for await (const o of repo.store.list(repo.prefix)) n += o.size;
  return n;
}

// ---------------------------------------------------------------------------------------------
// copy between two copies of one store

export interface CopySnapshotsResult {
  items: Array<{ snapshot: string; action: 'copied' | 'skipped' | 'would-copy'; packs: number; bytes: number }>;
  packsCopied: number;
  /** packs the target had already (unindexed ones of an interrupted copy are indexed now) */
  packsPresent: number;
  bytesCopied: number;
}

/**
 * Copies snapshots from one copy of a store to another copy of the same store (the same
 * config: same id, keys and chunker), skipping what the target has: per snapshot, the packs
 * holding the blobs it needs that the target's index lacks are copied (each read whole and
 * checked against its name, the SHA-256 of its bytes, before it is written; its size checked
 * after), then one index file naming them is written, then the snapshot file (also checked
 * against its name). A copy killed at any point leaves the target's snapshots whole: an
 * uncopied snapshot file is invisible, a copied but unindexed pack is picked up by the next copy
 * (or adopted by a prune). The caller holds the target's lock.
 */
export async function copySnapshots(src: Repo, dst: Repo, ids: string[], opts: { dryRun?: boolean; onProgress?: (m: string) => void } = {}): Promise<CopySnapshotsResult> {
  if (src.config.id !== dst.config.id) {
    throw new AgentVaultError('usage', `${dst.store.location} holds another store (id ${dst.config.id}, the source's is ${src.config.id}); snapshots are copied only between copies of one store`, {
      kind: 'usage',
    });
  }
  await loadIndex(dst);
  const present = new Set((await listIds(dst, 'snapshots')).ids);
  const dstData = await listIds(dst, 'data');
  const res: CopySnapshotsResult = { items: [], packsCopied: 0, packsPresent: 0, bytesCopied: 0 };
  const planned = new Set<string>();
  for (const id of ids) {
    if (present.has(id)) {
      res.items.push({ snapshot: id, action: 'skipped', packs: 0, bytes: 0 });
      continue;
    }
    const snap = await loadSnapshot(src, id);
    const needed = new Set<string>();
    for (const e of snap.entries) {
      for (const l of e.lists) {
        needed.add(l);
        for (const d of listIdsOf(await readBlob(src, l, `list of ${e.name} in snapshot ${id}`))) needed.add(d);
      }
    }
    const toIndex = new Map<string, { size: number; blobs: PackedBlob[] }>();
    for (const b of needed) {
      if (dst.index.has(b)) continue;
      const loc = src.index.get(b);
      if (!loc) throw missingBlob(src, b, `snapshot ${id}`);
      toIndex.set(loc.pack, src.packs.get(loc.pack)!);
    }
    let packs = 0;
    let bytes = 0;
    for (const [pid, p] of toIndex) {
      if (planned.has(pid)) continue;
      const have = dstData.sizes.get(pid);
      if (have === p.size) {
        // an unindexed pack an interrupted copy left: indexed again only when its bytes are right
        const dkey = packKey(dst, pid);
        const there = opts.dryRun ? null : await dst.store.readBytes(dkey);
        if (!opts.dryRun && (!there || sha256Hex(there) !== pid)) {
          throw new AgentVaultError('checksum', `${storeWhere(dst.store, dkey)} is damaged at the target (its bytes do not hash to its name); nothing was overwritten (remove it, then copy again)`, {
            location: { file: storeWhere(dst.store, dkey) },
          });
        }
        res.packsPresent++;
        continue;
      }
      if (have !== undefined) {
        throw new AgentVaultError(
          'checksum',
          `${storeWhere(dst.store, packKey(dst, pid))} is ${have} bytes, the source's pack of that name ${p.size}: the target's copy is damaged; nothing was overwritten (run "agent-vault verify" on the target)`,
          { location: { file: storeWhere(dst.store, packKey(dst, pid)) } },
        );
      }
      packs++;
      bytes += p.size;
      if (opts.dryRun) {
        planned.add(pid); // counted once in a dry run
        continue;
      }
      const key = packKey(src, pid);
      const buf = await src.store.readBytes(key);
      if (!buf) throw new AgentVaultError('checksum', `${storeWhere(src.store, key)} is missing at the source; snapshot ${id} was not copied`, { location: { file: storeWhere(src.store, key) } });
      if (buf.length !== p.size || sha256Hex(buf) !== pid) {
        throw new AgentVaultError('checksum', `${storeWhere(src.store, key)} is damaged at the source (its bytes do not hash to its name); snapshot ${id} was not copied`, {
          location: { file: storeWhere(src.store, key) },
          remedy: 'verify-vault',
          hint: 'on the source vault',
        });
      }
      const dkey = packKey(dst, pid);
      await dst.store.writeBytes(dkey, buf);
      const head = await dst.store.head(dkey);
      if (!head || head.size !== buf.length) {
        throw new AgentVaultError('checksum', `${storeWhere(dst.store, dkey)} arrived as ${head ? `${head.size} bytes` : 'nothing'}, expected ${buf.length}`, {
          location: { file: storeWhere(dst.store, dkey) },
        });
      }
      dstData.sizes.set(pid, p.size);
      res.packsCopied++;
      res.bytesCopied += p.size;
      opts.onProgress?.(`copied pack ${pid.slice(0, 12)} (${p.size} bytes)`);
    }
    if (opts.dryRun) {
      res.items.push({ snapshot: id, action: 'would-copy', packs, bytes });
      continue;
    }
    if (toIndex.size) {
      const newPacks = [...toIndex].map(([pid, p]) => ({ id: pid, size: p.size, blobs: p.blobs }));
      const ix = await writeIndex(dst, newPacks, []);
      dst.indexFiles.push(ix.id);
      addToIndex(dst, newPacks);
      bytes += ix.bytes;
      res.bytesCopied += ix.bytes;
    }
    for (const b of needed) if (!dst.index.has(b)) throw missingBlob(dst, b, `snapshot ${id} after its packs were copied`);
    // the snapshot file last: visible only once everything it needs is there
    const raw = await readNamed(src, snapshotKey(src, id), id);
    if (!raw) throw new AgentVaultError('no-snapshot', `snapshot ${id} vanished from ${src.store.location}`, { kind: 'usage' });
    await dst.store.writeBytes(snapshotKey(dst, id), raw);
    const back = await readNamed(dst, snapshotKey(dst, id), id);
    if (!back) throw new AgentVaultError('checksum', `${storeWhere(dst.store, snapshotKey(dst, id))} was not written`);
    bytes += raw.length;
    res.bytesCopied += raw.length;
    present.add(id);
    res.items.push({ snapshot: id, action: 'copied', packs, bytes });
  }
  return res;
}
