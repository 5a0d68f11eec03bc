/**
 * Encrypted snapshots end to end on the real PostgreSQL test server: exportAgents writes the
 * archive encrypted as it streams (no plaintext file) with the agents' secret values inside
 * (decrypted from Letta's value_enc where possible); restoreAgents / agent-vault restore read it
 * with the key and write the values back (value_enc NULL); a missing key exits 2 naming the
 * options, a wrong one exits 1, and neither changes a single row. validate / inspect / unpack
 * take the same key options.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentVaultError } from '../../src/core/errors';
import type { Db } from '../../src/db/types';
import { openArchive, readManifest } from '../../src/format/archive';
import { clearKeyCache, keyFromBytes, keyFromPassphrase } from '../../src/format/crypto';
import { exportAgents, secretsEntryName, type SecretsEntry } from '../../src/letta/export';
import { planRestore, restoreAgents } from '../../src/letta/restore';
import { decryptLettaValue, encryptLettaValue } from '../../src/letta/secrets';
import { seedAgentFile } from '../../src/letta/seed';
import { generateSyntheticDb } from '../../src/letta/synth';
import { runCli, runCliInProcess, type CliResult } from '../helpers/cli';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR } from '../helpers/paths';
import { tableSnapshot, urlOf } from './support';

const PASS = 'correct horse battery staple';
const FAST_SCRYPT = { N: 1024, r: 8, p: 1 };
const LETTA_KEY = 'letta-server-encryption-key-for-tests';
// three ways Letta stores a value: plain in `value` (older servers), encrypted in value_enc with
// the server key, plain in value_enc (a server without a key)
const SECRET_PLAIN = 'sk-plain-2f9e7c1d-VALUE';
const SECRET_ENC = 'sk-encrypted-8a7b6c5d-VALUE';
const SECRET_NOKEY = 'sk-nokey-41d3e2f0-VALUE';

/** The commands see this process's environment plus `env` (nothing of this process is changed). */
function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCliInProcess(args, { env });
}

interface EnvRow {
  agent_id: string;
  key: string;
  value: string;
  value_enc: string | null;
}

async function envRows(db: Db): Promise<EnvRow[]> {
  return (await db.query<EnvRow>(`SELECT agent_id, key, value, value_enc FROM agent_environment_variables ORDER BY agent_id, key`)).rows;
}

/** Messages and passages, with their vectors, as comparable text (JSON columns compared as values: jsonb). */
async function content(db: Db): Promise<{ messages: string[]; passages: string[] }> {
  const m = await db.query<{ x: string }>(
    `SELECT concat_ws('|', id, agent_id, role, content::jsonb::text, tool_calls::jsonb::text, created_at::text, approval_request_id) AS x FROM messages ORDER BY agent_id, sequence_id`,
  );
  const p = await db.query<{ x: string }>(
    `SELECT concat_ws('|', id, archive_id, text, metadata_::jsonb::text, tags::jsonb::text, created_at::text, md5(embedding::text)) AS x FROM archival_passages ORDER BY id`,
  );
  return { messages: m.rows.map((r) => r.x), passages: p.rows.map((r) => r.x) };
}

