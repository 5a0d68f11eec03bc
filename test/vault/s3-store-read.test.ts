/**
 * Store vaults in object storage read in place (docs/VAULT.md "Store vaults in object storage"):
 * `restore`, `diff`, `inspect`, `vault export` and `drill` of `s3://bucket/prefix#<snapshot>` (moto
 * on 127.0.0.1) stream the snapshot's packs by ranged reads, with no temporary archive (the
 * system temp folder of the CLI stays empty; the local cache of pack ranges is a file without a
 * name) and the second read served from that cache; a damaged pack object is reported naming the
 * snapshot, the entry and the pack, and nothing is written; a read killed with SIGKILL leaves no
 * temp file (its reader lock is stale and removed by the next prune); readers and prune keep out
 * of each other's way through the reader locks in the bucket (a drill racing a prune keeps its
 * snapshot readable).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Db } from '../../src/db/types';
import { diffPaths } from '../../src/diff';
import { createLettaSchema } from '../../src/letta/ddl';
import { restoreAgents } from '../../src/letta/restore';
import { runBackup } from '../../src/vault/backup';
import type { VaultConfig } from '../../src/vault/config';
import { acquireRemoteLock } from '../../src/vault/remote/lock';
import { S3Store, s3Timings } from '../../src/vault/remote/s3';
import type { StoreSnapshotArchiveReader } from '../../src/vault/store/reader';
import { listIdsOf, loadSnapshot, openRepo, packKey, readBlob } from '../../src/vault/store/repo';
import { openStoreVaultSnapshot } from '../../src/vault/store-read';
import { initStoreVault, listStoreVault, pruneStoreVault, remoteLockTimings, storeBackup } from '../../src/vault/store-vault';
import { runCli, startCliProcess, STACK_TRACE } from '../helpers/cli';
import { freshLettaDb } from '../helpers/letta-db';
import { sharedTestPostgres } from '../helpers/global-pg';
import { openPg } from '../../src/db/pg';
import { listBucket, startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { startS3Front, type FrontRequest } from '../helpers/s3-front';
import { addSyntheticPassages, seedFixtures } from './letta-data';
import { makeTmpRoot, rejectsWith } from './helpers';

const FIXTURES = ['lettabot-builder.v2.af', 'void.v2.af'];
const BUCKET = 'av-read';
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('store vaults on s3:// read in place (moto): restore, diff, inspect, export, drill; reader locks against prune', function () {
  this.timeout(240000);
  const tmp = makeTmpRoot('s3-store-read');
  const savedTmp = process.env.TMPDIR;
  let moto: MotoServer;
  let client: S3Client;
  let source: Db;
  let loc: string;
  let archive: string;
  let sysTmp: string;
  const ids: string[] = [];
  const open: Db[] = [];
  const env = (): NodeJS.ProcessEnv => ({ AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey, TMPDIR: sysTmp });
  const config = (v: string): VaultConfig => ({ vault: v, source: { kind: 'pglite', dataDir: '/not-used' }, probes: { perAgent: 2, topK: 3 } });
  const emptyTarget = async (): Promise<{ db: Db; url: string }> => {
    const { url } = await (await sharedTestPostgres()).createDatabase();
    const db = await openPg({ url });
    open.push(db);
    await createLettaSchema(db);
    return { db, url };
  };
  const count = async (db: Db, t: string): Promise<number> => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t}`)).rows[0].n;
  const keys = (prefix: string): Promise<Map<string, number>> => listBucket(client, BUCKET, prefix);
  /** Nothing in the system temp folder, no reader lock left in the bucket. */
  const clean = async (what: string): Promise<void> => {
    assert.deepEqual(fs.readdirSync(sysTmp), [], `${what}: nothing is left in the system temp folder`);
    assert.deepEqual([...(await keys('v/.readers/')).keys()], [], `${what}: the reader lock is released`);
  };

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    remoteLockTimings.settleMs = 50;
    remoteLockTimings.pollMs = 100;
    moto = await startMoto();
    await moto.createBucket(BUCKET);
    client = moto.client();
    loc = moto.location(BUCKET, 'v');
    source = await freshLettaDb('pg');
    const agents = await seedFixtures(source, FIXTURES);
    await addSyntheticPassages(source, agents[0], 800, 's3-store-read');
    archive = (await runBackup({ config: config(path.join(tmp.dir('folder'), 'v')), db: source })).path;
    await initStoreVault(loc, { packSize: 256 * 1024 });
    ids.push((await storeBackup({ config: config(loc), db: source })).id);
    await addSyntheticPassages(source, agents[1], 50, 's3-store-read-2');
    ids.push((await storeBackup({ config: config(loc), db: source })).id);
    sysTmp = tmp.dir('systmp');
    process.env.TMPDIR = sysTmp;
  });
  after(async () => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    delete remoteLockTimings.settleMs;
    delete remoteLockTimings.pollMs;
    for (const db of open) await db.close().catch(() => undefined);
    await source?.close();
    client?.destroy();
    await moto?.stop();
    tmp.cleanup();
  });

  it('library: a restore of s3://…#<snapshot> equals the restore of the archive; entries read twice are served the second time from the local cache', async () => {
    const a = await emptyTarget();
    const b = await emptyTarget();
    const ra = await restoreAgents(a.db, archive);
    let reader: StoreSnapshotArchiveReader | undefined;
    // every ranged read of the bucket, by object and range
    const fetched = new Map<string, number>();
    const readRange = S3Store.prototype.readRange;
    S3Store.prototype.readRange = function (key, start, length) {
      const k = `${key}@${start}+${length}`;
      fetched.set(k, (fetched.get(k) ?? 0) + 1);
      return readRange.call(this, key, start, length);
    };
    let rs;
    try {
      rs = await restoreAgents(b.db, {
        open: async () => {
          const s = await openStoreVaultSnapshot(loc, ids[0]);
          reader = s.reader as StoreSnapshotArchiveReader;
          return reader;
        },
      });
    } finally {
      S3Store.prototype.readRange = readRange;
    }
    assert.deepEqual(rs.rows, ra.rows);
    const stats = reader!.cacheStats()!;
    assert.ok(stats.bytes > 0 && stats.hits > 0, `the checks' read filled the cache and the writes read from it: ${JSON.stringify(stats)}`);
    // the small entries are read twice (checked before the transaction, then written), the passages
    // once inside the transaction: the bucket serves each range once
    const twice = [...fetched].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], `no range is fetched from the bucket twice (${JSON.stringify(stats)})`);
    assert.equal(stats.misses, fetched.size, 'every read the cache could not serve went to the bucket, once per range');
    assert.equal(
      stats.bytes,
      [...fetched.keys()].reduce((n, k) => n + Number(k.split('+').pop()), 0),
      'every range fetched is kept',
    );
    await clean('library restore');
  });

  it('ranged reads that stall (no answer; half a body, then silence) are given up after the idle time and sent again: the restore completes, it does not wait for ever', async function () {
    this.timeout(30000); // without the time limits of s3Timings the first stalled read waits for ever
    const front = await startS3Front(moto.port);
    const saved = { ...s3Timings };
    s3Timings.idleMs = 300;
    try {
      let n = 0;
      const nth =
        (...which: number[]) =>
        (r: FrontRequest) =>
          r.method === 'GET' && typeof r.headers.range === 'string' && which.includes(++n);
      const stalls = nth(2, 5, 9);
      front.stall((r) => stalls(r), 3, 'body');
      const a = await emptyTarget();
      const b = await emptyTarget();
      const ra = await restoreAgents(a.db, archive);
      const started = Date.now();
      const rs = await restoreAgents(b.db, { open: async () => (await openStoreVaultSnapshot(front.location(BUCKET, 'v'), ids[0])).reader });
      assert.deepEqual(rs.rows, ra.rows);
      assert.equal(front.stalled, 3, 'three ranged reads were left stalled');
      assert.ok(Date.now() - started < 20000, `each stalled read was given up after the idle time (${Date.now() - started} ms)`);
      // a request that gets no answer at all: the SDK gives it up and sends it again
      front.stall((r) => r.method === 'GET' && typeof r.headers.range === 'string', 1, 'head');
      const c = await emptyTarget();
      const rc = await restoreAgents(c.db, { open: async () => (await openStoreVaultSnapshot(front.location(BUCKET, 'v'), ids[0])).reader });
      assert.deepEqual(rc.rows, ra.rows);
      assert.equal(front.stalled, 4);
    } finally {
      Object.assign(s3Timings, saved);
      await front.close();
    }
    await clean('stalled reads');
  });

  it('CLI: restore, diff, inspect and vault export of s3://…#<snapshot> read the store in place (no temp file)', async () => {
    const t = await emptyTarget();
    const rs = runCli(['restore', `${loc}#${ids[0]}`, '--db', t.url, '--quiet'], { env: env() });
    assert.equal(rs.code, 0, rs.stdout + rs.stderr);
    for (const table of ['agents', 'messages', 'archival_passages']) assert.equal(await count(t.db, table), (await count(source, table)) - (table === 'archival_passages' ? 50 : 0), table);
    await clean('restore');

    const d = runCli(['diff', archive, `${loc}#${ids[0]}`, '--format', 'json', '--exit-code'], { env: env() });
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.equal(JSON.parse(d.stdout).identical, true);
    await clean('diff');

    const i = runCli(['inspect', `${loc}#latest`], { env: env() });
    assert.equal(i.code, 0, i.stderr);
    assert.match(i.stdout, /Agent Vault snapshot in a store vault/);
    await clean('inspect');

    const out = path.join(tmp.dir('export'), 'x.avsnap');
    const e = runCli(['vault', 'export', ids[0], '--vault', loc, '-o', out], { env: env() });
    assert.equal(e.code, 0, e.stdout + e.stderr);
    assert.equal((await diffPaths(archive, out)).identical, true);
    await clean('vault export');
    // drill: the race below (a drill passing while a prune waits for it)
  });

  it('a damaged pack object: restore, vault export and drill report the snapshot, the entry and the pack; nothing is written (exit 1, no stack)', async () => {
    // a pack holding a data blob of the first snapshot's vectors entry
    const store = new S3Store(loc);
    let key: string;
    try {
      const repo = await openRepo(store, { prefix: 'store/' });
      const snapId = (await listStoreVault(loc)).find((x) => x.vault_id === ids[0])!.id;
      const entry = (await loadSnapshot(repo, snapId)).entries.find((x) => x.name.endsWith('.vectors'))!;
      const blob = listIdsOf(await readBlob(repo, entry.lists[0], 'test'))[2];
      key = `v/${packKey(repo, repo.index.get(blob)!.pack)}`;
    } finally {
      await store.close();
    }
    const packId = path.basename(key);
    const orig = Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray());
    const bad = Buffer.from(orig);
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bad }));
    try {
      const t = await emptyTarget();
      const rs = runCli(['restore', `${loc}#${ids[0]}`, '--db', t.url, '--quiet'], { env: env() });
      assert.equal(rs.code, 1, rs.stdout + rs.stderr);
      assert.match(rs.stderr, new RegExp(`#${esc(ids[0])}: entry "[^"]+" cannot be read from pack ${packId}`));
      assert.match(rs.stderr, /nothing was restored/);
      assert.doesNotMatch(rs.stderr + rs.stdout, STACK_TRACE);
      assert.equal(await count(t.db, 'agents'), 0, 'nothing is restored');
      await clean('damaged restore');

      const outDir = tmp.dir('export-bad');
      const e = runCli(['vault', 'export', ids[0], '--vault', loc, '-o', path.join(outDir, 'x.avsnap')], { env: env() });
      assert.equal(e.code, 1, e.stdout + e.stderr);
      assert.match(e.stderr, new RegExp(`pack ${packId}`));
      assert.doesNotMatch(e.stderr, STACK_TRACE);
      assert.deepEqual(fs.readdirSync(outDir), [], 'no archive, no partial file');
      await clean('damaged export');

      const dr = runCli(['drill', ids[0], '--vault', loc, '--report-dir', tmp.dir('drills-bad'), '--json'], { env: env() });
      assert.equal(dr.code, 1, dr.stdout + dr.stderr);
      const rep = JSON.parse(dr.stdout);
      assert.equal(rep.ok, false);
      const integ = rep.checks.find((c: { name: string }) => c.name === 'integrity');
      assert.equal(integ.ok, false);
      assert.match(JSON.stringify(integ), new RegExp(`pack ${packId}`));
      assert.equal(rep.snapshot.id, ids[0]);
      await clean('damaged drill');
    } finally {
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: orig }));
    }
  });

  it('a restore killed (SIGKILL) while it reads leaves no temp file; its reader lock is stale and the next prune removes it', async function () {
    const t = await emptyTarget();
    let sawCache = false;
    let timer: NodeJS.Timeout | undefined;
    const r = await startCliProcess(['restore', `${loc}#${ids[0]}`, '--db', t.url, '--quiet'], {
      env: env(),
      onStart: (p) => {
        timer = setInterval(() => {
          let fds: string[];
          try {
            fds = fs.readdirSync(`/proc/${p.pid}/fd`);
          } catch {
            return;
          }
          for (const fd of fds) {
            let target: string;
            try {
              target = fs.readlinkSync(`/proc/${p.pid}/fd/${fd}`);
            } catch {
              continue;
            }
            // the cache file is open but has no name any more
            if (target.startsWith(path.join(sysTmp, 'agent-vault-cache-')) && target.endsWith('(deleted)')) {
              sawCache = true;
              clearInterval(timer);
              p.kill('SIGKILL');
              return;
            }
          }
        }, 5);
      },
    });
    clearInterval(timer);
    assert.ok(sawCache, `the restore read its packs through the unnamed cache file and was killed meanwhile (exit ${r.code}: ${r.stderr})`);
    assert.equal(r.signal, 'SIGKILL');
    assert.deepEqual(fs.readdirSync(sysTmp), [], 'nothing is left in the system temp folder');
    assert.equal(await count(t.db, 'agents'), 0, 'nothing is restored');
    const left = [...(await keys('v/.readers/')).keys()];
    assert.equal(left.length, 1, 'the killed reader left its lock');
    // its holder is gone (same host): stale; a prune goes on and removes it
    const p = await pruneStoreVault(loc, { policy: { keepLast: 10 } });
    assert.equal(p.removed.length, 0);
    await clean('after the prune');
  });

  it('readers and prune keep out of each other: a prune refuses (75) while a reader reads; a reader refuses while a prune holds the bucket', async () => {
    const s = await openStoreVaultSnapshot(loc, ids[0]);
    try {
      assert.equal([...(await keys('v/.readers/')).keys()].length, 1, 'the reader holds a lock object');
      const pr = runCli(['prune', '--vault', loc, '--keep-last', '1'], { env: env() });
      assert.equal(pr.code, 75, pr.stdout + pr.stderr);
      assert.match(pr.stderr, /is being read by "read .+" \(pid \d+ on .+\); "prune" does not delete chunks a reader may need, nothing was deleted/);
      assert.deepEqual(
        (await listStoreVault(loc)).map((x) => x.vault_id),
        ids,
        'nothing was forgotten',
      );
      const all = await (s.reader as StoreSnapshotArchiveReader).verifyAll();
      assert.ok(
        all.every((x) => x.ok),
        JSON.stringify(all.filter((x) => !x.ok)),
      );
    } finally {
      await s.reader.close();
    }
    const store = new S3Store(loc);
    try {
      const lock = await acquireRemoteLock(store, { command: 'prune', deletes: true, settleMs: 10 });
      try {
        const err = await rejectsWith(() => openStoreVaultSnapshot(loc, ids[0]), 'locked');
        assert.match(err.message, /locked by "prune"/);
        // a lock that deletes nothing (a backup) does not keep readers out
        await lock.release();
        const backupLock = await acquireRemoteLock(store, { command: 'backup', settleMs: 10 });
        try {
          await (await openStoreVaultSnapshot(loc, ids[0])).reader.close();
        } finally {
          await backupLock.release();
        }
      } finally {
        await lock.release();
      }
    } finally {
      await store.close();
    }
    await clean('lock checks');
  });

  it('a drill racing a prune that forgets its snapshot: the prune waits for the drill, which passes; then the snapshot is gone', async () => {
    const reports = tmp.dir('drills-race');
    let drillEnded = 0;
    const drill = startCliProcess(['drill', ids[0], '--vault', loc, '--report-dir', reports], { env: env() }).then((r) => {
      drillEnded = Date.now();
      return r;
    });
    // the prune starts once the drill holds its reader lock
    const deadline = Date.now() + 60000;
    while ((await keys('v/.readers/')).size === 0) {
      assert.ok(Date.now() < deadline, 'the drill took its reader lock');
      await new Promise((r) => setTimeout(r, 20));
    }
    let pruneEnded = 0;
    const prune = startCliProcess(['prune', '--vault', loc, '--keep-last', '1', '--wait', '120'], { env: env() }).then((r) => {
      pruneEnded = Date.now();
      return r;
    });
    const [d, p] = await Promise.all([drill, prune]);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.match(d.stdout, /^drill PASSED/);
    assert.equal(p.code, 0, p.stdout + p.stderr);
    assert.match(p.stdout, /deleted 1 snapshot\(s\)/);
    assert.ok(pruneEnded >= drillEnded, 'the prune finished after the drill');
    assert.deepEqual(
      (await listStoreVault(loc)).map((x) => x.vault_id),
      [ids[1]],
    );
    await clean('race');
  });
});
