/**
 * Snapshot archive container (docs/FORMAT.md): a zip file with `manifest.json` (written last,
 * after every entry's size and sha256 are known) and the entries it lists. Written with yazl
 * (streaming, to a temp file that is fsynced and renamed), read with yauzl (random access: the
 * manifest of an archive is read without touching any other entry's data).
 */
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import * as yazl from 'yazl';
import * as yauzl from 'yauzl';
import type { ErrorObject } from 'ajv';
import { AgentVaultError, errorMessage } from '../core/errors';
import { existsError, fsyncDir, fsyncFile, ioError, publishFile, tempPathFor } from '../core/fs';
import { TOOL_VERSION } from '../core/version';
import { getValidator } from './schemas';
import { EntryStreams, type EntrySource } from './entry-stream';
import { ArchiveCrypto, openArchiveCrypto, parseEncryptionSection, type ArchiveKey, type DecryptOptions, type EncryptionSection } from './crypto';

/** Integer; bumped only on an incompatible change (see docs/FORMAT.md "Versioning"). */
export const ARCHIVE_FORMAT_VERSION = 1;
export const ARCHIVE_FORMAT = 'agent-vault-snapshot' as const;
export const MANIFEST_ENTRY = 'manifest.json';
/** A manifest larger than this is refused before it is read (a sanity bound). */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export const MEDIA_TYPES = {
  json: 'application/json',
  agentFile: 'application/json',
  jsonl: 'application/x-ndjson',
  vectors: 'application/vnd.agent-vault.vectors',
  qdrantSnapshot: 'application/x-tar',
  binary: 'application/octet-stream',
} as const;

export interface ManifestEntry {
  name: string;
  size: number;
  sha256: string;
  media_type: string;
  encrypted?: boolean;
  /** How the entry is stored in the zip (informational; the zip's own header is authoritative). */
  compression?: 'deflate' | 'store';
}

export interface ManifestAgentCounts {
  messages: number;
  in_context_messages: number;
  blocks: number;
  tools: number;
  passages: number;
  groups: number;
  files: number;
  /** chunks (Letta `source_passages`) of the files the agent reaches, as in file_passages_entry (optional, added 2026-12) */
  file_passages?: number;
}

export interface ManifestAgent {
  id: string;
  name: string | null;
  agent_type?: string | null;
  /** the .af path inside the archive */
  entry: string;
  counts: ManifestAgentCounts;
  embedding?: { model: string | null; dim: number | null; endpoint_type?: string | null } | null;
  llm?: { model: string | null } | null;
  passages_entry?: string | null;
  vectors_entry?: string | null;
  /** the chunks of the agent's files (Letta `source_passages`, without embeddings), "file-passages/<id>.jsonl" (optional, added 2026-12) */
  file_passages_entry?: string | null;
  /** their embeddings, "file-passages/<id>.vectors" */
  file_vectors_entry?: string | null;
}

export interface ManifestSource {
  kind: 'postgres' | 'pglite' | 'agent-file';
  letta_revision?: string | null;
  pgvector_version?: string | null;
  postgres_version?: string | null;
  database?: string | null;
  schema?: string | null;
  organization_id?: string | null;
  /** kind 'agent-file': the packed file's name, its layout (v1, v2, …) and its sha256 */
  file?: string | null;
  file_format?: string | null;
  file_sha256?: string | null;
}

/** The manifest's `encryption` section: see docs/FORMAT.md §9 and ./crypto.ts. */
export type ManifestEncryption = EncryptionSection;

export interface Manifest {
  format: 'agent-vault-snapshot';
  format_version: number;
  tool: { name: 'agent-vault'; version: string };
  /** ISO 8601 */
  created_at: string;
  source?: ManifestSource;
  agents: ManifestAgent[];
  /** every entry except manifest.json itself, in archive order */
  entries: ManifestEntry[];
  qdrant?: { server_version?: string | null; collections: Array<Record<string, unknown>> };
  probes?: unknown;
  encryption?: unknown;
  [k: string]: unknown;
}

export interface AddEntryOptions {
  mediaType?: string;
  /** Deflate (true) or store (false). Default: store for `.vectors`, deflate otherwise. */
  compress?: boolean;
  /**
   * Ignored: an entry is encrypted exactly when the writer was created with `encryption` (then
   * every entry is). Kept for compatibility. Entries under `secrets/` need an encrypting writer.
   */
  encrypted?: boolean;
}

export interface CreateArchiveOptions {
  overwrite?: boolean;
  /** Encrypt every entry (docs/FORMAT.md §9) with this key; the manifest is authenticated. */
  encryption?: { key: ArchiveKey };
}

export type ManifestInput = Omit<Manifest, 'format' | 'format_version' | 'entries' | 'tool'> & Partial<Manifest>;

/**
 * Entries are written in the order they are added: a stream added earlier is consumed completely
 * before the next entry's data is read, so never make an earlier entry's stream wait on a later one.
 */
export interface ArchiveWriter {
  readonly path: string;
  addJson(name: string, value: unknown, opts?: AddEntryOptions): Promise<void>;
  addBuffer(name: string, data: Buffer, opts?: AddEntryOptions): Promise<void>;
  /** Hashed and counted while streamed; never buffers the whole entry. */
  addStream(name: string, data: NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array>, opts?: AddEntryOptions): Promise<ManifestEntry>;
  finish(manifest: ManifestInput): Promise<{ path: string; manifest: Manifest; bytes: number }>;
  /** Stops writing and removes the temp file. Safe to call more than once. */
  abort(): Promise<void>;
  /**
   * Reuse of unchanged agents from an earlier snapshot (a store vault's writer only; an archive
   * file never reuses). Absent: every agent is written.
   */
  readonly reuse?: AgentReuse;
}

/**
 * How an export skips agents that have not changed since a parent snapshot (docs/FORMAT.md,
 * "Change keys"): the export computes a change key per agent (src/letta/export/change-key.ts)
 * before it reads the agent's messages and passages; on a match the writer copies the agent's
 * entries from the parent (no data is read) and the export skips the agent.
 */
