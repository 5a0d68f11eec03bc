/**
 * Compact embedding storage for snapshot archives (`passages/<agent-id>.vectors`) and pgvector
 * text helpers. Byte layout (all integers little-endian), see docs/FORMAT.md "Vector files":
 *
 *   offset size field
 *   0      4    magic "AVVF" (0x41 0x56 0x56 0x46)
 *   4      2    version (u16) = 1
 *   6      2    element type (u16): 1 = IEEE-754 binary32, little-endian
 *   8      4    dim (u32): the TRUE embedding dimension (not padded to 4096)
 *   12     4    flags (u32), 0; readers reject unknown bits
 *   16     8    count (u64): number of records, or 0xFFFF_FFFF_FFFF_FFFF when the writer did not
 *               know it up front (then count = (size - 32) / (4 * dim))
 *   24     8    reserved, zero
 *   32     …    count records of dim × 4 bytes each, in the order of the matching .jsonl lines
 */
import { endianness } from 'node:os';
import { PassThrough, type Readable } from 'node:stream';
import { AgentVaultError, type ErrorCode } from '../core/errors';

export const VECTOR_MAGIC = Buffer.from('AVVF', 'latin1');
export const VECTOR_FORMAT_VERSION = 1;
export const VECTOR_HEADER_SIZE = 32;
export const VECTOR_ELEMENT_FLOAT32_LE = 1;
/** Letta pads every stored embedding to this many dimensions (MAX_EMBEDDING_DIM). */
export const LETTA_PADDED_DIM = 4096;
const UNKNOWN_COUNT = 0xffff_ffff_ffff_ffffn;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

export interface VectorHeader {
  version: number;
  elementType: number;
  dim: number;
  /** Number of records (derived from the size when the header says "unknown"). */
  count: number;
  /** Whether the count was written in the header (false: derived from the byte length). */
  countInHeader: boolean;
  recordSize: number;
}

export type VectorLike = Float32Array | ArrayLike<number>;

function vecError(code: ErrorCode, message: string, where?: string): AgentVaultError {
  return new AgentVaultError(code, where ? `${where}: ${message}` : message, where ? { location: { entry: where } } : {});
}

export function encodeVectorHeader(dim: number, count?: number): Buffer {
  checkDim(dim);
  const h = Buffer.alloc(VECTOR_HEADER_SIZE);
  VECTOR_MAGIC.copy(h, 0);
  h.writeUInt16LE(VECTOR_FORMAT_VERSION, 4);
  h.writeUInt16LE(VECTOR_ELEMENT_FLOAT32_LE, 6);
  h.writeUInt32LE(dim, 8);
  h.writeUInt32LE(0, 12);
  h.writeBigUInt64LE(count === undefined ? UNKNOWN_COUNT : BigInt(count), 16);
  return h;
}

function checkDim(dim: number): void {
  if (!Number.isInteger(dim) || dim < 1 || dim > 0xffff_ffff) {
    throw new AgentVaultError('vector-dim', `vector dimension must be a positive integer, got ${dim}`);
  }
}

