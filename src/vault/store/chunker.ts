/**
 * Chunking for the deduplicating store (docs/FORMAT.md, part II §4): where the bytes of an archive
 * entry are cut into blobs. The cut points only decide how well the store deduplicates; a reader
 * never needs them (a snapshot lists its blobs), so another implementation may chunk differently
 * and still read and write the same store.
 *
 * Entries with records are cut only between records, at content-defined record boundaries:
 *   - `lines`   (`.jsonl`): a record is a line, ending with `\n`;
 *   - `vectors` (`.vectors`): the 32-byte header, then one record per embedding (dim × 4 bytes);
 *   - `json`    (`.af`, `.json`): a record ends with the `}` closing an object that is an element
 *     of an array (a message, a content part, a block, a tool …), found by a byte scanner that
 *     tracks strings and nesting only;
 * and anything else (`bytes`: Qdrant snapshots, unknown entries) with FastCDC (a gear rolling hash,
 * normalised chunking).
 *
 * Record cut rule: at the end of a record of `n` bytes, with the chunk `len` bytes long so far,
 * cut when `len ≥ records.max`, or when `len ≥ records.min` and `fnv1a32(record) < 2^32 × n /
 * (records.avg − records.min)`. The decision depends on the record's own bytes only (and the
 * distance to the previous cut), so an appended message or an edited passage changes only the
 * chunk(s) around it: the cuts before it are unchanged and those after it re-synchronise at the
 * next cut. A record longer than `records.max` is cut inside with the gear hash (FastCDC rule
 * with the `bytes` parameters) and always ends its chunk.
 *
 * Why not an npm library: the one FastCDC package on npm (`fastcdc`, native Rust bindings) is
 * unmaintained (a handful of commits, needs a Rust toolchain to install) and, like every generic
 * CDC, cuts anywhere in the bytes; cutting on record boundaries needs its own scanner anyway, and
 * the FastCDC part is thirty lines.
 */
import { createHash } from 'node:crypto';

export type ChunkKind = 'lines' | 'vectors' | 'json' | 'bytes';

export interface SizeParams {
  min: number;
  avg: number;
  max: number;
}

export interface ChunkerParams {
  /** cuts between records (lines, vectors, json) */
  records: SizeParams;
  /** FastCDC for unstructured bytes (and inside oversized records) */
  bytes: SizeParams;
  /** number of blob ids per list blob (a snapshot's lists of blob ids, §5) */
  lists: SizeParams;
}

export const DEFAULT_CHUNKER: Readonly<ChunkerParams> = Object.freeze({
  records: Object.freeze({ min: 2048, avg: 8192, max: 65536 }),
  bytes: Object.freeze({ min: 16384, avg: 65536, max: 262144 }),
  lists: Object.freeze({ min: 64, avg: 512, max: 4096 }),
});

export function checkChunkerParams(p: ChunkerParams): string | null {
  const ok = (s: SizeParams | undefined, lo: number, hi: number): boolean => !!s && [s.min, s.avg, s.max].every((v) => Number.isInteger(v) && v >= lo && v <= hi) && s.min < s.avg && s.avg < s.max;
  if (!ok(p?.records, 64, 1 << 26)) return 'chunker.records must be integers min < avg < max between 64 and 2^26';
  if (!ok(p?.bytes, 64, 1 << 26)) return 'chunker.bytes must be integers min < avg < max between 64 and 2^26';
  if (!ok(p?.lists, 1, 1 << 20)) return 'chunker.lists must be integers min < avg < max between 1 and 2^20';
  return null;
}

/** The kind of chunking for an entry name. */
export function chunkKindFor(entryName: string): ChunkKind {
  if (entryName.endsWith('.jsonl')) return 'lines';
  if (entryName.endsWith('.vectors')) return 'vectors';
  if (entryName.endsWith('.af') || entryName.endsWith('.json')) return 'json';
  return 'bytes';
}

/** GEAR[i] = first 4 bytes (big-endian) of SHA-256("agent-vault/gear/<i>"), i = 0…255. */
export const GEAR: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) t[i] = createHash('sha256').update(`agent-vault/gear/${i}`).digest().readUInt32BE(0);
  return t;
})();

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** log2 of the average, rounded. */
function bitsFor(avg: number): number {
  return Math.max(1, Math.round(Math.log2(avg)));
}

const OBJ = 1;
const ARR = 2;
const MAX_TRACKED = 4096;

/**
 * A streaming chunker: push() buffers, get back the chunks completed so far (each a new Buffer);
 * end() gives the last one. Memory: at most one chunk (≤ the larger max) plus the input buffer.
 */
