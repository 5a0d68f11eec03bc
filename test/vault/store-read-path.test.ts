/**
 * The read path of a local store's snapshot read in place (src/vault/store/reader.ts): its pack
 * files are kept open while an entry is read (LocalRangeReader in src/vault/remote/store.ts: at
 * most a few, all closed at the entry's end, when its reader stops early and when a chunk is
 * damaged); runs of adjacent chunks are read with one range each and handed out exactly; ranges
 * are read into one reused buffer (src/vault/store/range-ring.ts) whose spans never overlap while
 * in use; a damaged chunk inside a run read as one range still fails the read, naming the entry
 * and the pack.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openArchive } from '../../src/format/archive';
import { exportAgents } from '../../src/letta/export';
import { generateSyntheticDb } from '../../src/letta/synth';
import { LocalStore, type LocalRangeReader } from '../../src/vault/remote/store';
import { RangeRing, type RingSpan } from '../../src/vault/store/range-ring';
import type { DecodeWorker } from '../../src/vault/store/decode-worker';
import { openStoreSnapshotReader, type StoreSnapshotArchiveReader } from '../../src/vault/store/reader';
import { ingestArchive, initStore, listIdsOf, loadSnapshot, readBlob, type BlobLoc, type Repo } from '../../src/vault/store/repo';
import { freshLettaDb } from '../helpers/letta-db';
import { flipByte, makeTmpRoot, rejectsWith } from './helpers';

/** Open file descriptors of this process on files under `dir` (Linux: /proc/self/fd). */
function openFdsUnder(dir: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir + path.sep)) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

/**
 * Captures the range readers a store's snapshot reader makes, and counts their reads. With
 * `eagerIn` (the store's folder), each read is done at once, synchronously, when it is asked for
 * (not later on the thread pool): a range read into bytes of a chunk the reader has not handed
 * out yet would change that chunk for sure, instead of only when the thread pool is quick.
 */
function spyRangeReaders(eagerIn?: string): { made: LocalRangeReader[]; reads: () => number; restore: () => void } {
  const orig = LocalStore.prototype.rangeReader;
  const made: LocalRangeReader[] = [];
  let reads = 0;
  LocalStore.prototype.rangeReader = function (this: LocalStore, maxOpen?: number): LocalRangeReader {
    const r = orig.call(this, maxOpen);
    const read = r.read.bind(r);
    r.read = (...args: Parameters<LocalRangeReader['read']>) => {
      reads++;
      if (!eagerIn) return read(...args);
      const [key, start, length, into] = args;
      const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
      const fd = fs.openSync(path.join(eagerIn, ...key.split('/')), 'r');
      try {
        return Promise.resolve(buf.subarray(0, fs.readSync(fd, buf, 0, length, start)));
      } finally {
        fs.closeSync(fd);
      }
    };
    made.push(r);
    return r;
  };
  return { made, reads: () => reads, restore: () => (LocalStore.prototype.rangeReader = orig) };
}

