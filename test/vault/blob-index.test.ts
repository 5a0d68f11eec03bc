/**
 * The store's compact in-memory index (src/vault/store/blob-index.ts): lookups, an id in two packs
 * (the first place wins, as loadIndex always did), many ids, ids sharing their hash prefix, the
 * per-pack records rebuilt as the index file lists them, a round trip through the store's index
 * files, and a memory guard measured from the structure's own arrays (not timed).
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createArchiveWriter, openArchive } from '../../src/format/archive';
import { LocalStore } from '../../src/vault/remote/store';
import { BlobIndex } from '../../src/vault/store/blob-index';
import { decodeMeta, encodeMeta, type IndexFile, type PackedBlob } from '../../src/vault/store/format';
import { checkRepo, exportSnapshotToArchive, ingestArchive, initStore, openRepo } from '../../src/vault/store/repo';
import { makeTmpRoot } from './helpers';

const ARCHIVES = path.join(__dirname, '..', 'format', 'frozen', 'v1');
const idOf = (s: string): string => createHash('sha256').update(s).digest('hex');
const rec = (id: string, i: number, type: 'd' | 'l' = 'd', comp: 'n' | 'd' = 'd'): PackedBlob => [id, type, i * 100, 90 + (i % 7), 4000 + i, comp];

describe('store: compact blob index', () => {
  it('finds each blob with its pack, type, offset, lengths and compression; absent and malformed ids are not found', () => {
    const ix = new BlobIndex();
    const a = idOf('a');
    const b = idOf('b');
    const packA = idOf('pack-a');
    const packB = idOf('pack-b');
    assert.equal(ix.addPack(packA, [rec(a, 0, 'd', 'd'), rec(b, 1, 'l', 'n')]), true);
    assert.equal(ix.addPack(packB, [[idOf('c'), 'd', 0, 5, 5, 'n']]), true);
    assert.deepEqual(ix.get(a), { pack: packA, type: 'data', offset: 0, length: 90, rawLength: 4000, compression: 'deflate' });
    assert.deepEqual(ix.get(b), { pack: packA, type: 'list', offset: 100, length: 91, rawLength: 4001, compression: 'none' });
    assert.deepEqual(ix.get(idOf('c')), { pack: packB, type: 'data', offset: 0, length: 5, rawLength: 5, compression: 'none' });
    assert.equal(ix.size, 3);
    assert.equal(ix.has(idOf('absent')), false);
    assert.equal(ix.get(idOf('absent')), undefined);
    for (const bad of ['', 'zz', a.toUpperCase(), a.slice(0, 63), `${a}0`, `${a.slice(0, 62)}zz`]) assert.equal(ix.has(bad), false, bad);
    // a pack added twice is ignored
    assert.equal(ix.addPack(packA, [rec(idOf('x'), 0)]), false);
    assert.equal(ix.has(idOf('x')), false);
    assert.throws(() => ix.addPack(idOf('pack-bad'), [['not-an-id', 'd', 0, 1, 1, 'n']]), /not a blob id/);
  });

  it('an id in two packs: the first place is found, both packs keep their records, the id is listed once', () => {
    const ix = new BlobIndex();
    const shared = idOf('shared');
    const p1 = idOf('p1');
    const p2 = idOf('p2');
    const r1: PackedBlob[] = [rec(idOf('one'), 0), rec(shared, 1)];
    const r2: PackedBlob[] = [rec(shared, 5, 'd', 'n'), rec(idOf('two'), 6)];
    ix.addPack(p1, r1);
    ix.addPack(p2, r2);
    assert.equal(ix.size, 3);
    assert.equal(ix.entries, 4);
    assert.equal(ix.get(shared)!.pack, p1);
    assert.equal(ix.get(shared)!.offset, 100);
    assert.deepEqual(ix.packBlobs(p1), r1);
    assert.deepEqual(ix.packBlobs(p2), r2);
    assert.deepEqual(ix.packBlobs(idOf('unknown')), []);
    const listed = [...ix].map(([id, l]) => `${id}@${l.pack}`);
    assert.deepEqual(listed, [`${idOf('one')}@${p1}`, `${shared}@${p1}`, `${idOf('two')}@${p2}`]);
    assert.deepEqual([...ix.keys()], [idOf('one'), shared, idOf('two')]);
  });

  it('ids sharing their first 4 bytes (the hash key) or all but the last byte stay apart', () => {
    const ix = new BlobIndex(16);
    const base = idOf('base');
    const ids: string[] = [];
    // same 4-byte prefix, different tails
    for (let i = 0; i < 200; i++) ids.push(base.slice(0, 8) + idOf(`tail-${i}`).slice(8));
    // same 31 bytes, different last byte
    for (let i = 0; i < 50; i++) ids.push(base.slice(0, 62) + i.toString(16).padStart(2, '0'));
    const unique = [...new Set(ids)];
    ix.addPack(
      idOf('p'),
      unique.map((id, i) => rec(id, i)),
    );
    assert.equal(ix.size, unique.length);
    unique.forEach((id, i) => assert.equal(ix.get(id)!.offset, i * 100, id));
    assert.equal(ix.has(base.slice(0, 62) + 'ff'), false);
    assert.equal(ix.has(base.slice(0, 8) + idOf('no such tail').slice(8)), false);
  });

  it('many ids (200k in 400 packs): every one found with its place; absent ones not; at most 112 bytes per id (memory guard)', () => {
    const ix = new BlobIndex();
    const n = 200_000;
    const perPack = 500;
    const packs: string[] = [];
    for (let p = 0; p < n / perPack; p++) {
      const recs: PackedBlob[] = [];
      for (let i = 0; i < perPack; i++) recs.push(rec(idOf(`blob-${p * perPack + i}`), i, i % 9 === 0 ? 'l' : 'd'));
      const pid = idOf(`pack-${p}`);
      packs.push(pid);
      ix.addPack(pid, recs);
    }
    assert.equal(ix.size, n);
    for (let k = 0; k < n; k += 7) {
      const l = ix.get(idOf(`blob-${k}`))!;
      assert.equal(l.pack, packs[Math.floor(k / perPack)]);
      assert.equal(l.offset, (k % perPack) * 100);
      assert.equal(l.type, (k % perPack) % 9 === 0 ? 'list' : 'data');
    }
    for (let k = 0; k < 2000; k++) assert.equal(ix.has(idOf(`absent-${k}`)), false);
    // 32 (id) + 4 (pack) + 3 × 8 (offset, lengths) + 1 (flags) + the hash table (2-4 slots × 4),
    // with the arrays' growth by doubling: 2^18 entries for 200k ids → ≤ 112 bytes per id; a Map of
    // hex strings to objects takes ~300 and more
    const perId = ix.byteSize / n;
    assert.ok(perId <= 112, `${perId.toFixed(1)} bytes per id`);
    assert.ok(perId >= 61, `${perId.toFixed(1)} bytes per id (the arrays are measured)`);
  });

  it('round trip through the index files: a store reopened has the same index, and the index file text is the JSON of its records', async () => {
    const tmp = makeTmpRoot('blob-index');
    try {
      const dir = tmp.dir('store');
      const store = new LocalStore(dir);
      const repo = await initStore(store, { packSize: 64 * 1024 });
      await ingestArchive(repo, path.join(ARCHIVES, 'plain.avsnap'));
      assert.ok(repo.index.size > 0 && repo.packs.size >= 1, `${repo.index.size} blobs in ${repo.packs.size} packs`);
      const again = await openRepo(store);
      assert.equal(again.index.size, repo.index.size);
      assert.deepEqual([...again.packs.keys()].sort(), [...repo.packs.keys()].sort());
      for (const [id, l] of repo.index) assert.deepEqual(again.index.get(id), l, id);
      for (const [pid, p] of repo.packs) {
        assert.equal(again.packs.get(pid)!.size, p.size);
        assert.deepEqual(again.packs.get(pid)!.blobs, p.blobs);
      }
      // the index file: the records of every pack, and the same bytes as the whole-object encoding
      const files = fs.readdirSync(path.join(dir, 'store', 'index'));
      assert.equal(files.length, 1);
      const raw = fs.readFileSync(path.join(dir, 'store', 'index', files[0]));
      const f = decodeMeta<IndexFile>(raw, 'index', undefined, files[0]);
      assert.deepEqual(Object.keys(f), ['version', 'supersedes', 'packs']);
      for (const p of f.packs) assert.deepEqual(p.blobs, repo.packs.get(p.id)!.blobs);
      assert.ok(encodeMeta(f, 'index', undefined).equals(raw));
      const rep = await checkRepo(again, { readData: true });
      assert.equal(rep.ok, true, JSON.stringify(rep.problems));
      // the snapshot still exports from the reopened store
      const out = path.join(tmp.root, 'out.avsnap');
      const snaps = fs.readdirSync(path.join(dir, 'store', 'snapshots'));
      await exportSnapshotToArchive(again, snaps[0], out);
      assert.ok(fs.statSync(out).size > 0);
    } finally {
      tmp.cleanup();
    }
  });

  it('a run writing many small packs stores each repeated chunk once (queued, in the pack being filled, or in a pack written before)', async () => {
    const tmp = makeTmpRoot('blob-index-run');
    try {
      // unstructured bytes (FastCDC, ~64 KiB chunks): segments repeated near (same pack, queue) and far (earlier packs)
      const seg = (k: number): Buffer => Buffer.concat(Array.from({ length: 6000 }, (_, i) => createHash('sha256').update(`s${k}-${i}`).digest()));
      const a = seg(1);
      const b = seg(2);
      const c = seg(3);
      const src = path.join(tmp.dir('src'), 'rep.avsnap');
      const w = await createArchiveWriter(src);
      await w.addBuffer('qdrant/rep.snapshot', Buffer.concat([a, a, b, a, c, b, a, c, c]));
      await w.finish({ agents: [] });
      const store = new LocalStore(tmp.dir('store'));
      const repo = await initStore(store, { packSize: 4096 });
      const r = await ingestArchive(repo, src);
      assert.ok(repo.packs.size > 10, `${repo.packs.size} packs`);
      assert.equal(repo.index.entries, repo.index.size, 'no chunk stored twice');
      assert.equal(r.newBlobs, repo.index.size);
      assert.ok(r.blobs > r.newBlobs, `${r.blobs} chunks, ${r.newBlobs} new`);
      const again = await openRepo(store);
      assert.equal(again.index.size, repo.index.size);
      assert.equal((await checkRepo(again, { readData: true })).ok, true);
      const out = path.join(tmp.root, 'out.avsnap');
      await exportSnapshotToArchive(again, r.snapshotId, out);
      const [x, y] = [await openArchive(src), await openArchive(out)];
      try {
        assert.deepEqual(
          y.manifest.entries.map((e) => [e.name, e.sha256]),
          x.manifest.entries.map((e) => [e.name, e.sha256]),
        );
      } finally {
        await x.close();
        await y.close();
      }
    } finally {
      tmp.cleanup();
    }
  });

  it('an index file with a malformed blob record is reported as damaged, not an internal error', async () => {
    const tmp = makeTmpRoot('blob-index-bad');
    try {
      const dir = tmp.dir('store');
      const store = new LocalStore(dir);
      await initStore(store);
      const f: IndexFile = { version: 1, supersedes: [], packs: [{ id: idOf('p'), size: 10, blobs: [['XYZ' as string, 'd', 0, 1, 1, 'n']] }] };
      const data = encodeMeta(f, 'index', undefined);
      const name = createHash('sha256').update(data).digest('hex');
      fs.mkdirSync(path.join(dir, 'store', 'index'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'store', 'index', name), data);
      const repo = await openRepo(store);
      assert.equal(repo.damagedIndexes.length, 1);
      assert.match(repo.damagedIndexes[0].message, /is not a version 1 index file/);
      assert.equal(repo.index.size, 0);
    } finally {
      tmp.cleanup();
    }
  });
});
