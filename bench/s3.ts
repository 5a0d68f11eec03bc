/**
 * bench/s3: backup to and restore from an S3-compatible server (moto on 127.0.0.1) against the
 * same on local disk, measured in one run, each as the built CLI under /usr/bin/time (wall time,
 * peak RSS). Target (issue 16): peak RSS ≤ 300 MB whatever the size; the S3 path's time is
 * reported as a ratio of the local one (moto is a Python server: a real object store is faster).
 * The last rows: the same database backed up into a store vault in the bucket (`vault init
 * --store`), and restored from it in place (ranged reads of its packs, a local cache for the
 * restore's second read; no temporary archive), against the restore of the local archive.
 *
 *   node scripts/build.mjs && npx tsx bench/s3.ts              # 20 agents, 100k messages + 25k passages (1536 dims)
 *   npx tsx bench/s3.ts --scale 0.2                             # smaller
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openPg } from '../src/db/pg';
import { createLettaSchema } from '../src/letta/ddl';
import { generateSyntheticDb } from '../src/letta/synth';
import { readStoreIndex } from '../src/vault/remote/copy';
import { S3Store } from '../src/vault/remote/s3';
import { readIndex } from '../src/vault/vault';
import { startMoto, TEST_CREDS } from '../test/helpers/moto';
import { startTestPostgres } from '../test/helpers/pgcluster';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function timed(args: string[], env: NodeJS.ProcessEnv): { seconds: number; maxRssMB: number; stdout: string } {
  const r = spawnSync('/usr/bin/time', ['-f', '@@TIME %e %M', process.execPath, CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  const m = /@@TIME ([\d.]+) (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`agent-vault ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  return { seconds: Number(m[1]), maxRssMB: Number(m[2]) / 1024, stdout: r.stdout };
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error('build first: node scripts/build.mjs');
  const scale = arg('scale', 1);
  const agents = 20;
  const messages = Math.round(100_000 * scale);
  const passages = Math.round(25_000 * scale);
  const pg = await startTestPostgres();
  const moto = await startMoto();
  const work = mkdtempSync(path.join(tmpdir(), 'av-bench-s3-'));
  try {
    await moto.createBucket('bench-vault');
    const src = await pg.createDatabase({ name: `bench_s3_src_${process.pid}` });
    const db = await openPg({ url: src.url });
    try {
      await createLettaSchema(db);
      await generateSyntheticDb(db, { agents, messagesPerAgent: Math.round(messages / agents), passagesPerAgent: Math.round(passages / agents), dim: 1536, seed: 7 });
    } finally {
      await db.close();
    }
    const env = { SRC_URL: src.url, AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey });
    const s3loc = moto.location('bench-vault', 'nightly');
    const cfg = (vault: string): string => {
      const f = path.join(work, `cfg-${vault.startsWith('s3:') ? 's3' : 'local'}.json`);
      writeFileSync(f, JSON.stringify({ vault, source: { kind: 'postgres', urlEnv: 'SRC_URL' }, agents: { all: true } }));
      return f;
    };
    const localVault = path.join(work, 'vault');
    const bLocal = timed(['backup', '-c', cfg(localVault)], env);
    const bS3 = timed(['backup', '-c', cfg(s3loc)], env);
    const store = new S3Store(s3loc);
    const rec = (await readStoreIndex(store))!.snapshots[0];
    await store.close();
    const archive = path.join(localVault, (await readIndex(localVault)).snapshots[0].file);
    const target = async (name: string): Promise<string> => {
      const t = await pg.createDatabase({ name: `${name}_${process.pid}` });
      const tdb = await openPg({ url: t.url });
      await createLettaSchema(tdb);
      await tdb.close();
      return t.url;
    };
    const rLocal = timed(['restore', archive, '--db', await target('bench_s3_rl'), '--quiet'], env);
    const rS3 = timed(['restore', `${s3loc}#${rec.id}`, '--db', await target('bench_s3_rs'), '--quiet'], env);
    // a store vault in the bucket: backup into it, then restore from it in place
    const storeLoc = moto.location('bench-vault', 'store-vault');
    timed(['vault', 'init', '--store', '--vault', storeLoc], env);
    const bStore = timed(['backup', '-c', cfg(storeLoc)], env);
    const rStore = timed(['restore', `${storeLoc}#latest`, '--db', await target('bench_s3_rst'), '--quiet'], env);
    const mb = (rec.bytes / 1048576).toFixed(0);
    const rows = [
      `| backup ${messages / 1000}k msgs + ${passages / 1000}k passages (${mb} MB snapshot) | ${bLocal.seconds.toFixed(1)} s, ${bLocal.maxRssMB.toFixed(0)} MB | ${bS3.seconds.toFixed(1)} s, ${bS3.maxRssMB.toFixed(0)} MB | ${(bS3.seconds / bLocal.seconds).toFixed(2)}x |`,
      `| restore of that snapshot | ${rLocal.seconds.toFixed(1)} s, ${rLocal.maxRssMB.toFixed(0)} MB | ${rS3.seconds.toFixed(1)} s, ${rS3.maxRssMB.toFixed(0)} MB | ${(rS3.seconds / rLocal.seconds).toFixed(2)}x |`,
      `| backup into an s3:// store vault | ${bLocal.seconds.toFixed(1)} s, ${bLocal.maxRssMB.toFixed(0)} MB | ${bStore.seconds.toFixed(1)} s, ${bStore.maxRssMB.toFixed(0)} MB | ${(bStore.seconds / bLocal.seconds).toFixed(2)}x |`,
      `| restore from the s3:// store vault, in place (vs the local archive) | ${rLocal.seconds.toFixed(1)} s, ${rLocal.maxRssMB.toFixed(0)} MB | ${rStore.seconds.toFixed(1)} s, ${rStore.maxRssMB.toFixed(0)} MB | ${(rStore.seconds / rLocal.seconds).toFixed(2)}x |`,
    ];
    console.log('\n| step | local disk (time, peak RSS) | S3 via moto (time, peak RSS) | S3 / local |\n|---|---|---|---|');
    for (const r of rows) console.log(r);
    const peak = Math.max(bS3.maxRssMB, rS3.maxRssMB, bStore.maxRssMB, rStore.maxRssMB);
    console.log(`\npeak RSS on the S3 path: ${peak.toFixed(0)} MB (target ≤ 300 MB): ${peak <= 300 ? 'PASS' : 'FAIL'}`);
    if (peak > 300) process.exitCode = 1;
  } finally {
    await moto.stop();
    await pg.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
