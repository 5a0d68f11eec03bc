/**
 * End-to-end backup/restore scenarios that use the REST API only (no test-double internals, no
 * fault injection), so they run unchanged against a REAL Qdrant server:
 *
 *   AGENT_VAULT_QDRANT_URL=http://127.0.0.1:6333 [AGENT_VAULT_QDRANT_API_KEY=…] \
 *     npx mocha test/qdrant/real-server.test.ts
 *
 * Without AGENT_VAULT_QDRANT_URL (the default, and the only mode this project's CI can run: no
 * Qdrant server is installed here) they run against the TEST DOUBLE in qdrant-test-double.ts.
 * Against a real server they create collections and aliases named `avtest_<run>_…` only, and
 * delete exactly those at the end. See docs/QDRANT.md, "Running the tests against a real Qdrant".
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openArchive, readManifest } from '../../src/format/archive';
import { backupQdrantToArchive, restoreQdrantFromArchivePath } from '../../src/qdrant/archive';
import { QdrantConnection } from '../../src/qdrant/connection';
import { errorStatus } from '../../src/qdrant/errors';
import { uploadSnapshot } from '../../src/qdrant/snapshots';
import type { QdrantManifestSection, Schemas } from '../../src/qdrant/types';
import { rejection, rng } from './helpers';
import { QdrantTestDouble } from './qdrant-test-double';

const REAL_URL = process.env.AGENT_VAULT_QDRANT_URL;
/** The key the server requires: AGENT_VAULT_QDRANT_API_KEY for a real server (none if unset); the double always requires one. */
const KEY = REAL_URL ? process.env.AGENT_VAULT_QDRANT_API_KEY || undefined : 'avtest-double-key';

