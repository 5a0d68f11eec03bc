import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Db } from '../../src/db/types';
import { createArchiveWriter, openArchive, readManifest } from '../../src/format/archive';
import { encodeVectors, readVectors } from '../../src/format/vectors';
import { clearKeyCache } from '../../src/format/crypto';
import { runBackup, secretsEntryName } from '../../src/vault/backup';
import { runDrill } from '../../src/vault/drill';
import { verifyVault } from '../../src/vault/verify';
import { vaultStatus } from '../../src/vault/status';
import { readIndex, readRunLog } from '../../src/vault/vault';
import type { VaultConfig } from '../../src/vault/config';
import { PROBES_ENTRY, readProbes } from '../../src/vault/probes';
import { freshLettaDb } from '../helpers/letta-db';
import { MEMORY_COLLECTION, seedStandard, startEnv } from '../qdrant/helpers';
import { restoreQdrantFromArchive } from '../../src/qdrant/archive';
import { addSyntheticPassages, seedFixtures } from './letta-data';
import { flipByte, listFiles, makeTmpRoot, readZip, rejectsWith, startHookServer } from './helpers';

const FIXTURES = [
  'memgpt-agent.v2-double-encoded.af',
  'lettabot-builder.v2.af', // two agents, a sleeptime group, 191 messages
  'void.v2.af', // files and sources
  'ezra.v2.af', // no messages, 56 blocks
  'customer-service.v1.af', // v1, upgraded on import
];
const SECRET = 'sk-live-7c1d0e5aSECRET';
const PASS = 'drill passphrase';
const FAST_SCRYPT = { N: 1024, r: 8, p: 1 };

