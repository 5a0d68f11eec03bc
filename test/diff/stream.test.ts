/**
 * The streaming parts of the diff: cutting messages out of an .af byte stream, and comparing two
 * long sequences in lockstep.
 */
import { strict as assert } from 'node:assert';
import { AgentFileSplitter } from '../../src/format/af-stream';
import { lockstep, type ItemRecord } from '../../src/diff/lockstep';
import { compareMessages, MessageBatch } from '../../src/diff/messages';
import { AgentVaultError } from '../../src/core/errors';
import { readAgentFile, toV2 } from '../../src/format/af';
import { fixtures } from '../helpers/paths';

function split(text: Buffer, chunkSizes: () => number): { messages: string[][]; outer: unknown } {
  const s = new AgentFileSplitter('test');
  const messages: string[][] = [];
  for (let off = 0; off < text.length;) {
    const n = Math.max(1, chunkSizes());
    const chunk = Buffer.from(text.subarray(off, off + n)); // a fresh buffer, as a stream gives
    off += n;
    s.push(chunk);
    const got = s.take();
    for (let k = 0; k < got.length; k++) (messages[got.agents[k]] ??= []).push(got.bufs[k].toString('utf8', got.starts[k], got.ends[k]));
  }
  return { messages, outer: JSON.parse(s.end().toString('utf8')) };
}

describe('AgentFileSplitter', () => {
  const all = fixtures();

  for (const f of all) {
    it(`cuts every message of ${f.file} out exactly, whatever the chunk boundaries`, async () => {
      const doc = toV2(await readAgentFile(f.path));
      // archives hold compact JSON; pretty-printed and the original text must work as well
      const texts = [JSON.stringify(doc), JSON.stringify(doc, null, 2)];
      let seed = 7;
      const rnd = (): number => {
        seed = (seed * 48271) % 0x7fffffff;
        return seed;
      };
      for (const text of texts) {
        const buf = Buffer.from(text, 'utf8');
        for (const sizes of [() => buf.length, () => 1 + (rnd() % 7), () => 1 + (rnd() % 4096), () => 65536]) {
          const { messages, outer } = split(buf, sizes);
          const expectedOuter = structuredClone(doc);
          doc.agents.forEach((a, i) => {
            assert.deepEqual(
              (messages[i] ?? []).map((m) => JSON.parse(m)),
              a.messages ?? [],
              `agent ${i} messages`,
            );
            if (Array.isArray(expectedOuter.agents[i].messages)) expectedOuter.agents[i].messages = [];
          });
          assert.deepEqual(outer, expectedOuter, 'the rest of the document is intact');
        }
      }
    });
  }

  it('keeps only the chosen agent’s messages and counts every agent’s', async () => {
    const doc = toV2(await readAgentFile(all.find((f) => f.file === 'lettabot-builder.v2.af')!.path));
    const buf = Buffer.from(JSON.stringify(doc));
    for (const only of [0, 1]) {
      const s = new AgentFileSplitter('t', only);
      const kept: unknown[] = [];
      for (let off = 0; off < buf.length; off += 5000) {
        s.push(Buffer.from(buf.subarray(off, off + 5000)));
        const got = s.take();
        for (let k = 0; k < got.length; k++) kept.push(JSON.parse(got.bufs[k].toString('utf8', got.starts[k], got.ends[k])));
      }
      s.end();
      assert.deepEqual(kept, doc.agents[only].messages);
      assert.deepEqual(
        s.messageCounts,
        doc.agents.map((a) => a.messages?.length ?? 0),
      );
    }
  });

  it('handles escaped quotes and backslashes across chunk edges', () => {
    const doc = {
      agents: [
        {
          id: 'agent-0',
          name: 'a "quoted" \\ name',
          messages: [
            { id: 'm1', content: 'x\\"y\\\\', role: 'user' },
            { id: 'm2', content: '\\\\\\"}]{[', role: 'assistant' },
          ],
        },
      ],
      messages: ['not an agent message'],
    };
    const buf = Buffer.from(JSON.stringify(doc));
    for (let n = 1; n <= 9; n++) {
      const { messages, outer } = split(buf, () => n);
      assert.deepEqual(
        messages[0].map((m) => JSON.parse(m)),
        doc.agents[0].messages,
      );
      assert.deepEqual(outer, { ...doc, agents: [{ ...doc.agents[0], messages: [] }] });
    }
  });

  it('rejects a truncated document and non-object messages with clear errors', () => {
    const s = new AgentFileSplitter('x.zip!agents/a.af');
    s.push(Buffer.from('{"agents":[{"id":"agent-0","messages":[{"id":"m"'));
    assert.throws(
      () => s.end(),
      (e: unknown) => e instanceof AgentVaultError && /x\.zip!agents\/a\.af: .*ends early/.test(e.message),
    );
    const t = new AgentFileSplitter('y.af');
    assert.throws(() => t.push(Buffer.from('{"agents":[{"messages":[1]}]}')), /y\.af: messages of agent 0 must be objects/);
    const u = new AgentFileSplitter('z.af');
    assert.throws(() => u.push(Buffer.from('{"agents":[{"messages":["x"]}]}')), /z\.af: messages of agent 0 must be objects \(found a string\)/);
  });
});