describe('letta: encrypted snapshots (export → restore with secret values, keys, refusals)', function () {
  this.timeout(120000);
  let dir: string;
  let src: Db;
  let agents: Array<{ id: string; name: string }>;
  let archive: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-encrypted-'));
    src = await freshLettaDb('pg');
    await generateSyntheticDb(src, { agents: 2, messagesPerAgent: 300, passagesPerAgent: 40, dim: 24, seed: 11 });
    await seedAgentFile(src, path.join(FIXTURES_DIR, 'customer-service.v2-early.af'), { passages: { count: 5, dim: 24, embeddingModel: 'synthetic-embedding' } });
    agents = (await src.query<{ id: string; name: string }>(`SELECT id, name FROM agents ORDER BY created_at, id`)).rows;
    assert.equal(agents.length, 3);
    const add = (i: number, n: number, key: string, value: string, valueEnc: string | null) =>
      src.query(`INSERT INTO agent_environment_variables (id, agent_id, key, value, value_enc, organization_id) SELECT $1, id, $2, $3, $4, organization_id FROM agents WHERE id = $5`, [
        `agent-env-00000000-0000-4000-8000-00000000000${n}`,
        key,
        value,
        valueEnc,
        agents[i].id,
      ]);
    await add(0, 1, 'PLAIN_TOKEN', SECRET_PLAIN, null);
    await add(0, 2, 'ENCRYPTED_TOKEN', '', encryptLettaValue(SECRET_ENC, LETTA_KEY));
    await add(2, 3, 'NOKEY_TOKEN', '', SECRET_NOKEY);
    archive = path.join(dir, 'enc.avsnap');
  });
  after(async () => {
    await src?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('Letta value_enc: decrypts with the server key, not with another', () => {
    const enc = encryptLettaValue('hello', LETTA_KEY);
    assert.equal(decryptLettaValue(enc, LETTA_KEY), 'hello');
    assert.equal(decryptLettaValue(enc, 'another key'), null);
  });

  it('exports encrypted as it streams: no plaintext file, no secret or message text in the bytes, values in secrets/ entries', async () => {
    const key = await keyFromPassphrase(PASS, { scrypt: FAST_SCRYPT });
    // every file the export creates, with what was written to it
    const created: string[] = [];
    const real = nodeFs.createWriteStream;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fsModule = require('node:fs') as typeof nodeFs;
    fsModule.createWriteStream = ((file: nodeFs.PathLike, opts?: unknown) => {
      created.push(String(file));
      return (real as (f: nodeFs.PathLike, o?: unknown) => nodeFs.WriteStream)(file, opts);
    }) as typeof nodeFs.createWriteStream;
    let res;
    try {
      res = await exportAgents(src, { select: { all: true }, out: archive, encryption: { key }, lettaEncryptionKey: LETTA_KEY });
    } finally {
      fsModule.createWriteStream = real;
    }
    assert.equal(created.length, 1, `one file written: ${created.join(', ')}`);
    assert.match(created[0], /enc\.avsnap\.tmp-[0-9a-f]+$/, 'the archive itself (its temp name), nothing staged');
    assert.deepEqual(readdirSync(dir), ['enc.avsnap']);
    assert.equal(res.secrets, 3);
    assert.deepEqual(res.warnings, []);

    const bytes = readFileSync(archive);
    for (const plain of [SECRET_PLAIN, SECRET_ENC, SECRET_NOKEY, 'PLAIN_TOKEN', 'Synthetic message', 'Synthetic passage']) {
      assert.equal(bytes.includes(Buffer.from(plain)), false, `"${plain}" is not in the archive's bytes`);
    }
    const m = await readManifest(archive);
    assert.ok(m.encryption, 'an encryption section');
    assert.equal(m.secrets, 'encrypted');
    assert.ok(
      m.entries.every((e) => e.encrypted === true),
      'every entry is encrypted',
    );
    assert.deepEqual(
      m.entries
        .filter((e) => e.name.startsWith('secrets/'))
        .map((e) => e.name)
        .sort(),
      [secretsEntryName(agents[0].id), secretsEntryName(agents[2].id)].sort(),
    );

    const r = await openArchive(archive, { decrypt: { passphrase: PASS } });
    try {
      const s0 = await r.readJson<SecretsEntry>(secretsEntryName(agents[0].id));
      assert.deepEqual(
        s0.variables.map((v) => [v.key, v.value, v.value_source]),
        [
          ['ENCRYPTED_TOKEN', SECRET_ENC, 'value_enc'],
          ['PLAIN_TOKEN', SECRET_PLAIN, 'value'],
        ],
      );
      const s2 = await r.readJson<SecretsEntry>(secretsEntryName(agents[2].id));
      assert.deepEqual(
        s2.variables.map((v) => [v.key, v.value, v.value_source]),
        [['NOKEY_TOKEN', SECRET_NOKEY, 'value_enc']],
      );
      // the .af files keep the keys with redacted values, as in a plain archive
      const af = await r.readJson<{ agents: Array<{ secrets: Record<string, string> }> }>(m.agents.find((a) => a.id === agents[0].id)!.entry);
      assert.deepEqual(af.agents[0].secrets, { ENCRYPTED_TOKEN: '', PLAIN_TOKEN: '' });
    } finally {
      await r.close();
    }
  });

  it('without the Letta key, a value encrypted by Letta falls back to the stored value, with a warning', async () => {
    const key = keyFromBytes(randomBytes(32));
    const out = path.join(dir, 'nokey.avsnap');
    const res = await exportAgents(src, { select: { ids: [agents[0].id] }, out, encryption: { key } });
    assert.equal(res.warnings.length, 1);
    assert.match(res.warnings[0], /ENCRYPTED_TOKEN: its value is encrypted with the Letta server's key \(value_enc\); set LETTA_ENCRYPTION_KEY/);
    const r = await openArchive(out, { decrypt: { key } });
    const s = await r.readJson<SecretsEntry>(secretsEntryName(agents[0].id));
    await r.close();
    assert.deepEqual(
      s.variables.map((v) => [v.key, v.value]),
      [
        ['ENCRYPTED_TOKEN', ''],
        ['PLAIN_TOKEN', SECRET_PLAIN],
      ],
    );
    rmSync(out);
  });

  it('restores with the key: every row as exported, secret values written back, value_enc NULL', async () => {
    const dst = await freshLettaDb('pg');
    try {
      clearKeyCache();
      const plan = await planRestore(dst, archive, { decrypt: { passphrase: PASS } });
      assert.equal(plan.source.encrypted, true);
      assert.equal(plan.source.secret_values, 3);
      const res = await restoreAgents(dst, archive, { decrypt: { passphrase: PASS } });
      assert.equal(res.plan.summary.created.length, 3);
      assert.deepEqual(await content(dst), await content(src));
      assert.deepEqual(
        (await envRows(dst)).map((e) => [e.agent_id, e.key, e.value, e.value_enc]),
        [
          [agents[0].id, 'ENCRYPTED_TOKEN', SECRET_ENC, null],
          [agents[0].id, 'PLAIN_TOKEN', SECRET_PLAIN, null],
          [agents[2].id, 'NOKEY_TOKEN', SECRET_NOKEY, null],
        ].sort((a, b) => String(a[0]).localeCompare(String(b[0])) || String(a[1]).localeCompare(String(b[1]))),
      );
    } finally {
      await dst.close();
    }
  });

  it('--no-secrets restores the keys with redacted values; a plain export has no values at all', async () => {
    const dst = await freshLettaDb('pg');
    try {
      const r1 = await run(['restore', archive, '--db', await urlOf(dst), '--passphrase-env', 'AV_TEST_PASS', '--no-secrets', '-q'], { AV_TEST_PASS: PASS });
      assert.equal(r1.code, 0, r1.stderr);
      assert.deepEqual(
        (await envRows(dst)).map((e) => e.value),
        ['', '', ''],
      );
    } finally {
      await dst.close();
    }
    const plain = path.join(dir, 'plain.avsnap');
    const res = await exportAgents(src, { select: { all: true }, out: plain, lettaEncryptionKey: LETTA_KEY });
    assert.equal(res.secrets, 0);
    assert.equal(res.manifest.secrets, 'redacted');
    assert.ok(!res.manifest.entries.some((e) => e.name.startsWith('secrets/')));
    for (const s of [SECRET_PLAIN, SECRET_ENC, SECRET_NOKEY]) assert.equal(readFileSync(plain).includes(Buffer.from(s)), false);
    const dst2 = await freshLettaDb('pg');
    try {
      await restoreAgents(dst2, plain);
      assert.deepEqual((await envRows(dst2)).map((e) => [e.key, e.value]).sort(), [
        ['ENCRYPTED_TOKEN', ''],
        ['NOKEY_TOKEN', ''],
        ['PLAIN_TOKEN', ''],
      ]);
    } finally {
      await dst2.close();
      rmSync(plain);
    }
  });

  it('a missing key exits 2 naming the options, a wrong key exits 1; nothing changes (every table checksummed)', async () => {
    const dst = await freshLettaDb('pg');
    try {
      // a target that is not empty
      await seedAgentFile(dst, path.join(FIXTURES_DIR, 'loop.v2.af'));
      const url = await urlOf(dst);
      const before = await tableSnapshot(dst);
      const none = await run(['restore', archive, '--db', url], { AGENT_VAULT_PASSPHRASE: '' });
      assert.equal(none.code, 2, none.stderr);
      assert.match(none.stderr, /is encrypted and no passphrase or key was given; nothing was read or changed/);
      assert.match(none.stderr, /--passphrase-env NAME, --passphrase-file FILE or --key-file FILE/);
      const dry = await run(['restore', archive, '--db', url, '--dry-run'], { AGENT_VAULT_PASSPHRASE: '' });
      assert.equal(dry.code, 2, dry.stderr);
      clearKeyCache();
      const wrong = await run(['restore', archive, '--db', url, '--passphrase-env', 'AV_WRONG'], { AV_WRONG: 'not the passphrase' });
      assert.equal(wrong.code, 1, wrong.stderr);
      assert.match(wrong.stderr, /wrong passphrase: the archive cannot be decrypted with it/);
      const keyFile = path.join(dir, 'other.key');
      writeFileSync(keyFile, randomBytes(32).toString('hex'));
      const wrongKind = await run(['restore', archive, '--db', url, '--key-file', keyFile]);
      assert.equal(wrongKind.code, 1, wrongKind.stderr);
      assert.match(wrongKind.stderr, /encrypted with a passphrase; a key file cannot open it/);
      const unset = await run(['restore', archive, '--db', url, '--passphrase-env', 'AV_UNSET_VARIABLE']);
      assert.equal(unset.code, 2, unset.stderr);
      assert.match(unset.stderr, /AV_UNSET_VARIABLE .* is not set/);
      await assert.rejects(restoreAgents(dst, archive), (e: unknown) => e instanceof AgentVaultError && e.code === 'no-key' && e.kind === 'usage');
      await assert.rejects(planRestore(dst, archive), (e: unknown) => e instanceof AgentVaultError && e.code === 'no-key');
      assert.deepEqual(await tableSnapshot(dst), before);
      // the right passphrase: a dry run says what it would write, the restore writes it
      const ok = await run(['restore', archive, '--db', url, '--passphrase-env', 'AV_RIGHT', '--dry-run'], { AV_RIGHT: PASS });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /The archive is encrypted; 3 secret values \(environment variables\) will be written\./);
      assert.deepEqual(await tableSnapshot(dst), before);
    } finally {
      await dst.close();
    }
  });

  it('the CLI: export --encrypt --key-file; restore, validate, inspect, unpack take the same key options', async () => {
    const keyFile = path.join(dir, 'vault.key');
    writeFileSync(keyFile, randomBytes(32));
    const out = path.join(dir, 'cli.avsnap');
    const ex = await run(['export', '--db', await urlOf(src), '--all', '-o', out, '--encrypt', '--key-file', keyFile], { LETTA_ENCRYPTION_KEY: LETTA_KEY });
    assert.equal(ex.code, 0, ex.stderr);
    assert.match(ex.stdout, /Encrypted, with 3 secret values inside\./);
    assert.equal(readFileSync(out).includes(Buffer.from(SECRET_ENC)), false);
    const noKeyEnv = { AGENT_VAULT_PASSPHRASE: '' };

    const v0 = runCli(['validate', out], { env: noKeyEnv });
    assert.equal(v0.code, 2, v0.stdout + v0.stderr);
    // the message, then the CLI's hint naming the key options
    assert.match(v0.stderr, /is encrypted and no passphrase or key was given[^\n]*\n(?:hint: [^\n]*\n)*?hint: [^\n]*--key-file FILE/);
    const v1 = runCli(['validate', out, '--key-file', keyFile], { env: noKeyEnv });
    assert.equal(v1.code, 0, v1.stdout + v1.stderr);
    assert.match(v1.stdout, /cli\.avsnap: valid/);

    const i0 = runCli(['inspect', out], { env: noKeyEnv });
    assert.equal(i0.code, 0, i0.stderr);
    assert.match(i0.stdout, /encrypted \(aes-256-gcm-entry-v1\); the manifest below is not authenticated/);
    const i1 = runCli(['inspect', out, '--key-file', keyFile, '--json'], { env: noKeyEnv });
    assert.equal(i1.code, 0, i1.stderr);
    assert.deepEqual([JSON.parse(i1.stdout).encrypted, JSON.parse(i1.stdout).authenticated], [true, true]);
    const other = path.join(dir, 'other2.key');
    writeFileSync(other, randomBytes(32));
    const i2 = runCli(['inspect', out, '--key-file', other], { env: noKeyEnv });
    assert.equal(i2.code, 1, i2.stdout + i2.stderr);
    assert.match(i2.stderr, /wrong key/);

    const unpacked = path.join(dir, 'unpacked');
    const u0 = runCli(['unpack', out, '-o', unpacked], { env: noKeyEnv });
    assert.equal(u0.code, 2, u0.stderr);
    assert.match(u0.stderr, /nothing was written/);
    assert.equal(nodeFs.existsSync(unpacked) && readdirSync(unpacked).length > 0, false);
    const u1 = runCli(['unpack', out, '-o', unpacked, '--key-file', keyFile], { env: noKeyEnv });
    assert.equal(u1.code, 0, u1.stderr);
    assert.equal(readdirSync(unpacked).filter((f) => f.endsWith('.af')).length, 3);

    const dst = await freshLettaDb('pg');
    try {
      const r = await run(['restore', out, '--db', await urlOf(dst), '--key-file', keyFile, '-q'], noKeyEnv);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Restored 3 agents/);
      assert.deepEqual((await envRows(dst)).map((e) => e.value).sort(), [SECRET_ENC, SECRET_NOKEY, SECRET_PLAIN].sort());
    } finally {
      await dst.close();
    }
  });
});
