import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentVaultError } from '../../src/core/errors';
import { packAgentFile } from '../../src/format/pack';
import { addSnapshotToVault, agentIn, groupSnapshotsByAgent, listVaultSnapshots, removeVaultSnapshot, type CatalogSnapshot } from '../../src/vault/catalog';
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
    assert.deepEqual(
      index.snapshots.map((s) => s.id),
      [record.id],
    );
    assert.match(record.sha256, /^[0-9a-f]{64}$/);
    const list = await listVaultSnapshots(vault);
    assert.equal(list.length, 1);
    assert.equal(list[0].listed, true);
    assert.equal(list[0].path, file);
    assert.deepEqual(
      list[0].agents.map((a) => [a.name, a.counts?.blocks]),
      [['Loop', 9]],
    );
  });

  it('lists loose archives in the vault folder (newest first), and a broken one with its error', async () => {
    await addSnapshotToVault(vault, (dest) => packAgentFile(af('loop.v2.af'), dest), { command: 'test' });
    await packAgentFile(af('deep-research-agent.v2.af'), path.join(vault, 'copied.avsnap'), { createdAt: '2030-01-01T00:00:00.000Z' });
    writeFileSync(path.join(vault, 'broken.zip'), 'not a zip');
    const list = await listVaultSnapshots(vault);
    assert.equal(list.length, 3);
    assert.equal(list[0].id, 'copied.avsnap', 'newest first');
    assert.equal(list[0].listed, false);
    assert.deepEqual(
      list[0].agents.map((a) => a.name),
      ['deep-thought-research-agent'],
    );
    const broken = list.find((s) => s.id === 'broken.zip')!;
    assert.match(broken.error!, /not a snapshot archive/);
  });

  it('a failing writer lists nothing and leaves no file', async () => {
    await assert.rejects(
      addSnapshotToVault(
        vault,
        async (dest) => {
          writeFileSync(dest, 'partial');
          throw new AgentVaultError('write-failed', 'export failed');
        },
        { command: 'test' },
      ),
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

describe('vault/catalog: snapshots grouped by agent (the Snapshots view)', () => {
  const snap = (id: string, created_at: string, agents: Array<{ id: string; name: string | null }>): CatalogSnapshot => ({
    id,
    path: `/v/${id}.avsnap`,
    created_at,
    bytes: 1,
    encrypted: false,
    agents,
    collections: [],
    listed: true,
  });

  it('groups by database id, newest snapshot first; file-local ids (packed .af files) by name', () => {
    const a = snap('a', '2026-01-01T00:00:00Z', [
      { id: 'agent-7f0e', name: 'helper' },
      { id: 'agent-0', name: 'packed' },
    ]);
    const b = snap('b', '2026-01-03T00:00:00Z', [{ id: 'agent-7f0e', name: 'helper renamed' }]);
    const c = snap('c', '2026-01-02T00:00:00Z', [
      { id: 'agent-1', name: 'packed' },
      { id: 'agent-0', name: 'other' },
    ]);
    const groups = groupSnapshotsByAgent([a, b, c]);
    assert.deepEqual(
      groups.map((g) => [g.key, g.name, g.snapshots.map((s) => s.id)]),
      [
        ['agent-7f0e', 'helper renamed', ['b', 'a']],
        ['name:other', 'other', ['c']],
        ['name:packed', 'packed', ['c', 'a']],
      ],
    );
    const packed = groups.find((g) => g.key === 'name:packed')!;
    assert.deepEqual(
      packed.snapshots.map((s) => agentIn(s, packed).id),
      ['agent-1', 'agent-0'],
      'the same agent under its file-local id of each snapshot',
    );
  });
});
