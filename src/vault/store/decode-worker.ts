/**
 * A store snapshot's entries read on a worker thread (a plain store in a local folder): the
 * worker reads each entry's pack ranges, inflates the deflated blobs, checks every blob (hashed
 * against its id, or against the CRC-32 a full check recorded: what decodeBlob checks) and the
 * entry's size (and with `entrySha256` its SHA-256), and hands the plaintext to the main thread
 * in chunks of about 1 MiB (moved, not copied). The main thread then only consumes: a restore
 * writes rows while the next chunks are read and checked beside it, as an archive's entries are
 * inflated on libuv's threads. A check without delivery (`deliver: false`: the restore's checks
 * before its transaction, a drill) returns only the result and the blobs' CRC-32.
 *
 * One long-lived worker per snapshot reader, several entries at a time (round robin, one chunk
 * each in turn); each entry has at most `ahead` chunks handed over and not yet taken (memory
 * stays bounded however slow the consumer). The worker is plain JavaScript given as source (the
 * CLI is one bundled file: a worker cannot load a module of its own); it needs only Node's fs,
 * crypto and zlib.
 */
import { Worker } from 'node:worker_threads';

/** A blob of a range: [id, offset in the range, stored length, plaintext length, deflated, CRC-32 to check instead of its SHA-256 (-1: hash it)]. */
export type DecodeBlob = [id: string, at: number, length: number, rawLength: number, deflated: boolean, crc: number];

/** Adjacent blobs of one pack file; `where` names the pack in messages. */
export interface DecodeRange {
  file: string;
  where: string;
  pack: string;
  offset: number;
  length: number;
  blobs: DecodeBlob[];
}

export interface DecodeJob {
  /** the entry's plaintext size (checked at its end) */
  size: number;
  ranges: DecodeRange[];
  /** hand the plaintext over (false: only check it) */
  deliver: boolean;
  /** return the CRC-32 of every blob hashed against its id */
  recordCrcs: boolean;
  /** compute the entry's SHA-256 (returned at its end) */
  entrySha256: boolean;
  /** chunks handed over and not yet taken, at most */
  ahead: number;
}

/** Why an entry cannot be read: the code of the AgentVaultError to raise, and the pack (null: the entry as a whole). */
export interface DecodeFailure {
  code: 'checksum' | 'missing-blob' | 'io';
  message: string;
  pack: string | null;
  /** an I/O failure: Node's error code (ENOENT …) and what failed */
  errno?: string | null;
  op?: 'open' | 'read' | null;
}

export interface DecodeEnd {
  /** the entry's SHA-256 (hex), when asked */
  sha256: string | null;
  /** blob id → CRC-32 of its plaintext, when asked */
  crcs: Array<[string, number]>;
}