export interface AgentReuse {
  /**
   * Chooses the parent snapshot: the newest one written from the database `database` (an opaque
   * identity) that records change keys. Called once per export, before any agent. Returns the
   * parent's name (for reports) or null when there is none (or reuse is turned off: keys are
   * still recorded).
   */
  begin(database: string): Promise<{ parent: string } | null>;
  /**
   * The agent's manifest record with its entries copied from the parent when the parent recorded
   * the same key for it (the export then skips the agent), else null (the export writes it and
   * calls recordAgent).
   */
  reuseAgent(agentId: string, key: string): Promise<ManifestAgent | null>;
  /** The key of an agent the export wrote; its entries are those `agent` names. */
  recordAgent(agentId: string, key: string, agent: ManifestAgent): void;
}

export interface ArchiveReader {
  readonly path: string;
  readonly manifest: Manifest;
  /** The archive's entries are encrypted (manifest `encryption`). */
  readonly encrypted: boolean;
  /** Entries can be read: the archive is not encrypted, or it was opened with the right key. */
  readonly decryptable: boolean;
  has(name: string): boolean;
  list(): ManifestEntry[];
  /**
   * Verifies size + sha256 (and, for an encrypted entry, decrypts and authenticates it); a
   * mismatch is AgentVaultError 'checksum' (or 'decrypt') naming the entry.
   */
  readEntry(name: string): Promise<Buffer>;
  readJson<T>(name: string): Promise<T>;
  /** Verifies at the end; the stream errors (AgentVaultError 'checksum') on a mismatch. */
  openStream(name: string): Promise<NodeJS.ReadableStream>;
  /** Every entry's checksums; with a key, every encrypted entry is also decrypted and authenticated. */
  verifyAll(): Promise<{ entry: string; ok: boolean; error?: string }[]>;
  /**
   * Fast bulk streams over this archive's entries (./entry-stream.ts), decrypting with the key the
   * archive was opened with. They share the reader's file: close the reader when done.
   */
  entryStreams(): EntrySource;
  close(): Promise<void>;
}

/** The reader of an archive file: its bulk streams are the zip's own (EntryStreams, with the entries' byte ranges). */
export interface ArchiveFileReader extends ArchiveReader {
  entryStreams(): EntryStreams;
}

export interface OpenArchiveOptions {
  /**
   * Passphrase or key of an encrypted archive. Checked at open: a wrong one is 'wrong-key', a
   * manifest that fails authentication is 'tampered'. Without it an encrypted archive still
   * opens (manifest, checksums), but reading an encrypted entry is error 'encrypted'.
   */
  decrypt?: DecryptOptions;
  /**
   * Check only the manifest (schema, version, entry names), not that it agrees with the zip's
   * directory. Lets a damaged archive still be inspected.
   */
  verifyManifestOnly?: boolean;
  /** Also read and verify every entry before returning (a full integrity check). */
  verifyEntries?: boolean;
}

// ---------------------------------------------------------------------------------------------
// entry names

const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;

/** Why `name` is not a safe archive entry name, or null when it is. */
export function entryNameProblem(name: string): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'the name is empty';
  if (Buffer.byteLength(name) > 1024) return 'the name is longer than 1024 bytes';
  if (name.includes('\\')) return 'it contains a backslash';
  if (name.startsWith('/')) return 'it is an absolute path';
  if (/^[A-Za-z]:/.test(name)) return 'it starts with a drive letter';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'it contains a control character';
  if (/[<>:"|?*]/.test(name)) return 'it contains a character that is not allowed in file names (<>:"|?*)';
  if (name.endsWith('/')) return 'it is a directory entry';
  for (const seg of name.split('/')) {
    if (seg === '') return 'it has an empty path segment';
    if (seg === '.' || seg === '..') return `it has a "${seg}" path segment`;
    if (WINDOWS_RESERVED.test(seg)) return `"${seg}" is a reserved file name on Windows`;
    if (seg.endsWith('.') || seg.endsWith(' ')) return `segment "${seg}" ends with a dot or a space`;
  }
  return null;
}

/** Collision key: names that would land on the same file on a case-insensitive file system. */
export function nameKey(name: string): string {
  return name.normalize('NFC').toLowerCase();
}

/** A file-name-safe form of an id (agent id, collection name); unchanged when already safe. */
export function safeEntrySegment(id: string): string {
  const cleaned = id
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, (m) => '_'.repeat(m.length))
    .replace(/\.+$/, (m) => '_'.repeat(m.length));
  let out = cleaned === '' ? '_' : cleaned;
  if (WINDOWS_RESERVED.test(out)) out = `_${out}`;
  if (out === id) return id;
  const h = createHash('sha256').update(id).digest('hex').slice(0, 8);
  return `${out.slice(0, 200)}-${h}`;
}

export const agentEntryName = (agentId: string): string => `agents/${safeEntrySegment(agentId)}.af`;
export const passagesEntryName = (agentId: string): string => `passages/${safeEntrySegment(agentId)}.jsonl`;
export const vectorsEntryName = (agentId: string): string => `passages/${safeEntrySegment(agentId)}.vectors`;
export const filePassagesEntryName = (agentId: string): string => `file-passages/${safeEntrySegment(agentId)}.jsonl`;
export const fileVectorsEntryName = (agentId: string): string => `file-passages/${safeEntrySegment(agentId)}.vectors`;
export const qdrantSnapshotEntryName = (collection: string): string => `qdrant/${safeEntrySegment(collection)}.snapshot`;
export const qdrantPointsEntryName = (collection: string): string => `qdrant/${safeEntrySegment(collection)}.points.jsonl`;

/** A JSON entry's bytes, or an error naming the entry of `file` when the value is not JSON. */
export function jsonEntryBytes(name: string, value: unknown, file: string): Buffer {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new AgentVaultError('invalid-json', `cannot write entry ${JSON.stringify(name)}: the value is not JSON-serialisable (${errorMessage(e)})`, { location: { file, entry: name } });
  }
  if (text === undefined) throw new AgentVaultError('invalid-json', `cannot write entry ${JSON.stringify(name)}: the value is not JSON (${typeof value})`, { location: { file, entry: name } });
  return Buffer.from(text, 'utf8');
}

