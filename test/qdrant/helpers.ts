/**
 * Shared set-up for the Qdrant tests. Everything here talks to the TEST DOUBLE in
 * qdrant-test-double.ts — no real Qdrant runs in this test suite.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QdrantConnection, type QdrantConnectionOptions } from '../../src/qdrant/connection';
import type { QdrantProgress, Schemas } from '../../src/qdrant/types';
import { QdrantTestDouble } from './qdrant-test-double';

/** Deterministic pseudo-random floats (no Math.random: failures must be reproducible). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return Math.round((s / 2 ** 32 - 0.5) * 1e6) / 1e6;
  };
}

export const MEMORY_COLLECTION = 'agent_memory';
export const ARCHIVAL_COLLECTION = 'archival';

/** Named dense vectors (one on disk as float16, one multivector), a sparse vector, three payload indexes. */
export const MEMORY_CREATE: Schemas['CreateCollection'] = {
  vectors: {
    text: { size: 4, distance: 'Cosine' },
    image: { size: 3, distance: 'Dot', on_disk: true, datatype: 'float16' },
    colbert: { size: 2, distance: 'Cosine', multivector_config: { comparator: 'max_sim' } },
  },
  sparse_vectors: { keywords: { modifier: 'idf', index: { on_disk: false } } },
  hnsw_config: { m: 32, ef_construct: 200 },
  quantization_config: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } },
  on_disk_payload: false,
  shard_number: 2,
};

export const MEMORY_INDEXES: Record<string, Schemas['PayloadFieldSchema']> = {
  kind: 'keyword',
  rank: { type: 'integer', lookup: true, range: true },
  body: { type: 'text', tokenizer: 'word', lowercase: true },
};

export function memoryPoints(n = 25, seed = 7): Schemas['PointStruct'][] {
  const r = rng(seed);
  const pts: Schemas['PointStruct'][] = [];
  for (let i = 0; i < n; i++) {
    const id: Schemas['ExtendedPointId'] = i < n - 5 ? i + 1 : `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    pts.push({
      id,
      vector: {
        text: [r(), r(), r(), r()],
        image: [r(), r(), r()],
        colbert: [
          [r(), r()],
          [r(), r()],
          [r(), r()],
        ],
        keywords: { indices: [i, i + 100, i + 1000], values: [r(), r(), r()] },
      },
      payload: { kind: i % 3 === 0 ? 'core' : 'archival', rank: i, body: `Memory #${i} — naïve café ☕`, nested: { tags: ['a', `t${i}`], score: i / 7 } },
    });
  }
  return pts;
}

export const ARCHIVAL_CREATE: Schemas['CreateCollection'] = { vectors: { size: 3, distance: 'Euclid' } };

export function archivalPoints(n = 7, seed = 11): Schemas['PointStruct'][] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => ({ id: 1000 + i, vector: [r(), r(), r()], payload: { agent_id: `agent-${i % 2}`, text: `passage ${i}` } }));
}

export function seedStandard(double: QdrantTestDouble): void {
  double.seedCollection(MEMORY_COLLECTION, MEMORY_CREATE, { indexes: MEMORY_INDEXES, points: memoryPoints() });
  double.seedCollection(ARCHIVAL_COLLECTION, ARCHIVAL_CREATE, { indexes: { agent_id: 'keyword' }, points: archivalPoints() });
}

export interface Env {
  double: QdrantTestDouble;
  dir: string;
  events: QdrantProgress[];
  conn(opts?: Partial<QdrantConnectionOptions>): QdrantConnection;
  cleanup(): Promise<void>;
}

export async function startEnv(opts: { apiKey?: string; version?: string } = {}): Promise<Env> {
  const double = await new QdrantTestDouble(opts).start();
  const dir = await mkdtemp(join(tmpdir(), 'av-qdrant-test-'));
  const events: QdrantProgress[] = [];
  return {
    double,
    dir,
    events,
    conn: (o = {}) => new QdrantConnection({ url: double.url, apiKey: opts.apiKey, retryDelayMs: 5, timeoutMs: 10_000, onProgress: (e) => events.push(e), ...o }),
    cleanup: async () => {
      await double.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves with the AgentVaultError (or other error) a promise rejects with; fails if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<Error & { kind?: string; code?: string; hint?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { kind?: string; code?: string };
  }
  throw new Error('expected the operation to fail, but it succeeded');
}

/** Requests that change server state (anything but reads). */
export function writeRequests(double: QdrantTestDouble): string[] {
  return double.requests.filter((r) => !(r.method === 'GET' || (r.method === 'POST' && /\/points\/(scroll|count)$/.test(r.path)))).map((r) => `${r.method} ${r.path}`);
}