/** Plaintext of about this many bytes per chunk (the restore's batches follow the chunks). */
export const DECODE_CHUNK = 1024 * 1024;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const CHUNK = ${DECODE_CHUNK};
const sha256Hex = typeof crypto.hash === 'function' ? (b) => crypto.hash('sha256', b, 'hex') : (b) => crypto.createHash('sha256').update(b).digest('hex');
const streams = new Map();
let scheduled = false;
class Failed extends Error {
  constructor(code, message, pack, errno, op) { super(message); this.code = code; this.pack = pack; this.errno = errno || null; this.op = op || null; }
}
function closeFile(s) {
  if (s.fd >= 0) { try { fs.closeSync(s.fd); } catch {} }
  s.fd = -1;
  s.file = null;
}
function loadRange(s, r) {
  if (s.file !== r.file) {
    closeFile(s);
    try {
      s.fd = fs.openSync(r.file, 'r');
    } catch (err) {
      if (err && err.code === 'ENOENT') throw new Failed('missing-blob', r.where + ' is missing (blob ' + r.blobs[0][0] + ' and ' + (r.blobs.length - 1) + ' more)', r.pack);
      throw new Failed('io', String((err && err.message) || err), r.pack, err && err.code, 'open');
    }
    s.file = r.file;
  }
  if (!s.buf || s.buf.length < r.length) s.buf = Buffer.allocUnsafeSlow(Math.max(r.length, s.buf ? s.buf.length : 0));
  let got = 0;
  while (got < r.length) {
    let n;
    try {
      n = fs.readSync(s.fd, s.buf, got, r.length - got, r.offset + got);
    } catch (err) {
      throw new Failed('io', String((err && err.message) || err), r.pack, err && err.code, 'read');
    }
    if (n === 0) break;
    got += n;
  }
  if (got !== r.length) throw new Failed('checksum', r.where + ' is truncated: blob ' + r.blobs[r.blobs.length - 1][0] + ' lies beyond its end', r.pack);
  s.loaded = s.ri;
}
function decode(s, r, b) {
  const [id, at, len, raw, deflated, crc] = b;
  let plain = s.buf.subarray(at, at + len);
  if (deflated) {
    try {
      plain = zlib.inflateRawSync(plain, { chunkSize: Math.max(64, raw + 1) });
    } catch (err) {
      throw new Failed('checksum', r.where + ': blob ' + id + ' does not decompress: ' + (err && err.message), r.pack);
    }
  }
  const ok = plain.length === raw && (crc >= 0 ? zlib.crc32(plain) === crc : sha256Hex(plain) === id);
  if (!ok) throw new Failed('checksum', r.where + ': blob ' + id + ' is damaged (its content does not hash to its id)', r.pack);
  if (crc < 0 && s.job.recordCrcs) s.crcs.push([id, zlib.crc32(plain)]);
  s.size += plain.length;
  if (s.size > s.job.size) throw new Failed('checksum', 'it is longer than the ' + s.job.size + ' bytes the snapshot records', null);
  return plain;
}
/** The next chunk of the stream (null at its end): its blobs decoded, checked and (delivering) copied into one buffer. */
function step(s) {
  const ranges = s.job.ranges;
  if (s.ri >= ranges.length) return null;
  // the chunk's blobs and size, known before any is decoded: one buffer, filled in place
  let n = 0, ri = s.ri, bi = s.bi;
  while (ri < ranges.length && (n === 0 || n < CHUNK)) {
    n += ranges[ri].blobs[bi][3];
    if (++bi >= ranges[ri].blobs.length) { ri++; bi = 0; }
  }
  let out = null;
  if (s.job.deliver) {
    // a buffer the consumer gave back (chunks(): it is done with it), else a new one
    const free = s.free.pop();
    out = free && free.byteLength >= n ? Buffer.from(free, 0, n) : Buffer.allocUnsafeSlow(n);
  }
  let pos = 0;
  while (s.ri !== ri || s.bi !== bi) {
    const r = ranges[s.ri];
    if (s.loaded !== s.ri) loadRange(s, r);
    const plain = decode(s, r, r.blobs[s.bi]);
    if (out) pos += plain.copy(out, pos);
    if (s.hash) s.hash.update(plain);
    if (++s.bi >= r.blobs.length) { s.ri++; s.bi = 0; }
  }
  return out || Buffer.alloc(0);
}
function finish(sid, s) {
  streams.delete(sid);
  closeFile(s);
  if (s.size !== s.job.size) throw new Failed('checksum', 'it is ' + s.size + ' bytes, the snapshot records ' + s.job.size, null);
  parentPort.postMessage({ t: 'end', sid, sha256: s.hash ? s.hash.digest('hex') : null, crcs: s.crcs });
}
function run() {
  scheduled = false;
  let more = false;
  for (const [sid, s] of streams) {
    if (s.job.deliver && s.credit <= 0) continue;
    try {
      const out = step(s);
      if (out === null) { finish(sid, s); continue; }
      if (s.job.deliver) {
        s.credit--;
        parentPort.postMessage({ t: 'chunk', sid, buf: out.buffer, length: out.length }, [out.buffer]);
      }
      more = true;
    } catch (err) {
      streams.delete(sid);
      closeFile(s);
      const f = err instanceof Failed ? err : new Failed('io', 'the read worker failed: ' + ((err && err.message) || err), null);
      parentPort.postMessage({ t: 'error', sid, code: f.code, message: f.message, pack: f.pack, errno: f.errno || null, op: f.op || null });
    }
  }
  if (more) schedule();
}
function schedule() {
  if (!scheduled) { scheduled = true; setImmediate(run); }
}
parentPort.on('message', (m) => {
  if (m.t === 'start') {
    streams.set(m.sid, { job: m.job, ri: 0, bi: 0, loaded: -1, fd: -1, file: null, buf: null, size: 0, credit: m.job.ahead, free: [], crcs: [], hash: m.job.entrySha256 ? crypto.createHash('sha256') : null });
  } else if (m.t === 'ack') {
    const s = streams.get(m.sid);
    if (s) {
      s.credit += m.n;
      for (const b of m.free) if (s.free.length < 4) s.free.push(b);
    }
  } else if (m.t === 'stop') {
    const s = streams.get(m.sid);
    if (s) { streams.delete(m.sid); closeFile(s); }
  }
  schedule();
});
`;

type FromWorker =
  { t: 'chunk'; sid: number; buf: ArrayBuffer; length: number } | { t: 'end'; sid: number; sha256: string | null; crcs: Array<[string, number]> } | ({ t: 'error'; sid: number } & DecodeFailure);

interface Pending {
  chunks: Buffer[];
  end: DecodeEnd | null;
  failure: DecodeFailure | null;
  wake: (() => void) | null;
}

/** An entry being read by the worker: its chunks in order, then its end (or its failure). */
export interface DecodeStream {
  /**
   * The next chunk; null at the entry's end (`end` is then set); a DecodeError on failure.
   * `done`: a chunk this stream handed out that the consumer no longer uses (nothing refers to its
   * bytes any more): its memory goes back to the worker for a later chunk.
   */
  next(done?: Buffer): Promise<Buffer | null>;
  /** What the worker reported at the entry's end (after next() returned null). */
  readonly end: DecodeEnd | null;
  /** Stops reading the entry (the consumer stops early). */
  stop(): void;
}

/** The failure of an entry read by the worker. */
export class DecodeError extends Error {
  constructor(readonly failure: DecodeFailure) {
    super(failure.message);
  }
}

/** One worker thread reading entries of a local store; close() ends it. */
export class DecodeWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextSid = 1;
  private dead: DecodeFailure | null = null;

  /** Throws when no worker thread can be started (the caller then reads on the main thread). */
  constructor() {
    // a small young generation: the inflated blobs (memory outside the heap) are freed when the
    // small objects holding them are collected, which a large young generation puts off for tens of MB
    this.worker = new Worker(WORKER_SOURCE, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 2 } });
    this.worker.unref(); // kept alive only while an entry is being read (see busy())
    this.worker.on('message', (m: FromWorker) => this.onMessage(m));
    const stopped = (why: string): void => {
      this.dead ??= { code: 'io', message: `the store's read worker stopped: ${why}`, pack: null };
      for (const p of this.pending.values()) {
        p.failure ??= this.dead;
        p.wake?.();
      }
    };
    this.worker.on('error', (e) => stopped(e.message));
    this.worker.on('exit', (code) => stopped(`exit code ${code}`));
  }

  private onMessage(m: FromWorker): void {
    const p = this.pending.get(m.sid);
    if (!p) return; // stopped meanwhile
    if (m.t === 'chunk') p.chunks.push(Buffer.from(m.buf, 0, m.length));
    else if (m.t === 'end') p.end = { sha256: m.sha256, crcs: m.crcs };
    else p.failure = { code: m.code, message: m.message, pack: m.pack, errno: m.errno, op: m.op };
    p.wake?.();
  }

  /** Chunks handed over by the worker and not yet taken, of all entries (at most each entry's `ahead`). */
  get queued(): number {
    let n = 0;
    for (const p of this.pending.values()) n += p.chunks.length;
    return n;
  }

  /** Entries being read. */
  get reading(): number {
    return this.pending.size;
  }

  /** The worker keeps the process alive while an entry is being read (the consumer awaits it), not otherwise. */
  private busy(): void {
    if (this.pending.size) this.worker.ref();
    else this.worker.unref();
  }

  /** Starts reading an entry. */
  start(job: DecodeJob): DecodeStream {
    const sid = this.nextSid++;
    const p: Pending = { chunks: [], end: null, failure: this.dead, wake: null };
    this.pending.set(sid, p);
    this.busy();
    if (!this.dead) this.worker.postMessage({ t: 'start', sid, job });
    let stopped = false;
    // chunks taken since the last ack: acknowledged in groups (a message per chunk costs more than the chunk's handing over)
    let unacked = 0;
    let freed: ArrayBuffer[] = [];
    const ackEvery = Math.max(1, Math.floor(job.ahead / 2));
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      if (this.pending.delete(sid) && !this.dead && !p.end && !p.failure) this.worker.postMessage({ t: 'stop', sid });
      this.busy();
    };
    return {
      next: async (done?: Buffer) => {
        if (done && done.byteOffset === 0 && done.buffer.byteLength >= DECODE_CHUNK && freed.length < 4 && !freed.includes(done.buffer as ArrayBuffer)) freed.push(done.buffer as ArrayBuffer);
        for (;;) {
          const c = p.chunks.shift();
          if (c) {
            // as many more may be handed over as the consumer has taken (with the buffers it is done with)
            if (++unacked >= ackEvery && !this.dead && !p.end && !p.failure) {
              this.worker.postMessage({ t: 'ack', sid, n: unacked, free: freed }, freed);
              unacked = 0;
              freed = [];
            }
            return c;
          }
          if (p.failure) {
            stop();
            throw new DecodeError(p.failure);
          }
          if (p.end) {
            stop();
            return null;
          }
          if (stopped) return null;
          await new Promise<void>((resolve) => (p.wake = resolve));
          p.wake = null;
        }
      },
      get end() {
        return p.end;
      },
      stop,
    };
  }

  /** Ends the worker (entries still being read fail). */
  async close(): Promise<void> {
    this.dead ??= { code: 'io', message: 'the snapshot reader is closed', pack: null };
    await this.worker.terminate();
  }
}
