/*
 * src/vault/store-catalog.ts: a store vault as the side panel's catalog, and the reads it does on a
 * store snapshot reference (`<vault>#<id>`) in place — describe, manifest, diff side, restore source.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packAgentFile } from '../../src/format/pack';
import { addSnapshotToVault } from '../../src/vault/catalog';
import {
  describeSnapshotAny,
  diffSnapshotsAny,
  listStoreVaultSnapshots,
  listVaultSnapshotsAny,
  openStoreSnapshotRef,
  parseStoreSnapshotRef,
  readSnapshotManifestAny,
  restoreSourceAny,
  storeSnapshotRef,
} from '../../src/vault/store-catalog';
import { copyStoreVault, listStoreVault, migrateToStore } from '../../src/vault/store-vault';
import { withLock } from '../../src/vault/vault';

const FIX = path.resolve(__dirname, '..', '..', '..', 'shared', 'fixtures', 'af');

describe('store catalog: a store vault listed and read in place by reference', function () {
  this.timeout(60000);
  let tmp: string;
  let archiveVault: string;
  let vault: string;
  /** an archive vault (never migrated) */
  let plain: string;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'av-store-catalog-'));
    archiveVault = path.join(tmp, 'archives');
    const changed = path.join(tmp, 'loop-changed.af');
    const doc = JSON.parse(fs.readFileSync(path.join(FIX, 'loop.v2.af'), 'utf8')) as { agents: Array<{ system: string }> };
    doc.agents[0].system += '\nBe brief.';
    fs.writeFileSync(changed, JSON.stringify(doc));
    for (const f of [path.join(FIX, 'loop.v2.af'), changed]) await addSnapshotToVault(archiveVault, (dest) => packAgentFile(f, dest), { command: 'test' });
    await migrateToStore(archiveVault);
    vault = path.join(tmp, 'store-vault');
    await copyStoreVault(archiveVault, vault);
    plain = path.join(tmp, 'plain');
    await addSnapshotToVault(plain, (dest) => packAgentFile(path.join(FIX, 'loop.v2.af'), dest), { command: 'test' });
  });

  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('lists the snapshots newest first, each named <vault>#<vault id>, with agents, counts and sizes from the snapshot files', async () => {
    const list = await listStoreVaultSnapshots(vault);
    const store = await listStoreVault(vault);
    assert.equal(list.length, 2);
    assert.deepEqual(list.map((x) => x.id).sort(), store.map((x) => x.vault_id).sort());
    assert.ok(list[0].created_at > list[1].created_at);
    for (const s of list) {
      assert.equal(s.path, `${vault}#${s.id}`);
      assert.equal(s.listed, true);
      assert.equal(s.encrypted, false);
      assert.ok(s.bytes > 0);
      assert.deepEqual(
        s.agents.map((a) => a.name),
        ['Loop'],
      );
      assert.ok(s.agents[0].counts && s.agents[0].counts.blocks > 0, 'row counts from the manifest');
    }
    // the same through the helper that takes a vault of either kind; an archive vault is listed as before
    assert.deepEqual(await listVaultSnapshotsAny(vault), list);
    assert.deepEqual(
      (await listVaultSnapshotsAny(plain)).map((x) => x.path.endsWith('.avsnap')),
      [true],
    );
  });

  it('parses a reference only after a store vault or an s3:// location', () => {
    assert.deepEqual(parseStoreSnapshotRef(storeSnapshotRef(vault, 'a b#c')), { vault, snapshot: 'a b#c' });
    assert.equal(parseStoreSnapshotRef(path.join(archiveVault, 'snapshots', 'x.avsnap')), null);
    assert.equal(parseStoreSnapshotRef(`${plain}#x`), null, 'an archive vault folder is not a store');
    assert.equal(parseStoreSnapshotRef(`${vault}#`), null);
    assert.deepEqual(parseStoreSnapshotRef('s3://b/p#id'), { vault: 's3://b/p', snapshot: 'id' });
  });

  it('describes, reads the manifest of, diffs and opens a store snapshot in place, releasing the shared lock after each read', async () => {
    const [newest, older] = await listStoreVaultSnapshots(vault);
    const temps = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('agent-vault-store-'));
    const d = await describeSnapshotAny(newest.path);
    assert.match(d.text, /Loop/);
    const m = await readSnapshotManifestAny(newest.path);
    assert.equal(m.agents[0].name, 'Loop');
    const r = await diffSnapshotsAny(older.path, newest.path);
    assert.equal(r.agents[0].counts.system_prompt, 1);
    const src = restoreSourceAny(newest.path);
    assert.equal(typeof src, 'object');
    const reader = await (src as { open: () => Promise<import('../../src/format/archive').ArchiveReader> }).open();
    assert.equal(reader.manifest.agents[0].name, 'Loop');
    // while a reader is open, the vault's exclusive lock is refused; closed, it is free again
    await assert.rejects(
      withLock(vault, { command: 'test' }, async () => true),
      (e: { code?: string }) => e.code === 'locked',
    );
    await reader.close();
    assert.equal(await withLock(vault, { command: 'test' }, async () => true), true);
    assert.equal(restoreSourceAny(path.join(archiveVault, 'x.avsnap')), path.join(archiveVault, 'x.avsnap'), 'an archive path is passed as it is');
    assert.deepEqual(
      fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('agent-vault-store-')),
      temps,
      'no temporary archive',
    );
    await assert.rejects(openStoreSnapshotRef(`${vault}#no-such-snapshot`), (e: { code?: string }) => e.code === 'no-snapshot');
  });
});
