/**
 * Frozen format: example archives of format_version 1, written once by test/format/frozen/make-v1.ts
 * and committed, are read with today's code. Every other format test writes an archive and reads
 * it back with the same code, so a change that breaks old archives (an HKDF info string, the key
 * id, an entry layout, the vector encoding) would keep them green; these tests fail instead.
 * Never regenerate the v1 files: a new format version gets its own folder next to them.
 */
import { strict as assert } from 'node:assert';
import { createHash, hkdfSync, scryptSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openArchive, readManifest } from '../../src/format/archive';
import { ArchiveCrypto, keyFromBytes } from '../../src/format/crypto';
import { openPglite } from '../../src/db/pglite';
import { createLettaSchema } from '../../src/letta/ddl';
import { restoreAgents } from '../../src/letta/restore';
import { runCli } from '../helpers/cli';
import { FROZEN_V1 } from './frozen/expected';

const V1 = path.join(__dirname, 'frozen', 'v1');
const KEY_FILE = path.join(V1, 'vault.key');
const EXPECTED: Record<string, Record<string, string>> = JSON.parse(fs.readFileSync(path.join(V1, 'expected-entries.json'), 'utf8'));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const keyBytes = (): Buffer => Buffer.from(fs.readFileSync(KEY_FILE, 'utf8').trim(), 'hex');

const ARCHIVES = [
  { file: 'plain.avsnap', decrypt: undefined, cli: [] as string[] },
  { file: 'passphrase.avsnap', decrypt: { passphrase: FROZEN_V1.passphrase }, cli: ['--passphrase-env', 'FROZEN_PASS'] },
  { file: 'keyfile.avsnap', decrypt: { key: keyBytes() }, cli: ['--key-file', KEY_FILE] },
];

describe('format: frozen format_version 1 archives stay readable', function () {
  this.timeout(120000);

  for (const a of ARCHIVES) {
    describe(a.file, () => {
      it("opens with today's reader: manifest v1, every entry verified, plaintext bytes unchanged", async () => {
        const file = path.join(V1, a.file);
        const m = await readManifest(file);
        assert.equal(m.format, 'agent-vault-snapshot');
        assert.equal(m.format_version, 1);
        assert.equal(m.created_at, FROZEN_V1.createdAt);
        assert.equal(m.agents.length, 1);
        assert.equal(m.agents[0].counts.passages, FROZEN_V1.passages);
        const r = await openArchive(file, { decrypt: a.decrypt, verifyEntries: true });
        try {
          assert.equal(r.encrypted, a.decrypt !== undefined);
          const got: Record<string, string> = {};
          for (const e of r.manifest.entries) got[e.name] = sha(await r.readEntry(e.name));
          assert.deepEqual(got, EXPECTED[a.file]);
        } finally {
          await r.close();
        }
      });

      it('`agent-vault validate` accepts it (exit 0)', () => {
        const res = runCli(['validate', path.join(V1, a.file), ...a.cli], { env: { FROZEN_PASS: FROZEN_V1.passphrase } });
        assert.equal(res.code, 0, res.stdout + res.stderr);
      });

      it('holds the secret value only encrypted', () => {
        const raw = fs.readFileSync(path.join(V1, a.file));
        assert.equal(raw.includes(Buffer.from(FROZEN_V1.secretValue)), false);
        const names = Object.keys(EXPECTED[a.file]);
        assert.equal(
          names.some((n) => n.startsWith('secrets/')),
          a.decrypt !== undefined,
        );
      });
    });
  }

  it("restores into a new database with today's code: agent, passages and (from the encrypted archive) the secret value", async () => {
    for (const a of [ARCHIVES[0], ARCHIVES[2]]) {
      const db = await openPglite();
      try {
        await createLettaSchema(db);
        await restoreAgents(db, path.join(V1, a.file), { decrypt: a.decrypt });
        const agents = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM agents');
        assert.equal(agents.rows[0].n, '1', a.file);
        const passages = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM archival_passages');
        assert.equal(passages.rows[0].n, String(FROZEN_V1.passages), a.file);
        const env = await db.query<{ value: string }>("SELECT value FROM agent_environment_variables WHERE key = 'FROZEN_API_TOKEN'");
        if (a.decrypt) assert.equal(env.rows[0]?.value, FROZEN_V1.secretValue, a.file);
        else assert.notEqual(env.rows[0]?.value, FROZEN_V1.secretValue, a.file);
      } finally {
        await db.close();
      }
    }
  });

  describe('key derivation (docs/FORMAT.md §9.1): fixed outputs', () => {
    const master = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
    const salt = Buffer.alloc(16, 0xa5);
    const c = new ArchiveCrypto(master, salt, { name: 'raw' }, null);

    it('HKDF outputs for a fixed master key and salts', () => {
      assert.equal(keyFromBytes(master).keyId, '6cd96a14baad5d24');
      assert.equal(c.keyCheck.toString('base64'), '2i62RL853AarjiLJstLd4g==');
      assert.equal(c.entryKey(Buffer.alloc(16, 1)).toString('hex'), '0db70ccbdd8c0e1497dbe6cd611b07e4556a512486fb9e45bb8a451e3297cda6');
      assert.equal(c.manifestMac(Buffer.from('{"format":"agent-vault-snapshot"}')), 'a547c5dc885328afe9ac1181cccd179a3e85d5a1826eb641e293715ced6faa4e');
    });

    it('the same values follow from the written spec alone (RFC 5869 HKDF with the documented info strings)', () => {
      const h = (ikm: Buffer, s: Buffer, info: string, n: number): Buffer => Buffer.from(hkdfSync('sha256', ikm, s, info, n));
      assert.equal(h(master, Buffer.alloc(0), 'agent-vault/key-id', 8).toString('hex'), '6cd96a14baad5d24');
      assert.equal(h(master, salt, 'agent-vault/aes-256-gcm-entry-v1/key-check', 16).toString('base64'), '2i62RL853AarjiLJstLd4g==');
      const base = h(master, salt, 'agent-vault/aes-256-gcm-entry-v1/entries', 32);
      assert.equal(h(base, Buffer.alloc(16, 1), 'agent-vault/aes-256-gcm-entry-v1/entry', 32).toString('hex'), '0db70ccbdd8c0e1497dbe6cd611b07e4556a512486fb9e45bb8a451e3297cda6');
    });

    it("the frozen archives' key checks follow from scrypt / the key file as specified", async () => {
      const pm = await readManifest(path.join(V1, 'passphrase.avsnap'));
      const enc = pm.encryption as any;
      assert.equal(enc.kdf.name, 'scrypt');
      const pmaster = scryptSync(FROZEN_V1.passphrase.normalize('NFC'), Buffer.from(enc.kdf.salt, 'base64'), 32, { N: enc.kdf.N, r: enc.kdf.r, p: enc.kdf.p });
      const pc = new ArchiveCrypto(pmaster, Buffer.from(enc.salt, 'base64'), enc.kdf, null);
      assert.equal(pc.keyCheck.toString('base64'), enc.key_check);

      const km = await readManifest(path.join(V1, 'keyfile.avsnap'));
      const kenc = km.encryption as any;
      assert.equal(kenc.kdf.name, 'raw');
      assert.equal(kenc.key_id, keyFromBytes(keyBytes()).keyId);
      const kc = new ArchiveCrypto(keyBytes(), Buffer.from(kenc.salt, 'base64'), kenc.kdf, kenc.key_id);
      assert.equal(kc.keyCheck.toString('base64'), kenc.key_check);
    });
  });
});
