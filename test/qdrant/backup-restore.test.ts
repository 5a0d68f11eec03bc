/**
 * Backup and restore of Qdrant collections through archives. All against the TEST DOUBLE
 * (test/qdrant/qdrant-test-double.ts): no real Qdrant runs in this test suite.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as yauzl from 'yauzl';
import { createArchiveWriter, openArchive, readManifest } from '../../src/format/archive';
import { backupQdrantToArchive, listCollectionsInArchive, restoreQdrantFromArchivePath } from '../../src/qdrant/archive';
import { fingerprintFromInfo } from '../../src/qdrant/fingerprint';
import type { QdrantManifestSection } from '../../src/qdrant/types';
import { errorHints } from '../../src/cli/exit';
import type { AgentVaultError } from '../../src/core/errors';
import { ARCHIVAL_COLLECTION, ARCHIVAL_CREATE, MEMORY_COLLECTION, MEMORY_CREATE, MEMORY_INDEXES, memoryPoints, rejection, seedStandard, startEnv, writeRequests, type Env } from './helpers';

describe('qdrant backup/restore (against the Qdrant TEST DOUBLE, not a real Qdrant)', () => {
  let env: Env;
  beforeEach(async () => {
    env = await startEnv();
    seedStandard(env.double);
  });
  afterEach(async () => env.cleanup());

  async function backup(opts: { points?: boolean; collections?: string[] } = {}): Promise<string> {
    const out = join(env.dir, `backup-${Math.random().toString(36).slice(2)}.avault`);
    await backupQdrantToArchive(out, env.conn(), opts);
    return out;
  }

  function dump(name: string) {
    const d = env.double.dumpCollection(name);
    assert.ok(d, `collection ${name} should exist on the test double`);
    return d;
  }

  it('round-trips named, multivector and sparse vectors with payload indexes: config and every point equal', async () => {
    const before = { memory: dump(MEMORY_COLLECTION), archival: dump(ARCHIVAL_COLLECTION) };
    const out = await backup();

    // Manifest: per collection a fingerprint, exact count, snapshot checksum; server snapshots removed.
    const manifest = await readManifest(out);
    const q = manifest.qdrant as unknown as QdrantManifestSection;
    assert.equal(q.server_version, '1.18.0');
    assert.deepEqual(
      q.collections.map((c) => c.name),
      [MEMORY_COLLECTION, ARCHIVAL_COLLECTION],
    );
    const mem = q.collections[0];
    assert.equal(mem.points_count, 25);
    assert.equal(mem.points_count_exact, true);
    assert.equal(mem.snapshot_entry, 'qdrant/agent_memory.snapshot');
    assert.equal(mem.fingerprint.vectors.kind, 'named');
    assert.deepEqual(Object.keys(mem.fingerprint.payload_indexes).sort(), ['body', 'kind', 'rank']);
    assert.deepEqual(mem.fingerprint.sparse_vectors, { keywords: { index: { on_disk: false }, modifier: 'idf' } });
    assert.equal(mem.fingerprint.shard_number, 2);
    assert.equal(mem.fingerprint.on_disk_payload, false);
    assert.equal(mem.fingerprint.hnsw.m, 32);
    assert.deepEqual(mem.fingerprint.quantization, { scalar: { type: 'int8', quantile: 0.99, always_ram: true } });
    if (mem.fingerprint.vectors.kind !== 'named') throw new Error('unreachable');
    assert.deepEqual(mem.fingerprint.vectors.params.colbert.multivector, { comparator: 'max_sim' });
    assert.equal(mem.fingerprint.vectors.params.image.datatype, 'float16');
    const reader = await openArchive(out);
    const snapBytes = await reader.readEntry(mem.snapshot_entry);
    await reader.close();
    assert.equal(createHash('sha256').update(snapBytes).digest('hex'), mem.snapshot_sha256);
    assert.equal(snapBytes.length, mem.snapshot_size);
    // The double's snapshots carry all 256 byte values: a text-decoded download would not match.
    assert.ok(snapBytes.includes(Buffer.from([0x7f, 0x80, 0x81])) && snapBytes.includes(Buffer.from([0xfd, 0xfe, 0xff])));
    assert.deepEqual(env.double.serverSnapshotNames(MEMORY_COLLECTION), [], 'server-side snapshot deleted after download');

    const summary = listCollectionsInArchive(manifest);
    assert.deepEqual(
      summary.map((s) => [s.name, s.points_count, s.vectors.sort(), s.sparse_vectors, s.has_points_export]),
      [
        [MEMORY_COLLECTION, 25, ['colbert', 'image', 'text'], ['keywords'], false],
        [ARCHIVAL_COLLECTION, 7, ['(unnamed)'], [], false],
      ],
    );

    // Restore into an empty server.
    env.double.collections.clear();
    env.double.requests.length = 0;
    const res = await restoreQdrantFromArchivePath(out, env.conn());
    assert.deepEqual(
      res.items.map((i) => [i.source, i.target, i.exists, i.method]),
      [
        [MEMORY_COLLECTION, MEMORY_COLLECTION, false, 'snapshot'],
        [ARCHIVAL_COLLECTION, ARCHIVAL_COLLECTION, false, 'snapshot'],
      ],
    );
    assert.deepEqual(dump(MEMORY_COLLECTION), before.memory);
    assert.deepEqual(dump(ARCHIVAL_COLLECTION), before.archival);

    // Not created first: recovered into the missing name by multipart upload, so the server builds the
    // collection (config and payload indexes) from the snapshot; the uploaded file is deleted afterwards.
    const writes = writeRequests(env.double);
    const uploaded = writes.filter((w) => w.startsWith('DELETE /collections/agent_memory/snapshots/'));
    assert.deepEqual(writes.slice(0, 2), ['POST /collections/agent_memory/snapshots/upload', uploaded[0]]);
    assert.match(uploaded[0], /^DELETE \/collections\/agent_memory\/snapshots\/agent-vault-restore-agent_memory-[a-z0-9-]+\.snapshot$/);
    assert.ok(!writes.some((w) => w === 'PUT /collections/agent_memory' || w.endsWith('/index')), 'no collection or index created by the client');
    assert.deepEqual(env.double.serverSnapshotNames(MEMORY_COLLECTION), [], 'no uploaded file left on the server');
    assert.deepEqual(env.double.serverSnapshotNames(ARCHIVAL_COLLECTION), []);
    const upload = env.double.requests.find((r) => r.path === '/collections/agent_memory/snapshots/upload')!;
    assert.match(upload.contentType ?? '', /^multipart\/form-data; boundary=/);
    const qs = new URLSearchParams(upload.query);
    assert.equal(qs.get('priority'), 'snapshot');
    assert.equal(qs.get('checksum'), mem.snapshot_sha256);
  });

  it('with --points exports every point portably and --from-points restores config and points equal', async () => {
    const before = dump(MEMORY_COLLECTION);
    const out = await backup({ points: true, collections: [MEMORY_COLLECTION] });
    const manifest = await readManifest(out);
    const mem = (manifest.qdrant as unknown as QdrantManifestSection).collections[0];
    assert.equal(mem.points_entry, 'qdrant/agent_memory.points.jsonl');
    assert.equal(mem.points_exported, 25);
    const reader = await openArchive(out);
    const lines = (await reader.readEntry(mem.points_entry!))
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    await reader.close();
    assert.equal(lines.length, 25);
    assert.deepEqual(lines[0], { id: 1, vector: before.points[0].vector, payload: before.points[0].payload });

    env.double.collections.clear();
    env.double.requests.length = 0;
    const res = await restoreQdrantFromArchivePath(out, env.conn(), { fromPoints: true });
    assert.equal(res.items[0].method, 'points');
    assert.deepEqual(dump(MEMORY_COLLECTION), before);
    assert.ok(!writeRequests(env.double).some((w) => w.includes('/snapshots/')), 'no snapshot involved in a points restore');
  });

  it('refuses a fingerprint mismatch, naming the differing settings, and changes nothing', async () => {
    const out = await backup({ collections: [MEMORY_COLLECTION] });
    // Someone recreated the collection with a bigger `text` vector and another HNSW m.
    env.double.collections.delete(MEMORY_COLLECTION);
    const changed = structuredClone(MEMORY_CREATE);
    (changed.vectors as Record<string, { size: number }>).text.size = 8;
    changed.hnsw_config = { m: 16, ef_construct: 200 };
    env.double.seedCollection(MEMORY_COLLECTION, changed, { indexes: { kind: 'keyword' } });
    const before = dump(MEMORY_COLLECTION);
    env.double.requests.length = 0;

    for (const overwrite of [false, true]) {
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { overwrite }));
      assert.equal(e.kind, 'mismatch');
      assert.match(e.message, /Collection 'agent_memory' on the server does not match 'agent_memory'/);
      assert.match(e.message, /vectors\.text\.size \(archive 4, server 8\)/);
      assert.match(e.message, /hnsw\.m \(archive 32, server 16\)/);
      assert.match(e.message, /payload_indexes\.rank \(archive \{.*\}, server \(not set\)\)/);
    }
    assert.deepEqual(writeRequests(env.double), [], 'nothing written to the server');
    assert.deepEqual(dump(MEMORY_COLLECTION), before);
  });

  it('--target-name restores into a staging collection and leaves the original untouched', async () => {
    const archived = dump(MEMORY_COLLECTION);
    const out = await backup();
    // The original moves on after the backup.
    env.double.seedCollection('unrelated', { vectors: { size: 2, distance: 'Dot' } });
    const extra = memoryPoints(30, 99).slice(25);
    await env.conn().client.upsert(MEMORY_COLLECTION, { wait: true, points: extra });
    const original = dump(MEMORY_COLLECTION);
    assert.equal(original.points.length, 30);

    const res = await restoreQdrantFromArchivePath(out, env.conn(), { collections: [MEMORY_COLLECTION], targetName: 'agent_memory_staging' });
    assert.deepEqual(
      res.items.map((i) => [i.source, i.target, i.exists]),
      [[MEMORY_COLLECTION, 'agent_memory_staging', false]],
    );
    assert.deepEqual(dump('agent_memory_staging'), archived);
    assert.deepEqual(dump(MEMORY_COLLECTION), original, 'original untouched');

    const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { targetName: 'x' }));
    assert.equal(e.kind, 'usage');
    assert.match(e.message, /target name \(targetName\) needs exactly one collection.*2 selected/);
    assert.doesNotMatch(e.message, /--/);
    assert.match([e.message, ...errorHints(e as AgentVaultError)].join('\n'), /2 selected\n--target-name restores one collection: select it with --collection <name>/); // what the CLI prints
  });

  it('refuses to replace an existing collection without --force (exit 2), replaces it with --force', async () => {
    const archived = dump(MEMORY_COLLECTION);
    const out = await backup({ collections: [MEMORY_COLLECTION] });
    await env.conn().client.upsert(MEMORY_COLLECTION, { wait: true, points: memoryPoints(3, 5) });
    const changed = dump(MEMORY_COLLECTION);
    assert.notDeepEqual(changed, archived);
    env.double.requests.length = 0;

    const e = await rejection(restoreQdrantFromArchivePath(out, env.conn()));
    assert.equal(e.kind, 'usage');
    assert.match(e.message, /'agent_memory' already exists .* not overwritten/);
    assert.match(errorHints(e as AgentVaultError).join('\n'), /--force/); // the hint the CLI prints
    assert.deepEqual(writeRequests(env.double), []);

    await restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true });
    assert.deepEqual(dump(MEMORY_COLLECTION), archived);
    // A safety snapshot was taken before the destructive step, and removed afterwards.
    const writes = writeRequests(env.double);
    const deletes = writes.filter((w) => w.startsWith('DELETE /collections/agent_memory/snapshots/'));
    assert.deepEqual(writes, [
      'POST /collections/agent_memory/snapshots',
      'POST /collections/agent_memory/snapshots/upload',
      deletes.find((w) => w.includes('/agent-vault-restore-'))!,
      deletes.find((w) => !w.includes('/agent-vault-restore-'))!,
    ]);
    assert.equal(deletes.length, 2, 'the uploaded file and the safety snapshot are both deleted');
    assert.deepEqual(env.double.serverSnapshotNames(MEMORY_COLLECTION), []);
  });

  it('a restore that fails during recover leaves a pre-existing collection exactly as before (config and every point)', async () => {
    const out = await backup({ collections: [MEMORY_COLLECTION] });
    // The live collection differs from the archive: a new point and a changed payload.
    const client = env.conn().client;
    await client.upsert(MEMORY_COLLECTION, { wait: true, points: memoryPoints(26, 3).slice(25) });
    await client.upsert(MEMORY_COLLECTION, { wait: true, points: [{ ...memoryPoints(1)[0], payload: { kind: 'edited', rank: -1 } }] });
    const before = dump(MEMORY_COLLECTION);
    // The double damages the collection (drops half the points, changes hnsw.m), then answers 500.
    env.double.faults.recoverFailure = { times: 1 };

    const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true }));
    assert.equal(e.kind, 'rolledBack');
    assert.match(e.message, /Restore failed and was rolled back: .*simulated failure during snapshot recovery/s);
    assert.match(e.message, /recovered 'agent_memory' to its previous state/);
    assert.equal(env.double.faults.recoverFailure.times, 0, 'the fault fired');
    assert.deepEqual(dump(MEMORY_COLLECTION), before, 'config and every point as before');
    assert.deepEqual(env.double.serverSnapshotNames(MEMORY_COLLECTION), [], 'safety snapshot cleaned up');
  });

  it('a restore that fails during recover removes the collection it created', async () => {
    const out = await backup({ collections: [MEMORY_COLLECTION] });
    env.double.collections.delete(MEMORY_COLLECTION);
    env.double.faults.recoverFailure = { times: 1 };
    const e = await rejection(restoreQdrantFromArchivePath(out, env.conn()));
    assert.equal(e.kind, 'rolledBack');
    assert.match(e.message, /deleted 'agent_memory' \(created by this restore\)/);
    assert.equal(env.double.faults.recoverFailure.times, 0);
    assert.equal(env.double.collections.has(MEMORY_COLLECTION), false);
  });

  it('rolls back every collection of a multi-collection restore when a later one fails', async () => {
    const out = await backup();
    await env.conn().client.upsert(MEMORY_COLLECTION, { wait: true, points: memoryPoints(2, 42) });
    const memoryBefore = dump(MEMORY_COLLECTION);
    env.double.collections.delete(ARCHIVAL_COLLECTION);
    env.double.faults.failStatus = { times: 1, method: 'POST', path: /^\/collections\/archival\/snapshots\/upload$/, status: 500 };

    const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true }));
    assert.equal(e.kind, 'rolledBack');
    // agent_memory had been restored successfully before archival failed; it is back to its previous state.
    assert.deepEqual(dump(MEMORY_COLLECTION), memoryBefore);
    assert.equal(env.double.collections.has(ARCHIVAL_COLLECTION), false);
    assert.match(e.message, /deleted 'archival' \(created by this restore\); recovered 'agent_memory' to its previous state/);
  });

  it('reports exit 8 and keeps the safety snapshot when the rollback itself fails', async () => {
    const out = await backup({ collections: [MEMORY_COLLECTION] });
    env.double.faults.recoverFailure = { times: 100 };
    const e = await rejection(restoreQdrantFromArchivePath(out, env.conn({ retries: 1 }), { overwrite: true, workDir: env.dir }));
    assert.equal(e.kind, 'rollbackIncomplete');
    assert.match(e.message, /Rollback did NOT complete:\n {2}'agent_memory': could not recover it from its safety snapshot/);
    const kept = env.double.serverSnapshotNames(MEMORY_COLLECTION);
    assert.equal(kept.length, 1);
    assert.ok(e.message.includes(`agent_memory/${kept[0]}`), 'message names the kept safety snapshot');
    const local = /local copies in (\S+)/.exec(e.message)?.[1];
    assert.ok(local && (await readdir(local)).includes('0-agent_memory.safety.snapshot'), 'local safety copy kept');
  });

  it('a --from-points restore over an existing collection that fails mid-upsert is rolled back exactly', async () => {
    const out = await backup({ points: true, collections: [MEMORY_COLLECTION] });
    await env.conn().client.upsert(MEMORY_COLLECTION, { wait: true, points: memoryPoints(4, 77) });
    const before = dump(MEMORY_COLLECTION);
    // The collection is deleted and recreated, then the upsert is refused (a 400 is not retried).
    env.double.faults.failStatus = { times: 1, method: 'PUT', path: /^\/collections\/agent_memory\/points$/, status: 400 };
    const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { fromPoints: true, overwrite: true }));
    assert.equal(e.kind, 'rolledBack');
    assert.match(e.message, /upserting \d+ points into collection 'agent_memory' failed: HTTP 400/);
    const writes = writeRequests(env.double);
    assert.ok(writes.includes('DELETE /collections/agent_memory'), 'the destructive step happened');
    assert.deepEqual(dump(MEMORY_COLLECTION), before);
  });

  it('a collection written to while its snapshot is taken: count marked inexact, restore still verified by fingerprint', async () => {
    // The snapshot request is held for 300 ms; a point is upserted meanwhile and lands in the snapshot.
    env.double.faults.delay = { times: 1, method: 'POST', path: /^\/collections\/archival\/snapshots$/, ms: 300 };
    const dest = join(env.dir, 'busy.avault');
    const running = backupQdrantToArchive(dest, env.conn(), { collections: [ARCHIVAL_COLLECTION] });
    while (!env.double.requests.some((r) => r.method === 'POST' && r.path === '/collections/archival/snapshots')) await new Promise((r) => setTimeout(r, 10));
    await env.conn().client.upsert(ARCHIVAL_COLLECTION, { wait: true, points: [{ id: 5000, vector: [1, 2, 3], payload: { agent_id: 'late' } }] });
    await running;
    const c = ((await readManifest(dest)).qdrant as unknown as QdrantManifestSection).collections[0];
    assert.equal(c.points_count, 7);
    assert.equal(c.points_count_exact, false);
    assert.ok(env.events.some((e) => e.phase === 'warning' && /written to while its snapshot was taken \(7 → 8 points\)/.test(e.message)));

    const live = dump(ARCHIVAL_COLLECTION);
    env.double.collections.clear();
    await restoreQdrantFromArchivePath(dest, env.conn());
    assert.deepEqual(dump(ARCHIVAL_COLLECTION), live, 'the snapshot holds the 8 points');
  });

  it('lists the collections of an archive from its manifest, tolerating damaged manifests', async () => {
    const out = await backup({ points: true, collections: [ARCHIVAL_COLLECTION] });
    assert.deepEqual(listCollectionsInArchive(await readManifest(out)), [
      {
        name: ARCHIVAL_COLLECTION,
        points_count: 7,
        vectors: ['(unnamed)'],
        sparse_vectors: [],
        payload_indexes: ['agent_id'],
        snapshot_size: ((await readManifest(out)).qdrant as unknown as QdrantManifestSection).collections[0].snapshot_size,
        has_points_export: true,
        fingerprint_sha256: ((await readManifest(out)).qdrant as unknown as QdrantManifestSection).collections[0].fingerprint_sha256,
      },
    ]);
    assert.deepEqual(listCollectionsInArchive({}), []);
    assert.deepEqual(listCollectionsInArchive(null), []);
    assert.deepEqual(
      listCollectionsInArchive({ qdrant: { collections: [null, 5, { name: 'x', fingerprint: { vectors: 7 } }] } }).map((c) => [c.name, c.vectors]),
      [['x', []]],
    );
  });

  it('collections whose names differ only in case get distinct archive entries and round-trip', async () => {
    env.double.collections.clear();
    env.double.seedCollection('Notes', ARCHIVAL_CREATE, { points: [{ id: 1, vector: [1, 0, 0], payload: { n: 'upper' } }] });
    env.double.seedCollection('notes', ARCHIVAL_CREATE, { points: [{ id: 1, vector: [0, 1, 0], payload: { n: 'lower' } }] });
    const before = { upper: dump('Notes'), lower: dump('notes') };
    const out = await backup({ points: true });
    const entries = (await readManifest(out)).entries.map((e) => e.name).sort();
    assert.equal(entries.length, 4);
    assert.equal(new Set(entries.map((e) => e.toLowerCase())).size, 4, entries.join(', '));
    env.double.collections.clear();
    await restoreQdrantFromArchivePath(out, env.conn());
    assert.deepEqual(dump('Notes'), before.upper);
    assert.deepEqual(dump('notes'), before.lower);
  });

  it('backing up a server without collections is refused (exit 2) and writes no archive', async () => {
    env.double.collections.clear();
    const dest = join(env.dir, 'empty.avault');
    const e = await rejection(backupQdrantToArchive(dest, env.conn()));
    assert.equal(e.kind, 'usage');
    assert.match(e.message, /has no collections; nothing to back up/);
    assert.deepEqual(await readdir(env.dir), []);
  });

  it('--dry-run verifies checksums and plans, but writes nothing', async () => {
    const out = await backup();
    env.double.collections.delete(ARCHIVAL_COLLECTION);
    env.double.requests.length = 0;
    const res = await restoreQdrantFromArchivePath(out, env.conn(), { dryRun: true, overwrite: true });
    assert.equal(res.dryRun, true);
    assert.equal(res.checksumsVerified, true);
    assert.deepEqual(
      res.items.map((i) => [i.target, i.exists]),
      [
        [MEMORY_COLLECTION, true],
        [ARCHIVAL_COLLECTION, false],
      ],
    );
    assert.deepEqual(writeRequests(env.double), []);
    assert.equal(env.double.collections.has(ARCHIVAL_COLLECTION), false);
  });

  describe('checksums', () => {
    /** Rewrites an archive with the same manifest sections but `mutate` applied to one entry's bytes. */
    async function rewriteEntry(src: string, entry: string, mutate: (b: Buffer) => Buffer): Promise<string> {
      const reader = await openArchive(src);
      const dest = join(env.dir, 'tampered.avault');
      const w = await createArchiveWriter(dest);
      for (const e of reader.list()) {
        const bytes = await reader.readEntry(e.name);
        await w.addBuffer(e.name, e.name === entry ? mutate(Buffer.from(bytes)) : bytes);
      }
      const { format: _f, format_version: _v, entries: _e, tool: _t, ...rest } = reader.manifest;
      await w.finish(rest);
      await reader.close();
      return dest;
    }

    it('a corrupted snapshot is caught by its SHA-256 before any upload; --skip-checksum-verify skips exactly that check', async () => {
      const out = await backup({ collections: [MEMORY_COLLECTION] });
      env.double.collections.clear();
      // Flip one byte inside the snapshot's binary block: the archive itself stays consistent
      // (its own entry checksum is recomputed), only the manifest's qdrant.snapshot_sha256 disagrees.
      const bad = await rewriteEntry(out, 'qdrant/agent_memory.snapshot', (b) => {
        b[60] ^= 0x01;
        return b;
      });
      env.double.requests.length = 0;
      const e = await rejection(restoreQdrantFromArchivePath(bad, env.conn()));
      assert.equal(e.kind, 'failed');
      assert.match(
        e.message,
        /snapshot of collection 'agent_memory' \(qdrant\/agent_memory\.snapshot\) failed its checksum: manifest sha256 [0-9a-f]{64}, extracted file sha256 [0-9a-f]{64}\. Nothing was uploaded\./,
      );
      assert.deepEqual(writeRequests(env.double), [], 'nothing uploaded or created');

      // Skipping our check lets the bytes reach the server, which rejects them; the restore rolls back.
      const e2 = await rejection(restoreQdrantFromArchivePath(bad, env.conn(), { skipChecksumVerify: true }));
      assert.equal(e2.kind, 'rolledBack');
      assert.match(e2.message, /Snapshot file is not a valid snapshot archive/);
      // The upload into the missing name failed before the server created the collection: Qdrant keeps
      // the file in the collection's snapshot folder, out of the API's reach; the report says so.
      assert.match(e2.message, /Snapshot files left on the server \(could not be deleted\): agent_memory\/agent-vault-restore-\S+ \(collection 'agent_memory' does not exist/);
      assert.equal(env.double.serverSnapshotNames(MEMORY_COLLECTION).length, 1);
      const upload = env.double.requests.find((r) => r.path.endsWith('/snapshots/upload'));
      assert.ok(upload, 'the upload happened');
      assert.equal(new URLSearchParams(upload.query).get('checksum'), null, 'no checksum sent when verification is skipped');
      assert.equal(env.double.collections.has(MEMORY_COLLECTION), false, 'created collection removed again');
    });

    it('a byte flipped inside the archive file is caught before any upload', async () => {
      const out = await backup({ collections: [MEMORY_COLLECTION] });
      env.double.collections.clear();
      const buf = await readFile(out);
      const { offset, length } = await entryDataRange(out, 'qdrant/agent_memory.snapshot');
      buf[offset + Math.floor(length / 2)] ^= 0x10;
      await writeFile(out, buf);
      env.double.requests.length = 0;
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn()));
      assert.equal(e.kind, 'failed');
      assert.match(e.message, /qdrant\/agent_memory\.snapshot.*corrupt.*Nothing was uploaded/s);
      assert.deepEqual(writeRequests(env.double), []);
    });

    it('a tampered fingerprint in the manifest is refused', async () => {
      const out = await backup({ collections: [ARCHIVAL_COLLECTION] });
      const reader = await openArchive(out);
      const dest = join(env.dir, 'tampered-manifest.avault');
      const w = await createArchiveWriter(dest);
      for (const e of reader.list()) await w.addBuffer(e.name, await reader.readEntry(e.name));
      const q = structuredClone(reader.manifest.qdrant) as unknown as QdrantManifestSection;
      q.collections[0].fingerprint.shard_number = 3;
      const { format: _f, format_version: _v, entries: _e, tool: _t, ...rest } = reader.manifest;
      await w.finish({ ...rest, qdrant: q });
      await reader.close();
      const e = await rejection(restoreQdrantFromArchivePath(dest, env.conn()));
      assert.equal(e.kind, 'failed');
      assert.match(e.message, /fingerprint_sha256 .* does not match the fingerprint/);
    });
  });

  it('fingerprints of restored collections equal those recorded in the archive', async () => {
    const out = await backup();
    env.double.collections.clear();
    await restoreQdrantFromArchivePath(out, env.conn());
    const q = (await readManifest(out)).qdrant as unknown as QdrantManifestSection;
    for (const c of q.collections) {
      assert.deepEqual(fingerprintFromInfo(dump(c.name).info, c.name), c.fingerprint);
    }
    void ARCHIVAL_CREATE;
    void MEMORY_INDEXES;
  });
});

/** Byte range of an entry's (compressed) data inside a zip file. */
async function entryDataRange(file: string, name: string): Promise<{ offset: number; length: number }> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) => yauzl.open(file, { lazyEntries: true }, (e, z) => (e ? rej(e) : res(z))));
  try {
    const entry = await new Promise<yauzl.Entry>((res, rej) => {
      zip.on('entry', (en: yauzl.Entry) => (en.fileName === name ? res(en) : zip.readEntry()));
      zip.on('end', () => rej(new Error(`no entry ${name}`)));
      zip.readEntry();
    });
    const buf = await readFile(file);
    const local = entry.relativeOffsetOfLocalHeader;
    const nameLen = buf.readUInt16LE(local + 26);
    const extraLen = buf.readUInt16LE(local + 28);
    return { offset: local + 30 + nameLen + extraLen, length: entry.compressedSize };
  } finally {
    zip.close();
  }
}
