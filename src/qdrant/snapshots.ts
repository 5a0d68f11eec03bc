/**
 * Snapshot transfer with plain `fetch`: download streamed to disk and hashed while streaming
 * (the client's `getSnapshot` reads the body as text, which corrupts binary data), and recovery by
 * multipart upload (field `snapshot`; the client's `recoverFromUploadedSnapshot` sends JSON).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, openAsBlob } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgentVaultError } from '../core/errors';
import { collectionPath, type QdrantConnection } from './connection';
import { QDRANT_EXIT, qdrantCallError } from './errors';
import type { SnapshotDescription } from './types';

class IdleTimeoutError extends Error {
  constructor(ms: number) {
    super(`no data received for ${ms} ms`);
    this.name = 'IdleTimeoutError';
  }
}

class PrematureEndError extends Error {
  constructor(got: number, expected: number) {
    super(`download ended after ${got} of ${expected} bytes`);
    this.name = 'PrematureEndError';
  }
}

export interface DownloadResult {
  path: string;
  size: number;
  sha256: string;
  attempts: number;
}

/** SHA-256 (hex) and size of a file, streamed. */
export async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}

/** Creates a collection snapshot on the server (waits for it). Not retried: a retry could leave a second snapshot. */
export async function createServerSnapshot(conn: QdrantConnection, collection: string): Promise<SnapshotDescription> {
  const snap = await conn.call(`creating a snapshot of collection '${collection}'`, (c) => c.createSnapshot(collection, { wait: true }));
  if (!snap || typeof snap.name !== 'string') {
    throw new AgentVaultError('QDRANT_BAD_RESPONSE', `Qdrant at ${conn.url}: creating a snapshot of '${collection}' returned no snapshot description`, {
      exitCode: QDRANT_EXIT.CONNECTION,
    });
  }
  return snap;
}

/** Deletes a server-side snapshot (retried on transient failures). */
export async function deleteServerSnapshot(conn: QdrantConnection, collection: string, snapshot: string): Promise<void> {
  await conn.call(`deleting snapshot '${snapshot}' of collection '${collection}'`, (c) => c.deleteSnapshot(collection, snapshot, { wait: true }), { retry: true });
}

/**
 * Downloads a collection snapshot to `dest`, streaming and hashing. The idle timeout is the
 * connection's `timeoutMs` (longest wait without data). Transient failures (timeouts, dropped
 * connections, 5xx, a checksum different from the server's) are retried; every failed attempt
 * removes its partial file before the next one, and a final failure leaves no file behind.
 */
export async function downloadSnapshot(
  conn: QdrantConnection,
  collection: string,
  snapshot: string,
  dest: string,
  expect: { sha256?: string | null; size?: number } = {},
): Promise<DownloadResult> {
  const what = `downloading snapshot '${snapshot}' of collection '${collection}'`;
  const path = `${collectionPath(collection)}/snapshots/${encodeURIComponent(snapshot)}`;
  let attempts = 0;
  try {
    return await conn.withRetry(what, async (attempt) => {
      attempts = attempt + 1;
      conn.onProgress({ phase: 'download', collection, attempt: attempts });
      try {
        return await downloadOnce(conn, path, dest, what, expect, collection, attempts);
      } catch (e) {
        await rm(dest, { force: true });
        throw e;
      }
    });
  } catch (e) {
    await rm(dest, { force: true });
    if (e instanceof AgentVaultError && e.code === 'QDRANT_TRANSFER_CHECKSUM') {
      throw new AgentVaultError('QDRANT_VERIFICATION', `${e.message} (after ${attempts} attempt${attempts === 1 ? '' : 's'})`, {
        exitCode: QDRANT_EXIT.VERIFICATION,
        hint: 'The snapshot bytes received differ from what the server reported; the download was discarded.',
      });
    }
    throw qdrantCallError(`${what} (after ${attempts} attempt${attempts === 1 ? '' : 's'})`, conn.url, e);
  }
}

async function downloadOnce(
  conn: QdrantConnection,
  path: string,
  dest: string,
  what: string,
  expect: { sha256?: string | null; size?: number },
  collection: string,
  attempt: number,
): Promise<DownloadResult> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new IdleTimeoutError(conn.timeoutMs)), conn.timeoutMs);
  };
  arm();
  try {
    const res = await conn.fetchOk(path, { method: 'GET', signal: controller.signal }, what);
    if (!res.body) throw new PrematureEndError(0, expect.size ?? 0);
    const hash = createHash('sha256');
    let size = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        arm();
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    await pipeline(body, tap, createWriteStream(dest), { signal: controller.signal });
    if (expect.size !== undefined && expect.size > 0 && size < expect.size) throw new PrematureEndError(size, expect.size);
    const sha256 = hash.digest('hex');
    if (expect.sha256 && expect.sha256.toLowerCase() !== sha256) {
      throw new AgentVaultError(
        'QDRANT_TRANSFER_CHECKSUM',
        `Snapshot of collection '${collection}' failed its checksum: the server reported sha256 ${expect.sha256}, the ${size} bytes received hash to ${sha256}`,
        { exitCode: QDRANT_EXIT.VERIFICATION },
      );
    }
    conn.onProgress({ phase: 'download', collection, attempt, bytes: size });
    return { path: dest, size, sha256, attempts: attempt };
  } catch (e) {
    // An abort surfaces as AbortError wrapping our reason; report the reason.
    const reason = controller.signal.aborted ? (controller.signal.reason as unknown) : undefined;
    throw reason instanceof IdleTimeoutError ? reason : e;
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/**
 * Recovers `collection` from a local snapshot file by multipart upload
 * (`POST /collections/{name}/snapshots/upload?wait=true&priority=snapshot[&checksum=…]`, field
 * `snapshot`). Qdrant creates the collection if it does not exist and overwrites it otherwise.
 * Not retried: the caller rolls back instead. Throws the raw error (callers classify it).
 */
export async function uploadSnapshot(conn: QdrantConnection, collection: string, file: string, opts: { checksum?: string; timeoutMs?: number } = {}): Promise<void> {
  const blob = await openAsBlob(file);
  const form = new FormData();
  form.append('snapshot', blob, basename(file));
  const q = new URLSearchParams({ wait: 'true', priority: 'snapshot' });
  if (opts.checksum) q.set('checksum', opts.checksum);
  const res = await conn.fetchOk(
    `${collectionPath(collection)}/snapshots/upload?${q.toString()}`,
    { method: 'POST', body: form, timeoutMs: opts.timeoutMs ?? conn.uploadTimeoutMs },
    `recovering collection '${collection}' from uploaded snapshot ${basename(file)}`,
  );
  const body = (await res.json().catch(() => undefined)) as { result?: unknown } | undefined;
  if (res.status === 200 && body?.result !== true) {
    throw new AgentVaultError('QDRANT_BAD_RESPONSE', `Qdrant at ${conn.url}: snapshot upload for '${collection}' did not report success`, { exitCode: QDRANT_EXIT.CONNECTION });
  }
}