describe(`qdrant end-to-end over REST only (${REAL_URL ? `REAL Qdrant at ${REAL_URL}` : 'against the Qdrant TEST DOUBLE; set AGENT_VAULT_QDRANT_URL for a real server'})`, function () {
  this.timeout(REAL_URL ? 600_000 : 60_000);
  let double: QdrantTestDouble | undefined;
  let url: string;
  let dir: string;
  const run = `avtest_${randomBytes(4).toString('hex')}`;
  const created = new Set<string>();
  const createdAliases = new Set<string>();
  const name = (s: string) => {
    const n = `${run}_${s}`;
    created.add(n);
    return n;
  };
  const conn = (o: Partial<ConstructorParameters<typeof QdrantConnection>[0]> = {}) => new QdrantConnection({ url, apiKey: KEY, retryDelayMs: 50, ...o });

  before(async () => {
    if (!REAL_URL) double = await new QdrantTestDouble({ apiKey: KEY }).start();
    url = REAL_URL ?? double!.url;
    dir = await mkdtemp(join(tmpdir(), 'av-qdrant-e2e-'));
  });
  after(async () => {
    const c = conn().client;
    for (const a of createdAliases) await c.updateCollectionAliases({ actions: [{ delete_alias: { alias_name: a } }] }).catch(() => undefined);
    for (const n of created) await c.deleteCollection(n).catch(() => undefined);
    await double?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const CREATE: Schemas['CreateCollection'] = {
    vectors: { text: { size: 4, distance: 'Cosine' }, image: { size: 3, distance: 'Dot', on_disk: true } },
    sparse_vectors: { keywords: { modifier: 'idf' } },
    hnsw_config: { m: 24, ef_construct: 90 },
    optimizers_config: { default_segment_number: 2, indexing_threshold: 0 },
    wal_config: { wal_capacity_mb: 16 },
    quantization_config: { scalar: { type: 'int8', always_ram: true } },
    strict_mode_config: { enabled: true, max_query_limit: 500 },
    metadata: { owner: 'agent-vault-test' },
    on_disk_payload: true,
    shard_number: 2,
  };

  async function seed(n: string, count = 30, create: Schemas['CreateCollection'] = CREATE): Promise<void> {
    const c = conn().client;
    await c.createCollection(n, create);
    await c.createPayloadIndex(n, { field_name: 'kind', field_schema: 'keyword', wait: true });
    await c.createPayloadIndex(n, { field_name: 'rank', field_schema: 'integer', wait: true });
    const r = rng(count);
    const points = Array.from({ length: count }, (_, i) => ({
      id: i + 1,
      vector: { text: [r(), r(), r(), r()], image: [r(), r(), r()], keywords: { indices: [i, i + 10], values: [r(), r()] } },
      payload: { kind: i % 2 ? 'core' : 'archival', rank: i, body: `memory ${i} — café` },
    }));
    await c.upsert(n, { wait: true, points });
  }

  /** Config, payload index types and every point (with vectors), read through the API. */
  async function dump(n: string) {
    const c = conn().client;
    const info = await c.getCollection(n);
    const points: unknown[] = [];
    let offset: Schemas['ExtendedPointId'] | undefined;
    for (;;) {
      const page = await c.scroll(n, { limit: 100, offset, with_payload: true, with_vector: true });
      points.push(...page.points.map((p) => ({ id: p.id, vector: p.vector, payload: p.payload })));
      const next = page.next_page_offset;
      if (next === undefined || next === null || (typeof next !== 'string' && typeof next !== 'number')) break;
      offset = next;
    }
    const indexes = Object.fromEntries(Object.entries(info.payload_schema).map(([k, v]) => [k, v?.data_type]));
    return { config: info.config, indexes, points };
  }

  async function snapshotNames(n: string): Promise<string[]> {
    return (await conn().client.listSnapshots(n)).map((d) => d.name);
  }

  it('round trip into a missing collection: the server rebuilds it with every setting; no files left on the server', async () => {
    const n = name('roundtrip');
    await seed(n);
    // Not part of a create request: Qdrant drops it when it recovers a snapshot into a missing name.
    await conn().client.updateCollection(n, { params: { read_fan_out_factor: 2 } });
    const before = await dump(n);
    assert.equal(before.config.params.read_fan_out_factor, 2);
    const out = join(dir, 'rt.avault');
    await backupQdrantToArchive(out, conn(), { collections: [n] });
    const q = (await readManifest(out)).qdrant as unknown as QdrantManifestSection;
    const reader = await openArchive(out);
    const bytes = await reader.readEntry(q.collections[0].snapshot_entry);
    await reader.close();
    assert.equal(bytes.subarray(257, 262).toString('latin1'), 'ustar', 'a collection snapshot is a tar archive');
    assert.deepEqual(await snapshotNames(n), [], 'backup deleted its server snapshot');

    await conn().client.deleteCollection(n);
    await restoreQdrantFromArchivePath(out, conn());
    assert.deepEqual(await dump(n), before);
    assert.deepEqual(await snapshotNames(n), [], 'the uploaded file was deleted');
  });

  it('--force over an existing collection: data replaced, config kept, safety snapshot and upload deleted', async () => {
    const n = name('force');
    await seed(n, 20);
    const archived = await dump(n);
    const out = join(dir, 'force.avault');
    await backupQdrantToArchive(out, conn(), { collections: [n] });
    await conn().client.delete(n, { wait: true, points: [1, 2, 3] });
    const e = await rejection(restoreQdrantFromArchivePath(out, conn()));
    assert.equal(e.kind, 'usage');
    await restoreQdrantFromArchivePath(out, conn(), { overwrite: true });
    assert.deepEqual(await dump(n), archived);
    assert.deepEqual(await snapshotNames(n), []);
  });

  it('refuses a mismatching existing collection before changing anything (exit 6)', async () => {
    const n = name('mismatch');
    await seed(n, 5);
    const out = join(dir, 'mm.avault');
    await backupQdrantToArchive(out, conn(), { collections: [n] });
    await conn().client.deleteCollection(n);
    await seed(n, 3, { ...CREATE, hnsw_config: { m: 12, ef_construct: 90 } });
    const before = await dump(n);
    const e = await rejection(restoreQdrantFromArchivePath(out, conn(), { overwrite: true }));
    assert.equal(e.kind, 'mismatch');
    assert.match(e.message, /hnsw\.m \(archive 24, server 12\)/);
    assert.deepEqual(await dump(n), before);
  });

  it('the server itself refuses a snapshot whose vector params differ from an existing collection (400)', async () => {
    const a = name('vec_a');
    const b = name('vec_b');
    await seed(a, 3);
    await conn().client.createCollection(b, { vectors: { text: { size: 8, distance: 'Cosine' }, image: { size: 3, distance: 'Dot', on_disk: true } }, shard_number: 2 });
    const out = join(dir, 'vec.avault');
    await backupQdrantToArchive(out, conn(), { collections: [a] });
    const reader = await openArchive(out);
    const q = reader.manifest.qdrant as unknown as QdrantManifestSection;
    const file = join(dir, 'vec.snapshot');
    await writeFile(file, await reader.readEntry(q.collections[0].snapshot_entry));
    await reader.close();
    const uploadName = `${run}-incompatible.snapshot`;
    const e = await rejection(uploadSnapshot(conn(), b, file, { uploadName }));
    assert.equal(errorStatus(e), 400);
    assert.match(e.message, /not compatible/i);
    // The server kept the uploaded file in b's snapshot folder: remove it.
    await conn()
      .client.deleteSnapshot(b, uploadName)
      .catch(() => undefined);
  });

  it("an uploaded file stays in the collection's snapshot folder until deleted; a wrong checksum is refused (400) before anything is kept, a malformed one with 422", async () => {
    const a = name('upload_src');
    await seed(a, 3);
    const out = join(dir, 'up.avault');
    await backupQdrantToArchive(out, conn(), { collections: [a] });
    const reader = await openArchive(out);
    const q = reader.manifest.qdrant as unknown as QdrantManifestSection;
    const file = join(dir, 'up.snapshot');
    await writeFile(file, await reader.readEntry(q.collections[0].snapshot_entry));
    await reader.close();
    const b = name('upload_dst');
    const wrong = await rejection(uploadSnapshot(conn(), b, file, { uploadName: `${run}-wrong.snapshot`, checksum: 'ab'.repeat(32) }));
    assert.equal(errorStatus(wrong), 400);
    assert.match(wrong.message, /checksum mismatch/i);
    const malformed = await rejection(uploadSnapshot(conn(), b, file, { uploadName: `${run}-bad.snapshot`, checksum: 'not-a-hash' }));
    assert.equal(errorStatus(malformed), 422);
    assert.equal((await conn().client.collectionExists(b)).exists, false);
    const uploadName = `${run}-kept.snapshot`;
    await uploadSnapshot(conn(), b, file, { uploadName, checksum: q.collections[0].snapshot_sha256 });
    assert.deepEqual(await snapshotNames(b), [uploadName]);
    assert.equal(await conn().client.deleteSnapshot(b, uploadName), true);
    assert.deepEqual(await snapshotNames(b), []);
  });

  it('the API key: GET / needs none; other calls without it get 401 with a plain-text (not JSON) body', async () => {
    assert.equal((await fetch(`${url}/`)).status, 200);
    const res = await fetch(`${url}/collections`);
    const text = await res.text();
    if (KEY === undefined) {
      assert.equal(res.status, 200, 'a server configured without a key answers without one');
      return;
    }
    assert.equal(res.status, 401);
    assert.match(text, /^(Must provide an API key or an Authorization bearer token|Invalid API key or JWT)$/);
    assert.doesNotMatch(res.headers.get('content-type') ?? '', /json/);
  });

  it('backs up through an alias and restores the alias', async () => {
    const n = name('aliased');
    const alias = `${run}_alias`;
    await seed(n, 4);
    await conn().client.updateCollectionAliases({ actions: [{ create_alias: { alias_name: alias, collection_name: n } }] });
    createdAliases.add(alias);
    const out = join(dir, 'alias.avault');
    await backupQdrantToArchive(out, conn(), { collections: [alias] });
    const q = (await readManifest(out)).qdrant as unknown as QdrantManifestSection;
    assert.deepEqual(
      q.collections.map((c) => [c.name, c.aliases]),
      [[n, [alias]]],
    );
    await conn().client.deleteCollection(n);
    await restoreQdrantFromArchivePath(out, conn());
    const aliases = (await conn().client.getAliases()).aliases.filter((a) => a.alias_name === alias);
    assert.deepEqual(aliases, [{ alias_name: alias, collection_name: n }]);
  });
});