export function defaultMediaType(name: string): string {
  if (name.endsWith('.af')) return MEDIA_TYPES.agentFile;
  if (name.endsWith('.json')) return MEDIA_TYPES.json;
  if (name.endsWith('.jsonl')) return MEDIA_TYPES.jsonl;
  if (name.endsWith('.vectors')) return MEDIA_TYPES.vectors;
  if (name.endsWith('.snapshot')) return MEDIA_TYPES.qdrantSnapshot;
  return MEDIA_TYPES.binary;
}

/** Default compression: vectors (float32, nearly incompressible) are stored, everything else deflated. */
export function defaultCompress(name: string): boolean {
  return !name.endsWith('.vectors');
}

// ---------------------------------------------------------------------------------------------
// manifest validation

function describeSchemaErrors(errors: readonly ErrorObject[]): string {
  const seen = new Set<string>();
  const parts: string[] = [];
  for (const e of errors) {
    if (e.keyword === 'if') continue;
    const where = e.instancePath === '' ? '/' : e.instancePath;
    let what = e.message ?? 'is invalid';
    if (e.keyword === 'required') what = `is missing required property "${(e.params as { missingProperty: string }).missingProperty}"`;
    else if (e.keyword === 'const') what = `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`;
    else if (e.keyword === 'enum') what = `must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    else if (e.keyword === 'additionalProperties') what = `has unknown property "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    const line = `${where} ${what}`;
    if (seen.has(line)) continue;
    seen.add(line);
    parts.push(line);
  }
  const shown = parts.slice(0, 5);
  return shown.join('; ') + (parts.length > 5 ? `; and ${parts.length - 5} more` : '');
}

/**
 * Checks a parsed manifest: format, version (newer → 'format-version'), JSON Schema, and
 * internal consistency (unique entries, agent entries listed, secrets encrypted).
 */
export function checkManifest(value: unknown, file: string): Manifest {
  const loc = { file, entry: MANIFEST_ENTRY };
  const where = `${file}!${MANIFEST_ENTRY}`;
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new AgentVaultError('manifest', `${where}: the manifest must be a JSON object`, { location: { ...loc, pointer: '' } });
  }
  const m = value as Record<string, unknown>;
  if (m.format !== ARCHIVE_FORMAT) {
    throw new AgentVaultError('manifest', `${where}: not an Agent Vault snapshot manifest ("format" is ${JSON.stringify(m.format)}, expected "${ARCHIVE_FORMAT}")`, {
      location: { ...loc, pointer: '/format' },
    });
  }
  const fv = m.format_version;
  if (typeof fv !== 'number' || !Number.isInteger(fv) || fv < 1) {
    throw new AgentVaultError('manifest', `${where}: "format_version" must be a positive integer, got ${JSON.stringify(fv)}`, {
      location: { ...loc, pointer: '/format_version' },
    });
  }
  if (fv > ARCHIVE_FORMAT_VERSION) {
    throw new AgentVaultError('format-version', `${file}: written by a newer Agent Vault (format ${fv}, this reads up to ${ARCHIVE_FORMAT_VERSION}); upgrade Agent Vault`, {
      location: { ...loc, pointer: '/format_version' },
      hint: 'install a newer Agent Vault to read this archive',
    });
  }
  if (Array.isArray(m.entries)) {
    m.entries.forEach((e: unknown, i: number) => {
      const o = e as { name?: unknown; encrypted?: unknown } | null;
      if (o && typeof o === 'object' && typeof o.name === 'string' && o.name.startsWith('secrets/') && o.encrypted !== true) {
        throw new AgentVaultError('plaintext-secret', `${where}: entry ${JSON.stringify(o.name)} is under secrets/ but not encrypted; secrets are never stored in plain text`, {
          location: { ...loc, pointer: `/entries/${i}` },
        });
      }
    });
  }
  const validate = getValidator('archive-manifest');
  if (!validate(m)) {
    const errs = validate.errors ?? [];
    throw new AgentVaultError('manifest', `${where}: invalid manifest: ${describeSchemaErrors(errs)}`, {
      location: { ...loc, pointer: errs[0]?.instancePath ?? '' },
    });
  }
  const manifest = m as Manifest;
  const names = new Map<string, string>();
  manifest.entries.forEach((e, i) => {
    const problem = entryNameProblem(e.name);
    if (problem) throw new AgentVaultError('entry-name', `${where}: entry ${JSON.stringify(e.name)} has an unsafe name: ${problem}`, { location: { ...loc, pointer: `/entries/${i}/name` } });
    if (e.name === MANIFEST_ENTRY) throw new AgentVaultError('manifest', `${where}: "entries" must not list ${MANIFEST_ENTRY} itself`, { location: { ...loc, pointer: `/entries/${i}` } });
    const k = nameKey(e.name);
    if (names.has(k))
      throw new AgentVaultError('entry-name', `${where}: entry ${JSON.stringify(e.name)} is listed twice (or collides with ${JSON.stringify(names.get(k))} on a case-insensitive file system)`, {
        location: { ...loc, pointer: `/entries/${i}` },
      });
    names.set(k, e.name);
  });
  const encrypted = manifest.encryption !== undefined && manifest.encryption !== null;
  manifest.entries.forEach((e, i) => {
    if (encrypted && e.encrypted !== true) {
      throw new AgentVaultError('manifest', `${where}: the archive is encrypted but entry ${JSON.stringify(e.name)} is not marked "encrypted"; every entry of an encrypted archive is encrypted`, {
        location: { ...loc, pointer: `/entries/${i}/encrypted` },
      });
    }
    if (!encrypted && e.encrypted === true) {
      throw new AgentVaultError('manifest', `${where}: entry ${JSON.stringify(e.name)} is marked "encrypted" but the manifest has no "encryption" section`, {
        location: { ...loc, pointer: `/entries/${i}/encrypted` },
      });
    }
  });
  const listed = new Set(manifest.entries.map((e) => e.name));
  const agentIds = new Set<string>();
  manifest.agents.forEach((a, i) => {
    if (agentIds.has(a.id)) throw new AgentVaultError('manifest', `${where}: agent ${JSON.stringify(a.id)} is listed twice`, { location: { ...loc, pointer: `/agents/${i}/id` } });
    agentIds.add(a.id);
    for (const key of ['entry', 'passages_entry', 'vectors_entry', 'file_passages_entry', 'file_vectors_entry'] as const) {
      const ref = a[key];
      if (ref != null && !listed.has(ref)) {
        throw new AgentVaultError('manifest', `${where}: agent ${JSON.stringify(a.id)} names ${key} ${JSON.stringify(ref)}, which "entries" does not list`, {
          location: { ...loc, pointer: `/agents/${i}/${key}` },
        });
      }
    }
  });
  return manifest;
}

