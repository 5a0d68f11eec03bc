import { openPg } from '../src/db/pg';
import { createLettaSchema } from '../src/letta/ddl';
import { generateSyntheticDb } from '../src/letta/synth';
import { S3Store } from '../src/vault/remote/s3';
import { initStoreVault, storeBackup } from '../src/vault/store-vault';
import { openStoreVaultSnapshot } from '../src/vault/store-read';
import { restoreAgents } from '../src/letta/restore';
import { startMoto, TEST_CREDS } from '../test/helpers/moto';
import { startTestPostgres } from '../test/helpers/pgcluster';

async function main() {
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey });
  const pg = await startTestPostgres();
  const moto = await startMoto();
  const stats: Record<string, { n: number; ms: number; bytes: number }> = {};
  for (const m of ['readRange', 'readBytes', 'head', 'writeBytes', 'delete'] as const) {
    const orig = (S3Store.prototype as any)[m];
    (S3Store.prototype as any)[m] = async function (...a: any[]) {
      const t = Date.now();
      const r = await orig.apply(this, a);
      const s = (stats[m] ??= { n: 0, ms: 0, bytes: 0 });
      s.n++; s.ms += Date.now() - t; s.bytes += Buffer.isBuffer(r) ? r.length : 0;
      return r;
    };
  }
  try {
    await moto.createBucket('prof-bucket');
    const src = await pg.createDatabase({ name: 'prof_src' });
    const db = await openPg({ url: src.url });
    await createLettaSchema(db);
    await generateSyntheticDb(db, { agents: 20, messagesPerAgent: 1250, passagesPerAgent: 312, dim: 1536, seed: 7 });
    const loc = moto.location('prof-bucket', 'sv');
    await initStoreVault(loc);
    await storeBackup({ config: { vault: loc, source: { kind: 'pglite', dataDir: '/x' }, agents: { all: true } } as any, db });
    await db.close();
    for (const k of Object.keys(stats)) delete stats[k];
    const t = await pg.createDatabase({ name: 'prof_t' });
    const tdb = await openPg({ url: t.url });
    await createLettaSchema(tdb);
    const t0 = Date.now();
    let reader: any;
    const marks: string[] = [];
    await restoreAgents(tdb, { open: async () => { const s = await openStoreVaultSnapshot(loc, 'latest'); marks.push(`opened ${Date.now() - t0}`); reader = s.reader; return reader; } });
    console.log('restore ms', Date.now() - t0, marks, JSON.stringify(stats), JSON.stringify(reader.cacheStats()), reader.manifest.entries.length);
    await tdb.close();
    const store = new S3Store(loc);
    const packs: any[] = [];
    for await (const o of store.list('store/data/')) packs.push(o);
    packs.sort((a, b) => b.size - a.size);
    console.log('packs', packs.length, packs.slice(0, 3).map((p) => p.size));
    let t1 = Date.now();
    const full = await store.readBytes(packs[0].key);
    console.log('full GET', full!.length, Date.now() - t1, 'ms');
    t1 = Date.now();
    const r = await store.readRange(packs[0].key, 0, 4 * 1024 * 1024);
    console.log('range GET 4MiB', r.length, Date.now() - t1, 'ms');
    t1 = Date.now();
    const r2 = await store.readRange(packs[0].key, 1000, 64 * 1024);
    console.log('range GET 64KiB', r2.length, Date.now() - t1, 'ms');
    await store.close();
  } finally {
    await moto.stop();
    await pg.stop();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
