/**
 * Checksums of archive entries on a worker thread, so that a large archive's entries (its vectors,
 * mostly) are hashed while the main thread does other work with the same archive (the restore
 * reads its agent files meanwhile). Each entry's stored bytes are read from the file (inflated
 * when deflated) and checked against size, sha256 and CRC-32 — what EntryStreams.stored() checks.
 *
 * The worker is plain JavaScript given as source (the CLI is one bundled file: a worker cannot
 * load a module of its own); it needs only Node's fs, crypto and zlib.
 */
import { runWorkerOnce } from '../core/worker';

/** One entry's stored bytes in the archive file and what they must match. */
export interface StoredRange {
  name: string;
  /** offset of the entry's data in the file, and its length there */
  start: number;
  length: number;
  /** zip method: 0 stored, 8 deflated */
  method: number;
  /** expected (uncompressed) size, sha256 (hex), CRC-32 */
  size: number;
  sha256: string;
  crc32: number;
}

export interface RangeResult {
  name: string;
  /** why it does not match (null: it matches) */
  error: string | null;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const CHUNK = 1 << 20;
async function check(file, r) {
  const hash = crypto.createHash('sha256');
  let crc = 0;
  let size = 0;
  const take = (b) => { hash.update(b); crc = zlib.crc32(b, crc); size += b.length; };
  if (r.length > 0) {
    const raw = fs.createReadStream(file, { start: r.start, end: r.start + r.length - 1, highWaterMark: CHUNK });
    const src = r.method === 8 ? raw.pipe(zlib.createInflateRaw({ chunkSize: CHUNK })) : raw;
    if (r.method === 8) raw.on('error', (e) => src.destroy(e));
    try {
      for await (const b of src) {
        take(b);
        if (size > r.size) return 'it is longer than the ' + r.size + ' bytes the manifest records';
      }
    } catch (e) {
      return (e && e.code && String(e.code).startsWith('Z_')) ? 'its compressed data is invalid (' + e.message + ')' : String(e && e.message || e);
    } finally {
      raw.destroy();
    }
  }
  if (size !== r.size) return 'it is ' + size + ' bytes, the manifest records ' + r.size;
  const digest = hash.digest('hex');
  if (digest !== r.sha256) return 'its sha256 is ' + digest + ', the manifest records ' + r.sha256;
  if ((crc >>> 0) !== (r.crc32 >>> 0)) return 'its CRC-32 is ' + (crc >>> 0).toString(16) + ', the zip directory records ' + (r.crc32 >>> 0).toString(16);
  return null;
}
(async () => {
  const out = [];
  for (const r of workerData.ranges) out.push({ name: r.name, error: await check(workerData.file, r) });
  parentPort.postMessage(out);
})().catch((e) => parentPort.postMessage({ failed: String(e && e.message || e) }));
`;

/** Checks the ranges on a worker thread; resolves with one result per range, in order. */
export function verifyRangesInWorker(file: string, ranges: StoredRange[]): Promise<RangeResult[]> {
  return runWorkerOnce<RangeResult>(WORKER_SOURCE, { file, ranges });
}
