/**
 * The archive side of the diff: passages and vectors larger than one read (rows straddling read
 * chunks), many messages (entries inflated in many chunks), damaged archives.
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { diffPaths, diffSources, openArchiveSource, openLiveSource, openSource } from '../../src/diff';
import { AgentVaultError } from '../../src/core/errors';
import type { AgentFileV2 } from '../../src/format/types';
import { fixtureV2, makePassages, TempDir, writeSnapshot } from './helpers';

describe('diff of snapshot archives', () => {
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('passages with 1536-dim vectors over several read chunks: every change found, nothing else', async () => {
    const doc = await fixtureV2('letta-test-agent.v2');
    const dim = 1536; // 6 KiB rows: a 1 MiB read ends inside a row
    const base = makePassages(700, dim, 3);
    const edited = structuredClone(base);
    edited[171].embedding![dim - 1] += 1; // the row that straddles the first read boundary
    edited[400].passage.text = 'rewritten';
    edited[650].passage.tags = ['t', 'new-tag'];
    edited.splice(300, 2);
    edited.push({ passage: { id: 'passage-x', text: 'appended' }, embedding: new Array<number>(dim).fill(0.25) });
    const a = await writeSnapshot(tmp.file('a.zip'), doc, { 'agent-0': base }, dim);
    const b = await writeSnapshot(tmp.file('b.zip'), doc, { 'agent-0': edited }, dim);
    const r = await diffPaths(a, b);
    const p = r.agents[0].passages;
    assert.deepEqual([p.a_count, p.b_count, p.delta, p.unchanged, p.changed, p.vectors_changed, p.removed, p.added], [700, 699, -1, 695, 3, 1, 2, 1]);
    assert.deepEqual(
      p.samples.changed.map((c) => [c.a.id, c.fields]),
      [
        ['passage-171', ['embedding']],
        ['passage-400', ['text']],
        ['passage-650', ['metadata']],
      ],
    );
    assert.deepEqual(
      p.samples.removed.map((x) => x.id),
      ['passage-300', 'passage-301'],
    );
    assert.deepEqual(
      p.samples.added.map((x) => x.id),
      ['passage-x'],
    );
    assert.equal(r.summary.total_changes, 6);
    // and the source hands out every vector intact (iterate the batches as a consumer would)
    const src = await openSource(b);
    try {
      let n = 0;
      for await (const batch of src.iteratePassages!('agent-0')) {
        for (const item of batch) {
          const want = edited[n++].embedding!;
          const got = new Float32Array(item.vector!.buffer.slice(item.vector!.byteOffset, item.vector!.byteOffset + item.vector!.length));
          assert.equal(got.length, dim);
          assert.equal(got[0], Math.fround(want[0]));
          assert.equal(got[dim - 1], Math.fround(want[dim - 1]));
        }
      }
      assert.equal(n, 699);
    } finally {
      await src.close();
    }
  });

  it('20,000 messages: appends, edits and removals are counted exactly', async () => {
    const doc = await fixtureV2('letta-test-agent.v2');
    const agent = doc.agents[0];
    const proto = agent.messages![1];
    agent.messages = Array.from({ length: 20000 }, (_, i) => ({ ...proto, id: `message-${i}`, content: [{ type: 'text', text: `message ${i} ${'lorem ipsum '.repeat(i % 40)}` }] }));
    agent.in_context_message_ids = ['message-0'];
    const b: AgentFileV2 = structuredClone(doc);
    const bm = b.agents[0].messages!;
    bm[12345].content = [{ type: 'text', text: 'edited' }];
    bm.splice(5000, 3);
    bm.push({ ...proto, id: 'message-new', content: [{ type: 'text', text: 'new' }] });
    const ra = await writeSnapshot(tmp.file('m-a.zip'), doc);
    const rb = await writeSnapshot(tmp.file('m-b.zip'), b);
    const r = await diffPaths(ra, rb);
    const m = r.agents[0].messages;
    assert.deepEqual([m.a_count, m.b_count, m.unchanged, m.edited, m.removed, m.appended], [20000, 19998, 19996, 1, 3, 1]);
    assert.deepEqual(
      m.samples.removed.map((s) => s.a?.id),
      ['message-5000', 'message-5001', 'message-5002'],
    );
    assert.equal(m.samples.edited[0].a?.id, 'message-12345');
    assert.equal(m.first_divergence?.a?.id, 'message-5000');
    assert.equal(r.summary.total_changes, 5);
  });

  it('drift of a live agent since its snapshot (a live provider: exported .af + passages)', async () => {
    const dbId = 'agent-5f0c2a1e-8b7d-4c3e-9f10-1a2b3c4d5e6f';
    const snap = await fixtureV2('memgpt-agent.v2-double-encoded');
    snap.agents[0].id = dbId;
    snap.agents[0].in_context_message_ids = [];
    snap.agents[0].messages!.forEach((m) => (m.agent_id = dbId));
    const passages = makePassages(10);
    const archive = await writeSnapshot(tmp.file('snap.zip'), snap, { [dbId]: passages });
    // the live export uses file-local ids (agent-0), as Letta's exporter does; the provider maps them
    const live = structuredClone(snap);
    live.agents[0].id = 'agent-0';
    live.agents[0].messages!.push({ id: 'message-9', role: 'user', content: [{ type: 'text', text: 'hi again' }] });
    live.agents[0].llm_config!.model = 'gpt-4.1-mini';
    const livePassages = structuredClone(passages);
    livePassages[2].passage.text = 'corrected';
    const B = await openLiveSource({
      label: 'postgres://letta@localhost/letta',
      exportAgentFile: async () => live,
      originalId: (id) => (id === 'agent-0' ? dbId : undefined),
      async *iteratePassages(id) {
        assert.equal(id, 'agent-0');
        for (const p of livePassages) yield { passage: p.passage, embedding: p.embedding };
      },
    });
    const A = await openArchiveSource(archive);
    try {
      const r = await diffSources(A, B);
      const d = r.agents[0];
      assert.equal(d.matched_by, 'id');
      assert.deepEqual(r.b, { kind: 'live', label: 'postgres://letta@localhost/letta', format: 'live' });
      assert.deepEqual(d.llm_config.changes, [{ field: 'model', a: 'gpt-4o-mini', b: 'gpt-4.1-mini' }]);
      assert.deepEqual([d.messages.appended, d.messages.edited, d.messages.removed], [1, 0, 0]);
      assert.deepEqual([d.passages.compared, d.passages.changed, d.passages.vectors_changed, d.passages.samples.changed[0].fields], [true, 1, 0, ['text']]);
      assert.equal(r.summary.total_changes, 3);
    } finally {
      await A.close();
      await B.close();
    }
  });

  it('a damaged archive entry is reported by name, not diffed', async () => {
    const doc = await fixtureV2('memgpt-agent.v2-double-encoded');
    const good = await writeSnapshot(tmp.file('good.zip'), doc, { [doc.agents[0].id]: makePassages(5) });
    const bytes = readFileSync(good);
    // flip a byte inside the stored (uncompressed) vector data
    const at = bytes.indexOf(Buffer.from('AVVF', 'latin1'));
    assert.ok(at > 0);
    bytes[at + 40] ^= 0xff;
    const bad = tmp.file('bad.zip');
    writeFileSync(bad, bytes);
    await assert.rejects(diffPaths(good, bad), (e: unknown) => e instanceof AgentVaultError && e.code === 'checksum' && /bad\.zip!passages\/agent-0\.vectors is damaged: its CRC-32/.test(e.message));
  });
});
