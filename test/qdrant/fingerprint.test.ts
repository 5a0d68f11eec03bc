/**
 * Schema fingerprints. Collection info comes from the Qdrant TEST DOUBLE (no real Qdrant runs in
 * this test suite), created through the same request bodies a real server accepts.
 */
import assert from 'node:assert/strict';
import {
  canonicalJson,
  checkManifestFingerprint,
  createCollectionBody,
  diffFingerprints,
  fingerprintFromInfo,
  fingerprintSha256,
  formatDifferences,
  payloadIndexRequests,
} from '../../src/qdrant/fingerprint';
import type { CollectionFingerprint, Schemas } from '../../src/qdrant/types';
import { MEMORY_CREATE, MEMORY_INDEXES } from './helpers';
import { QdrantTestDouble } from './qdrant-test-double';

function infoOf(create: Schemas['CreateCollection'], indexes: Record<string, Schemas['PayloadFieldSchema']> = {}): Schemas['CollectionInfo'] {
  const d = new QdrantTestDouble();
  d.seedCollection('c', create, { indexes });
  return d.dumpCollection('c')!.info;
}

describe('qdrant schema fingerprints', () => {
  const memory = () => fingerprintFromInfo(infoOf(MEMORY_CREATE, MEMORY_INDEXES), 'agent_memory');

  it('captures named, multivector and sparse vectors, HNSW, quantization, payload indexes, shards and on-disk payload', () => {
    const fp = memory();
    assert.deepEqual(fp, {
      fingerprint_version: 3,
      vectors: {
        kind: 'named',
        params: {
          colbert: { size: 2, distance: 'Cosine', multivector: { comparator: 'max_sim' } },
          image: { size: 3, distance: 'Dot', datatype: 'float16', on_disk: true },
          text: { size: 4, distance: 'Cosine' },
        },
      },
      sparse_vectors: { keywords: { index: { on_disk: false }, modifier: 'idf' } },
      hnsw: { m: 32, ef_construct: 200, full_scan_threshold: 10000, on_disk: false },
      quantization: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } },
      payload_indexes: {
        body: { data_type: 'text', params: { type: 'text', tokenizer: 'word', lowercase: true } },
        kind: { data_type: 'keyword' },
        rank: { data_type: 'integer', params: { type: 'integer', lookup: true, range: true } },
      },
      shard_number: 2,
      sharding_method: 'auto',
      on_disk_payload: false,
      replication_factor: 1,
      write_consistency_factor: 1,
      optimizers: { deleted_threshold: 0.2, vacuum_min_vector_number: 1000, default_segment_number: 0, indexing_threshold: 10000, flush_interval_sec: 5 },
      wal: { wal_capacity_mb: 32, wal_segments_ahead: 0 },
      strict_mode: { enabled: false },
    } satisfies CollectionFingerprint);
  });

  it('versions 2 and 3 cover the config a collection built from a snapshot takes over (factors, read fan-out, payload storage, optimizer, WAL, strict mode, metadata)', () => {
    const base: Schemas['CreateCollection'] = { vectors: { size: 3, distance: 'Dot' } };
    const plain = fingerprintFromInfo(infoOf(base), 'a');
    const tuned = fingerprintFromInfo(
      infoOf({
        ...base,
        replication_factor: 2,
        write_consistency_factor: 2,
        optimizers_config: { indexing_threshold: 20000 },
        wal_config: { wal_capacity_mb: 64 },
        strict_mode_config: { enabled: true, max_query_limit: 100 },
        metadata: { owner: 'letta' },
      }),
      'b',
    );
    const text = formatDifferences(diffFingerprints(plain, tuned));
    for (const part of [
      'replication_factor (archive 1, server 2)',
      'write_consistency_factor (archive 1, server 2)',
      'optimizers.indexing_threshold (archive 10000, server 20000)',
      'wal.wal_capacity_mb (archive 32, server 64)',
      'strict_mode.enabled (archive false, server true)',
      'strict_mode.max_query_limit (archive (not set), server 100)',
      'metadata (archive (not set), server {"owner":"letta"})',
    ]) {
      assert.ok(text.includes(part), `expected «${part}» in: ${text}`);
    }
    // Qdrant compares a vector's params as a whole: fields this client version does not know count too.
    const info = infoOf(base);
    (info.config.params.vectors as Record<string, unknown>).memory = 'ram';
    const withExtra = fingerprintFromInfo(info, 'c');
    assert.deepEqual(formatDifferences(diffFingerprints(plain, withExtra)), 'vectors.(unnamed).memory (archive (not set), server "ram")');
    // A collection the server just built from the snapshot may carry defaults the archive's server lacked.
    const newer = structuredClone(plain);
    newer.optimizers = { ...newer.optimizers, prevent_unoptimized: true };
    assert.equal(diffFingerprints(plain, newer).length, 1);
    assert.deepEqual(diffFingerprints(plain, newer, { allowServerDefaults: true }), []);
    assert.equal(diffFingerprints(plain, { ...newer, optimizers: { ...newer.optimizers, indexing_threshold: 1 } }, { allowServerDefaults: true }).length, 1, 'a changed value still counts');
    // A version-1 fingerprint (older archive) is compared on the version-1 settings only.
    const v1 = { ...plain, fingerprint_version: 1 } as CollectionFingerprint;
    for (const k of ['replication_factor', 'write_consistency_factor', 'optimizers', 'wal', 'strict_mode', 'metadata'] as const) delete v1[k];
    assert.deepEqual(diffFingerprints(v1, tuned), []);
    assert.deepEqual(checkManifestFingerprint(v1, fingerprintSha256(v1), 'c'), v1);
    // Version 3 adds Qdrant 1.19's read fan-out delay and payload storage; a version-2 archive is not compared on them.
    const info3 = infoOf({ ...base, payload: { memory: 'cold' } } as Schemas['CreateCollection']);
    (info3.config.params as Record<string, unknown>).read_fan_out_delay_ms = 25;
    const v3 = fingerprintFromInfo(info3, 'c');
    assert.equal(v3.read_fan_out_delay_ms, 25);
    assert.deepEqual(v3.payload_storage, { memory: 'cold' });
    assert.deepEqual(formatDifferences(diffFingerprints(plain, v3)), 'payload_storage (archive (not set), server {"memory":"cold"}); read_fan_out_delay_ms (archive (not set), server 25)');
    const v2 = { ...plain, fingerprint_version: 2 } as CollectionFingerprint;
    assert.deepEqual(diffFingerprints(v2, v3), []);
    assert.deepEqual(checkManifestFingerprint(v2, fingerprintSha256(v2), 'c'), v2);
  });

  it('distinguishes a single unnamed vector and a sparse-only collection', () => {
    const single = fingerprintFromInfo(infoOf({ vectors: { size: 3, distance: 'Euclid' } }), 's');
    assert.deepEqual(single.vectors, { kind: 'single', params: { size: 3, distance: 'Euclid' } });
    assert.equal(single.on_disk_payload, true);
    const sparseOnly = fingerprintFromInfo(infoOf({ sparse_vectors: { bm25: {} } }), 'sp');
    assert.deepEqual(sparseOnly.vectors, { kind: 'none' });
    assert.deepEqual(sparseOnly.sparse_vectors, { bm25: {} });
  });

  it('hashes canonically: key order does not matter, values do', () => {
    const fp = memory();
    const reordered = JSON.parse(canonicalJson(fp)) as CollectionFingerprint;
    const shuffled = Object.fromEntries(Object.entries(reordered).reverse()) as unknown as CollectionFingerprint;
    assert.equal(fingerprintSha256(shuffled), fingerprintSha256(fp));
    assert.notEqual(fingerprintSha256({ ...fp, shard_number: 3 }), fingerprintSha256(fp));
  });

  it('ignores the index-building thread count, which is not part of the data shape', () => {
    const a = fingerprintFromInfo(infoOf({ vectors: { size: 3, distance: 'Dot' }, hnsw_config: { max_indexing_threads: 2 } }), 'a');
    const b = fingerprintFromInfo(infoOf({ vectors: { size: 3, distance: 'Dot' }, hnsw_config: { max_indexing_threads: 8 } }), 'b');
    assert.deepEqual(diffFingerprints(a, b), []);
  });

  it('names every differing setting', () => {
    const archive = memory();
    const server = fingerprintFromInfo(
      infoOf(
        {
          ...MEMORY_CREATE,
          vectors: { text: { size: 4, distance: 'Dot' }, 'my vector': { size: 5, distance: 'Cosine' } },
          sparse_vectors: {},
          on_disk_payload: true,
          quantization_config: null,
        },
        { kind: 'integer' },
      ),
      'x',
    );
    const text = formatDifferences(diffFingerprints(archive, server));
    for (const part of [
      'vectors.text.distance (archive "Cosine", server "Dot")',
      'vectors.image (archive {"datatype":"float16","distance":"Dot","on_disk":true,"size":3}, server (not set))',
      'vectors."my vector" (archive (not set), server {"distance":"Cosine","size":5})',
      'sparse_vectors.keywords (archive {"index":{"on_disk":false},"modifier":"idf"}, server (not set))',
      'on_disk_payload (archive false, server true)',
      'quantization (archive {"scalar":{"always_ram":true,"quantile":0.99,"type":"int8"}}, server (not set))',
      'payload_indexes.kind.data_type (archive "keyword", server "integer")',
      'payload_indexes.rank (archive',
    ]) {
      assert.ok(text.includes(part), `expected «${part}» in: ${text}`);
    }
    const modes = diffFingerprints(archive, fingerprintFromInfo(infoOf({ vectors: { size: 4, distance: 'Cosine' } }), 'y'));
    assert.ok(modes.some((d) => d.setting === 'vectors_mode' && d.archive === 'named' && d.server === 'single'));
  });

  it('recreates an equivalent empty collection from a fingerprint', () => {
    for (const [create, indexes] of [
      [MEMORY_CREATE, MEMORY_INDEXES],
      [{ vectors: { size: 3, distance: 'Euclid' }, sharding_method: 'custom', shard_number: 1 }, {}],
      [
        {
          vectors: { size: 3, distance: 'Dot' },
          replication_factor: 2,
          write_consistency_factor: 2,
          optimizers_config: { indexing_threshold: 0 },
          wal_config: { wal_capacity_mb: 8 },
          strict_mode_config: { enabled: true },
          metadata: { a: 1 },
        },
        {},
      ],
      [{ sparse_vectors: { bm25: { modifier: 'idf' } } }, { tenant: { type: 'keyword', is_tenant: true } }],
    ] as [Schemas['CreateCollection'], Record<string, Schemas['PayloadFieldSchema']>][]) {
      const fp = fingerprintFromInfo(infoOf(create, indexes), 'orig');
      const d = new QdrantTestDouble();
      const idx = Object.fromEntries(payloadIndexRequests(fp).map((r) => [r.field_name, r.field_schema]));
      d.seedCollection('copy', createCollectionBody(fp), { indexes: idx });
      assert.deepEqual(fingerprintFromInfo(d.dumpCollection('copy')!.info, 'copy'), fp);
    }
  });

  it('checks fingerprints read from a manifest (untrusted input)', () => {
    const fp = memory();
    assert.deepEqual(checkManifestFingerprint(fp, fingerprintSha256(fp), 'c'), fp);
    const cases: [unknown, RegExp][] = [
      [undefined, /fingerprint is missing/],
      [{ ...fp, fingerprint_version: 4 }, /unsupported fingerprint_version 4 \(expected 1, 2 or 3\)/],
      [{ ...fp, vectors: { kind: 'weird' } }, /vectors\.kind must be single, named or none/],
      [{ ...fp, payload_indexes: null }, /payload_indexes is missing/],
      [{ ...fp, shard_number: '2' }, /shard_number.*wrong type/],
    ];
    for (const [bad, re] of cases) {
      assert.throws(
        () => checkManifestFingerprint(bad, 'x', 'qdrant.collections[0]'),
        (e: Error & { kind?: string }) => re.test(e.message) && e.kind === 'failed',
      );
    }
    assert.throws(() => checkManifestFingerprint(fp, '0'.repeat(64), 'c'), /does not match the fingerprint/);
  });
});
