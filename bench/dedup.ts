/**
 * bench/dedup: the deduplicating store (src/vault/store/) on a generated Letta database in
 * embedded PGlite: bytes added and time of a first ingest, of a second ingest of an unchanged
 * export, and of an ingest after 1 % more messages and 1 % changed passages; and the time to
 * export a snapshot back out of the store, against a full export from the database.
 *
 *   npx tsx bench/dedup.ts                       # 2 agents × 20k messages + 5k passages, 1536 dims
 *   npx tsx bench/dedup.ts --messages 100000 --passages 25000 --agents 2
 *   npx tsx bench/dedup.ts --encrypted           # an encrypted store (scrypt N = 2^14 to keep it short)
 *   npx tsx bench/dedup.ts --pg --restore        # also: restore of day 2 from the archive and from the store
 *                                                # (read in place), each in its own process, alternately
 *                                                # `--restore-runs N` times (default 3): the median time, the
 *                                                # largest peak RSS
 *   BENCH_CPU_PROF=/tmp/prof npx tsx bench/dedup.ts …  # each child step writes a CPU profile (node --cpu-prof) there
 *   npx tsx bench/dedup.ts --pg --restic         # on a throwaway PostgreSQL 15 cluster, side by side with
 *                                                # restic backing up a pg_dump of the same database
 *
 * With --pg, each day's backup is the real one: `agent-vault backup` (the built CLI, dist/cli.js,
 * built first) into the store vault, the export writing straight into the store (no archive); an
 * archive is still exported on day 1 and day 2 as the reference (a full export's time; the restore
 * from the archive). On PGlite (in this process's memory) each day is exported to an archive that
 * is then ingested.
 *
 * --restic (needs --pg and the `restic` and `pg_dump` commands): the same three states (day 1,
 * day 1 again unchanged, day 2 after the 1 % changes) are dumped with `pg_dump` (plain SQL) and
 * backed up with `restic backup` into a local restic repository; bytes added are the growth of the
 * repository folder, time is pg_dump + restic. Our side: `agent-vault backup`.
 *
 * The store steps run in child processes, so that each one's peak RSS is its own (PGlite, holding
 * the database in memory, dominates the parent's).
 *
 * Targets of issue 15 (measured on its 200k + 50k database): second ingest adds < 1 % of the first
 * and takes < 25 % of a full export's time; after the 1 % changes < 3 %.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openPglite } from '../src/db/pglite';
import { openPg } from '../src/db/pg';
import type { Db } from '../src/db/types';
import { startTestPostgres, type TestPostgres } from '../test/helpers/pgcluster';
import { keyFromPassphrase } from '../src/format/crypto';
import { createLettaSchema } from '../src/letta/ddl';
import { exportAgents } from '../src/letta/export';
import { restoreAgents } from '../src/letta/restore';
import { generateSyntheticDb } from '../src/letta/synth';
import { LocalStore } from '../src/vault/remote/store';
import { exportSnapshotToArchive, ingestArchive, initStore, openRepo, storeBytes } from '../src/vault/store/repo';
import { openStoreSnapshotReader } from '../src/vault/store/reader';
import { changeOnePercent } from '../test/vault/letta-data';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

async function timed<T>(f: () => Promise<T>): Promise<{ s: number; v: T }> {
  const t = process.hrtime.bigint();
  const v = await f();
  return { s: Number(process.hrtime.bigint() - t) / 1e9, v };
}

const mb = (n: number): string => (n / 1e6).toFixed(2);

interface StepResult {
  s: number;
  rssMB: number;
  /** user + system CPU seconds of the process (steadier than wall time on a busy machine) */
  cpuS?: number;
  v: { bytesAdded?: number; newBlobs?: number; bytesRead?: number; snapshotId?: string; bytes?: number; footprint?: number };
}

/**
 * One step in a child process: `--child ingest|export <store dir> <file> [snapshot]`, or
 * `--child restore <database url> <archive>` / `--child restore <database url> <store dir> <snapshot>`
 * (the snapshot read in place from the store).
 */
async function child(): Promise<void> {
  const i = process.argv.indexOf('--child');
  const [op, dir, file, snap] = process.argv.slice(i + 1);
  const pass = process.env.BENCH_PASSPHRASE;
  if (op === 'restore') {
    const target = await openPg({ url: dir });
    try {
      const repo = snap ? await openRepo(new LocalStore(file), pass ? { passphrase: pass } : {}) : null;
      const t = process.hrtime.bigint();
      const r = await restoreAgents(target, repo ? { open: () => openStoreSnapshotReader(repo, snap) } : file, pass ? { decrypt: { passphrase: pass } } : {});
      const s = Number(process.hrtime.bigint() - t) / 1e9;
      process.stdout.write(JSON.stringify({ s, rssMB: 0, v: { rows: r.rows.messages } }) + '\n');
    } finally {
      await target.close();
    }
    return;
  }
  const repo = await openRepo(new LocalStore(dir), pass ? { passphrase: pass } : {});
  const t = process.hrtime.bigint();
  const v = op === 'ingest' ? await ingestArchive(repo, file) : await exportSnapshotToArchive(repo, snap, file);
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  const footprint = await storeBytes(repo);
  process.stdout.write(JSON.stringify({ s, rssMB: 0, v: { ...v, footprint } }) + '\n');
}

