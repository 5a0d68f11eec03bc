/**
 * Snapshot transfer, timeouts, retries, API key and disk-space checks. Against the Qdrant TEST
 * DOUBLE (test/qdrant/qdrant-test-double.ts): no real Qdrant runs in this test suite.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { openArchive, readManifest } from '../../src/format/archive';
import { backupQdrantToArchive, restoreQdrantFromArchivePath } from '../../src/qdrant/archive';
import { QdrantConnection, resolveApiKey } from '../../src/qdrant/connection';
import type { QdrantManifestSection } from '../../src/qdrant/types';
import { errorHints } from '../../src/cli/exit';
import type { AgentVaultError } from '../../src/core/errors';
import { ARCHIVAL_COLLECTION, MEMORY_COLLECTION, rejection, seedStandard, startEnv, writeRequests, type Env } from './helpers';

/** The hint lines the CLI prints under this error (its remedy in CLI words, then its hint). */
const cliHints = (e: Error): string => errorHints(e as AgentVaultError).join('\n');

describe('qdrant transfer, timeouts, retries, API key (against the Qdrant TEST DOUBLE, not a real Qdrant)', () => {
  let env: Env;
  beforeEach(async () => {
    env = await startEnv();
    seedStandard(env.double);
  });
  afterEach(async () => env.cleanup());

  const out = () => join(env.dir, 'out.avault');
  const downloads = () => env.double.requests.filter((r) => r.method === 'GET' && /\/snapshots\/[^/]+$/.test(r.path));

  it("the client's own getSnapshot returns text and corrupts binary snapshots (why downloads use plain fetch)", async () => {
    const client = env.conn().client;
    const snap = await client.createSnapshot(ARCHIVAL_COLLECTION, { wait: true });
    const r = await client.api().getSnapshot({ collection_name: ARCHIVAL_COLLECTION, snapshot_name: snap!.name });
    assert.equal(typeof r.data, 'string');
    const asBytes = Buffer.from(r.data as unknown as string, 'utf8');
    assert.notEqual(createHash('sha256').update(asBytes).digest('hex'), snap!.checksum);

    await backupQdrantToArchive(out(), env.conn(), { collections: [ARCHIVAL_COLLECTION] });
    const q = (await readManifest(out())).qdrant as unknown as QdrantManifestSection;
    assert.equal(q.collections[0].snapshot_size, snap!.size);
  });

  it('the test double answers the real client on the snapshot endpoints (list, recover from URL, delete)', async () => {
    const client = env.conn().client;
    const snap = await client.createSnapshot(ARCHIVAL_COLLECTION, { wait: true });
    assert.deepEqual(
      (await client.listSnapshots(ARCHIVAL_COLLECTION)).map((d) => d.name),
      [snap!.name],
    );
    const before = env.double.dumpCollection(ARCHIVAL_COLLECTION);
    const location = `${env.double.url}/collections/${ARCHIVAL_COLLECTION}/snapshots/${snap!.name}`;
    assert.equal(await client.recoverSnapshot('archival_copy', { location, checksum: snap!.checksum ?? undefined }), true);
    assert.deepEqual(env.double.dumpCollection('archival_copy'), before);
    await assert.rejects(client.recoverSnapshot('x', { location, checksum: '0'.repeat(64) }), /Bad Request/);
    assert.equal(await client.deleteSnapshot(ARCHIVAL_COLLECTION, snap!.name), true);
    assert.deepEqual(await client.listSnapshots(ARCHIVAL_COLLECTION), []);
    assert.equal((await client.collectionExists('x')).exists, false);
  });

  it('an interrupted download leaves no partial file and no archive', async () => {
    env.double.faults.downloadDropAfterBytes = { times: 10, bytes: 100 };
    const e = await rejection(backupQdrantToArchive(out(), env.conn({ retries: 0 }), { collections: [MEMORY_COLLECTION] }));
    assert.equal(e.kind, 'connection');
    assert.match(e.message, /downloading snapshot '.*' of collection 'agent_memory' \(after 1 attempt\) failed/);
    assert.deepEqual(await readdir(env.dir), [], 'no archive, no temp archive, no snapshot file');
    assert.equal(downloads().length, 1);
  });

  it('a retried download discards its partial file first and then succeeds', async () => {
    env.double.faults.downloadDropAfterBytes = { times: 2, bytes: 100 };
    const seenAtAttemptStart: string[][] = [];
    const conn = new QdrantConnection({
      url: env.double.url,
      retries: 2,
      retryDelayMs: 5,
      onProgress: (p) => {
        if (p.phase === 'download' && p.bytes === undefined && p.attempt > 1) {
          // Temporary snapshot files live in .agent-vault-qdrant-*/ next to the archive.
          const tmp = readdirSync(env.dir).filter((f) => f.startsWith('.agent-vault-qdrant-'));
          seenAtAttemptStart.push(tmp.flatMap((d) => readdirSync(join(env.dir, d))));
        }
      },
    });
    await backupQdrantToArchive(out(), conn, { collections: [MEMORY_COLLECTION] });
    assert.deepEqual(seenAtAttemptStart, [[], []], 'the partial file of each failed attempt was removed before the next');
    assert.equal(downloads().length, 3);
    const reader = await openArchive(out());
    const q = reader.manifest.qdrant as unknown as QdrantManifestSection;
    const bytes = await reader.readEntry(q.collections[0].snapshot_entry);
    await reader.close();
    assert.equal(createHash('sha256').update(bytes).digest('hex'), q.collections[0].snapshot_sha256);
    assert.deepEqual(await readdir(env.dir), ['out.avault'], 'temporary files removed');
  });

  it('a stalled download times out (idle timeout) and is retried; without retries it fails with exit 3', async () => {
    env.double.faults.downloadStall = { times: 1, bytes: 64 };
    await backupQdrantToArchive(out(), env.conn({ timeoutMs: 300, retries: 1 }), { collections: [ARCHIVAL_COLLECTION] });
    const retry = env.events.find((e) => e.phase === 'retry');
    assert.ok(retry && retry.phase === 'retry');
    assert.match(retry.error, /no data received for 300 ms/);

    env.double.faults.downloadStall = { times: 1, bytes: 64 };
    const dest = join(env.dir, 'second.avault');
    const e = await rejection(backupQdrantToArchive(dest, env.conn({ timeoutMs: 300, retries: 0 }), { collections: [ARCHIVAL_COLLECTION] }));
    assert.equal(e.kind, 'connection');
    assert.match(e.message, /timed out \(no data received for 300 ms\)/);
    assert.match(cliHints(e), /--timeout/);
    assert.deepEqual(await readdir(env.dir), ['out.avault']);
  });

  it('a download whose bytes do not match the server checksum is retried; if it persists, exit 1 and no archive', async () => {
    env.double.faults.corruptDownload = { times: 1 };
    await backupQdrantToArchive(out(), env.conn({ retries: 1 }), { collections: [ARCHIVAL_COLLECTION] });
    assert.equal(downloads().length, 2);

    env.double.faults.corruptDownload = { times: 5 };
    const dest = join(env.dir, 'bad.avault');
    const e = await rejection(backupQdrantToArchive(dest, env.conn({ retries: 1 }), { collections: [ARCHIVAL_COLLECTION] }));
    assert.equal(e.kind, 'failed');
    assert.match(e.message, /Snapshot of collection 'archival' failed its checksum: the server reported sha256 [0-9a-f]{64}, the \d+ bytes received hash to [0-9a-f]{64} \(after 2 attempts\)/);
    assert.equal(existsSync(dest), false);
    assert.deepEqual(await readdir(env.dir), ['out.avault']);
  });

  it('API calls time out after --timeout and are retried; transient 5xx answers are retried', async () => {
    env.double.faults.delay = { times: 1, method: 'GET', path: /^\/collections\/archival$/, ms: 600 };
    env.double.faults.failStatus = { times: 1, method: 'POST', path: /^\/collections\/archival\/points\/count$/, status: 503 };
    await backupQdrantToArchive(out(), env.conn({ timeoutMs: 200, retries: 2 }), { collections: [ARCHIVAL_COLLECTION] });
    const retries = env.events.filter((e) => e.phase === 'retry').map((e) => (e.phase === 'retry' ? e.what : ''));
    assert.deepEqual(retries, ["reading collection 'archival'", "counting points of collection 'archival'"]);

    env.double.faults.delay = { times: 1, method: 'GET', path: /^\/collections\/archival$/, ms: 600 };
    const e = await rejection(backupQdrantToArchive(join(env.dir, 'b.avault'), env.conn({ timeoutMs: 200, retries: 0 }), { collections: [ARCHIVAL_COLLECTION] }));
    assert.equal(e.kind, 'connection');
    assert.match(e.message, /reading collection 'archival' failed: timed out/);
  });

  it('a snapshot upload that exceeds --upload-timeout fails the restore, which is rolled back', async () => {
    await backupQdrantToArchive(out(), env.conn(), { collections: [ARCHIVAL_COLLECTION] });
    env.double.collections.delete(ARCHIVAL_COLLECTION);
    // The server goes on recovering after the client gave up (as Qdrant does): the rollback must
    // wait for it, or the late recovery would re-create the collection after it was deleted.
    env.double.faults.delay = { times: 1, method: 'POST', path: /\/snapshots\/upload$/, ms: 500 };
    const e = await rejection(restoreQdrantFromArchivePath(out(), env.conn({ uploadTimeoutMs: 100 }), { pollIntervalMs: 20 }));
    assert.equal(e.kind, 'rolledBack');
    assert.match(e.message, /recovering collection 'archival' from the uploaded snapshot failed: timed out/);
    assert.ok(env.events.some((p) => p.phase === 'warning' && /outcome is unknown/.test(p.message)));
    assert.equal(env.double.collections.has(ARCHIVAL_COLLECTION), false);
    assert.equal(env.double.requests.filter((r) => r.path.endsWith('/snapshots/upload')).length, 1, 'uploads are not retried');
  });

  it('an unreachable server is a connection failure (exit 3) naming the address', async () => {
    const url = env.double.url;
    await env.double.stop();
    const e = await rejection(backupQdrantToArchive(out(), new QdrantConnection({ url, retries: 1, retryDelayMs: 5 })));
    assert.equal(e.kind, 'connection');
    assert.ok(e.message.startsWith(`Qdrant at ${url}: reading the server version (GET /) failed: `), e.message);
    assert.match(e.message, /ECONNREFUSED/);
    assert.match(e.hint ?? '', /running and reachable/);
    await env.double.start();
  });

  it('not enough free disk space (2× the estimate) stops the backup before any snapshot is taken (exit 4)', async () => {
    env.double.requests.length = 0;
    const e = await rejection(backupQdrantToArchive(out(), env.conn(), { statfs: async () => ({ bavail: 10, bsize: 4096 }) }));
    assert.equal(e.kind, 'conflict');
    assert.match(e.message, /Not enough free disk space in .* for backing up 2 Qdrant collection\(s\) \(2 × estimated \d+ bytes\): .* needed, 40\.0 KiB free/);
    assert.deepEqual(writeRequests(env.double), [], 'no server snapshot created');
    assert.deepEqual(await readdir(env.dir), []);
  });

  it('restore checks free space for extracted and safety snapshots (exit 4)', async () => {
    await backupQdrantToArchive(out(), env.conn());
    env.double.requests.length = 0;
    const e = await rejection(restoreQdrantFromArchivePath(out(), env.conn(), { overwrite: true, statfs: async () => ({ bavail: 1n, bsize: 512n }) }));
    assert.equal(e.kind, 'conflict');
    assert.deepEqual(writeRequests(env.double), []);
  });

  describe('API key', () => {
    let keyed: Env;
    beforeEach(async () => {
      keyed = await startEnv({ apiKey: 's3cr3t-key' });
      seedStandard(keyed.double);
    });
    afterEach(async () => keyed.cleanup());

    it('is sent as the api-key header on every request, JSON and plain fetch alike', async () => {
      const dest = join(keyed.dir, 'k.avault');
      await backupQdrantToArchive(dest, keyed.conn(), { collections: [MEMORY_COLLECTION] });
      keyed.double.collections.delete(MEMORY_COLLECTION);
      await restoreQdrantFromArchivePath(dest, keyed.conn());
      const paths = new Set(keyed.double.requests.map((r) => `${r.method} ${r.path.replace(/snapshots\/[^/]+\.snapshot$/, 'snapshots/{name}')}`));
      for (const must of [
        'GET /',
        'POST /collections/agent_memory/snapshots',
        'GET /collections/agent_memory/snapshots/{name}',
        'POST /collections/agent_memory/snapshots/upload',
        'DELETE /collections/agent_memory/snapshots/{name}',
      ]) {
        assert.ok(paths.has(must), `${must} was requested`);
      }
      for (const r of keyed.double.requests) assert.equal(r.headers['api-key'], 's3cr3t-key', `${r.method} ${r.path}`);
      const manifestText = JSON.stringify(await readManifest(dest));
      assert.ok(!manifestText.includes('s3cr3t-key'), 'the key never lands in the archive');
    });

    it('a missing or wrong key is a connection failure (exit 3) with a hint', async () => {
      // Real Qdrant answers 401 with a plain-text body (src/actix/auth.rs), which the message quotes.
      for (const [apiKey, text] of [
        [undefined, /HTTP 401 .*Must provide an API key or an Authorization bearer token/],
        ['wrong', /HTTP 401 .*Invalid API key or JWT/],
      ] as const) {
        const e = await rejection(backupQdrantToArchive(join(keyed.dir, 'x.avault'), new QdrantConnection({ url: keyed.double.url, apiKey, retries: 0 })));
        assert.equal(e.kind, 'connection');
        assert.match(e.message, text);
        assert.match(cliHints(e), /QDRANT_API_KEY/);
      }
    });

    it('comes from the named environment variable, SecretStorage, or QDRANT_API_KEY (in that order)', async () => {
      const secrets = { get: async (k: string) => (k === 'agent-vault.qdrant.apiKey' ? 'from-secret-storage' : undefined) };
      assert.equal(await resolveApiKey({ envVar: 'MY_KEY', env: { MY_KEY: 'from-my-key', QDRANT_API_KEY: 'x' }, secrets }), 'from-my-key');
      assert.equal(await resolveApiKey({ env: { QDRANT_API_KEY: 'from-env' }, secrets }), 'from-secret-storage');
      assert.equal(await resolveApiKey({ env: { QDRANT_API_KEY: 'from-env' } }), 'from-env');
      assert.equal(await resolveApiKey({ env: {} }), undefined);
      const e = await rejection(resolveApiKey({ envVar: 'MY_KEY', env: {} }));
      assert.equal(e.kind, 'usage');
      assert.match(e.message, /Environment variable MY_KEY \(named for the Qdrant API key\) is not set/);
      assert.doesNotMatch(e.message, /--/);
      assert.match(cliHints(e), /Export the Qdrant API key in the variable named by --api-key-env, or omit --api-key-env/);
    });

    it('warns when a key would travel over plain HTTP to a non-loopback host', () => {
      const warnings: string[] = [];
      new QdrantConnection({ url: 'http://qdrant.internal:6333', apiKey: 'k', onProgress: (p) => p.phase === 'warning' && warnings.push(p.message) });
      new QdrantConnection({ url: 'http://127.0.0.1:6333', apiKey: 'k', onProgress: (p) => p.phase === 'warning' && warnings.push(p.message) });
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /unencrypted HTTP to qdrant\.internal:6333/);
    });
  });
});
