/**
 * Bulk loading with COPY … FROM STDIN for the restore's large tables (messages, archival
 * passages, passage tags): rows are encoded straight into COPY's wire formats from the archive's
 * bytes, and the batches are pipelined so that the next batch is built while the server loads the
 * previous one (on two cores, the client's work then hides behind the server's).
 *
 * - Text format (messages, passage tags): values are written as text with COPY's escapes
 *   (`\\`, `\n`, `\r`, `\t`; NULL is `\N`); JSON values go through as their exact text, and
 *   timestamps as text, read by the server exactly as an INSERT would read them.
 * - Binary format (archival passages): the embedding goes in pgvector's binary form, already
 *   zero-padded to the column's dimension (no float is ever printed as decimal text); the other
 *   columns in their types' binary forms (json: its text; varchar: UTF-8; timestamptz:
 *   microseconds since 2000-01-01 UTC).
 */
import { AgentVaultError } from '../core/errors';
import type { Queryable } from '../db/types';
import { describeWriteError, qi, type ColumnInfo } from './sql';

/** Bytes per COPY statement (the server loads one batch while the next is built). */
export const COPY_BATCH_BYTES = Number(process.env.AV_COPY_MB ?? 4) * 1024 * 1024;

const BACKSLASH = 0x5c;

/** A growable output buffer. */
class Out {
  buf: Buffer;
  pos = 0;
  constructor(size = COPY_BATCH_BYTES + (COPY_BATCH_BYTES >> 2)) {
    this.buf = Buffer.allocUnsafe(size);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n + 1024));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  /** The bytes so far; writing goes on in a new buffer (the taken one belongs to the caller). */
  take(): Buffer {
    const b = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(this.buf.length);
    this.pos = 0;
    return b;
  }
}

