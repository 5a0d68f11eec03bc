/**
 * Round trip on every fixture: seed the .af into a Letta database (as Letta's import lays it
 * out) with synthetic archival passages → export → restore into an empty database → export
 * again. The two exports must describe equal agents (message order, in-context ids, tool
 * sources, tool rules, blocks, groups, passages with byte-equal vectors and the same nearest
 * neighbours), every exported .af must pass the project's v2 schema and Letta's reference
 * schema, and the first export must match the fixture itself.
 *
 * All fixtures on the real PostgreSQL 15 + pgvector; two representative ones on PGlite.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Db } from '../../src/db/types';
import { readAgentFile, toV2 } from '../../src/format/af';
import type { AgentFileV2 } from '../../src/format/types';
import { exportAgents } from '../../src/letta/export';
import { restoreAgents } from '../../src/letta/restore';
import { seedAgentFile, type SeedResult } from '../../src/letta/seed';
import { freshLettaDb, type DbKind } from '../helpers/letta-db';
import { fixtures, type FixtureInfo } from '../helpers/paths';
import { assertValidAf, nearest, normalizeAf, queryLiteral, readArchiveAgents, seededVector, type ArchiveAgent } from './support';

const contentOf = (c: unknown): unknown => (typeof c === 'string' ? [{ type: 'text', text: c }] : (c ?? []));

/** The first export agrees with the fixture it was seeded from. */
function checkAgainstFixture(fixture: AgentFileV2, seeded: SeedResult, exported: ArchiveAgent[]): void {
  const names = new Map<string, string>(); // file id in the export → agent name
  for (const e of exported)
    for (const [f, db] of Object.entries((e.doc as any).agent_vault.ids as Record<string, string>)) if (f.startsWith('agent-')) names.set(f, exported.find((x) => x.id === db)?.name ?? db);
  for (const fa of fixture.agents) {
    const dbId = seeded.agents.find((a) => a.fileId === fa.id)!.id;
    const ex = exported.find((e) => e.id === dbId);
    assert.ok(ex, `agent ${fa.id} (${fa.name}) is in the export`);
    const ea = ex.doc.agents[0] as any;
    const what = `${fa.name} (${fa.id})`;
    // every message, in order (Letta's own export keeps ~50)
    const msgs = fa.messages ?? [];
    assert.equal(ea.messages.length, msgs.length, `${what}: message count`);
    assert.deepEqual(
      ea.messages.map((m: any) => [m.role, contentOf(m.content), m.tool_call_id ?? null]),
      msgs.map((m) => [m.role, contentOf(m.content), m.tool_call_id ?? null]),
      `${what}: messages in order`,
    );
    const pos = (a: any) => (a.in_context_message_ids ?? []).map((id: string) => a.messages.findIndex((m: any) => m.id === id));
    assert.deepEqual(pos(ea), pos(fa), `${what}: in-context messages`);
    // tools (full source) and tool rules
    const toolsOf = (doc: AgentFileV2, a: any) => new Map((a.tool_ids ?? []).map((id: string) => doc.tools.find((t) => t.id === id)!).map((t: any) => [t.name, t.source_code ?? null]));
    assert.deepEqual(toolsOf(ex.doc, ea), toolsOf(fixture, fa), `${what}: tools and their source`);
    assert.deepEqual(ea.tool_rules ?? [], fa.tool_rules ?? [], `${what}: tool rules`);
    // blocks: labels, values, limits
    const blocksOf = (doc: AgentFileV2, a: any) =>
      Object.fromEntries((a.block_ids ?? []).map((id: string) => doc.blocks.find((b) => b.id === id)!).map((b: any) => [b.label, { value: b.value, limit: b.limit ?? 100000 }]));
    assert.deepEqual(blocksOf(ex.doc, ea), blocksOf(fixture, fa), `${what}: blocks`);
  }
  // groups: manager and members by name
  const fixtureName = (id: string) => fixture.agents.find((a) => a.id === id)?.name;
  const groupsOf = (gs: any[], nameOf: (id: string) => string | undefined | null) =>
    gs.map((g) => ({ type: g.manager_config?.manager_type, manager: nameOf(g.manager_config?.manager_agent_id), members: g.agent_ids.map(nameOf).sort() }));
  const exportedGroups = new Map<string, any>();
  for (const e of exported) for (const g of [...e.doc.groups, ...(((e.doc as any).agent_vault?.groups as any[]) ?? [])]) exportedGroups.set(g.id, g); // a group with members in other entries is in the extension
  const live = fixture.groups.filter((g) => g.agent_ids.every((a) => fixture.agents.some((x) => x.id === a)));
  assert.deepEqual(
    groupsOf([...exportedGroups.values()], (id) => names.get(id)),
    groupsOf(live, fixtureName),
    'group membership',
  );
}

