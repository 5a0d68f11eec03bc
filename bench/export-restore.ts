/**
 * bench/export-restore: Agent Vault's export and restore of a generated Letta database against
 * pg_dump -Fc / pg_restore of the same data, measured in the same run on the same server, at two
 * data sizes. Targets (issue 3): export ≤ 1.0x pg_dump's time, restore ≤ 1.0x pg_restore's,
 * peak RSS ≤ 300 MB and flat as the data grows.
 *
 *   npx tsx bench/export-restore.ts                 # 20 agents; 100k+25k and 200k+50k (messages+passages), 1536 dims
 *   npx tsx bench/export-restore.ts --scale 0.1     # a quick run at a tenth of the sizes
 *   AGENT_VAULT_BENCH_PG_URL=postgres://…  use that server (databases are created and dropped there)
 *
 * Both tools run as separate processes (ours is the built CLI, dist/cli.js, as users run it) under
 * /usr/bin/time for wall time and peak RSS. pg_dump dumps the whole database (Letta's schema holds
 * only the generated data); pg_restore loads it into an empty database. Our restore loads into an
 * empty database that already has Letta's schema (its DDL takes well under a second and is not timed).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openPg } from '../src/db/pg';
import { createLettaSchema } from '../src/letta/ddl';
import { generateSyntheticDb } from '../src/letta/synth';
import { startTestPostgres, type TestPostgres } from '../test/helpers/pgcluster';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

interface Timed {
  seconds: number;
  maxRssMB: number;
  stdout: string;
}

/** Runs a command under GNU time: wall seconds and peak RSS of the process. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Timed {
  const r = spawnSync('/usr/bin/time', ['-f', '@@TIME %e %M', cmd, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  const m = /@@TIME ([\d.]+) (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  return { seconds: Number(m[1]), maxRssMB: Number(m[2]) / 1024, stdout: r.stdout };
}

async function main(): Promise<void> {
  const scale = arg('scale', 1);
  const agents = arg('agents', 20);
  const dim = arg('dim', 1536);
  const sizes = [0.5, 1].map((f) => ({ messages: Math.round(200_000 * f * scale), passages: Math.round(50_000 * f * scale) }));
  if (!existsSync(CLI)) throw new Error('build first: node scripts/build.mjs');
  const server: TestPostgres = await startTestPostgres();
  const work = mkdtempSync(path.join(tmpdir(), 'av-bench-er-'));
  const rows: string[] = [];
  let ok = true;
  const rss: number[] = [];
  try {
    for (const [i, size] of sizes.entries()) {
      const src = await server.createDatabase({ name: `bench_src_${i}_${process.pid}` });
      const db = await openPg({ url: src.url });
      try {
        await createLettaSchema(db);
        const t0 = Date.now();
        await generateSyntheticDb(db, {
          agents,
          messagesPerAgent: Math.round(size.messages / agents),
          passagesPerAgent: Math.round(size.passages / agents),
          dim,
          seed: 42 + i,
        });
        await db.exec('VACUUM ANALYZE');
        console.log(`size ${i + 1}: generated ${agents} agents, ${size.messages} messages, ${size.passages} passages of ${dim} dims in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      } finally {
        await db.close();
      }

      // --- export vs pg_dump -Fc
      const archive = path.join(work, `snap-${i}.avsnap`);
      const dump = path.join(work, `dump-${i}.pgdump`);
      const ours = timed(process.execPath, [CLI, 'export', '--db', src.url, '--all', '-o', archive, '--quiet']);
      const theirs = timed('pg_dump', ['-Fc', '-f', dump, '-d', src.url]);

      // --- restore vs pg_restore, each into an empty database
      const tgtOurs = await server.createDatabase({ name: `bench_ours_${i}_${process.pid}` });
      const tdb = await openPg({ url: tgtOurs.url });
      try {
        await createLettaSchema(tdb);
      } finally {
        await tdb.close();
      }
      const oursR = timed(process.execPath, [CLI, 'restore', archive, '--db', tgtOurs.url, '--quiet']);
      const tgtTheirs = await server.createDatabase({ name: `bench_theirs_${i}_${process.pid}` });
      const theirsR = timed('pg_restore', ['-d', tgtTheirs.url, '--no-owner', dump]);

      // sanity: both targets hold the data
      const check = async (url: string) => {
        const c = await openPg({ url, schema: 'letta' });
        try {
          const r = await c.query<{ m: number; p: number }>('SELECT (SELECT count(*)::int FROM messages) AS m, (SELECT count(*)::int FROM archival_passages) AS p');
          return r.rows[0];
        } finally {
          await c.close();
        }
      };
      const [co, ct] = [await check(tgtOurs.url), await check(tgtTheirs.url)];
      if (co.m !== ct.m || co.p !== ct.p) throw new Error(`row counts differ after restore: ours ${JSON.stringify(co)}, pg_restore ${JSON.stringify(ct)}`);

      const exportRatio = ours.seconds / theirs.seconds;
      const restoreRatio = oursR.seconds / theirsR.seconds;
      const peak = Math.max(ours.maxRssMB, oursR.maxRssMB);
      rss.push(peak);
      ok &&= exportRatio <= 1 && restoreRatio <= 1 && peak <= 300;
      rows.push(
        `| ${size.messages} msgs + ${size.passages} passages | ${ours.seconds.toFixed(1)} s / ${theirs.seconds.toFixed(1)} s = **${exportRatio.toFixed(2)}x** | ` +
          `${oursR.seconds.toFixed(1)} s / ${theirsR.seconds.toFixed(1)} s = **${restoreRatio.toFixed(2)}x** | ` +
          `${ours.maxRssMB.toFixed(0)} / ${oursR.maxRssMB.toFixed(0)} MB | ${(statSync(archive).size / 1048576).toFixed(0)} MB / ${(statSync(dump).size / 1048576).toFixed(0)} MB |`,
      );
      console.log(rows[rows.length - 1]);
      for (const d of [src, tgtOurs, tgtTheirs]) await server.dropDatabase(d.name).catch(() => undefined);
      rmSync(archive, { force: true });
      rmSync(dump, { force: true });
    }
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const flat = rss.length === 2 ? rss[1] / rss[0] : 1;
  console.log('\nbench/export-restore (same server, same run)');
  console.log('| data | export: ours / pg_dump -Fc | restore: ours / pg_restore | peak RSS export / restore | archive / dump size |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log(`peak RSS growth from the smaller to the larger size: ${flat.toFixed(2)}x (flat means ~1.0)`);
  const flatOk = flat < 1.25;
  console.log(`targets: export ≤ 1.0x, restore ≤ 1.0x, peak RSS ≤ 300 MB: ${ok ? 'PASS' : 'FAIL'}; RSS flat (< 1.25x growth): ${flatOk ? 'PASS' : 'FAIL'}`);
  process.exitCode = ok && flatOk ? 0 : 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
