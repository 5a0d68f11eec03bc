/**
 * One-shot worker threads for the checksum checks of an archive (src/format/verify-worker.ts;
 * a store snapshot's reader has a long-lived one: src/vault/store/decode-worker.ts): the worker's source is evaluated as CommonJS, gets its input
 * as `workerData`, posts one array of results (or `{ failed }`) and is then terminated.
 */
import { Worker } from 'node:worker_threads';

/** Runs `source` on a worker thread with `workerData`; resolves with the array it posts (rejects when it fails or cannot run). */
export function runWorkerOnce<T>(source: string, workerData: unknown): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const w = new Worker(source, { eval: true, workerData });
    let done = false;
    w.once('message', (m: T[] | { failed: string }) => {
      done = true;
      void w.terminate();
      if (Array.isArray(m)) resolve(m);
      else reject(new Error(m.failed));
    });
    w.once('error', (e) => {
      if (!done) reject(e);
    });
    w.once('exit', (code) => {
      if (!done) reject(new Error(`the checksum worker stopped (exit code ${code})`));
    });
  });
}
