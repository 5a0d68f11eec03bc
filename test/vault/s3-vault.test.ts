/**
 * Vault commands on an s3:// vault (moto on 127.0.0.1), through the built CLI, from a real
 * PostgreSQL 15 + pgvector source: backup (plain and encrypted) straight into the bucket, status,
 * prune, a drill of the uploaded snapshot, inspect / diff / restore of `s3://…#<snapshot>`, and a
 * backup whose upload keeps failing (nothing listed, nothing visible, no orphaned upload).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { openPg } from '../../src/db/pg';
import type { Db } from '../../src/db/types';
import { createLettaSchema } from '../../src/letta/ddl';
import { seedAgentFile } from '../../src/letta/seed';
import { readStoreIndex } from '../../src/vault/remote/copy';
import { S3Store } from '../../src/vault/remote/s3';
import { sharedTestPostgres } from '../helpers/global-pg';
import { ensureCliBuilt, runCli, startCliProcess, STACK_TRACE } from '../helpers/cli';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { startTcpProxy } from '../helpers/tcp-proxy';
import { startS3Front } from '../helpers/s3-front';
import { addSyntheticPassages, fixturePath } from './letta-data';
import { makeTmpRoot } from './helpers';

/** The CLI in a child process without blocking this one (the TCP proxy runs in this process). */
async function runCliAsync(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await startCliProcess(args, { env });
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('vault commands on an s3:// vault (moto) from PostgreSQL', function () {
  this.timeout(240000);
  const tmp = makeTmpRoot('s3-vault');
  let moto: MotoServer;
  let src: { url: string; db: Db };
  const env = (): NodeJS.ProcessEnv => ({ AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey, SRC_URL: src.url, VAULT_PASS: 'correct horse s3 staple' });
  const writeConfig = (name: string, cfg: Record<string, unknown>): string => {
    const file = path.join(tmp.dir(name), 'agent-vault.json');
    fs.writeFileSync(file, JSON.stringify({ source: { kind: 'postgres', urlEnv: 'SRC_URL' }, agents: { all: true }, ...cfg }, null, 2));
    return file;
  };

  before(async () => {
    ensureCliBuilt();
    // the test's own S3 clients (the CLI gets the same through env())
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    moto = await startMoto();
    for (const b of ['av-nightly', 'av-enc', 'av-flaky']) await moto.createBucket(b);
    const server = await sharedTestPostgres();
    const { url } = await server.createDatabase();
    const db = await openPg({ url });
    await createLettaSchema(db);
    const s = await seedAgentFile(db, fixturePath('memgpt-agent.v2-double-encoded.af'));
    await addSyntheticPassages(db, s.agents[0].id, 40, 's3-vault');
    await seedAgentFile(db, fixturePath('outreach-workflow-agent.v2-early.af'));
    src = { url, db };
  });
  after(async () => {
    await src?.db.close();
    await moto?.stop();
    tmp.cleanup();
  });

  it('backup writes the snapshot straight into the bucket (index written last, run logged); a second backup with keepLast 1 prunes the first there', async () => {
    const loc = moto.location('av-nightly', 'prod');
    const cfg = writeConfig('plain', { vault: loc });
    const r1 = runCli(['backup', '-c', cfg, '--json'], { env: env() });
    assert.equal(r1.code, 0, r1.stderr);
    const first = JSON.parse(r1.stdout).snapshot.id as string;
    const store = new S3Store(loc);
    const idx = await readStoreIndex(store);
    assert.deepEqual(
      idx!.snapshots.map((s) => s.id),
      [first],
    );
    assert.equal((await store.head(idx!.snapshots[0].file))!.sha256Hex, idx!.snapshots[0].sha256);
    assert.match((await store.readBytes('runs.jsonl'))!.toString(), /"command":"backup".*"ok":true/);
    assert.equal(await store.head('.lock'), null, 'the lock is released');

    const cfg2 = writeConfig('plain2', { vault: loc, retention: { keepLast: 1, pruneAfterBackup: true } });
    const r2 = runCli(['backup', '-c', cfg2, '--json'], { env: env() });
    assert.equal(r2.code, 0, r2.stderr);
    const second = JSON.parse(r2.stdout).snapshot.id as string;
    const idx2 = await readStoreIndex(store);
    assert.deepEqual(
      idx2!.snapshots.map((s) => s.id),
      [second],
    );
    assert.equal(await store.head(`snapshots/${first}.avsnap`), null, 'the pruned snapshot was deleted');
    const status = runCli(['status', '--vault', loc, '--snapshots'], { env: env() });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(second));
    assert.doesNotMatch(status.stdout, /FILE MISSING/);
    await store.close();
  });

  it('inspect, diff and restore read s3://…#<snapshot>; a drill restores the uploaded snapshot and passes', async () => {
    const loc = moto.location('av-nightly', 'prod');
    const ins = runCli(['inspect', `${loc}#latest`], { env: env() });
    assert.equal(ins.code, 0, ins.stderr);
    assert.match(ins.stdout, /MemGPT|memgpt/i);
    const d = runCli(['diff', `${loc}#latest`, `${loc}#latest`], { env: env() });
    assert.equal(d.code, 0, d.stderr);
    const server = await sharedTestPostgres();
    const { url: target } = await server.createDatabase();
    const tdb = await openPg({ url: target });
    await createLettaSchema(tdb);
    const rs = runCli(['restore', `${loc}#latest`, '--db', target], { env: env() });
    assert.equal(rs.code, 0, rs.stderr);
    const n = await tdb.query<{ n: string }>('SELECT count(*)::text AS n FROM agents');
    assert.equal(n.rows[0].n, '2');
    const p = await tdb.query<{ n: string }>('SELECT count(*)::text AS n FROM archival_passages');
    assert.equal(p.rows[0].n, '40');
    await tdb.close();
    const reports = tmp.dir('drill-reports');
    const dr = runCli(['drill', 'latest', '--vault', loc, '--report-dir', reports], { env: env() });
    assert.equal(dr.code, 0, dr.stdout + dr.stderr);
    assert.match(dr.stdout, /drill PASSED/);
    assert.ok(fs.readdirSync(reports).some((f) => f.endsWith('.json')));
  });

  it('an encrypted backup to S3 leaves only ciphertext in the bucket, and its drill passes with the passphrase', async () => {
    const loc = moto.location('av-enc', 'x');
    const cfg = writeConfig('enc', { vault: loc, encryption: { enabled: true, passphraseEnv: 'VAULT_PASS' } });
    const r = runCli(['backup', '-c', cfg, '--json'], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    const c = moto.client();
    const objs = await c.send(new ListObjectsV2Command({ Bucket: 'av-enc', Prefix: 'x/snapshots/' }));
    const body = await c.send(new GetObjectCommand({ Bucket: 'av-enc', Key: objs.Contents![0].Key! }));
    const bytes = Buffer.from(await body.Body!.transformToByteArray());
    c.destroy();
    assert.equal(bytes.includes(Buffer.from('memory 0 of')), false, 'no passage text in plain');
    const dr = runCli(['drill', 'latest', '--vault', loc, '--passphrase-env', 'VAULT_PASS', '--report-dir', tmp.dir('enc-drill')], { env: env() });
    assert.equal(dr.code, 0, dr.stdout + dr.stderr);
  });

  it('a backup whose upload keeps failing exits 3 and leaves the bucket as it was: no index entry, no object, no orphaned upload, no lock', async () => {
    const proxy = await startTcpProxy(moto.port);
    const loc = `s3://av-flaky/v?endpoint=http://127.0.0.1:${proxy.port}&path-style=true`;
    // a first good backup through the proxy
    const cfg = writeConfig('flaky', { vault: loc });
    assert.equal((await runCliAsync(['backup', '-c', cfg], env())).code, 0);
    const store = new S3Store(moto.location('av-flaky', 'v'));
    const before = (await readStoreIndex(store))!.snapshots.map((s) => s.id);
    // now every connection is cut once 256 KiB passed: the lock and index are small, the archive is not
    proxy.forwarded = 0;
    proxy.cutAfterBytes = 256 * 1024;
    const r = await runCliAsync(['backup', '-c', cfg], env());
    proxy.cutAfterBytes = null;
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stderr, /backup failed: .*s3:\/\/av-flaky\/v\/snapshots\//);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    assert.deepEqual(
      (await readStoreIndex(store))!.snapshots.map((s) => s.id),
      before,
    );
    const c = moto.client();
    const objs = await c.send(new ListObjectsV2Command({ Bucket: 'av-flaky', Prefix: 'v/snapshots/' }));
    assert.equal(objs.Contents?.length, before.length, 'no new snapshot object is visible');
    const mp = await c.send(new ListMultipartUploadsCommand({ Bucket: 'av-flaky' }));
    assert.deepEqual(mp.Uploads ?? [], []);
    c.destroy();
    assert.equal(await store.head('.lock'), null);
    assert.match((await store.readBytes('runs.jsonl'))!.toString(), /"ok":false/);
    await store.close();
    await proxy.close();
  });

  it('a backup interrupted (SIGINT) while its snapshot is on the way is cancelled: exit 130, the upload aborted (no multipart upload), nothing listed, the lock released, the run logged', async () => {
    const front = await startS3Front(moto.port);
    const loc = front.location('av-flaky', 'v');
    const store = new S3Store(moto.location('av-flaky', 'v'));
    const before = (await readStoreIndex(store))!.snapshots.map((s) => s.id);
    const objsBefore = (await moto.client().send(new ListObjectsV2Command({ Bucket: 'av-flaky', Prefix: 'v/snapshots/' }))).Contents?.length ?? 0;
    const cfg = writeConfig('interrupted', { vault: loc });
    let child: ChildProcess | undefined;
    front.delay = { match: (r) => r.method !== 'GET' && /\/v\/snapshots\//.test(r.url), ms: 1500, seen: () => child?.kill('SIGINT') };
    const r = await startCliProcess(['backup', '-c', cfg], { env: env(), onStart: (p) => (child = p) });
    front.delay = null;
    assert.equal(r.code, 130, `${r.signal} ${r.stderr}`);
    assert.match(r.stderr, /backup failed: interrupted by SIGINT/);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    await new Promise((res) => setTimeout(res, 1700)); // the held request reaches the server late
    assert.deepEqual(
      (await readStoreIndex(store))!.snapshots.map((s) => s.id),
      before,
    );
    const c = moto.client();
    const objs = await c.send(new ListObjectsV2Command({ Bucket: 'av-flaky', Prefix: 'v/snapshots/' }));
    const mp = await c.send(new ListMultipartUploadsCommand({ Bucket: 'av-flaky' }));
    c.destroy();
    assert.deepEqual(mp.Uploads ?? [], []);
    assert.equal(await store.head('.lock'), null, 'the lock was released');
    const last = JSON.parse((await store.readBytes('runs.jsonl'))!.toString().trim().split('\n').at(-1)!);
    assert.deepEqual([last.command, last.ok, last.error?.code], ['backup', false, 'interrupted']);
    // a small snapshot goes up in one request, which the server may still complete after the client
    // left: it stays unlisted (verify names it, rebuild-index verifies and lists it), never half-written
    assert.ok((objs.Contents?.length ?? 0) <= objsBefore + 1);
    await store.close();
    await front.close();
  });

  it('verify on an s3:// vault downloads and checks every snapshot (--deep too); an object damaged in the bucket is named (exit 1)', async () => {
    const loc = moto.location('av-nightly', 'prod');
    const ok = runCli(['verify', '--vault', loc, '--deep'], { env: env() });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /1 snapshot\(s\) verified \(deep\): all ok/);
    // damage the stored archive behind the index's back
    const store = new S3Store(loc);
    const rec = (await readStoreIndex(store))!.snapshots[0];
    const bytes = (await store.readBytes(rec.file))!;
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await store.writeBytes(rec.file, bytes);
    const bad = runCli(['verify', '--vault', loc], { env: env() });
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, new RegExp(`FAIL ${rec.id}.*\\[sha256\\]`));
    await store.close();
  });

  it('rebuild-index on the s3:// vault keeps the damaged snapshot listed and names it (exit 1); the encrypted vault rebuilds whole, scrypt salt included', async () => {
    const r = runCli(['rebuild-index', '--vault', moto.location('av-nightly', 'prod')], { env: env() });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /DAMAGED \S+: .*damaged or replaced/);
    const store = new S3Store(moto.location('av-enc', 'x'));
    const before = (await readStoreIndex(store))!;
    await store.delete('vault.json');
    const e = runCli(['rebuild-index', '--vault', moto.location('av-enc', 'x')], { env: env() });
    assert.equal(e.code, 0, e.stdout + e.stderr);
    const after = (await readStoreIndex(store))!;
    assert.deepEqual(
      after.snapshots.map((s) => [s.id, s.sha256, s.encrypted]),
      before.snapshots.map((s) => [s.id, s.sha256, true]),
    );
    assert.deepEqual(after.kdf, before.kdf, 'the bucket keeps its scrypt salt, so the next backup uses the same key');
    await store.close();
  });
});
