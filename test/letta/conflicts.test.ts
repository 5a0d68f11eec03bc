/**
 * Restoring over agents that exist: every --on-conflict value gives its documented result, tools
 * follow --tools, and a dry run changes no table (row counts and content checksums).
 * On the real PostgreSQL; the .af-by-name case also on PGlite.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exitCodeOf } from '../../src/cli/exit';
import { AgentVaultError } from '../../src/core/errors';
import type { Db } from '../../src/db/types';
import { packAgentFile } from '../../src/format/pack';
import { exportAgents } from '../../src/letta/export';
import { restoreAgents, type OnConflict } from '../../src/letta/restore';
import { seedAgentFile } from '../../src/letta/seed';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR } from '../helpers/paths';
import { normalizeAf, normalizePassages, readArchiveAgents, tableSnapshot } from './support';

const FIXTURE = path.join(FIXTURES_DIR, 'memgpt-agent-with-convo.v1.af');

function isCode(code: string, exit: number) {
  return (e: unknown) => e instanceof AgentVaultError && e.code === code && exitCodeOf(e) === exit;
}

describe('letta restore over existing agents (--on-conflict, --tools, --dry-run)', function () {
  this.timeout(60000);
  let dir: string;
  let archive: string;
  let agentId: string;
  let agentName: string;
  let dst: Db;
  let baseline: Awaited<ReturnType<typeof tableSnapshot>>;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-conflicts-'));
    const src = await freshLettaDb('pg');
    try {
      const s = await seedAgentFile(src, FIXTURE, { passages: { count: 10, seed: 3 } });
      agentId = s.agents[0].id;
      agentName = s.agents[0].name!;
      await src.query(
        `INSERT INTO agent_environment_variables (id, key, value, organization_id, agent_id) VALUES ('agent-env-00000000-0000-4000-8000-000000000001', 'API_KEY', 'secret-in-source', 'org-00000000-0000-4000-8000-000000000000', $1)`,
        [agentId],
      );
      archive = path.join(dir, 'x.avs');
      await exportAgents(src, { select: { ids: [agentId] }, out: archive });
    } finally {
      await src.close();
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  beforeEach(async () => {
    dst = await freshLettaDb('pg');
    const r = await restoreAgents(dst, archive, { onConflict: 'fail' });
    assert.deepEqual(r.plan.summary.created, [agentName]);
    baseline = await tableSnapshot(dst);
  });
  afterEach(async () => dst.close());

  it('the archive holds the key of the secret, never its value', async () => {
    const { agents, manifest } = await readArchiveAgents(archive);
    const a = agents[0].doc.agents[0] as any;
    assert.deepEqual(a.secrets, { API_KEY: '' });
    assert.deepEqual(a.tool_exec_environment_variables, { API_KEY: '' });
    assert.equal((manifest as any).secrets, 'redacted');
    const env = await dst.query(`SELECT key, value FROM agent_environment_variables`);
    assert.deepEqual(env.rows, [{ key: 'API_KEY', value: '' }]);
  });

  it('fail: refuses (exit code 4), names the agent, changes nothing', async () => {
    await assert.rejects(restoreAgents(dst, archive, { onConflict: 'fail' }), (e: unknown) => {
      assert.ok(isCode('restore-conflict', 4)(e), String(e));
      assert.match((e as Error).message, new RegExp(`${agentName}.*same id ${agentId}`));
      return true;
    });
    assert.deepEqual(await tableSnapshot(dst), baseline);
  });

  it('skip: leaves the existing agent as it is', async () => {
    await dst.query(`UPDATE block SET value = 'changed in the target' WHERE label = 'human'`);
    const changed = await tableSnapshot(dst);
    const r = await restoreAgents(dst, archive, { onConflict: 'skip' });
    assert.deepEqual(r.plan.summary.skipped, [agentName]);
    assert.deepEqual(r.agentIds, {});
    assert.deepEqual(await tableSnapshot(dst), changed);
  });

  for (const mode of ['fail', 'skip', 'replace', 'copy'] as OnConflict[]) {
    it(`--dry-run with ${mode}: prints the plan, every table's rows and checksum unchanged`, async () => {
      const r = await restoreAgents(dst, archive, { onConflict: mode, dryRun: true });
      assert.equal(r.plan.dry_run, true);
      const s = r.plan.summary;
      const expected = { fail: s.conflicts, skip: s.skipped, replace: s.replaced, copy: s.renamed }[mode];
      assert.equal(expected.length, 1, JSON.stringify(s));
      if (mode === 'fail') assert.equal(r.plan.refusals[0].kind, 'conflict');
      else assert.deepEqual(r.plan.refusals, []);
      if (mode === 'copy') assert.deepEqual(s.renamed, [`${agentName} → ${agentName}_copy`]);
      assert.deepEqual(await tableSnapshot(dst), baseline);
    });
  }

  it('replace: the agent becomes the archived one again; secrets keep their current values; shared tools follow --tools', async () => {
    // drift in the target
    await dst.query(
      `INSERT INTO messages (id, agent_id, role, content, tool_calls, organization_id) VALUES ('message-00000000-0000-4000-8000-0000000000aa', $1, 'user', '[{"type":"text","text":"later"}]', '[]', 'org-00000000-0000-4000-8000-000000000000')`,
      [agentId],
    );
    await dst.query(`UPDATE agents SET message_ids = (message_ids::jsonb || '["message-00000000-0000-4000-8000-0000000000aa"]'::jsonb)::json WHERE id = $1`, [agentId]);
    await dst.query(`UPDATE block SET value = 'changed in the target' WHERE label = 'human'`);
    await dst.query(`UPDATE agent_environment_variables SET value = 'the-real-secret' WHERE key = 'API_KEY'`);
    await dst.query(`INSERT INTO agents_tags (agent_id, tag) VALUES ($1, 'drift')`, [agentId]);
    await dst.query(`DELETE FROM archival_passages WHERE id IN (SELECT id FROM archival_passages ORDER BY id LIMIT 3)`);
    await dst.query(`UPDATE tools SET source_code = 'def send_message(): pass  # changed' WHERE name = 'send_message'`);

    const r = await restoreAgents(dst, archive, { onConflict: 'replace', tools: 'keep' });
    assert.deepEqual(r.plan.summary.replaced, [agentName]);
    assert.deepEqual(r.plan.deletes.agents, [agentId]);
    const after = await tableSnapshot(dst);
    // identical to the first restore, except what is regenerated (sequence ids, passage tag ids),
    // the carried-over secret value and the shared tool kept as it was (--tools keep)
    for (const t of Object.keys(baseline)) {
      if (['messages', 'passage_tags', 'agent_environment_variables', 'tools'].includes(t)) assert.equal(after[t].rows, baseline[t].rows, `${t} rows`);
      else assert.deepEqual(after[t], baseline[t], `table ${t} equals the first restore`);
    }
    const env = await dst.query(`SELECT key, value FROM agent_environment_variables`);
    assert.deepEqual(env.rows, [{ key: 'API_KEY', value: 'the-real-secret' }], 'redacted secrets keep the target value');
    const tool = await dst.query(`SELECT source_code FROM tools WHERE name = 'send_message'`);
    assert.match(tool.rows[0].source_code, /# changed/, '--tools keep leaves the existing tool');

    const out = path.join(dir, `replaced-${Date.now()}.avs`);
    await exportAgents(dst, { select: { ids: [agentId] }, out });
    const [a] = (await readArchiveAgents(out)).agents;
    const [orig] = (await readArchiveAgents(archive)).agents;
    const strip = (d: any) => {
      const n = normalizeAf(d);
      for (const t of n.tools) delete t.source_code;
      delete n.agent_vault.rows;
      return n;
    };
    assert.deepEqual(strip(a.doc), strip(orig.doc), 'the agent equals the archived one');
    assert.deepEqual(a.passages, orig.passages);
    assert.ok(a.vectors!.equals(orig.vectors!));

    await restoreAgents(dst, archive, { onConflict: 'replace', tools: 'replace' });
    const tool2 = await dst.query(`SELECT source_code FROM tools WHERE name = 'send_message'`);
    assert.equal(tool2.rows[0].source_code, (orig.doc.tools.find((t) => t.name === 'send_message') as any).source_code, '--tools replace restores the archived source');
  });

  it('copy: a second agent with new ids and a name suffix; the original is untouched', async () => {
    const r = await restoreAgents(dst, archive, { onConflict: 'copy' });
    assert.deepEqual(r.plan.summary.renamed, [`${agentName} → ${agentName}_copy`]);
    const copyId = r.agentIds[agentId];
    assert.ok(copyId && copyId !== agentId && /^agent-[0-9a-f-]{36}$/.test(copyId));
    const after = await tableSnapshot(dst);
    assert.equal(after.agents.rows, 2);
    assert.equal(after.messages.rows, 2 * baseline.messages.rows);
    assert.equal(after.archival_passages.rows, 2 * baseline.archival_passages.rows);
    assert.equal(after.archives.rows, 2);
    assert.equal(after.block.rows, 2 * baseline.block.rows, 'blocks are copied, not shared');
    assert.deepEqual(after.tools, baseline.tools, 'tools are shared by name');
    const ids = await dst.query(`SELECT count(DISTINCT id)::int AS n FROM messages`);
    assert.equal(ids.rows[0].n, after.messages.rows, 'copies get new message ids');

    // each exported alone, so both get the same file-local ids
    const exportOne = async (id: string) => {
      const out = path.join(dir, `copy-${id}.avs`);
      await exportAgents(dst, { select: { ids: [id] }, out, overwrite: true });
      return (await readArchiveAgents(out)).agents[0];
    };
    const orig = await exportOne(agentId);
    const copy = await exportOne(copyId);
    assert.equal(copy.name, `${agentName}_copy`);
    const [archived] = (await readArchiveAgents(archive)).agents;
    assert.deepEqual(normalizeAf(orig.doc), normalizeAf(archived.doc), 'original untouched');
    const c = normalizeAf(copy.doc, { ids: false, name: agentName });
    const o = normalizeAf(orig.doc, { ids: false });
    delete c.agent_vault.archive.name;
    delete o.agent_vault.archive.name;
    assert.deepEqual(c, o, 'the copy equals the original but for ids and name');
    // passages are stored in id order; new ids reorder them: compare by text
    const byText = (a: typeof copy) => {
      const rec = a.dim! * 4;
      return new Map(a.passages.map((p, i) => [p.text as string, { p: normalizePassages([p], false)[0], v: a.vectors!.subarray(32 + i * rec, 32 + (i + 1) * rec).toString('hex') }]));
    };
    const bc = byText(copy);
    const bo = byText(orig);
    assert.equal(bc.size, orig.passages.length);
    for (const [text, x] of bo) assert.deepEqual(bc.get(text), x, `passage "${text}" and its vector are copied byte for byte`);
    assert.ok(!copy.passages.some((p) => orig.passages.some((q) => q.id === p.id)), 'the copied passages have new ids');
    // a second copy takes the next free name
    const r2 = await restoreAgents(dst, archive, { onConflict: 'copy' });
    assert.deepEqual(r2.plan.summary.renamed, [`${agentName} → ${agentName}_copy2`]);
  });
});

describe('letta restore of a plain .af: new ids, conflicts by name', function () {
  this.timeout(120000);
  for (const kind of ['pg', 'pglite'] as const) {
    it(`${kind}: a second restore of the same .af conflicts by name; copy and replace resolve it`, async () => {
      const db = await freshLettaDb(kind);
      try {
        const first = await restoreAgents(db, FIXTURE, { forceSchema: true });
        const id = Object.values(first.agentIds)[0];
        assert.match(id, /^agent-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a new Letta id');
        const before = await tableSnapshot(db);
        await assert.rejects(restoreAgents(db, FIXTURE, { forceSchema: true }), (e: unknown) => {
          assert.ok(isCode('restore-conflict', 4)(e));
          assert.match((e as Error).message, new RegExp(`same name as ${id}`));
          return true;
        });
        assert.deepEqual(await tableSnapshot(db), before);
        const copy = await restoreAgents(db, FIXTURE, { forceSchema: true, onConflict: 'copy', nameSuffix: ' (restored)' });
        assert.equal(copy.plan.agents[0].target_name, `${first.plan.agents[0].name} (restored)`);
        const rep = await restoreAgents(db, FIXTURE, { forceSchema: true, onConflict: 'replace', agents: [first.plan.agents[0].name!] });
        assert.deepEqual(rep.plan.deletes.agents, [id]);
        const n = await db.query(`SELECT count(*)::int AS n FROM agents`);
        assert.equal(n.rows[0].n, 2, 'the copy and the replacement');
      } finally {
        await db.close();
      }
    });
  }

  it('pg: an archive packed from a multi-agent .af restores like the .af (agents, group, messages)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'av-packed-'));
    const a = await freshLettaDb('pg');
    const b = await freshLettaDb('pg');
    try {
      const af = path.join(FIXTURES_DIR, 'lettabot-builder.v2.af');
      const packed = path.join(dir, 'packed.avs');
      await packAgentFile(af, packed);
      const fromPack = await restoreAgents(a, packed, { forceSchema: true });
      const fromAf = await restoreAgents(b, af, { forceSchema: true });
      assert.equal(fromPack.plan.summary.created.length, 2);
      assert.deepEqual(fromPack.rows, fromAf.rows, 'the same rows per table');
      const shape = async (db: Db) =>
        (
          await db.query(
            `SELECT g.manager_type, (SELECT name FROM agents WHERE id = g.manager_agent_id) AS manager, (SELECT json_agg(a.name) FROM groups_agents ga JOIN agents a ON a.id = ga.agent_id WHERE ga.group_id = g.id) AS members FROM groups g`,
          )
        ).rows;
      assert.deepEqual(await shape(a), await shape(b));
      assert.deepEqual(await shape(a), [{ manager_type: 'sleeptime', manager: 'lettabot-builder', members: ['Nameless Agent-sleeptime'] }]);
    } finally {
      await a.close();
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
