/**
 * bench/dedup: the deduplicating store (src/vault/store/) on a generated Letta database in
 * embedded PGlite: bytes added and time of a first ingest, of a second ingest of an unchanged
 * export, and of an ingest after 1 % more messages and 1 % changed passages; and the time to
 * export a snapshot back out of the store, against a full export from the database.
 *
 *   npx tsx bench/dedup.ts                       # 2 agents × 20k messages + 5k passages, 1536 dims
 *   npx tsx bench/dedup.ts --messages 100000 --passages 25000 --agents 2
 *   npx tsx bench/dedup.ts --encrypted           # an encrypted store (scrypt N = 2^14 to keep it short)
 *
 * Targets of issue 15 (measured on its 200k + 50k database): second ingest adds < 1 % of the first
 * and takes < 25 % of a full export's time; after the 1 % changes < 3 %.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openPglite } from '../src/db/pglite';
import { keyFromPassphrase } from '../src/format/crypto';
import { createLettaSchema } from '../src/letta/ddl';
import { exportAgents } from '../src/letta/export';
import { generateSyntheticDb } from '../src/letta/synth';
import { LocalStore } from '../src/vault/remote/store';
import { exportSnapshotToArchive, ingestArchive, initStore, openRepo, storeBytes } from '../src/vault/store/repo';
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

async function main(): Promise<void> {
  const agents = arg('agents', 2);
  const messages = arg('messages', 20000);
  const passages = arg('passages', 5000);
  const dim = arg('dim', 1536);
  const encrypted = process.argv.includes('--encrypted');
  const dir = mkdtempSync(path.join(tmpdir(), 'av-bench-dedup-'));
  const db = await openPglite();
  try {
    await createLettaSchema(db);
    const g = await timed(() => generateSyntheticDb(db, { agents, messagesPerAgent: Math.round(messages / agents), passagesPerAgent: Math.round(passages / agents), dim, seed: 15 }));
    console.log(`generated ${agents} agents, ${g.v.messages} messages, ${g.v.passages} passages (${dim} dims) in ${g.s.toFixed(1)} s`);
    const a1 = path.join(dir, 'day1.avsnap');
    const e1 = await timed(() => exportAgents(db, { select: { all: true }, out: a1 }));
    const size1 = statSync(a1).size;
    const store = new LocalStore(path.join(dir, 'vault'));
    const key = encrypted ? await keyFromPassphrase('bench passphrase', { scrypt: { N: 2 ** 14 } }) : undefined;
    await initStore(store, { key });
    const repo = await openRepo(store, encrypted ? { passphrase: 'bench passphrase' } : {});
    const i1 = await timed(() => ingestArchive(repo, a1));
    const a1b = path.join(dir, 'day1-again.avsnap');
    const e1b = await timed(() => exportAgents(db, { select: { all: true }, out: a1b }));
    const i2 = await timed(() => ingestArchive(repo, a1b));
    await changeOnePercent(db);
    const a2 = path.join(dir, 'day2.avsnap');
    const e2 = await timed(() => exportAgents(db, { select: { all: true }, out: a2 }));
    const i3 = await timed(() => ingestArchive(repo, a2));
    const x = await timed(() => exportSnapshotToArchive(repo, i3.v.snapshotId, path.join(dir, 'out.avsnap')));
    const rows: Array<[string, string, string, string]> = [
      ['full export from the database (day 1)', `${e1.s.toFixed(2)} s`, `${mb(size1)} MB archive`, ''],
      ['first ingest into the store', `${i1.s.toFixed(2)} s`, `${mb(i1.v.bytesAdded)} MB added`, `${i1.v.newBlobs} blobs`],
      ['second ingest, unchanged export', `${i2.s.toFixed(2)} s (${((100 * i2.s) / e1.s).toFixed(0)} % of the export)`, `${i2.v.bytesAdded} B added (${((100 * i2.v.bytesAdded) / i1.v.bytesAdded).toFixed(3)} %)`, `${i2.v.newBlobs} new blobs`],
      ['ingest after 1 % more messages, 1 % changed passages', `${i3.s.toFixed(2)} s`, `${mb(i3.v.bytesAdded)} MB added (${((100 * i3.v.bytesAdded) / i1.v.bytesAdded).toFixed(2)} %)`, `${i3.v.newBlobs} new blobs`],
      ['export of day 2 from the store to a .avsnap', `${x.s.toFixed(2)} s`, `${mb(x.v.bytes)} MB`, ''],
    ];
    console.log(`\n${encrypted ? 'encrypted' : 'plain'} store, exports took ${e1.s.toFixed(2)} / ${e1b.s.toFixed(2)} / ${e2.s.toFixed(2)} s\n`);
    console.log('| step | time | bytes | |\n|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.join(' | ')} |`);
    console.log(`\nstore footprint: ${mb(await storeBytes(repo))} MB for 3 snapshots of ${mb(i1.v.bytesRead)} MB plaintext each; peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