/** Rows in COPY's text format. */
/** COPY text escapes for a constant. */
export function copyTextEscape(s: string): string {
  return s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

export class CopyText {
  private readonly out = new Out();
  rows = 0;

  get size(): number {
    return this.out.pos;
  }

  /** Bytes known to need no escaping (prebuilt constant fields, separators). */
  raw(b: Buffer): void {
    const o = this.out;
    o.ensure(b.length);
    b.copy(o.buf, o.pos);
    o.pos += b.length;
  }

  byte(c: number): void {
    const o = this.out;
    o.ensure(1);
    o.buf[o.pos++] = c;
  }

  tab(): void {
    this.byte(0x09);
  }

  endRow(): void {
    this.byte(0x0a);
    this.rows++;
  }

  nul(): void {
    const o = this.out;
    o.ensure(2);
    o.buf[o.pos++] = BACKSLASH;
    o.buf[o.pos++] = 0x4e; // N
  }

  /** src[s, e) with COPY's escapes. */
  bytes(src: Buffer, s: number, e: number): void {
    const o = this.out;
    o.ensure(2 * (e - s));
    const buf = o.buf;
    let p = o.pos;
    for (let i = s; i < e; i++) {
      const c = src[i];
      if (c > BACKSLASH || (c > 0x0d && c !== BACKSLASH)) buf[p++] = c;
      else if (c === BACKSLASH) {
        buf[p++] = BACKSLASH;
        buf[p++] = BACKSLASH;
      } else if (c === 0x0a) {
        buf[p++] = BACKSLASH;
        buf[p++] = 0x6e;
      } else if (c === 0x0d) {
        buf[p++] = BACKSLASH;
        buf[p++] = 0x72;
      } else if (c === 0x09) {
        buf[p++] = BACKSLASH;
        buf[p++] = 0x74;
      } else buf[p++] = c;
    }
    o.pos = p;
  }

  /** A JS string (UTF-8) with COPY's escapes. */
  str(s: string): void {
    const o = this.out;
    o.ensure(3 * s.length);
    const start = o.pos;
    const n = o.buf.write(s, start, 'utf8');
    const buf = o.buf;
    for (let i = start; i < start + n; i++) {
      const c = buf[i];
      if (c === BACKSLASH || c === 0x0a || c === 0x0d || c === 0x09) {
        // rare (ids and names have none): escape from a copy
        const b = Buffer.from(buf.subarray(start, start + n));
        this.bytes(b, 0, n);
        return;
      }
    }
    o.pos = start + n;
  }

  take(): Buffer {
    this.rows = 0;
    return this.out.take();
  }
}

const PGCOPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
const PGCOPY_TRAILER = Buffer.from([0xff, 0xff]);
/** Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch). */
const PG_EPOCH_US = 946_684_800_000_000;

/** Rows in COPY's binary format (each batch taken gets its own header and trailer). */
export class CopyBinary {
  private readonly out = new Out();
  rows = 0;

  constructor() {
    this.raw(PGCOPY_HEADER);
  }

  get size(): number {
    return this.out.pos;
  }

  private raw(b: Buffer): void {
    const o = this.out;
    o.ensure(b.length);
    b.copy(o.buf, o.pos);
    o.pos += b.length;
  }

  beginRow(fields: number): void {
    const o = this.out;
    o.ensure(2);
    o.buf.writeInt16BE(fields, o.pos);
    o.pos += 2;
    this.rows++;
  }

  nul(): void {
    const o = this.out;
    o.ensure(4);
    o.buf.writeInt32BE(-1, o.pos);
    o.pos += 4;
  }

  /** A field whose binary form is these bytes (varchar/text: UTF-8; json: its text). */
  bytes(src: Buffer, s: number, e: number): void {
    const o = this.out;
    o.ensure(4 + e - s);
    o.buf.writeInt32BE(e - s, o.pos);
    src.copy(o.buf, o.pos + 4, s, e);
    o.pos += 4 + e - s;
  }

  constant(b: Buffer): void {
    this.bytes(b, 0, b.length);
  }

  str(s: string): void {
    const o = this.out;
    const max = Buffer.byteLength(s, 'utf8');
    o.ensure(4 + max);
    const n = o.buf.write(s, o.pos + 4, 'utf8');
    o.buf.writeInt32BE(n, o.pos);
    o.pos += 4 + n;
  }

  bool(v: boolean): void {
    const o = this.out;
    o.ensure(5);
    o.buf.writeInt32BE(1, o.pos);
    o.buf[o.pos + 4] = v ? 1 : 0;
    o.pos += 5;
  }

  /** timestamptz: microseconds since 1970-01-01 UTC (converted to PostgreSQL's 2000 epoch). */
  timestamp(unixMicros: number): void {
    const o = this.out;
    o.ensure(12);
    o.buf.writeInt32BE(8, o.pos);
    const v = unixMicros === Infinity ? 2n ** 63n - 1n : unixMicros === -Infinity ? -(2n ** 63n) : BigInt(unixMicros - PG_EPOCH_US);
    o.buf.writeBigInt64BE(v, o.pos + 4);
    o.pos += 12;
  }

  /**
   * A pgvector value from little-endian float32 bytes src[s, e), zero-padded to `padTo`
   * dimensions (null: as it is). Layout: int16 dim, int16 unused, float4 big-endian × dim.
   */
  vector(src: Buffer, s: number, e: number, padTo: number | null): void {
    const dim = (e - s) >> 2;
    const total = padTo !== null && padTo > dim ? padTo : dim;
    const o = this.out;
    const len = 4 + total * 4;
    o.ensure(4 + len);
    const buf = o.buf;
    let p = o.pos;
    buf.writeInt32BE(len, p);
    buf.writeInt16BE(total, p + 4);
    buf.writeInt16BE(0, p + 6);
    p += 8;
    src.copy(buf, p, s, e);
    buf.subarray(p, p + dim * 4).swap32();
    if (total > dim) buf.fill(0, p + dim * 4, p + total * 4);
    o.pos = p + total * 4;
  }

  take(): Buffer {
    this.raw(PGCOPY_TRAILER);
    this.rows = 0;
    const b = this.out.take();
    this.raw(PGCOPY_HEADER);
    return b;
  }
}

/**
 * One COPY statement per batch, at most one of them in flight: send() returns as soon as the
 * previous batch is loaded, so the caller builds the next batch while the server loads this one.
 */
export class CopyPump {
  private inFlight: Promise<number> | null = null;
  total = 0;

  constructor(
    private readonly tx: Queryable,
    private readonly sql: string,
    private readonly table: string,
    private readonly onBatch?: (rows: number) => void | Promise<void>,
  ) {
    if (!tx.copyFrom) throw new AgentVaultError('internal', `the database connection cannot COPY into ${table} (no copyFrom)`);
  }

  /** Queues a batch of `rows` rows (waits for the previous batch first). */
  async send(data: Buffer, rows: number): Promise<void> {
    await this.wait();
    const p = this.tx.copyFrom!(this.sql, [data]).then(
      async (n) => {
        this.total += rows;
        await this.onBatch?.(rows);
        return n;
      },
      (e: unknown) => {
        throw describeWriteError(e, this.table);
      },
    );
    p.catch(() => undefined);
    this.inFlight = p;
  }

  /** Waits for the batch in flight (its failure is thrown here). */
  async wait(): Promise<void> {
    const p = this.inFlight;
    this.inFlight = null;
    if (p) await p;
  }
}

/** `COPY "t" ("a", "b") FROM STDIN [WITH (FORMAT binary)]`. */
export function copySql(table: string, columns: readonly string[], binary: boolean): string {
  return `COPY ${qi(table)} (${columns.map(qi).join(', ')}) FROM STDIN${binary ? ' WITH (FORMAT binary)' : ''}`;
}

/** The column types a binary COPY can encode. */
export type BinaryKind = 'text' | 'json' | 'timestamptz' | 'bool' | 'vector';

/**
 * Checks that the target's columns have the types the binary encoder writes (a revision with
 * another type is refused like a missing column: kind 'mismatch').
 */
export function binaryKinds(catalog: Map<string, ColumnInfo[]>, table: string, columns: readonly string[]): BinaryKind[] {
  const known = catalog.get(table) ?? [];
  return columns.map((name) => {
    const c = known.find((x) => x.name === name);
    if (!c) {
      throw new AgentVaultError('letta-schema-mismatch', `The target table "${table}" has no column "${name}" (its Letta schema revision differs from the one Agent Vault writes).`, {
        kind: 'mismatch',
      });
    }
    const t = c.type;
    if (t === 'character varying' || t === 'text' || /^character varying\(\d+\)$/.test(t)) return 'text';
    if (t === 'json') return 'json';
    if (t === 'timestamp with time zone') return 'timestamptz';
    if (t === 'boolean') return 'bool';
    if (c.vectorDim !== null || /(^|\.)vector(\(\d+\))?$/.test(t)) return 'vector';
    throw new AgentVaultError('letta-schema-mismatch', `The target column "${table}"."${name}" has type ${t}, not the one Agent Vault writes (its Letta schema revision differs).`, {
      kind: 'mismatch',
    });
  });
}

const ISO_TS = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}(?::?\d{2})?)$/;