export class Chunker {
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** bytes in the current chunk */
  private len = 0;
  /** record hash (FNV-1a over the current record's bytes) */
  private rh = FNV_OFFSET;
  /** bytes of the current record seen */
  private recLen = 0;
  /** gear hash */
  private g = 0;
  /** inside a record longer than records.max: cut with the gear hash */
  private inside = false;
  // vectors
  private readonly vecHeader = Buffer.alloc(32);
  private vecHeaderLen = 0;
  private vecRecSize = 0;
  private vecPos = 0;
  // json
  private inStr = false;
  private esc = false;
  private depth = 0;
  private readonly stack = new Uint8Array(MAX_TRACKED);
  // gear masks (top bits of the 32-bit gear hash)
  private readonly shiftS: number;
  private readonly shiftL: number;
  private readonly recDiv: number;

  /**
   * `borrow`: the buffers pushed are never changed afterwards by their producer (an export's fresh
   * buffers), so a chunk that lies within one of them is handed out as a view of it, not a copy
   * (less garbage; the caller copies what it keeps). Without it every chunk is a copy of its own
   * (a ChunkReader may overwrite its buffer on the next read).
   */
  constructor(
    readonly kind: ChunkKind,
    readonly params: ChunkerParams = DEFAULT_CHUNKER,
    private readonly borrow = false,
  ) {
    const b = bitsFor(params.bytes.avg);
    // normalised chunking (FastCDC level 2): harder before avg, easier after
    this.shiftS = 32 - Math.min(31, b + 2);
    this.shiftL = 32 - Math.max(1, b - 2);
    this.recDiv = params.records.avg - params.records.min;
  }

  push(b: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (b.length === 0) return out;
    if (this.kind === 'bytes') this.scanBytes(b, out);
    else this.scanRecords(b, out);
    return out;
  }

  end(): Buffer[] {
    const out: Buffer[] = [];
    if (this.partsLen > 0) out.push(this.take());
    return out;
  }

