import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseConfig, resolveKeyMaterial } from '../../src/vault/config';
import { postWebhook } from '../../src/vault/webhook';
import { acquireLock, acquireSharedLock, emptyIndex, ensureVaultDirs, lockHolder, lockHolders, processStartTime, writeIndex, LOCK_FILE, READERS_DIR, type SnapshotRecord } from '../../src/vault/vault';
import { vaultStatus, renderStatus } from '../../src/vault/status';
import { writeDrillReport, type DrillReport } from '../../src/vault/drill-report';
import { makeTmpRoot, rejectsWith, startHookServer } from './helpers';

describe('vault: lock, webhook, configuration, status', () => {
  const tmp = makeTmpRoot('ops');
  after(() => tmp.cleanup());

  describe('lock', () => {
    it('is exclusive: a second taker is refused with the holder named, or waits for it', async () => {
      const dir = tmp.dir('lock');
      const a = await acquireLock(dir, { command: 'backup' });
      const info = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8'));
      assert.equal(info.pid, process.pid);
      assert.equal(info.host, os.hostname());
      assert.deepEqual((await lockHolder(dir))?.token, a.info.token);
      await rejectsWith(acquireLock(dir, { command: 'backup' }), 'locked', new RegExp(`locked by "backup" \\(pid ${process.pid} on .*\\); not starting a second run`));
      const t0 = Date.now();
      setTimeout(() => void a.release(), 300);
      const b = await acquireLock(dir, { command: 'prune', waitMs: 5000, pollMs: 20 });
      assert.ok(Date.now() - t0 >= 250, 'waited for the first holder');
      await a.release(); // releasing twice (and after someone else took it) does not remove b's lock
      assert.equal((await lockHolder(dir))?.token, b.info.token);
      await b.release();
      assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false);
    });

    it('breaks a stale lock whose process is gone, not one of a live process or another host', async () => {
      const dir = tmp.dir('stale');
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
      const deadPid = Number(dead.stdout);
      fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid, host: os.hostname(), started_at: '2026-01-01T00:00:00Z', command: 'backup', token: 'dead' }));
      assert.equal(await lockHolder(dir), null);
      const l = await acquireLock(dir, { command: 'backup' });
      assert.equal(JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')).token, l.info.token);
      await l.release();
      // another host: kept (cannot tell whether it runs) until old
      fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: 1, host: 'other-host', started_at: '2026-01-01T00:00:00Z', command: 'backup', token: 'far' }));
      await rejectsWith(acquireLock(dir, { command: 'backup' }), 'locked', /pid 1 on other-host/);
      const old = new Date(Date.now() - 2 * 86400_000);
      fs.utimesSync(path.join(dir, LOCK_FILE), old, old);
      const l2 = await acquireLock(dir, { command: 'backup' });
      await l2.release();
      // unreadable lock: busy while young (being written), stale when old
      fs.writeFileSync(path.join(dir, LOCK_FILE), '');
      await rejectsWith(acquireLock(dir, { command: 'backup' }), 'locked');
      fs.utimesSync(path.join(dir, LOCK_FILE), old, old);
      const l3 = await acquireLock(dir, { command: 'backup' });
      await l3.release();
      assert.deepEqual(fs.readdirSync(dir), []);
    });
  });

  describe('shared locks (drill, verify) and the exclusive lock (backup, prune)', () => {
    it('shared holders coexist; the exclusive lock waits for them and they wait for it; stale holders are ignored', async () => {
      const dir = tmp.dir('shared');
      const r1 = await acquireSharedLock(dir, { command: 'drill a' });
      const r2 = await acquireSharedLock(dir, { command: 'verify' });
      assert.equal(fs.readdirSync(path.join(dir, READERS_DIR)).length, 2);
      await rejectsWith(acquireLock(dir, { command: 'prune' }), 'locked', /is in use by "drill a"|is in use by "verify"/);
      assert.equal(fs.existsSync(path.join(dir, LOCK_FILE)), false, 'a refused exclusive taker leaves no lock behind');
      const holders = await lockHolders(dir);
      assert.deepEqual(holders.shared.map((h) => h.command).sort(), ['drill a', 'verify']);
      await r1.release();
      setTimeout(() => void r2.release(), 200);
      const x = await acquireLock(dir, { command: 'prune', waitMs: 5000, pollMs: 20 });
      await rejectsWith(acquireSharedLock(dir, { command: 'drill b' }), 'locked', /locked by "prune"/);
      await x.release();
      // a reader whose process is gone does not block
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
      fs.writeFileSync(
        path.join(dir, READERS_DIR, 'ab'.repeat(8) + '.json'),
        JSON.stringify({ pid: Number(dead.stdout), host: os.hostname(), started_at: '2026-01-01T00:00:00Z', command: 'drill old', token: 'ab'.repeat(8), mode: 'shared' }),
      );
      const y = await acquireLock(dir, { command: 'prune' });
      await y.release();
      assert.deepEqual(fs.readdirSync(path.join(dir, READERS_DIR)), []);
    });

    it('decides staleness by pid and process start time (pid reuse), and by heartbeat for other hosts', async () => {
      const dir = tmp.dir('reuse');
      const mine = processStartTime(process.pid);
      assert.match(String(mine), /^\d+$/, 'the start time is read from /proc/<pid>/stat');
      const write = (info: Record<string, unknown>): void =>
        fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ host: os.hostname(), started_at: '2026-01-01T00:00:00Z', command: 'backup', token: 't', ...info }));
      write({ pid: process.pid, proc_start: mine });
      await rejectsWith(acquireLock(dir, { command: 'backup' }), 'locked');
      write({ pid: process.pid, proc_start: String(Number(mine) + 1) });
      const l = await acquireLock(dir, { command: 'backup' });
      assert.ok(l.info.proc_start && l.info.pid === process.pid);
      await l.release();
      // another host: a fresh heartbeat holds, an old one is stale
      write({ pid: 1, host: 'other-host' });
      await rejectsWith(acquireLock(dir, { command: 'backup' }), 'locked', /pid 1 on other-host/);
      const old = new Date(Date.now() - 11 * 60_000);
      fs.utimesSync(path.join(dir, LOCK_FILE), old, old);
      const l2 = await acquireLock(dir, { command: 'backup', heartbeatMs: 20 });
      // the holder's heartbeat refreshes the mtime
      const m0 = fs.statSync(path.join(dir, LOCK_FILE)).mtimeMs;
      fs.utimesSync(path.join(dir, LOCK_FILE), old, old);
      await new Promise((r) => setTimeout(r, 150));
      assert.ok(fs.statSync(path.join(dir, LOCK_FILE)).mtimeMs >= m0 - 1000, 'the heartbeat refreshed the lock file');
      await l2.release();
    });
  });

  describe('webhook', () => {
    it('POSTs the JSON result to a local server, with configured and environment headers', async () => {
      const srv = await startHookServer('ok');
      try {
        const r = await postWebhook(
          { url: srv.url, headers: { 'x-team': 'ops' }, headersFromEnv: { authorization: 'HOOK_TOKEN' } },
          { event: 'backup.failed', ok: false },
          { HOOK_TOKEN: 'Bearer t0k' },
        );
        assert.equal(r.ok, true);
        assert.equal(r.status, 204);
        assert.equal(srv.requests.length, 1);
        assert.equal(srv.requests[0].method, 'POST');
        assert.equal(srv.requests[0].headers['content-type'], 'application/json');
        assert.equal(srv.requests[0].headers['x-team'], 'ops');
        assert.equal(srv.requests[0].headers.authorization, 'Bearer t0k');
        assert.deepEqual(srv.requests[0].body, { event: 'backup.failed', ok: false });
      } finally {
        await srv.close();
      }
    });

    it('reports an error status, a timeout and a refused connection without throwing', async () => {
      const bad = await startHookServer('error');
      const hang = await startHookServer('hang');
      try {
        const r1 = await postWebhook({ url: bad.url }, { x: 1 });
        assert.deepEqual([r1.ok, r1.status, r1.error], [false, 500, 'the server answered HTTP 500']);
        const t0 = Date.now();
        const r2 = await postWebhook({ url: hang.url, timeoutMs: 300 }, { x: 1 });
        assert.equal(r2.ok, false);
        assert.match(r2.error!, /no answer within 300 ms/);
        assert.ok(Date.now() - t0 < 3000);
        const port = new URL(bad.url).port;
        await bad.close();
        const r3 = await postWebhook({ url: `http://127.0.0.1:${port}/hook` }, { x: 1 });
        assert.equal(r3.ok, false);
        assert.match(r3.error!, /ECONNREFUSED/);
      } finally {
        await hang.close();
      }
    });
  });

  describe('configuration', () => {
    it('reads JSON with comments, resolves paths relative to the file, and names the bad property', async () => {
      const file = '/etc/av/agent-vault.json';
      const cfg = parseConfig(
        `{
          // nightly
          "vault": "./vault",
          "source": { "kind": "pglite", "dataDir": "../data/letta" },
          "encryption": { "enabled": true, "keyFile": "keys/vault.key" },
          "retention": { "keepDaily": 14, "keepWeekly": 8 },
          "webhook": { "url": "http://127.0.0.1:9/hook", "on": ["failure", "success"] },
        }`,
        file,
      );
      assert.equal(cfg.vault, '/etc/av/vault');
      assert.deepEqual(cfg.source, { kind: 'pglite', dataDir: '/etc/data/letta' });
      assert.equal(cfg.encryption!.keyFile, '/etc/av/keys/vault.key');
      await rejectsWith(async () => parseConfig('{"vault": "v", "source": {"kind": "postgres", "url": "mysql://x"}}', file), 'config', /\/source\/url/);
      await rejectsWith(async () => parseConfig('{"vault": "v", "source": {"kind": "pglite", "dataDir": "d"}, "retention": {"keepDaily": -1}}', file), 'config', /\/retention\/keepDaily/);
      await rejectsWith(async () => parseConfig('{"vault": "v", "source": {"kind": "pglite", "dataDir": "d"}, "colour": 1}', file), 'config', /unknown property "colour"|colour/);
      await rejectsWith(async () => parseConfig('{"vault": "v", ', file), 'config', /agent-vault\.json:1:\d+: invalid JSON/);
      await rejectsWith(async () => parseConfig('{"vault": "v", "source": {"kind": "pglite", "dataDir": "d"}, "agents": {}}', file), 'config', /"agents" selects nothing/);
    });

    it('finds the passphrase or key: key file, passphrase file, environment, VS Code secret', async () => {
      const d = tmp.dir('keys');
      fs.writeFileSync(path.join(d, 'pass.txt'), 'from-file\n');
      fs.writeFileSync(path.join(d, 'k.key'), 'ab'.repeat(32));
      assert.deepEqual(await resolveKeyMaterial({ passphraseFile: path.join(d, 'pass.txt') }, { env: {} }), {
        kind: 'passphrase',
        passphrase: 'from-file',
        from: `passphrase file ${path.join(d, 'pass.txt')}`,
      });
      const k = await resolveKeyMaterial({ keyFile: path.join(d, 'k.key'), passphraseFile: path.join(d, 'pass.txt') }, { env: {} });
      assert.equal(k.kind, 'key');
      const e = await resolveKeyMaterial({}, { env: { AGENT_VAULT_PASSPHRASE: 'from-env' } });
      assert.equal(e.kind === 'passphrase' && e.passphrase, 'from-env');
      const named = await resolveKeyMaterial({ passphraseEnv: 'MY_PASS' }, { env: { MY_PASS: 'p2', AGENT_VAULT_PASSPHRASE: 'no' } });
      assert.equal(named.kind === 'passphrase' && named.passphrase, 'p2');
      const secret = await resolveKeyMaterial({ secretStorageKey: 'av.pass' }, { env: {}, secrets: { get: async (key) => (key === 'av.pass' ? 'from-vscode' : undefined) } });
      assert.equal(secret.kind === 'passphrase' && secret.from, 'VS Code secret av.pass');
      assert.deepEqual(await resolveKeyMaterial({}, { env: {} }), { kind: 'none' });
      await rejectsWith(resolveKeyMaterial({}, { env: {}, passphraseEnv: 'UNSET_VAR' }), 'encryption', /UNSET_VAR .* is not set/);
    });
  });

  describe('status', () => {
    function rec(id: string, created_at: string, agents: Array<[string, string]>): SnapshotRecord {
      return {
        id,
        file: `snapshots/${id}.avsnap`,
        created_at,
        bytes: 1000,
        sha256: '0'.repeat(64),
        encrypted: false,
        agents: agents.map(([i, n]) => ({ id: i, name: n })),
        collections: [],
        probes: 3,
        secrets: false,
        tool_version: 't',
      };
    }
    function drill(snapshot: string, at: string, ok: boolean, agents: string[], failed: string[] = []): DrillReport {
      return {
        format: 'agent-vault-drill-report',
        version: 1,
        snapshot: { id: snapshot, file: `snapshots/${snapshot}.avsnap`, created_at: at, encrypted: false },
        target: 'in-memory PGlite',
        started_at: at,
        finished_at: at,
        ok,
        failed_checks: failed as DrillReport['failed_checks'],
        checks: [],
        timings: { rto_ms: 1200, first_vector_search_ms: 1300, verify_ms: 1, schema_ms: 1, restore_ms: 1, checks_ms: 1, total_ms: 1400 },
        agents: agents.map((id) => ({ id, name: id })),
        tool_version: 't',
      };
    }

    it('shows per agent the age of its newest snapshot against the policy and its latest drill', async () => {
      const dir = tmp.dir('status');
      await ensureVaultDirs(dir);
      const index = emptyIndex();
      index.snapshots.push(
        rec('s1', '2026-03-01T00:00:00.000Z', [
          ['agent-a', 'Alice'],
          ['agent-b', 'Bob'],
        ]),
      );
      index.snapshots.push(rec('s2', '2026-03-02T00:00:00.000Z', [['agent-a', 'Alice']]));
      index.snapshots.push(rec('s3', '2026-03-02T06:00:00.000Z', [['agent-c', 'Carol']]));
      await writeIndex(dir, index);
      for (const x of index.snapshots) fs.writeFileSync(path.join(dir, x.file), 'archive');
      await writeDrillReport(path.join(dir, 'drills'), drill('s1', '2026-03-01T01:00:00.000Z', true, ['agent-a', 'agent-b']), dir);
      await writeDrillReport(path.join(dir, 'drills'), drill('s2', '2026-03-02T01:00:00.000Z', false, ['agent-a'], ['vector-search']), dir);
      const now = new Date('2026-03-02T12:00:00.000Z');
      const s = await vaultStatus(dir, { maxAgeHours: 26, drillMaxAgeDays: 7 }, { now });
      const by = new Map(s.agents.map((a) => [a.id, a]));
      const a = by.get('agent-a')!;
      assert.deepEqual(
        [a.last_snapshot?.id, a.last_snapshot?.age_hours, a.stale, a.last_drill?.ok, a.last_drill?.failed_checks, a.drill_failed, a.level],
        ['s2', 12, false, false, ['vector-search'], true, 'error'],
      );
      assert.equal(a.last_passing_drill_at, '2026-03-01T01:00:00.000Z');
      const b = by.get('agent-b')!;
      assert.deepEqual([b.last_snapshot?.id, b.last_snapshot?.age_hours, b.stale, b.last_drill?.ok, b.level], ['s1', 36, true, true, 'warning']);
      assert.match(b.warnings.join(), /newest snapshot is 36 h old \(policy: 26 h\)/);
      const c = by.get('agent-c')!;
      assert.deepEqual([c.stale, c.last_drill, c.drill_overdue, c.level, c.warnings], [false, null, true, 'warning', ['never drilled']]);
      assert.equal(s.level, 'error');
      const text = renderStatus(s);
      assert.match(text, /FAIL\s+Alice\s+agent-a\s+12 h ago\s+FAILED: vector-search/);
      assert.match(text, /WARN\s+Bob\s+agent-b\s+36 h ago \(stale\)\s+passed/);
      // a relaxed policy: Bob is fine again
      const relaxed = await vaultStatus(dir, { maxAgeHours: 48 }, { now });
      assert.equal(relaxed.agents.find((x) => x.id === 'agent-b')!.level, 'ok');
    });
  });
});
