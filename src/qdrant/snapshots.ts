/**
 * Snapshot transfer with plain `fetch`: download streamed to disk and hashed while streaming
 * (the client's `getSnapshot` reads the body as text, which corrupts binary data), and recovery by
 * multipart upload (field `snapshot`; the client's `recoverFromUploadedSnapshot` sends JSON).
 */
import { createHash } from 'node:crypto';
import { createWriteStream, openAsBlob } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgentVaultError } from '../core/errors';
import { collectionPath, type QdrantConnection } from './connection';
import { errorMessage } from '../core/errors';
import { HttpStatusError, errorStatus, isNetworkError, isTimeoutError, qdrantCallError } from './errors';
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

/** SHA-256 (hex) and size of a file, streamed (src/core/hash.ts). */
export { fileSha256 as sha256File } from '../core/hash';

/**
 * Creates a collection snapshot on the server (waits for it). Not retried: a retry could leave a
 * second snapshot. Qdrant finishes a creation the client gave up on (src/actix/api/snapshot_api.rs
 * `create_snapshot` runs it in a spawned task, src/actix/helpers.rs `time_or_accept`), so after a
 * timeout or broken connection the snapshot that appears is looked for (bounded by the timeout)
 * and deleted before the error is reported.
 */
export async function createServerSnapshot(conn: QdrantConnection, collection: string): Promise<SnapshotDescription> {
  const what = `creating a snapshot of collection '${collection}'`;
  const before = new Set((await listServerSnapshots(conn, collection)).map((d) => d.name));
  let snap: SnapshotDescription | null | undefined;
  try {
    snap = await conn.withRetry(what, () => conn.client.createSnapshot(collection, { wait: true }), false);
  } catch (e) {
    if (isTimeoutError(e) || isNetworkError(e)) await deleteLateSnapshots(conn, collection, before);
    throw qdrantCallError(what, conn.url, e);
  }
  if (!snap || typeof snap.name !== 'string') {
    throw new AgentVaultError('QDRANT_BAD_RESPONSE', `Qdrant at ${conn.url}: creating a snapshot of '${collection}' returned no snapshot description`, {
      kind: 'connection',
    });
  }
  return snap;
}

/** The collection's snapshots on the server. */
export async function listServerSnapshots(conn: QdrantConnection, collection: string): Promise<SnapshotDescription[]> {
  return conn.call(`listing snapshots of collection '${collection}'`, (c) => c.listSnapshots(collection), { retry: true });
}

/**
 * Waits (up to the connection's timeout) for the snapshot a timed-out creation will still write,
 * and deletes it: a name that was not there before and is named like Qdrant's collection
 * snapshots (`<collection>-<peer>-<time>.snapshot`, lib/collection/src/collection/snapshots.rs).
 */