  private take(): Buffer {
    const c = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.partsLen);
    this.parts = [];
    this.partsLen = 0;
    this.len = 0;
    this.g = 0;
    return c;
  }

  /** Adds b[from, to) to the current chunk and closes it. */
  private cut(b: Buffer, from: number, to: number, out: Buffer[]): void {
    if (to > from) {
      this.parts.push(this.borrow ? b.subarray(from, to) : Buffer.from(b.subarray(from, to)));
      this.partsLen += to - from;
    }
    out.push(this.take());
  }

  private keep(b: Buffer, from: number): void {
    if (from < b.length) {
      this.parts.push(this.borrow ? b.subarray(from) : Buffer.from(b.subarray(from)));
      this.partsLen += b.length - from;
    }
  }

  /** FastCDC over unstructured bytes. */
  private scanBytes(b: Buffer, out: Buffer[]): void {
    const { min, avg, max } = this.params.bytes;
    const shiftS = this.shiftS;
    const shiftL = this.shiftL;
    let start = 0;
    let len = this.len;
    let g = this.g;
    const n = b.length;
    let i = 0;
    while (i < n) {
      if (len < min) {
        // no cut before min: skip ahead (the gear hash depends on the last 32 bytes only)
        const skip = Math.min(n - i, min - len);
        const warm = Math.max(i, i + skip - 32);
        for (let k = warm; k < i + skip; k++) g = ((g << 1) + GEAR[b[k]]) | 0;
        len += skip;
        i += skip;
        continue;
      }
      g = ((g << 1) + GEAR[b[i]]) | 0;
      len++;
      i++;
      if ((len < avg ? g >>> shiftS : g >>> shiftL) === 0 || len >= max) {
        this.len = len;
        this.cut(b, start, i, out);
        start = i;
        len = 0;
        g = 0;
      }
    }
    this.len = len;
    this.g = g;
    this.keep(b, start);
  }

  /**
   * End (exclusive) of the record that ends next in b[pos…], or -1 when none ends in b; the
   * scanner state is advanced to that point (or to the end of b).
   */
  private nextBoundary(b: Buffer, pos: number): number {
    const n = b.length;
    if (this.kind === 'lines') {
      const j = b.indexOf(0x0a, pos);
      return j < 0 ? -1 : j + 1;
    }
    if (this.kind === 'vectors') {
      if (this.vecRecSize === 0) {
        // the 32-byte header is the first record; dim (u32 LE at offset 8) sets the record size
        const need = 32 - this.vecHeaderLen;
        const take = Math.min(need, n - pos);
        b.copy(this.vecHeader, this.vecHeaderLen, pos, pos + take);
        this.vecHeaderLen += take;
        if (this.vecHeaderLen < 32) return -1;
        const dim = this.vecHeader.readUInt32LE(8);
        this.vecRecSize = dim >= 1 && dim <= 1 << 20 ? dim * 4 : 4096;
        return pos + take;
      }
      const rest = this.vecRecSize - this.vecPos;
      if (n - pos >= rest) {
        this.vecPos = 0;
        return pos + rest;
      }
      this.vecPos += n - pos;
      return -1;
    }
    // json: the `}` closing an object whose parent is an array
    let i = pos;
    while (i < n) {
      if (this.inStr) {
        if (this.esc) {
          this.esc = false;
          i++;
          continue;
        }
        const q = b.indexOf(0x22, i);
        const stop = q < 0 ? n : q;
        let k = stop - 1;
        let bs = 0;
        while (k >= i && b[k] === 0x5c) {
          bs++;
          k--;
        }
        if (q < 0) {
          this.esc = (bs & 1) === 1;
          return -1;
        }
        if ((bs & 1) === 0) this.inStr = false;
        i = q + 1;
        continue;
      }
      const c = b[i++];
      if (c === 0x22) this.inStr = true;
      else if (c === 0x7b || c === 0x5b) {
        if (this.depth < MAX_TRACKED) this.stack[this.depth] = c === 0x7b ? OBJ : ARR;
        this.depth++;
      } else if (c === 0x7d || c === 0x5d) {
        if (this.depth > 0) this.depth--;
        if (c === 0x7d && this.depth > 0 && this.depth <= MAX_TRACKED && this.stack[this.depth - 1] === ARR) return i;
      }
    }
    return -1;
  }

  /** Cuts between records (and inside oversized ones). */
  private scanRecords(b: Buffer, out: Buffer[]): void {
    const rmin = this.params.records.min;
    const rmax = this.params.records.max;
    const n = b.length;
    let start = 0;
    let pos = 0;
    while (pos < n) {
      const e = this.nextBoundary(b, pos);
      const segEnd = e < 0 ? n : e;
      const plain = segEnd - pos - (e < 0 ? 0 : 1);
      if (!this.inside && this.len + plain < rmax) {
        // fast path: a whole record piece, no cut inside it
        let rh = this.rh;
        for (let i = pos; i < segEnd; i++) rh = Math.imul(rh ^ b[i], FNV_PRIME);
        this.rh = rh;
        this.len += segEnd - pos;
        this.recLen += segEnd - pos;
        if (e >= 0) {
          const len = this.len;
          const doCut = len >= rmax || (len >= rmin && rh >>> 0 < Math.min(1, this.recLen / this.recDiv) * 4294967296);
          this.rh = FNV_OFFSET;
          this.recLen = 0;
          if (doCut) {
            this.cut(b, start, segEnd, out);
            start = segEnd;
          }
        }
      } else start = this.slowSegment(b, pos, segEnd, e >= 0, start, out);
      pos = segEnd;
    }
    this.keep(b, start);
  }

  /** Byte by byte through b[pos, segEnd) (a record longer than records.max); returns the new chunk start. */
  private slowSegment(b: Buffer, pos: number, segEnd: number, endsRecord: boolean, start: number, out: Buffer[]): number {
    const rmin = this.params.records.min;
    const rmax = this.params.records.max;
    const bmin = this.params.bytes.min;
    const bmax = this.params.bytes.max;
    const avg = this.params.bytes.avg;
    for (let i = pos; i < segEnd; i++) {
      const c = b[i];
      this.rh = Math.imul(this.rh ^ c, FNV_PRIME);
      this.len++;
      this.recLen++;
      if (endsRecord && i === segEnd - 1) {
        const len = this.len;
        const doCut = this.inside || len >= rmax || (len >= rmin && this.rh >>> 0 < Math.min(1, this.recLen / this.recDiv) * 4294967296);
        this.rh = FNV_OFFSET;
        this.recLen = 0;
        this.inside = false;
        if (doCut) {
          this.cut(b, start, i + 1, out);
          start = i + 1;
        }
      } else if (this.inside) {
        this.g = ((this.g << 1) + GEAR[c]) | 0;
        const len = this.len;
        if (len >= bmin && ((len < avg ? this.g >>> this.shiftS : this.g >>> this.shiftL) === 0 || len >= bmax)) {
          this.cut(b, start, i + 1, out);
          start = i + 1;
        }
      } else if (this.len >= rmax) {
        // a record longer than records.max: cut inside it with the gear hash from here on
        this.inside = true;
        this.g = 0;
      }
    }
    return start;
  }
}

/** Chunks of a stream of buffers. */
export async function* chunkStream(kind: ChunkKind, source: AsyncIterable<Buffer>, params: ChunkerParams = DEFAULT_CHUNKER): AsyncGenerator<Buffer> {
  const c = new Chunker(kind, params);
  for await (const b of source) yield* c.push(b);
  yield* c.end();
}

/**
 * Cut rule for lists of blob ids (32 raw bytes each): after an id whose first two bytes, read as
 * a big-endian u16, are below 65536 / (avg − min), once the list holds at least `min` ids; always
 * at `max`. Ids are SHA-256 digests, so this is content-defined: an appended chunk changes only
 * the last list blob.
 */
export function listCut(id: Buffer, count: number, p: SizeParams): boolean {
  if (count >= p.max) return true;
  if (count < p.min) return false;
  return id.readUInt16BE(0) < 65536 / (p.avg - p.min);
}
