/**
 * Fault injection on the vault (issue 10): real PostgreSQL 15 + pgvector, the built CLI in child
 * processes. Every scenario ends by checking that every good snapshot is still there and readable,
 * and that what the tool printed is true.
 *
 *  1. vault.json deleted, then backup            → nothing deleted; the archives are listed again
 *  2. an older vault.json put back, then backup  → the newer snapshots are listed again, not deleted
 *     + a damaged vault.json: the hint names rebuild-index, which rebuilds it from the archives
 *  3. newest snapshot corrupt, then prune        → the corrupt one is kept and reported (exit 1),
 *     retention counts only verified snapshots; the same with pruneAfterBackup
 *  4. a lock whose pid now belongs to another process → broken (pid + process start time)
 *  5. drill racing prune                         → prune waits for / refuses during the drill
 *  6. SIGTERM during export and during backup    → no temp file, the run is logged as interrupted
 *  7. full disk (injected ENOSPC) in export and prune → exit 74 (I/O), not 2 (usage); nothing lost
 *  8. deep verify catches vectors swapped and a message dropped with recomputed checksums
 *  9. COMMIT connection cut by a TCP proxy       → committed / rolled back / unknown, exit 0 / 3 / 7
 * Store vaults (`vault init --store`):
 *  3. a damaged pack of the newest snapshot, or its damaged snapshot file, then prune → kept and
 *     reported (exit 1), only the good ones counted, the damaged store not swept; a prune racing a
 *     reader (shared lock) refuses with 75
 *  6. SIGTERM during a store backup → staging folder removed, the run logged as interrupted, lock
 *     released; the next backup removes the temp files of killed store writes (own pattern only)
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { openPg } from '../../src/db/pg';
import type { Db } from '../../src/db/types';
import { createArchiveWriter, openArchive } from '../../src/format/archive';
import { encodeVectors, readVectors } from '../../src/format/vectors';
import { createLettaSchema } from '../../src/letta/ddl';
import { seedAgentFile } from '../../src/letta/seed';
import { restoreAgents } from '../../src/letta/restore';
import { verifyArchive } from '../../src/vault/verify';
import { acquireSharedLock, processStartTime, readIndex, readRunLog, LOCK_FILE } from '../../src/vault/vault';
import { rebuildIndex } from '../../src/vault/reconcile';
import { runBackup } from '../../src/vault/backup';
import { parseConfig } from '../../src/vault/config';
import { exportStoreSnapshot, listStoreVault } from '../../src/vault/store-vault';
import { sharedTestPostgres } from '../helpers/global-pg';
import { ensureCliBuilt, startCliProcess, STACK_TRACE, type ProcessResult } from '../helpers/cli';
import { addSyntheticPassages, fixturePath } from './letta-data';
import { flipByte, listFiles, makeTmpRoot } from './helpers';

/** The built CLI in a child process (asynchronous: the test process keeps serving its proxy). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, onStart?: (p: ChildProcess) => void): Promise<ProcessResult> {
  return startCliProcess(args, { env, onStart });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 60000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function writeConfig(dir: string, cfg: Record<string, unknown>): string {
  const file = path.join(dir, 'agent-vault.json');
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

/** Every snapshot in `ids` is listed, its file is there, and it opens and verifies (deep). */
async function assertReadable(vault: string, ids: string[]): Promise<void> {
  const index = await readIndex(vault);
  const byId = new Map(index.snapshots.map((s) => [s.id, s]));
  for (const id of ids) {
    const rec = byId.get(id);
    assert.ok(rec, `snapshot ${id} is listed`);
    const file = path.join(vault, rec.file);
    assert.ok(fs.existsSync(file), `${rec.file} exists`);
    const checks = await verifyArchive(file, { deep: true, rec });
    assert.deepEqual(
      checks.filter((c) => !c.ok),
      [],
      `${id} verifies (deep)`,
    );
  }
}

/**
 * A TCP proxy in front of PostgreSQL that cuts the first connection sending COMMIT:
 * 'after'  — the COMMIT reaches the server, its answer does not reach the client;
 * 'before' — the connection is cut instead of forwarding the COMMIT;
 * 'dead'   — as 'before', and from then on every new connection is refused at once.
 */
