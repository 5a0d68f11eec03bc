/**
 * The deduplicating store (src/vault/store/, docs/FORMAT.md part II) on a local folder and on S3
 * (moto): round trip of real archives (packed fixtures, an export of a PGlite database with
 * synthetic 1536-dim passages) with byte-equal entries; bytes added by a second ingest of the same
 * archive and after 1 % more messages and 1 % changed passages; encryption (wrong key, tampering);
 * check naming the snapshot and agent a damaged pack affects; prune crash-safety at several points.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { createArchiveWriter, openArchive, readManifest, type Manifest } from '../../src/format/archive';
import { AgentVaultError } from '../../src/core/errors';
import { ArchiveCrypto, clearKeyCache, decryptBuffer, decryptEntrySync, encryptBuffer, encryptEntrySync, keyFromPassphrase, type ArchiveKey } from '../../src/format/crypto';
import { packAgentFile } from '../../src/format/pack';
import { exportAgents } from '../../src/letta/export';
import { generateSyntheticDb } from '../../src/letta/synth';
import { S3Store } from '../../src/vault/remote/s3';
import { LocalStore, type ObjectStore } from '../../src/vault/remote/store';
import { fileSha256 } from '../../src/core/hash';
import { Chunker, chunkKindFor } from '../../src/vault/store/chunker';
import { decodeBlob } from '../../src/vault/store/format';
import {
  checkRepo,
  exportSnapshotToArchive,
  forgetSnapshots,
  ingestArchive,
  initStore,
  listSnapshots,
  loadSnapshot,
  openRepo,
  pruneUnreferenced,
  storeBytes,
  type PruneFaultPoint,
  type Repo,
} from '../../src/vault/store/repo';
import { freshLettaDb } from '../helpers/letta-db';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { changeOnePercent, fixturePath } from './letta-data';
import { makeTmpRoot, rejectsWith } from './helpers';

const FIXTURES = ['lettabot-builder.v2.af', 'void.v2.af', 'customer-service.v1.af', 'memgpt-agent-with-convo.v2.af'];
const PACK_SIZE = 256 * 1024;

/** Entry name → sha256 of the plaintext, read through the archive reader (checks every entry). */
async function entryDigests(file: string, passphrase?: string): Promise<Map<string, string>> {
  const r = await openArchive(file, passphrase ? { decrypt: { passphrase } } : {});
  try {
    const out = new Map<string, string>();
    for (const e of r.list())
      out.set(
        e.name,
        createHash('sha256')
          .update(await r.readEntry(e.name))
          .digest('hex'),
      );
    return out;
  } finally {
    await r.close();
  }
}

function sameEntries(a: Manifest, b: Manifest): void {
  assert.deepEqual(
    b.entries.map((e) => [e.name, e.size, e.sha256, e.media_type]),
    a.entries.map((e) => [e.name, e.size, e.sha256, e.media_type]),
  );
}

