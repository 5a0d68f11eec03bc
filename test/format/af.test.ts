import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { readAgentFile, parseAgentFileText, toV2 } from '../../src/format/af';
import { validateAgentFilePath, validateAgentFileText } from '../../src/format/validate';
import { fixtures } from '../helpers/paths';
import { AgentVaultError } from '../../src/core/errors';

describe('reading .af files', () => {
  const all = fixtures();

  it('finds all 24 fixtures in the fixtures README', () => {
    assert.equal(all.length, 24);
  });

  for (const fx of all) {
    it(`classifies ${fx.file} as ${fx.format} with the README's counts`, async () => {
      const p = await readAgentFile(fx.path);
      assert.equal(p.format, fx.format);
      const c = p.counts;
      if (fx.format === 'v1') {
        assert.equal(p.version, fx.facts.version);
        assert.equal(c.blocks, parseInt(fx.facts.core_memory, 10), 'core_memory blocks');
      } else {
        assert.equal(p.revision, fx.facts.revision_id);
        assert.equal(c.agents, parseInt(fx.facts.agents, 10), 'agents');
        assert.equal(c.blocks, parseInt(fx.facts.blocks, 10), 'blocks');
        assert.equal(c.groups, parseInt(fx.facts.groups, 10), 'groups');
        assert.equal(c.files, parseInt(fx.facts.files, 10), 'files');
        assert.equal(c.sources, parseInt(fx.facts.sources, 10), 'sources');
        assert.equal(c.skills, parseInt(fx.facts.skills, 10), 'skills');
      }
      assert.equal(c.tools, parseInt(fx.facts.tools, 10), 'tools');
      assert.equal(c.messages, parseInt(fx.facts.messages, 10), 'messages');
    });

    it(`validates ${fx.file}`, async () => {
      const r = await validateAgentFilePath(fx.path);
      assert.deepEqual(
        r.errors.map((e) => `${e.code} ${e.pointer} ${e.message}`),
        [],
        `${fx.file} should be valid`,
      );
      assert.equal(r.valid, true);
      for (const w of r.warnings) {
        assert.ok(w.line && w.line > 0 && w.column && w.column > 0, `warning has a position: ${JSON.stringify(w)}`);
      }
    });
  }

  it("reports ezra.v2.af's group-0 as a dangling reference with its line", async () => {
    const fx = all.find((f) => f.file === 'ezra.v2.af')!;
    const r = await validateAgentFilePath(fx.path);
    const d = [...r.errors, ...r.warnings].filter((f) => f.code === 'dangling-reference');
    assert.equal(d.length, 1);
    assert.equal(d[0].pointer, '/agents/0/group_ids/0');
    assert.match(d[0].message, /group "group-0", which is not in the file/);
    // The line really holds the reference.
    const lines = readFileSync(fx.path, 'utf8').split('\n');
    assert.match(lines[d[0].line! - 1], /"group-0"/);
    assert.equal(lines[d[0].line! - 1].indexOf('"group-0"') + 1, d[0].column);
  });

  it('decodes double-encoded v2 to the same document as its single-encoded form', () => {
    const doc = { agents: [], groups: [], blocks: [], files: [], sources: [], tools: [], mcp_servers: [], metadata: { revision_id: 'x' } };
    const single = parseAgentFileText(JSON.stringify(doc));
    const double = parseAgentFileText(JSON.stringify(JSON.stringify(doc)));
    assert.equal(single.format, 'v2');
    assert.equal(double.format, 'v2-double-encoded');
    assert.deepEqual(double.doc, single.doc);
  });

  it('toV2 leaves v2 alone and upgrades v1', async () => {
    const v1 = await readAgentFile(all.find((f) => f.format === 'v1')!.path);
    const v2 = toV2(v1);
    assert.ok(Array.isArray(v2.agents) && v2.agents.length === 1);
    const p2 = await readAgentFile(all.find((f) => f.format === 'v2')!.path);
    assert.equal(toV2(p2), p2.doc);
  });

  it('gives the line and column of a syntax error inside a double-encoded document', () => {
    const inner = '{\n  "agents": [\n    {"id": "agent-0",]\n}';
    const r = validateAgentFileText(JSON.stringify(inner), 'x.af');
    assert.equal(r.valid, false);
    assert.equal(r.errors[0].code, 'json-syntax');
    assert.equal(r.errors[0].line, 3);
    assert.match(r.errors[0].message, /inside the double-encoded document/);
  });

  it('parses a 20 MB document in linear time (no quadratic work)', function () {
    this.timeout(60000);
    const make = (n: number) => {
      const messages = Array.from({ length: n }, (_, i) => ({ id: `message-${i}`, role: 'user', content: [{ type: 'text', text: 'x'.repeat(180) }] }));
      return JSON.stringify({ agents: [{ id: 'agent-0', messages, in_context_message_ids: [] }], groups: [], blocks: [], files: [], sources: [], tools: [], mcp_servers: [] });
    };
    const small = make(10000);
    const big = make(100000);
    const time = (t: string) => {
      const s = process.hrtime.bigint();
      validateAgentFileText(t);
      return Number(process.hrtime.bigint() - s);
    };
    time(small);
    const ts = Math.min(time(small), time(small));
    const tb = Math.min(time(big), time(big));
    // 10x the data must not cost 100x the time; allow generous noise (linear would be ~10x).
    assert.ok(tb / ts < 40, `10x input took ${(tb / ts).toFixed(1)}x the time`);
  });

  it('throws AgentVaultError, never a raw error, for non-documents', () => {
    for (const t of ['', '   ', 'null', '[]', '42', '"just a string"', '{}', '{"foo": 1}']) {
      assert.throws(
        () => parseAgentFileText(t, 'in.af'),
        (e: unknown) => e instanceof AgentVaultError && /in\.af/.test(e.message),
      );
    }
  });
});