// ---------------------------------------------------------------------------------------------
// writer

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function toReadable(data: NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array>): Readable {
  if (data instanceof Readable) return data;
  if (data && typeof (data as AsyncIterable<Buffer>)[Symbol.asyncIterator] === 'function') return Readable.from(data as AsyncIterable<Buffer>, { objectMode: false });
  return new Readable().wrap(data as NodeJS.ReadableStream);
}

/**
 * The checks every writer of snapshot entries makes before an entry is added (the archive writer
 * and the store's snapshot writer): a valid name, not the manifest, not added twice (nor a name
 * that collides on a case-insensitive file system: `names` maps nameKey → name and is updated),
 * no secrets in plain text. Returns the entry's manifest record, to be completed with size and sha256.
 */
export function reserveEntry(
  names: Map<string, string>,
  name: string,
  opts: AddEntryOptions | undefined,
  where: { file: string; encrypted: boolean; what: 'an archive' | 'a snapshot' },
): ManifestEntry {
  const location = { file: where.file, entry: name };
  const problem = entryNameProblem(name);
  if (problem) throw new AgentVaultError('entry-name', `cannot add entry ${JSON.stringify(name)} to ${where.file}: ${problem}`, { location });
  if (name === MANIFEST_ENTRY) throw new AgentVaultError('entry-name', `${MANIFEST_ENTRY} is written by finish(); it cannot be added as an entry`, { location });
  const k = nameKey(name);
  const prev = names.get(k);
  if (prev !== undefined) {
    throw new AgentVaultError(
      'entry-name',
      `cannot add entry ${JSON.stringify(name)} to ${where.file}: ${prev === name ? 'it was already added' : `it collides with ${JSON.stringify(prev)} on a case-insensitive file system`}`,
      { location },
    );
  }
  if (name.startsWith('secrets/') && !where.encrypted) {
    throw new AgentVaultError('plaintext-secret', `refusing to write ${JSON.stringify(name)} unencrypted: secrets are never stored in plain text in ${where.what}`, {
      location,
      remedy: 'encrypt',
      hint: `secrets go only into encrypted ${where.what === 'an archive' ? 'archives' : 'snapshots'}`,
    });
  }
  names.set(k, name);
  const compress = opts?.compress ?? defaultCompress(name);
  // encrypted entries are compressed (if at all) before encryption, inside the ciphertext
  const entry: ManifestEntry = { name, size: 0, sha256: '', media_type: opts?.mediaType ?? defaultMediaType(name), compression: compress && !where.encrypted ? 'deflate' : 'store' };
  if (where.encrypted) entry.encrypted = true;
  return entry;
}

class ZipArchiveWriter implements ArchiveWriter {
  private readonly zip = new yazl.ZipFile();
  private readonly entries: ManifestEntry[] = [];
  private readonly names = new Map<string, string>();
  private readonly pending: Promise<unknown>[] = [];
  /** Streams being consumed, destroyed when the archive fails so that their producers stop (no hang on a full disk). */
  private readonly inFlight = new Set<{ src: Readable; meter: Transform }>();
  private readonly mtime = new Date();
  private readonly output: Promise<void>;
  private state: 'open' | 'finishing' | 'done' | 'failed' = 'open';
  private failure: AgentVaultError | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (e: AgentVaultError) => void;
  private cleanup: Promise<void> | undefined;

  constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly ws: WriteStream,
    private readonly overwrite: boolean,
    private readonly crypto?: ArchiveCrypto,
  ) {
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => undefined);
    this.zip.on('error', (e: Error) => this.fail(e));
    this.output = pipeline(this.zip.outputStream as Readable, ws);
    this.output.catch((e: unknown) => this.fail(e));
  }

  private fail(e: unknown, entry?: string): AgentVaultError {
    if (this.failure) return this.failure;
    let err: AgentVaultError;
    if (e instanceof AgentVaultError) err = e;
    else {
      const errno = (e as NodeJS.ErrnoException)?.code;
      if (errno && /^E[A-Z]+$/.test(errno)) err = ioError(e, this.path, 'write');
      else {
        err = new AgentVaultError('write-failed', `cannot write ${this.path}${entry ? ` (entry ${JSON.stringify(entry)})` : ''}: ${errorMessage(e)}`, {
          location: { file: this.path, entry },
          cause: e,
          kind: 'usage',
        });
      }
    }
    this.failure = err;
    this.state = 'failed';
    this.rejectFailed(err);
    for (const f of this.inFlight) {
      f.meter.destroy(err);
      f.src.destroy(err);
    }
    this.inFlight.clear();
    this.cleanup = this.removeTemp();
    return err;
  }

  private async removeTemp(): Promise<void> {
    try {
      (this.zip.outputStream as Readable).destroy();
    } catch {
      /* already gone */
    }
    this.ws.destroy();
    await this.output.catch(() => undefined);
    if (!this.ws.closed) await once(this.ws, 'close').catch(() => undefined);
    await fsp.rm(this.tmp, { force: true }).catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.failure) throw this.failure;
    if (this.state !== 'open') {
      throw new AgentVaultError('write-failed', `archive ${this.path} is already ${this.state === 'done' ? 'finished' : 'being finished'}; no more entries can be added`);
    }
  }

  private reserve(name: string, opts: AddEntryOptions | undefined): ManifestEntry {
    this.assertOpen();
    const entry = reserveEntry(this.names, name, opts, { file: this.path, encrypted: !!this.crypto, what: 'an archive' });
    this.entries.push(entry);
    return entry;
  }

  private zipOptions(entry: ManifestEntry): Partial<yazl.Options> {
    return { mtime: this.mtime, mode: 0o100644, compress: entry.compression === 'deflate' };
  }

  async addJson(name: string, value: unknown, opts?: AddEntryOptions): Promise<void> {
    await this.addBuffer(name, jsonEntryBytes(name, value, this.path), { mediaType: MEDIA_TYPES.json, ...opts });
  }

  async addBuffer(name: string, data: Buffer, opts?: AddEntryOptions): Promise<void> {
    if (this.crypto) {
      // encrypted through the stream path; like an unencrypted buffer, it does not wait for the
      // zip to consume it (failures surface in finish())
      const p = this.addStream(name, Readable.from([data]), opts);
      p.catch(() => undefined);
      await Promise.resolve();
      if (this.failure) throw this.failure;
      return;
    }
    if (data.length > 0x3fffffff) {
      await this.addStream(name, Readable.from([data]), opts);
      return;
    }
    const entry = this.reserve(name, opts);
    entry.size = data.length;
    entry.sha256 = sha256Hex(data);
    try {
      this.zip.addBuffer(data, name, this.zipOptions(entry));
    } catch (e) {
      throw this.fail(e, name);
    }
  }

  addStream(name: string, data: NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array>, opts?: AddEntryOptions): Promise<ManifestEntry> {
    let entry: ManifestEntry;
    try {
      entry = this.reserve(name, opts);
    } catch (e) {
      return Promise.reject(e);
    }
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer | Uint8Array | string, _enc: BufferEncoding, cb: TransformCallback) {
        const b = Buffer.isBuffer(chunk) ? chunk : typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        hash.update(b);
        size += b.length;
        cb(null, b);
      },
    });
    const consumed = once(meter, 'end');
    consumed.catch(() => undefined);
    let src: Readable;
    try {
      src = toReadable(data);
    } catch (e) {
      return Promise.reject(this.fail(e, name));
    }
    const flight = { src, meter };
    this.inFlight.add(flight);
    const deflateInside = (opts?.compress ?? defaultCompress(name)) === true;
    const fed = this.crypto ? pipeline(src, this.crypto.encryptor(name, { deflate: deflateInside }), meter) : pipeline(src, meter);
    fed.catch((e: unknown) => this.fail(wrapSourceError(e, this.path, name), name));
    this.zip.addReadStreamLazy(name, this.zipOptions(entry), (cb) => cb(null, meter));
    const done = (async (): Promise<ManifestEntry> => {
      try {
        await Promise.race([Promise.all([consumed, fed]), this.failed]);
      } finally {
        this.inFlight.delete(flight);
      }
      entry.size = size;
      entry.sha256 = hash.digest('hex');
      return { ...entry };
    })();
    this.pending.push(done.catch(() => undefined));
    return done;
  }

  async finish(input: ManifestInput): Promise<{ path: string; manifest: Manifest; bytes: number }> {
    this.assertOpen();
    this.state = 'finishing';
    try {
      await Promise.race([Promise.all(this.pending), this.failed]);
      if (this.failure) throw this.failure;
      const manifest = buildManifest(input, this.entries);
      if (this.crypto) manifest.encryption = this.crypto.section();
      else if (manifest.encryption !== undefined) {
        throw new AgentVaultError('manifest', `cannot write ${this.path}: the manifest has an "encryption" section but the writer has no key`, { location: { file: this.path } });
      }
      checkManifest(JSON.parse(JSON.stringify(manifest)), this.path);
      const text = JSON.stringify(manifest, null, 2) + '\n';
      const buf = Buffer.from(text, 'utf8');
      this.zip.addBuffer(buf, MANIFEST_ENTRY, { mtime: this.mtime, mode: 0o100644, compress: true });
      const mac = this.crypto ? ` manifest_mac=${this.crypto.manifestMac(buf)}` : '';
      this.zip.end({ forceZip64Format: false, comment: `${ARCHIVE_FORMAT} format_version=${manifest.format_version} manifest_sha256=${sha256Hex(buf)}${mac}` });
      await Promise.race([this.output, this.failed]);
      const bytes = await fsyncFile(this.tmp);
      await publishFile(this.tmp, this.path, { overwrite: this.overwrite });
      await fsyncDir(path.dirname(this.path));
      this.state = 'done';
      return { path: this.path, manifest, bytes };
    } catch (e) {
      const err = this.fail(e);
      await this.cleanup;
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'done') return;
    if (!this.failure) this.fail(new AgentVaultError('aborted', `writing ${this.path} was aborted`, { location: { file: this.path } }));
    await this.cleanup;
  }
}

function wrapSourceError(e: unknown, file: string, entry: string): AgentVaultError {
  if (e instanceof AgentVaultError) return e;
  return new AgentVaultError('write-failed', `cannot write entry ${JSON.stringify(entry)} of ${file}: its data stream failed: ${errorMessage(e)}`, {
    location: { file, entry },
    cause: e,
    kind: 'usage',
  });
}

export function buildManifest(input: ManifestInput, entries: ManifestEntry[]): Manifest {
  const { format: _f, format_version: fv, tool, entries: _e, created_at, ...rest } = input;
  if (fv !== undefined && fv !== ARCHIVE_FORMAT_VERSION) {
    throw new AgentVaultError('manifest', `this Agent Vault writes archive format ${ARCHIVE_FORMAT_VERSION}, not ${fv}`);
  }
  return {
    format: ARCHIVE_FORMAT,
    format_version: ARCHIVE_FORMAT_VERSION,
    tool: { name: 'agent-vault', version: tool?.version ?? TOOL_VERSION },
    created_at: created_at ?? new Date().toISOString(),
    ...rest,
    agents: input.agents ?? [],
    entries: entries.map((e) => ({ ...e })),
  };
}

/**
 * Starts an archive at `destPath`. Writes go to `<dest>.tmp-<random>` in the same folder; finish()
 * fsyncs and renames it into place. An existing destination is refused (AgentVaultError 'exists')
 * unless `overwrite`; on any error the temp file is removed.
 */