/** Parses and checks the 32-byte header. `totalSize` (whole file size) enables the size check. */
export function parseVectorHeader(header: Buffer, totalSize?: number, where?: string): VectorHeader {
  if (header.length < VECTOR_HEADER_SIZE) throw vecError('vector-format', `vector file is ${header.length} bytes, shorter than its ${VECTOR_HEADER_SIZE}-byte header`, where);
  if (!header.subarray(0, 4).equals(VECTOR_MAGIC)) throw vecError('vector-format', 'not an Agent Vault vector file (bad magic)', where);
  const version = header.readUInt16LE(4);
  if (version > VECTOR_FORMAT_VERSION) {
    throw vecError('format-version', `vector file version ${version} was written by a newer Agent Vault (this reads up to ${VECTOR_FORMAT_VERSION}); upgrade Agent Vault`, where);
  }
  if (version < 1) throw vecError('vector-format', `invalid vector file version ${version}`, where);
  const elementType = header.readUInt16LE(6);
  if (elementType !== VECTOR_ELEMENT_FLOAT32_LE) throw vecError('vector-format', `unsupported vector element type ${elementType}`, where);
  const dim = header.readUInt32LE(8);
  if (dim < 1) throw vecError('vector-format', 'vector file declares dimension 0', where);
  const flags = header.readUInt32LE(12);
  if (flags !== 0) throw vecError('vector-format', `unknown vector file flags 0x${flags.toString(16)}`, where);
  const rawCount = header.readBigUInt64LE(16);
  const recordSize = dim * 4;
  let count: number;
  const countInHeader = rawCount !== UNKNOWN_COUNT;
  if (countInHeader) {
    if (rawCount > BigInt(Number.MAX_SAFE_INTEGER)) throw vecError('vector-format', `vector count ${rawCount} is out of range`, where);
    count = Number(rawCount);
    if (totalSize !== undefined && totalSize !== VECTOR_HEADER_SIZE + count * recordSize) {
      throw vecError('vector-format', `vector file is ${totalSize} bytes but its header declares ${count} × ${dim}-dim records (${VECTOR_HEADER_SIZE + count * recordSize} bytes)`, where);
    }
  } else {
    if (totalSize === undefined) count = -1;
    else {
      const body = totalSize - VECTOR_HEADER_SIZE;
      if (body % recordSize !== 0) throw vecError('vector-format', `vector file body (${body} bytes) is not a whole number of ${dim}-dim records`, where);
      count = body / recordSize;
    }
  }
  return { version, elementType, dim, count, countInHeader, recordSize };
}

function decodeRecord(src: Buffer, offset: number, dim: number): Float32Array {
  const out = new Float32Array(dim);
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(out.buffer).set(src.subarray(offset, offset + dim * 4));
  } else {
    for (let i = 0; i < dim; i++) out[i] = src.readFloatLE(offset + i * 4);
  }
  return out;
}

function encodeRow(row: VectorLike, dim: number, into: Buffer, offset: number, where?: string): void {
  if (row.length !== dim) throw vecError('vector-dim', `vector has ${row.length} dimensions, expected ${dim}`, where);
  if (LITTLE_ENDIAN_HOST && row instanceof Float32Array) {
    into.set(new Uint8Array(row.buffer, row.byteOffset, row.byteLength), offset);
    return;
  }
  for (let i = 0; i < dim; i++) into.writeFloatLE(row[i], offset + i * 4);
}

/** Encodes rows into a complete vector file (header with count + records). */
export function encodeVectors(rows: Iterable<VectorLike>, dim: number): Buffer {
  const list = Array.isArray(rows) ? (rows as VectorLike[]) : [...rows];
  checkDim(dim);
  const out = Buffer.alloc(VECTOR_HEADER_SIZE + list.length * dim * 4);
  encodeVectorHeader(dim, list.length).copy(out, 0);
  list.forEach((row, i) => encodeRow(row, dim, out, VECTOR_HEADER_SIZE + i * dim * 4, `row ${i}`));
  return out;
}

/** Rows of a complete vector file; the header is checked when called (not lazily). */
export function readVectors(buffer: Buffer, where?: string): IterableIterator<Float32Array> & { header: VectorHeader } {
  const header = parseVectorHeader(buffer, buffer.length, where);
  function* rows(): Generator<Float32Array> {
    for (let i = 0; i < header.count; i++) yield decodeRecord(buffer, VECTOR_HEADER_SIZE + i * header.recordSize, header.dim);
  }
  return Object.assign(rows(), { header });
}

/**
 * Rows of a vector file read from a stream (e.g. ArchiveReader.openStream), without holding the
 * whole file. Checks the header count against the number of records actually present.
 */