function step(args: string[], env: NodeJS.ProcessEnv): StepResult {
  // under GNU time: a child forked straight from this process would report this process's RSS
  // (Linux keeps the pre-exec high-water mark in ru_maxrss)
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const r = spawnSync('/usr/bin/time', ['-f', '@@RSS %M %U %S', process.execPath, ...prof, ...process.execArgv, __filename, '--child', ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  const m = /@@RSS (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`store step ${args.join(' ')} failed:\n${r.stderr}`);
  return { ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as StepResult), rssMB: Number(m[1]) / 1024, cpuS: Number(m[2]) + Number(m[3]) };
}

/** The node flags the CLI's first line gives node when it is run as a program (scripts/build.mjs). */
function cliNodeFlags(cli: string): string[] {
  const first = readFileSync(cli, 'utf8').slice(0, 300).split('\n')[0];
  return first.startsWith('#!') ? first.split(/\s+/).filter((a) => a.startsWith('--')) : [];
}

/**
 * `agent-vault backup` into the store vault at `storeDir` from the database at `url`: the built CLI
 * (dist/cli.js, as users run it: with the node flags of its first line) under GNU time, wall time measured around it (process start
 * included, as restic's is).
 */
function cliBackup(storeDir: string, url: string, env: NodeJS.ProcessEnv): StepResult {
  const cfg = path.join(path.dirname(storeDir), 'agent-vault.json');
  writeFileSync(cfg, JSON.stringify({ vault: storeDir, source: { kind: 'postgres', url }, ...(env.BENCH_PASSPHRASE ? { encryption: { enabled: true, passphraseEnv: 'BENCH_PASSPHRASE' } } : {}) }));
  const t = process.hrtime.bigint();
  const cli = path.join(__dirname, '..', 'dist', 'cli.js');
  const r = spawnSync('/usr/bin/time', ['-f', '@@RSS %M', process.execPath, ...cliNodeFlags(cli), cli, 'backup', '--config', cfg, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  const m = /@@RSS (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`agent-vault backup failed:\n${r.stdout}\n${r.stderr}`);
  const j = JSON.parse(r.stdout) as {
    bytes_read: number;
    bytes_added: number;
    new_chunks: number;
    snapshot: { store_id: string };
    reuse?: { reused: number; exported: number; parent: string | null; off: string | null };
  };
  if (j.reuse) console.error(`  backup: ${j.reuse.reused} agent(s) copied from parent ${j.reuse.parent ?? '(none)'}, ${j.reuse.exported} read${j.reuse.off ? ` (${j.reuse.off})` : ''}`);
  return { s, rssMB: Number(m[1]) / 1024, v: { bytesAdded: j.bytes_added, bytesRead: j.bytes_read, newBlobs: j.new_chunks, snapshotId: j.snapshot.store_id } };
}

async function main(): Promise<void> {
  const agents = arg('agents', 2);
  const messages = arg('messages', 20000);
  const passages = arg('passages', 5000);
  const dim = arg('dim', 1536);
  const encrypted = process.argv.includes('--encrypted');
  const usePg = process.argv.includes('--pg');
  const restic = process.argv.includes('--restic');
  if (restic && !usePg) throw new Error('--restic needs --pg (pg_dump reads a PostgreSQL server)');
  const dir = mkdtempSync(path.join(tmpdir(), 'av-bench-dedup-'));
  let server: TestPostgres | undefined;
  let dbUrl = '';
  let db: Db;
  if (usePg) {
    server = await startTestPostgres();
    dbUrl = (await server.createDatabase()).url;
    db = await openPg({ url: dbUrl });
  } else db = await openPglite();
  const resticRows: Array<{ s: number; added: number }> = [];
  const dirBytes = (d: string): number => {
    let n = 0;
    for (const e of readdirSync(d, { withFileTypes: true, recursive: true })) if (e.isFile()) n += statSync(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)).size;
    return n;
  };
  const resticRepo = path.join(dir, 'restic-repo');
  const resticEnv = { ...process.env, RESTIC_REPOSITORY: resticRepo, RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(dir, 'restic-cache') };
  const resticDay = (name: string): void => {
    if (!restic) return;
    const dump = path.join(dir, 'dump', 'letta.sql');
    const before = dirBytes(resticRepo);
    const t = process.hrtime.bigint();
    rmSync(path.dirname(dump), { recursive: true, force: true });
    execFileSync('mkdir', ['-p', path.dirname(dump)]);
    execFileSync('pg_dump', ['--no-owner', '-f', dump, dbUrl], { stdio: 'inherit' });
    execFileSync('restic', ['backup', '--quiet', '--host', 'bench', path.dirname(dump)], { env: resticEnv, stdio: ['ignore', 'ignore', 'inherit'] });
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    resticRows.push({ s, added: dirBytes(resticRepo) - before });
    console.log(`restic ${name}: pg_dump ${mb(statSync(dump).size)} MB, ${s.toFixed(2)} s, ${mb(resticRows[resticRows.length - 1].added)} MB added`);
    rmSync(path.dirname(dump), { recursive: true, force: true });
  };
  if (restic) execFileSync('restic', ['init', '--quiet'], { env: resticEnv, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await createLettaSchema(db);
    const g = await timed(() => generateSyntheticDb(db, { agents, messagesPerAgent: Math.round(messages / agents), passagesPerAgent: Math.round(passages / agents), dim, seed: 15 }));
    console.log(`generated ${agents} agents, ${g.v.messages} messages, ${g.v.passages} passages (${dim} dims) in ${g.s.toFixed(1)} s`);
    const a1 = path.join(dir, 'day1.avsnap');
    const e1 = await timed(() => exportAgents(db, { select: { all: true }, out: a1 }));
    const size1 = statSync(a1).size;
    const storeDir = path.join(dir, 'vault');
    const pass = encrypted ? 'bench passphrase' : undefined;
    const key = pass ? await keyFromPassphrase(pass, { scrypt: { N: 2 ** 14 } }) : undefined;
    await initStore(new LocalStore(storeDir), { key });
    const env = pass ? { BENCH_PASSPHRASE: pass } : {};
    // on PostgreSQL a store backup is the real one (the export writes straight into the store, in
    // a child process); on PGlite (in this process's memory) the archive is exported, then ingested
    const direct = usePg;
    if (direct) execFileSync(process.execPath, [path.join(__dirname, '..', 'scripts', 'build.mjs')], { stdio: 'ignore' });
    const backupStep = (archive: string): StepResult => (direct ? cliBackup(storeDir, dbUrl, env) : step(['ingest', storeDir, archive], env));
    const i1 = backupStep(a1);
    resticDay('day 1');
    const a1b = path.join(dir, 'day1-again.avsnap');
    const e1b = direct ? null : await timed(() => exportAgents(db, { select: { all: true }, out: a1b }));
    const i2 = backupStep(a1b);
    resticDay('day 1 again (unchanged)');
    await changeOnePercent(db);
    const a2 = path.join(dir, 'day2.avsnap');
    const i3Direct = direct ? backupStep(a2) : null;
    const e2 = await timed(() => exportAgents(db, { select: { all: true }, out: a2 }));
    const i3 = i3Direct ?? backupStep(a2);
    resticDay('day 2 (1 % changed)');
    const x = step(['export', storeDir, path.join(dir, 'out.avsnap'), i3.v.snapshotId!], env);
    const restoreRows: Array<[string, string, string, string]> = [];
    if (server && process.argv.includes('--restore')) {
      // restore of day 2 into an empty database, each in its own process: from the archive, and
      // from the store (the snapshot read in place: no archive is written); alternately, `--restore-runs`
      // times (default 3), the median of each reported. Before each run the server checkpoints and
      // the file system is synced, so that no run pays for writing out the one before it.
      const into = async (args: string[]): Promise<StepResult> => {
        const t = await server!.createDatabase();
        const target = await openPg({ url: t.url });
        try {
          await createLettaSchema(target);
          await target.query('CHECKPOINT');
        } finally {
          await target.close();
        }
        spawnSync('sync');
        try {
          return step(['restore', t.url, ...args], env);
        } finally {
          await server!.dropDatabase(t.name);
        }
      };
      const runs: Array<{ archive: StepResult; store: StepResult }> = [];
      for (let k = 0; k < arg('restore-runs', 3); k++) runs.push({ archive: await into([a2]), store: await into([storeDir, i3.v.snapshotId!]) });
      const median = (f: (r: { archive: StepResult; store: StepResult }) => StepResult): StepResult => runs.map(f).sort((a, b) => a.s - b.s)[Math.floor((runs.length - 1) / 2)];
      const ra = median((r) => r.archive);
      const rs = median((r) => r.store);
      const peak = (f: (r: { archive: StepResult; store: StepResult }) => StepResult): number => Math.max(...runs.map((r) => f(r).rssMB));
      const cpu = (f: (r: { archive: StepResult; store: StepResult }) => StepResult): number => runs.map((r) => f(r).cpuS ?? 0).sort((a, b) => a - b)[Math.floor((runs.length - 1) / 2)];
      console.log(
        `restore runs (archive / store): ${runs.map((r) => `${r.archive.s.toFixed(2)} / ${r.store.s.toFixed(2)} s (CPU of the process ${r.archive.cpuS?.toFixed(2)} / ${r.store.cpuS?.toFixed(2)} s)`).join(', ')}; median CPU ${cpu((r) => r.archive).toFixed(2)} / ${cpu((r) => r.store).toFixed(2)} s`,
      );
      restoreRows.push(
        ['restore of day 2 into an empty PostgreSQL database, from the archive (median run; peak RSS: the largest of the runs)', `${ra.s.toFixed(2)} s`, '', `${peak((r) => r.archive).toFixed(0)} MB`],
        ['restore of day 2 from the store (read in place)', `${rs.s.toFixed(2)} s (${(rs.s / ra.s).toFixed(2)}x the archive's)`, '', `${peak((r) => r.store).toFixed(0)} MB`],
      );
    }
    const pct = (a: number, b: number, d = 2): string => `${((100 * a) / b).toFixed(d)} %`;
    const rows: Array<[string, string, string, string]> = [
      ['full export from the database (day 1)', `${e1.s.toFixed(2)} s`, `${mb(size1)} MB archive`, ''],
      [direct ? 'first backup into the store (export straight into it)' : 'first ingest into the store', `${i1.s.toFixed(2)} s`, `${mb(i1.v.bytesAdded!)} MB added`, `${i1.rssMB.toFixed(0)} MB`],
      [
        direct ? 'second backup, unchanged database' : 'second ingest, unchanged export',
        `${i2.s.toFixed(2)} s (${pct(i2.s, e1.s, 0)} of the export)`,
        `${i2.v.bytesAdded} B (${pct(i2.v.bytesAdded!, i1.v.bytesAdded!, 3)})`,
        `${i2.rssMB.toFixed(0)} MB`,
      ],
      [
        direct ? 'backup after 1 % more messages, 1 % changed passages' : 'ingest after 1 % more messages, 1 % changed passages',
        `${i3.s.toFixed(2)} s`,
        `${mb(i3.v.bytesAdded!)} MB (${pct(i3.v.bytesAdded!, i1.v.bytesAdded!)})`,
        `${i3.rssMB.toFixed(0)} MB`,
      ],
      ['export of day 2 from the store to a .avsnap', `${x.s.toFixed(2)} s`, `${mb(x.v.bytes!)} MB`, `${x.rssMB.toFixed(0)} MB`],
      ...restoreRows,
    ];
    console.log(
      `\n${encrypted ? 'encrypted' : 'plain'} store; exports from the database to an archive took ${e1.s.toFixed(2)}${e1b ? ` / ${e1b.s.toFixed(2)}` : ''} / ${e2.s.toFixed(2)} s${direct ? ' (reference only: store backups write no archive)' : ''}\n`,
    );
    console.log('| step | time | bytes | peak RSS |\n|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.join(' | ')} |`);
    if (restic) {
      const ours = direct ? [i1.s, i2.s, i3.s] : [e1.s + i1.s, e1b!.s + i2.s, e2.s + i3.s];
      const added = [i1.v.bytesAdded!, i2.v.bytesAdded!, i3.v.bytesAdded!];
      const names = ['day 1 (first backup)', 'day 1 again, unchanged', 'day 2, 1 % more messages + 1 % changed passages'];
      console.log(`\nside by side with restic ${execFileSync('restic', ['version'], { encoding: 'utf8' }).trim().split(' ')[1]} backing up a pg_dump (plain SQL) of the same PostgreSQL database\n`);
      console.log(`| backup | Agent Vault store: added | time (${direct ? 'backup' : 'export + ingest'}) | restic on pg_dump: added | time (pg_dump + restic) |\n|---|---|---|---|---|`);
      for (let k = 0; k < 3; k++) console.log(`| ${names[k]} | ${mb(added[k])} MB | ${ours[k].toFixed(2)} s | ${mb(resticRows[k].added)} MB | ${resticRows[k].s.toFixed(2)} s |`);
    }
    console.log(`\nstore footprint: ${mb(x.v.footprint!)} MB for 3 snapshots of ${mb(i1.v.bytesRead!)} MB plaintext each`);
  } finally {
    await db.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

(process.argv.includes('--child') ? child() : main()).catch((e) => {
  console.error(e);
  process.exit(1);
});