describe('store snapshot read path: open pack files, runs of adjacent chunks, one reused buffer', function () {
  this.timeout(120000);
  const tmp = makeTmpRoot('store-read-path');
  let archive = '';
  let storeDir = '';
  let repo: Repo;
  let snapId = '';

  before(async () => {
    const db = await freshLettaDb('pglite');
    try {
      await generateSyntheticDb(db, { agents: 1, messagesPerAgent: 600, passagesPerAgent: 900, dim: 1536, seed: 7 });
      archive = path.join(tmp.dir('archive'), 'a.avsnap');
      await exportAgents(db, { select: { all: true }, out: archive, createdAt: '2026-01-01T00:00:00.000Z' });
    } finally {
      await db.close();
    }
    storeDir = path.join(tmp.dir('store'), 's');
    // small packs: an entry spans many of them (more than a reader keeps open)
    repo = await initStore(new LocalStore(storeDir), { packSize: 64 * 1024 });
    snapId = (await ingestArchive(repo, archive)).snapshotId;
  });
  after(() => tmp.cleanup());

  /** The data blobs of an entry, in order, with where they are. */
  const blobsOf = async (name: string): Promise<Array<{ id: string; loc: BlobLoc }>> => {
    const e = (await loadSnapshot(repo, snapId)).entries.find((x) => x.name === name)!;
    const out: Array<{ id: string; loc: BlobLoc }> = [];
    for (const l of e.lists) for (const id of listIdsOf(await readBlob(repo, l, 'test'))) out.push({ id, loc: repo.index.get(id)! });
    return out;
  };
  const adjacent = (a: BlobLoc, b: BlobLoc): boolean => a.pack === b.pack && a.offset + a.length === b.offset;

  it('a range reader keeps at most its bound of files open, reuses them, and closes every one (a missing file: kind usage)', async () => {
    const dir = tmp.dir('files');
    const store = new LocalStore(dir);
    const data = new Map<string, Buffer>();
    for (let i = 0; i < 6; i++) {
      const key = `data/p${i}`;
      data.set(key, randomBytes(4096));
      await store.writeBytes(key, data.get(key)!);
    }
    const rr = store.rangeReader(3);
    try {
      const into = Buffer.alloc(200);
      for (const i of [0, 1, 2, 0, 1, 2, 3, 4, 5, 5, 4]) {
        const key = `data/p${i}`;
        const got = await rr.read(key, 100 * i, 100, i % 2 ? into : undefined);
        assert.ok(got.equals(data.get(key)!.subarray(100 * i, 100 * i + 100)), key);
        if (i % 2) assert.equal(got.buffer, into.buffer, 'read into the buffer given');
        assert.ok(rr.openFiles <= 3, `${rr.openFiles} files open`);
        assert.equal(openFdsUnder(dir), rr.openFiles);
      }
      assert.equal(rr.opened, 6, 'p0–p2 read again while open: opened once each');
      // reads side by side of more files than the bound: the bound is kept once they are done
      await Promise.all([0, 1, 2, 3, 4, 5].map((i) => rr.read(`data/p${i}`, 0, 10)));
      assert.ok(rr.openFiles <= 3);
      // fewer bytes at the end of a file
      assert.equal((await rr.read('data/p0', 4090, 100)).length, 6);
      const missing = await rejectsWith(rr.read('data/none', 0, 10), 'io');
      assert.equal(missing.kind, 'usage');
    } finally {
      await rr.close();
    }
    assert.equal(rr.openFiles, 0);
    assert.equal(openFdsUnder(dir), 0, 'every file is closed');
    await rejectsWith(rr.read('data/p0', 0, 10), 'closed');
  });

  it('the ring hands out spans that never overlap while in use, wraps around, and says when it has no room', () => {
    const ring = new RangeRing(1000);
    const live: RingSpan[] = [];
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let wrapped = 0;
    let refused = 0;
    for (let step = 0; step < 5000; step++) {
      if (live.length && rnd(3) === 0) {
        // free a random live span (the reader frees out of order when a later range was inflated)
        const [s] = live.splice(rnd(live.length), 1);
        ring.free(s);
        continue;
      }
      const len = 1 + rnd(400);
      const s = ring.alloc(len);
      if (!s) {
        refused++;
        continue;
      }
      assert.equal(s.buf.length, len);
      assert.equal(s.end - s.start, len);
      if (s.start === 0 && live.length) wrapped++;
      for (const o of live) assert.ok(s.end <= o.start || s.start >= o.end, `span ${s.start}-${s.end} overlaps ${o.start}-${o.end}`);
      s.buf.fill(step % 251);
      live.push(s);
      // every live span still holds what was written into it
      for (const o of live) assert.ok(o.buf.every((b) => b === o.buf[0]));
    }
    assert.ok(wrapped > 10 && refused > 10, `wrapped ${wrapped}, refused ${refused}`);
    assert.equal(ring.alloc(1001), null, 'a span larger than the ring: none');
    for (const s of live) ring.free(s);
    assert.equal(ring.live, 0);
    assert.equal(ring.alloc(1000)!.start, 0, 'all freed: the whole ring is there again');
  });

  for (const ringBytes of [undefined, 1024 * 1024]) {
    // on the calling thread (the worker reads the large entries otherwise: tested below)
    // the vectors entry (5.5 MB) is longer than the least read-ahead (4 MiB): ranges are read into the ring as it is consumed
    it(`every entry read by stream() and by chunks() equals the archive's; adjacent chunks are read with one range; the pack files are closed at each entry's end${ringBytes ? ' (a ring smaller than the entries: it wraps, and larger ranges get their own buffer)' : ''}`, async () => {
      const spy = spyRangeReaders(ringBytes ? storeDir : undefined);
      const a = await openArchive(archive);
      let reader: StoreSnapshotArchiveReader | null = null;
      try {
        reader = await openStoreSnapshotReader(repo, snapId, ringBytes ? { ringBytes, readAhead: 4 * 1024 * 1024, worker: false } : { worker: false });
        const streams = reader.entryStreams();
        for (const e of a.manifest.entries) {
          const want = await a.readEntry(e.name);
          const blobs = await blobsOf(e.name);
          let runs = 0;
          blobs.forEach((b, i) => (runs += i === 0 || !adjacent(blobs[i - 1].loc, b.loc) ? 1 : 0));
          const packs = new Set(blobs.map((b) => b.loc.pack)).size;
          // chunks(): each chunk is valid until the next call; copied here as it comes
          const cr = await streams.chunks(e.name);
          const copies: Buffer[] = [];
          for (let c = await cr.next(); c; c = await cr.next()) copies.push(Buffer.from(c));
          assert.ok(Buffer.concat(copies).equals(want), `${e.name} by chunks()`);
          assert.equal(spy.made[spy.made.length - 1].openFiles, 0);
          // stream(): the chunks may be kept
          const before = spy.reads();
          const kept: Buffer[] = [];
          for await (const c of streams.stream(e.name)) kept.push(c);
          assert.ok(Buffer.concat(kept).equals(want), `${e.name} by stream()`);
          const reads = spy.reads() - before;
          assert.ok(reads >= runs && reads <= runs + Math.ceil(want.length / (4 * 1024 * 1024)), `${e.name}: ${reads} range reads for ${runs} runs of ${blobs.length} chunks`);
          if (blobs.length > 20) assert.ok(reads < blobs.length / 2, `${e.name}: runs of adjacent chunks are read whole (${reads} reads, ${blobs.length} chunks)`);
          const rr = spy.made[spy.made.length - 1];
          assert.ok(rr.opened <= packs, `${e.name}: ${rr.opened} files opened for ${packs} packs`);
          if (!ringBytes) assert.ok(rr.opened > 0);
          assert.equal(rr.openFiles, 0, 'closed at the end of the entry');
          // the chunks kept from stream() are untouched by the reads since
          assert.ok(Buffer.concat(kept).equals(want), `${e.name}: the chunks stream() handed out are kept as they were`);
        }
        if (!ringBytes)
          assert.ok(
            spy.made.some((r) => r.opened > 8),
            'an entry spans more packs than a reader keeps open',
          );
        assert.equal(openFdsUnder(storeDir), 0);
        // a consumer that stops after the first chunk: the files are closed too
        const big = a.manifest.entries.reduce((x, y) => (y.size > x.size ? y : x));
        const cr = await streams.chunks(big.name);
        assert.ok(await cr.next());
        if (!ringBytes) assert.ok(openFdsUnder(storeDir) > 0);
        await cr.close();
        assert.equal(openFdsUnder(storeDir), 0);
      } finally {
        spy.restore();
        await reader?.close();
        await a.close();
      }
    });
  }

  for (const worker of [false, true]) {
    it(`a chunk changed after a read is caught on the next read: by its CRC-32 after a full check, by its id after a plain read${worker ? ' (large entries on the worker)' : ''}`, async () => {
      const a = await openArchive(archive);
      const names = a.manifest.entries.map((e) => e.name);
      await a.close();
      const drain = async (it: AsyncIterable<Buffer>): Promise<void> => {
        for await (const _ of it) {
          /* drain */
        }
      };
      for (const [name, first] of [
        [names.find((n) => n.endsWith('.af'))!, { verify: 'sha256' as const }],
        [names.find((n) => n.endsWith('.vectors'))!, {}],
        [names.find((n) => n.endsWith('.vectors'))!, { verify: 'sha256' as const }],
      ] as const) {
        const blobs = await blobsOf(name);
        const { loc, id } = blobs[Math.floor(blobs.length / 2)];
        const packFile = path.join(storeDir, 'store', 'data', loc.pack.slice(0, 2), loc.pack);
        const reader = await openStoreSnapshotReader(repo, snapId, { worker });
        try {
          await drain(reader.stream(name, first));
          flipByte(packFile, loc.offset + Math.floor(loc.length / 2));
          try {
            const err = await rejectsWith(drain(reader.stream(name)), 'checksum');
            assert.match(err.message, new RegExp(`pack ${loc.pack}`), name);
            assert.match(err.message, new RegExp(id));
          } finally {
            flipByte(packFile, loc.offset + Math.floor(loc.length / 2)); // undone
          }
          await drain(reader.stream(name)); // as it was: read again without error
        } finally {
          await reader.close();
        }
      }
    });
  }

  for (const worker of [false, true]) {
    it(`a damaged chunk inside a run read as one range fails the read (chunks() and stream()), naming the entry and the pack; the files are closed${worker ? ' (large entries on the worker)' : ''}`, async () => {
      const a = await openArchive(archive);
      const names = a.manifest.entries.map((e) => e.name);
      await a.close();
      // a vectors entry (chunks stored as they are, handed out as views) and an agent file (inflated)
      for (const name of [names.find((n) => n.endsWith('.vectors'))!, names.find((n) => n.endsWith('.af'))!]) {
        const blobs = await blobsOf(name);
        const k = blobs.findIndex((b, i) => i > 0 && i < blobs.length - 1 && adjacent(blobs[i - 1].loc, b.loc) && adjacent(b.loc, blobs[i + 1].loc));
        assert.ok(k > 0, `${name} has a chunk between two adjacent ones`);
        const { loc } = blobs[k];
        const packFile = path.join(storeDir, 'store', 'data', loc.pack.slice(0, 2), loc.pack);
        flipByte(packFile, loc.offset + Math.floor(loc.length / 2));
        try {
          for (const how of ['chunks', 'stream'] as const) {
            const reader = await openStoreSnapshotReader(repo, snapId, { worker });
            try {
              const read = async (): Promise<void> => {
                if (how === 'stream') {
                  for await (const _ of reader.stream(name)) {
                    /* drain */
                  }
                  return;
                }
                const cr = await reader.entryStreams().chunks(name);
                for (let c = await cr.next(); c; c = await cr.next()) {
                  /* drain */
                }
              };
              const err = await rejectsWith(read, 'checksum');
              assert.match(err.message, new RegExp(`pack ${loc.pack}`), `${name} by ${how}`);
              assert.ok(err.message.includes(name), err.message);
              assert.match(err.message, new RegExp(blobs[k].id));
              assert.equal(openFdsUnder(storeDir), 0, 'the files are closed after the failure');
            } finally {
              await reader.close();
            }
          }
        } finally {
          flipByte(packFile, loc.offset + Math.floor(loc.length / 2)); // undone
        }
      }
    });
  }

  describe('large entries of a plain local store read on the worker thread (src/vault/store/decode-worker.ts)', () => {
    /** The reader's worker (internal: for what it holds and reads). */
    const workerOf = (r: StoreSnapshotArchiveReader): DecodeWorker => (r as unknown as { decoder: DecodeWorker }).decoder;
    const bigEntry = async (): Promise<string> => {
      const a = await openArchive(archive);
      try {
        return a.manifest.entries.reduce((x, y) => (y.size > x.size ? y : x)).name;
      } finally {
        await a.close();
      }
    };
    const waitFor = async (ok: () => boolean, what: string): Promise<void> => {
      for (let k = 0; k < 200 && !ok(); k++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(ok(), what);
    };

    it("every entry read by stream(), chunks(), readEntry() and verifyAll() equals the archive's; the large ones never touch a range reader here; the worker closes its files", async () => {
      const spy = spyRangeReaders();
      const a = await openArchive(archive);
      const reader = await openStoreSnapshotReader(repo, snapId);
      try {
        const streams = reader.entryStreams();
        let onWorker = 0;
        for (const e of a.manifest.entries) {
          const want = await a.readEntry(e.name);
          const before = spy.reads();
          const cr = await streams.chunks(e.name);
          const copies: Buffer[] = [];
          const handed: Buffer[] = [];
          for (let c = await cr.next(); c; c = await cr.next()) {
            copies.push(Buffer.from(c));
            handed.push(c);
          }
          assert.ok(Buffer.concat(copies).equals(want), `${e.name} by chunks()`);
          // chunks() hands out a chunk valid until the next is asked for: its memory went back to the worker
          if (e.size >= 4 * 1024 * 1024)
            assert.ok(
              handed.some((c) => c.length === 0),
              `${e.name}: chunk buffers are reused`,
            );
          const kept: Buffer[] = [];
          for await (const c of reader.stream(e.name, { verify: 'sha256', entrySha256: true })) kept.push(c);
          assert.ok(Buffer.concat(kept).equals(want), `${e.name} by stream()`);
          assert.ok((await reader.readEntry(e.name)).equals(want), `${e.name} by readEntry()`);
          if (e.size >= 2 * 1024 * 1024) {
            onWorker++;
            assert.equal(spy.reads(), before, `${e.name}: read on the worker, not here`);
            assert.ok(kept.length > 1 && kept.slice(0, -1).every((c) => c.length >= 1024 * 1024), `${e.name}: chunks of about 1 MiB`);
          }
          await waitFor(() => openFdsUnder(storeDir) === 0, `${e.name}: the worker closed its files at the entry's end`);
        }
        assert.ok(onWorker > 0, 'the fixture has an entry the worker reads');
        assert.ok((await reader.verifyAll()).every((r) => r.ok));
        assert.equal(workerOf(reader).reading, 0);
      } finally {
        spy.restore();
        await reader.close();
        await a.close();
      }
    });

    it("a slow consumer: the worker hands over at most a few chunks ahead of it; one that stops early stops the worker's read and its files are closed", async () => {
      const name = await bigEntry();
      const reader = await openStoreSnapshotReader(repo, snapId, { readAhead: 4 * 1024 * 1024 });
      try {
        const it = reader.stream(name);
        assert.ok((await it.next()).value);
        await new Promise((r) => setTimeout(r, 300)); // the worker has had time to read the whole entry
        const w = workerOf(reader);
        assert.ok(w.queued <= 2, `${w.queued} chunks handed over and not taken`);
        await it.return(undefined);
        assert.equal(w.reading, 0);
        await waitFor(() => openFdsUnder(storeDir) === 0, 'the worker closed its files');
        // and the reader still reads the entry whole afterwards
        let n = 0;
        for await (const c of reader.stream(name)) n += c.length;
        assert.equal(n, (await loadSnapshot(repo, snapId)).entries.find((e) => e.name === name)!.size);
      } finally {
        await reader.close();
      }
    });

    it('a missing or truncated pack fails the read naming the entry and the pack (missing-blob / checksum); checkEntries reports it for its entry', async () => {
      const name = await bigEntry();
      const blobs = await blobsOf(name);
      const { loc } = blobs[Math.floor(blobs.length / 2)];
      const packFile = path.join(storeDir, 'store', 'data', loc.pack.slice(0, 2), loc.pack);
      const saved = fs.readFileSync(packFile);
      const drain = async (r: StoreSnapshotArchiveReader): Promise<void> => {
        for await (const _ of r.stream(name)) {
          /* drain */
        }
      };
      try {
        fs.rmSync(packFile);
        let reader = await openStoreSnapshotReader(repo, snapId);
        try {
          const err = await rejectsWith(drain(reader), 'missing-blob');
          assert.ok(err.message.includes(name) && err.message.includes(loc.pack), err.message);
          const bad = await reader.entryStreams().checkEntries([name]);
          assert.equal(bad.length, 1);
          assert.equal(bad[0].entry, name);
          assert.match(bad[0].error, new RegExp(loc.pack));
        } finally {
          await reader.close();
        }
        fs.writeFileSync(packFile, saved.subarray(0, loc.offset + 1));
        reader = await openStoreSnapshotReader(repo, snapId);
        try {
          const err = await rejectsWith(drain(reader), 'checksum', /truncated/);
          assert.ok(err.message.includes(name) && err.message.includes(loc.pack), err.message);
        } finally {
          await reader.close();
        }
      } finally {
        fs.writeFileSync(packFile, saved);
      }
      assert.equal(openFdsUnder(storeDir), 0);
    });

    it('closing the reader while an entry is being read ends it with an error (no hang) and ends the worker', async () => {
      const name = await bigEntry();
      const reader = await openStoreSnapshotReader(repo, snapId, { readAhead: 4 * 1024 * 1024 });
      const it = reader.stream(name);
      assert.ok((await it.next()).value);
      const w = workerOf(reader);
      await reader.close();
      await assert.rejects(async () => {
        for (let r = await it.next(); !r.done; r = await it.next()) {
          /* drain what was handed over before the close */
        }
      });
      assert.equal(w.reading, 0);
      await waitFor(() => openFdsUnder(storeDir) === 0, 'no file left open');
    });
  });
});
