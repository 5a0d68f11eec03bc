/**
 * The vault's object stores against a real S3-compatible server (moto, started on 127.0.0.1):
 * the same contract for a local folder and a bucket, streaming multipart uploads over 100 MB with
 * bounded memory, dropped connections (a TCP proxy in the test), wrong credentials, a missing
 * bucket, and no orphaned multipart upload or visible object after a failed upload.
 */
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { AgentVaultError } from '../../src/core/errors';
import { parseS3Location, S3Store } from '../../src/vault/remote/s3';
import { LocalStore, type ObjectStore } from '../../src/vault/remote/store';
import { fileSha256 } from '../../src/core/hash';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { startTcpProxy } from '../helpers/tcp-proxy';
import { makeTmpRoot } from './helpers';

async function collect(it: AsyncIterable<{ key: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const o of it) out.push(o.key);
  return out;
}

async function writeRandomFile(file: string, bytes: number): Promise<string> {
  const h = createHash('sha256');
  const ws = createWriteStream(file);
  const block = randomBytes(1024 * 1024);
  for (let left = bytes, i = 0; left > 0; i++) {
    const n = Math.min(left, block.length);
    block.writeUInt32LE(i, 0); // every MiB differs
    const b = block.subarray(0, n);
    h.update(b);
    if (!ws.write(b)) await new Promise<void>((r) => ws.once('drain', () => r()));
    left -= n;
  }
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.end(() => resolve());
  });
  return h.digest('hex');
}

