/**
 * Byte formats of the deduplicating store (docs/FORMAT.md, part II): the config, blob encoding,
 * pack files, index files and snapshot files. Everything here is pure (no I/O).
 */
import { canonicalJson } from '../../core/json';
import { createHash, hash, timingSafeEqual } from 'node:crypto';
import { crc32 as zlibCrc32, deflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib';
import { promisify } from 'node:util';
import { AgentVaultError, errorMessage } from '../../core/errors';
import { decryptEntrySync, encryptEntrySync, type ArchiveCrypto, type EncryptionSection } from '../../format/crypto';
import type { Manifest } from '../../format/archive';
import { checkChunkerParams, type ChunkerParams, type ChunkKind } from './chunker';

export const STORE_FORMAT = 'agent-vault-store' as const;
export const STORE_VERSION = 1;
export const PACK_MAGIC = Buffer.from('AVP1', 'latin1');
/** Pack trailer: header length (u32 LE) ‖ "AVP1". */
export const PACK_TRAILER_SIZE = 8;
export const DEFAULT_PACK_SIZE = 4 * 1024 * 1024;
export const ID_RE = /^[0-9a-f]{64}$/;

export type BlobType = 'data' | 'list';
export type Compression = 'none' | 'deflate';

export interface StoreConfig {
  format: typeof STORE_FORMAT;
  version: number;
  /** random, 32 hex digits: tells stores apart */
  id: string;
  created_at: string;
  chunker: ChunkerParams & { gear: 'sha256-v1'; record_hash: 'fnv1a-32' };
  /** target size of a pack file in bytes */
  pack_size: number;
  /** null: a plain store */
  encryption: EncryptionSection | null;
  /** encrypted stores: HMAC-SHA256 (manifest MAC key) over the config's canonical bytes without `mac` */
  mac: string | null;
}

/** Canonical JSON (RFC 8785 for the values a config holds): src/core/json.ts. */
export { canonicalJson };

/** The bytes the config MAC covers: the canonical JSON of the config without its `mac` property. */
export function configMacBytes(c: StoreConfig): Buffer {
  const { mac: _mac, ...rest } = c;
  return Buffer.from(canonicalJson(rest), 'utf8');
}

export function verifyConfigMac(c: StoreConfig, crypto: ArchiveCrypto): boolean {
  const want = Buffer.from(crypto.manifestMac(configMacBytes(c)), 'hex');
  const got = typeof c.mac === 'string' && /^[0-9a-f]{64}$/.test(c.mac) ? Buffer.from(c.mac, 'hex') : Buffer.alloc(0);
  return got.length === want.length && timingSafeEqual(got, want);
}

export function parseConfig(bytes: Buffer, where: string): StoreConfig {
  let c: StoreConfig;
  try {
    c = JSON.parse(bytes.toString('utf8')) as StoreConfig;
  } catch (e) {
    throw new AgentVaultError('store-format', `${where} is not valid JSON: ${errorMessage(e)}`, { location: { file: where } });
  }
  if (!c || typeof c !== 'object' || c.format !== STORE_FORMAT)
    throw new AgentVaultError('store-format', `${where} is not an Agent Vault store config (format ${JSON.stringify(c?.format)})`, { location: { file: where } });
  if (!Number.isInteger(c.version) || c.version < 1) throw new AgentVaultError('store-format', `${where}: "version" must be a positive integer`, { location: { file: where } });
  if (c.version > STORE_VERSION) {
    throw new AgentVaultError('format-version', `${where} was written by a newer Agent Vault (store version ${c.version}, this reads up to ${STORE_VERSION}); upgrade Agent Vault`, {
      location: { file: where },
    });
  }
  const bad = checkChunkerParams(c.chunker);
  if (bad) throw new AgentVaultError('store-format', `${where}: ${bad}`, { location: { file: where } });
  if (!Number.isInteger(c.pack_size) || c.pack_size < 4096) throw new AgentVaultError('store-format', `${where}: "pack_size" must be an integer ≥ 4096`, { location: { file: where } });
  return c;
}

export function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

export function sha256Hex(b: Buffer): string {
  // one call, no Hash object (a store reader hashes ~20k chunks per restore)
  return hash('sha256', b, 'hex');
}

/** The name a blob is sealed under (its AAD): binds the ciphertext to the blob's type and id. */
export function blobSealName(type: BlobType, id: string): string {
  return `blob/${type}/${id}`;
}

/** Whether to try deflate on a chunk of this kind. */
export function compressible(kind: ChunkKind | 'list'): boolean {
  return kind === 'lines' || kind === 'json' || kind === 'bytes';
}

/** The stored form of a blob (§6.2). */
export function encodeBlob(plain: Buffer, type: BlobType, id: string, tryDeflate: boolean, crypto: ArchiveCrypto | undefined): { stored: Buffer; compression: Compression } {
  let payload = plain;
  let compression: Compression = 'none';
  if (tryDeflate && plain.length >= 64) {
    const d = deflateRawSync(plain, { level: 6 });
    if (d.length < plain.length * 0.9) {
      payload = d;
      compression = 'deflate';
    }
  }
  const stored = crypto ? encryptEntrySync(crypto, blobSealName(type, id), payload, compression === 'deflate') : payload;
  return { stored, compression };
}

const deflateRawAsync = promisify(deflateRaw);
/** Chunks up to this size are deflated synchronously (see encodeBlobAsync). */
const SYNC_DEFLATE_MAX = 64 * 1024;

/** encodeBlob with the deflate run in libuv's thread pool (the same stored form, byte for byte apart from the encryption's random salt). */
export async function encodeBlobAsync(plain: Buffer, type: BlobType, id: string, tryDeflate: boolean, crypto: ArchiveCrypto | undefined): Promise<{ stored: Buffer; compression: Compression }> {
  let payload = plain;
  let compression: Compression = 'none';
  if (tryDeflate && plain.length >= 64) {
    // a small chunk is deflated right here: zlib's thread pool costs more per call (a context per
    // call, allocated and freed across threads: measured 3 s of mostly system CPU per 18 000 chunks
    // of 8 KiB, against 0.7 s here) than it saves; large ones still go to the pool
    const d = plain.length <= SYNC_DEFLATE_MAX ? deflateRawSync(plain, { level: 6 }) : await deflateRawAsync(plain, { level: 6 });
    if (d.length < plain.length * 0.9) {
      payload = d;
      compression = 'deflate';
    }
  }
  const stored = crypto ? encryptEntrySync(crypto, blobSealName(type, id), payload, compression === 'deflate') : payload;
  return { stored, compression };
}

/**
 * Plaintext of a stored blob, checked: authenticated (encrypted stores), inflated, of the indexed
 * length and hashing to its id. Any failure is error 'checksum' (or 'decrypt') naming the pack.
 * `crc32`: the CRC-32 of the plaintext, known from an earlier read that hashed it (a reader reading
 * the blob again): checked instead of the SHA-256, as an archive's entry is checked on a re-read.
 */
export function decodeBlob(stored: Buffer, loc: { id: string; type: BlobType; rawLength: number; compression: Compression }, crypto: ArchiveCrypto | undefined, where: string, crc32?: number): Buffer {
  let payload = stored;
  let deflated = loc.compression === 'deflate';
  if (crypto) {
    const r = decryptEntrySync(crypto, blobSealName(loc.type, loc.id), stored, where);
    payload = r.payload;
    deflated = r.deflated;
  }
  let plain: Buffer;
  try {
    // the blob's length is known: one output buffer of that size (zlib's default 16 KiB pieces
    // joined at the end cost a copy and garbage per blob)
    plain = deflated ? inflateRawSync(payload, { chunkSize: Math.max(64, loc.rawLength + 1) }) : payload;
  } catch (e) {
    throw new AgentVaultError('checksum', `${where}: blob ${loc.id} does not decompress: ${errorMessage(e)}`, { location: { file: where } });
  }
  if (plain.length !== loc.rawLength || (crc32 === undefined ? sha256Hex(plain) !== loc.id : zlibCrc32(plain) !== crc32)) {
    throw new AgentVaultError('checksum', `${where}: blob ${loc.id} is damaged (its content does not hash to its id)`, { location: { file: where } });
  }
  return plain;
}

/** Metadata files (pack header, index, snapshot): raw deflate of the JSON; encrypted stores seal that under a fixed name. */
export function encodeMeta(value: unknown, name: 'pack-header' | 'index' | 'snapshot', crypto: ArchiveCrypto | undefined): Buffer {
  return encodeMetaText(Buffer.from(JSON.stringify(value), 'utf8'), name, crypto);
}

/** encodeMeta of JSON text the caller has built (UTF-8). */
export function encodeMetaText(json: Buffer, name: 'pack-header' | 'index' | 'snapshot', crypto: ArchiveCrypto | undefined): Buffer {
  const d = deflateRawSync(json, { level: 6 });
  return crypto ? encryptEntrySync(crypto, name, d, true) : d;
}

export function decodeMeta<T>(data: Buffer, name: 'pack-header' | 'index' | 'snapshot', crypto: ArchiveCrypto | undefined, where: string): T {
  let d = data;
  if (crypto) {
    const r = decryptEntrySync(crypto, name, data, where);
    if (!r.deflated) throw new AgentVaultError('store-format', `${where}: the ${name} is not deflated`, { location: { file: where } });
    d = r.payload;
  }
  try {
    return JSON.parse(inflateRawSync(d).toString('utf8')) as T;
  } catch (e) {
    throw new AgentVaultError('checksum', `${where}: the ${name} cannot be read (damaged): ${errorMessage(e)}`, { location: { file: where } });
  }
}

/** One blob in a pack: [id, type, offset, length, raw_length, compression]. */
export type PackedBlob = [id: string, type: 'd' | 'l', offset: number, length: number, rawLength: number, compression: 'n' | 'd'];

export interface PackHeader {
  version: 1;
  blobs: PackedBlob[];
}

export interface IndexFile {
  version: 1;
  /** ids of index files this one replaces (written by prune): they are ignored while this one exists */
  supersedes: string[];
  packs: Array<{ id: string; size: number; blobs: PackedBlob[] }>;
}

export interface SnapshotEntry {
  name: string;
  /** plaintext size and SHA-256 of the entry */
  size: number;
  sha256: string;
  media_type: string;
  compression?: 'deflate' | 'store';
  /** the list blobs whose concatenated ids (32 bytes each) are the entry's data blobs in order */
  lists: string[];
}

export interface SnapshotFile {
  version: 1;
  /** when the snapshot was put into the store */
  time: string;
  /** the archive it came from */
  source: { file: string; size: number; sha256: string | null; encrypted: boolean };
  /** the archive's manifest as it was (for an encrypted archive, its `encryption` section is dropped) */
  manifest: Manifest;
  entries: SnapshotEntry[];
  /**
   * The change key of every agent (optional, added 2026-12; written by a backup into a store
   * vault): a later backup of the same database copies an agent whose key is unchanged from this
   * snapshot instead of reading it (docs/FORMAT.md, "Change keys"). Readers that do not know it
   * ignore it.
   */
  agent_keys?: AgentKeys;
}

/** SnapshotFile.agent_keys. */
export interface AgentKeys {
  /** the source database's identity (an opaque string: cluster system identifier and database oid) */
  database: string;
  /** per agent: its key and the names of its entries (those its manifest record names) */
  agents: Array<{ id: string; key: string; entries: string[] }>;
}

export function typeCode(t: BlobType): 'd' | 'l' {
  return t === 'data' ? 'd' : 'l';
}

export function typeOf(c: string): BlobType {
  return c === 'l' ? 'list' : 'data';
}

/** A pack file: blobs ‖ header ‖ u32 LE header length ‖ "AVP1". */
export function finishPack(blobs: Buffer[], header: PackHeader, crypto: ArchiveCrypto | undefined): Buffer {
  const h = encodeMeta(header, 'pack-header', crypto);
  const trailer = Buffer.alloc(PACK_TRAILER_SIZE);
  trailer.writeUInt32LE(h.length, 0);
  PACK_MAGIC.copy(trailer, 4);
  return Buffer.concat([...blobs, h, trailer]);
}

/** Reads the header of a pack from its last bytes (`tail` = the last `tailLen` bytes of a pack of `size` bytes). */
export function headerLength(trailer: Buffer, where: string): number {
  if (trailer.length !== PACK_TRAILER_SIZE || !trailer.subarray(4).equals(PACK_MAGIC))
    throw new AgentVaultError('checksum', `${where} does not end with a pack trailer ("AVP1")`, { location: { file: where } });
  return trailer.readUInt32LE(0);
}

export function checkPackHeader(h: PackHeader, packSize: number, where: string): PackHeader {
  if (!h || h.version !== 1 || !Array.isArray(h.blobs)) throw new AgentVaultError('store-format', `${where}: not a version 1 pack header`, { location: { file: where } });
  for (const b of h.blobs) {
    if (!Array.isArray(b) || !ID_RE.test(b[0]) || (b[1] !== 'd' && b[1] !== 'l') || !(b[2] >= 0) || !(b[3] >= 0) || b[2] + b[3] > packSize || !(b[4] >= 0) || (b[5] !== 'n' && b[5] !== 'd')) {
      throw new AgentVaultError('store-format', `${where}: malformed blob record ${JSON.stringify(b)} in the pack header`, { location: { file: where } });
    }
  }
  return h;
}

/** Config MAC for a new encrypted store. */
export function configMac(c: StoreConfig, crypto: ArchiveCrypto): string {
  return crypto.manifestMac(configMacBytes(c));
}