async function commitCutter(target: { host: string; port: number }, mode: 'after' | 'before' | 'dead'): Promise<{ port: number; cut: () => boolean; close: () => Promise<void> }> {
  let cut = false;
  let dead = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    if (dead) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    let started = false; // the startup packet has no type byte
    let buf = Buffer.alloc(0);
    let cutAfter = false;
    let readWrite = false; // only a read-write transaction records txid_current() (src/db/commit.ts)
    client.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (!started) {
          if (buf.length < 4) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          upstream.write(buf.subarray(0, len));
          buf = buf.subarray(len);
          // an SSLRequest (80877103) is answered 'N' by the server and followed by the real startup
          if (len === 8) continue;
          started = true;
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        const msg = buf.subarray(0, len + 1);
        buf = buf.subarray(len + 1);
        const text = msg[0] === 0x51 /* Q */ ? msg.subarray(5).toString('utf8').replace(/\0$/, '') : '';
        if (text.includes('txid_current()')) readWrite = true;
        if (text.trim().toUpperCase() === 'COMMIT' && readWrite && !cut) {
          cut = true;
          if (mode === 'after') {
            cutAfter = true;
            upstream.write(msg);
            continue;
          }
          if (mode === 'dead') dead = true;
          client.destroy();
          upstream.destroy();
          return;
        }
        upstream.write(msg);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutAfter) {
        // the server answered the COMMIT: drop the answer and the connection
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: () => cut,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('vault: fault injection (issue 10) against PostgreSQL', function () {
  this.timeout(300000);
  const tmp = makeTmpRoot('vault-faults');
  let small: { url: string; db: Db };
  let big: { url: string; db: Db };
  const env = { SMALL_URL: '', BIG_URL: '' };

  before(async () => {
    ensureCliBuilt();
    const server = await sharedTestPostgres();
    const mk = async (): Promise<{ url: string; db: Db }> => {
      const { url } = await server.createDatabase();
      const db = await openPg({ url });
      await createLettaSchema(db);
      return { url, db };
    };
    small = await mk();
    const s = await seedAgentFile(small.db, fixturePath('memgpt-agent.v2-double-encoded.af'));
    await addSyntheticPassages(small.db, s.agents[0].id, 30, 'faults-small');
    await seedAgentFile(small.db, fixturePath('deep-research-agent.v2.af'));
    big = await mk();
    // ~18 MB of embeddings: an export long enough to be interrupted
    await seedAgentFile(big.db, fixturePath('customer-service.v2-early.af'), { passages: { count: 3000, dim: 1536, seed: 11 } });
    env.SMALL_URL = small.url;
    env.BIG_URL = big.url;
  });
  after(async () => {
    await small?.db.close();
    await big?.db.close();
    tmp.cleanup();
  });

  /** A vault with `n` snapshots of the small database (created by the CLI). */
  async function vaultWith(n: number, name: string, extra: Record<string, unknown> = {}): Promise<{ dir: string; cfg: string; vault: string; ids: string[] }> {
    const dir = tmp.dir(name);
    const cfg = writeConfig(dir, { vault: 'vault', source: { kind: 'postgres', urlEnv: 'SMALL_URL' }, ...extra });
    const vault = path.join(dir, 'vault');
    for (let i = 0; i < n; i++) {
      const r = await cli(['backup', '--config', cfg], env);
      assert.equal(r.code, 0, r.stderr);
      await sleep(1100); // snapshot ids are per second
    }
    const ids = (await readIndex(vault)).snapshots.map((s) => s.id);
    assert.equal(ids.length, n);
    return { dir, cfg, vault, ids };
  }

  it('1+2. a deleted or an older vault.json never makes backup delete a snapshot: the archives are listed again; rebuild-index rebuilds a damaged index', async () => {
    const { cfg, vault } = await vaultWith(3, 'index');
    const indexFile = path.join(vault, 'vault.json');
    const older = fs.readFileSync(indexFile, 'utf8');
    const r4 = await cli(['backup', '--config', cfg], env);
    assert.equal(r4.code, 0, r4.stderr);
    await sleep(1100);
    const four = (await readIndex(vault)).snapshots.map((s) => s.id);
    assert.equal(four.length, 4);

    // 1. index deleted
    fs.rmSync(indexFile);
    // a drill of an archive path needs no readable index
    const newestFile = path.join(vault, 'snapshots', `${four[3]}.avsnap`);
    const drill = await cli(['drill', newestFile, '--vault', vault]);
    assert.equal(drill.code, 0, drill.stdout + drill.stderr);
    assert.match(drill.stdout, /drill PASSED/);
    // prune without an index deletes nothing and names rebuild-index
    const p0 = await cli(['prune', '--vault', vault, '--keep-last', '1']);
    assert.equal(p0.code, 2, p0.stderr);
    assert.match(p0.stderr, /hint: .*agent-vault rebuild-index --vault/);
    assert.equal(listFiles(path.join(vault, 'snapshots')).length, 4);
    const b1 = await cli(['backup', '--config', cfg], env);
    assert.equal(b1.code, 0, b1.stderr);
    assert.match(b1.stderr, /the index did not list 4 snapshot archive\(s\); they verified and are listed again/);
    await sleep(1100);
    let index = await readIndex(vault);
    assert.equal(index.snapshots.length, 5);
    await assertReadable(vault, four);

    // 2. an older copy put back (it lists 3 of the now 5)
    fs.writeFileSync(indexFile, older);
    const b2 = await cli(['backup', '--config', cfg, '--json'], env);
    assert.equal(b2.code, 0, b2.stderr);
    assert.match(b2.stderr, /listed again/);
    index = await readIndex(vault);
    assert.equal(index.snapshots.length, 6);
    await assertReadable(
      vault,
      index.snapshots.map((s) => s.id),
    );
    assert.deepEqual(listFiles(path.join(vault, 'snapshots')).length, 6, 'no archive was deleted');

    // a damaged index: the hint names rebuild-index; rebuild-index keeps the damaged file and rebuilds
    fs.writeFileSync(indexFile, older.slice(0, 200));
    const st = await cli(['status', '--vault', vault]);
    assert.equal(st.code, 1);
    assert.match(st.stderr, /hint: .*agent-vault rebuild-index --vault/);
    assert.doesNotMatch(st.stderr, STACK_TRACE);
    // an archive that does not verify is reported and left in place, a foreign file is left alone
    const bad = path.join(vault, 'snapshots', '2020-01-01T000000Z-abcdef.avsnap');
    fs.writeFileSync(bad, 'not an archive');
    fs.writeFileSync(path.join(vault, 'snapshots', 'notes.txt'), 'mine');
    const rb = await cli(['rebuild-index', '--vault', vault]);
    assert.equal(rb.code, 1, rb.stdout + rb.stderr);
    assert.match(rb.stdout, /the index was damaged; kept as .*vault\.json\.damaged-/);
    assert.match(rb.stdout, /NOT LISTED snapshots\/2020-01-01T000000Z-abcdef\.avsnap: fails verification/);
    assert.match(rb.stdout, /note: snapshots\/notes\.txt was not written by Agent Vault; left alone/);
    assert.match(rb.stdout, /index written: 6 snapshot\(s\) \(6 listed again, 0 dropped as missing, 1 archive\(s\) failing verification\)/);
    assert.ok(fs.existsSync(bad) && fs.existsSync(path.join(vault, 'snapshots', 'notes.txt')));
    assert.ok(fs.readdirSync(vault).some((n) => n.startsWith('vault.json.damaged-')));
    await assertReadable(
      vault,
      index.snapshots.map((s) => s.id),
    );
    // a listed snapshot whose file is gone: status notices it; rebuild-index drops it from the index
    fs.rmSync(bad);
    const gone = index.snapshots[0];
    const keepAside = path.join(os.tmpdir(), `av-faults-${process.pid}.avsnap`);
    fs.renameSync(path.join(vault, gone.file), keepAside);
    const st2 = await cli(['status', '--vault', vault, '--json']);
    const sj = JSON.parse(st2.stdout);
    assert.deepEqual(sj.missing, [{ id: gone.id, file: gone.file }]);
    assert.equal(sj.level, 'error');
    const rb2 = await rebuildIndex(vault);
    assert.deepEqual(rb2.missing, [{ id: gone.id, file: gone.file }]);
    assert.equal((await readIndex(vault)).snapshots.length, 5);
    // put back: the next rebuild lists it again
    fs.renameSync(keepAside, path.join(vault, gone.file));
    const rb3 = await rebuildIndex(vault);
    assert.deepEqual(
      rb3.adopted.map((a) => a.id),
      [gone.id],
    );
    await assertReadable(
      vault,
      index.snapshots.map((s) => s.id),
    );
  });

  it('3. prune keeps a corrupt newest snapshot (reported, exit 1) and counts only verified ones; pruneAfterBackup the same', async () => {
    const { cfg, vault, ids } = await vaultWith(3, 'corrupt');
    const newest = ids[2];
    const newestFile = path.join(vault, 'snapshots', `${newest}.avsnap`);
    flipByte(newestFile, Math.floor(fs.statSync(newestFile).size / 3));
    const r = await cli(['prune', '--vault', vault, '--keep-last', '1']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`KEEP   ${newest}  fails verification, not counted for retention: .*sha256 differs`));
    assert.match(r.stdout, new RegExp(`keep   ${ids[1]} `), 'the newest good snapshot is kept');
    assert.match(r.stdout, new RegExp(`delete ${ids[0]}`));
    assert.match(r.stderr, new RegExp(`1 snapshot\\(s\\) fail verification and were kept: ${newest}`));
    const after1 = (await readIndex(vault)).snapshots.map((s) => s.id);
    assert.deepEqual(after1, [ids[1], ids[2]]);
    assert.ok(fs.existsSync(newestFile), 'the corrupt snapshot is kept');
    await assertReadable(vault, [ids[1]]);

    // pruneAfterBackup: a new good snapshot becomes the newest verified; the corrupt one stays
    const config = parseConfig(JSON.stringify({ vault: 'vault', source: { kind: 'postgres', url: small.url }, retention: { keepLast: 1, pruneAfterBackup: true } }), cfg);
    const res = await runBackup({ config, db: small.db });
    assert.ok(
      res.warnings.some((w) => w.includes(`prune: snapshot ${newest} fails verification and was kept`)),
      res.warnings.join('\n'),
    );
    const after2 = (await readIndex(vault)).snapshots.map((s) => s.id).sort();
    assert.deepEqual(after2, [newest, res.snapshot.id].sort());
    await assertReadable(vault, [res.snapshot.id]);
  });

  it('4. a lock whose pid now belongs to another process is stale (process start time); a live holder is shown by status', async () => {
    const { cfg, vault, ids } = await vaultWith(1, 'pid');
    const lock = path.join(vault, LOCK_FILE);
    // pid reuse: the pid is alive (this test process) but its start time is not the recorded one
    fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, host: os.hostname(), started_at: '2026-01-01T00:00:00Z', command: 'backup', token: 'reused', proc_start: '1', mode: 'exclusive' }));
    const b = await cli(['backup', '--config', cfg], env);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(fs.existsSync(lock), false);
    // a live holder (this process, its real start time): refused with 75, named by status
    fs.writeFileSync(
      lock,
      JSON.stringify({ pid: process.pid, host: os.hostname(), started_at: '2026-01-01T00:00:00Z', command: 'backup', token: 'live', proc_start: processStartTime(process.pid), mode: 'exclusive' }),
    );
    const refused = await cli(['backup', '--config', cfg], env);
    assert.equal(refused.code, 75);
    assert.match(refused.stderr, new RegExp(`locked by "backup" \\(pid ${process.pid} on `));
    const st = await cli(['status', '--vault', vault]);
    assert.match(st.stdout, new RegExp(`lock: held by "backup" \\(pid ${process.pid} on ${os.hostname()}`));
    // an old-format lock (no start time) of a live pid: stale once its heartbeat is old
    fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, host: os.hostname(), started_at: '2026-01-01T00:00:00Z', command: 'backup', token: 'old' }));
    const old = new Date(Date.now() - 3600_000);
    fs.utimesSync(lock, old, old);
    const b2 = await cli(['backup', '--config', cfg], env);
    assert.equal(b2.code, 0, b2.stderr);
    const index = await readIndex(vault);
    assert.equal(index.snapshots.length, 3);
    await assertReadable(vault, ids);
  });

  it('5. a drill holds a shared lock: a racing prune refuses (75) instead of deleting the snapshot it reads', async () => {
    const { vault, ids } = await vaultWith(2, 'race');
    let drillProc: ChildProcess | undefined;
    const drill = cli(['drill', ids[0], '--vault', vault], {}, (p) => (drillProc = p));
    await waitFor('the drill to take its shared lock', () => fs.existsSync(path.join(vault, '.readers')) && fs.readdirSync(path.join(vault, '.readers')).length > 0);
    const prune = await cli(['prune', '--vault', vault, '--keep-last', '1']);
    const d = await drill;
    assert.ok(drillProc);
    assert.equal(prune.code, 75, prune.stdout + prune.stderr);
    assert.match(prune.stderr, new RegExp(`in use by "drill ${ids[0]}"`));
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.match(d.stdout, /drill PASSED/);
    await assertReadable(vault, ids);
    // status after the drill: the drilled agents pass
    const st = JSON.parse((await cli(['status', '--vault', vault, '--json'])).stdout);
    for (const a of st.agents) assert.equal(a.last_drill?.ok, true, `${a.id}: the drill's report is true`);
    // afterwards prune runs (and a library shared lock blocks it the same way)
    const shared = await acquireSharedLock(vault, { command: 'verify' });
    const blocked = await cli(['prune', '--vault', vault, '--keep-last', '1']);
    assert.equal(blocked.code, 75);
    await shared.release();
    const ok = await cli(['prune', '--vault', vault, '--keep-last', '1']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(
      (await readIndex(vault)).snapshots.map((s) => s.id),
      [ids[1]],
    );
    await assertReadable(vault, [ids[1]]);
    assert.deepEqual(fs.readdirSync(path.join(vault, '.readers')), []);
  });

  it('6. SIGTERM during export removes its temp file; during backup the run is logged as interrupted and status says so', async () => {
    const dir = tmp.dir('sigterm');
    // export
    const out = path.join(dir, 'big.avsnap');
    const ex = await cli(['export', '--db', big.url, '--all', '--out', out, '-q'], {}, (p) => {
      void waitFor('the export temp file', () => fs.readdirSync(dir).some((n) => n.startsWith('big.avsnap.tmp-') && fs.statSync(path.join(dir, n)).size > 0)).then(
        () => p.kill('SIGTERM'),
        () => p.kill('SIGTERM'),
      );
    });
    assert.equal(ex.code, 143, ex.stderr);
    assert.match(ex.stderr, /agent-vault: export interrupted by SIGTERM/);
    assert.deepEqual(fs.readdirSync(dir), [], 'no temp file and no archive left');

    // backup
    const cfg = writeConfig(dir, { vault: 'vault', source: { kind: 'postgres', urlEnv: 'BIG_URL' } });
    const vault = path.join(dir, 'vault');
    const first = await cli(['backup', '--config', cfg], env);
    assert.equal(first.code, 0, first.stderr);
    const before = (await readIndex(vault)).snapshots.map((s) => s.id);
    const snaps = path.join(vault, 'snapshots');
    const killed = await cli(['backup', '--config', cfg], env, (p) => {
      void waitFor('the snapshot temp file', () => fs.readdirSync(snaps).some((n) => /\.tmp-[0-9a-f]{12}$/.test(n) && fs.statSync(path.join(snaps, n)).size > 0)).then(
        () => p.kill('SIGTERM'),
        () => p.kill('SIGTERM'),
      );
    });
    assert.equal(killed.code, 143, killed.stderr);
    assert.equal(killed.stderr, 'agent-vault: backup failed: interrupted by SIGTERM\n');
    assert.deepEqual(
      (await readIndex(vault)).snapshots.map((s) => s.id),
      before,
    );
    assert.deepEqual(
      listFiles(snaps),
      before.map((id) => `${id}.avsnap`),
      'no temp file left',
    );
    assert.equal(fs.existsSync(path.join(vault, LOCK_FILE)), false, 'the lock was released');
    const log = await readRunLog(vault);
    assert.deepEqual(
      log.map((l) => [l.ok, l.error?.code ?? null]),
      [
        [true, null],
        [false, 'interrupted'],
      ],
    );
    assert.match(log[1].error!.message, /backup interrupted by SIGTERM; no snapshot was written/);
    const st = await cli(['status', '--vault', vault]);
    assert.match(st.stdout, /last backup run: FAILED at .* — backup interrupted by SIGTERM/);
    assert.match(st.stdout, /warning: last backup run was interrupted/);
    await assertReadable(vault, before);
  });

  it('6 (store vault). SIGTERM during a store backup: the run is logged as interrupted in the vault, its staging folder and the lock are gone, the stored snapshot reads back', async () => {
    const dir = tmp.dir('sigterm-store');
    const vault = path.join(dir, 'vault');
    assert.equal((await cli(['vault', 'init', '--store', '--vault', vault])).code, 0);
    const cfg = writeConfig(dir, { vault: 'vault', source: { kind: 'postgres', urlEnv: 'BIG_URL' } });
    const first = await cli(['backup', '--config', cfg], env);
    assert.equal(first.code, 0, first.stderr);
    const before = (await listStoreVault(vault)).map((x) => x.vault_id);
    assert.equal(before.length, 1);
    // the export writes straight into the store: its staging folder (the run's own lock and log)
    // holds the lock once the export runs
    const stageTemp = (): boolean =>
      fs.existsSync(path.join(vault, '.tmp')) && fs.readdirSync(path.join(vault, '.tmp')).some((st) => /^stage-/.test(st) && fs.existsSync(path.join(vault, '.tmp', st, LOCK_FILE)));
    const killed = await cli(['backup', '--config', cfg], env, (p) => {
      void waitFor('the staging run holding its lock', stageTemp).then(
        () => p.kill('SIGTERM'),
        () => p.kill('SIGTERM'),
      );
    });
    assert.equal(killed.code, 143, killed.stderr);
    assert.equal(killed.stderr, 'agent-vault: backup failed: interrupted by SIGTERM\n');
    assert.deepEqual(fs.readdirSync(path.join(vault, '.tmp')), [], 'the staging folder is gone');
    assert.equal(fs.existsSync(path.join(vault, LOCK_FILE)), false, 'the lock was released');
    assert.deepEqual(
      (await listStoreVault(vault)).map((x) => x.vault_id),
      before,
    );
    const log = await readRunLog(vault);
    assert.deepEqual(
      log.map((l) => [l.command, l.ok, l.error?.code ?? null]),
      [
        ['backup', true, null],
        ['backup', false, 'interrupted'],
      ],
    );
    assert.match(log[1].error!.message, /^backup interrupted by SIGTERM; no snapshot was written \(packs it had written into the store are referenced by no snapshot; the next prune removes them\)$/);
    const st = await cli(['status', '--vault', vault]);
    assert.match(st.stdout, /warning: last backup run was interrupted at .*backup interrupted by SIGTERM/);
    const out = path.join(dir, 'first.avsnap');
    await exportStoreSnapshot(vault, before[0], out);
    assert.deepEqual(
      (await verifyArchive(out, {})).filter((c) => !c.ok),
      [],
    );
    // the next backup runs (no lock, no litter in its way) and removes the temp file a killed store
    // write left (the store's own temp-file name only; a file of another name is left alone)
    const tempKey = `store/data/ab/${'ab'.repeat(32)}.tmp-${'0'.repeat(12)}`;
    fs.mkdirSync(path.join(vault, 'store', 'data', 'ab'), { recursive: true });
    fs.writeFileSync(path.join(vault, tempKey), 'half a pack');
    fs.writeFileSync(path.join(vault, 'store', 'data', 'ab', 'notes.txt'), 'mine');
    const next = await cli(['backup', '--config', cfg, '--json'], env);
    assert.equal(next.code, 0, next.stderr);
    assert.ok(JSON.parse(next.stdout).warnings.includes(`removed ${tempKey}, a temp file of an interrupted backup`), next.stdout);
    assert.equal(fs.existsSync(path.join(vault, tempKey)), false);
    assert.ok(fs.existsSync(path.join(vault, 'store', 'data', 'ab', 'notes.txt')));
    assert.equal((await listStoreVault(vault)).length, 2);
  });

  it('7. a full disk (injected ENOSPC) exits 74 (I/O) from export and prune, not 2 (usage); nothing is lost', async () => {
    const dir = tmp.dir('full');
    const full = path.join(dir, 'full');
    fs.mkdirSync(full);
    const inject = path.join(dir, 'enospc.cjs');
    fs.writeFileSync(
      inject,
      `const fs = require('node:fs'); const root = ${JSON.stringify(full)}; const enospc = (what) => Object.assign(new Error('ENOSPC: no space left on device, ' + what), { code: 'ENOSPC', errno: -28, syscall: what });
const real = fs.createWriteStream; let used = 0;
fs.createWriteStream = function (file, opts) { const ws = real.call(fs, file, opts); if (!String(file).startsWith(root)) return ws;
  const w = ws._write.bind(ws); ws._write = (c, e, cb) => { used += c.length; if (used > 64 * 1024) return cb(enospc('write')); w(c, e, cb); }; return ws; };
const open = fs.promises.open; fs.promises.open = async function (p, ...rest) { if (String(p).startsWith(root) && /vault\\.json\\.tmp-/.test(String(p))) throw enospc('open'); return open.call(this, p, ...rest); };\n`,
    );
    const injected = { NODE_OPTIONS: `--require ${inject}` };
    const ex = await cli(['export', '--db', small.url, '--all', '--out', path.join(full, 'x.avsnap'), '-q'], injected);
    assert.equal(ex.code, 74, ex.stderr);
    assert.match(ex.stderr, /^agent-vault: cannot write .*: no space left on the device/m);
    assert.doesNotMatch(ex.stderr, STACK_TRACE);
    assert.deepEqual(fs.readdirSync(full), []);

    // prune: the index cannot be rewritten → nothing is deleted
    const { vault, ids } = await vaultWith(2, 'full-prune');
    const moved = path.join(full, 'vault');
    fs.renameSync(vault, moved);
    const p = await cli(['prune', '--vault', moved, '--keep-last', '1'], injected);
    assert.equal(p.code, 74, p.stdout + p.stderr);
    assert.match(p.stderr, /cannot write .*vault\.json: no space left on the device/);
    assert.deepEqual(
      (await readIndex(moved)).snapshots.map((s) => s.id),
      ids,
    );
    await assertReadable(moved, ids);
    const log = await readRunLog(moved);
    assert.deepEqual(
      log.slice(-1).map((l) => [l.command, l.ok, l.error?.code]),
      [['prune', false, 'disk-full']],
    );
  });

  it('8. verify --deep catches what a drill catches: vectors moved between passages and a message dropped, checksums recomputed', async () => {
    // a source with an agent of 20 messages and one with passages
    const server = await sharedTestPostgres();
    const { url } = await server.createDatabase();
    const db = await openPg({ url });
    try {
      await createLettaSchema(db);
      await seedAgentFile(db, fixturePath('letta-test-agent.v2.af'));
      const m = await seedAgentFile(db, fixturePath('memgpt-agent.v2-double-encoded.af'));
      await addSyntheticPassages(db, m.agents[0].id, 30, 'faults-deep');
    } finally {
      await db.close();
    }
    const dir = tmp.dir('deep');
    const cfg = writeConfig(dir, { vault: 'vault', source: { kind: 'postgres', urlEnv: 'DEEP_URL' } });
    const b = await cli(['backup', '--config', cfg], { DEEP_URL: url });
    assert.equal(b.code, 0, b.stderr);
    const vault = path.join(dir, 'vault');
    const rec = (await readIndex(vault)).snapshots[0];
    const ids = [rec.id];
    const file = path.join(vault, rec.file);
    const src = await openArchive(file);
    const victim = src.manifest.agents.find((a) => a.vectors_entry)!;
    const chatty = src.manifest.agents.find((a) => a.counts.messages === 20)!;
    const rewrite = async (dest: string, change: 'vectors' | 'message'): Promise<void> => {
      const w = await createArchiveWriter(dest);
      for (const e of src.manifest.entries) {
        if (change === 'vectors' && e.name === victim.vectors_entry) {
          const rows = [...readVectors(await src.readEntry(e.name))];
          rows.push(rows.shift()!); // every vector moves to the next passage
          await w.addBuffer(e.name, encodeVectors(rows, rows[0].length), { compress: false });
        } else if (change === 'message' && e.name === chatty.entry) {
          const doc = JSON.parse((await src.readEntry(e.name)).toString('utf8'));
          const agent = doc.agents[0];
          // drop the last message (and its in-context reference, so that no reference dangles)
          const [gone] = agent.messages.splice(agent.messages.length - 1, 1);
          agent.in_context_message_ids = agent.in_context_message_ids.filter((id: string) => id !== gone.id);
          await w.addJson(e.name, doc);
        } else await w.addStream(e.name, await src.openStream(e.name), { mediaType: e.media_type });
      }
      const { entries: _e, format: _f, format_version: _v, tool: _t, ...rest } = src.manifest;
      await w.finish(rest);
    };
    const swapped = path.join(tmp.dir('deep-out'), 'swapped.avsnap');
    const dropped = path.join(path.dirname(swapped), 'dropped.avsnap');
    await rewrite(swapped, 'vectors');
    await rewrite(dropped, 'message');
    await src.close();
    for (const [f, check] of [
      [swapped, 'probes'],
      [dropped, 'counts'],
    ] as const) {
      const quick = await verifyArchive(f, {});
      assert.deepEqual(
        quick.filter((c) => !c.ok),
        [],
        'the checksums were recomputed: a quick verify passes',
      );
      const deep = await verifyArchive(f, { deep: true });
      const failed = deep.filter((c) => !c.ok);
      assert.deepEqual(
        failed.map((c) => c.name),
        [check],
        JSON.stringify(failed),
      );
    }
    assert.match((await verifyArchive(swapped, { deep: true })).find((c) => c.name === 'probes')!.message!, new RegExp(`probe searches return other passages .*${victim.id}`));
    assert.match(
      (await verifyArchive(dropped, { deep: true })).find((c) => c.name === 'counts')!.message!,
      new RegExp(`agent ${chatty.id}: messages ${chatty.counts.messages - 1} in .*, ${chatty.counts.messages} in the manifest`),
    );
    // the vault's own snapshot still passes verify --deep, through the CLI
    const v = await cli(['verify', '--vault', vault, '--deep']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /1 snapshot\(s\) verified \(deep\): all ok/);
    await assertReadable(vault, ids);
  });

  it('3 (store vault). prune keeps a store snapshot whose pack is damaged (reported, exit 1), counts only the good ones, and sweeps nothing; a damaged snapshot file the same', async () => {
    const server = await sharedTestPostgres();
    const { url } = await server.createDatabase();
    const db = await openPg({ url });
    const dir = tmp.dir('store-corrupt');
    const vault = path.join(dir, 'vault');
    const cfg = writeConfig(dir, { vault: 'vault', source: { kind: 'postgres', urlEnv: 'STORE_URL' } });
    const senv = { STORE_URL: url };
    const storeIds = async (): Promise<string[]> => (await listStoreVault(vault)).map((x) => x.vault_id);
    const packs = (): Set<string> => new Set(listFiles(path.join(vault, 'store', 'data')));
    let packs2: Set<string>;
    try {
      await createLettaSchema(db);
      const s = await seedAgentFile(db, fixturePath('memgpt-agent.v2-double-encoded.af'));
      assert.equal((await cli(['vault', 'init', '--store', '--vault', vault])).code, 0);
      for (let i = 0; i < 2; i++) {
        const b = await cli(['backup', '--config', cfg], senv);
        assert.equal(b.code, 0, b.stderr);
        await sleep(1100);
      }
      packs2 = packs();
      // the newest snapshot holds new passages: chunks in a pack of its own
      await addSyntheticPassages(db, s.agents[0].id, 40, 'faults-store');
      const b3 = await cli(['backup', '--config', cfg], senv);
      assert.equal(b3.code, 0, b3.stderr);
    } finally {
      await db.close();
    }
    const ids = await storeIds();
    assert.equal(ids.length, 3);
    const own = [...packs()].filter((f) => !packs2.has(f));
    assert.ok(own.length > 0, 'the newest snapshot wrote a pack of its own');
    // a good copy of the store to check the others against afterwards
    const good = path.join(tmp.dir('store-corrupt-good'), 'vault');
    fs.cpSync(vault, good, { recursive: true });
    const packFile = path.join(vault, 'store', 'data', own[0]);
    fs.truncateSync(packFile, fs.statSync(packFile).size - 100);

    const r = await cli(['prune', '--vault', vault, '--keep-last', '1']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`KEEP   ${ids[2]}  fails verification, not counted for retention: pack [0-9a-f]{64} is \\d+ bytes, the index says \\d+`));
    assert.match(r.stdout, new RegExp(`keep   ${ids[1]} `), 'the newest good snapshot is kept');
    assert.match(r.stdout, new RegExp(`delete ${ids[0]}`));
    assert.match(r.stderr, new RegExp(`1 snapshot\\(s\\) fail verification and were kept: ${ids[2]}`));
    assert.match(r.stderr, /the sweep did not run: the store is damaged .*no chunk was swept/);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    assert.deepEqual(await storeIds(), [ids[1], ids[2]]);
    // the good snapshot reads back whole (deep verify of its export)
    const out = path.join(dir, 'kept.avsnap');
    await exportStoreSnapshot(vault, ids[1], out);
    assert.deepEqual(
      (await verifyArchive(out, { deep: true })).filter((c) => !c.ok),
      [],
    );
    // a prune again deletes nothing more: the last good snapshot of the agent stays
    const again = await cli(['prune', '--vault', vault, '--keep-last', '1', '--json']);
    assert.equal(again.code, 1);
    const j = JSON.parse(again.stdout);
    assert.deepEqual(j.removed, []);
    assert.deepEqual(j.kept, [ids[1]]);
    assert.equal(j.unreadable[0].id, ids[2]);

    // a drill or verify of a store vault holds the shared lock: prune refuses (75), removes nothing
    const reader = await acquireSharedLock(vault, { command: `drill ${ids[1]}` });
    try {
      const raced = await cli(['prune', '--vault', vault, '--keep-last', '1']);
      assert.equal(raced.code, 75, raced.stdout + raced.stderr);
      assert.match(raced.stderr, new RegExp(`in use by "drill ${ids[1]}"`));
    } finally {
      await reader.release();
    }
    assert.deepEqual(await storeIds(), [ids[1], ids[2]]);

    // a damaged snapshot file (on the good copy): kept and reported; nothing swept, the good one stays
    const snapFiles = listFiles(path.join(good, 'store', 'snapshots'));
    const newestFile = (await listStoreVault(good)).find((x) => x.vault_id === ids[2])!.id;
    assert.ok(snapFiles.includes(newestFile));
    flipByte(path.join(good, 'store', 'snapshots', newestFile), 10);
    const r2 = await cli(['prune', '--vault', good, '--keep-last', '1']);
    assert.equal(r2.code, 1, r2.stdout + r2.stderr);
    assert.match(r2.stdout, new RegExp(`KEEP   ${newestFile}  fails verification`));
    assert.match(r2.stdout, new RegExp(`keep   ${ids[1]} `));
    assert.match(r2.stderr, /the sweep did not run/);
    const left = (await listStoreVault(good)).map((x) => x.vault_id);
    assert.ok(left.includes(ids[1]), 'the newest good snapshot is still there');
    const out2 = path.join(dir, 'kept2.avsnap');
    await exportStoreSnapshot(good, ids[1], out2);
    assert.deepEqual(
      (await verifyArchive(out2, { deep: true })).filter((c) => !c.ok),
      [],
    );
  });

  describe('9. the connection cut at COMMIT (TCP proxy): the restore reports what happened', () => {
    let archive: string;
    before(async () => {
      const dir = tmp.dir('commit');
      archive = path.join(dir, 'agents.avsnap');
      const r = await cli(['export', '--db', small.url, '--all', '--out', archive, '-q']);
      assert.equal(r.code, 0, r.stderr);
    });

    async function target(): Promise<{ url: string; db: Db; host: string; port: number; proxied(port: number): string }> {
      const server = await sharedTestPostgres();
      const { url } = await server.createDatabase();
      const db = await openPg({ url });
      await createLettaSchema(db);
      const u = new URL(url);
      return {
        url,
        db,
        host: u.hostname,
        port: Number(u.port || 5432),
        proxied(port: number) {
          const p = new URL(url);
          p.hostname = '127.0.0.1';
          p.port = String(port);
          return p.toString();
        },
      };
    }
    const count = async (db: Db): Promise<number> => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM agents')).rows[0].n;

    it('committed: the COMMIT arrived, its answer was lost → exit 0, "committed" confirmed on a new connection; a rerun sees the agents', async () => {
      const t = await target();
      const proxy = await commitCutter({ host: t.host, port: t.port }, 'after');
      try {
        const r = await cli(['restore', archive, '--db', t.proxied(proxy.port), '-q']);
        assert.ok(proxy.cut(), 'the proxy cut the connection at COMMIT');
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /note: the connection was lost at COMMIT; a new connection confirmed that transaction \d+ committed: the restore is complete/);
        assert.match(r.stdout, /Restored 2 agents/);
        assert.equal(await count(t.db), 2, 'the report is true: the agents are there');
        const again = await cli(['restore', archive, '--db', t.url, '-q']);
        assert.equal(again.code, 4, 'a rerun meets the committed agents (conflict), it does not duplicate them');
        assert.equal(await count(t.db), 2);
      } finally {
        await proxy.close();
        await t.db.close();
      }
    });

    it('rolled back: the COMMIT never arrived → exit 3, "rolled back" confirmed; nothing was changed', async () => {
      const t = await target();
      const proxy = await commitCutter({ host: t.host, port: t.port }, 'before');
      try {
        const r = await cli(['restore', archive, '--db', t.proxied(proxy.port), '-q']);
        assert.ok(proxy.cut());
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, /at COMMIT .*a new connection confirmed that transaction \d+ was rolled back: nothing was changed/);
        assert.doesNotMatch(r.stderr, STACK_TRACE);
        assert.equal(await count(t.db), 0, 'the report is true: nothing was restored');
      } finally {
        await proxy.close();
        await t.db.close();
      }
    });

    it('unknown: no new connection can ask → exit 7, the message names the transaction id; library: db-commit-unknown', async () => {
      const t = await target();
      const proxy = await commitCutter({ host: t.host, port: t.port }, 'dead');
      try {
        const r = await cli(['restore', archive, '--db', t.proxied(proxy.port), '-q'], { AGENT_VAULT_COMMIT_CHECK_MS: '1500' });
        assert.ok(proxy.cut());
        assert.equal(r.code, 7, r.stderr);
        assert.match(r.stderr, /whether the transaction committed is unknown: no new connection could ask the server/);
        const txid = /txid_status\((\d+)\)/.exec(r.stderr)?.[1];
        assert.ok(txid, 'the hint names the transaction id');
        // the truth, asked directly: the server rolled it back (the COMMIT never arrived)
        let s = 'in progress';
        for (let i = 0; i < 100 && s === 'in progress'; i++) {
          s = (await t.db.query<{ s: string }>('SELECT txid_status($1::bigint) AS s', [txid])).rows[0].s;
          if (s === 'in progress') await sleep(100);
        }
        assert.equal(s, 'aborted');
        assert.equal(await count(t.db), 0);
      } finally {
        await proxy.close();
      }
      // the same through the library
      const proxy2 = await commitCutter({ host: t.host, port: t.port }, 'dead');
      // the environment is an input of the driver (the CLI passes its own): the check's bound comes from it
      const db = await openPg({ url: t.proxied(proxy2.port), env: { AGENT_VAULT_COMMIT_CHECK_MS: '1000' } });
      try {
        await assert.rejects(restoreAgents(db, archive), (e: { code?: string; kind?: string }) => e.code === 'db-commit-unknown' && e.kind === 'commitUnknown');
        assert.equal(db.lastCommit?.outcome, 'unknown');
      } finally {
        await db.close().catch(() => undefined);
        await proxy2.close();
        await t.db.close();
      }
    });
  });
});