async function roundTrip(kind: DbKind, f: FixtureInfo, dir: string): Promise<void> {
  let src: Db | undefined;
  let dst: Db | undefined;
  try {
    src = await freshLettaDb(kind);
    dst = await freshLettaDb(kind);
    const seeded = await seedAgentFile(src, f.path, { passages: { count: 12, seed: 7 } });
    const fixture = toV2(await readAgentFile(f.path));
    assert.equal(seeded.agents.length, fixture.agents.length);

    const out1 = path.join(dir, `${f.file}.1.avs`);
    const e1 = await exportAgents(src, { select: { all: true }, out: out1 });
    assert.equal(e1.manifest.source?.letta_revision, '1c28e167b74f');
    assert.ok(e1.manifest.source?.pgvector_version, 'manifest records the pgvector version');
    const A1 = await readArchiveAgents(out1);
    for (const a of A1.agents) {
      assertValidAf(a.doc, `${f.file} → ${a.id}.af`);
      assert.equal(a.passages.length, 12);
      assert.equal(a.dim, e1.manifest.agents.find((m) => m.id === a.id)!.embedding!.dim, 'vectors stored at the true dimension the manifest records');
      assert.ok(a.dim! < 4096);
    }
    checkAgainstFixture(fixture, seeded, A1.agents);

    const res = await restoreAgents(dst, out1, { onConflict: 'fail' });
    assert.deepEqual(res.plan.refusals, []);
    assert.equal(res.plan.summary.created.length, fixture.agents.length);
    const out2 = path.join(dir, `${f.file}.2.avs`);
    await exportAgents(dst, { select: { all: true }, out: out2 });
    const A2 = await readArchiveAgents(out2);
    assert.deepEqual(
      A2.agents.map((a) => a.id),
      A1.agents.map((a) => a.id),
      'the same agents (original ids kept)',
    );
    for (const [i, a1] of A1.agents.entries()) {
      const a2 = A2.agents[i];
      assert.deepEqual(normalizeAf(a2.doc), normalizeAf(a1.doc), `${f.file}: agent ${a1.id} restores equal`);
      assert.deepEqual(a2.passages, a1.passages, 'passages equal');
      assert.ok(a1.vectors && a2.vectors && a1.vectors.equals(a2.vectors), 'vectors byte-equal');
      const q = queryLiteral(seededVector(a1.dim!, 99));
      const n1 = await nearest(src, a1.id, q);
      assert.equal(n1.length, 5);
      assert.deepEqual(await nearest(dst, a1.id, q), n1, 'same nearest neighbours');
    }
  } finally {
    await src?.close();
    await dst?.close();
  }
}

describe('letta export → restore round trip on every fixture (PostgreSQL 15 + pgvector)', function () {
  this.timeout(120000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-roundtrip-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const all = fixtures();
  it('covers all 24 fixtures: 12 v2, 2 double-encoded v2, 10 v1 (upgraded)', () => {
    assert.equal(all.length, 24);
    assert.equal(all.filter((f) => f.format === 'v1').length, 10);
  });
  for (const f of all) {
    it(`${f.file} (${f.format})`, async () => roundTrip('pg', f, dir));
  }
});

describe('letta export → restore round trip (PGlite)', function () {
  this.timeout(180000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-roundtrip-lite-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  for (const name of ['lettabot-builder.v2.af', 'void.v2.af', 'memgpt-agent-with-convo.v1.af']) {
    it(name, async () =>
      roundTrip(
        'pglite',
        fixtures().find((f) => f.file === name)!,
        dir,
      ),
    );
  }
});
