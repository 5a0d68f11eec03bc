/**
 * Behaviour that real Qdrant has and a kinder test double would hide: HTTP agent timeouts,
 * recovery semantics (new vs existing collection), uploaded files kept on the server, snapshot
 * creation finished after a client timeout, polling for an interrupted recovery, cluster mode and
 * aliases. Against the Qdrant TEST DOUBLE (test/qdrant/qdrant-test-double.ts), which models each
 * behaviour after the Qdrant source file named there; no real Qdrant runs in this test suite
 * (test/qdrant/real-server.test.ts is the opt-in run against one).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { createArchiveWriter, openArchive, readManifest } from '../../src/format/archive';
import { fingerprintSha256 } from '../../src/qdrant/fingerprint';
import { backupQdrantToArchive, restoreQdrantFromArchivePath } from '../../src/qdrant/archive';
import { DEFAULT_TIMEOUT_MS, QdrantConnection, UNDICI_DEFAULT_TIMEOUT_MS } from '../../src/qdrant/connection';
import { errorStatus, isTimeoutError } from '../../src/qdrant/errors';
import type { AgentVaultError } from '../../src/core/errors';
import { errorHints } from '../../src/cli/exit';
import { createServerSnapshot, deleteUploadedSnapshot, uploadSnapshot } from '../../src/qdrant/snapshots';
import type { QdrantManifestSection, Schemas } from '../../src/qdrant/types';
import { ARCHIVAL_COLLECTION, ARCHIVAL_CREATE, MEMORY_COLLECTION, archivalPoints, rejection, seedStandard, startEnv, writeRequests, type Env } from './helpers';

describe('qdrant: real-server behaviour (against the Qdrant TEST DOUBLE, not a real Qdrant)', () => {
  let env: Env;
  beforeEach(async () => {
    env = await startEnv();
    seedStandard(env.double);
  });
  afterEach(async () => env.cleanup());

  let n = 0;
  async function backup(collections: string[], conn = env.conn()): Promise<string> {
    const out = join(env.dir, `b${++n}.avault`);
    await backupQdrantToArchive(out, conn, { collections });
    return out;
  }

  function dump(name: string) {
    const d = env.double.dumpCollection(name);
    assert.ok(d, `collection ${name} should exist on the test double`);
    return d;
  }

  /** A snapshot file of `collection` as it is now, written to disk (taken through the API). */
  async function snapshotFile(collection: string): Promise<string> {
    const conn = env.conn();
    const snap = await createServerSnapshot(conn, collection);
    const res = await fetch(`${env.double.url}/collections/${collection}/snapshots/${snap.name}`);
    const file = join(env.dir, `${collection}-${++n}.snapshot`);
    await writeFile(file, Buffer.from(await res.arrayBuffer()));
    await conn.client.deleteSnapshot(collection, snap.name);
    return file;
  }

  describe('1. HTTP agent timeouts follow the project options, not undici defaults', () => {
    it('an upload whose response headers come later than the configured upload timeout fails on the agent headers timeout', async () => {
      const file = await snapshotFile(ARCHIVAL_COLLECTION);
      // undici checks its timeouts on a ~1 s tick, so the server answers well after that.
      env.double.faults.delay = { times: 1, method: 'POST', path: /\/snapshots\/upload$/, ms: 2_500 };
      const conn = env.conn({ uploadTimeoutMs: 150 });
      // The total timeout is set far above, so what fires is the Agent's headersTimeout (= --upload-timeout).
      const e = await rejection(uploadSnapshot(conn, 'archival_copy', file, { timeoutMs: 20_000 }));
      const codes: unknown[] = [];
      for (let c: unknown = e; c instanceof Error; c = (c as { cause?: unknown }).cause) codes.push((c as { code?: unknown }).code);
      assert.ok(codes.includes('UND_ERR_HEADERS_TIMEOUT'), `headers timeout expected, got ${String(codes)}`);
      assert.ok(isTimeoutError(e));
      await conn.close();
    });

    it('an upload slower than an agent with a short (default-like) headers timeout succeeds with the longer project timeout', async () => {
      const file = await snapshotFile(ARCHIVAL_COLLECTION);
      const location = `${env.double.url}/collections/archival_copy/snapshots/upload?wait=true`;
      const form = () => {
        const f = new FormData();
        f.append('snapshot', new Blob([new Uint8Array(0)]), 'x.snapshot');
        return f;
      };
      // Stand-in for undici's default: an Agent whose headersTimeout is shorter than the server's answer.
      env.double.faults.delay = { times: 1, method: 'POST', path: /\/snapshots\/upload$/, ms: 2_200 };
      const short = new Agent({ headersTimeout: 200 });
      await assert.rejects(fetch(location, { method: 'POST', body: form(), dispatcher: short } as RequestInit), (err: Error) => isTimeoutError(err));
      await short.close();
      // The same wait with the project's (longer) upload timeout: the recovery completes.
      env.double.faults.delay = { times: 1, method: 'POST', path: /\/snapshots\/upload$/, ms: 2_200 };
      const conn = env.conn({ uploadTimeoutMs: 6_000 });
      await uploadSnapshot(conn, 'archival_copy', file);
      assert.deepEqual(dump('archival_copy').points, dump(ARCHIVAL_COLLECTION).points);
      await conn.close();
      // Defaults: upload agent waits an hour for headers, far beyond undici's own 300 s.
      const def = new QdrantConnection({ url: env.double.url });
      assert.equal(def.transferTimeouts('upload').headersTimeout, 3_600_000);
      assert.ok(def.transferTimeouts('upload').bodyTimeout > UNDICI_DEFAULT_TIMEOUT_MS);
      assert.deepEqual(new QdrantConnection({ url: env.double.url, timeoutMs: 900_000 }).transferTimeouts('download'), { headersTimeout: 900_000, bodyTimeout: 900_000 });
      // the library names its option; the CLI's output (message + hints) names the flag
      const e = (() => {
        try {
          new QdrantConnection({ url: env.double.url, uploadTimeoutMs: 2 ** 31 });
        } catch (err) {
          return err as AgentVaultError;
        }
        assert.fail('an upload timeout beyond 2^31-1 ms is refused');
      })();
      assert.equal(e.kind, 'usage');
      assert.match(e.message, /upload timeout \(uploadTimeoutMs\) must be a positive number of milliseconds up to 2147483647 \(got 2147483648\)/);
      assert.doesNotMatch(e.message, /--/);
      assert.match([e.message, ...errorHints(e)].join('\n'), /\nSet --upload-timeout <ms> to a whole number of milliseconds from 1 to 2147483647\./);
    });

    it("transfers do not use Node's global dispatcher: with a short global headers timeout (as undici's 300 s default would be for a long recovery), upload and download still wait as long as the project's options say", async () => {
      const file = await snapshotFile(ARCHIVAL_COLLECTION);
      const original = getGlobalDispatcher();
      const short = new Agent({ headersTimeout: 200, bodyTimeout: 200 });
      setGlobalDispatcher(short);
      try {
        // The global dispatcher does govern plain fetch: the same slow answer fails there.
        env.double.faults.delay = { times: 1, method: 'GET', path: /^\/collections$/, ms: 2_200 };
        await assert.rejects(fetch(`${env.double.url}/collections`), (err: Error) => isTimeoutError(err));
        const conn = env.conn({ timeoutMs: 8_000, uploadTimeoutMs: 8_000 });
        env.double.faults.delay = { times: 1, method: 'POST', path: /\/snapshots\/upload$/, ms: 2_200 };
        await uploadSnapshot(conn, 'archival_copy', file);
        assert.deepEqual(dump('archival_copy').points, dump(ARCHIVAL_COLLECTION).points);
        env.double.faults.delay = { times: 1, method: 'GET', path: /\/snapshots\/[^/]+\.snapshot$/, ms: 2_200 };
        await backupQdrantToArchive(join(env.dir, 'g.avault'), conn, { collections: [ARCHIVAL_COLLECTION] });
        assert.ok(!env.events.some((e) => e.phase === 'retry'), 'neither transfer timed out');
        await conn.close();
      } finally {
        setGlobalDispatcher(original);
        await short.close();
      }
    });

    it('a snapshot download whose headers come later than --timeout times out and is retried', async () => {
      env.double.faults.delay = { times: 1, method: 'GET', path: /\/snapshots\/[^/]+\.snapshot$/, ms: 700 };
      await backupQdrantToArchive(join(env.dir, 'd.avault'), env.conn({ timeoutMs: 250, retries: 1 }), { collections: [ARCHIVAL_COLLECTION] });
      const retry = env.events.find((e) => e.phase === 'retry' && /downloading snapshot/.test(e.what));
      assert.ok(retry, 'the download was retried after the headers timeout');
    });
  });

  describe('2. restoring into a new collection keeps every setting of the snapshot', () => {
    const TUNED: Schemas['CreateCollection'] = {
      vectors: { size: 3, distance: 'Euclid', on_disk: true, hnsw_config: { m: 8 } },
      replication_factor: 2,
      write_consistency_factor: 2,
      hnsw_config: { m: 24, ef_construct: 64, payload_m: 12 },
      optimizers_config: { indexing_threshold: 0, default_segment_number: 3, deleted_threshold: 0.3 },
      wal_config: { wal_capacity_mb: 8, wal_segments_ahead: 1 },
      quantization_config: { binary: { always_ram: true } },
      strict_mode_config: { enabled: true, max_query_limit: 50 },
      metadata: { owner: 'letta', tier: 'gold' },
      on_disk_payload: true,
      shard_number: 3,
    };

    it('the server builds the collection from the snapshot: config equals the original in full', async () => {
      env.double.seedCollection('tuned', TUNED, { indexes: { agent_id: 'keyword' }, points: archivalPoints(9) });
      const before = dump('tuned');
      const out = await backup(['tuned']);
      env.double.collections.delete('tuned');
      env.double.requests.length = 0;
      await restoreQdrantFromArchivePath(out, env.conn());
      assert.deepEqual(dump('tuned'), before, 'config (factors, optimizer, WAL, HNSW, quantization, strict mode, metadata), indexes and points');
      assert.ok(!writeRequests(env.double).includes('PUT /collections/tuned'), 'not pre-created by the client');
    });

    it('read fan-out factor and delay, which a create request cannot carry, are set after recovery into a missing collection; payload storage and vector memory kept', async () => {
      const create = {
        ...TUNED,
        vectors: { size: 3, distance: 'Euclid', on_disk: true, memory: 'cold', datatype: 'float16' },
        payload: { memory: 'cold' },
      } as Schemas['CreateCollection'];
      env.double.seedCollection('fanout', create, { indexes: { agent_id: 'keyword' }, points: archivalPoints(5) });
      await env.conn().client.updateCollection('fanout', { params: { read_fan_out_factor: 2, read_fan_out_delay_ms: 40 } as Schemas['CollectionParamsDiff'] });
      const before = dump('fanout');
      assert.equal(before.info.config.params.read_fan_out_factor, 2);
      const out = await backup(['fanout']);
      const fp = ((await readManifest(out)).qdrant as unknown as QdrantManifestSection).collections[0].fingerprint;
      assert.equal(fp.read_fan_out_delay_ms, 40);
      assert.deepEqual(fp.payload_storage, { memory: 'cold' });
      assert.deepEqual(fp.vectors, { kind: 'single', params: { size: 3, distance: 'Euclid', on_disk: true, memory: 'cold', datatype: 'float16' } });

      // What the server does on its own: a recovery into a missing name drops the read fan-out settings.
      const file = await snapshotFile('fanout');
      await uploadSnapshot(env.conn(), 'fanout_raw', file);
      assert.equal(dump('fanout_raw').info.config.params.read_fan_out_factor, undefined);

      env.double.collections.delete('fanout');
      await restoreQdrantFromArchivePath(out, env.conn());
      assert.deepEqual(dump('fanout'), before);
      assert.ok(writeRequests(env.double).includes('PATCH /collections/fanout'));
    });

    it('a rollback that rebuilds a collection from its safety snapshot sets the read fan-out settings again', async () => {
      await env.conn().client.updateCollection(ARCHIVAL_COLLECTION, { params: { read_fan_out_factor: 3 } });
      const before = dump(ARCHIVAL_COLLECTION);
      const out = await backup([ARCHIVAL_COLLECTION]);
      // Fails half-way and changes a setting, so the rollback deletes the collection and recovers it into the missing name.
      env.double.faults.recoverFailure = { times: 1 };
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true }));
      assert.equal(e.kind, 'rolledBack', e.message);
      assert.deepEqual(dump(ARCHIVAL_COLLECTION), before);
    });

    it("the double models why: an upload into an existing collection keeps that collection's config", async () => {
      env.double.seedCollection('tuned', TUNED, { points: archivalPoints(4) });
      const file = await snapshotFile('tuned');
      env.double.collections.delete('tuned');
      // Same vectors and shard number (so the server accepts it), every other setting default.
      env.double.seedCollection('tuned', { vectors: TUNED.vectors, shard_number: 3 });
      const plain = dump('tuned').info.config;
      await uploadSnapshot(env.conn(), 'tuned', file);
      assert.deepEqual(dump('tuned').info.config, plain, 'config stays that of the existing collection');
      assert.equal(dump('tuned').points.length, 4, 'the data was replaced');
    });

    it('an existing target whose optimizer, WAL or strict mode differ is refused before anything changes (exit 6)', async () => {
      const out = await backup([ARCHIVAL_COLLECTION]);
      env.double.collections.delete(ARCHIVAL_COLLECTION);
      env.double.seedCollection(ARCHIVAL_COLLECTION, { ...ARCHIVAL_CREATE, optimizers_config: { indexing_threshold: 5 }, strict_mode_config: { enabled: true } }, { indexes: { agent_id: 'keyword' } });
      env.double.requests.length = 0;
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true }));
      assert.equal(e.kind, 'mismatch');
      assert.match(e.message, /optimizers\.indexing_threshold \(archive 10000, server 5\)/);
      assert.match(e.message, /strict_mode\.enabled \(archive false, server true\)/);
      assert.deepEqual(writeRequests(env.double), []);
    });
  });

  describe('3. the double is as strict as the server', () => {
    it("refuses with 400 an upload whose vector params differ from the existing collection's", async () => {
      const file = await snapshotFile(ARCHIVAL_COLLECTION);
      env.double.seedCollection('other', { vectors: { size: 4, distance: 'Euclid' } });
      const e = await rejection(uploadSnapshot(env.conn(), 'other', file));
      assert.equal(errorStatus(e), 400);
      assert.match(e.message, /Snapshot is not compatible with existing collection: Collection vectors/);
      assert.equal(dump('other').points.length, 0);
    });

    it("keeps an uploaded file in the collection's snapshot folder until it is deleted", async () => {
      const file = await snapshotFile(ARCHIVAL_COLLECTION);
      await uploadSnapshot(env.conn(), 'copy', file, { uploadName: 'mine.snapshot' });
      assert.deepEqual(env.double.serverSnapshotNames('copy'), ['mine.snapshot']);
      assert.deepEqual(
        (await env.conn().client.listSnapshots('copy')).map((d) => d.name),
        ['mine.snapshot'],
      );
      // Deleting the collection does not empty the folder; the API cannot reach it any more.
      env.double.collections.delete('copy');
      assert.deepEqual(env.double.serverSnapshotNames('copy'), ['mine.snapshot']);
      await assert.rejects(env.conn().client.listSnapshots('copy'), /Not Found/);
    });

    it('answers 401 with a plain-text body and serves snapshots as tar archives', async () => {
      env.double.apiKey = 'k';
      const res = await fetch(`${env.double.url}/collections`);
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('content-type'), null, 'actix HttpResponseBuilder::body sets no content-type');
      assert.equal(await res.text(), 'Must provide an API key or an Authorization bearer token');
      // GET / is whitelisted from the key check (src/actix/mod.rs), so a version read does not test the key.
      assert.equal((await fetch(`${env.double.url}/`)).status, 200);
      const keyless = new QdrantConnection({ url: env.double.url, retries: 0 });
      assert.equal(await keyless.serverVersion(), env.double.version);
      const e = await rejection(backupQdrantToArchive(join(env.dir, 'k.avault'), keyless));
      assert.equal(e.kind, 'connection');
      assert.match(e.message, /HTTP 401 .*Must provide an API key or an Authorization bearer token/);
      env.double.apiKey = undefined;
      const out = await backup([ARCHIVAL_COLLECTION]);
      const reader = await openArchive(out);
      const bytes = await reader.readEntry((reader.manifest.qdrant as unknown as QdrantManifestSection).collections[0].snapshot_entry);
      await reader.close();
      assert.equal(bytes.subarray(257, 262).toString('latin1'), 'ustar');
      assert.equal(bytes.subarray(0, 11).toString('latin1'), 'config.json');
    });
  });

  describe('3b. wait semantics (src/actix/helpers.rs time_or_accept)', () => {
    it('wait=false answers 202 "accepted" at once and finishes later; every snapshot create, upload and delete of the tool sends wait=true', async () => {
      const res = await fetch(`${env.double.url}/collections/${ARCHIVAL_COLLECTION}/snapshots?wait=false`, { method: 'POST' });
      assert.equal(res.status, 202);
      assert.deepEqual({ ...((await res.json()) as object), time: 0 }, { result: null, status: 'accepted', time: 0 });
      assert.equal(env.double.serverSnapshotNames(ARCHIVAL_COLLECTION).length, 1);
      // The official client treats anything but 200/201 as an error, so it could not even read a 202.
      await assert.rejects(env.conn().client.createSnapshot(ARCHIVAL_COLLECTION, { wait: false }), /Accepted/);
      for (const s of env.double.serverSnapshotNames(ARCHIVAL_COLLECTION)) await env.conn().client.deleteSnapshot(ARCHIVAL_COLLECTION, s);

      env.double.requests.length = 0;
      const out = await backup([ARCHIVAL_COLLECTION]);
      await restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true });
      const snapshotWrites = env.double.requests.filter((r) => /\/snapshots/.test(r.path) && r.method !== 'GET');
      assert.ok(snapshotWrites.length >= 5, snapshotWrites.map((r) => `${r.method} ${r.path}`).join(', '));
      for (const r of snapshotWrites) assert.equal(new URLSearchParams(r.query).get('wait'), 'true', `${r.method} ${r.path}${r.query}`);
      const upload = snapshotWrites.find((r) => r.path.endsWith('/upload'));
      assert.equal(new URLSearchParams(upload?.query).get('priority'), 'snapshot');
    });
  });

  describe('4. nothing the tool created is left on the server', () => {
    it('a restore that is rolled back deletes its uploaded files and safety snapshots', async () => {
      const out = await backup([MEMORY_COLLECTION, ARCHIVAL_COLLECTION]);
      env.double.collections.delete(ARCHIVAL_COLLECTION);
      env.double.faults.recoverFailure = { times: 1 };
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true }));
      assert.equal(e.kind, 'rolledBack');
      assert.deepEqual(env.double.serverSnapshotNames(MEMORY_COLLECTION), []);
      assert.deepEqual(env.double.serverSnapshotNames(ARCHIVAL_COLLECTION), []);
    });

    it('an uploaded file of a collection that does not exist is reported as left, not as deleted', async () => {
      const junk = join(env.dir, 'junk.snapshot');
      await writeFile(junk, 'not a tar archive');
      const e = await rejection(uploadSnapshot(env.conn(), 'ghost', junk, { uploadName: 'junk.snapshot' }));
      assert.equal(errorStatus(e), 400);
      assert.deepEqual(env.double.serverSnapshotNames('ghost'), ['junk.snapshot'], 'kept in the folder, as Qdrant does');
      const left = await deleteUploadedSnapshot(env.conn(), 'ghost', 'junk.snapshot');
      assert.match(left ?? '', /collection 'ghost' does not exist, so the API cannot delete it; remove it from the server's snapshots folder/);
      await env.conn().client.createCollection('ghost', { vectors: { size: 2, distance: 'Dot' } });
      assert.equal(await deleteUploadedSnapshot(env.conn(), 'ghost', 'junk.snapshot'), undefined);
      assert.deepEqual(env.double.serverSnapshotNames('ghost'), []);
    });

    it('a snapshot creation that times out is finished by the server and then deleted; default timeout is at least 300 s', async () => {
      assert.ok(DEFAULT_TIMEOUT_MS >= 300_000);
      assert.ok(new QdrantConnection({ url: env.double.url }).timeoutMs >= 300_000);
      env.double.faults.delay = { times: 1, method: 'POST', path: /^\/collections\/archival\/snapshots$/, ms: 450 };
      const e = await rejection(backupQdrantToArchive(join(env.dir, 't.avault'), env.conn({ timeoutMs: 300, retries: 0 }), { collections: [ARCHIVAL_COLLECTION] }));
      assert.equal(e.kind, 'connection');
      assert.match(e.message, /creating a snapshot of collection 'archival' failed: timed out/);
      assert.deepEqual(env.double.serverSnapshotNames(ARCHIVAL_COLLECTION), [], 'the late snapshot was deleted');
      assert.ok(env.events.some((p) => p.phase === 'warning' && /finished after the client had given up/.test(p.message)));
    });
  });

  describe('5. rollback waits for the server by polling, bounded by the timeout', () => {
    it('an interrupted recovery over an existing collection is awaited (shards in ManualRecovery), then rolled back exactly', async () => {
      const out = await backup([MEMORY_COLLECTION]);
      const changed = dump(MEMORY_COLLECTION).points[0];
      await env.conn().client.upsert(MEMORY_COLLECTION, { wait: true, points: [{ id: changed.id, vector: changed.vector as Schemas['PointStruct']['vector'], payload: { kind: 'changed' } }] });
      const before = dump(MEMORY_COLLECTION);
      env.double.faults.slowRecovery = { times: 1, ms: 900 };
      const t0 = Date.now();
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn({ uploadTimeoutMs: 150 }), { overwrite: true, pollIntervalMs: 25 }));
      const took = Date.now() - t0;
      assert.equal(e.kind, 'rolledBack', e.message);
      assert.deepEqual(dump(MEMORY_COLLECTION), before, 'the late recovery did not overwrite the rolled-back collection');
      assert.ok(took >= 900 && took < 5_000, `waited for the server (${took} ms), no fixed 10 s sleeps`);
      assert.ok(
        env.double.requests.some((r) => r.path === `/collections/${MEMORY_COLLECTION}/cluster`),
        'shard state polled',
      );
      assert.deepEqual(env.double.serverSnapshotNames(MEMORY_COLLECTION), []);
    });

    it("a recovery still unpacking the snapshot (shards Active, same point count) is not taken for finished: the server's running-recovery count is polled", async () => {
      const out = await backup([MEMORY_COLLECTION]);
      const changed = dump(MEMORY_COLLECTION).points[0];
      await env.conn().client.upsert(MEMORY_COLLECTION, { wait: true, points: [{ id: changed.id, vector: changed.vector as Schemas['PointStruct']['vector'], payload: { kind: 'changed' } }] });
      const before = dump(MEMORY_COLLECTION);
      env.double.faults.slowRecovery = { times: 1, unpackMs: 900, ms: 200 };
      const t0 = Date.now();
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn({ uploadTimeoutMs: 150 }), { overwrite: true, pollIntervalMs: 25 }));
      const took = Date.now() - t0;
      assert.equal(e.kind, 'rolledBack', e.message);
      assert.ok(took >= 1_100, `waited for the server to finish (${took} ms)`);
      assert.deepEqual(dump(MEMORY_COLLECTION), before, 'the late recovery did not overwrite the rolled-back collection');
      assert.ok(env.double.requests.some((r) => r.path === '/telemetry' && /details_level=2/.test(r.query)));
    });

    it('when the server has not finished within the bound, the rollback is reported as not complete (exit 8)', async () => {
      const out = await backup([ARCHIVAL_COLLECTION]);
      env.double.collections.delete(ARCHIVAL_COLLECTION);
      env.double.faults.slowRecovery = { times: 1, ms: 1_500 };
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn({ uploadTimeoutMs: 100 }), { recoveryWaitMs: 300, pollIntervalMs: 25 }));
      assert.equal(e.kind, 'rollbackIncomplete');
      assert.match(e.message, /'archival': the server had not finished the interrupted recovery after 300 ms/);
      await new Promise((r) => setTimeout(r, 1_400));
    });
  });

  describe('6. clusters and aliases', () => {
    it('refuses a backup of a collection with shards on other peers, before any snapshot (exit 2)', async () => {
      env.double.setDistributed(2);
      env.double.remoteShards.set(MEMORY_COLLECTION, [{ shard_id: 1, peer_id: 2, state: 'Active' }]);
      env.double.requests.length = 0;
      const e = await rejection(backupQdrantToArchive(join(env.dir, 'c.avault'), env.conn()));
      assert.equal(e.kind, 'usage');
      assert.match(e.message, /distributed mode and collection 'agent_memory' has 1 shard replica\(s\) on other peers \(2\)/);
      assert.match(e.hint ?? '', /shards\/\{shard\}\/snapshots/);
      assert.deepEqual(writeRequests(env.double), []);
      // All shards local (a one-node cluster, or shards moved here): the snapshot is complete.
      env.double.remoteShards.clear();
      await backupQdrantToArchive(join(env.dir, 'c2.avault'), env.conn(), { collections: [MEMORY_COLLECTION] });
    });

    it('refuses custom sharding, and restores into a multi-peer cluster', async () => {
      env.double.seedCollection('custom', { vectors: { size: 2, distance: 'Dot' }, sharding_method: 'custom' });
      const e = await rejection(backupQdrantToArchive(join(env.dir, 'x.avault'), env.conn(), { collections: ['custom'] }));
      assert.equal(e.kind, 'usage');
      assert.match(e.message, /custom sharding/);
      // An archive holding a custom-sharded collection (older backups did not refuse them) is refused on restore.
      const mem = join(env.dir, 'custom-src.avault');
      await backupQdrantToArchive(mem, env.conn(), { collections: [ARCHIVAL_COLLECTION] });
      const r0 = await openArchive(mem);
      const q0 = structuredClone(r0.manifest.qdrant as unknown as QdrantManifestSection);
      q0.collections[0].fingerprint.sharding_method = 'custom';
      q0.collections[0].fingerprint_sha256 = fingerprintSha256(q0.collections[0].fingerprint);
      const customArchive = join(env.dir, 'custom.avault');
      const w = await createArchiveWriter(customArchive);
      for (const en of r0.list()) await w.addBuffer(en.name, await r0.readEntry(en.name));
      const { format: _f, format_version: _v, entries: _e, tool: _t, ...rest } = r0.manifest;
      void _f;
      void _v;
      void _e;
      void _t;
      await w.finish({ ...rest, qdrant: q0 as never });
      await r0.close();
      env.double.requests.length = 0;
      const e1 = await rejection(restoreQdrantFromArchivePath(customArchive, env.conn(), { targetName: 'c2' }));
      assert.equal(e1.kind, 'usage');
      assert.match(e1.message, /'archival' in .* uses custom sharding/);
      assert.deepEqual(writeRequests(env.double), []);
      const out = await backup([ARCHIVAL_COLLECTION]);
      env.double.setDistributed(3);
      env.double.requests.length = 0;
      const e2 = await rejection(restoreQdrantFromArchivePath(out, env.conn(), { targetName: 'x' }));
      assert.equal(e2.kind, 'usage');
      assert.match(e2.message, /distributed mode with 3 peers/);
      assert.deepEqual(writeRequests(env.double), []);
    });

    it('accepts an alias as --collection, backs up the aliases and restores them', async () => {
      const client = env.conn().client;
      await client.updateCollectionAliases({
        actions: [{ create_alias: { alias_name: 'memory', collection_name: MEMORY_COLLECTION } }, { create_alias: { alias_name: 'mem_v1', collection_name: MEMORY_COLLECTION } }],
      });
      const out = join(env.dir, 'alias.avault');
      await backupQdrantToArchive(out, env.conn(), { collections: ['memory'] });
      const q = (await readManifest(out)).qdrant as unknown as QdrantManifestSection;
      assert.deepEqual(
        q.collections.map((c) => [c.name, c.aliases]),
        [[MEMORY_COLLECTION, ['mem_v1', 'memory']]],
      );
      assert.ok(env.events.some((p) => p.phase === 'warning' && /'memory' is an alias of collection 'agent_memory'/.test(p.message)));

      await client.deleteCollection(MEMORY_COLLECTION); // deleting a collection removes its aliases
      assert.equal(env.double.aliases.size, 0);
      await restoreQdrantFromArchivePath(out, env.conn());
      assert.deepEqual([...env.double.aliases].sort(), [
        ['mem_v1', MEMORY_COLLECTION],
        ['memory', MEMORY_COLLECTION],
      ]);
    });

    it('an alias that points elsewhere is re-pointed only with --force, and put back when the restore fails', async () => {
      const client = env.conn().client;
      await client.updateCollectionAliases({ actions: [{ create_alias: { alias_name: 'memory', collection_name: MEMORY_COLLECTION } }] });
      const out = await backup([MEMORY_COLLECTION]);
      const both = await backup([MEMORY_COLLECTION, ARCHIVAL_COLLECTION]);
      await client.deleteCollection(MEMORY_COLLECTION);
      await client.updateCollectionAliases({ actions: [{ create_alias: { alias_name: 'memory', collection_name: ARCHIVAL_COLLECTION } }] });
      env.double.requests.length = 0;
      const e = await rejection(restoreQdrantFromArchivePath(out, env.conn()));
      assert.equal(e.kind, 'usage');
      assert.match(e.message, /Alias 'memory' points at collection 'archival'/);
      assert.deepEqual(writeRequests(env.double), []);

      // With --force: a later collection fails, so the alias goes back to 'archival' and the new collection is removed.
      const archivalBefore = dump(ARCHIVAL_COLLECTION);
      env.double.faults.failStatus = { times: 1, method: 'POST', path: /^\/collections\/archival\/snapshots\/upload$/, status: 500 };
      const e2 = await rejection(restoreQdrantFromArchivePath(both, env.conn(), { overwrite: true }));
      assert.equal(e2.kind, 'rolledBack', e2.message);
      assert.match(e2.message, /re-pointed alias 'memory' to 'archival'/);
      assert.equal(env.double.aliases.get('memory'), ARCHIVAL_COLLECTION);
      assert.equal(env.double.collections.has(MEMORY_COLLECTION), false);
      assert.deepEqual(dump(ARCHIVAL_COLLECTION), archivalBefore);

      await restoreQdrantFromArchivePath(out, env.conn(), { overwrite: true });
      assert.equal(env.double.aliases.get('memory'), MEMORY_COLLECTION);
    });
  });
});