export async function* readVectorsStream(stream: AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer | Uint8Array>, where?: string): AsyncGenerator<Float32Array, VectorHeader> {
  let pending: Buffer = Buffer.alloc(0);
  let header: VectorHeader | undefined;
  let seen = 0;
  for await (const chunk of stream) {
    const c = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    pending = pending.length ? Buffer.concat([pending, c]) : c;
    if (!header) {
      if (pending.length < VECTOR_HEADER_SIZE) continue;
      header = parseVectorHeader(pending.subarray(0, VECTOR_HEADER_SIZE), undefined, where);
      pending = pending.subarray(VECTOR_HEADER_SIZE);
    }
    let off = 0;
    while (pending.length - off >= header.recordSize) {
      if (header.countInHeader && seen >= header.count) throw vecError('vector-format', `vector file has more records than the ${header.count} its header declares`, where);
      yield decodeRecord(pending, off, header.dim);
      off += header.recordSize;
      seen++;
    }
    pending = pending.subarray(off);
  }
  if (!header) throw vecError('vector-format', `vector file is shorter than its ${VECTOR_HEADER_SIZE}-byte header`, where);
  if (pending.length) throw vecError('vector-format', `vector file ends with a partial record (${pending.length} bytes)`, where);
  if (header.countInHeader && seen !== header.count) throw vecError('vector-format', `vector file has ${seen} records but its header declares ${header.count}`, where);
  return { ...header, count: seen };
}

/**
 * Streaming writer: `stream` yields the encoded bytes (hand it to ArchiveWriter.addStream), rows
 * are appended one by one and buffered only up to `chunkBytes` + the stream's high-water mark.
 */
export class VectorWriter {
  readonly dim: number;
  readonly expectedCount: number | undefined;
  readonly stream: Readable;
  private readonly pt: PassThrough;
  private chunk: Buffer;
  private used = 0;
  private written = 0;
  private ended = false;

  constructor(opts: { dim: number; count?: number; chunkBytes?: number }) {
    checkDim(opts.dim);
    if (opts.count !== undefined && (!Number.isSafeInteger(opts.count) || opts.count < 0)) {
      throw new AgentVaultError('vector-dim', `vector count must be a non-negative integer, got ${opts.count}`);
    }
    this.dim = opts.dim;
    this.expectedCount = opts.count;
    const recordSize = opts.dim * 4;
    const chunkBytes = Math.max(recordSize, Math.floor((opts.chunkBytes ?? 256 * 1024) / recordSize) * recordSize);
    this.chunk = Buffer.allocUnsafe(chunkBytes);
    this.pt = new PassThrough({ highWaterMark: chunkBytes });
    this.stream = this.pt;
    this.pt.write(encodeVectorHeader(opts.dim, opts.count));
  }

  /** Number of rows appended so far. */
  get rows(): number {
    return this.written;
  }

  /** Appends one row (exactly `dim` values). Resolves when the consumer can take more. */
  async append(row: VectorLike): Promise<void> {
    if (this.ended) throw new AgentVaultError('vector-format', 'VectorWriter.append() after end()');
    if (this.expectedCount !== undefined && this.written >= this.expectedCount) {
      throw new AgentVaultError('vector-dim', `more vectors appended than the ${this.expectedCount} declared`);
    }
    encodeRow(row, this.dim, this.chunk, this.used, `vector ${this.written}`);
    this.used += this.dim * 4;
    this.written++;
    if (this.used === this.chunk.length) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.used === 0) return;
    const data = Buffer.from(this.chunk.subarray(0, this.used));
    this.used = 0;
    this.throwIfClosed();
    if (!this.pt.write(data)) await drainOrClose(this.pt);
    this.throwIfClosed();
  }

  /** The consumer is gone (e.g. the archive failed: disk full): stop instead of waiting for a drain that never comes. */
  private throwIfClosed(): void {
    if (!this.pt.destroyed) return;
    const cause = this.pt.errored;
    throw cause instanceof AgentVaultError ? cause : new AgentVaultError('write-failed', `the vector stream was closed by its consumer${cause ? `: ${cause.message}` : ''}`, { cause });
  }

  /** Finishes the stream; rejects (and errors the stream) if fewer rows than declared were appended. */
  async end(): Promise<void> {
    if (this.ended) return;
    if (this.expectedCount !== undefined && this.written !== this.expectedCount) {
      const err = new AgentVaultError('vector-dim', `${this.written} vectors appended but ${this.expectedCount} were declared`);
      this.ended = true;
      this.pt.destroy(err);
      throw err;
    }
    await this.flush();
    this.ended = true;
    this.pt.end();
  }

  /** Errors the stream (the archive entry that consumes it fails). */
  abort(err: Error): void {
    this.ended = true;
    this.pt.destroy(err);
  }
}

