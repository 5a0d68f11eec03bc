/**
 * Faults between Agent Vault and an S3-compatible server (moto on 127.0.0.1 behind an HTTP
 * front that injects them, test/helpers/s3-front.ts): throttling and server errors retried with
 * backoff, a download cut off or damaged on the way started again, `x-amz-checksum-sha256` end to
 * end (sent with every upload request; a damaged upload refused by a server that checks it, and
 * detected on the next read by one that does not), and a server without conditional writes
 * (the lock refuses to run, exit 2).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { exitCodeOf } from '../../src/cli/exit';
import { AgentVaultError } from '../../src/core/errors';
import { acquireRemoteLock } from '../../src/vault/remote/lock';
import { S3Store } from '../../src/vault/remote/s3';
import { CLI, ensureCliBuilt, STACK_TRACE } from '../helpers/cli';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { startS3Front, type FrontRequest, type S3Front } from '../helpers/s3-front';
import { makeTmpRoot } from './helpers';

const FAST_LOCK = { settleMs: 20, heartbeatMs: 500 };

function runCliAsync(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function randomFile(file: string, bytes: number): Promise<string> {
  const b = randomBytes(bytes);
  await fsp.writeFile(file, b);
  return createHash('sha256').update(b).digest('hex');
}

const isPut = (key: string) => (r: FrontRequest) => r.method === 'PUT' && r.url.includes(key) && !r.url.includes('partNumber=');
const isPart = (r: FrontRequest) => r.method === 'PUT' && r.url.includes('partNumber=');
const isGet = (key: string) => (r: FrontRequest) => r.method === 'GET' && r.url.includes(key);

describe('S3 faults: retries, checksums end to end, no conditional writes (moto behind a fault front)', function () {
  this.timeout(120000);
  const tmp = makeTmpRoot('s3-faults');
  let moto: MotoServer;
  let front: S3Front;
  const store = (prefix: string, opts: { maxAttempts?: number; partSize?: number } = {}): S3Store => new S3Store(front.location('av-faulty', prefix), { partSize: 5 * 1024 * 1024, ...opts });

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    moto = await startMoto();
    await moto.createBucket('av-faulty');
    front = await startS3Front(moto.port);
  });
  beforeEach(() => {
    front.log.length = 0;
    front.damageUploads = 0;
    front.damageDownloads = 0;
    front.cutDownloads = 0;
    front.validateChecksums = false;
    front.ignoreConditional = false;
    front.delay = null;
  });
  after(async () => {
    await front?.close();
    await moto?.stop();
    tmp.cleanup();
  });

  describe('retries with backoff', () => {
    it('503 SlowDown and 500 InternalError are retried with backoff: a write, every multipart part and a read get through', async () => {
      const s = store('retry');
      try {
        front.fail(isPut('retry/vault.json'), 2, 503, 'SlowDown');
        const t0 = Date.now();
        assert.equal(await s.writeBytes('vault.json', '{"a":1}'), true);
        const waited = Date.now() - t0;
        assert.deepEqual(
          front.log.filter((l) => l.url.includes('retry/vault.json')).map((l) => l.status),
          [503, 503, 200],
        );
        assert.ok(waited >= 50, `the retries were spaced by a backoff (${waited} ms)`);

        const file = path.join(tmp.dir('retry'), 'a.bin');
        const sha = await randomFile(file, 11 * 1024 * 1024);
        front.fail(isPart, 3, 500, 'InternalError');
        await s.uploadFile('snapshots/a.avsnap', file, { sha256Hex: sha });
        const parts = front.log.filter((l) => l.url.includes('/retry/') && l.url.includes('partNumber='));
        assert.equal(parts.filter((l) => l.status === 500).length, 3);
        assert.equal(parts.filter((l) => l.status === 200).length, 3, 'three parts of 5 + 5 + 1 MiB arrived');

        front.fail(isGet('retry/vault.json'), 1, 503, 'SlowDown');
        assert.equal((await s.readBytes('vault.json'))!.toString(), '{"a":1}');
        const back = path.join(tmp.dir('retry'), 'back.bin');
        assert.equal((await s.downloadFile('snapshots/a.avsnap', back)).sha256Hex, sha);
      } finally {
        await s.close();
      }
    });

    it('throttling that does not end fails after maxAttempts with a clear error naming the object (s3-io, exit 3)', async () => {
      const s = store('retry', { maxAttempts: 3 });
      try {
        front.fail(isPut('retry/runs.jsonl'), 100, 503, 'SlowDown');
        await assert.rejects(s.writeBytes('runs.jsonl', 'x\n'), (e: unknown) => {
          assert.ok(e instanceof AgentVaultError, String(e));
          assert.deepEqual([e.code, exitCodeOf(e)], ['s3-io', 3]);
          assert.match(e.message, /writing s3:\/\/av-faulty\/retry\/runs\.jsonl failed: SlowDown \(HTTP 503\)/);
          return true;
        });
        assert.equal(front.log.filter((l) => l.url.includes('retry/runs.jsonl')).length, 3);
      } finally {
        front.fail(isPut('retry/runs.jsonl'), 0, 503, 'SlowDown');
        await s.close();
      }
    });

    it('a download whose connection drops halfway through the body is started again and arrives whole', async () => {
      const s = store('cut');
      try {
        const file = path.join(tmp.dir('cut'), 'a.bin');
        const sha = await randomFile(file, 2 * 1024 * 1024);
        await s.uploadFile('snapshots/a.avsnap', file, { sha256Hex: sha });
        front.log.length = 0;
        front.cutDownloads = 1;
        const back = path.join(tmp.dir('cut'), 'back', 'a.bin');
        const got = await s.downloadFile('snapshots/a.avsnap', back);
        assert.equal(got.sha256Hex, sha);
        assert.equal(front.log.filter((l) => l.method === 'GET').length, 2, 'one cut, one whole download');
        // a link that keeps dropping: a clear error, no partial file
        front.cutDownloads = 10;
        const s2 = store('cut', { maxAttempts: 2 });
        const dir = tmp.dir('cut-dead');
        await assert.rejects(
          s2.downloadFile('snapshots/a.avsnap', path.join(dir, 'a.bin')),
          (e: unknown) => e instanceof AgentVaultError && e.code === 's3-io' && /s3:\/\/av-faulty\/cut\/snapshots\/a\.avsnap/.test(e.message),
        );
        assert.deepEqual(readdirSync(dir), []);
        await s2.close();
      } finally {
        await s.close();
      }
    });
  });

  it('an upload cancelled while its parts are on the way leaves no object and no multipart upload once it returns (the process may exit next)', async () => {
    const s = store('cancel');
    try {
      const file = path.join(tmp.dir('cancel'), 'a.bin');
      const sha = await randomFile(file, 16 * 1024 * 1024);
      const ac = new AbortController();
      front.delay = { match: isPart, ms: 400, seen: () => ac.abort() };
      await assert.rejects(s.uploadFile('snapshots/a.avsnap', file, { sha256Hex: sha, signal: ac.signal }), (e: unknown) => e instanceof AgentVaultError && e.code === 'interrupted');
      // no waiting: what a process that exits right now leaves behind
      const c = moto.client();
      const mp = await c.send(new ListMultipartUploadsCommand({ Bucket: 'av-faulty', Prefix: 'cancel/' }));
      c.destroy();
      assert.deepEqual(mp.Uploads ?? [], []);
      assert.equal(await s.head('snapshots/a.avsnap'), null);
      // parts still held on the way arrive late: they find no upload to add to
      front.delay = null;
      await new Promise((r) => setTimeout(r, 1200));
      const c2 = moto.client();
      const later = await c2.send(new ListMultipartUploadsCommand({ Bucket: 'av-faulty', Prefix: 'cancel/' }));
      c2.destroy();
      assert.deepEqual(later.Uploads ?? [], []);
      assert.equal(await s.head('snapshots/a.avsnap'), null);
      await assert.rejects(s.uploadFile('snapshots/b.avsnap', file, { sha256Hex: sha, signal: ac.signal }), /cancelled before it started/);
    } finally {
      await s.close();
    }
  });

  describe('x-amz-checksum-sha256 end to end', () => {
    it('every upload request carries x-amz-checksum-sha256 that matches its bytes (single PUT, every multipart part)', async () => {
      const s = store('sums');
      front.validateChecksums = true;
      try {
        const small = path.join(tmp.dir('sums'), 'small.bin');
        const big = path.join(tmp.dir('sums'), 'big.bin');
        const shaSmall = await randomFile(small, 300 * 1024);
        const shaBig = await randomFile(big, 12 * 1024 * 1024);
        await s.writeBytes('vault.json', '{}');
        await s.uploadFile('snapshots/small.avsnap', small, { sha256Hex: shaSmall });
        await s.uploadFile('snapshots/big.avsnap', big, { sha256Hex: shaBig });
        const uploads = front.log.filter((l) => l.method === 'PUT');
        assert.equal(uploads.length, 1 + 1 + 3);
        assert.ok(
          uploads.every((l) => l.checksum && l.status === 200),
          JSON.stringify(uploads),
        );
        assert.equal((await s.head('snapshots/big.avsnap'))!.sha256Hex, shaBig);
      } finally {
        await s.close();
      }
    });

    it('a server that checks it refuses an upload damaged on the way (BadDigest): the upload fails clearly, nothing is visible, no multipart upload is left', async () => {
      const s = store('refused');
      front.validateChecksums = true;
      try {
        for (const [name, size] of [
          ['small', 200 * 1024],
          ['big', 12 * 1024 * 1024],
        ] as const) {
          const file = path.join(tmp.dir('refused'), `${name}.bin`);
          const sha = await randomFile(file, size);
          front.damageUploads = 1;
          await assert.rejects(s.uploadFile(`snapshots/${name}.avsnap`, file, { sha256Hex: sha }), (e: unknown) => {
            assert.ok(e instanceof AgentVaultError, String(e));
            assert.equal(e.code, 'checksum');
            assert.match(e.message, new RegExp(`s3://av-faulty/refused/snapshots/${name}\\.avsnap: the server refused the bytes.*BadDigest.*nothing of it was stored`));
            return true;
          });
          assert.ok(front.log.some((l) => l.injected === 'BadDigest'));
          assert.equal(await s.head(`snapshots/${name}.avsnap`), null, `${name}: nothing visible`);
        }
        const c = moto.client();
        const mp = await c.send(new ListMultipartUploadsCommand({ Bucket: 'av-faulty', Prefix: 'refused/' }));
        c.destroy();
        assert.deepEqual(mp.Uploads ?? [], [], 'the refused multipart upload was aborted');
      } finally {
        await s.close();
      }
    });

    it('a server that does not check it (moto) stores the damaged upload; the next read detects it against the stored checksum and never writes the file', async () => {
      const s = store('unchecked', { maxAttempts: 2 });
      try {
        const file = path.join(tmp.dir('unchecked'), 'a.bin');
        const sha = await randomFile(file, 200 * 1024);
        front.damageUploads = 1;
        await s.uploadFile('snapshots/a.avsnap', file, { sha256Hex: sha });
        const dir = tmp.dir('unchecked-down');
        await assert.rejects(s.downloadFile('snapshots/a.avsnap', path.join(dir, 'a.bin')), (e: unknown) => {
          assert.ok(e instanceof AgentVaultError, String(e));
          assert.equal(e.code, 'checksum');
          assert.match(e.message, /s3:\/\/av-faulty\/unchecked\/snapshots\/a\.avsnap: the bytes received do not match the object's x-amz-checksum-sha256/);
          return true;
        });
        assert.deepEqual(readdirSync(dir), []);
      } finally {
        await s.close();
      }
    });

    it('an object damaged in the bucket under its original checksum is detected on download (the SDK checks the stored x-amz-checksum-sha256)', async () => {
      const s = store('rot', { maxAttempts: 2 });
      try {
        const good = randomBytes(100 * 1024);
        const c = moto.client();
        const sum = createHash('sha256').update(good).digest('base64');
        const bad = Buffer.from(good);
        bad[5000] ^= 0x80;
        // moto keeps the checksum it is given: the object's bytes now differ from its recorded checksum
        await c.send(new PutObjectCommand({ Bucket: 'av-faulty', Key: 'rot/snapshots/a.avsnap', Body: bad, ChecksumAlgorithm: 'SHA256', ChecksumSHA256: sum }));
        c.destroy();
        await assert.rejects(s.downloadFile('snapshots/a.avsnap', path.join(tmp.dir('rot'), 'a.bin')), (e: unknown) => e instanceof AgentVaultError && e.code === 'checksum');
      } finally {
        await s.close();
      }
    });

    it('a download damaged on the way is detected and fetched again: the file arrives whole', async () => {
      const s = store('wire');
      try {
        const file = path.join(tmp.dir('wire'), 'a.bin');
        const sha = await randomFile(file, 1024 * 1024);
        await s.uploadFile('snapshots/a.avsnap', file, { sha256Hex: sha });
        front.log.length = 0;
        front.damageDownloads = 1;
        const got = await s.downloadFile('snapshots/a.avsnap', path.join(tmp.dir('wire'), 'back.bin'));
        assert.equal(got.sha256Hex, sha);
        assert.equal(front.log.filter((l) => l.method === 'GET').length, 2);
      } finally {
        await s.close();
      }
    });
  });

  describe('a server without conditional writes (If-None-Match: *)', () => {
    const noConditional = (r: FrontRequest): boolean => r.method === 'PUT' && r.headers['if-none-match'] === '*';

    it('the lock refuses to run (s3-no-conditional-put, exit 2) instead of risking two runs at once', async () => {
      const s = store('nocond');
      front.fail(noConditional, 1, 501, 'NotImplemented');
      try {
        await assert.rejects(acquireRemoteLock(s, { command: 'backup', ...FAST_LOCK }), (e: unknown) => {
          assert.ok(e instanceof AgentVaultError, String(e));
          assert.deepEqual([e.code, exitCodeOf(e)], ['s3-no-conditional-put', 2]);
          assert.match(e.message, /does not support conditional writes \(If-None-Match: \*\)/);
          assert.match(e.hint ?? '', /docs\/VAULT\.md/);
          return true;
        });
        assert.equal(await s.head('.lock'), null);
      } finally {
        await s.close();
      }
    });

    it('a server that silently ignores If-None-Match: of runs racing for the lock exactly one goes on, and a held lock is never overwritten', async () => {
      front.ignoreConditional = true;
      const mk = (): S3Store => store('ignored');
      for (let round = 0; round < 3; round++) {
        const got = await Promise.allSettled([0, 1, 2].map((i) => acquireRemoteLock(mk(), { command: `run-${i}`, settleMs: 300, heartbeatMs: 5000 })));
        const won = got.filter((g): g is PromiseFulfilledResult<Awaited<ReturnType<typeof acquireRemoteLock>>> => g.status === 'fulfilled');
        assert.equal(won.length, 1, `round ${round}: ${got.map((g) => g.status).join(', ')}`);
        for (const g of got) if (g.status === 'rejected') assert.match(String(g.reason), /is locked by "run-\d"/);
        // while it is held, a later run sees it and is refused; the holder's lock object is untouched
        const s = mk();
        await assert.rejects(acquireRemoteLock(s, { command: 'late', ...FAST_LOCK }), /is locked by "run-\d"/);
        assert.equal(JSON.parse((await s.readBytes('.lock'))!.toString()).token, won[0].value.info.token);
        await won[0].value.release();
        await s.close();
      }
    });

    it('vault copy into such a bucket exits 2 with the reason, writes nothing', async () => {
      ensureCliBuilt();
      front.fail(noConditional, 1, 501, 'NotImplemented');
      const src = tmp.dir('empty-src');
      await fsp.writeFile(path.join(src, 'vault.json'), JSON.stringify({ format: 'agent-vault-index', version: 1, snapshots: [] }));
      const r = await runCliAsync(['vault', 'copy', src, front.location('av-faulty', 'nocond-cli')], { AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey });
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /does not support conditional writes/);
      assert.doesNotMatch(r.stderr, STACK_TRACE);
      const s = store('nocond-cli');
      const objs: string[] = [];
      for await (const o of s.list('')) objs.push(o.key);
      await s.close();
      assert.deepEqual(
        objs.filter((k) => k !== 'runs.jsonl'),
        [],
      );
    });
  });
});