export async function createArchiveWriter(destPath: string, opts: CreateArchiveOptions = {}): Promise<ArchiveWriter> {
  const dest = path.resolve(destPath);
  const crypto = opts.encryption ? ArchiveCrypto.forWriting(opts.encryption.key) : undefined;
  let st: import('node:fs').Stats | undefined;
  try {
    st = await fsp.lstat(dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(e, dest, 'write');
  }
  if (st) {
    if (!opts.overwrite) throw existsError(dest);
    if (st.isDirectory()) throw new AgentVaultError('io', `cannot write ${dest}: it is a folder`, { location: { file: dest }, kind: 'usage' });
  }
  const dir = path.dirname(dest);
  try {
    const d = await fsp.stat(dir);
    if (!d.isDirectory()) throw new AgentVaultError('io', `cannot write ${dest}: ${dir} is not a folder`, { location: { file: dest }, kind: 'usage' });
  } catch (e) {
    throw ioError(e, dir, 'write');
  }
  const tmp = tempPathFor(dest);
  const ws = createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
  try {
    await once(ws, 'open');
  } catch (e) {
    throw ioError(e, tmp, 'create');
  }
  return new ZipArchiveWriter(dest, tmp, ws, !!opts.overwrite, crypto);
}

// ---------------------------------------------------------------------------------------------
// reader

const LOCAL_HEADER_SIG = Buffer.from([0x50, 0x4b, 0x03, 0x04]);
const EMPTY_ZIP_SIG = Buffer.from([0x50, 0x4b, 0x05, 0x06]);

interface OpenedZip {
  zip: yauzl.ZipFile;
  entries: Map<string, yauzl.Entry>;
  order: string[];
  comment: string;
}

async function readHead(file: string, n: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function openZipFile(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true, strictFileNames: true }, (err, zip) => {
      if (err) reject(err);
      else resolve(zip);
    });
  });
}

async function openZip(file: string): Promise<OpenedZip> {
  let size: number;
  try {
    const st = await fsp.stat(file);
    if (st.isDirectory()) throw new AgentVaultError('not-archive', `${file} is a folder, not a snapshot archive`, { location: { file } });
    size = st.size;
  } catch (e) {
    throw ioError(e, file, 'read');
  }
  if (size === 0) throw new AgentVaultError('not-archive', `${file} is empty (0 bytes): not a snapshot archive`, { location: { file } });
  let head: Buffer;
  try {
    head = await readHead(file, 4);
  } catch (e) {
    throw ioError(e, file, 'read');
  }
  const looksZip = head.equals(LOCAL_HEADER_SIG) || head.equals(EMPTY_ZIP_SIG);
  if (!looksZip) {
    throw new AgentVaultError('not-archive', `${file} is not a snapshot archive (it is not a zip file)`, {
      location: { file },
      hint: 'an Agent Vault snapshot is a zip file with a manifest.json; agent files (.af) are JSON',
    });
  }
  let zip: yauzl.ZipFile;
  try {
    zip = await openZipFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code) throw ioError(e, file, 'read');
    throw new AgentVaultError('truncated', `${file} is truncated or damaged: ${errorMessage(e)} (was the copy or download interrupted?)`, { location: { file }, cause: e });
  }
  const entries = new Map<string, yauzl.Entry>();
  const keys = new Map<string, string>();
  const order: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('entry', (entry: yauzl.Entry) => {
        try {
          const raw = entry.fileNameRaw;
          const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, entry.extraFields, true);
          const problem = entryNameProblem(name);
          if (problem) throw new AgentVaultError('entry-name', `${file}: unsafe entry name ${JSON.stringify(name)}: ${problem}`, { location: { file, entry: name } });
          const k = nameKey(name);
          const prev = keys.get(k);
          if (prev !== undefined) {
            throw new AgentVaultError(
              'entry-name',
              `${file}: entry ${JSON.stringify(name)} occurs twice${prev === name ? '' : ` (it collides with ${JSON.stringify(prev)} on a case-insensitive file system)`}`,
              {
                location: { file, entry: name },
              },
            );
          }
          if (entry.isEncrypted())
            throw new AgentVaultError('corrupt', `${file}: entry ${JSON.stringify(name)} uses zip encryption, which snapshot archives never use`, { location: { file, entry: name } });
          if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
            throw new AgentVaultError('corrupt', `${file}: entry ${JSON.stringify(name)} uses unsupported zip compression method ${entry.compressionMethod}`, { location: { file, entry: name } });
          }
          keys.set(k, name);
          entries.set(name, entry);
          order.push(name);
          zip.readEntry();
        } catch (e) {
          reject(e);
        }
      });
      zip.once('end', () => resolve());
      zip.once('error', reject);
      zip.readEntry();
    });
  } catch (e) {
    zip.close();
    if (e instanceof AgentVaultError) throw e;
    if ((e as NodeJS.ErrnoException).code) throw ioError(e, file, 'read');
    throw new AgentVaultError('corrupt', `${file} is damaged: its zip directory cannot be read (${errorMessage(e)})`, { location: { file }, cause: e });
  }
  const comment = Buffer.isBuffer(zip.comment) ? (zip.comment as Buffer).toString('latin1') : String(zip.comment ?? '');
  return { zip, entries, order, comment };
}

function checksumError(file: string, entry: string, why: string, cause?: unknown): AgentVaultError {
  return new AgentVaultError('checksum', `${file}: entry ${JSON.stringify(entry)} is corrupt: ${why}`, {
    location: { file, entry },
    cause,
    hint: 'the archive was damaged after it was written; use another copy',
  });
}

function describeStreamError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const msg = errorMessage(e);
  if (code && String(code).startsWith('Z_')) return `its compressed data is invalid (${msg})`;
  if (/bytes/.test(msg)) return `its length does not match the zip directory (${msg})`;
  return msg;
}

/** A Transform that passes data through and checks size, sha256 (when known) and CRC-32 at the end. */
class VerifyingStream extends Transform {
  private readonly hash = createHash('sha256');
  private size = 0;
  private crc = 0;

