/**
 * `vault copy` between a local vault and S3 (moto on 127.0.0.1), both ways and S3 → S3: copies
 * what the target lacks, skips what it has, adopts an archive an interrupted copy left, reports
 * conflicts without overwriting, verifies what it copies, and keeps two concurrent copies into one
 * bucket apart with the conditional-write lock.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openArchive } from '../../src/format/archive';
import { packAgentFile } from '../../src/format/pack';
import { addSnapshotToVault } from '../../src/vault/catalog';
import { copyVault, readStoreIndex } from '../../src/vault/remote/copy';
import { acquireRemoteLock, remoteLockHolder } from '../../src/vault/remote/lock';
import { S3Store } from '../../src/vault/remote/s3';
import { LocalStore } from '../../src/vault/remote/store';
import { readIndex, readRunLog } from '../../src/vault/vault';
import { runCli, STACK_TRACE } from '../helpers/cli';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { fixturePath } from './letta-data';
import { makeTmpRoot } from './helpers';

const FAST_LOCK = { settleMs: 50, heartbeatMs: 200 };

describe('vault copy: local ↔ S3 ↔ S3', function () {
  this.timeout(180000);
  const tmp = makeTmpRoot('s3-copy');
  let moto: MotoServer;
  let local: string;

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    moto = await startMoto();
    for (const b of ['av-offsite', 'av-second', 'av-race']) await moto.createBucket(b);
    local = tmp.dir('local-vault');
    for (const f of ['memgpt-agent.v2-double-encoded.af', 'outreach-workflow-agent.v1.af', 'customer-service.v2-early.af']) {
      await addSnapshotToVault(local, (dest) => packAgentFile(fixturePath(f), dest), { command: 'test' });
    }
  });
  after(async () => {
    await moto?.stop();
    tmp.cleanup();
  });

  it('local → S3 copies every snapshot, verified, index written last; a second run copies nothing', async () => {
    const to = new S3Store(moto.location('av-offsite', 'agents'));
    const r = await copyVault(new LocalStore(local), to, { lock: FAST_LOCK });
    assert.equal(r.copied, 3);
    assert.equal(r.ok, true);
    const idx = await readStoreIndex(to);
    const src = await readIndex(local);
    assert.deepEqual(
      idx!.snapshots.map((s) => [s.id, s.sha256]),
      src.snapshots.map((s) => [s.id, s.sha256]),
    );
    for (const s of src.snapshots) assert.equal((await to.head(s.file))!.sha256Hex, s.sha256);
    const again = await copyVault(new LocalStore(local), to, { lock: FAST_LOCK });
    assert.deepEqual([again.copied, again.skipped, again.ok], [0, 3, true]);
    assert.equal(await to.head('.lock'), null, 'the lock is released');
    await to.close();
  });

  it('S3 → S3 and S3 → local: the archives arrive byte-equal and open with every checksum verified', async () => {
    const a = new S3Store(moto.location('av-offsite', 'agents'));
    const b = new S3Store(moto.location('av-second', 'mirror'));
    assert.equal((await copyVault(a, b, { lock: FAST_LOCK })).copied, 3);
    const back = tmp.dir('restored-vault');
    const r = await copyVault(b, new LocalStore(back), {});
    assert.equal(r.copied, 3);
    const idx = await readIndex(back);
    const src = await readIndex(local);
    for (const s of idx.snapshots) {
      const want = src.snapshots.find((x) => x.id === s.id)!;
      assert.ok(fs.readFileSync(path.join(back, s.file)).equals(fs.readFileSync(path.join(local, want.file))), s.id);
      const reader = await openArchive(path.join(back, s.file), { verifyEntries: true });
      await reader.close();
    }
    assert.equal((await readRunLog(back)).at(-1)!.command, 'copy');
    await a.close();
    await b.close();
  });

  it('adopts an archive an interrupted copy left unlisted; reports a different one as a conflict and never overwrites it', async () => {
    const to = new S3Store(moto.location('av-second', 'partial'));
    const src = await readIndex(local);
    // an interrupted earlier copy: the first archive arrived, the index was never written
    await to.uploadFile(src.snapshots[0].file, path.join(local, src.snapshots[0].file), { sha256Hex: src.snapshots[0].sha256 });
    // and something else sits where the second one would go
    await to.writeBytes(src.snapshots[1].file, 'not the same archive');
    const r = await copyVault(new LocalStore(local), to, { lock: FAST_LOCK });
    assert.deepEqual([r.adopted, r.copied, r.conflicts, r.ok], [1, 1, 1, false]);
    assert.equal((await to.readBytes(src.snapshots[1].file))!.toString(), 'not the same archive');
    const idx = await readStoreIndex(to);
    assert.deepEqual(idx!.snapshots.map((s) => s.id).sort(), [src.snapshots[0].id, src.snapshots[2].id].sort());
    await to.close();
  });

  it('refuses to copy an archive whose bytes do not match the source index, and lists nothing of it', async () => {
    const bad = tmp.dir('bad-vault');
    fs.cpSync(local, bad, { recursive: true });
    const idx = await readIndex(bad);
    const f = path.join(bad, idx.snapshots[2].file);
    const buf = fs.readFileSync(f);
    buf[100] ^= 0xff;
    fs.writeFileSync(f, buf);
    const to = new LocalStore(tmp.dir('bad-target'));
    await assert.rejects(copyVault(new LocalStore(bad), to, {}), /has sha256 .* but the source index records/);
    const got = await readStoreIndex(to);
    assert.equal(got, null, 'nothing was listed: the index is written last');
  });

  it('two copies into one bucket at once: the conditional-write lock lets one run, the other is refused naming the holder', async () => {
    const store = new S3Store(moto.location('av-race', 'v'));
    const held = await acquireRemoteLock(store, { command: 'backup', ...FAST_LOCK });
    try {
      await assert.rejects(copyVault(new LocalStore(local), new S3Store(moto.location('av-race', 'v')), { lock: FAST_LOCK }), /locked by "backup" \(pid \d+/);
      assert.equal((await remoteLockHolder(store))!.command, 'backup');
    } finally {
      await held.release();
    }
    const [x, y] = await Promise.allSettled([
      acquireRemoteLock(new S3Store(moto.location('av-race', 'v')), { command: 'one', ...FAST_LOCK }),
      acquireRemoteLock(new S3Store(moto.location('av-race', 'v')), { command: 'two', ...FAST_LOCK }),
    ]);
    assert.equal([x, y].filter((p) => p.status === 'fulfilled').length, 1, 'exactly one of two racing runs holds the lock');
    for (const p of [x, y]) if (p.status === 'fulfilled') await p.value.release();
    await store.close();
  });

  it('breaks a stale lock: holder process gone on this host, or no heartbeat for the stale time', async () => {
    const store = new S3Store(moto.location('av-race', 'stale'));
    const dead = { host: os.hostname(), pid: 2 ** 22 - 3, proc_start: '1', command: 'backup', token: 'deadbeef', started_at: new Date().toISOString(), heartbeat_at: new Date().toISOString() };
    await store.writeBytes('.lock', JSON.stringify(dead));
    const l1 = await acquireRemoteLock(store, { command: 'copy', ...FAST_LOCK });
    await l1.release();
    const foreign = { ...dead, host: 'elsewhere', heartbeat_at: new Date(Date.now() - 20 * 60_000).toISOString() };
    await store.writeBytes('.lock', JSON.stringify(foreign));
    const l2 = await acquireRemoteLock(store, { command: 'copy', ...FAST_LOCK });
    await l2.release();
    const live = { ...foreign, heartbeat_at: new Date().toISOString() };
    await store.writeBytes('.lock', JSON.stringify(live));
    await assert.rejects(acquireRemoteLock(store, { command: 'copy', ...FAST_LOCK }), /locked by "backup" \(pid \d+ on elsewhere/);
    await store.delete('.lock');
    await store.close();
  });

  it('the holder keeps its lock alive with heartbeats', async () => {
    const store = new S3Store(moto.location('av-race', 'beat'));
    const l = await acquireRemoteLock(store, { command: 'backup', settleMs: 10, heartbeatMs: 100 });
    const first = l.info.heartbeat_at;
    await new Promise((r) => setTimeout(r, 450));
    const now = JSON.parse((await store.readBytes('.lock'))!.toString());
    assert.ok(now.heartbeat_at > first, `${now.heartbeat_at} > ${first}`);
    await l.release();
    assert.equal(await store.head('.lock'), null);
    await store.close();
  });
  describe('agent-vault vault copy (the built CLI)', () => {
    const env = (): NodeJS.ProcessEnv => ({ AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey });

    it('copies local → S3 (exit 0), then reports everything already there; --dry-run changes nothing', async () => {
      await moto.createBucket('av-cli');
      const loc = moto.location('av-cli', 'nightly');
      const dry = runCli(['vault', 'copy', local, loc, '--dry-run'], { env: env() });
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would-copy/);
      assert.equal(await readStoreIndex(new S3Store(loc)), null, 'a dry run writes nothing');
      const r = runCli(['vault', 'copy', local, loc], { env: env() });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /3 copied, 0 adopted, 0 already there, 0 conflict\(s\)/);
      const again = runCli(['vault', 'copy', local, loc, '--json'], { env: env() });
      assert.equal(again.code, 0, again.stderr);
      assert.equal(JSON.parse(again.stdout).skipped, 3);
    });

    it('a missing bucket exits 2 and names it; wrong credentials exit 3, name the bucket, never print the secret', async () => {
      const nb = runCli(['vault', 'copy', local, moto.location('av-missing-bucket', 'x')], { env: env() });
      assert.equal(nb.code, 2, nb.stderr);
      assert.match(nb.stderr, /"av-missing-bucket" does not exist/);
      const authMoto = await startMoto({ auth: true });
      try {
        const wrong = runCli(['vault', 'copy', local, authMoto.location('av-auth-cli', 'x')], {
          env: { AWS_ACCESS_KEY_ID: 'AKIAWRONGWRONGWRONG2', AWS_SECRET_ACCESS_KEY: 'do-not-print-this-secret-91f2' },
        });
        assert.equal(wrong.code, 3, wrong.stderr);
        assert.match(wrong.stderr, /bucket "av-auth-cli" refused the credentials/);
        assert.doesNotMatch(wrong.stdout + wrong.stderr, /do-not-print-this-secret/);
        assert.doesNotMatch(wrong.stderr, STACK_TRACE);
      } finally {
        await authMoto.stop();
      }
    });

    it('a bad location is a usage error (exit 2), not an internal error', () => {
      for (const bad of ['s3://KEY:secret@bucket/x', 's3://ab']) {
        const r = runCli(['vault', 'copy', local, bad], { env: env() });
        assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, STACK_TRACE);
        assert.doesNotMatch(r.stderr, /internal error/);
      }
    });
  });
});
