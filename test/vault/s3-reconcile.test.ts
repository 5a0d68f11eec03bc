/**
 * Reconciling a vault in object storage (moto on 127.0.0.1), through the built CLI:
 * `rebuild-index` rebuilds a lost or damaged bucket index from the snapshot objects (verified,
 * under the bucket's lock; adopted or reported, never deleted), and a damaged snapshot object is
 * kept by `prune` (reported, not counted, exit 1) and named by `verify` and `status`.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packAgentFile } from '../../src/format/pack';
import { addSnapshotToVault } from '../../src/vault/catalog';
import { copyVault, readStoreIndex } from '../../src/vault/remote/copy';
import { rebuildRemoteIndex } from '../../src/vault/remote/reconcile';
import { S3Store } from '../../src/vault/remote/s3';
import { LocalStore, type ObjectStore } from '../../src/vault/remote/store';
import { readIndex, type SnapshotRecord } from '../../src/vault/vault';
import { runCli, STACK_TRACE } from '../helpers/cli';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { fixturePath } from './letta-data';
import { makeTmpRoot } from './helpers';

const FAST_LOCK = { settleMs: 20, heartbeatMs: 200 };

async function keys(store: ObjectStore, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out.sort();
}

/** The same bytes with one byte flipped in the middle (a damaged archive of the same size). */
function flipped(b: Buffer): Buffer {
  const c = Buffer.from(b);
  c[Math.floor(c.length / 2)] ^= 0xff;
  return c;
}