/**
 * ISO 8601 text with an explicit offset (what exports write) → microseconds since 1970 UTC; null
 * for anything else (no offset, other layouts: the server has to read those).
 */
export function parseTimestampMicros(text: string): number | null {
  if (text === 'infinity') return Infinity;
  if (text === '-infinity') return -Infinity;
  const m = ISO_TS.exec(text);
  if (!m) return null;
  const y = Number(m[1]);
  if (y < 100) return null;
  const ms = Date.UTC(y, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  const d = new Date(ms);
  // Date.UTC rolls over impossible dates (February 30th); PostgreSQL refuses them: let it say so
  if (d.getUTCDate() !== Number(m[3]) || d.getUTCMonth() !== Number(m[2]) - 1 || Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6]) > 59) return null;
  const frac = m[7] ? Number(m[7].padEnd(6, '0')) : 0;
  let off = 0;
  const z = m[8];
  if (z !== 'Z') {
    const sign = z[0] === '-' ? -1 : 1;
    const hh = Number(z.slice(1, 3));
    const mm = z.length > 3 ? Number(z.slice(-2)) : 0;
    off = sign * (hh * 60 + mm) * 60_000;
  }
  return (ms - off) * 1000 + frac;
}

/**
 * Timestamps for a binary COPY: the common layout parsed here, anything else read by the server
 * (`text::timestamptz` in the session's time zone, as an INSERT would), cached.
 */
export class TimestampReader {
  private readonly cache = new Map<string, number>();
  constructor(private readonly tx: Queryable) {}

  async micros(text: string): Promise<number> {
    const fast = parseTimestampMicros(text);
    if (fast !== null) return fast;
    const hit = this.cache.get(text);
    if (hit !== undefined) return hit;
    const r = await this.tx.query<{ us: string }>(`SELECT (EXTRACT(EPOCH FROM $1::text::timestamptz) * 1000000)::bigint::text AS us`, [text]).catch((e: unknown) => {
      throw describeWriteError(e, 'archival_passages');
    });
    const us = Number(r.rows[0].us);
    if (this.cache.size < 10_000) this.cache.set(text, us);
    return us;
  }
}