describe('vault: backup, verify and restore drills (PGlite)', function () {
  this.timeout(240000);
  const tmp = makeTmpRoot('vault');
  let source: Db;
  let agents: string[];
  let withPassages: string[];

  before(async () => {
    source = await freshLettaDb('pglite');
    agents = await seedFixtures(source, FIXTURES);
    assert.equal(agents.length, 6);
    // real, clustered embeddings for three agents (one of them in the group)
    withPassages = [agents[0], agents[1], agents[3]];
    for (const [i, id] of withPassages.entries()) await addSyntheticPassages(source, id, 40 + 10 * i, `passages-${i}`);
    // a secret value in an agent environment variable
    await source.query(
      `INSERT INTO agent_environment_variables (id, agent_id, key, value, organization_id) SELECT 'agent-env-00000000-0000-4000-8000-000000000001', id, 'OPENWEATHER_API_KEY', $2, organization_id FROM agents WHERE id = $1`,
      [agents[0], SECRET],
    );
  });
  after(async () => {
    await source?.close();
    tmp.cleanup();
  });

  function config(vault: string, extra: Partial<VaultConfig> = {}): VaultConfig {
    return { vault, source: { kind: 'pglite', dataDir: '/nonexistent-not-used' }, probes: { perAgent: 4, topK: 5 }, ...extra };
  }

  it('backs up the fixtures; verify --deep passes; a drill into embedded PGlite passes every check and reports RTO', async () => {
    const vault = path.join(tmp.dir('plain'), 'vault');
    const res = await runBackup({ config: config(vault), db: source });
    const snap = res.snapshot;
    assert.deepEqual(snap.agents.map((a) => a.id).sort(), [...agents].sort());
    assert.equal(snap.encrypted, false);
    assert.equal(snap.probes, 12, '4 probes for each of the 3 agents with passages');
    assert.equal(snap.secrets, false);
    const index = await readIndex(vault);
    assert.deepEqual(
      index.snapshots.map((s) => s.id),
      [snap.id],
    );
    assert.deepEqual(
      listFiles(vault).filter((f) => !f.startsWith('runs')),
      ['snapshots/' + snap.id + '.avsnap', 'vault.json'],
    );

    // no secret value in an unencrypted snapshot: keys only, values redacted
    const m = await readManifest(res.path);
    assert.equal(m.secrets, 'redacted');
    assert.ok(!m.entries.some((e) => e.name.startsWith('secrets/')));
    const zipped = await readZip(res.path);
    assert.ok(zipped.entries.every((e) => !e.data.includes(Buffer.from(SECRET))));
    assert.ok(
      zipped.entries.some((e) => e.data.includes(Buffer.from('OPENWEATHER_API_KEY'))),
      'the key itself is kept',
    );
    // probes: recorded per agent with passages, top-5 of the archive's own vectors
    const r = await openArchive(res.path);
    const probes = (await readProbes(r))!;
    await r.close();
    assert.deepEqual(probes.agents.map((a) => a.agent_id).sort(), [...withPassages].sort());
    for (const a of probes.agents) {
      assert.equal(a.probes.length, 4);
      for (const p of a.probes) {
        assert.equal(p.top.length, 5);
        assert.equal(p.top[0].id, p.source_passage_id, 'the noisy query is nearest to its own passage');
      }
    }
    assert.deepEqual(m.probes, { entry: PROBES_ENTRY, metric: 'cosine', top_k: 5, count: 12, agents: 3 });

    const v = await verifyVault(vault, { deep: true });
    assert.ok(v.ok, JSON.stringify(v.snapshots[0].checks.filter((c) => !c.ok)));
    assert.deepEqual(
      v.snapshots[0].checks.map((c) => c.name),
      ['file', 'sha256', 'manifest', 'index', 'checksums', 'schemas', 'counts', 'passages', 'probes'],
    );

    const drill = await runDrill({ snapshot: 'latest', vaultDir: vault });
    assert.equal(
      drill.ok,
      true,
      JSON.stringify(
        drill.checks.filter((c) => !c.ok),
        null,
        1,
      ),
    );
    assert.deepEqual(
      drill.checks.map((c) => [c.name, c.ok, !!c.skipped]),
      [
        ['integrity', true, false],
        ['decrypt', true, true],
        ['references', true, false],
        ['restore', true, false],
        ['row-counts', true, false],
        ['in-context-messages', true, false],
        ['vector-search', true, false],
      ],
    );
    assert.match(drill.checks.find((c) => c.name === 'vector-search')!.message, /^12\/12 probe searches \(top-5, cosine\) return the recorded passages$/);
    assert.ok(drill.timings.rto_ms! > 0 && drill.timings.first_vector_search_ms! >= drill.timings.rto_ms!);
    assert.equal(drill.target, 'embedded PGlite (in memory)');
    for (const a of drill.agents) assert.deepEqual(a.counts!.actual, a.counts!.expected, a.id);
    assert.equal(drill.agents.find((a) => a.id === agents[1])!.counts!.expected.messages, 3);
    assert.ok(drill.files);
    const md = fs.readFileSync(path.join(vault, drill.files!.markdown), 'utf8');
    assert.match(md, /^# Restore drill: PASSED/);
    assert.match(md, /Time to restore \(RTO\): \*\*\d/);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(vault, drill.files!.json), 'utf8')).ok, true);

    const st = await vaultStatus(vault);
    assert.equal(st.level, 'ok', JSON.stringify(st.agents.map((a) => a.warnings)));
    assert.ok(st.agents.every((a) => a.last_drill?.ok === true && !a.stale));
    const log = await readRunLog(vault);
    assert.deepEqual(
      log.map((l) => [l.command, l.ok, l.snapshot]),
      [['backup', true, snap.id]],
    );
  });

  it('encrypted round trip: secrets only inside; the drill passes with the passphrase; a wrong passphrase or a tampered ciphertext fails naming the check and writes nothing', async () => {
    const vault = path.join(tmp.dir('enc'), 'vault');
    const env = { AGENT_VAULT_PASSPHRASE: PASS };
    const res = await runBackup({ config: config(vault, { encryption: { enabled: true, scrypt: FAST_SCRYPT } }), db: source, env });
    assert.equal(res.snapshot.encrypted, true);
    assert.equal(res.snapshot.secrets, true);
    const bytes = fs.readFileSync(res.path);
    for (const plain of [SECRET, 'OPENWEATHER_API_KEY', 'memory 3 of']) assert.equal(bytes.includes(Buffer.from(plain)), false, plain);
    // the vault's scrypt parameters are recorded once and reused
    const index = await readIndex(vault);
    assert.deepEqual({ ...index.kdf, salt: undefined }, { name: 'scrypt', salt: undefined, ...FAST_SCRYPT });
    const r = await openArchive(res.path, { decrypt: { passphrase: PASS } });
    const secrets = await r.readJson<{ agent_id: string; variables: Array<{ key: string; value: string }> }>(secretsEntryName(agents[0]));
    await r.close();
    assert.deepEqual(
      secrets.variables.map((v) => [v.key, v.value]),
      [['OPENWEATHER_API_KEY', SECRET]],
    );

    // verify: without the key decryptability is a failed check; with it everything passes
    clearKeyCache();
    const noKey = await verifyVault(vault);
    assert.equal(noKey.ok, false);
    assert.match(noKey.snapshots[0].checks.find((c) => c.name === 'decrypt')!.message!, /encrypted and no passphrase or key was given/);
    assert.ok(noKey.snapshots[0].checks.find((c) => c.name === 'checksums')!.ok, 'checksums verify without the key');
    const withKey = await verifyVault(vault, { deep: true, decrypt: { passphrase: PASS } });
    assert.ok(withKey.ok, JSON.stringify(withKey.snapshots[0].checks));

    // decrypted scratch copies go to os.tmpdir(): point it at a private folder to see what is left
    const privateTmp = tmp.dir('os-tmp');
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = privateTmp;
    try {
      assert.equal(os.tmpdir(), privateTmp);
      const scratch = await freshLettaDb('pglite');
      try {
        const ok = await runDrill({ snapshot: res.snapshot.id, vaultDir: vault, decrypt: { passphrase: PASS }, db: scratch });
        assert.equal(ok.ok, true, JSON.stringify(ok.checks.filter((c) => !c.ok)));
        assert.match(ok.checks.find((c) => c.name === 'decrypt')!.message, /decrypted with the passphrase; the manifest authenticates/);
        assert.equal((await scratch.query('SELECT count(*)::int AS n FROM agents')).rows[0].n, 6);
      } finally {
        await scratch.close();
      }

      // wrong passphrase
      const empty1 = await freshLettaDb('pglite');
      try {
        clearKeyCache();
        const bad = await runDrill({ snapshot: res.snapshot.id, vaultDir: vault, decrypt: { passphrase: 'not the passphrase' }, db: empty1 });
        assert.equal(bad.ok, false);
        assert.deepEqual(bad.failed_checks, ['decrypt']);
        assert.match(bad.checks.find((c) => c.name === 'decrypt')!.message, /wrong passphrase: the archive cannot be decrypted with it/);
        assert.deepEqual(
          bad.checks.filter((c) => c.skipped).map((c) => c.name),
          ['integrity', 'references', 'restore', 'row-counts', 'in-context-messages', 'vector-search'],
        );
        assert.equal((await empty1.query('SELECT count(*)::int AS n FROM agents')).rows[0].n, 0, 'nothing restored');
        assert.equal((await empty1.query('SELECT count(*)::int AS n FROM archival_passages')).rows[0].n, 0);
      } finally {
        await empty1.close();
      }
      // tampered ciphertext (a copy of the snapshot with one byte changed inside an encrypted .af)
      const tampered = path.join(tmp.dir('tampered-enc'), 'tampered.avsnap');
      fs.copyFileSync(res.path, tampered);
      const z = await readZip(tampered);
      const af = z.entries.find((e) => e.name === `agents/${agents[1]}.af`)!;
      flipByte(tampered, af.dataOffset + 200);
      const empty2 = await freshLettaDb('pglite');
      try {
        const bad = await runDrill({ snapshot: tampered, decrypt: { passphrase: PASS }, db: empty2, reportDir: path.dirname(tampered) });
        assert.equal(bad.ok, false);
        assert.deepEqual(bad.failed_checks, ['integrity']);
        const integrity = bad.checks.find((c) => c.name === 'integrity')!;
        assert.match(integrity.message, new RegExp(`1 of \\d+ entries are damaged or fail authentication: agents/${agents[1]}\\.af`));
        assert.match(integrity.failures!.join('\n'), /is corrupt: its sha256 is [0-9a-f]{64}, the manifest records|failed authentication: segment 0 does not authenticate/);
        assert.equal((await empty2.query('SELECT count(*)::int AS n FROM agents')).rows[0].n, 0, 'nothing restored');
        assert.ok(fs.existsSync(path.join(path.dirname(tampered), path.basename(bad.files!.json))));
      } finally {
        await empty2.close();
      }
      assert.deepEqual(fs.readdirSync(privateTmp), [], 'no decrypted scratch copy is left behind');
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
  });

  it('puts the configured Qdrant collections (test double) into the snapshot, encrypted, and they restore from it', async () => {
    const q = await startEnv();
    try {
      seedStandard(q.double);
      const vault = path.join(tmp.dir('qdrant'), 'vault');
      const res = await runBackup({
        config: config(vault, { agents: { ids: [agents[0]] }, qdrant: { url: q.double.url, collections: [MEMORY_COLLECTION], points: true }, encryption: { enabled: true, scrypt: FAST_SCRYPT } }),
        db: source,
        env: { AGENT_VAULT_PASSPHRASE: PASS },
      });
      assert.deepEqual(res.snapshot.collections, [MEMORY_COLLECTION]);
      assert.deepEqual(
        res.snapshot.agents.map((a) => a.id),
        [agents[0]],
      );
      const m = await readManifest(res.path);
      assert.deepEqual(
        m.entries.filter((e) => e.name.startsWith('qdrant/')).map((e) => [e.name, e.encrypted]),
        [
          [`qdrant/${MEMORY_COLLECTION}.snapshot`, true],
          [`qdrant/${MEMORY_COLLECTION}.points.jsonl`, true],
        ],
      );
      const r = await openArchive(res.path, { decrypt: { passphrase: PASS } });
      try {
        const restored = await restoreQdrantFromArchive(r, q.conn(), { targetName: 'restored_memory', settleMs: 10 });
        assert.ok(restored);
      } finally {
        await r.close();
      }
      const count = await q.conn().call('count', (c) => c.count('restored_memory', { exact: true }));
      const orig = await q.conn().call('count', (c) => c.count(MEMORY_COLLECTION, { exact: true }));
      assert.equal(count.count, orig.count);
      assert.ok(count.count > 0);
    } finally {
      await q.cleanup();
    }
  });

  it('a drill fails, naming the check, on a tampered snapshot and on one whose vectors were altered', async () => {
    const dir = tmp.dir('bad');
    const vault = path.join(dir, 'vault');
    const res = await runBackup({ config: config(vault, { probes: { perAgent: 3, topK: 5 } }), db: source });

    // 1. one byte of an agent file changed
    const tampered = path.join(dir, 'tampered.avsnap');
    fs.copyFileSync(res.path, tampered);
    const z = await readZip(tampered);
    const af = z.entries.find((e) => e.name === `agents/${agents[0]}.af`)!;
    flipByte(tampered, af.dataOffset + 50);
    const t = await runDrill({ snapshot: tampered, reportDir: dir, db: await freshLettaDb('pglite').then((d) => (scratchDbs.push(d), d)) });
    assert.equal(t.ok, false);
    assert.deepEqual(t.failed_checks, ['integrity']);
    assert.match(t.checks[0].message, new RegExp(`entries are damaged: agents/${agents[0]}\\.af`));
    assert.match(t.checks[0].failures!.join(), /is corrupt: (its compressed data is invalid|its sha256 is|its CRC-32)/);
    assert.ok(t.checks.filter((c) => c.name !== 'integrity').every((c) => c.skipped));
    assert.match(fs.readFileSync(path.join(dir, path.basename(t.files!.markdown)), 'utf8'), /# Restore drill: FAILED[\s\S]*Failed checks: `integrity`/);

    // 2. vectors of one agent altered (rotated by one passage), archive rewritten with valid checksums
    const altered = path.join(dir, 'altered.avsnap');
    const src = await openArchive(res.path);
    const victim = src.manifest.agents.find((a) => a.id === agents[3])!;
    const w = await createArchiveWriter(altered);
    for (const e of src.manifest.entries) {
      if (e.name === victim.vectors_entry) {
        const rows = [...readVectors(await src.readEntry(e.name))];
        rows.push(rows.shift()!);
        await w.addBuffer(e.name, encodeVectors(rows, rows[0].length), { compress: false });
      } else await w.addStream(e.name, await src.openStream(e.name), { mediaType: e.media_type });
    }
    const { entries: _e, format: _f, format_version: _v, tool: _t, ...rest } = src.manifest;
    await w.finish(rest);
    await src.close();
    const v = await runDrill({ snapshot: altered, reportDir: dir, db: await freshLettaDb('pglite').then((d) => (scratchDbs.push(d), d)) });
    assert.equal(v.ok, false);
    assert.deepEqual(v.failed_checks, ['vector-search']);
    assert.deepEqual(
      v.checks.filter((c) => c.ok && !c.skipped).map((c) => c.name),
      ['integrity', 'references', 'restore', 'row-counts', 'in-context-messages'],
    );
    const vs = v.checks.find((c) => c.name === 'vector-search')!;
    assert.match(vs.message, /^3 of 9 probe searches return other passages than recorded$/);
    assert.ok(
      vs.failures!.every((f) => f.includes(agents[3])),
      'only the altered agent fails',
    );
    assert.match(vs.failures![0], /rank 1: (distance|got)/);
    assert.deepEqual(v.agents.find((a) => a.id === agents[3])!.probes, { total: 3, passed: 0 });
    assert.deepEqual(v.agents.find((a) => a.id === agents[0])!.probes, { total: 3, passed: 3 });
  });

  const scratchDbs: Db[] = [];
  after(async () => {
    for (const d of scratchDbs) await d.close().catch(() => undefined);
  });

  it('two backups started at once: the second refuses while the first holds the lock (or waits with waitMs); the vault stays consistent', async () => {
    const vault = path.join(tmp.dir('concurrent'), 'vault');
    let second: Promise<unknown> | undefined;
    let third: Promise<{ snapshot: { id: string } }> | undefined;
    const first = runBackup({
      config: config(vault),
      db: source,
      onLocked: () => {
        second = runBackup({ config: config(vault), db: source });
        second.catch(() => undefined);
        third = runBackup({ config: config(vault), db: source, waitMs: 60000 });
        third.catch(() => undefined);
      },
    });
    const r1 = await first;
    await rejectsWith(second!, 'locked', /is locked by "backup" \(pid \d+ on .*\); not starting a second run/);
    const r3 = await third!;
    assert.notEqual(r3.snapshot.id, r1.snapshot.id);
    const index = await readIndex(vault);
    assert.deepEqual(index.snapshots.map((s) => s.id).sort(), [r1.snapshot.id, r3.snapshot.id].sort());
    assert.ok((await verifyVault(vault)).ok);
    const log = await readRunLog(vault);
    assert.deepEqual(
      log.map((l) => [l.ok, l.error?.code ?? null]).sort(),
      [
        [false, 'locked'],
        [true, null],
        [true, null],
      ].sort(),
    );
    const ok = log.filter((l) => l.ok);
    const [a, b] = ok.sort((x, y) => String(x.locked_at).localeCompare(String(y.locked_at)));
    assert.ok(String(a.unlocked_at) <= String(b.locked_at), 'the lock-holding periods do not overlap');
    assert.deepEqual(listFiles(path.join(vault, '.tmp')), []);
    assert.equal(fs.existsSync(path.join(vault, '.lock')), false);
  });

  it('a full disk (injected ENOSPC) fails the backup cleanly: nothing listed, no temp files, lock released, webhook called', async () => {
    const vault = path.join(tmp.dir('enospc'), 'vault');
    const hook = await startHookServer('ok');
    const cfg = config(vault, { webhook: { url: hook.url, on: ['failure', 'success'] } });
    const good = await runBackup({ config: cfg, db: source });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeFs = require('node:fs') as typeof fs; // the module object itself (the import is a read-only namespace)
    const realCreate = nodeFs.createWriteStream;
    const patched = ((file: fs.PathLike, opts?: unknown) => {
      const ws = (realCreate as (f: fs.PathLike, o?: unknown) => fs.WriteStream)(file, opts);
      if (String(file).includes(`${path.sep}snapshots${path.sep}`)) {
        let written = 0;
        const orig = ws._write.bind(ws);
        ws._write = (chunk: Buffer, enc: BufferEncoding, cb: (e?: Error | null) => void) => {
          written += chunk.length;
          if (written > 64 * 1024) {
            const e = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
            cb(e);
            return;
          }
          orig(chunk, enc, cb);
        };
      }
      return ws;
    }) as typeof fs.createWriteStream;
    nodeFs.createWriteStream = patched;
    try {
      const err = await rejectsWith(runBackup({ config: cfg, db: source }), 'disk-full', /no space left on the device/);
      assert.match(err.message, /snapshots\/.*\.avsnap/);
    } finally {
      nodeFs.createWriteStream = realCreate;
    }
    // and on the index write
    const realOpen = fs.promises.open;
    (fs.promises as { open: typeof fs.promises.open }).open = (async (p: fs.PathLike, flags?: string | number, mode?: fs.Mode) => {
      if (/vault\.json\.tmp-/.test(String(p))) throw Object.assign(new Error('ENOSPC: no space left on device, open'), { code: 'ENOSPC' });
      return realOpen(p, flags, mode);
    }) as typeof fs.promises.open;
    try {
      await rejectsWith(runBackup({ config: cfg, db: source }), 'disk-full', /cannot write .*vault\.json: no space left on the device/);
    } finally {
      (fs.promises as { open: typeof fs.promises.open }).open = realOpen;
    }
    try {
      const index = await readIndex(vault);
      assert.deepEqual(
        index.snapshots.map((s) => s.id),
        [good.snapshot.id],
        'only the good snapshot is listed',
      );
      assert.deepEqual(fs.readdirSync(path.join(vault, 'snapshots')), [`${good.snapshot.id}.avsnap`], 'no partial or unlisted archive');
      assert.deepEqual(fs.readdirSync(path.join(vault, '.tmp')), []);
      assert.ok(!fs.readdirSync(vault).some((n) => n.includes('.tmp-') || n === '.lock'));
      assert.ok((await verifyVault(vault)).ok);
      assert.deepEqual(
        hook.requests.map((r) => [r.body.event, r.body.error?.code ?? null]),
        [
          ['backup.succeeded', null],
          ['backup.failed', 'disk-full'],
          ['backup.failed', 'disk-full'],
        ],
      );
      assert.match(hook.requests[1].body.error.message, /no space left on the device/);
      assert.equal(hook.requests[1].body.snapshot, null);
      const log = await readRunLog(vault);
      assert.deepEqual(
        log.map((l) => [l.ok, l.error?.code ?? null]),
        [
          [true, null],
          [false, 'disk-full'],
          [false, 'disk-full'],
        ],
      );
    } finally {
      await hook.close();
    }
  });
});
