/**
 * Frozen store version 1: example stores written once by test/vault/frozen-store/make-v1.ts (never
 * regenerated) are read with today's code: config (and, encrypted, its MAC and key check), index,
 * packs, snapshot, every blob checked, the exported archive's entries equal to the frozen archives'
 * expected digests. Chunking is pinned too: re-ingesting the same archive into a new store with the
 * frozen parameters gives the same list blobs (so new snapshots keep sharing blobs with old ones),
 * and the FastCDC rule gives the frozen cut lengths on a fixed byte stream.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openArchive } from '../../src/format/archive';
import { clearKeyCache, keyFromPassphrase } from '../../src/format/crypto';
import { LocalStore } from '../../src/vault/remote/store';
import { GEAR } from '../../src/vault/store/chunker';
import { checkRepo, exportSnapshotToArchive, ingestArchive, initStore, listSnapshots, loadSnapshot, openRepo } from '../../src/vault/store/repo';
import { FROZEN_V1 } from '../format/frozen/expected';
import { cdcLengths, fixedBytes } from './frozen-store/make-v1';
import { makeTmpRoot, rejectsWith } from './helpers';

const V1 = path.join(__dirname, 'frozen-store', 'v1');
const ARCHIVES = path.join(__dirname, '..', 'format', 'frozen', 'v1');
const EXPECTED = JSON.parse(fs.readFileSync(path.join(V1, 'expected.json'), 'utf8')) as {
  plain: { archive: string; snapshot: string };
  passphrase: { archive: string; snapshot: string };
  fastcdc_lengths: number[];
};
const ENTRY_DIGESTS: Record<string, Record<string, string>> = JSON.parse(fs.readFileSync(path.join(ARCHIVES, 'expected-entries.json'), 'utf8'));

describe('vault: frozen store version 1 stays readable', function () {
  this.timeout(120000);
  const tmp = makeTmpRoot('frozen-store');
  after(() => {
    clearKeyCache();
    tmp.cleanup();
  });

  for (const kind of ['plain', 'passphrase'] as const) {
    it(`${kind}: opens, checks (read-data), exports the frozen archive's entries, and re-ingesting gives the same blobs`, async () => {
      const ex = EXPECTED[kind];
      const opts = kind === 'passphrase' ? { passphrase: FROZEN_V1.passphrase } : {};
      // a read-only copy: nothing in the frozen folder may change
      const copy = tmp.dir(kind);
      fs.cpSync(path.join(V1, kind), copy, { recursive: true });
      const repo = await openRepo(new LocalStore(copy), opts);
      if (kind === 'passphrase') await rejectsWith(openRepo(new LocalStore(copy), { passphrase: 'not it' }), 'wrong-key');
      assert.deepEqual(
        (await listSnapshots(repo)).map((s) => s.id),
        [ex.snapshot],
      );
      const rep = await checkRepo(repo, { readData: true });
      assert.deepEqual(rep.problems, []);
      assert.deepEqual(rep.warnings, []);
      assert.ok(rep.packs >= 2, `${rep.packs} packs`);

      const out = path.join(tmp.dir('out'), `${kind}.avsnap`);
      const key = kind === 'passphrase' ? await keyFromPassphrase(FROZEN_V1.passphrase, { scrypt: FROZEN_V1.scrypt }) : undefined;
      await exportSnapshotToArchive(repo, ex.snapshot, out, key ? { encryption: { key } } : {});
      const r = await openArchive(out, kind === 'passphrase' ? { decrypt: { passphrase: FROZEN_V1.passphrase } } : {});
      try {
        const got: Record<string, string> = {};
        for (const e of r.list())
          got[e.name] = createHash('sha256')
            .update(await r.readEntry(e.name))
            .digest('hex');
        assert.deepEqual(got, ENTRY_DIGESTS[ex.archive]);
      } finally {
        await r.close();
      }

      // chunking pinned: a new store with the frozen parameters cuts the same blobs
      const fresh = new LocalStore(tmp.dir(`${kind}-fresh`));
      await initStore(fresh, { packSize: repo.config.pack_size, chunker: repo.config.chunker, key });
      const again = await ingestArchive(await openRepo(fresh, opts), path.join(ARCHIVES, ex.archive), { decrypt: kind === 'passphrase' ? { passphrase: FROZEN_V1.passphrase } : undefined });
      const frozenSnap = await loadSnapshot(repo, ex.snapshot);
      const newSnap = await loadSnapshot(await openRepo(fresh, opts), again.snapshotId);
      assert.deepEqual(
        newSnap.entries.map((e) => [e.name, e.sha256, e.lists]),
        frozenSnap.entries.map((e) => [e.name, e.sha256, e.lists]),
      );
    });
  }

  it('the gear table and the FastCDC cut points are the frozen ones', () => {
    for (const i of [0, 1, 127, 255]) assert.equal(GEAR[i], createHash('sha256').update(`agent-vault/gear/${i}`).digest().readUInt32BE(0));
    assert.deepEqual(cdcLengths(fixedBytes()), EXPECTED.fastcdc_lengths);
  });
});
