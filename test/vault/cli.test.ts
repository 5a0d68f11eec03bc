/**
 * The vault commands as users (and cron) run them: the built CLI in child processes, against a
 * Letta database on the test PostgreSQL server.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { openPg } from '../../src/db/pg';
import { createArchiveWriter } from '../../src/format/archive';
import type { Db } from '../../src/db/types';
import { createLettaSchema } from '../../src/letta/ddl';
import { seedAgentFile } from '../../src/letta/seed';
import { acquireLock, emptyIndex, ensureVaultDirs, readIndex, readRunLog, writeIndex } from '../../src/vault/vault';
import { sharedTestPostgres } from '../helpers/global-pg';
import { ensureCliBuilt, runCli, startCliProcess, STACK_TRACE, type ProcessResult } from '../helpers/cli';
import { addSyntheticPassages, fixturePath } from './letta-data';
import { listFiles, makeTmpRoot, startHookServer } from './helpers';

function startCli(args: string[], env: NodeJS.ProcessEnv = {}, onStderr?: (line: string, kill: () => void) => void): Promise<ProcessResult> {
  return startCliProcess(args, { env, onStderrLine: onStderr });
}

function writeConfig(dir: string, cfg: Record<string, unknown>): string {
  const file = path.join(dir, 'agent-vault.json');
  fs.writeFileSync(file, JSON.stringify({ $schema: '../schemas/vault-config.schema.json', ...cfg }, null, 2));
  return file;
}

describe('vault: the CLI (backup, prune, verify, drill, status) against PostgreSQL', function () {
  this.timeout(300000);
  const tmp = makeTmpRoot('vault-cli');
  let small: { url: string; db: Db };
  let big: { url: string; db: Db };
  const env = { SMALL_URL: '', BIG_URL: '' };

  before(async () => {
    ensureCliBuilt();
    const server = await sharedTestPostgres();
    const mk = async (): Promise<{ url: string; db: Db }> => {
      const { url } = await server.createDatabase();
      const db = await openPg({ url });
      await createLettaSchema(db);
      return { url, db };
    };
    small = await mk();
    const s = await seedAgentFile(small.db, fixturePath('memgpt-agent.v2-double-encoded.af'));
    await addSyntheticPassages(small.db, s.agents[0].id, 60, 'cli-small');
    await seedAgentFile(small.db, fixturePath('deep-research-agent.v2.af'));
    big = await mk();
    // ~37 MB of embeddings: long enough to be interrupted, too big for a 2 MB disk
    await seedAgentFile(big.db, fixturePath('customer-service.v2-early.af'), { passages: { count: 6000, dim: 1536, seed: 7 } });
    await seedAgentFile(big.db, fixturePath('outreach-workflow-agent.v2-early.af'));
    env.SMALL_URL = small.url;
    env.BIG_URL = big.url;
  });
  after(async () => {
    await small?.db.close();
    await big?.db.close();
    tmp.cleanup();
  });

  it('a failed backup exits non-zero with one line, calls the webhook and logs the run; a good one is silent', async () => {
    const dir = tmp.dir('fail');
    const hook = await startHookServer('ok');
    try {
      const bad = writeConfig(dir, { vault: 'vault', source: { kind: 'pglite', dataDir: 'no-such-db' }, webhook: { url: hook.url, on: ['failure', 'success'], timeoutMs: 5000 } });
      const r = await startCli(['backup', '--config', bad]);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^agent-vault: backup failed: the PGlite database folder .*no-such-db does not exist or is empty\n$/);
      assert.equal(hook.requests.length, 1);
      const body = hook.requests[0].body;
      assert.deepEqual([body.event, body.ok, body.error.code, body.snapshot], ['backup.failed', false, 'db-open', null]);
      assert.match(body.error.message, /no-such-db does not exist/);
      assert.equal(body.vault, path.join(dir, 'vault'));
      const log = await readRunLog(path.join(dir, 'vault'));
      assert.deepEqual(
        log.map((l) => [l.command, l.ok, l.error?.code]),
        [['backup', false, 'db-open']],
      );
      assert.deepEqual(log[0].webhook, { ok: true, status: 204, error: null });

      const good = writeConfig(tmp.dir('good'), { vault: 'vault', source: { kind: 'postgres', urlEnv: 'SMALL_URL' }, webhook: { url: hook.url, on: ['failure', 'success'] } });
      const g = await startCli(['backup', '--config', good], env);
      assert.deepEqual([g.code, g.stdout, g.stderr], [0, '', ''], 'quiet on success');
      assert.equal(hook.requests[1].body.event, 'backup.succeeded');
      assert.equal(hook.requests[1].body.snapshot.agents, 2);
      // a webhook that cannot be reached does not fail a good backup, but is reported
      const port = new URL(hook.url).port;
      await hook.close();
      const unreachable = writeConfig(tmp.dir('unreach'), { vault: 'vault', source: { kind: 'postgres', urlEnv: 'SMALL_URL' }, webhook: { url: `http://127.0.0.1:${port}/hook`, on: ['success'] } });
      const u = await startCli(['backup', '--config', unreachable], env);
      assert.equal(u.code, 0);
      assert.match(u.stderr, /^agent-vault: warning: webhook http:\/\/127\.0\.0\.1:\d+\/hook failed: .*ECONNREFUSED/);
    } finally {
      await hook.close().catch(() => undefined);
    }
  });

  it('concurrent backups: one refuses while another holds the lock (exit 75); with --wait both finish, one after the other', async () => {
    const dir = tmp.dir('concurrent');
    const cfg = writeConfig(dir, { vault: 'vault', source: { kind: 'postgres', urlEnv: 'SMALL_URL' } });
    const vault = path.join(dir, 'vault');
    await ensureVaultDirs(vault);
    const lock = await acquireLock(vault, { command: 'backup' });
    const refused = await startCli(['backup', '--config', cfg], env);
    assert.equal(refused.code, 75);
    assert.match(refused.stderr, new RegExp(`^agent-vault: backup failed: the vault .* is locked by "backup" \\(pid ${process.pid} on .*\\); not starting a second run\\n$`));
    await lock.release();

    const [a, b] = await Promise.all([startCli(['backup', '--config', cfg, '--wait', '120'], env), startCli(['backup', '--config', cfg, '--wait', '120'], env)]);
    assert.deepEqual([a.code, a.stderr, b.code, b.stderr], [0, '', 0, '']);
    const index = await readIndex(vault);
    assert.equal(index.snapshots.length, 2);
    const runs = (await readRunLog(vault)).filter((l) => l.ok).sort((x, y) => String(x.locked_at).localeCompare(String(y.locked_at)));
    assert.equal(runs.length, 2);
    assert.ok(String(runs[0].unlocked_at) <= String(runs[1].locked_at), `lock periods overlap: ${JSON.stringify(runs.map((r) => [r.locked_at, r.unlocked_at]))}`);
    const v = runCli(['verify', '--vault', vault]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /2 snapshot\(s\) verified: all ok/);
  });

  it('a backup killed (SIGKILL) while writing its snapshot leaves no partial snapshot; the next run cleans up', async () => {
    const dir = tmp.dir('kill');
    const cfg = writeConfig(dir, { vault: 'vault', source: { kind: 'postgres', urlEnv: 'BIG_URL' } });
    const vault = path.join(dir, 'vault');
    const first = await startCli(['backup', '--config', cfg], env);
    assert.equal(first.code, 0, first.stderr);
    const before = (await readIndex(vault)).snapshots.map((s) => s.id);
    let sawTemp = '';
    const killed = await startCli(['backup', '--config', cfg, '-v'], env, (line, kill) => {
      if (!/^backup: writing .*snapshots/.test(line)) return;
      // the snapshot's temp file exists and is being filled: kill the process now
      const snaps = path.join(vault, 'snapshots');
      const t0 = Date.now();
      const poll = (): void => {
        const tmpFile = fs.readdirSync(snaps).find((n) => /\.tmp-[0-9a-f]+$/.test(n));
        if (tmpFile && fs.statSync(path.join(snaps, tmpFile)).size > 0) {
          sawTemp = tmpFile;
          kill();
        } else if (Date.now() - t0 < 20000) setTimeout(poll, 2);
        else kill();
      };
      poll();
    });
    assert.equal(killed.signal, 'SIGKILL');
    assert.ok(sawTemp, 'killed while the snapshot temp file was being written');
    // nothing new is listed; the leftovers are there but not snapshots
    assert.deepEqual(
      (await readIndex(vault)).snapshots.map((s) => s.id),
      before,
    );
    assert.ok(fs.existsSync(path.join(vault, 'snapshots', sawTemp)));
    assert.ok(fs.existsSync(path.join(vault, '.lock')), 'the killed run could not release its lock');
    const v = runCli(['verify', '--vault', vault]);
    assert.equal(v.code, 0, v.stdout);
    assert.match(v.stdout, new RegExp(`note: snapshots/${sawTemp.replace(/\./g, '\\.')} is a temp file of an interrupted run`));
    // the next backup breaks the stale lock, removes the leftovers and succeeds
    const next = await startCli(['backup', '--config', cfg, '--json'], env);
    assert.equal(next.code, 0, next.stderr);
    const index = await readIndex(vault);
    assert.equal(index.snapshots.length, before.length + 1);
    assert.deepEqual(listFiles(path.join(vault, 'snapshots')), index.snapshots.map((s) => path.basename(s.file)).sort());
    assert.deepEqual(listFiles(path.join(vault, '.tmp')), []);
    assert.equal(fs.existsSync(path.join(vault, '.lock')), false);
    const log = await readRunLog(vault);
    assert.deepEqual(
      log.map((l) => l.ok),
      [true, true],
      'the killed run never got to log',
    );
  });

  it('a full disk (2 MB tmpfs, or an injected ENOSPC where mounting is not allowed) fails cleanly', async () => {
    const dir = tmp.dir('full');
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    // AGENT_VAULT_TEST_NO_MOUNT=1 exercises the injected-ENOSPC path where mount is available too
    const mounted = !process.env.AGENT_VAULT_TEST_NO_MOUNT && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]).status === 0;
    const hook = await startHookServer('ok');
    const extraEnv: NodeJS.ProcessEnv = { ...env };
    if (!mounted) {
      // same scenario without a mount: every write beyond 2 MB into the vault fails with ENOSPC
      const inject = path.join(dir, 'enospc.cjs');
      fs.writeFileSync(
        inject,
        `const fs = require('node:fs'); const root = ${JSON.stringify(mnt)}; let used = 0; const real = fs.createWriteStream;
fs.createWriteStream = function (file, opts) { const ws = real.call(fs, file, opts); if (!String(file).startsWith(root)) return ws;
  const w = ws._write.bind(ws); ws._write = (c, e, cb) => { used += c.length; if (used > 2 * 1024 * 1024) { const err = new Error('ENOSPC: no space left on device, write'); err.code = 'ENOSPC'; return cb(err); } w(c, e, cb); }; return ws; };\n`,
      );
      extraEnv.NODE_OPTIONS = `--require ${inject}`;
    }
    try {
      const vault = path.join(mnt, 'vault');
      const smallCfg = writeConfig(dir, { vault: 'mnt/vault', source: { kind: 'postgres', urlEnv: 'SMALL_URL' }, webhook: { url: hook.url } });
      const ok = await startCli(['backup', '--config', smallCfg], extraEnv);
      assert.equal(ok.code, 0, ok.stderr);
      const before = (await readIndex(vault)).snapshots;
      assert.equal(before.length, 1);
      const bigCfg = path.join(dir, 'big.json');
      fs.writeFileSync(bigCfg, JSON.stringify({ vault: 'mnt/vault', source: { kind: 'postgres', urlEnv: 'BIG_URL' }, webhook: { url: hook.url } }));
      const r = await startCli(['backup', '--config', bigCfg], extraEnv);
      assert.equal(r.code, 74, 'an I/O error (docs/CLI.md), never the usage code');
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^agent-vault: backup failed: cannot write .*mnt\/vault\/.*: no space left on the device\n$/);
      assert.doesNotMatch(r.stderr, STACK_TRACE);
      assert.deepEqual((await readIndex(vault)).snapshots, before, 'the index is unchanged');
      assert.deepEqual(listFiles(path.join(vault, 'snapshots')), [path.basename(before[0].file)], 'no partial snapshot');
      assert.deepEqual(listFiles(path.join(vault, '.tmp')), []);
      assert.equal(fs.existsSync(path.join(vault, '.lock')), false);
      assert.deepEqual(
        hook.requests.map((q) => [q.body.event, q.body.error?.code]),
        [['backup.failed', 'disk-full']],
      );
      const log = await readRunLog(vault);
      assert.deepEqual(
        log.map((l) => [l.ok, l.error?.code ?? null]),
        [
          [true, null],
          [false, 'disk-full'],
        ],
      );
    } finally {
      await hook.close();
      if (mounted) spawnSync('umount', [mnt]);
    }
  });

  it('prune prints what it keeps and why; status and drill report per agent', async () => {
    // prune on a vault of hand-made history
    const pdir = tmp.dir('prune');
    const pv = path.join(pdir, 'vault');
    await ensureVaultDirs(pv);
    const index = emptyIndex();
    // prune counts only snapshots that verify (size, sha256, manifest): a tiny real archive of agent-a
    const one = path.join(pdir, 'one.avsnap');
    const w = await createArchiveWriter(one);
    await w.addJson('agents/agent-a.af', { agents: [{ id: 'agent-a', name: 'Alice' }] });
    await w.finish({
      created_at: '2026-01-01T00:00:00.000Z',
      agents: [{ id: 'agent-a', name: 'Alice', entry: 'agents/agent-a.af', counts: { messages: 0, in_context_messages: 0, blocks: 0, tools: 0, passages: 0, groups: 0, files: 0 } }],
    });
    const data = fs.readFileSync(one);
    const sha256 = createHash('sha256').update(data).digest('hex');
    for (let i = 0; i < 20; i++) {
      const id = `s${String(i).padStart(2, '0')}`;
      fs.writeFileSync(path.join(pv, 'snapshots', `${id}.avsnap`), data);
      index.snapshots.push({
        id,
        file: `snapshots/${id}.avsnap`,
        created_at: new Date(Date.UTC(2026, 0, 1 + i, 3)).toISOString(),
        bytes: data.length,
        sha256,
        encrypted: false,
        agents: [{ id: 'agent-a', name: 'Alice' }],
        collections: [],
        probes: 0,
        secrets: false,
        tool_version: 't',
      });
    }
    await writeIndex(pv, index);
    const dry = runCli(['prune', '--vault', pv, '--keep-daily', '3', '--keep-weekly', '3', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    const lines = dry.stdout.trim().split('\n');
    assert.equal(lines.length, 21);
    assert.match(lines[0], /^keep {3}s19 {2}2026-01-20T03:00:00\.000Z {2}daily 2026-01-20 \[Alice \(agent-a\)\]; weekly 2026-W04 \[Alice \(agent-a\)\]$/);
    assert.match(lines[3], /^would delete s16 /);
    assert.match(lines[1], /^keep {3}s18 .* daily 2026-01-19/);
    assert.match(lines[2], /^keep {3}s17 .* daily 2026-01-18 \[Alice \(agent-a\)\]; weekly 2026-W03 \[Alice \(agent-a\)\]$/);
    assert.match(lines[9], /^keep {3}s10 .* weekly 2026-W02 \[Alice \(agent-a\)\]$/, 'Sunday 2026-01-11 ends ISO week 2');
    assert.equal(lines[20], 'dry run: would keep 4, would delete 16 snapshot(s) (0.0 MiB)');
    assert.equal(fs.readdirSync(path.join(pv, 'snapshots')).length, 20);
    const real = runCli(['prune', '--vault', pv, '--keep-daily', '3', '--keep-weekly', '3', '-q']);
    assert.deepEqual([real.code, real.stdout], [0, 'kept 4, deleted 16 snapshot(s) (0.0 MiB)\n']);
    assert.equal(fs.readdirSync(path.join(pv, 'snapshots')).length, 4);
    const none = runCli(['prune', '--vault', pv]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no retention rule given/);
    assert.match(none.stderr, /\nhint: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly/);

    // drill + status on a PostgreSQL-sourced vault (the embedded PGlite of the built CLI)
    const dir = tmp.dir('drill');
    const cfg = writeConfig(dir, {
      vault: 'vault',
      source: { kind: 'postgres', urlEnv: 'SMALL_URL' },
      encryption: { enabled: true, scrypt: { N: 1024 } },
      policy: { maxAgeHours: 24, drillMaxAgeDays: 7 },
    });
    const keyEnv = { ...env, AGENT_VAULT_PASSPHRASE: 'cli pass' };
    const b = await startCli(['backup', '--config', cfg], keyEnv);
    assert.equal(b.code, 0, b.stderr);
    const before = runCli(['status', '--config', cfg, '--check']);
    assert.equal(before.code, 1);
    assert.match(before.stdout, /WARN\s+memgpt_agent\s+agent-\S+\s+\d+ min ago\s+never/);
    const d = runCli(['drill', 'latest', '--config', cfg], { env: keyEnv });
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.match(d.stdout, /^drill PASSED: \S+ → embedded PGlite \(in memory\)\n/);
    assert.match(d.stdout, /ok {3}vector-search: 3\/3 probe searches \(top-5, cosine\) return the recorded passages/);
    assert.match(d.stdout, /RTO \d+\.\d\d s; first correct vector search \d+\.\d\d s/);
    const wrong = runCli(['drill', 'latest', '--config', cfg], { env: { ...env, AGENT_VAULT_PASSPHRASE: 'nope' } });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stdout, /FAIL decrypt: .*wrong passphrase/);
    assert.match(wrong.stderr, /^agent-vault: drill failed: check\(s\) decrypt\n$/);
    const st = runCli(['status', '--config', cfg, '--json']);
    const s = JSON.parse(st.stdout);
    assert.deepEqual(s.agents.map((a: { name: string; last_drill: { ok: boolean }; level: string }) => [a.name, a.last_drill.ok, a.level]).sort(), [
      ['deep-thought-research-agent', false, 'error'],
      ['memgpt_agent', false, 'error'],
    ]);
    const text = runCli(['status', '--config', cfg, '--snapshots']).stdout;
    assert.match(text, /FAIL\s+memgpt_agent\s+\S+\s+\d+ min ago\s+FAILED: decrypt/);
    assert.match(
      text,
      new RegExp(`\\nsnapshots:\\n  ${s.newest_snapshot.id} +\\S+ +\\d+\\.\\d MiB  encrypted  (?:memgpt_agent, deep-thought-research-agent|deep-thought-research-agent, memgpt_agent)\\n`),
    );
    const noKey = runCli(['drill', 'latest', '--config', cfg], { env: { ...env, AGENT_VAULT_PASSPHRASE: '' } });
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /is encrypted; give the passphrase or key to drill it/);
  });
});
