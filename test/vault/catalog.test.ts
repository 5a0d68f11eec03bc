import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentVaultError } from '../../src/core/errors';
import { packAgentFile } from '../../src/format/pack';
import { addSnapshotToVault, listVaultSnapshots, removeVaultSnapshot } from '../../src/vault/catalog';
import { readIndex } from '../../src/vault/vault';
import { FIXTURES_DIR } from '../helpers/paths';

const af = (name: string) => path.join(FIXTURES_DIR, name);

describe('vault/catalog: list, add and remove snapshots', () => {
  let vault: string;
  beforeEach(() => {
    vault = mkdtempSync(path.join(os.tmpdir(), 'av-catalog-'));
  });
  afterEach(() => rmSync(vault, { recursive: true, force: true }));

  it('a missing or empty vault folder lists nothing', async () => {
    assert.deepEqual(await listVaultSnapshots(path.join(vault, 'nope')), []);
    assert.deepEqual(await listVaultSnapshots(vault), []);
  });

  it('adds a snapshot under the lock and lists it from the index with its agents and counts', async () => {
    const { record, path: file } = await addSnapshotToVault(vault, (dest) => packAgentFile(af('loop.v2.af'), dest), { command: 'test' });
    assert.ok(existsSync(file));
    assert.equal(path.dirname(file), path.join(vault, 'snapshots'));
    assert.equal(existsSync(path.join(vault, '.lock')), false, 'the lock is released');
    const index = await readIndex(vault);
    assert.deepEqual(index.snapshots.map((s) => s.id), [record.id]);
    assert.match(record.sha256, /^[0-9a-f]{64}$/);
    const list = await listVaultSnapshots(vault);
    assert.equal(list.length, 1);
    assert.equal(list[0].listed, true);
    assert.equal(list[0].path, file);
    assert.deepEqual(list[0].agents.map((a) => [a.name, a.counts?.blocks]), [['Loop', 9]]);
  });

  it('lists loose archives in the vault folder (newest first), and a broken one with its error', async () => {
    await addSnapshotToVault(vault, (dest) => packAgentFile(af('loop.v2.af'), dest), { command: 'test' });
    await packAgentFile(af('deep-research-agent.v2.af'), path.join(vault, 'copied.avsnap'), { createdAt: '2030-01-01T00:00:00.000Z' });
    writeFileSync(path.join(vault, 'broken.zip'), 'not a zip');
    const list = await listVaultSnapshots(vault);
    assert.equal(list.length, 3);
    assert.equal(list[0].id, 'copied.avsnap', 'newest first');
    assert.equal(list[0].listed, false);
    assert.deepEqual(list[0].agents.map((a) => a.name), ['deep-thought-research-agent']);
    const broken = list.find((s) => s.id === 'broken.zip')!;
    assert.match(broken.error!, /not a snapshot archive/);
  });

  it('a failing writer lists nothing and leaves no file', async () => {
    await assert.rejects(
      addSnapshotToVault(vault, async (dest) => {
        writeFileSync(dest, 'partial');
        throw new AgentVaultError('write-failed', 'export failed');
      }, { command: 'test' }),
      /export failed/,
    );
    assert.deepEqual(readdirSync(path.join(vault, 'snapshots')), []);
    assert.deepEqual((await readIndex(vault, { allowMissing: true })).snapshots, []);
  });

  it('removes a listed snapshot (index, then file) and a loose one, and refuses paths outside the vault', async () => {
    const { path: file } = await addSnapshotToVault(vault, (dest) => packAgentFile(af('loop.v2.af'), dest), { command: 'test' });
    const loose = path.join(vault, 'loose.avsnap');
    copyFileSync(file, loose);
    assert.deepEqual(await removeVaultSnapshot(vault, file, { command: 'test' }), { removed: file, listed: true });
    assert.equal(existsSync(file), false);
    assert.deepEqual((await readIndex(vault)).snapshots, []);
    assert.deepEqual(await removeVaultSnapshot(vault, loose, { command: 'test' }), { removed: loose, listed: false });
    assert.equal(existsSync(loose), false);
    const outside = path.join(os.tmpdir(), 'outside.avsnap');
    await assert.rejects(removeVaultSnapshot(vault, outside, { command: 'test' }), (e: AgentVaultError) => e.code === 'usage' && /not inside the vault/.test(e.message));
  });
});
