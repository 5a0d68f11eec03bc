/**
 * `agent-vault qdrant list|backup|restore` and its documented exit codes, run in-process through
 * main(argv, ctx) (test/helpers/cli.ts). Against the Qdrant TEST DOUBLE — no real Qdrant runs in
 * this test suite.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { StatfsFn } from '../../src/qdrant/types';
import { EXIT } from '../../src/cli/exit';
import { runCliInProcess, type CliResult } from '../helpers/cli';
import { ARCHIVAL_COLLECTION, MEMORY_COLLECTION, seedStandard, startEnv, writeRequests, type Env } from './helpers';

/** The qdrant commands see only the environment a test gives them. */
function run(args: string[], o: { env?: NodeJS.ProcessEnv; statfs?: StatfsFn } = {}): Promise<CliResult> {
  return runCliInProcess(args, { cleanEnv: true, env: o.env, context: { statfs: o.statfs } });
}

describe('agent-vault qdrant CLI (against the Qdrant TEST DOUBLE, not a real Qdrant)', () => {
  let env: Env;
  beforeEach(async () => {
    env = await startEnv();
    seedStandard(env.double);
  });
  afterEach(async () => env.cleanup());
  const archive = () => join(env.dir, 'q.avault');
  const fast = ['--retries', '0'];

  it('backup → list archive → list server → restore, exit 0', async () => {
    const b = await run(['qdrant', 'backup', '--url', env.double.url, '--out', archive(), '--points', ...fast]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /^agent_memory: 25 points, snapshot .* sha256 [0-9a-f]{64}, 25 points exported$/m);
    assert.match(b.stdout, /^wrote .*q\.avault \(.*, 2 collection\(s\), Qdrant 1\.18\.0\)$/m);

    const la = await run(['qdrant', 'list', archive()]);
    assert.equal(la.code, 0);
    assert.match(la.stdout, /^agent_memory\t25 points\tvectors: colbert, image, text\tsparse: keywords\tindexes: body, kind, rank\t.*\t\+points$/m);
    assert.match(la.stdout, /^archival\t7 points\tvectors: \(unnamed\)/m);
    const laJson = JSON.parse((await run(['qdrant', 'list', archive(), '--json'])).stdout) as { name: string }[];
    assert.deepEqual(
      laJson.map((c) => c.name),
      [MEMORY_COLLECTION, ARCHIVAL_COLLECTION],
    );

    const ls = await run(['qdrant', 'list', '--url', env.double.url, '--json']);
    assert.equal(ls.code, 0);
    const server = JSON.parse(ls.stdout) as { server_version: string; collections: { name: string; points_count: number }[] };
    assert.equal(server.server_version, '1.18.0');
    assert.deepEqual(
      server.collections.map((c) => [c.name, c.points_count]),
      [
        [MEMORY_COLLECTION, 25],
        [ARCHIVAL_COLLECTION, 7],
      ],
    );

    env.double.collections.clear();
    const r = await run(['qdrant', 'restore', archive(), '--url', env.double.url, ...fast]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^restored 'agent_memory' → 'agent_memory' \(new collection, 25 points, from snapshot\)$/m);
    assert.equal(env.double.collections.size, 2);
  });

  it('--dry-run prints the plan and changes nothing; --target-name restores under another name', async () => {
    await run(['qdrant', 'backup', '--url', env.double.url, '--out', archive()]);
    env.double.requests.length = 0;
    const d = await run(['qdrant', 'restore', archive(), '--url', env.double.url, '--collection', ARCHIVAL_COLLECTION, '--target-name', 'staging', '--dry-run']);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /would restore 'archival' → 'staging' \(new collection, 7 points, from snapshot\)/);
    assert.match(d.stdout, /dry run: nothing was changed; checksums verified/);
    assert.deepEqual(writeRequests(env.double), []);
    const t = await run(['qdrant', 'restore', archive(), '--url', env.double.url, '--collection', ARCHIVAL_COLLECTION, '--target-name', 'staging']);
    assert.equal(t.code, 0, t.stderr);
    assert.ok(env.double.collections.has('staging'));
  });

  it('exit 2: existing target without --force, bad options, missing --url, unknown collection', async () => {
    await run(['qdrant', 'backup', '--url', env.double.url, '--out', archive()]);
    const exists = await run(['qdrant', 'restore', archive(), '--url', env.double.url]);
    assert.equal(exists.code, EXIT.usage);
    assert.match(exists.stderr, /already exist.*not overwritten/);
    assert.match(exists.stderr, /hint: Pass --force/);
    assert.equal((await run(['qdrant', 'restore', archive(), '--url', env.double.url, '--force', ...fast])).code, 0);

    assert.equal((await run(['qdrant', 'backup', '--url', env.double.url, '--out', archive()])).code, EXIT.usage, 'archive exists');
    assert.equal((await run(['qdrant', 'backup', '--url', env.double.url, '--out', archive(), '--timeout', 'soon'])).code, EXIT.usage);
    const noUrl = await run(['qdrant', 'backup', '--out', join(env.dir, 'n.avault')]);
    assert.equal(noUrl.code, EXIT.usage);
    assert.match(noUrl.stderr, /--url is required/);
    const unknown = await run(['qdrant', 'backup', '--url', env.double.url, '--out', join(env.dir, 'u.avault'), '--collection', 'nope']);
    assert.equal(unknown.code, EXIT.usage);
    assert.match(unknown.stderr, /Collection 'nope' not found .*\nhint: Existing collections: agent_memory, archival/);
    const keyEnv = await run(['qdrant', 'list', '--url', env.double.url, '--api-key-env', 'NOT_SET']);
    assert.equal(keyEnv.code, EXIT.usage);
    assert.match(
      keyEnv.stderr,
      /Environment variable NOT_SET \(named for the Qdrant API key\) is not set or empty\nhint: Export the Qdrant API key in the variable named by --api-key-env, or omit --api-key-env/,
    );
    const badUrl = await run(['qdrant', 'list', '--url', 'ftp://127.0.0.1:6333']);
    assert.equal(badUrl.code, EXIT.usage);
    assert.match(badUrl.stderr, /Qdrant URL 'ftp:\/\/127\.0\.0\.1:6333' must start with http:\/\/ or https:\/\/\nhint: Give the server with --url, e\.g\. --url http:\/\/127\.0\.0\.1:6333/);
    const twoToOne = await run(['qdrant', 'restore', archive(), '--url', env.double.url, '--target-name', 'staging']);
    assert.equal(twoToOne.code, EXIT.usage);
    assert.match(twoToOne.stderr, /needs exactly one collection; 2 selected\nhint: --target-name restores one collection: select it with --collection <name>/);
  });

  it('exit 3 connection, 4 disk, 5 rolled back, 6 fingerprint mismatch', async () => {
    await run(['qdrant', 'backup', '--url', env.double.url, '--out', archive(), '--collection', ARCHIVAL_COLLECTION]);

    const disk = await run(['qdrant', 'backup', '--url', env.double.url, '--out', join(env.dir, 'd.avault')], { statfs: async () => ({ bavail: 0, bsize: 4096 }) });
    assert.equal(disk.code, EXIT.conflict);
    assert.match(disk.stderr, /Not enough free disk space/);

    env.double.faults.recoverFailure = { times: 1 };
    const rb = await run(['qdrant', 'restore', archive(), '--url', env.double.url, '--force', ...fast]);
    assert.equal(rb.code, EXIT.rolledBack);
    assert.match(rb.stderr, /rollback: recovering 'archival' from its safety snapshot/);
    assert.match(rb.stderr, /Restore failed and was rolled back/);

    env.double.collections.delete(ARCHIVAL_COLLECTION);
    env.double.seedCollection(ARCHIVAL_COLLECTION, { vectors: { size: 3, distance: 'Cosine' } });
    const mm = await run(['qdrant', 'restore', archive(), '--url', env.double.url, '--force']);
    assert.equal(mm.code, EXIT.mismatch);
    assert.match(mm.stderr, /vectors\.\(unnamed\)\.distance \(archive "Euclid", server "Cosine"\)/);

    const url = env.double.url;
    await env.double.stop();
    const conn = await run(['qdrant', 'list', '--url', url, ...fast]);
    assert.equal(conn.code, EXIT.connection);
    assert.match(conn.stderr, /agent-vault: Qdrant at http:\/\/127\.0\.0\.1:\d+: reading the server version \(GET \/\) failed: .*ECONNREFUSED/);
    await env.double.start();
  });

  it('accepts an alias as --collection; refuses a distributed collection with exit 2', async () => {
    env.double.aliases.set('memory', MEMORY_COLLECTION);
    const b = await run(['qdrant', 'backup', '--url', env.double.url, '--out', archive(), '--collection', 'memory', ...fast]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /warning: 'memory' is an alias of collection 'agent_memory'; backing up 'agent_memory'/);
    assert.match(b.stdout, /^agent_memory: 25 points/m);

    env.double.setDistributed(2);
    env.double.remoteShards.set(ARCHIVAL_COLLECTION, [{ shard_id: 0, peer_id: 2, state: 'Active' }]);
    const c = await run(['qdrant', 'backup', '--url', env.double.url, '--out', join(env.dir, 'c.avault'), ...fast]);
    assert.equal(c.code, EXIT.usage);
    assert.match(c.stderr, /distributed mode and collection 'archival' has 1 shard replica\(s\) on other peers/);
    assert.match(c.stderr, /hint: .*shard snapshot API/);
  });

  it('reads the API key from QDRANT_API_KEY or --api-key-env and never prints it', async () => {
    const keyed = await startEnv({ apiKey: 'k-123456789' });
    try {
      seedStandard(keyed.double);
      const dest = join(keyed.dir, 'k.avault');
      const noKey = await run(['qdrant', 'list', '--url', keyed.double.url, ...fast]);
      assert.equal(noKey.code, EXIT.connection);
      assert.match(noKey.stderr, /HTTP 401/);
      const a = await run(['qdrant', 'backup', '--url', keyed.double.url, '--out', dest], { env: { QDRANT_API_KEY: 'k-123456789' } });
      assert.equal(a.code, 0, a.stderr);
      const b = await run(['qdrant', 'list', '--url', keyed.double.url, '--api-key-env', 'MY_QDRANT_KEY'], { env: { MY_QDRANT_KEY: 'k-123456789' } });
      assert.equal(b.code, 0, b.stderr);
      for (const r of [noKey, a, b]) assert.ok(!(r.stdout + r.stderr).includes('k-123456789'));
    } finally {
      await keyed.cleanup();
    }
  });
});
