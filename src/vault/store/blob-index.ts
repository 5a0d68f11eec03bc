/**
 * The store's in-memory index in a compact form: per blob its 32-byte id (binary) and its place
 * (pack number, offset, stored length, plaintext length, type, compression) in typed arrays, and
 * an open-addressing hash table of entry numbers keyed by the id's first four bytes (ids are
 * SHA-256 digests, so those bytes are uniform); a lookup compares the whole 32-byte id, so two
 * ids sharing a prefix never mix. About 90 bytes per blob instead of ~300 for a Map of 64-char
 * strings to objects plus the per-pack record arrays.
 *
 * Entries are appended pack by pack, so a pack's records are one run of entries and are rebuilt
 * on demand (packBlobs) instead of being kept as arrays. An id that is already indexed keeps its
 * first place (the rule of loadIndex); a later copy (the same blob in another pack) is kept as an
 * entry of its pack but is not found by get().
 */
import type { BlobType, Compression, PackedBlob } from './format';

export interface BlobLoc {
  pack: string;
  type: BlobType;
  offset: number;
  length: number;
  rawLength: number;
  compression: Compression;
}

const ID_BYTES = 32;
const F_LIST = 1;
const F_DEFLATE = 2;
/** a later copy of an id indexed before (not found by get, not listed by the iterator) */
const F_DUP = 4;
const HEX_ID = /^[0-9a-f]{64}$/;

export class BlobIndex implements Iterable<[string, BlobLoc]> {
  private cap: number;
  private n = 0;
  private unique = 0;
  private ids: Buffer;
  private packNo: Uint32Array;
  private offsets: Float64Array;
  private lengths: Float64Array;
  private rawLengths: Float64Array;
  private flags: Uint8Array;
  /** entry number + 1 per slot, 0 = empty; size a power of two, at most half full */
  private table: Int32Array;
  private mask: number;
  private readonly scratch = Buffer.alloc(ID_BYTES);
  private readonly packIds: string[] = [];
  private readonly packStart: number[] = [];
  private readonly packCount: number[] = [];
  private readonly packNumbers = new Map<string, number>();

  constructor(capacity = 1024) {
    this.cap = Math.max(16, capacity);
    this.ids = Buffer.alloc(this.cap * ID_BYTES);
    this.packNo = new Uint32Array(this.cap);
    this.offsets = new Float64Array(this.cap);
    this.lengths = new Float64Array(this.cap);
    this.rawLengths = new Float64Array(this.cap);
    this.flags = new Uint8Array(this.cap);
    let t = 32;
    while (t < this.cap * 2) t *= 2;
    this.table = new Int32Array(t);
    this.mask = t - 1;
  }

  /** distinct blob ids */
  get size(): number {
    return this.unique;
  }

  /** entries, later copies of an id included */
  get entries(): number {
    return this.n;
  }

  /** packs added */
  get packCountTotal(): number {
    return this.packIds.length;
  }

  /** bytes held by the structure's arrays (for the memory guard and reports) */
  get byteSize(): number {
    return this.ids.byteLength + this.packNo.byteLength + this.offsets.byteLength + this.lengths.byteLength + this.rawLengths.byteLength + this.flags.byteLength + this.table.byteLength;
  }

  has(id: string): boolean {
    return this.find(id) >= 0;
  }

  get(id: string): BlobLoc | undefined {
    const e = this.find(id);
    return e < 0 ? undefined : this.locOf(e);
  }

  hasPack(packId: string): boolean {
    return this.packNumbers.has(packId);
  }

  /**
   * Adds a pack's blob records (a pack already added is ignored: false). Ids must be 64 lowercase
   * hex characters (checked by the index file's and pack header's readers; a bad one throws here).
   */
  addPack(packId: string, blobs: readonly PackedBlob[]): boolean {
    if (this.packNumbers.has(packId)) return false;
    const no = this.packIds.length;
    this.packIds.push(packId);
    this.packNumbers.set(packId, no);
    this.packStart.push(this.n);
    this.packCount.push(blobs.length);
    for (const b of blobs) this.append(no, b);
    return true;
  }