// ---------------------------------------------------------------------------------------------

interface Item {
  id: string | null;
  text: string;
}

interface TestBatch {
  length: number;
  raw: Buffer[];
}

const batches = async function* (items: Item[], size = 3): AsyncGenerator<TestBatch> {
  for (let i = 0; i < items.length; i += size) {
    const raw = items.slice(i, i + size).map((x) => Buffer.from(JSON.stringify({ id: x.id, text: x.text })));
    yield { length: raw.length, raw };
  }
};

async function run(a: Item[], b: Item[]) {
  let parsed = 0;
  const r = await lockstep(batches(a), batches(b), {
    sameRaw: (x, i, y, j) => x.raw[i].equals(y.raw[j]),
    parse: (x, i, position): ItemRecord => {
      parsed++;
      const o = JSON.parse(x.raw[i].toString()) as Item;
      return { id: o.id, digest: o.text, position, label: null, preview: o.text };
    },
  });
  return { ...r, parsed };
}

const seq = (n: number, prefix = 'm'): Item[] => Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, text: `text ${i}` }));

describe('lockstep comparison', () => {
  it('identical sequences: nothing parsed', async () => {
    const r = await run(seq(1000), seq(1000));
    assert.deepEqual([r.unchanged, r.edited, r.appended, r.removed, r.parsed, r.firstDivergence], [1000, 0, 0, 0, 0, null]);
  });

  it('an insertion and a deletion cost a few parsed items, not the rest of the stream', async () => {
    const a = seq(1000);
    const b = seq(1000);
    b.splice(100, 0, { id: 'new', text: 'inserted' });
    b.splice(701, 1); // m700
    const r = await run(a, b);
    assert.deepEqual([r.unchanged, r.edited, r.appended, r.removed], [999, 0, 1, 1]);
    assert.ok(r.parsed < 12, `parsed ${r.parsed}`);
    assert.equal(r.samples.appended[0].b?.id, 'new');
    assert.equal(r.samples.removed[0].a?.id, 'm700');
    assert.deepEqual([r.firstDivergence?.a?.id, r.firstDivergence?.b?.id], ['m100', 'new']);
  });

  it('edits, appends at the end and a run of deletions', async () => {
    const a = seq(500);
    const b = seq(500).filter((x) => !['m10', 'm11', 'm12', 'm13'].includes(x.id!));
    b[200] = { ...b[200], text: 'changed' };
    b.push({ id: 'x1', text: 'a' }, { id: 'x2', text: 'b' });
    const r = await run(a, b);
    assert.deepEqual([r.edited, r.appended, r.removed, r.unchanged], [1, 2, 4, 495]);
    assert.equal(r.samples.edited[0].a?.id, 'm204');
    assert.deepEqual(
      r.samples.removed.map((s) => s.a?.id),
      ['m10', 'm11', 'm12', 'm13'],
    );
    assert.equal(r.firstDivergence?.a?.id, 'm10');
  });

  it('disjoint id spaces (file-local against database ids) pair by position', async () => {
    const a = seq(5, 'message-');
    const b = seq(6, 'message-uuid-');
    b[2].text = 'other';
    const r = await run(a, b);
    assert.equal(r.matchedBy, 'position');
    assert.deepEqual([r.unchanged, r.edited, r.appended, r.removed], [4, 1, 1, 0]);
    assert.equal(r.firstDivergence?.a?.position, 2);
  });

  it('items without ids pair by position; a reorder with the same content is no edit', async () => {
    const r = await run(
      [
        { id: null, text: 'a' },
        { id: null, text: 'b' },
      ],
      [
        { id: null, text: 'a' },
        { id: null, text: 'c' },
      ],
    );
    assert.deepEqual([r.unchanged, r.edited, r.appended, r.removed], [1, 1, 0, 0]);
    const swapped = await run(seq(3), [seq(3)[0], seq(3)[2], seq(3)[1]]);
    assert.deepEqual([swapped.unchanged, swapped.edited, swapped.appended, swapped.removed], [3, 0, 0, 0]);
  });

  it('compareMessages treats a bare-string content and one text part as the same message', async () => {
    const one = async function* () {
      yield MessageBatch.objects([{ id: 'm0', role: 'user', content: 'hello', created_at: '2025-01-01' }]);
    };
    const two = async function* () {
      yield MessageBatch.objects([{ id: 'm0', role: 'user', content: [{ type: 'text', text: 'hello', signature: null }], tool_calls: [], created_at: '2026-02-02Z', model: 'x' }]);
    };
    const r = await compareMessages(one(), two(), { a: 'a', b: 'b' });
    assert.deepEqual([r.unchanged, r.edited], [1, 0]);
  });

  it('reads the same as JSON.parse for a large compact document', () => {
    const big = { agents: [{ id: 'agent-0', messages: seq(20000).map((x) => ({ ...x, content: [{ type: 'text', text: `${x.text} "q" \\ ü 💬` }] })) }] };
    const buf = Buffer.from(JSON.stringify(big));
    const { messages } = split(buf, () => 16384);
    assert.equal(messages[0].length, 20000);
    assert.deepEqual(JSON.parse(messages[0][12345]), big.agents[0].messages[12345]);
  });
});
