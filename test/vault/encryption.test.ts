import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { createArchiveWriter, openArchive, readManifest } from '../../src/format/archive';
import { ArchiveCrypto, SEGMENT_SIZE, clearKeyCache, decryptBuffer, encryptBuffer, keyFromBytes, keyFromPassphrase, readKeyFile, type ArchiveKey } from '../../src/format/crypto';
import { packAgentFile } from '../../src/format/pack';
import { copyArchive } from '../../src/vault/rewrite';
import { FIXTURES_DIR } from '../helpers/paths';
import { flipByte, listFiles, makeTmpRoot, readZip, rejectsWith, writeZip } from './helpers';

const FAST = { N: 1024, r: 8, p: 1 };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('vault: archive encryption (AES-256-GCM per entry, scrypt, authenticated manifest)', function () {
  this.timeout(60000);
  const tmp = makeTmpRoot('crypto');
  after(() => tmp.cleanup());

  let key: ArchiveKey;
  const big = randomBytes(3 * SEGMENT_SIZE + 123);
  const exact = randomBytes(2 * SEGMENT_SIZE);
  const doc = { agents: [{ id: 'agent-0', name: 'x' }], note: 'héllo'.repeat(5000) };
  const secret = Buffer.from(JSON.stringify({ agent_id: 'agent-0', variables: [{ key: 'API_KEY', value: 's3cr3t-value' }] }));

  async function writeEncrypted(file: string, k: ArchiveKey): Promise<void> {
    const w = await createArchiveWriter(file, { encryption: { key: k } });
    await w.addJson('agents/agent-0.af', doc);
    await w.addStream('passages/agent-0.vectors', Readable.from([big.subarray(0, 1000), big.subarray(1000, 200000), big.subarray(200000)]));
    await w.addBuffer('exact.bin', exact, { compress: false });
    await w.addBuffer('empty.json', Buffer.alloc(0));
    await w.addBuffer('secrets/agent-0.env.json', secret);
    await w.finish({ created_at: '2026-03-01T12:00:00.000Z', agents: [] });
  }

  before(async () => {
    key = await keyFromPassphrase('correct horse battery staple', { scrypt: FAST });
  });

  it('round-trips every entry (multi-segment, exact segment multiples, empty, compressed and secret entries)', async () => {
    const file = path.join(tmp.dir('rt'), 'enc.avsnap');
    await writeEncrypted(file, key);
    clearKeyCache();
    const r = await openArchive(file, { decrypt: { passphrase: 'correct horse battery staple' }, verifyEntries: true });
    try {
      assert.equal(r.encrypted, true);
      assert.equal(r.decryptable, true);
      assert.deepEqual(await r.readJson('agents/agent-0.af'), doc);
      assert.ok((await r.readEntry('passages/agent-0.vectors')).equals(big));
      assert.ok((await r.readEntry('exact.bin')).equals(exact));
      assert.equal((await r.readEntry('empty.json')).length, 0);
      assert.ok((await r.readEntry('secrets/agent-0.env.json')).equals(secret));
      assert.ok((await r.verifyAll()).every((x) => x.ok));
      const enc = r.manifest.encryption as Record<string, any>;
      assert.equal(enc.scheme, 'aes-256-gcm-entry-v1');
      assert.deepEqual({ ...enc.kdf, salt: undefined }, { name: 'scrypt', salt: undefined, ...FAST });
      assert.equal(enc.segment_size, SEGMENT_SIZE);
      assert.ok(r.manifest.entries.every((e) => e.encrypted === true && e.compression === 'store'));
    } finally {
      await r.close();
    }
    // no plaintext anywhere in the file: not the secret, not the agent file's text
    const bytes = fs.readFileSync(file);
    assert.equal(bytes.includes(Buffer.from('s3cr3t-value')), false);
    assert.equal(bytes.includes(Buffer.from('API_KEY')), false);
    assert.equal(bytes.includes(Buffer.from('héllo')), false);
    assert.equal(bytes.includes(big.subarray(5000, 5064)), false);
    // the JSON entry was compressed before encryption (ciphertext much smaller than the plaintext)
    const m = await readManifest(file);
    assert.ok(m.entries.find((e) => e.name === 'agents/agent-0.af')!.size < JSON.stringify(doc).length / 10);
  });

  it('lists and checksums an encrypted archive without the key, but refuses to read its entries', async () => {
    const file = path.join(tmp.dir('nokey'), 'enc.avsnap');
    await writeEncrypted(file, key);
    const r = await openArchive(file);
    try {
      assert.equal(r.encrypted, true);
      assert.equal(r.decryptable, false);
      assert.equal(r.manifest.entries.length, 5);
      assert.ok(
        (await r.verifyAll()).every((x) => x.ok),
        'stored bytes verify without the key',
      );
      await rejectsWith(r.readEntry('secrets/agent-0.env.json'), 'encrypted', /secrets\/agent-0\.env\.json" is encrypted; give the passphrase or key/);
    } finally {
      await r.close();
    }
  });

  it('a wrong passphrase fails at open with a clear message, and a copy writes nothing', async () => {
    const d = tmp.dir('wrong');
    const file = path.join(d, 'enc.avsnap');
    await writeEncrypted(file, key);
    await rejectsWith(openArchive(file, { decrypt: { passphrase: 'Correct horse battery staple' } }), 'wrong-key', /wrong passphrase: the archive cannot be decrypted with it/);
    // a raw key for a passphrase archive: told which one is needed
    await rejectsWith(openArchive(file, { decrypt: { key: randomBytes(32) } }), 'wrong-key', /encrypted with a passphrase; a key file cannot open it/);
    const out = tmp.dir('wrong-out');
    await rejectsWith(async () => {
      const r = await openArchive(file, { decrypt: { passphrase: 'nope' } });
      await copyArchive(r, path.join(out, 'plain.avsnap'));
    }, 'wrong-key');
    assert.deepEqual(listFiles(out), []);
  });

  it('a tampered ciphertext fails authentication naming the entry, and a copy writes nothing', async () => {
    const d = tmp.dir('tamper');
    const file = path.join(d, 'enc.avsnap');
    await writeEncrypted(file, key);
    const { entries } = await readZip(file);
    const vec = entries.find((e) => e.name === 'passages/agent-0.vectors')!;
    flipByte(file, vec.dataOffset + 24 + SEGMENT_SIZE + 16 + 10); // inside the second segment
    const r = await openArchive(file, { decrypt: { passphrase: 'correct horse battery staple' } });
    try {
      await rejectsWith(r.readEntry('passages/agent-0.vectors'), 'decrypt', /entry "passages\/agent-0\.vectors" failed authentication: segment 1 does not authenticate: the ciphertext was altered/);
      // the other entries still read
      assert.deepEqual(await r.readJson('agents/agent-0.af'), doc);
      const results = await r.verifyAll();
      assert.deepEqual(
        results.filter((x) => !x.ok).map((x) => x.entry),
        ['passages/agent-0.vectors'],
      );
      // a streamed reader never saw plaintext of the altered segment: it got exactly segment 0
      const s = await r.openStream('passages/agent-0.vectors');
      const got: Buffer[] = [];
      await assert.rejects(
        (async () => {
          for await (const c of s as AsyncIterable<Buffer>) got.push(c);
        })(),
        /failed authentication/,
      );
      assert.ok(Buffer.concat(got).equals(big.subarray(0, Buffer.concat(got).length)));
      assert.ok(Buffer.concat(got).length <= SEGMENT_SIZE);
    } finally {
      await r.close();
    }
    const out = tmp.dir('tamper-out');
    await rejectsWith(async () => {
      const rr = await openArchive(file, { decrypt: { passphrase: 'correct horse battery staple' } });
      try {
        await copyArchive(rr, path.join(out, 'copy.avsnap'), { encryption: { key } });
      } finally {
        await rr.close();
      }
    }, ['decrypt', 'checksum']);
    assert.deepEqual(listFiles(out), [], 'no destination and no temp file');
  });

  it('a changed manifest (with a recomputed sha256) fails authentication', async () => {
    const d = tmp.dir('manifest');
    const file = path.join(d, 'enc.avsnap');
    await writeEncrypted(file, key);
    const { entries, comment } = await readZip(file);
    const man = entries.find((e) => e.name === 'manifest.json')!;
    const m = JSON.parse(man.data.toString('utf8'));
    m.created_at = '2020-01-01T00:00:00.000Z';
    const newBytes = Buffer.from(JSON.stringify(m, null, 2) + '\n');
    const altered = path.join(d, 'altered.avsnap');
    await writeZip(
      altered,
      entries.map((e) => (e.name === 'manifest.json' ? { name: e.name, data: newBytes, compressed: true } : { name: e.name, data: e.data, compressed: e.compressed })),
      comment.replace(/manifest_sha256=[0-9a-f]{64}/, `manifest_sha256=${sha(newBytes)}`),
    );
    await rejectsWith(
      openArchive(altered, { decrypt: { passphrase: 'correct horse battery staple' } }),
      'tampered',
      /the manifest failed authentication: it was changed after the archive was written/,
    );
    // dropping the authentication code does not help
    const stripped = path.join(d, 'stripped.avsnap');
    await writeZip(
      stripped,
      entries.map((e) => ({ name: e.name, data: e.data, compressed: e.compressed })),
      comment.replace(/ manifest_mac=[0-9a-f]{64}/, ''),
    );
    await rejectsWith(openArchive(stripped, { decrypt: { passphrase: 'correct horse battery staple' } }), 'tampered', /authentication code is missing/);
    // an unencrypted archive where an encrypted one is expected
    const plain = path.join(d, 'plain.avsnap');
    const w = await createArchiveWriter(plain);
    await w.addJson('a.json', { a: 1 });
    await w.finish({ agents: [] });
    await rejectsWith(openArchive(plain, { decrypt: { passphrase: 'x', requireEncrypted: true } }), 'not-encrypted');
  });

  it('binds every segment to its entry: swapped, truncated or extended ciphertexts fail', async () => {
    const c = ArchiveCrypto.forWriting(key);
    const plain = randomBytes(2 * SEGMENT_SIZE + 5);
    const a = await encryptBuffer(c, 'a.bin', plain);
    assert.ok((await decryptBuffer(c, 'a.bin', a)).equals(plain));
    await rejectsWith(decryptBuffer(c, 'b.bin', a), 'decrypt', /segment 0 does not authenticate/);
    const seg = SEGMENT_SIZE + 16;
    await rejectsWith(decryptBuffer(c, 'a.bin', a.subarray(0, 24 + 2 * seg)), 'decrypt', /the last\) does not authenticate/); // last segment dropped
    await rejectsWith(decryptBuffer(c, 'a.bin', Buffer.concat([a, a.subarray(24, 24 + seg)])), 'decrypt');
    const swapped = Buffer.concat([a.subarray(0, 24), a.subarray(24 + seg, 24 + 2 * seg), a.subarray(24, 24 + seg), a.subarray(24 + 2 * seg)]);
    await rejectsWith(decryptBuffer(c, 'a.bin', swapped), 'decrypt');
    const flags = Buffer.from(a);
    flags[4] ^= 1; // claim "deflated"
    await rejectsWith(decryptBuffer(c, 'a.bin', flags), 'decrypt');
    // another archive's key (same passphrase, other archive salt) cannot read it either
    await rejectsWith(decryptBuffer(ArchiveCrypto.forWriting(key), 'a.bin', a), 'decrypt');
  });

  it('key files: raw, hex and base64 forms; a wrong key and a passphrase are refused clearly', async () => {
    const d = tmp.dir('keyfile');
    const raw = randomBytes(32);
    fs.writeFileSync(path.join(d, 'raw.key'), raw);
    fs.writeFileSync(path.join(d, 'hex.key'), raw.toString('hex') + '\n');
    fs.writeFileSync(path.join(d, 'b64.key'), raw.toString('base64') + '\n');
    fs.writeFileSync(path.join(d, 'bad.key'), 'not a key\n');
    const k1 = await readKeyFile(path.join(d, 'raw.key'));
    const k2 = await readKeyFile(path.join(d, 'hex.key'));
    const k3 = await readKeyFile(path.join(d, 'b64.key'));
    assert.equal(k1.keyId, k2.keyId);
    assert.equal(k1.keyId, k3.keyId);
    assert.equal(JSON.stringify(k1).includes(raw.toString('hex')), false, 'key bytes are not serialisable');
    await rejectsWith(readKeyFile(path.join(d, 'bad.key')), 'encryption', /does not hold a 32-byte key/);
    const file = path.join(d, 'k.avsnap');
    await writeEncrypted(file, k1);
    const r = await openArchive(file, { decrypt: { key: k3 } });
    assert.ok((await r.readEntry('secrets/agent-0.env.json')).equals(secret));
    await r.close();
    await rejectsWith(openArchive(file, { decrypt: { key: keyFromBytes(randomBytes(32)) } }), 'wrong-key', new RegExp(`wrong key: .*written with key ${k1.keyId}`));
    await rejectsWith(openArchive(file, { decrypt: { passphrase: 'anything' } }), 'wrong-key', /encrypted with a key file; a passphrase cannot open it/);
  });

  it('secrets/ entries only in encrypted archives; unencrypted archives are unchanged (no encryption fields)', async () => {
    const d = tmp.dir('plain');
    const w = await createArchiveWriter(path.join(d, 'p.avsnap'));
    await rejectsWith(w.addBuffer('secrets/env.json', secret, { encrypted: true }), 'plaintext-secret', /secrets are never stored in plain text/);
    await w.abort();
    const fixture = path.join(FIXTURES_DIR, 'memgpt-agent.v2-double-encoded.af');
    const res = await packAgentFile(fixture, path.join(d, 'packed.avsnap'));
    assert.equal(res.manifest.encryption, undefined);
    assert.ok(res.manifest.entries.every((e) => e.encrypted === undefined));
    const { comment, entries } = await readZip(path.join(d, 'packed.avsnap'));
    assert.match(comment, /^agent-vault-snapshot format_version=1 manifest_sha256=[0-9a-f]{64}$/);
    assert.ok(entries.find((e) => e.name === res.manifest.agents[0].entry)!.compressed, 'plain JSON entries are still deflated by zip');
    // and an existing plain archive copies into an encrypted one and back, byte-identical entries
    const src = await openArchive(path.join(d, 'packed.avsnap'));
    const enc = await copyArchive(src, path.join(d, 'enc.avsnap'), { encryption: { key } });
    await src.close();
    assert.ok(enc.manifest.encryption);
    const er = await openArchive(path.join(d, 'enc.avsnap'), { decrypt: { key } });
    const back = await copyArchive(er, path.join(d, 'back.avsnap'));
    await er.close();
    const orig = await readZip(path.join(d, 'packed.avsnap'));
    const again = await readZip(path.join(d, 'back.avsnap'));
    for (const e of orig.entries.filter((x) => x.name !== 'manifest.json')) {
      assert.ok(again.entries.find((x) => x.name === e.name)!.data.equals(e.data), e.name);
    }
    assert.deepEqual(back.manifest.agents, res.manifest.agents);
  });
});
