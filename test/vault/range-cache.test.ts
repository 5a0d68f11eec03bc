/**
 * The local cache of pack ranges of a store read from object storage (src/vault/store/range-cache.ts):
 * every range handed to it is kept while it has room, however fast they come (a range that found
 * the disk behind was dropped before, and fetched from the bucket again on the second read); its
 * caller waits for the disk instead; nothing waits for ever when the cache is full or has no file.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RangeCache } from '../../src/vault/store/range-cache';
import { makeTmpRoot } from './helpers';

const MiB = 1024 * 1024;

describe('range cache of a store read from object storage', () => {
  const tmp = makeTmpRoot('range-cache');
  after(() => tmp.cleanup());

  it('keeps every range handed to it faster than the disk writes them (past the 16 MiB write queue the caller waits)', async () => {
    const dir = tmp.dir('fast');
    const cache = new RangeCache(256 * MiB, dir);
    const ranges = Array.from({ length: 40 }, (_, i) => ({ object: `packs/p${i % 3}`, start: i * MiB, data: randomBytes(MiB) }));
    // all handed over at once, as ranges read side by side arrive: 40 MiB, more than the queue
    const puts = ranges.map((r) => cache.put(r.object, r.start, r.data));
    const done = puts.map(() => false);
    puts.forEach((p, i) => void p.then(() => (done[i] = true)));
    for (let k = 0; k < 3; k++) await Promise.resolve(); // microtasks only: no write has reached the disk yet
    assert.ok(done[0] && done[15], 'the first 16 MiB are queued at once');
    assert.ok(!done[20] && !done[39], 'the puts past the write queue make their caller wait for the disk');
    await Promise.all(puts);
    for (const r of ranges) {
      const got = await cache.get(r.object, r.start, r.data.length);
      assert.ok(got && got.equals(r.data), `range ${r.object}@${r.start} is served from the cache`);
    }
    assert.equal(cache.hits, ranges.length);
    assert.equal(cache.misses, 0);
    assert.equal(cache.bytes, 40 * MiB);
    assert.deepEqual(fs.readdirSync(dir), [], 'the cache file has no name');
    await cache.close();
  });

  it('a range read while its write is under way is found; a full cache keeps what fits and nothing waits', async () => {
    const cache = new RangeCache(3 * MiB, tmp.dir('full'));
    const data = Array.from({ length: 5 }, () => randomBytes(MiB));
    const puts = data.map((d, i) => cache.put('packs/a', i * MiB, d));
    const first = await cache.get('packs/a', 0, MiB); // before the puts are awaited
    assert.ok(first?.equals(data[0]));
    await Promise.all(puts);
    for (let i = 0; i < 5; i++) {
      const got = await cache.get('packs/a', i * MiB, MiB);
      if (i < 3) assert.ok(got?.equals(data[i]), `range ${i} fits`);
      else assert.equal(got, null, `range ${i} does not fit`);
    }
    await cache.close();
  });

  it('no cache file can be made (the folder is gone): every range comes from the bucket, no put or get waits for ever', async () => {
    const cache = new RangeCache(64 * MiB, path.join(tmp.dir('gone'), 'missing', 'folder'));
    const data = Array.from({ length: 24 }, () => randomBytes(MiB));
    await Promise.all(data.map((d, i) => cache.put('packs/b', i * MiB, d)));
    for (let i = 0; i < data.length; i++) assert.equal(await cache.get('packs/b', i * MiB, MiB), null);
    await cache.close();
  });
});