describe('rebuild-index, prune, verify and status on a damaged s3:// vault (moto)', function () {
  this.timeout(180000);
  const tmp = makeTmpRoot('s3-reconcile');
  let moto: MotoServer;
  let local: string;
  let src: SnapshotRecord[];
  const env = (): NodeJS.ProcessEnv => ({ AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey });
  /** A fresh bucket prefix holding a copy of the local vault. */
  const seeded = async (prefix: string, from = local): Promise<{ loc: string; store: S3Store }> => {
    const loc = moto.location('av-rebuild', prefix);
    const store = new S3Store(loc);
    const r = await copyVault(new LocalStore(from), store, { lock: FAST_LOCK });
    assert.equal(r.ok, true);
    return { loc, store };
  };

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    moto = await startMoto();
    await moto.createBucket('av-rebuild');
    local = tmp.dir('local-vault');
    // four snapshots of one agent (these fixtures' agent is "agent-0" in each): retention counts per agent
    for (const f of ['memgpt-agent.v1.af', 'memgpt-agent.v1.af', 'customer-service.v2-early.af', 'memgpt-agent.v1.af']) {
      await addSnapshotToVault(local, (dest) => packAgentFile(fixturePath(f), dest), { command: 'test' });
      await new Promise((r) => setTimeout(r, 20)); // distinct creation times
    }
    src = (await readIndex(local)).snapshots;
    assert.equal(src.length, 4);
  });
  after(async () => {
    await moto?.stop();
    tmp.cleanup();
  });

  it('the index object deleted: rebuild-index lists every snapshot again from the archives (same ids, sizes, sha256), logs the run and releases the lock', async () => {
    const { loc, store } = await seeded('lost-index');
    // while one archive is unlisted, status says so
    const idx0 = (await readStoreIndex(store))!;
    await store.writeBytes('vault.json', JSON.stringify({ ...idx0, snapshots: idx0.snapshots.slice(1) }));
    const st = runCli(['status', '--vault', loc, '--json'], { env: env() });
    assert.deepEqual(JSON.parse(st.stdout).unlisted, [src[0].file]);
    await store.delete('vault.json');
    const before = await keys(store);
    const dry = runCli(['rebuild-index', '--vault', loc, '--dry-run'], { env: env() });
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.match(dry.stdout, /the index was missing/);
    assert.match(dry.stdout, /index not written \(dry run\): 4 snapshot\(s\)/);
    assert.equal(await store.head('vault.json'), null, 'a dry run writes nothing');

    const r = runCli(['rebuild-index', '--vault', loc], { env: env() });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    for (const s of src) assert.match(r.stdout, new RegExp(`listed ${s.id}`));
    assert.match(r.stdout, /index written: 4 snapshot\(s\) \(4 listed again, 0 dropped as missing, 0 archive\(s\) failing verification\)/);
    const idx = await readStoreIndex(store);
    const got = idx!.snapshots.map((s) => [s.id, s.file, s.bytes, s.sha256, s.created_at, s.agents.map((a) => a.id).join(',')]);
    const want = src.map((s) => [s.id, s.file, s.bytes, s.sha256, s.created_at, s.agents.map((a) => a.id).join(',')]);
    assert.deepEqual(got, want);
    // nothing was deleted; the index and the run log are the only new objects
    assert.deepEqual(
      (await keys(store)).filter((k) => !before.includes(k)),
      ['vault.json'],
    );
    assert.equal(await store.head('.lock'), null, 'the lock is released');
    const runs = (await store.readBytes('runs.jsonl'))!
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual([runs.at(-1).command, runs.at(-1).ok, runs.at(-1).adopted.length], ['rebuild-index', true, 4]);
    // the rebuilt vault works: a second rebuild keeps everything, a fetch checks out
    const again = await rebuildRemoteIndex(store, { lock: FAST_LOCK });
    assert.deepEqual([again.previous, again.kept.length, again.adopted.length, again.damaged.length], ['ok', 4, 0, 0]);
    await store.close();
  });

  it('a damaged index object is kept as vault.json.damaged-<time> and rebuilt; a damaged unlisted archive is reported (exit 1), never listed or deleted; other objects are left alone', async () => {
    const { loc, store } = await seeded('damaged-index');
    await store.writeBytes('vault.json', '{"format": "agent-vault-index", "snapsh');
    const victim = src[1];
    const good = (await store.readBytes(victim.file))!;
    await store.writeBytes(victim.file, flipped(good)); // same size, other bytes, no recorded SHA-256
    await store.writeBytes('snapshots/README.txt', 'notes of the operator');
    const before = await keys(store);
    const r = runCli(['rebuild-index', '--vault', loc, '--json'], { env: env() });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.previous, 'damaged');
    assert.match(rep.backup, /^s3:\/\/av-rebuild\/damaged-index\/vault\.json\.damaged-\d{4}-\d{2}-\d{2}T\d+Z$/);
    assert.deepEqual(
      rep.adopted.sort(),
      src
        .filter((s) => s.id !== victim.id)
        .map((s) => s.id)
        .sort(),
    );
    assert.deepEqual(
      rep.rejected.map((x: { file: string }) => x.file),
      [victim.file],
    );
    assert.deepEqual(rep.foreign, ['snapshots/README.txt']);
    const idx = await readStoreIndex(store);
    assert.deepEqual(
      idx!.snapshots.map((s) => s.id).sort(),
      src
        .filter((s) => s.id !== victim.id)
        .map((s) => s.id)
        .sort(),
    );
    // every object is still there, plus the rebuilt index and the damaged index's copy
    const after = await keys(store);
    for (const k of before) assert.ok(after.includes(k), `${k} is still there`);
    const copyKey = rep.backup.replace('s3://av-rebuild/damaged-index/', '');
    assert.equal((await store.readBytes(copyKey))!.toString(), '{"format": "agent-vault-index", "snapsh');
    assert.ok((await store.readBytes(victim.file))!.equals(flipped(good)), 'the damaged archive is left as it was');

    // the text report names it
    const t = runCli(['rebuild-index', '--vault', loc], { env: env() });
    assert.equal(t.code, 1);
    assert.match(t.stdout, new RegExp(`NOT LISTED ${victim.file}: fails verification \\(left in place\\)`));
    assert.match(t.stdout, /note: snapshots\/README\.txt was not written by Agent Vault; left alone/);
    await store.close();
  });

  it('a listed snapshot whose object is damaged stays listed and is reported DAMAGED; one whose object is gone leaves the index', async () => {
    const { loc, store } = await seeded('listed-damage');
    const [gone, bad] = [src[0], src[2]];
    await store.delete(gone.file);
    await store.writeBytes(bad.file, flipped((await store.readBytes(bad.file))!));
    const r = runCli(['rebuild-index', '--vault', loc], { env: env() });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`dropped ${gone.id}: its archive ${gone.file} is missing`));
    assert.match(r.stdout, new RegExp(`DAMAGED ${bad.id}: .*sha256.*damaged or replaced`));
    const idx = await readStoreIndex(store);
    assert.deepEqual(
      idx!.snapshots.map((s) => s.id),
      src.filter((s) => s.id !== gone.id).map((s) => s.id),
    );
    await store.close();
  });

  it('rebuild-index waits for or refuses a running backup (the bucket lock, exit 75); a location with nothing in it is not a vault (exit 2)', async () => {
    const { loc, store } = await seeded('locked');
    await store.writeBytes(
      '.lock',
      JSON.stringify({ host: 'elsewhere', pid: 4242, proc_start: '1', command: 'backup', token: 'x', started_at: new Date().toISOString(), heartbeat_at: new Date().toISOString() }),
    );
    const r = runCli(['rebuild-index', '--vault', loc], { env: env() });
    assert.equal(r.code, 75, r.stdout + r.stderr);
    assert.match(r.stderr, /locked by "backup" \(pid 4242 on elsewhere/);
    await store.delete('.lock');
    const empty = runCli(['rebuild-index', '--vault', moto.location('av-rebuild', 'nothing-here')], { env: env() });
    assert.equal(empty.code, 2, empty.stdout + empty.stderr);
    assert.match(empty.stderr, /is not a vault/);
    await store.close();
  });

  describe('a damaged snapshot object in a bucket', () => {
    let loc: string;
    let store: S3Store;
    let damaged: SnapshotRecord;
    before(async () => {
      ({ loc, store } = await seeded('prune-damaged'));
      // the newest snapshot: damaged in place (same size, other bytes, no recorded SHA-256)
      damaged = src[3];
      await store.writeBytes(damaged.file, flipped((await store.readBytes(damaged.file))!));
    });
    after(() => store.close());

    it('status names it (error level) and --snapshots flags it', () => {
      const s = runCli(['status', '--vault', loc, '--snapshots', '--check'], { env: env() });
      assert.equal(s.code, 1, s.stdout + s.stderr);
      assert.match(s.stdout, new RegExp(`warning: 1 listed snapshot\\(s\\) fail the quick check: ${damaged.id} \\(`));
      assert.match(s.stdout, new RegExp(`${damaged.id} .*DAMAGED`));
      const j = JSON.parse(runCli(['status', '--vault', loc, '--json'], { env: env() }).stdout);
      assert.deepEqual(
        j.damaged.map((d: { id: string }) => d.id),
        [damaged.id],
      );
      assert.equal(j.level, 'error');
    });

    it('verify names it (exit 1) and passes the others', () => {
      const v = runCli(['verify', '--vault', loc], { env: env() });
      assert.equal(v.code, 1, v.stdout + v.stderr);
      assert.match(v.stdout, new RegExp(`FAIL ${damaged.id}: .*\\[sha256\\]`));
      for (const s of src.filter((x) => x.id !== damaged.id)) assert.match(v.stdout, new RegExp(`ok   ${s.id}`));
      assert.match(v.stdout, /4 snapshot\(s\) verified: 1 with problems/);
    });

    it('prune keeps it, reports it, does not count it (the newest good one is kept instead), exit 1', async () => {
      const dry = runCli(['prune', '--vault', loc, '--keep-last', '1', '--dry-run'], { env: env() });
      assert.equal(dry.code, 1, dry.stdout + dry.stderr);
      assert.match(dry.stdout, new RegExp(`would delete ${src[0].id}`));
      assert.match(dry.stdout, new RegExp(`would delete ${src[1].id}`));
      assert.doesNotMatch(dry.stdout, new RegExp(`would delete ${src[2].id}`), 'the newest good snapshot is kept: the damaged one does not count');
      const r = runCli(['prune', '--vault', loc, '--keep-last', '1'], { env: env() });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`KEEP   ${damaged.id}  fails verification, not counted for retention: .*damaged or replaced`));
      assert.match(r.stdout, new RegExp(`delete ${src[0].id}`));
      assert.match(r.stdout, /kept 2, deleted 2 snapshot\(s\)/);
      const idx = await readStoreIndex(store);
      // src[2] is the newest good snapshot; the damaged src[3] is kept beside it, not instead of it
      assert.deepEqual(
        idx!.snapshots.map((s) => s.id),
        [src[2].id, src[3].id],
      );
      assert.equal(await store.head(src[0].file), null);
      assert.equal(await store.head(src[1].file), null);
      assert.ok(await store.head(src[2].file));
      assert.ok(await store.head(damaged.file), 'the damaged object is kept');
      const runs = (await store.readBytes('runs.jsonl'))!
        .toString()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.deepEqual(runs.at(-1).unverified, [damaged.id]);
    });
  });

  it('leaves no scratch files behind', () => {
    const left = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('agent-vault-rebuild-'));
    assert.deepEqual(
      left.filter((n) => fs.statSync(path.join(os.tmpdir(), n)).mtimeMs > Date.now() - 120000),
      [],
    );
  });
});
