/**
 * Browsing a vault in object storage (what the extension's Snapshots view uses,
 * src/vault/remote/catalog.ts) against moto on 127.0.0.1: snapshots listed from the bucket's
 * index, downloaded into a bounded cache only when opened, checked against the index's SHA-256.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { openArchive } from '../../src/format/archive';
import { packAgentFile } from '../../src/format/pack';
import { addSnapshotToVault } from '../../src/vault/catalog';
import { RemoteSnapshotCache, vaultStatusOf } from '../../src/vault/remote/catalog';
import { copyVault, readStoreIndex, writeStoreIndex } from '../../src/vault/remote/copy';
import { S3Store } from '../../src/vault/remote/s3';
import { LocalStore } from '../../src/vault/remote/store';
import { readIndex } from '../../src/vault/vault';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { fixturePath } from './letta-data';
import { makeTmpRoot } from './helpers';

describe('vault: browsing an s3:// vault through a bounded local cache (moto)', function () {
  this.timeout(120000);
  const tmp = makeTmpRoot('s3-catalog');
  let moto: MotoServer;
  let loc: string;
  let local: string;

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    moto = await startMoto();
    await moto.createBucket('av-browse');
    local = tmp.dir('local');
    for (const f of ['loop.v2.af', 'deep-research-agent.v2.af', 'loop.v2.af']) await addSnapshotToVault(local, (dest) => packAgentFile(fixturePath(f), dest), { command: 'test' });
    loc = moto.location('av-browse', 'team');
    assert.equal((await copyVault(new LocalStore(local), new S3Store(loc), { lock: { settleMs: 20 } })).copied, 3);
  });
  after(async () => {
    await moto?.stop();
    tmp.cleanup();
  });

  it('lists the snapshots from the index without downloading any; a snapshot is downloaded once, when opened, and reads with every checksum verified', async () => {
    const cache = new RemoteSnapshotCache(tmp.dir('cache1'));
    const snaps = await cache.list(loc);
    const idx = (await readStoreIndex(new S3Store(loc)))!;
    assert.deepEqual(snaps.map((s) => s.id).sort(), idx.snapshots.map((s) => s.id).sort());
    assert.ok(snaps.every((s) => s.listed && s.path.startsWith(cache.dir)));
    assert.equal(cache.downloads, 0);
    assert.equal(await cache.isCached(snaps[0].path), false);
    const [a, b] = await Promise.all([cache.ensure(snaps[0].path), cache.ensure(snaps[0].path)]);
    assert.equal(a, b);
    assert.equal(cache.downloads, 1, 'two opens at once share one download');
    await cache.ensure(snaps[0].path);
    assert.equal(cache.downloads, 1, 'a cached snapshot is not downloaded again');
    const r = await openArchive(a, { verifyEntries: true });
    assert.equal(r.manifest.agents[0].name, snaps[0].agents[0].name);
    await r.close();
    assert.equal(await cache.ensure('/not/a/cache/path.avsnap'), '/not/a/cache/path.avsnap', 'other paths pass through');
  });

  it('keeps the cache within its bound: the least recently opened go first, never the one just opened', async () => {
    const sizes = (await readIndex(local)).snapshots.map((s) => s.bytes);
    const bound = Math.max(...sizes) + 10; // room for one archive only
    const cache = new RemoteSnapshotCache(tmp.dir('cache2'), { maxBytes: () => bound });
    const snaps = await cache.list(loc);
    for (const s of snaps) await cache.ensure(s.path);
    const left = snaps.filter((s) => fs.existsSync(s.path));
    assert.deepEqual(
      left.map((s) => s.id),
      [snaps[snaps.length - 1].id],
    );
    // opened again: downloaded again, and the bound still holds
    await cache.ensure(snaps[0].path);
    assert.equal(cache.downloads, snaps.length + 1);
    assert.deepEqual(
      snaps.filter((s) => fs.existsSync(s.path)).map((s) => s.id),
      [snaps[0].id],
    );
    // a bound smaller than one archive still lets the one being opened in
    const tiny = new RemoteSnapshotCache(tmp.dir('cache3'), { maxBytes: () => 0 });
    const t = await tiny.list(loc);
    assert.ok(fs.existsSync(await tiny.ensure(t[1].path)));
  });

  it('refuses an object that does not match the index (nothing is left in the cache), and gives the status of the remote vault', async () => {
    const store = new S3Store(moto.location('av-browse', 'bad'));
    await copyVault(new LocalStore(local), store, { lock: { settleMs: 20 } });
    const idx = (await readStoreIndex(store))!;
    idx.snapshots[0].sha256 = '0'.repeat(64); // the index says something else than the object
    await writeStoreIndex(store, idx);
    const cache = new RemoteSnapshotCache(tmp.dir('cache4'));
    const snaps = await cache.list(store.loc.display + `?endpoint=${encodeURIComponent(moto.endpoint)}&path-style=true`);
    const bad = snaps.find((s) => s.id === idx.snapshots[0].id)!;
    await assert.rejects(cache.ensure(bad.path), /has sha256 [0-9a-f]{64} but the index records 0{64}; the download was removed/);
    assert.equal(fs.existsSync(bad.path), false);
    const st = await vaultStatusOf(loc, {}, cache);
    assert.equal(st.snapshots, 3);
    assert.match(st.vault, /^s3:\/\/av-browse\/team\//);
    await store.close();
  });
});