function drainOrClose(stream: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed) return resolve();
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

// ---------------------------------------------------------------------------------------------
// pgvector text literals

const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Parses pgvector's text form `[1,2.5,-3e-05]` into float32 values (rounded like pgvector's
 * strtof). Rejects what pgvector rejects: empty vectors, NaN, infinities, out-of-range values.
 */
export function parsePgVector(text: string, where?: string): Float32Array {
  const s = text.trim();
  if (s.length < 2 || s[0] !== '[' || s[s.length - 1] !== ']') {
    throw vecError('vector-parse', `invalid pgvector literal ${JSON.stringify(abbreviate(text))}: must look like "[1,2,3]"`, where);
  }
  const body = s.slice(1, -1);
  if (body.trim() === '') throw vecError('vector-parse', 'pgvector literal "[]" has no dimensions (a vector needs at least 1)', where);
  const parts = body.split(',');
  const out = new Float32Array(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i].trim();
    if (!NUMBER_RE.test(p)) {
      throw vecError('vector-parse', `invalid pgvector element ${i} ${JSON.stringify(abbreviate(p))} in ${JSON.stringify(abbreviate(text))}`, where);
    }
    const f = Math.fround(Number(p));
    if (!Number.isFinite(f)) throw vecError('vector-parse', `pgvector element ${i} (${p}) is out of range for float32`, where);
    out[i] = f;
  }
  return out;
}

/** Shortest decimal text that reads back (through float32 rounding) as exactly `x`. */
export function formatFloat32(x: number): string {
  const f = Math.fround(x);
  if (!Number.isFinite(f)) throw new AgentVaultError('vector-format', `cannot write ${x} into a pgvector value (NaN and infinities are not allowed)`);
  if (f === 0) return Object.is(f, -0) ? '-0' : '0';
  // Correctly rounded decimal approximations converge monotonically, so binary-search the digits.
  let lo = 1;
  let hi = 9; // 9 significant digits always round-trip a binary32
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (Math.fround(Number(f.toPrecision(mid))) === f) hi = mid;
    else lo = mid + 1;
  }
  return String(Number(f.toPrecision(lo)));
}

/** pgvector text literal for the values (each rounded to float32). */
export function formatPgVector(values: VectorLike): string {
  if (values.length === 0) throw new AgentVaultError('vector-format', 'a pgvector value needs at least 1 dimension');
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) parts[i] = formatFloat32(values[i]);
  return `[${parts.join(',')}]`;
}

/** Zero-pads to `size` dimensions (Letta stores embeddings padded to 4096). */
export function padTo(vec: VectorLike, size: number = LETTA_PADDED_DIM): Float32Array {
  if (vec.length > size) throw new AgentVaultError('vector-dim', `vector has ${vec.length} dimensions, more than the ${size} it should be padded to`);
  const out = new Float32Array(size);
  out.set(vec);
  return out;
}

/**
 * Drops the zero padding after the true dimension `dim`. Refuses (rather than silently losing
 * data) when a padding value is not zero.
 */
export function trimPadding(vec: VectorLike, dim: number, where?: string): Float32Array {
  if (!Number.isInteger(dim) || dim < 1) throw vecError('vector-dim', `embedding dimension must be a positive integer, got ${dim}`, where);
  if (dim > vec.length) throw vecError('vector-dim', `vector has ${vec.length} dimensions, fewer than the embedding dimension ${dim}`, where);
  for (let i = dim; i < vec.length; i++) {
    if (vec[i] !== 0) {
      throw vecError('vector-dim', `vector is not zero-padded after dimension ${dim}: element ${i} is ${vec[i]} (is the embedding dimension wrong?)`, where);
    }
  }
  return vec instanceof Float32Array ? vec.slice(0, dim) : Float32Array.from(Array.prototype.slice.call(vec, 0, dim) as number[]);
}

function abbreviate(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
