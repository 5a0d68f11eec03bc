/**
 * Portable point export/import: scroll every point with vectors and payload into JSON Lines
 * (`{"id":…,"vector":…,"payload":…}` per line) and upsert them back. The format only uses the
 * public REST shapes (`Record` out, `PointStruct` in), so it restores across Qdrant versions,
 * unlike snapshots (which are tied to the server's storage format).
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { AgentVaultError } from '../core/errors';
import type { QdrantConnection } from './connection';
import type { ExtendedPointId, PointRecord, PointStruct, Schemas } from './types';

export const DEFAULT_PAGE_SIZE = 256;

export interface PointLine {
  id: ExtendedPointId;
  vector: PointStruct['vector'];
  payload?: Schemas['Payload'] | null;
}

export interface ExportStats {
  exported: number;
}

function checkId(id: unknown, collection: string): ExtendedPointId {
  if (typeof id === 'string') return id;
  if (typeof id === 'number' && Number.isInteger(id) && id >= 0) {
    if (!Number.isSafeInteger(id)) {
      throw new AgentVaultError('QDRANT_POINT_ID', `Collection '${collection}': point id ${id} is above 2^53 and cannot be exported exactly as a JSON number`, {
        kind: 'failed',
        remedy: 'without-points',
        hint: 'The snapshot keeps such ids exactly.',
      });
    }
    return id;
  }
  throw new AgentVaultError('QDRANT_BAD_RESPONSE', `Collection '${collection}': scroll returned a point with an invalid id ${JSON.stringify(id)}`, { kind: 'connection' });
}

/** Scrolls all points of `collection` (ordered by id) and yields JSON Lines, one page per chunk. */
export async function* exportPoints(conn: QdrantConnection, collection: string, stats: ExportStats, pageSize = DEFAULT_PAGE_SIZE): AsyncGenerator<Buffer> {
  let offset: ExtendedPointId | undefined;
  for (;;) {
    const page = await conn.call(`scrolling points of collection '${collection}'`, (c) => c.scroll(collection, { limit: pageSize, offset, with_payload: true, with_vector: true }), { retry: true });
    const lines: string[] = [];
    for (const p of page.points as PointRecord[]) {
      const line: PointLine = { id: checkId(p.id, collection), vector: (p.vector ?? {}) as PointStruct['vector'], payload: (p.payload ?? null) as Schemas['Payload'] | null };
      lines.push(JSON.stringify(line));
    }
    stats.exported += lines.length;
    conn.onProgress({ phase: 'points', collection, exported: stats.exported });
    if (lines.length) yield Buffer.from(lines.join('\n') + '\n', 'utf8');
    const next = page.next_page_offset;
    if (next === undefined || next === null || (typeof next !== 'string' && typeof next !== 'number')) return;
    offset = next;
  }
}

function parseLine(text: string, lineNo: number, entry: string): PointLine {
  const bad = (msg: string) => new AgentVaultError('QDRANT_POINTS_FORMAT', `Points file ${entry} line ${lineNo}: ${msg}`, { kind: 'failed', location: { entry, line: lineNo, column: 1 } });
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw bad(`not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('expected an object {id, vector, payload}');
  const o = v as Record<string, unknown>;
  if (!(typeof o.id === 'string' || (typeof o.id === 'number' && Number.isInteger(o.id) && o.id >= 0))) throw bad(`id must be an unsigned integer or a UUID string, got ${JSON.stringify(o.id)}`);
  if (typeof o.vector !== 'object' || o.vector === null) throw bad('vector must be an array or an object of named vectors');
  if (o.payload !== undefined && o.payload !== null && (typeof o.payload !== 'object' || Array.isArray(o.payload))) throw bad('payload must be an object or null');
  return o as unknown as PointLine;
}

/** Reads JSON Lines from `input` and upserts them into `collection` in batches; returns the number of points. */
export async function importPoints(conn: QdrantConnection, collection: string, input: Readable, entry: string, batchSize = DEFAULT_PAGE_SIZE): Promise<number> {
  const rl = createInterface({ input, crlfDelay: Infinity });
  let batch: PointStruct[] = [];
  let total = 0;
  let lineNo = 0;
  const flush = async () => {
    if (!batch.length) return;
    const points = batch;
    batch = [];
    await conn.call(`upserting ${points.length} points into collection '${collection}'`, (c) => c.upsert(collection, { wait: true, points }), { retry: true });
    total += points.length;
    conn.onProgress({ phase: 'upsert', collection, upserted: total });
  };
  for await (const line of rl) {
    lineNo++;
    if (line.trim() === '') continue;
    const p = parseLine(line, lineNo, entry);
    batch.push({ id: p.id, vector: p.vector, payload: p.payload ?? undefined });
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  return total;
}

/** Exact point count. */
export async function countPoints(conn: QdrantConnection, collection: string): Promise<number> {
  const r = await conn.call(`counting points of collection '${collection}'`, (c) => c.count(collection, { exact: true }), { retry: true });
  return r.count;
}