describe('vault: deduplicating store', function () {
  this.timeout(600000);
  const tmp = makeTmpRoot('dedup');
  let moto: MotoServer;
  const archives: string[] = [];
  let dbV1 = '';
  let dbV2 = '';
  let encArchive = '';
  let key: ArchiveKey;
  const PASS = 'correct horse battery staple';
  let synthAgents: string[] = [];

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    moto = await startMoto();
    await moto.createBucket('av-dedup');
    const dir = tmp.dir('archives');
    for (const f of FIXTURES) {
      const out = path.join(dir, `${f}.avsnap`);
      await packAgentFile(fixturePath(f), out);
      archives.push(out);
    }
    const db = await freshLettaDb('pglite');
    try {
      synthAgents = (await generateSyntheticDb(db, { agents: 2, messagesPerAgent: 1500, passagesPerAgent: 400, dim: 1536, seed: 15 })).agentIds;
      dbV1 = path.join(dir, 'db-v1.avsnap');
      await exportAgents(db, { select: { all: true }, out: dbV1, createdAt: '2026-01-01T00:00:00.000Z' });
      key = await keyFromPassphrase(PASS, { scrypt: { N: 1024, r: 8, p: 1 } });
      encArchive = path.join(dir, 'db-v1.enc.avsnap');
      await exportAgents(db, { select: { all: true }, out: encArchive, encryption: { key }, createdAt: '2026-01-01T00:00:00.000Z' });
      await changeOnePercent(db);
      dbV2 = path.join(dir, 'db-v2.avsnap');
      await exportAgents(db, { select: { all: true }, out: dbV2, createdAt: '2026-01-02T00:00:00.000Z' });
    } finally {
      await db.close();
    }
  });
  after(async () => {
    clearKeyCache();
    await moto?.stop();
    tmp.cleanup();
  });

  describe('chunking', () => {
    it('cuts JSONL, vectors and .af only on record boundaries, and an insert changes only nearby chunks', async () => {
      const r = await openArchive(dbV1);
      try {
        for (const e of r.list()) {
          const data = await r.readEntry(e.name);
          const kind = chunkKindFor(e.name);
          const c = new Chunker(kind);
          const chunks = [...c.push(data.subarray(0, 1000)), ...c.push(data.subarray(1000)), ...c.end()];
          assert.deepEqual(Buffer.concat(chunks), data, e.name);
          if (kind === 'lines') for (const ch of chunks) assert.equal(ch[ch.length - 1], 0x0a, `${e.name}: a chunk ends mid-line`);
          if (kind === 'vectors') {
            const dim = data.readUInt32LE(8);
            let off = 0;
            for (const ch of chunks.slice(0, -1)) {
              off += ch.length;
              assert.equal((off - 32) % (dim * 4), 0, `${e.name}: a chunk ends mid-record`);
            }
          }
          if (kind === 'json') for (const ch of chunks.slice(0, -1)) assert.equal(ch[ch.length - 1], 0x7d, `${e.name}: a json chunk ends elsewhere than after an object`);
          if (kind === 'lines' && chunks.length > 4) {
            // insert one line in the middle: all chunks but one or two stay the same
            const lines = data.toString('utf8').split('\n');
            const mid = Math.floor(lines.length / 2);
            const changed = Buffer.from([...lines.slice(0, mid), '{"id":"passage-inserted","text":"new"}', ...lines.slice(mid)].join('\n'));
            const c2 = new Chunker(kind);
            const after = [...c2.push(changed), ...c2.end()];
            const before = new Set(chunks.map((x) => createHash('sha256').update(x).digest('hex')));
            const fresh = after.filter((x) => !before.has(createHash('sha256').update(x).digest('hex')));
            assert.ok(fresh.length <= 2, `${e.name}: ${fresh.length} of ${after.length} chunks changed after inserting one line`);
          }
        }
      } finally {
        await r.close();
      }
    });
  });

  describe('sealing', () => {
    it('blobs sealed whole and synchronously are the entry format of archives (both directions), bound to their name', async () => {
      const crypto = ArchiveCrypto.forWriting(key);
      const plain = Buffer.concat(Array.from({ length: 5000 }, (_, i) => createHash('sha256').update(`p${i}`).digest())); // > 2 segments
      for (const len of [0, 1, 65536, 65537, plain.length]) {
        const p = plain.subarray(0, len);
        const sealed = encryptEntrySync(crypto, 'blob/data/x', p);
        assert.deepEqual(await decryptBuffer(crypto, 'blob/data/x', sealed), p);
        const streamed = await encryptBuffer(crypto, 'blob/data/x', p);
        assert.deepEqual(decryptEntrySync(crypto, 'blob/data/x', streamed, 'f').payload, p);
        assert.throws(
          () => decryptEntrySync(crypto, 'blob/data/y', sealed, 'f'),
          (e: AgentVaultError) => e.code === 'decrypt',
        );
        const cut = sealed.subarray(0, sealed.length - 1);
        assert.throws(
          () => decryptEntrySync(crypto, 'blob/data/x', cut, 'f'),
          (e: AgentVaultError) => e.code === 'decrypt',
        );
      }
    });
  });

  for (const kind of ['local', 's3'] as const) {
    describe(`on ${kind === 'local' ? 'a local folder' : 'S3 (moto)'}`, () => {
      const stores: ObjectStore[] = [];
      let n = 0;
      const newStore = (): ObjectStore => {
        const s = kind === 'local' ? new LocalStore(tmp.dir('store')) : new S3Store(moto.location('av-dedup', `t${Date.now()}-${n++}`));
        stores.push(s);
        return s;
      };
      after(async () => {
        for (const s of stores) await s.close();
      });

      it('readRange (what packs are read with) gives the byte range, shorter past the end', async () => {
        const store = newStore();
        const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
        await store.writeBytes('r/x', data);
        assert.deepEqual(await store.readRange('r/x', 10, 20), data.subarray(10, 30));
        assert.deepEqual(await store.readRange('r/x', 990, 50), data.subarray(990));
        assert.equal((await store.readRange('r/x', 0, 0)).length, 0);
      });

      it('round trip: packed fixtures and a database export come back with byte-equal entries; re-ingest adds < 1 %; 1 % changes add little', async () => {
        const store = newStore();
        await initStore(store, { packSize: PACK_SIZE });
        const repo = await openRepo(store);
        const ids: string[] = [];
        for (const a of archives) ids.push((await ingestArchive(repo, a)).snapshotId);
        const first = await ingestArchive(repo, dbV1, { sourceSha256: true });
        ids.push(first.snapshotId);
        const again = await ingestArchive(repo, dbV1);
        const changed = await ingestArchive(repo, dbV2);
        const ratioAgain = again.bytesAdded / first.bytesAdded;
        const ratioChanged = changed.bytesAdded / first.bytesAdded;
        // figures for the report
        console.log(
          `      [${kind}] db export ${first.bytesRead} B: first ingest added ${first.bytesAdded} B; again ${again.bytesAdded} B (${(100 * ratioAgain).toFixed(3)} %); after 1 % changes ${changed.bytesAdded} B (${(100 * ratioChanged).toFixed(2)} %)`,
        );
        assert.equal(again.newBlobs, 0);
        assert.ok(ratioAgain < 0.01, `second ingest added ${(100 * ratioAgain).toFixed(2)} %`);
        assert.ok(ratioChanged < 0.06, `after 1 % changes the ingest added ${(100 * ratioChanged).toFixed(2)} % of the first`);
        assert.ok(first.bytesAdded < first.bytesRead, 'the store is smaller than the plaintext (compression)');

        const snaps = await listSnapshots(repo);
        assert.equal(snaps.length, archives.length + 3);
        assert.deepEqual(
          snaps
            .find((s) => s.id === first.snapshotId)
            ?.agents.map((a) => a.id)
            .sort(),
          [...synthAgents].sort(),
        );
        assert.equal(snaps.find((s) => s.id === first.snapshotId)?.source?.sha256, (await fileSha256(dbV1)).sha256);

        const reopened = await openRepo(store);
        const outDir = tmp.dir('exports');
        for (const [i, src] of [...archives, dbV1].entries()) {
          const out = path.join(outDir, `${i}.avsnap`);
          await exportSnapshotToArchive(reopened, ids[i], out);
          const [a, b] = [await readManifest(src), await readManifest(out)];
          sameEntries(a, b);
          assert.deepEqual({ ...b, entries: [] }, { ...a, entries: [] }, 'the manifest is the same');
          assert.deepEqual(await entryDigests(out), await entryDigests(src));
          await (await openArchive(out, { verifyEntries: true })).close();
        }
        const outV2 = path.join(outDir, 'v2.avsnap');
        await exportSnapshotToArchive(reopened, changed.snapshotId, outV2);
        sameEntries(await readManifest(dbV2), await readManifest(outV2));

        const report = await checkRepo(reopened, { readData: true });
        assert.deepEqual(report.problems, []);
        assert.equal(report.snapshots, archives.length + 3);
        assert.equal(report.packsRead, report.packs);
        const subset = await checkRepo(reopened, { readData: 0.3 });
        assert.ok(subset.ok && subset.packsRead >= 1 && subset.packsRead < subset.packs, `read ${subset.packsRead} of ${subset.packs} packs`);
        await rejectsWith(initStore(store), 'exists');
      });

      it('an empty entry and an unstructured (FastCDC) entry round-trip; bad or missing configs are clear errors', async () => {
        const src = path.join(tmp.dir('odd'), 'odd.avsnap');
        const w = await createArchiveWriter(src);
        const big = Buffer.concat(Array.from({ length: 12000 }, (_, i) => createHash('sha256').update(`n${i}`).digest()));
        await w.addBuffer('qdrant/empty.snapshot', Buffer.alloc(0));
        await w.addBuffer('qdrant/c.snapshot', big);
        await w.finish({ agents: [] });
        const store = newStore();
        await initStore(store, { packSize: PACK_SIZE });
        const repo = await openRepo(store);
        const s = await ingestArchive(repo, src);
        const out = path.join(tmp.dir('odd-out'), 'x.avsnap');
        await exportSnapshotToArchive(repo, s.snapshotId, out);
        sameEntries(await readManifest(src), await readManifest(out));
        assert.ok(s.newBlobs >= 4, `${s.newBlobs} blobs`); // 375 KiB cut by FastCDC (avg 64 KiB) + a list blob

        await rejectsWith(openRepo(store, { prefix: 'elsewhere' }), 'no-store');
        const cfg = JSON.parse((await store.readBytes('store/config.json'))!.toString());
        await store.writeBytes('store/config.json', JSON.stringify({ ...cfg, version: 2 }));
        await rejectsWith(openRepo(store), 'format-version', /newer Agent Vault/);
        await store.writeBytes('store/config.json', '{"format": "agent-vault-store", "version": 1');
        await rejectsWith(openRepo(store), 'store-format');
        await store.writeBytes('store/config.json', JSON.stringify(cfg));
        await rejectsWith(loadSnapshot(await openRepo(store), 'f'.repeat(64)), 'no-snapshot');
      });

      it('encrypted store: wrong or missing key refused, config and pack tampering detected, plain store refuses encrypted archives', async () => {
        const store = newStore();
        await initStore(store, { key, packSize: PACK_SIZE });
        await rejectsWith(openRepo(store), 'no-key');
        await rejectsWith(openRepo(store, { passphrase: 'wrong horse' }), 'wrong-key');
        const repo = await openRepo(store, { passphrase: PASS });
        const a = await ingestArchive(repo, encArchive, { decrypt: { passphrase: PASS } });
        const b = await ingestArchive(repo, dbV1);
        // nothing readable in the store without the key: no passage text in any object
        for await (const o of store.list('store/')) {
          const bytes = (await store.readBytes(o.key))!;
          assert.ok(!bytes.includes(Buffer.from('Synthetic')) && !bytes.includes(Buffer.from('"role"')), `${o.key} holds plaintext`);
        }
        // export: needs a key for a snapshot from an encrypted archive; with it, the plaintext is the same
        const outDir = tmp.dir('enc-exports');
        await rejectsWith(exportSnapshotToArchive(repo, a.snapshotId, path.join(outDir, 'x.avsnap')), 'no-key');
        const outA = path.join(outDir, 'a.avsnap');
        await exportSnapshotToArchive(repo, a.snapshotId, outA, { encryption: { key } });
        assert.deepEqual(await entryDigests(outA, PASS), await entryDigests(encArchive, PASS));
        const outB = path.join(outDir, 'b.avsnap');
        await exportSnapshotToArchive(repo, b.snapshotId, outB);
        sameEntries(await readManifest(dbV1), await readManifest(outB));

        // a flipped byte in a pack: export fails authentication; check --read-data names snapshot and agent
        const vec = (await readManifest(dbV1)).agents[0];
        const damagedKey = await flipInBlobOf(repo, b.snapshotId, vec.vectors_entry!);
        const r2 = await openRepo(store, { passphrase: PASS });
        await rejectsWith(exportSnapshotToArchive(r2, b.snapshotId, path.join(outDir, 'c.avsnap')), ['decrypt', 'checksum']);
        const rep = await checkRepo(r2, { readData: true });
        assert.equal(rep.ok, false);
        const p = rep.problems.find((x) => x.key === damagedKey);
        assert.ok(p && p.kind === 'damaged-pack', JSON.stringify(rep.problems));
        assert.ok(p.snapshots.includes(b.snapshotId));
        assert.ok(p.agents.includes(vec.id), `agents: ${p.agents}`);
        assert.match(p.message, new RegExp(vec.id));

        // config tampering (e.g. weaker chunker/pack parameters) is refused
        const cfg = JSON.parse((await store.readBytes('store/config.json'))!.toString());
        cfg.pack_size = 8192;
        await store.writeBytes('store/config.json', JSON.stringify(cfg));
        await rejectsWith(openRepo(store, { passphrase: PASS }), 'tampered');

        const plain = newStore();
        await initStore(plain);
        await rejectsWith(ingestArchive(await openRepo(plain), encArchive, { decrypt: { passphrase: PASS } }), 'store-not-encrypted');
      });

      it('check finds a flipped byte in a plain pack and names the affected snapshot and agent', async () => {
        const store = newStore();
        await initStore(store, { packSize: PACK_SIZE });
        const repo = await openRepo(store);
        const s1 = await ingestArchive(repo, dbV1);
        const s2 = await ingestArchive(repo, archives[1]);
        const m = await readManifest(dbV1);
        const agent = m.agents[1];
        const damagedKey = await flipInBlobOf(repo, s1.snapshotId, agent.passages_entry!);
        const quick = await checkRepo(repo);
        assert.equal(quick.ok, true, 'without read-data only presence and sizes are checked');
        const rep = await checkRepo(repo, { readData: true });
        assert.equal(rep.ok, false);
        const p = rep.problems.find((x) => x.key === damagedKey)!;
        assert.equal(p.kind, 'damaged-pack');
        assert.deepEqual(p.snapshots, [s1.snapshotId]);
        assert.ok(p.agents.includes(agent.id));
        assert.ok(!p.snapshots.includes(s2.snapshotId));
        // a missing pack is found without read-data
        await store.delete(damagedKey);
        const rep2 = await checkRepo(await openRepo(store));
        assert.ok(rep2.problems.some((x) => x.kind === 'missing-pack' && x.key === damagedKey && x.snapshots.includes(s1.snapshotId)));
        // prune refuses to work on a damaged store
        await rejectsWith(pruneUnreferenced(await openRepo(store)), 'store-damaged');
      });

      const FAULTS: Array<[PruneFaultPoint, number]> = [
        ['pack-written', 1],
        ['index-written', 1],
        ['index-deleted', 1],
        ['pack-deleted', 1],
        ['pack-deleted', 3],
      ];
      it(`prune: forgets, repacks and sweeps; a kill at ${FAULTS.length} points loses nothing a kept snapshot needs`, async () => {
        for (const [point, nth] of [...FAULTS, [null, 0] as const]) {
          const store = newStore();
          await initStore(store, { packSize: 64 * 1024 });
          const repo = await openRepo(store);
          const old = await ingestArchive(repo, dbV1);
          const kept1 = await ingestArchive(repo, dbV2);
          const gone = await ingestArchive(repo, archives[0]);
          const kept2 = await ingestArchive(repo, archives[1]);
          const before = await storeBytes(repo);
          await forgetSnapshots(repo, [old.snapshotId, gone.snapshotId]);
          await rejectsWith(forgetSnapshots(repo, [old.snapshotId]), 'no-snapshot');
          if (point) {
            let seen = 0;
            const err = await pruneUnreferenced(repo, {
              faultHook: (p) => {
                if (p === point && ++seen === nth) throw new Error(`killed at ${p} #${nth}`);
              },
            }).then(
              () => null,
              (e: Error) => e,
            );
            assert.ok(err && /killed at/.test(err.message), `prune did not reach ${point} #${nth}`);
            // after the "kill": everything kept is there and exports byte-equal
            const r = await openRepo(store);
            // (the exports below read and hash every blob the kept snapshots need)
            const rep = await checkRepo(r);
            assert.deepEqual(rep.problems, [], `after a kill at ${point} #${nth}`);
            await exportAndCompare(r, kept1.snapshotId, dbV2);
            await exportAndCompare(r, kept2.snapshotId, archives[1]);
          }
          // a full prune (again, after a kill) completes and frees the forgotten snapshot's bytes
          const r = await openRepo(store);
          const res = await pruneUnreferenced(r);
          const after = await storeBytes(r);
          if (!point) console.log(`      [${kind}] prune: ${JSON.stringify(res)}`);
          assert.ok(after < before, `${point ?? 'no fault'}: ${after} B after prune, ${before} B before`);
          assert.ok(res.blobsRemoved > 0 || point === 'pack-deleted', JSON.stringify(res));
          const rep = await checkRepo(r, { readData: true });
          assert.deepEqual(rep.problems, []);
          assert.deepEqual(rep.warnings, [], 'nothing unindexed is left behind');
          await exportAndCompare(r, kept1.snapshotId, dbV2);
          await exportAndCompare(r, kept2.snapshotId, archives[1]);
          // a second prune has nothing to do
          const idle = await pruneUnreferenced(r);
          assert.equal(idle.packsDeleted + idle.packsRepacked + idle.packsWritten, 0);
        }
      });

      async function exportAndCompare(repo: Repo, id: string, original: string): Promise<void> {
        const out = path.join(tmp.dir('prune-export'), 'x.avsnap');
        await exportSnapshotToArchive(repo, id, out);
        sameEntries(await readManifest(original), await readManifest(out));
      }
    });
  }

  /** Flips one byte inside a data blob of `entry` of a snapshot; returns the pack's key. */
  async function flipInBlobOf(repo: Repo, snapshotId: string, entry: string): Promise<string> {
    const snap = await loadSnapshot(repo, snapshotId);
    const e = snap.entries.find((x) => x.name === entry)!;
    const firstDataId = await firstDataBlob(repo, e.lists[0]);
    const loc = repo.index.get(firstDataId)!;
    const key = `${repo.prefix}data/${loc.pack.slice(0, 2)}/${loc.pack}`;
    const bytes = (await repo.store.readBytes(key))!;
    bytes[loc.offset + Math.floor(loc.length / 2)] ^= 0x40;
    await repo.store.writeBytes(key, bytes);
    return key;
  }

  async function firstDataBlob(repo: Repo, listId: string): Promise<string> {
    const loc = repo.index.get(listId)!;
    const key = `${repo.prefix}data/${loc.pack.slice(0, 2)}/${loc.pack}`;
    const stored = await repo.store.readRange(key, loc.offset, loc.length);
    const plain = decodeBlob(stored, { id: listId, type: 'list', rawLength: loc.rawLength, compression: loc.compression }, repo.crypto, key);
    return plain.subarray(0, 32).toString('hex');
  }
});
