/**
 * Store vaults in object storage (docs/VAULT.md "Store vaults in object storage"): the
 * deduplicating store on `s3://bucket/prefix` (moto on 127.0.0.1), from a real PostgreSQL 15 +
 * pgvector source, through the built CLI where it matters: `vault init --store`, two backups (the
 * second adds < 1 % of the first, measured by listing the bucket), `diff`/`inspect` of
 * `s3://…#latest` against a direct export, `vault export`, `status`, `drill`, `verify --read-data`
 * naming the snapshots and agents of a damaged pack object (exit 1), `prune` with its sweep (and a
 * sweep stopped after its new index is written loses nothing), and `vault copy` of a store vault
 * to a local folder and back (only what the target lacks; a folder of archives is refused, exit 2).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { openPg } from '../../src/db/pg';
import type { Db } from '../../src/db/types';
import { diffPaths } from '../../src/diff';
import { readManifest } from '../../src/format/archive';
import { createLettaSchema } from '../../src/letta/ddl';
import { runBackup } from '../../src/vault/backup';
import type { VaultConfig } from '../../src/vault/config';
import { LocalStore, type ObjectStore } from '../../src/vault/remote/store';
import { S3Store } from '../../src/vault/remote/s3';
import { copySnapshots, ingestArchive, openRepo } from '../../src/vault/store/repo';
import { exportStoreSnapshot, listStoreVault, pruneStoreVault, remoteLockTimings, storeBackup, verifyStoreVault } from '../../src/vault/store-vault';
import { sharedTestPostgres } from '../helpers/global-pg';
import { ensureCliBuilt, runCli, STACK_TRACE } from '../helpers/cli';
import { listBucket, startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { addSyntheticPassages, seedFixtures } from './letta-data';
import { makeTmpRoot } from './helpers';

const FIXTURES = ['lettabot-builder.v2.af', 'void.v2.af', 'customer-service.v1.af'];
const BUCKET = 'av-store';

async function entriesOf(file: string): Promise<Array<[string, number, string]>> {
  return (await readManifest(file)).entries.map((e) => [e.name, e.size, e.sha256]);
}

/** The store, but every write of a key under `prefix` fails (a run killed just before it). */
function cutBefore(store: ObjectStore, prefix: string): ObjectStore {
  return new Proxy(store, {
    get(t, k) {
      if (k === 'writeBytes')
        return async (key: string, data: Buffer | string, o?: { ifAbsent?: boolean }) => {
          if (key.startsWith(prefix)) throw new Error(`cut before ${key}`);
          return t.writeBytes(key, data, o);
        };
      const v = (t as unknown as Record<string | symbol, unknown>)[k];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}
const total = (m: Map<string, number>): number => [...m.values()].reduce((n, x) => n + x, 0);

describe('store vaults on s3:// (moto) from PostgreSQL', function () {
  this.timeout(180000);
  const tmp = makeTmpRoot('s3-store-vault');
  let moto: MotoServer;
  let client: S3Client;
  let db: Db;
  let url: string;
  let agents: string[];
  let loc: string;
  let dropLater: string[];
  let directVault = '';
  let directArchive = '';
  let keptOut = '';
  const ids: string[] = [];
  let firstAdded = 0;
  const env = (): NodeJS.ProcessEnv => ({ AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey, SRC_URL: url });
  const config = (vault: string): VaultConfig => ({ vault, source: { kind: 'pglite', dataDir: '/not-used' }, probes: { perAgent: 3, topK: 5 } });

  before(async () => {
    ensureCliBuilt();
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    remoteLockTimings.settleMs = 50;
    moto = await startMoto();
    await moto.createBucket(BUCKET);
    client = moto.client();
    loc = moto.location(BUCKET, 'team/nightly');
    const server = await sharedTestPostgres();
    url = (await server.createDatabase()).url;
    db = await openPg({ url });
    await createLettaSchema(db);
    agents = await seedFixtures(db, FIXTURES);
    await addSyntheticPassages(db, agents[0], 1200, 's3-store-a');
    dropLater = await addSyntheticPassages(db, agents[2], 400, 's3-store-b');
  });
  after(async () => {
    delete remoteLockTimings.settleMs;
    client?.destroy();
    await db?.close();
    await moto?.stop();
    tmp.cleanup();
  });

  it('vault init --store creates the store in the bucket; a backup (CLI) and a second one add < 1 % of the first, measured by listing the bucket', async () => {
    const init = runCli(['vault', 'init', '--store', '--vault', loc], { env: env() });
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /store vault created: s3:\/\/av-store\/team\/nightly\/store/);
    assert.ok((await listBucket(client, BUCKET, 'team/nightly/')).has('team/nightly/store/config.json'));
    const again = runCli(['vault', 'init', '--store', '--vault', loc], { env: env() });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /is a store vault already/);

    const cfgFile = path.join(tmp.dir('cfg'), 'agent-vault.json');
    fs.writeFileSync(cfgFile, JSON.stringify({ vault: loc, source: { kind: 'postgres', urlEnv: 'SRC_URL' }, agents: { all: true }, probes: { perAgent: 3, topK: 5 } }));
    const before0 = total(await listBucket(client, BUCKET, 'team/nightly/store/'));
    const b1 = runCli(['backup', '-c', cfgFile, '--json'], { env: env() });
    assert.equal(b1.code, 0, b1.stdout + b1.stderr);
    const j1 = JSON.parse(b1.stdout);
    assert.equal(j1.store, true);
    ids.push(j1.snapshot.id);
    const after1 = await listBucket(client, BUCKET, 'team/nightly/');
    firstAdded = total(new Map([...after1].filter(([k]) => k.startsWith('team/nightly/store/')))) - before0;
    assert.equal(firstAdded, j1.bytes_added, 'the bytes the backup reports are the bytes the bucket grew by');
    assert.ok(firstAdded > 500_000, `first backup added ${firstAdded} bytes`);
    assert.ok(![...after1.keys()].some((k) => k.endsWith('.avsnap') || k.includes('/.tmp/') || k.endsWith('/.lock')), [...after1.keys()].join('\n'));

    const b2 = await storeBackup({ config: config(loc), db });
    ids.push(b2.id);
    const after2 = await listBucket(client, BUCKET, 'team/nightly/store/');
    const secondAdded = total(after2) - total(new Map([...after1].filter(([k]) => k.startsWith('team/nightly/store/'))));
    const ratio = secondAdded / firstAdded;
    assert.equal(secondAdded, b2.ingest.bytesAdded);
    assert.ok(ratio < 0.01, `second backup added ${secondAdded} bytes = ${(ratio * 100).toFixed(3)} % of the first (${firstAdded})`);
    console.log(`      s3 store vault: first backup added ${firstAdded} B to the bucket, the second ${secondAdded} B (${(ratio * 100).toFixed(3)} %)`);
    const log = (await moto
      .client()
      .send(new GetObjectCommand({ Bucket: BUCKET, Key: 'team/nightly/runs.jsonl' }))
      .then((r) => r.Body!.transformToString())) as string;
    assert.deepEqual(
      log
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .map((l) => [l.command, l.ok, l.snapshot]),
      [
        ['backup', true, ids[0]],
        ['backup', true, ids[1]],
      ],
    );
  });

  it('s3://…#latest reads the snapshot from the store: diff against a direct export shows no change; inspect, vault export, status and drill read it', async () => {
    directVault = path.join(tmp.dir('direct'), 'vault');
    const direct = await runBackup({ config: config(directVault), db });
    directArchive = direct.path;
    const diff = runCli(['diff', direct.path, `${loc}#latest`, '--format', 'json', '--exit-code'], { env: env() });
    assert.equal(diff.code, 0, diff.stdout + diff.stderr);
    assert.equal(JSON.parse(diff.stdout).identical, true);
    const insp = runCli(['inspect', `${loc}#${ids[0]}`], { env: env() });
    assert.equal(insp.code, 0, insp.stderr);
    // restore s3://…#latest into an empty Letta database: every agent and passage of the source
    const { url: target } = await (await sharedTestPostgres()).createDatabase();
    const tdb = await openPg({ url: target });
    try {
      await createLettaSchema(tdb);
      const rs = runCli(['restore', `${loc}#latest`, '--db', target], { env: env() });
      assert.equal(rs.code, 0, rs.stdout + rs.stderr);
      for (const t of ['agents', 'messages', 'archival_passages']) {
        const q = `SELECT count(*)::int AS n FROM ${t}`;
        assert.equal((await tdb.query<{ n: number }>(q)).rows[0].n, (await db.query<{ n: number }>(q)).rows[0].n, t);
      }
    } finally {
      await tdb.close();
    }
    const out = path.join(tmp.dir('export'), 'x.avsnap');
    const e = runCli(['vault', 'export', 'latest', '--vault', loc, '-o', out], { env: env() });
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, new RegExp(`snapshot ${ids[1]}`));
    assert.equal((await diffPaths(direct.path, out)).identical, true);
    const st = runCli(['status', '--vault', loc, '--snapshots', '--json'], { env: env() });
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout);
    assert.deepEqual(
      s.snapshot_list.map((x: { id: string }) => x.id),
      ids,
    );
    assert.deepEqual(s.agents.map((a: { id: string }) => a.id).sort(), [...agents].sort());
    assert.equal(s.missing.length, 0);
    const reports = tmp.dir('drills');
    const d = runCli(['drill', 'latest', '--vault', loc, '--report-dir', reports], { env: env() });
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.match(d.stdout, /^drill PASSED/);
    assert.ok(fs.readdirSync(reports).some((f) => f.endsWith('.json')));
    const none = runCli(['diff', direct.path, `${loc}#no-such-snapshot`], { env: env() });
    assert.equal(none.code, 2, none.stdout + none.stderr);
    assert.match(none.stderr, /has no snapshot "no-such-snapshot"/);
    assert.doesNotMatch(none.stderr, STACK_TRACE);
  });

  it('verify --read-data reads every pack object; a damaged one is named with the snapshots and agents it affects (exit 1)', async () => {
    const ok = runCli(['verify', '--vault', loc, '--read-data'], { env: env() });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /2 snapshot\(s\), \d+ pack\(s\), \d+ chunk\(s\) checked; \d+ pack\(s\) read .*: all ok/);
    const sub = runCli(['verify', '--vault', loc, '--read-data-subset', '1/2'], { env: env() });
    assert.equal(sub.code, 0, sub.stdout + sub.stderr);
    // damage the largest pack object (one agent's passages), then put it back
    const packs = [...(await listBucket(client, BUCKET, 'team/nightly/store/data/'))].sort((a, b) => b[1] - a[1]);
    const key = packs[0][0];
    const orig = Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray());
    const bad = Buffer.from(orig);
    bad[100] ^= 0xff;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bad }));
    try {
      const v = runCli(['verify', '--vault', loc, '--read-data'], { env: env() });
      assert.equal(v.code, 1, v.stdout + v.stderr);
      assert.match(v.stdout, new RegExp(`DAMAGED damaged-pack ${key.replace('team/nightly/', '')}`));
      assert.match(v.stdout, new RegExp(`affects snapshot\\(s\\): ${ids[0]}, ${ids[1]}|affects snapshot\\(s\\): ${ids[1]}, ${ids[0]}`));
      assert.match(v.stdout, /affects agent\(s\): .+\(agent-[0-9a-f-]+\)/);
      const r = await verifyStoreVault(loc, { readData: true });
      const p = r.problems.find((x) => x.kind === 'damaged-pack')!;
      assert.equal(p.snapshots.length, 2);
      assert.ok(p.agents.length >= 1 && p.agents.every((a) => agents.includes(a)));
    } finally {
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: orig }));
    }
  });

  it('prune applies retention and sweeps under the bucket lock; a sweep stopped after writing its new index loses nothing a kept snapshot needs', async () => {
    // a third snapshot without one agent's 400 synthetic passages: forgetting the first two frees their packs
    await db.query(`DELETE FROM archival_passages WHERE id = ANY($1)`, [dropLater]);
    const third = await storeBackup({ config: config(loc), db });
    ids.push(third.id);
    keptOut = path.join(tmp.dir('kept'), 'kept.avsnap');
    await exportStoreSnapshot(loc, third.id, keptOut);
    const kept = await entriesOf(keptOut);
    let hit = false;
    await assert.rejects(
      pruneStoreVault(loc, {
        policy: { keepLast: 1 },
        faultHook: (p) => {
          if (p === 'index-written') {
            hit = true;
            throw new Error('killed after the new index');
          }
        },
      }),
      /killed after the new index/,
    );
    assert.ok(hit, 'the sweep reached its new index');
    assert.ok(!(await listBucket(client, BUCKET, 'team/nightly/.lock')).size, 'the bucket lock is released');
    const o1 = path.join(tmp.dir('after-crash'), 'a.avsnap');
    await exportStoreSnapshot(loc, third.id, o1);
    assert.deepEqual(await entriesOf(o1), kept);
    const check = await verifyStoreVault(loc, { readData: true });
    assert.equal(check.ok, true, JSON.stringify(check.problems));

    const before = total(await listBucket(client, BUCKET, 'team/nightly/store/'));
    const p = runCli(['prune', '--vault', loc, '--keep-last', '1'], { env: env() });
    assert.equal(p.code, 0, p.stdout + p.stderr);
    // the stopped run forgot the two old snapshots before its sweep: this one finishes the sweep
    assert.match(p.stdout, /kept 1, deleted 0 snapshot\(s\); swept \d+ unreferenced chunk\(s\)/);
    const after = total(await listBucket(client, BUCKET, 'team/nightly/store/'));
    assert.ok(after < before, `the bucket shrank: ${before} → ${after} bytes`);
    assert.deepEqual(
      (await listStoreVault(loc)).map((s) => s.vault_id),
      [third.id],
    );
    const o2 = path.join(tmp.dir('after-prune'), 'b.avsnap');
    await exportStoreSnapshot(loc, 'latest', o2);
    assert.deepEqual(await entriesOf(o2), kept);
    const v = runCli(['verify', '--vault', loc, '--read-data'], { env: env() });
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.doesNotMatch(v.stdout, /note: /, 'nothing unindexed or unexpected is left');
  });

  it('vault copy: s3 store → local folder (created) → again (skips all) → a new local snapshot back to s3 (only the new packs); a folder of archives is refused (exit 2)', async () => {
    const local = path.join(tmp.dir('copy'), 'vault');
    const c1 = runCli(['vault', 'copy', loc, local, '--json'], { env: env() });
    assert.equal(c1.code, 0, c1.stdout + c1.stderr);
    const j1 = JSON.parse(c1.stdout);
    assert.deepEqual([j1.created, j1.copied, j1.skipped], [true, 1, 0]);
    assert.ok(j1.packsCopied > 0);
    const vl = runCli(['verify', '--vault', local, '--read-data'], { env: env() });
    assert.equal(vl.code, 0, vl.stdout + vl.stderr);
    const o = path.join(tmp.dir('copy-out'), 'c.avsnap');
    await exportStoreSnapshot(local, 'latest', o);
    assert.deepEqual(await entriesOf(o), await entriesOf(keptOut));

    const c2 = runCli(['vault', 'copy', loc, local], { env: env() });
    assert.equal(c2.code, 0, c2.stdout + c2.stderr);
    assert.match(c2.stdout, /0 snapshot\(s\) copied, 1 already there; 0 pack\(s\) copied/);

    // a new snapshot in the local copy goes back up: only what the bucket lacks
    await addSyntheticPassages(db, agents[1], 50, 's3-store-c');
    const b = await storeBackup({ config: config(local), db });
    const storeBefore = total(await listBucket(client, BUCKET, 'team/nightly/store/'));
    const c3 = runCli(['vault', 'copy', local, loc, '--json'], { env: env() });
    assert.equal(c3.code, 0, c3.stdout + c3.stderr);
    const j3 = JSON.parse(c3.stdout);
    assert.deepEqual([j3.created, j3.copied, j3.skipped], [false, 1, 1]);
    const grew = total(await listBucket(client, BUCKET, 'team/nightly/store/')) - storeBefore;
    assert.equal(grew, j3.bytesCopied, 'the bytes reported are the bytes the bucket grew by');
    assert.ok(grew <= b.ingest.bytesAdded * 1.5 + 65536, `copied ${grew} bytes for a snapshot that added ${b.ingest.bytesAdded} locally`);
    assert.ok(grew < storeBefore * 0.2, `copied ${grew} bytes into a store of ${storeBefore}`);
    assert.deepEqual((await listStoreVault(loc)).map((s) => s.vault_id).sort(), [ids[2], b.id].sort());
    const vr = runCli(['verify', '--vault', loc, '--read-data'], { env: env() });
    assert.equal(vr.code, 0, vr.stdout + vr.stderr);

    // a folder vault of single-file archives is not converted: exit 2, nothing written
    const mixed = runCli(['vault', 'copy', loc, directVault], { env: env() });
    assert.equal(mixed.code, 2, mixed.stdout + mixed.stderr);
    assert.match(mixed.stderr, /is a store vault and .* is a folder of archives: "vault copy" does not convert between them; nothing was copied/);
    assert.match(mixed.stderr, /hint: .*vault export/);
    assert.ok(!fs.existsSync(path.join(directVault, 'store')));
    const back = runCli(['vault', 'copy', directVault, loc], { env: env() });
    assert.equal(back.code, 2, back.stdout + back.stderr);
    assert.match(back.stderr, /is a folder of archives and .* is a store vault/);
    assert.doesNotMatch(mixed.stderr + back.stderr, STACK_TRACE);
  });

  it('a backup or a copy cut short before its snapshot file leaves no visible snapshot; the next copy reuses the packs it left (checked)', async () => {
    const s3 = new S3Store(loc);
    try {
      const before = (await listStoreVault(loc)).map((x) => x.id);
      const repo = await openRepo(cutBefore(s3, 'store/snapshots/'), { prefix: 'store/' });
      await assert.rejects(ingestArchive(repo, directArchive), /cut before store\/snapshots\//);
      assert.deepEqual(
        (await listStoreVault(loc)).map((x) => x.id),
        before,
        'no snapshot became visible',
      );
      const v = await verifyStoreVault(loc, { readData: true });
      assert.equal(v.ok, true, JSON.stringify(v.problems));

      // a copy to a new local store cut before its snapshot files
      const dir = path.join(tmp.dir('cut-copy'), 'vault');
      const local = new LocalStore(dir);
      await local.writeBytes('store/config.json', (await s3.readBytes('store/config.json'))!);
      const src = await openRepo(s3, { prefix: 'store/' });
      const dst = await openRepo(cutBefore(local, 'store/snapshots/'), { prefix: 'store/' });
      await assert.rejects(copySnapshots(src, dst, before), /cut before store\/snapshots\//);
      assert.equal((await listStoreVault(dir)).length, 0, 'nothing visible at the target');
      const c = runCli(['vault', 'copy', loc, dir, '--json'], { env: env() });
      assert.equal(c.code, 0, c.stdout + c.stderr);
      const j = JSON.parse(c.stdout);
      assert.equal(j.copied, before.length);
      // the cut copy had written the first snapshot's packs and their index: only its snapshot file is left to copy
      const first = j.items.find((i: { snapshot: string }) => i.snapshot === before[0]);
      assert.equal(first.packs, 0, `the packs the cut copy left are reused: ${c.stdout}`);
      const vl = runCli(['verify', '--vault', dir, '--read-data'], { env: env() });
      assert.equal(vl.code, 0, vl.stdout + vl.stderr);
    } finally {
      await s3.close();
    }
  });
});