describe('vault: object stores (local folder and S3 via moto)', function () {
  this.timeout(300000);
  const tmp = makeTmpRoot('s3-store');
  let moto: MotoServer;
  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDS.secretAccessKey;
    moto = await startMoto();
    await moto.createBucket('av-contract');
    await moto.createBucket('av-big');
    await moto.createBucket('av-faults');
  });
  after(async () => {
    await moto?.stop();
    tmp.cleanup();
  });

  describe('locations', () => {
    it('parses s3://bucket/prefix with endpoint, region and path-style', () => {
      const l = parseS3Location('s3://my-vault/nightly/prod?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&path-style=true');
      assert.deepEqual([l.bucket, l.prefix, l.endpoint, l.region, l.pathStyle], ['my-vault', 'nightly/prod/', 'http://127.0.0.1:9000', 'eu-west-1', true]);
      assert.equal(parseS3Location('s3://my-vault').prefix, '');
    });
    it('refuses credentials in the location, bad bucket names, unknown options and ".." prefixes (usage errors)', () => {
      for (const bad of ['s3://AKIA:secret@my-vault/x', 's3://ab/x', 's3://My_Vault/x', 's3://my-vault/x?secret=1', 's3://my-vault/a/../b', 's3://my-vault/x?endpoint=ftp://h']) {
        assert.throws(
          () => parseS3Location(bad),
          (e: unknown) => e instanceof AgentVaultError && e.kind === 'usage' && !/secret@/.test(e.message),
          bad,
        );
      }
    });
  });

  for (const kind of ['local', 's3'] as const) {
    describe(`the store contract: ${kind}`, () => {
      let store: ObjectStore;
      before(() => {
        store = kind === 'local' ? new LocalStore(tmp.dir('contract')) : new S3Store(moto.location('av-contract', 'vaults/one'));
      });
      after(() => store.close());

      it('writes, reads, lists, heads and deletes objects under its prefix only', async () => {
        assert.equal(await store.writeBytes('vault.json', '{"a":1}'), true);
        assert.equal(await store.writeBytes('snapshots/s1.avsnap', Buffer.from('one')), true);
        assert.equal((await store.readBytes('vault.json'))!.toString(), '{"a":1}');
        assert.equal(await store.readBytes('nope.json'), null);
        assert.equal(await store.head('nope.json'), null);
        assert.equal((await store.head('snapshots/s1.avsnap'))!.size, 3);
        assert.deepEqual(await collect(store.list('snapshots/')), ['snapshots/s1.avsnap']);
        assert.deepEqual((await collect(store.list(''))).sort(), ['snapshots/s1.avsnap', 'vault.json']);
        await store.delete('snapshots/s1.avsnap');
        assert.equal(await store.head('snapshots/s1.avsnap'), null);
      });

      it('creates an object exclusively (the lock primitive): a second create is refused, the first stays', async () => {
        assert.equal(await store.writeBytes('.lock', 'first', { ifAbsent: true }), true);
        assert.equal(await store.writeBytes('.lock', 'second', { ifAbsent: true }), false);
        assert.equal((await store.readBytes('.lock'))!.toString(), 'first');
        await store.delete('.lock');
        assert.equal(await store.writeBytes('.lock', 'third', { ifAbsent: true }), true);
      });

      it('uploads and downloads a file with its SHA-256 checked end to end', async () => {
        const src = path.join(tmp.dir(`up-${kind}`), 'a.bin');
        const sha = await writeRandomFile(src, 3 * 1024 * 1024 + 17);
        await store.uploadFile('snapshots/a.avsnap', src, { sha256Hex: sha });
        const head = await store.head('snapshots/a.avsnap');
        assert.equal(head!.size, 3 * 1024 * 1024 + 17);
        if (kind === 's3') assert.equal(head!.sha256Hex, sha);
        const back = path.join(tmp.dir(`down-${kind}`), 'a.bin');
        const got = await store.downloadFile('snapshots/a.avsnap', back);
        assert.equal(got.sha256Hex, sha);
        assert.equal((await fileSha256(back)).sha256, sha);
      });
    });
  }

  it('a > 100 MB snapshot goes up as a streaming multipart upload with bounded memory, and comes back byte-equal', async () => {
    const dir = tmp.dir('big');
    const src = path.join(dir, 'big.avsnap');
    const size = 110 * 1024 * 1024;
    const sha = await writeRandomFile(src, size);
    const store = new S3Store(moto.location('av-big', 'v'), { partSize: 8 * 1024 * 1024, queueSize: 4 });
    try {
      global.gc?.();
      const base = process.memoryUsage().rss;
      let peak = base;
      const t = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
      try {
        await store.uploadFile('snapshots/big.avsnap', src, { sha256Hex: sha });
        const back = path.join(dir, 'back.avsnap');
        const got = await store.downloadFile('snapshots/big.avsnap', back);
        assert.equal(got.bytes, size);
        assert.equal(got.sha256Hex, sha);
      } finally {
        clearInterval(t);
      }
      const grew = (peak - base) / 1024 / 1024;
      // 4 parts of 8 MiB in flight plus SDK buffers; the file itself is 110 MiB
      assert.ok(grew < 100, `RSS grew by ${grew.toFixed(0)} MiB during a 110 MiB upload + download`);
      const head = await store.head('snapshots/big.avsnap');
      assert.equal(head!.size, size);
      assert.equal(head!.sha256Hex, sha);
    } finally {
      await store.close();
    }
  });

  describe('faults', () => {
    it('a connection dropped mid-upload is retried by the SDK and the object arrives whole', async () => {
      const proxy = await startTcpProxy(moto.port);
      const store = new S3Store(`s3://av-faults/retry?endpoint=http://127.0.0.1:${proxy.port}&path-style=true`, { partSize: 5 * 1024 * 1024 });
      try {
        const src = path.join(tmp.dir('retry'), 'x.bin');
        const sha = await writeRandomFile(src, 12 * 1024 * 1024);
        proxy.cutAfterBytes = 3 * 1024 * 1024;
        proxy.cutsLeft = 2;
        await store.uploadFile('snapshots/x.avsnap', src, { sha256Hex: sha });
        assert.equal(proxy.cuts, 2);
        const back = path.join(tmp.dir('retry'), 'back.bin');
        assert.equal((await store.downloadFile('snapshots/x.avsnap', back)).sha256Hex, sha);
      } finally {
        await store.close();
        await proxy.close();
      }
    });

    it('a link that keeps dropping fails the upload clearly, leaves no visible object and no orphaned multipart upload', async () => {
      const proxy = await startTcpProxy(moto.port);
      const store = new S3Store(`s3://av-faults/dead?endpoint=http://127.0.0.1:${proxy.port}&path-style=true`, { partSize: 5 * 1024 * 1024, maxAttempts: 2 });
      try {
        const src = path.join(tmp.dir('dead'), 'x.bin');
        const sha = await writeRandomFile(src, 16 * 1024 * 1024);
        // the small control requests (create / abort multipart upload) pass, every part upload is cut
        proxy.cutAfterBytes = 1024 * 1024;
        await assert.rejects(store.uploadFile('snapshots/x.avsnap', src, { sha256Hex: sha }), (e: unknown) => {
          assert.ok(e instanceof AgentVaultError, String(e));
          assert.equal(e.code, 's3-io');
          assert.match(e.message, /s3:\/\/av-faults\/dead\/snapshots\/x\.avsnap/);
          return true;
        });
        proxy.cutAfterBytes = null;
        assert.equal(await store.head('snapshots/x.avsnap'), null);
        const c = moto.client();
        const mp = await c.send(new ListMultipartUploadsCommand({ Bucket: 'av-faults', Prefix: 'dead/' }));
        c.destroy();
        assert.deepEqual(mp.Uploads ?? [], [], 'the failed multipart upload was aborted');
      } finally {
        await store.close();
        await proxy.close();
      }
    });

    it('cancelling a download leaves no partial file', async () => {
      const store = new S3Store(moto.location('av-big', 'v'));
      const dir = tmp.dir('cancel');
      const ac = new AbortController();
      const p = store.downloadFile('snapshots/big.avsnap', path.join(dir, 'part.avsnap'), { signal: ac.signal });
      setTimeout(() => ac.abort(), 30);
      await assert.rejects(p, (e: unknown) => e instanceof AgentVaultError && e.code === 'interrupted');
      assert.deepEqual(readdirSync(dir), []);
      await store.close();
    });

    it('a missing bucket is named as such', async () => {
      const store = new S3Store(moto.location('av-no-such-bucket', 'v'));
      await assert.rejects(store.readBytes('vault.json'), (e: unknown) => e instanceof AgentVaultError && e.code === 's3-no-bucket' && /"av-no-such-bucket" does not exist/.test(e.message));
      await store.close();
    });

    it('wrong credentials: a clear error naming the bucket, never the secret', async () => {
      const authMoto = await startMoto({ auth: true });
      const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
      process.env.AWS_ACCESS_KEY_ID = 'AKIAWRONGWRONGWRONG1';
      process.env.AWS_SECRET_ACCESS_KEY = 'wrong-secret-do-not-print-7c1e';
      const store = new S3Store(authMoto.location('av-auth', 'v'), { maxAttempts: 1 });
      try {
        const err = await store.readBytes('vault.json').then(
          () => null,
          (e: unknown) => e,
        );
        assert.ok(err instanceof AgentVaultError, String(err));
        assert.equal(err.code, 's3-auth');
        assert.match(err.message, /bucket "av-auth" refused the credentials/);
        assert.doesNotMatch(err.message + (err.hint ?? ''), /wrong-secret-do-not-print/);
      } finally {
        process.env.AWS_ACCESS_KEY_ID = saved.id;
        process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
        await store.close();
        await authMoto.stop();
      }
    });
  });

  it('leaves no temp files of its own behind in a local store', async () => {
    const dir = tmp.dir('contract');
    const names = (await fsp.readdir(dir, { recursive: true })) as string[];
    assert.deepEqual(
      names.filter((n) => /\.tmp-[0-9a-f]{12}$/.test(n)),
      [],
    );
  });
});