  /** The records of a pack added before, as its index file lists them (rebuilt on each call). */
  packBlobs(packId: string): PackedBlob[] {
    const no = this.packNumbers.get(packId);
    if (no === undefined) return [];
    const out: PackedBlob[] = new Array(this.packCount[no]);
    const s = this.packStart[no];
    for (let i = 0; i < out.length; i++) {
      const e = s + i;
      const f = this.flags[e];
      out[i] = [this.idOf(e), f & F_LIST ? 'l' : 'd', this.offsets[e], this.lengths[e], this.rawLengths[e], f & F_DEFLATE ? 'd' : 'n'];
    }
    return out;
  }

  /** The distinct ids and their places, in the order they were added. */
  *[Symbol.iterator](): IterableIterator<[string, BlobLoc]> {
    for (let e = 0; e < this.n; e++) if (!(this.flags[e] & F_DUP)) yield [this.idOf(e), this.locOf(e)];
  }

  *keys(): IterableIterator<string> {
    for (let e = 0; e < this.n; e++) if (!(this.flags[e] & F_DUP)) yield this.idOf(e);
  }

  private idOf(e: number): string {
    return this.ids.toString('hex', e * ID_BYTES, (e + 1) * ID_BYTES);
  }

  private locOf(e: number): BlobLoc {
    const f = this.flags[e];
    return {
      pack: this.packIds[this.packNo[e]],
      type: f & F_LIST ? 'list' : 'data',
      offset: this.offsets[e],
      length: this.lengths[e],
      rawLength: this.rawLengths[e],
      compression: f & F_DEFLATE ? 'deflate' : 'none',
    };
  }

  /** The entry of an id (its first place), -1 when absent or not an id. */
  private find(id: string): number {
    if (id.length !== 64 || !HEX_ID.test(id)) return -1;
    this.scratch.write(id, 0, ID_BYTES, 'hex');
    return this.findScratch();
  }

  private findScratch(): number {
    const k = this.scratch.readUInt32LE(0);
    for (let s = k & this.mask; ; s = (s + 1) & this.mask) {
      const v = this.table[s];
      if (v === 0) return -1;
      const e = v - 1;
      const o = e * ID_BYTES;
      if (this.ids.readUInt32LE(o) === k && this.ids.compare(this.scratch, 0, ID_BYTES, o, o + ID_BYTES) === 0) return e;
    }
  }

  private append(no: number, b: PackedBlob): void {
    const id = b[0];
    if (typeof id !== 'string' || id.length !== 64 || !HEX_ID.test(id)) throw new Error(`not a blob id: ${JSON.stringify(id)}`);
    if (this.n === this.cap) this.grow();
    const e = this.n++;
    this.ids.write(id, e * ID_BYTES, ID_BYTES, 'hex');
    this.packNo[e] = no;
    this.offsets[e] = b[2];
    this.lengths[e] = b[3];
    this.rawLengths[e] = b[4];
    let f = (b[1] === 'l' ? F_LIST : 0) | (b[5] === 'd' ? F_DEFLATE : 0);
    this.ids.copy(this.scratch, 0, e * ID_BYTES, (e + 1) * ID_BYTES);
    if (this.findScratch() >= 0) f |= F_DUP;
    else {
      if ((this.unique + 1) * 2 > this.table.length) this.rehash(this.table.length * 2);
      this.insert(e);
      this.unique++;
    }
    this.flags[e] = f;
  }

  private insert(e: number): void {
    let s = this.ids.readUInt32LE(e * ID_BYTES) & this.mask;
    while (this.table[s] !== 0) s = (s + 1) & this.mask;
    this.table[s] = e + 1;
  }

  private rehash(size: number): void {
    this.table = new Int32Array(size);
    this.mask = size - 1;
    for (let e = 0; e < this.n; e++) if (!(this.flags[e] & F_DUP) && e !== this.n - 1) this.insert(e);
  }

  private grow(): void {
    const cap = this.cap * 2;
    const ids = Buffer.alloc(cap * ID_BYTES);
    this.ids.copy(ids);
    this.ids = ids;
    const g = <T extends Uint32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.packNo = g(this.packNo, (n) => new Uint32Array(n));
    this.offsets = g(this.offsets, (n) => new Float64Array(n));
    this.lengths = g(this.lengths, (n) => new Float64Array(n));
    this.rawLengths = g(this.rawLengths, (n) => new Float64Array(n));
    this.flags = g(this.flags, (n) => new Uint8Array(n));
    this.cap = cap;
  }
}
