/**
 * `agent-vault agents | export | restore` and their documented exit codes, run in-process
 * through commander and main.ts's error handler, against the real test PostgreSQL (connection by
 * --db URL, as a user would).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Db } from '../../src/db/types';
import { openArchive } from '../../src/format/archive';
import { openPglite } from '../../src/db/pglite';
import { LETTA_HEAD_REVISION } from '../../src/letta/ddl';
import { seedAgentFile } from '../../src/letta/seed';
import { CLI, ensureCliBuilt, runCli, runCliInProcess, type CliResult } from '../helpers/cli';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR } from '../helpers/paths';
import { corruptEntry, tableSnapshot, urlOf } from './support';

function run(args: string[]): Promise<CliResult> {
  return runCliInProcess(args);
}

describe('agent-vault agents / export / restore (CLI, PostgreSQL)', function () {
  this.timeout(60000);
  let dir: string;
  let src: Db;
  let dst: Db;
  let srcUrl: string;
  let dstUrl: string;
  let archive: string;
  let agentId: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-cli-'));
    src = await freshLettaDb('pg');
    dst = await freshLettaDb('pg');
    srcUrl = await urlOf(src);
    dstUrl = await urlOf(dst);
    const s = await seedAgentFile(src, path.join(FIXTURES_DIR, 'customer-service.v2-early.af'), { passages: { count: 6 } });
    agentId = s.agents[0].id;
    archive = path.join(dir, 'cs.avs');
  });
  after(async () => {
    await src.close();
    await dst.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('agents: lists the agents with their counts', async () => {
    const r = await run(['agents', '--db', srcUrl]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^NAME\s+ID\s+TYPE\s+MESSAGES\s+IN CONTEXT\s+PASSAGES/m);
    assert.ok(r.stdout.includes(agentId));
    const j = await run(['agents', '--db', srcUrl, '--json']);
    const list = JSON.parse(j.stdout);
    assert.equal(list.length, 1);
    assert.equal(list[0].passages, 6);
    assert.equal(list[0].embedding_dim, 2000, 'this fixture embeds at 2000 dimensions');
  });

  it('export: writes the archive; refuses to overwrite without --force (exit 2); unknown agent (exit 2)', async () => {
    const r = await run(['export', '--db', srcUrl, '--agent', 'customer_service', '--out', archive]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Exported 1 agent \(\d+ messages, 6 passages\).*Letta revision 1c28e167b74f, pgvector 0\.8/);
    const m = (await openArchive(archive)).manifest;
    assert.equal(m.agents[0].id, agentId);
    const again = await run(['export', '--db', srcUrl, '--all', '--out', archive]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
    const none = await run(['export', '--db', srcUrl, '--agent', 'nobody', '--out', path.join(dir, 'n.avs')]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /No agent with id or name "nobody"/);
    const noSel = await run(['export', '--db', srcUrl, '--out', path.join(dir, 'n.avs')]);
    assert.equal(noSel.code, 2);
  });

  it('restore --dry-run prints the plan and changes nothing; restore writes; a second restore conflicts (exit 4)', async () => {
    const before = await tableSnapshot(dst);
    const dry = await run(['restore', archive, '--db', dstUrl, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /Dry run: nothing will be changed/);
    assert.match(dry.stdout, /Created: 1 {2}Renamed: 0 {2}Skipped: 0 {2}Replaced: 0 {2}Conflicts: 0/);
    assert.deepEqual(await tableSnapshot(dst), before);
    const r = await run(['restore', archive, '--db', dstUrl]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Restored 1 agent \(\d+ messages, 6 passages\) in one transaction/);
    const after = await tableSnapshot(dst);
    const c = await run(['restore', archive, '--db', dstUrl]);
    assert.equal(c.code, 4);
    assert.match(c.stderr, /already exists in the target.*customer_service/s);
    const dc = await run(['restore', archive, '--db', dstUrl, '--dry-run', '--json']);
    assert.equal(dc.code, 4, 'a dry run exits as the real run would');
    assert.deepEqual(JSON.parse(dc.stdout).summary.conflicts, ['customer_service']);
    const skip = await run(['restore', archive, '--db', dstUrl, '--on-conflict', 'skip', '-q']);
    assert.equal(skip.code, 0);
    assert.deepEqual(await tableSnapshot(dst), after);
    const copy = await run(['restore', archive, '--db', dstUrl, '--on-conflict=copy', '--json']);
    assert.equal(copy.code, 0);
    assert.deepEqual(JSON.parse(copy.stdout).plan.summary.renamed, ['customer_service → customer_service_copy']);
    const bad = await run(['restore', archive, '--db', dstUrl, '--on-conflict', 'merge']);
    assert.equal(bad.code, 2);
  });

  it('the built CLI bundle (dist/cli.js) exports and restores with passages through PostgreSQL', async () => {
    const db = await freshLettaDb('pg');
    try {
      const url = await urlOf(db);
      const out = path.join(dir, 'bundle.avs');
      const e = runCli(['export', '--db', srcUrl, '--all', '-o', out, '-q']);
      assert.equal(e.code, 0, e.stderr);
      const r = runCli(['restore', out, '--db', url, '-q']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Restored 1 agent \(\d+ messages, 6 passages\)/);
      const l = runCli(['agents', '--db', url, '--json']);
      assert.equal(JSON.parse(l.stdout)[0].passages, 6);
    } finally {
      await db.close();
    }
  });

  it('dist/cli.js runs as a program, as the installed `agent-vault` bin does: its first line gives node a 4 MiB young generation', () => {
    ensureCliBuilt();
    const first = readFileSync(CLI, 'utf8').slice(0, 200).split('\n')[0];
    assert.equal(first, '#!/usr/bin/env -S node --max-semi-space-size=4');
    assert.ok((statSync(CLI).mode & 0o111) !== 0, 'dist/cli.js is executable');
    // that first line hands node the flag (env -S splits it): the same line on a script that prints node's flags
    const script = path.join(dir, 'shebang-probe.js');
    writeFileSync(script, `${first}\nconsole.log(JSON.stringify(process.execArgv));\n`, { mode: 0o755 });
    const probe = spawnSync(script, [], { encoding: 'utf8' });
    assert.equal(probe.status, 0, probe.stderr);
    assert.deepEqual(JSON.parse(probe.stdout), ['--max-semi-space-size=4']);
    const run = spawnSync(CLI, ['agents', '--db', 'postgres://127.0.0.1:1/none', '--json'], { encoding: 'utf8' });
    assert.equal(run.status, 3, `run as a program, a refused connection is exit 3: ${run.stderr}`);
  });

  it('refusals and failures map to their exit codes: 6 revision, 1 damaged archive, 3 connection', async () => {
    const db = await freshLettaDb('pg');
    try {
      const url = await urlOf(db);
      await db.query(`UPDATE alembic_version SET version_num = 'ffb17eb241fc'`);
      const rev = await run(['restore', archive, '--db', url]);
      assert.equal(rev.code, 6);
      assert.match(rev.stderr, /revision 1c28e167b74f.*revision ffb17eb241fc/s);
      const forced = await run(['restore', archive, '--db', url, '--force-schema', '-q']);
      assert.equal(forced.code, 0, forced.stderr);
    } finally {
      await db.close();
    }
    const m = (await openArchive(archive)).manifest;
    const bad = path.join(dir, 'bad.avs');
    writeFileSync(bad, corruptEntry(readFileSync(archive), m.agents[0].vectors_entry!));
    const ck = await run(['restore', bad, '--db', dstUrl]);
    assert.equal(ck.code, 1);
    assert.match(ck.stderr, /damaged; nothing was restored/);
    const conn = await run(['agents', '--db', 'postgres://nobody:secret@127.0.0.1:1/letta']);
    assert.equal(conn.code, 3);
    assert.match(conn.stderr, /Cannot connect to PostgreSQL at 127\.0\.0\.1:1/);
    assert.doesNotMatch(conn.stderr, /secret/, 'never the password');
    const url = await run(['agents', '--db', 'mysql://x']);
    assert.equal(url.code, 2);
    const notLetta = await run(['agents', '--db', srcUrl, '--schema', 'public']);
    assert.equal(notLetta.code, 2);
    assert.match(notLetta.stderr, /no Letta schema/);
  });

  it("restore --embedded <new dir>: creates Letta's schema at head first and says so; a second run does not", async () => {
    const emb = path.join(dir, 'new-embedded');
    const af = path.join(FIXTURES_DIR, 'co-3.v2.af');
    const r = await run(['restore', af, '--embedded', emb, '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`created Letta's schema "letta" at revision ${LETTA_HEAD_REVISION}`));
    assert.match(r.stdout, new RegExp(`Created Letta's schema at revision ${LETTA_HEAD_REVISION} in .*new-embedded first\\.`));
    assert.match(r.stdout, /Restored 1 agent/);
    const again = await run(['restore', af, '--embedded', emb, '--on-conflict', 'copy', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /created Letta's schema/);
    assert.equal(JSON.parse(again.stdout).schema_created, false);
    const db = await openPglite({ dataDir: emb });
    try {
      assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM agents')).rows[0].n, 2);
      assert.equal((await db.query<{ v: string }>('SELECT version_num AS v FROM alembic_version')).rows[0].v, LETTA_HEAD_REVISION);
    } finally {
      await db.close();
    }
  });
});
