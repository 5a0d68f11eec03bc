/**
 * Store snapshots read in place (src/vault/store/reader.ts, src/vault/store-read.ts): a restore
 * from `<store vault>#<snapshot>` equals a restore from the archive the snapshot was made of (the
 * two databases diff as identical), with no temporary archive anywhere (the vault's `.tmp/` and
 * the system temp folder stay empty); the reader's entries match the archive's byte for byte; a
 * damaged pack is a clear error naming the entry and the pack (CLI: exit 1, no stack), and nothing
 * is restored.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Db } from '../../src/db/types';
import { diffSources, openArchiveSource, openReaderSource } from '../../src/diff';
import { openDatabaseSource } from '../../src/diff/live';
import { openArchive, readManifest } from '../../src/format/archive';
import { restoreAgents } from '../../src/letta/restore';
import { runBackup } from '../../src/vault/backup';
import type { VaultConfig } from '../../src/vault/config';
import { openStoreVaultSnapshot } from '../../src/vault/store-read';
import { initStoreVault, migrateToStore, openVaultRepo } from '../../src/vault/store-vault';
import { listIdsOf, listSnapshots, loadSnapshot, readBlob } from '../../src/vault/store/repo';
import { runCli, STACK_TRACE } from '../helpers/cli';
import { freshEmptyDb, freshLettaDb } from '../helpers/letta-db';
import { createLettaSchema } from '../../src/letta/ddl';
import { addSyntheticPassages, seedFixtures } from './letta-data';
import { flipByte, listFiles, makeTmpRoot, rejectsWith } from './helpers';

const FIXTURES = ['lettabot-builder.v2.af', 'void.v2.af'];
const PACK_SIZE = 64 * 1024;

describe('vault: store snapshots read in place (restore, diff, inspect) on PostgreSQL', function () {
  this.timeout(240000);
  const tmp = makeTmpRoot('store-read');
  let source: Db;
  let vault: string;
  let archive: string;
  let sysTmp: string;
  const savedTmp = process.env.TMPDIR;
  const open: Db[] = [];

  const config = (v: string): VaultConfig => ({ vault: v, source: { kind: 'pglite', dataDir: '/not-used' }, probes: { perAgent: 2, topK: 3 } });
  const emptyTarget = async (): Promise<Db> => {
    const db = await freshEmptyDb('pg');
    open.push(db);
    await createLettaSchema(db);
    return db;
  };

  before(async () => {
    source = await freshLettaDb('pg');
    const agents = await seedFixtures(source, FIXTURES);
    await addSyntheticPassages(source, agents[0], 800, 'store-read');
    // a folder vault's archive, then a store vault made of it by migration: the store snapshot is that archive
    vault = path.join(tmp.dir('vault'), 'v');
    const r = await runBackup({ config: config(vault), db: source });
    archive = r.path;
    await initStoreVault(vault, { packSize: PACK_SIZE });
    const m = await migrateToStore(vault, { packSize: PACK_SIZE });
    assert.equal(m.failed.length, 0, JSON.stringify(m.failed));
    // the system temp folder of this process (and of the CLI it runs) is one we watch
    sysTmp = tmp.dir('systmp');
    process.env.TMPDIR = sysTmp;
  });
  after(async () => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    for (const db of open) await db.close().catch(() => undefined);
    await source?.close();
    tmp.cleanup();
  });

  const noTempArchive = (): void => {
    const vaultTmp = path.join(vault, '.tmp');
    assert.deepEqual(fs.existsSync(vaultTmp) ? fs.readdirSync(vaultTmp) : [], [], 'the vault temp folder stays empty');
    assert.deepEqual(fs.readdirSync(sysTmp), [], 'nothing is written to the system temp folder');
    assert.ok(!listFiles(vault).some((f) => f.endsWith('.avsnap') && !f.startsWith('snapshots/')), listFiles(vault).join('\n'));
    const readers = path.join(vault, '.readers');
    assert.deepEqual(fs.existsSync(readers) ? fs.readdirSync(readers) : [], [], 'the shared lock is released');
  };

  it('the reader hands out the archive entries byte for byte; the two sides diff as identical', async () => {
    const { reader, id } = await openStoreVaultSnapshot(vault, 'latest');
    assert.equal(id, path.basename(archive, '.avsnap'));
    const a = await openArchive(archive);
    try {
      assert.deepEqual(
        reader.manifest.entries.map((e) => [e.name, e.size, e.sha256]),
        a.manifest.entries.map((e) => [e.name, e.size, e.sha256]),
      );
      for (const e of a.manifest.entries) assert.ok((await reader.readEntry(e.name)).equals(await a.readEntry(e.name)), e.name);
      assert.ok((await reader.verifyAll()).every((r) => r.ok));
    } finally {
      await a.close();
      await reader.close();
    }
    const A = await openArchiveSource(archive);
    const B = openReaderSource((await openStoreVaultSnapshot(vault, 'latest')).reader);
    try {
      const d = await diffSources(A, B);
      assert.equal(d.identical, true, JSON.stringify(d.summary));
    } finally {
      await A.close();
      await B.close();
    }
    noTempArchive();
  });

  it('a restore from the store equals a restore from the archive (the databases diff as identical), with no temporary archive', async () => {
    const fromArchive = await emptyTarget();
    const fromStore = await emptyTarget();
    const ra = await restoreAgents(fromArchive, archive);
    const rs = await restoreAgents(fromStore, { open: async () => (await openStoreVaultSnapshot(vault, 'latest')).reader });
    assert.deepEqual(rs.rows, ra.rows);
    assert.ok((rs.rows.archival_passages ?? 0) >= 800, JSON.stringify(rs.rows));
    noTempArchive();
    const A = await openDatabaseSource(fromArchive, { label: 'restored from the archive' });
    const B = await openDatabaseSource(fromStore, { label: 'restored from the store' });
    try {
      const d = await diffSources(A, B);
      assert.equal(d.identical, true, JSON.stringify(d.summary));
    } finally {
      await A.close();
      await B.close();
    }
  });

  it('CLI: inspect and diff of <vault>#latest read the store in place', async () => {
    const i = runCli(['inspect', `${vault}#latest`, '--json']);
    assert.equal(i.code, 0, i.stderr);
    const info = JSON.parse(i.stdout);
    assert.equal(info.kind, 'archive');
    const m = await readManifest(archive);
    assert.deepEqual(
      info.agents.map((a: { id: string }) => a.id),
      m.agents.map((a) => a.id),
    );
    assert.match(runCli(['inspect', `${vault}#latest`]).stdout, /Agent Vault snapshot in a store vault/);
    const d = runCli(['diff', archive, `${vault}#latest`, '--format', 'json', '--exit-code']);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(JSON.parse(d.stdout).identical, true);
    noTempArchive();
  });

  it('a damaged pack: restore fails (its passages are checked as its one transaction writes them, which is rolled back) with an error naming the entry and the pack; nothing is restored (CLI: exit 1, no stack)', async () => {
    const repo = await openVaultRepo(vault);
    const [snap] = await listSnapshots(repo);
    const file = await loadSnapshot(repo, snap.id);
    // a data blob of the first vectors entry (its fourth): one byte flipped in its pack
    const entry = file.entries.find((e) => e.name.endsWith('.vectors'))!;
    const blobId = listIdsOf(await readBlob(repo, entry.lists[0], 'test'))[3];
    const loc = repo.index.get(blobId)!;
    const firstBlobPack = loc.pack;
    const packFile = path.join(vault, 'store', 'data', loc.pack.slice(0, 2), loc.pack);
    flipByte(packFile, loc.offset + Math.floor(loc.length / 2));

    const target = await emptyTarget();
    const err = await rejectsWith(() => restoreAgents(target, { open: async () => (await openStoreVaultSnapshot(vault, 'latest')).reader }), 'checksum');
    assert.match(err.message, new RegExp(entry.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.match(err.message, new RegExp(`pack ${firstBlobPack}`));
    assert.match(err.message, /nothing was restored/);
    assert.match(err.message, /rolled back/);
    assert.equal(err.kind, 'failed');
    const n = await target.query<{ n: number }>(`SELECT count(*)::int AS n FROM agents`);
    assert.equal(n.rows[0].n, 0, 'nothing is restored');
    // a dry run (no transaction to roll back) checks every entry before it plans
    const dry = await rejectsWith(() => restoreAgents(target, { open: async () => (await openStoreVaultSnapshot(vault, 'latest')).reader }, { dryRun: true }), 'checksum');
    assert.match(dry.message, new RegExp(`pack ${firstBlobPack}`));
    assert.match(dry.message, /nothing was restored/);
    noTempArchive();

    const cli = runCli(['restore', `${vault}#latest`, '--embedded', path.join(tmp.dir('pglite'), 'db'), '--quiet']);
    assert.equal(cli.code, 1, cli.stdout + cli.stderr);
    assert.match(cli.stderr, new RegExp(`pack ${firstBlobPack}`));
    assert.match(cli.stderr, /\.vectors/);
    assert.doesNotMatch(cli.stderr + cli.stdout, STACK_TRACE);
    noTempArchive();
    flipByte(packFile, loc.offset + Math.floor(loc.length / 2)); // undone: the other tests read the store
  });
});