  constructor(
    private readonly file: string,
    private readonly entryName: string,
    private readonly expected: { size: number; sha256?: string; crc32: number },
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.crc = crc32(chunk, this.crc);
    this.size += chunk.length;
    if (this.size > this.expected.size) {
      cb(checksumError(this.file, this.entryName, `it is longer than the ${this.expected.size} bytes the manifest records`));
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const { size, sha256, crc32: crc } = this.expected;
    if (this.size !== size) return cb(checksumError(this.file, this.entryName, `it is ${this.size} bytes, the manifest records ${size}`));
    const digest = this.hash.digest('hex');
    if (sha256 !== undefined && digest !== sha256) return cb(checksumError(this.file, this.entryName, `its sha256 is ${digest}, the manifest records ${sha256}`));
    if (this.crc >>> 0 !== crc >>> 0) return cb(checksumError(this.file, this.entryName, `its CRC-32 is ${(this.crc >>> 0).toString(16)}, the zip directory records ${(crc >>> 0).toString(16)}`));
    cb();
  }
}

function openRawStream(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err) reject(err);
      else resolve(stream);
    });
  });
}

/**
 * The entry's uncompressed bytes through a VerifyingStream. Every failure (bad local header,
 * undecodable deflate data, wrong length, wrong digest) is a 'checksum' error naming the entry;
 * destroying the returned stream releases the file.
 */
async function openVerifiedStream(zip: yauzl.ZipFile, entry: yauzl.Entry, file: string, name: string, expected: { size: number; sha256?: string; crc32: number }): Promise<VerifyingStream> {
  let raw: Readable;
  try {
    raw = await openRawStream(zip, entry);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && !String(code).startsWith('Z_')) throw ioError(e, file, 'read');
    throw checksumError(file, name, describeStreamError(e), e);
  }
  const verifier = new VerifyingStream(file, name, expected);
  raw.on('error', (e) => verifier.destroy(e instanceof AgentVaultError ? e : checksumError(file, name, describeStreamError(e), e)));
  verifier.on('close', () => {
    if (!raw.destroyed) raw.destroy();
  });
  raw.pipe(verifier);
  return verifier;
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

class ZipArchiveReader implements ArchiveFileReader {
  private closed = false;
  private readonly live = new Set<Readable>();
  private readonly byName: Map<string, ManifestEntry>;
  readonly encrypted: boolean;

  constructor(
    readonly path: string,
    private readonly opened: OpenedZip,
    readonly manifest: Manifest,
    private readonly manifestSha: string | undefined,
    private readonly crypto?: ArchiveCrypto,
  ) {
    this.byName = new Map(manifest.entries.map((e) => [e.name, e]));
    this.encrypted = manifest.encryption !== undefined && manifest.encryption !== null;
  }

  get decryptable(): boolean {
    return !this.encrypted || this.crypto !== undefined;
  }

  has(name: string): boolean {
    return this.byName.has(name) && this.opened.entries.has(name);
  }

  list(): ManifestEntry[] {
    return this.manifest.entries.map((e) => ({ ...e }));
  }

  private expected(name: string): { entry: yauzl.Entry; size: number; sha256?: string; crc32: number } {
    const zipEntry = this.opened.entries.get(name);
    if (name === MANIFEST_ENTRY && zipEntry) return { entry: zipEntry, size: zipEntry.uncompressedSize, sha256: this.manifestSha, crc32: zipEntry.crc32 };
    const m = this.byName.get(name);
    if (!m) throw new AgentVaultError('missing-entry', `${this.path}: the archive has no entry ${JSON.stringify(name)}`, { location: { file: this.path, entry: name } });
    if (!zipEntry)
      throw new AgentVaultError('missing-entry', `${this.path}: entry ${JSON.stringify(name)} is listed in the manifest but missing from the archive`, { location: { file: this.path, entry: name } });
    return { entry: zipEntry, size: m.size, sha256: m.sha256, crc32: zipEntry.crc32 };
  }

  /** @internal The stored bytes (ciphertext for an encrypted entry), verified against the checksums. */
  async openStored(name: string): Promise<Readable> {
    if (this.closed) throw new AgentVaultError('closed', `${this.path}: the archive is closed`, { location: { file: this.path, entry: name } });
    const exp = this.expected(name);
    const verifier = await openVerifiedStream(this.opened.zip, exp.entry, this.path, name, exp);
    this.live.add(verifier);
    verifier.on('close', () => this.live.delete(verifier));
    return verifier;
  }

  async openStream(name: string): Promise<NodeJS.ReadableStream> {
    const isEncrypted = name !== MANIFEST_ENTRY && this.byName.get(name)?.encrypted === true;
    if (isEncrypted && !this.crypto) {
      this.expected(name);
      throw new AgentVaultError('encrypted', `${this.path}: entry ${JSON.stringify(name)} is encrypted; give the passphrase or key to read it`, {
        location: { file: this.path, entry: name },
        remedy: 'key',
        hint: 'AGENT_VAULT_PASSPHRASE is read too when it is set',
      });
    }
    const stored = await this.openStored(name);
    if (!isEncrypted) return stored;
    const dec = this.crypto!.decryptor(name, this.path);
    stored.on('error', (e) => dec.destroy(e));
    dec.on('close', () => {
      if (!stored.destroyed) stored.destroy();
    });
    stored.pipe(dec);
    this.live.add(dec);
    dec.on('close', () => this.live.delete(dec));
    return dec;
  }

  async readEntry(name: string): Promise<Buffer> {
    return collect(await this.openStream(name));
  }

  async readJson<T>(name: string): Promise<T> {
    const buf = await this.readEntry(name);
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch (e) {
      throw new AgentVaultError('json-syntax', `${this.path}!${name}: invalid JSON: ${errorMessage(e)}`, { location: { file: this.path, entry: name } });
    }
  }

  async verifyAll(): Promise<{ entry: string; ok: boolean; error?: string }[]> {
    const out: { entry: string; ok: boolean; error?: string }[] = [];
    for (const name of [MANIFEST_ENTRY, ...this.manifest.entries.map((e) => e.name)]) {
      try {
        const s = this.decryptable ? await this.openStream(name) : await this.openStored(name);
        for await (const _ of s as AsyncIterable<Buffer>) {
          /* drain: verification happens in the stream */
        }
        out.push({ entry: name, ok: true });
      } catch (e) {
        out.push({ entry: name, ok: false, error: errorMessage(e) });
      }
    }
    return out;
  }