async function deleteLateSnapshots(conn: QdrantConnection, collection: string, before: Set<string>): Promise<void> {
  const deadline = Date.now() + conn.timeoutMs;
  const interval = Math.max(10, Math.min(1000, conn.timeoutMs / 10));
  for (;;) {
    let fresh: SnapshotDescription[];
    try {
      fresh = (await listServerSnapshots(conn, collection)).filter((d) => !before.has(d.name) && d.name.startsWith(`${collection}-`) && d.name.endsWith('.snapshot'));
    } catch {
      fresh = [];
    }
    for (const d of fresh) {
      await deleteServerSnapshot(conn, collection, d.name).then(
        () => conn.onProgress({ phase: 'warning', message: `Deleted snapshot '${d.name}' of '${collection}', which the server finished after the client had given up waiting for it.` }),
        (e: unknown) => conn.onProgress({ phase: 'warning', message: `Could not delete snapshot '${d.name}' of '${collection}' (finished by the server after a timeout): ${errorMessage(e)}` }),
      );
    }
    if (fresh.length) return;
    if (Date.now() >= deadline) {
      conn.onProgress({
        phase: 'warning',
        message: `A snapshot of '${collection}' whose creation timed out may still be written by the server; check GET /collections/${collection}/snapshots and delete it.`,
      });
      return;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
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
export async function downloadSnapshot(conn: QdrantConnection, collection: string, snapshot: string, dest: string, expect: { sha256?: string | null; size?: number } = {}): Promise<DownloadResult> {
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
        kind: 'failed',
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
    const res = await conn.fetchOk(path, { method: 'GET', signal: controller.signal, agentTimeoutMs: conn.transferTimeouts('download').headersTimeout }, what);
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
        { kind: 'failed' },
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
 * `snapshot`). Qdrant builds the collection from the snapshot if it does not exist; an existing
 * collection keeps its own config and only its data is replaced (and the upload is refused unless
 * vector params and shard number equal the snapshot's: lib/storage/src/content_manager/snapshots/recover.rs).
 * The uploaded file is moved into the collection's snapshot folder under the file name sent and
 * stays there until deleted (src/actix/api/snapshot_api.rs `do_save_uploaded_snapshot`), so the
 * caller must delete `uploadName` afterwards (deleteUploadedSnapshot), on success and on failure.
 * Not retried: the caller rolls back instead. Throws the raw error (callers classify it).
 */
export async function uploadSnapshot(conn: QdrantConnection, collection: string, file: string, opts: { checksum?: string; timeoutMs?: number; uploadName?: string } = {}): Promise<void> {
  const blob = await openAsBlob(file);
  const form = new FormData();
  form.append('snapshot', blob, opts.uploadName ?? basename(file));
  const q = new URLSearchParams({ wait: 'true', priority: 'snapshot' });
  if (opts.checksum) q.set('checksum', opts.checksum);
  const res = await conn.fetchOk(
    `${collectionPath(collection)}/snapshots/upload?${q.toString()}`,
    { method: 'POST', body: form, timeoutMs: opts.timeoutMs ?? conn.uploadTimeoutMs, agentTimeoutMs: conn.transferTimeouts('upload').headersTimeout },
    `recovering collection '${collection}' from uploaded snapshot ${basename(file)}`,
  );
  const body = (await res.json().catch(() => undefined)) as { result?: unknown } | undefined;
  // Only 200 with `result: true` is a finished recovery; a 202 ("accepted", time_or_accept without wait) says nothing about the outcome.
  if (res.status !== 200 || body?.result !== true) {
    throw new AgentVaultError('QDRANT_BAD_RESPONSE', `Qdrant at ${conn.url}: snapshot upload for '${collection}' did not report a finished recovery (HTTP ${res.status})`, { kind: 'connection' });
  }
}

/** A server-side file name for an upload that cannot clash with Qdrant's or anyone else's snapshots. */
export function uploadNameFor(collection: string, tag: string): string {
  const safe = collection.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80);
  return `agent-vault-${tag}-${safe}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}.snapshot`;
}

/**
 * Deletes an uploaded snapshot file from the collection's snapshot folder. Returns undefined when
 * it is gone, else a description of why it is left. A 404 for an existing collection means the
 * file is gone; when the collection itself does not exist (a recovery into a missing name failed
 * before creating it), Qdrant keeps the file in the folder but its API cannot reach it
 * (src/common/collections.rs do_list_snapshots and lib/storage/src/content_manager/snapshots/mod.rs do_delete_collection_snapshot look the collection up first), so it is reported as left behind.
 */
export async function deleteUploadedSnapshot(conn: QdrantConnection, collection: string, name: string): Promise<string | undefined> {
  try {
    await conn.withRetry(`deleting uploaded snapshot '${name}'`, () =>
      conn
        .fetchOk(`${collectionPath(collection)}/snapshots/${encodeURIComponent(name)}?wait=true`, { method: 'DELETE' }, `deleting uploaded snapshot '${name}' of collection '${collection}'`)
        .then((r) => r.arrayBuffer()),
    );
    return undefined;
  } catch (e) {
    if (errorStatus(e) === 404) {
      const exists = await conn
        .call(`checking whether collection '${collection}' exists`, (c) => c.collectionExists(collection), { retry: true })
        .then(
          (r) => r.exists,
          () => true,
        );
      if (exists) return undefined;
      return `collection '${collection}' does not exist, so the API cannot delete it; remove it from the server's snapshots folder (<snapshots_path>/${collection}/${name})`;
    }
    return e instanceof HttpStatusError ? e.message : errorMessage(e);
  }
}
