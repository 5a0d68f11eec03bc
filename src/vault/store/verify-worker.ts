/**
 * Checks of store snapshot entries on a worker thread (a plain store in a local folder), so that
 * a large snapshot's entries (its vectors, mostly) are checked while the main thread does other
 * work with the same snapshot: the restore reads its agent files meanwhile, as it does with an
 * archive's worker (src/format/verify-worker.ts). Each blob is read from its pack, inflated when
 * deflated, and hashed against its id (what decodeBlob checks); each entry's size against the
 * snapshot's. The CRC-32 of every blob checked goes back to the reader, which then
 * checks a re-read of the blob by it (./reader.ts).
 *
 * The worker is plain JavaScript given as source (the CLI is one bundled file: a worker cannot
 * load a module of its own); it needs only Node's fs, crypto and zlib.
 */
import { runWorkerOnce } from '../../core/worker';

/** Adjacent blobs of one pack file: [id, offset in the range, stored length, plaintext length, deflated]. */
export interface WorkerRange {
  file: string;
  pack: string;
  offset: number;
  length: number;
  blobs: Array<[id: string, at: number, length: number, rawLength: number, deflated: boolean]>;
}

export interface WorkerEntry {
  name: string;
  size: number;
  ranges: WorkerRange[];
}

export interface WorkerEntryResult {
  name: string;
  /** why it does not match, and the pack it was read from (null: it matches) */
  error: { message: string; pack: string | null } | null;
  /** blob id → CRC-32 of its plaintext, for the blobs that hashed to their ids */
  crcs: Array<[string, number]>;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
function check(e) {
  const crcs = [];
  let size = 0;
  let fd = -1;
  let open = null;
  try {
    for (const r of e.ranges) {
      if (open !== r.file) {
        if (fd >= 0) fs.closeSync(fd);
        fd = -1;
        open = r.file;
        try {
          fd = fs.openSync(r.file, 'r');
        } catch (err) {
          if (err && err.code === 'ENOENT') return { name: e.name, error: { message: r.file + ' is missing (blob ' + r.blobs[0][0] + ' and ' + (r.blobs.length - 1) + ' more)', pack: r.pack }, crcs };
          throw err;
        }
      }
      const buf = Buffer.allocUnsafe(r.length);
      let got = 0;
      while (got < r.length) {
        const n = fs.readSync(fd, buf, got, r.length - got, r.offset + got);
        if (n === 0) break;
        got += n;
      }
      if (got !== r.length) return { name: e.name, error: { message: r.file + ' is truncated: blob ' + r.blobs[r.blobs.length - 1][0] + ' lies beyond its end', pack: r.pack }, crcs };
      for (const [id, at, len, raw, deflated] of r.blobs) {
        let plain = buf.subarray(at, at + len);
        if (deflated) {
          try {
            plain = zlib.inflateRawSync(plain, { chunkSize: Math.max(64, raw + 1) });
          } catch (err) {
            return { name: e.name, error: { message: r.file + ': blob ' + id + ' does not decompress: ' + (err && err.message), pack: r.pack }, crcs };
          }
        }
        if (plain.length !== raw || crypto.createHash('sha256').update(plain).digest('hex') !== id) {
          return { name: e.name, error: { message: r.file + ': blob ' + id + ' is damaged (its content does not hash to its id)', pack: r.pack }, crcs };
        }
        crcs.push([id, zlib.crc32(plain)]);
        size += plain.length;
      }
    }
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  if (size !== e.size) return { name: e.name, error: { message: 'it is ' + size + ' bytes, the snapshot records ' + e.size, pack: null }, crcs };
  return { name: e.name, error: null, crcs };
}
try {
  parentPort.postMessage(workerData.entries.map(check));
} catch (e) {
  parentPort.postMessage({ failed: String((e && e.message) || e) });
}
`;

/** Checks the entries on a worker thread; resolves with one result per entry, in order (rejects when the worker cannot run). */
export function checkStoreEntriesInWorker(entries: WorkerEntry[]): Promise<WorkerEntryResult[]> {
  return runWorkerOnce<WorkerEntryResult>(WORKER_SOURCE, { entries });
}