  entryStreams(): EntryStreams {
    if (this.closed) throw new AgentVaultError('closed', `${this.path}: the archive is closed`, { location: { file: this.path } });
    return EntryStreams.fromOpenZip(this.path, this.opened.zip, this.opened.entries, this.manifest.entries, this.crypto);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // streams the caller abandoned would keep the file open forever
    for (const s of [...this.live]) s.destroy();
    const zip = this.opened.zip;
    if (!zip.isOpen) return;
    const closedEvt = once(zip, 'close').catch(() => undefined);
    zip.close();
    await closedEvt;
  }
}

async function loadManifest(file: string, opened: OpenedZip): Promise<{ manifest: Manifest; sha: string | undefined; bytes: Buffer }> {
  const me = opened.entries.get(MANIFEST_ENTRY);
  if (!me) {
    throw new AgentVaultError('manifest', `${file} is not an Agent Vault snapshot: it has no ${MANIFEST_ENTRY}`, {
      location: { file, entry: MANIFEST_ENTRY },
      hint: 'was the archive written completely? Agent Vault writes manifest.json last',
    });
  }
  if (me.uncompressedSize > MAX_MANIFEST_BYTES) {
    throw new AgentVaultError('manifest', `${file}: ${MANIFEST_ENTRY} is ${me.uncompressedSize} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`, { location: { file, entry: MANIFEST_ENTRY } });
  }
  const m = /manifest_sha256=([0-9a-f]{64})/.exec(opened.comment);
  const sha = m?.[1];
  const verifier = await openVerifiedStream(opened.zip, me, file, MANIFEST_ENTRY, { size: me.uncompressedSize, sha256: sha, crc32: me.crc32 });
  const buf = await collect(verifier);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf));
  } catch (e) {
    throw new AgentVaultError('manifest', `${file}!${MANIFEST_ENTRY}: invalid JSON: ${errorMessage(e)}`, { location: { file, entry: MANIFEST_ENTRY } });
  }
  return { manifest: checkManifest(value, file), sha, bytes: buf };
}

/** Checks that the manifest and the zip directory agree (no entry data is read). */
function crossCheck(file: string, manifest: Manifest, opened: OpenedZip): void {
  const listed = new Set<string>();
  for (const e of manifest.entries) {
    listed.add(e.name);
    const z = opened.entries.get(e.name);
    if (!z) throw new AgentVaultError('missing-entry', `${file}: entry ${JSON.stringify(e.name)} is listed in the manifest but missing from the archive`, { location: { file, entry: e.name } });
    if (z.uncompressedSize !== e.size) throw checksumError(file, e.name, `the zip directory records ${z.uncompressedSize} bytes, the manifest ${e.size}`);
  }
  for (const name of opened.order) {
    if (name !== MANIFEST_ENTRY && !listed.has(name)) {
      throw new AgentVaultError('manifest', `${file}: entry ${JSON.stringify(name)} is in the archive but not listed in its manifest`, { location: { file, entry: name } });
    }
  }
}

export async function openArchive(archivePath: string, opts: OpenArchiveOptions = {}): Promise<ArchiveFileReader> {
  const file = archivePath;
  const opened = await openZip(file);
  try {
    const { manifest, sha, bytes } = await loadManifest(file, opened);
    if (!opts.verifyManifestOnly) crossCheck(file, manifest, opened);
    const crypto = await archiveCrypto(file, manifest, bytes, opened.comment, opts.decrypt);
    const reader = new ZipArchiveReader(file, opened, manifest, sha, crypto);
    if (opts.verifyEntries) {
      try {
        for (const e of manifest.entries) {
          const s = reader.decryptable ? await reader.openStream(e.name) : await reader.openStored(e.name);
          for await (const _ of s as AsyncIterable<Buffer>) {
            /* drain: the stream verifies */
          }
        }
      } catch (e) {
        await reader.close();
        throw e;
      }
    }
    return reader;
  } catch (e) {
    if (opened.zip.isOpen) opened.zip.close();
    throw e;
  }
}

/**
 * The keys of an encrypted archive, after checking the key (wrong → 'wrong-key') and the
 * manifest's authentication code in the zip comment (missing or wrong → 'tampered').
 */
async function archiveCrypto(file: string, manifest: Manifest, manifestBytes: Buffer, comment: string, decrypt: DecryptOptions | undefined): Promise<ArchiveCrypto | undefined> {
  const encrypted = manifest.encryption !== undefined && manifest.encryption !== null;
  if (!encrypted) {
    if (decrypt?.requireEncrypted) {
      throw new AgentVaultError('not-encrypted', `${file} is not encrypted, but an encrypted archive was expected`, {
        location: { file, entry: MANIFEST_ENTRY, pointer: '/encryption' },
        hint: 'an encrypted vault should hold only encrypted snapshots; was this archive replaced?',
      });
    }
    return undefined;
  }
  if (!decrypt || (decrypt.passphrase === undefined && decrypt.key === undefined)) return undefined;
  const section = parseEncryptionSection(manifest.encryption, file);
  const crypto = await openArchiveCrypto(section, decrypt, file);
  const mac = /manifest_mac=([0-9a-f]{64})/.exec(comment)?.[1];
  if (!mac || !crypto.verifyManifestMac(manifestBytes, mac)) {
    throw new AgentVaultError('tampered', `${file}: the manifest failed authentication${mac ? '' : ' (its authentication code is missing)'}: it was changed after the archive was written`, {
      location: { file, entry: MANIFEST_ENTRY },
      hint: 'do not trust this archive; use another copy',
    });
  }
  return crypto;
}

/** Reads only manifest.json (random access; no other entry's data) — the fast path for listing. */
export async function readManifest(archivePath: string): Promise<Manifest> {
  const reader = await openArchive(archivePath);
  await reader.close();
  return reader.manifest;
}
