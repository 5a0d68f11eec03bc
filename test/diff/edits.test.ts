/**
 * Generated edits: each edit of one category is found exactly once, under that category, both
 * between agent files and between snapshot archives (the streaming path); identical inputs and a
 * v1 file against its own v2 upgrade report nothing.
 */
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { CATEGORIES, diffPaths, type AgentDiff, type Category, type DiffReport } from '../../src/diff';
import { readAgentFile, toV2 } from '../../src/format/af';
import { packAgentFile } from '../../src/format/pack';
import type { AgentFileV2, AgentV2, Json } from '../../src/format/types';
import { getValidator } from '../../src/format/schemas';
import { fixtures } from '../helpers/paths';
import { fixture, fixtureV2, makePassages, TempDir, writeSnapshot, type TestPassage } from './helpers';

type Passages = Record<string, TestPassage[]>;

interface Edit {
  name: string;
  category: Category;
  /** archives only (agent files hold no passages) */
  archiveOnly?: boolean;
  apply(doc: AgentFileV2, passages: Passages): void;
  check(d: AgentDiff): void;
}

const agent0 = (doc: AgentFileV2): AgentV2 => doc.agents[0];
const block = (doc: AgentFileV2, label: string) => doc.blocks.find((b) => b.label === label && agent0(doc).block_ids!.includes(b.id))!;
const tool = (doc: AgentFileV2, name: string) => doc.tools.find((t) => t.name === name)!;

const EDITS: Edit[] = [
  {
    name: 'agent description reworded',
    category: 'agent',
    apply: (doc) => (agent0(doc).description = 'A coding agent, now with tests'),
    check: (d) =>
      assert.deepEqual(
        d.agent.changes.map((c) => c.field),
        ['description'],
      ),
  },
  {
    name: 'a line added to the system prompt',
    category: 'system_prompt',
    apply: (doc) => (agent0(doc).system = `${agent0(doc).system}\nAlways answer in French.`),
    check: (d) => {
      assert.equal(d.system_prompt?.added_lines, 1);
      assert.equal(d.system_prompt?.removed_lines, 0);
      assert.ok(d.system_prompt?.hunks.some((h) => h.lines.includes('+Always answer in French.')));
    },
  },
  {
    name: 'memory block value edited',
    category: 'memory_blocks',
    apply: (doc) => (block(doc, 'human').value = `${block(doc, 'human').value}\nThe user prefers tea.`),
    check: (d) => {
      assert.equal(d.memory_blocks.changed.length, 1);
      assert.equal(d.memory_blocks.changed[0].label, 'human');
      assert.equal(d.memory_blocks.changed[0].value?.added_lines, 1);
      assert.deepEqual(d.memory_blocks.changed[0].fields, []);
    },
  },
  {
    name: 'memory block limit raised',
    category: 'memory_blocks',
    apply: (doc) => (block(doc, 'persona').limit = 123456),
    check: (d) => {
      assert.equal(d.memory_blocks.changed[0].value, null);
      assert.deepEqual(
        d.memory_blocks.changed[0].fields.map((f) => [f.field, f.b]),
        [['limit', 123456]],
      );
    },
  },
  {
    name: 'memory block made read-only',
    category: 'memory_blocks',
    apply: (doc) => (block(doc, 'project').read_only = true),
    check: (d) => assert.deepEqual(d.memory_blocks.changed[0].fields, [{ field: 'read_only', a: false, b: true }]),
  },
  {
    name: 'memory block description changed',
    category: 'memory_blocks',
    apply: (doc) => (block(doc, 'skills').description = 'What the agent can do'),
    check: (d) =>
      assert.deepEqual(
        d.memory_blocks.changed[0].fields.map((f) => f.field),
        ['description'],
      ),
  },
  {
    name: 'memory block added',
    category: 'memory_blocks',
    apply: (doc) => {
      doc.blocks.push({ id: 'block-99', label: 'todo', value: 'ship it', limit: 5000 });
      agent0(doc).block_ids!.push('block-99');
    },
    check: (d) => assert.deepEqual(d.memory_blocks.added, [{ label: 'todo', chars: 7, limit: 5000, read_only: false, description: null }]),
  },
  {
    name: 'memory block removed',
    category: 'memory_blocks',
    apply: (doc) => {
      const id = block(doc, 'skills').id;
      agent0(doc).block_ids = agent0(doc).block_ids!.filter((x) => x !== id);
      doc.blocks = doc.blocks.filter((b) => b.id !== id);
    },
    check: (d) =>
      assert.deepEqual(
        d.memory_blocks.removed.map((b) => b.label),
        ['skills'],
      ),
  },
  {
    name: 'tool source code changed',
    category: 'tools',
    apply: (doc) => (tool(doc, 'Bash').source_code = `${(tool(doc, 'Bash').source_code ?? '').replace(/\n?$/, '\n')}# audited\n`),
    check: (d) => {
      assert.deepEqual(
        d.tools.changed.map((t) => t.name),
        ['Bash'],
      );
      assert.equal(d.tools.changed[0].source_code?.added_lines, 1);
      assert.equal(d.tools.changed[0].source_code?.removed_lines, 0);
      assert.ok(d.tools.changed[0].source_code?.hunks[0].lines.includes('+# audited'));
      assert.deepEqual(d.tools.changed[0].json_schema, []);
    },
  },
  {
    name: 'tool JSON schema gained a parameter',
    category: 'tools',
    apply: (doc) => {
      const s = tool(doc, 'Grep').json_schema as { parameters: { properties: Record<string, Json> } };
      s.parameters.properties.max_results = { type: 'integer', description: 'cap' };
    },
    check: (d) => {
      assert.deepEqual(d.tools.changed[0].json_schema, [{ path: '/parameters/properties/max_results', kind: 'added', a: null, b: { description: 'cap', type: 'integer' } }]);
      assert.equal(d.tools.changed[0].source_code, null);
    },
  },
  {
    name: 'tool pip requirement added',
    category: 'tools',
    apply: (doc) => (tool(doc, 'Read').pip_requirements = [{ name: 'requests', version: '2.32.3' }]),
    check: (d) => assert.deepEqual(d.tools.changed[0].requirements, [{ manager: 'pip', name: 'requests', kind: 'added', a: null, b: '2.32.3' }]),
  },
  {
    name: 'tool added',
    category: 'tools',
    apply: (doc) => {
      doc.tools.push({
        id: 'tool-99',
        name: 'weather',
        source_code: 'def weather(city: str):\n    return "sunny"\n',
        json_schema: { name: 'weather', parameters: { type: 'object', properties: {} } },
        tool_type: 'custom',
      });
      agent0(doc).tool_ids!.push('tool-99');
    },
    check: (d) => assert.deepEqual(d.tools.added, [{ name: 'weather', tool_type: 'custom', source_type: null }]),
  },
  {
    name: 'tool removed',
    category: 'tools',
    apply: (doc) => {
      const id = tool(doc, 'Glob').id;
      agent0(doc).tool_ids = agent0(doc).tool_ids!.filter((x) => x !== id);
    },
    check: (d) =>
      assert.deepEqual(
        d.tools.removed.map((t) => t.name),
        ['Glob'],
      ),
  },
  {
    name: 'workflow child rule added (an edge)',
    category: 'workflows',
    apply: (doc) => agent0(doc).tool_rules!.push({ tool_name: 'Read', type: 'constrain_child_tools', children: ['Edit'] }),
    check: (d) => {
      assert.deepEqual(
        d.workflows.rules.added.map((r) => r.text),
        ['Read -> Edit'],
      );
      assert.deepEqual(d.workflows.edges_added, ['Read -> Edit']);
    },
  },
  {
    name: 'workflow rule changed (prompt template)',
    category: 'workflows',
    apply: (doc) => {
      (agent0(doc).tool_rules![0] as Record<string, Json>).prompt_template = 'ask first';
    },
    check: (d) => {
      assert.equal(d.workflows.rules.changed.length, 1);
      assert.deepEqual(d.workflows.rules.changed[0].changes, [{ field: 'prompt_template', a: null, b: 'ask first' }]);
    },
  },
  {
    name: 'workflow rule removed',
    category: 'workflows',
    apply: (doc) => {
      agent0(doc).tool_rules = agent0(doc).tool_rules!.filter((r) => (r as { tool_name?: string }).tool_name !== 'Bash');
    },
    check: (d) =>
      assert.deepEqual(
        d.workflows.rules.removed.map((r) => r.key),
        ['requires_approval Bash'],
      ),
  },
  {
    name: 'workflow group added',
    category: 'workflows',
    apply: (doc) => {
      doc.groups.push({ id: 'group-0', agent_ids: ['agent-0'], description: 'solo', manager_config: { manager_type: 'round_robin', max_turns: 3 } });
      agent0(doc).group_ids = ['group-0'];
    },
    check: (d) => assert.deepEqual(d.workflows.groups.added, [{ key: 'round_robin', manager_type: 'round_robin', manager: null, members: ['letta-cli-agent'] }]),
  },
  {
    name: 'LLM temperature changed',
    category: 'llm_config',
    apply: (doc) => (agent0(doc).llm_config!.temperature = 0.1),
    check: (d) =>
      assert.deepEqual(
        d.llm_config.changes.map((c) => [c.field, c.b]),
        [['temperature', 0.1]],
      ),
  },
  {
    name: 'embedding model changed',
    category: 'embedding_config',
    apply: (doc) => (agent0(doc).embedding_config!.embedding_model = 'text-embedding-3-large'),
    check: (d) => {
      assert.deepEqual(
        d.embedding_config.changes.map((c) => c.field),
        ['embedding_model'],
      );
      assert.equal(d.embedding_config.reembedding_required, true);
    },
  },
  {
    name: 'a message edited',
    category: 'messages',
    apply: (doc) => {
      const m = agent0(doc).messages![5];
      m.content = [{ type: 'text', text: 'edited by hand' }];
    },
    check: (d) => {
      assert.deepEqual([d.messages.edited, d.messages.appended, d.messages.removed, d.messages.unchanged], [1, 0, 0, 19]);
      assert.equal(d.messages.first_divergence?.a?.position, 5);
      assert.equal(d.messages.first_divergence?.b?.preview, 'edited by hand');
    },
  },
  {
    name: 'a message appended',
    category: 'messages',
    apply: (doc) => {
      agent0(doc).messages!.push({ id: 'message-20', role: 'user', content: [{ type: 'text', text: 'one more thing' }], agent_id: 'agent-0' });
    },
    check: (d) => {
      assert.deepEqual([d.messages.edited, d.messages.appended, d.messages.removed], [0, 1, 0]);
      assert.deepEqual(d.messages.first_divergence, { a: null, b: { position: 20, id: 'message-20', role: 'user', preview: 'one more thing' } });
    },
  },
  {
    name: 'a message removed from the middle',
    category: 'messages',
    apply: (doc) => {
      const a = agent0(doc);
      a.messages!.splice(7, 1);
      a.in_context_message_ids = a.in_context_message_ids!.filter((x) => x !== 'message-7');
    },
    check: (d) => {
      assert.deepEqual([d.messages.edited, d.messages.appended, d.messages.removed, d.messages.unchanged], [0, 0, 1, 19]);
      assert.equal(d.messages.samples.removed[0].a?.id, 'message-7');
      assert.equal(d.messages.first_divergence?.a?.position, 7);
      assert.equal(d.messages.first_divergence?.b?.id, 'message-8', 'B had the next message there');
    },
  },
  {
    name: 'a passage text changed',
    category: 'passages',
    archiveOnly: true,
    apply: (_doc, p) => (p['agent-0'][3].passage.text = 'rewritten fact'),
    check: (d) => {
      assert.deepEqual([d.passages.changed, d.passages.added, d.passages.removed, d.passages.vectors_changed], [1, 0, 0, 0]);
      assert.deepEqual(d.passages.samples.changed[0].fields, ['text']);
      assert.equal(d.passages.samples.changed[0].b.id, 'passage-3');
    },
  },
  {
    name: 'a passage re-embedded',
    category: 'passages',
    archiveOnly: true,
    apply: (_doc, p) => (p['agent-0'][7].embedding![0] += 0.25),
    check: (d) => {
      assert.deepEqual([d.passages.changed, d.passages.vectors_changed], [1, 1]);
      assert.deepEqual(d.passages.samples.changed[0].fields, ['embedding']);
    },
  },
  {
    name: 'a passage added',
    category: 'passages',
    archiveOnly: true,
    apply: (_doc, p) => p['agent-0'].push({ passage: { id: 'passage-new', text: 'brand new' }, embedding: new Array(8).fill(0.5) }),
    check: (d) => {
      assert.deepEqual([d.passages.a_count, d.passages.b_count, d.passages.delta, d.passages.added], [30, 31, 1, 1]);
      assert.equal(d.passages.samples.added[0].id, 'passage-new');
    },
  },
  {
    name: 'a passage removed',
    category: 'passages',
    archiveOnly: true,
    apply: (_doc, p) => p['agent-0'].splice(10, 1),
    check: (d) => assert.deepEqual([d.passages.delta, d.passages.removed, d.passages.samples.removed[0].id], [-1, 1, 'passage-10']),
  },
  {
    name: 'an environment variable key added',
    category: 'environment',
    apply: (doc) => {
      agent0(doc).tool_exec_environment_variables = { GITHUB_TOKEN: '' };
    },
    check: (d) => assert.deepEqual(d.environment, { added: ['GITHUB_TOKEN'], removed: [] }),
  },
];

function assertOnlyOnce(r: DiffReport, category: Category): AgentDiff {
  assert.equal(r.agents.length, 1);
  const d = r.agents[0];
  const nonZero = CATEGORIES.filter((c) => d.counts[c] > 0).map((c) => `${c}=${d.counts[c]}`);
  assert.deepEqual(nonZero, [`${category}=1`], 'exactly one change, in the right category');
  assert.equal(r.summary.total_changes, 1);
  assert.equal(r.identical, false);
  assert.equal(d.status, 'changed');
  const validate = getValidator('diff');
  assert.ok(validate(JSON.parse(JSON.stringify(r))), JSON.stringify(validate.errors?.slice(0, 3)));
  return d;
}

describe('generated edits', () => {
  const tmp = new TempDir();
  let base: AgentFileV2;
  let basePassages: Passages;
  let baseAf: string;
  let baseArchive: string;

  before(async () => {
    base = await fixtureV2('letta-test-agent.v2');
    basePassages = { 'agent-0': makePassages(30) };
    baseAf = tmp.writeAf(base, 'base.af');
    baseArchive = await writeSnapshot(tmp.file('base.zip'), base, basePassages);
  });
  after(() => tmp.remove());

  it('covers every category', () => {
    assert.deepEqual([...new Set(EDITS.map((e) => e.category))].sort(), [...CATEGORIES].sort());
  });

  for (const e of EDITS) {
    if (!e.archiveOnly) {
      it(`agent files: ${e.name} → one ${e.category} change`, async () => {
        const doc = structuredClone(base);
        e.apply(doc, structuredClone(basePassages));
        const r = await diffPaths(baseAf, tmp.writeAf(doc));
        e.check(assertOnlyOnce(r, e.category));
      });
    }
    it(`archives: ${e.name} → one ${e.category} change`, async () => {
      const doc = structuredClone(base);
      const passages = structuredClone(basePassages);
      e.apply(doc, passages);
      const r = await diffPaths(baseArchive, await writeSnapshot(tmp.file('edited.zip'), doc, passages));
      e.check(assertOnlyOnce(r, e.category));
    });
  }

  it('identical inputs report no difference (agent file, archive, and one against the other)', async () => {
    for (const [a, b] of [
      [baseAf, baseAf],
      [baseArchive, baseArchive],
      [baseAf, baseArchive],
      [baseArchive, tmp.writeAf(base, 'copy.af')],
    ]) {
      const r = await diffPaths(a, b);
      assert.equal(r.identical, true, `${a} vs ${b}: ${JSON.stringify(r.summary.counts)}`);
      assert.equal(r.summary.total_changes, 0);
      assert.equal(r.agents[0].status, 'unchanged');
      assert.equal(r.agents[0].messages.unchanged, 20);
    }
    const both = await diffPaths(baseArchive, baseArchive);
    assert.deepEqual([both.agents[0].passages.compared, both.agents[0].passages.unchanged], [true, 30]);
    const mixed = await diffPaths(baseAf, baseArchive);
    assert.equal(mixed.agents[0].passages.compared, false);
  });

  it('the same agent in v1 and its v2 upgrade: no difference, for every v1 fixture', async () => {
    const v1s = fixtures().filter((f) => f.format === 'v1');
    assert.ok(v1s.length >= 7);
    for (const f of v1s) {
      const upgraded = tmp.file(`${f.file}.v2.af`);
      writeFileSync(upgraded, JSON.stringify(toV2(await readAgentFile(f.path))));
      const r = await diffPaths(f.path, upgraded);
      assert.equal(r.identical, true, `${f.file}: ${JSON.stringify(r.summary.counts)}`);
      const packed = await packAgentFile(f.path, tmp.file(`${f.file}.zip`));
      const p = await diffPaths(f.path, packed.path);
      assert.equal(p.identical, true, `${f.file} packed: ${JSON.stringify(p.summary.counts)}`);
    }
  });

  it('a v1 file and its upgrade differ from a real v2 export in exactly the same ways', async () => {
    const upgraded = tmp.file('cs.v2.af');
    writeFileSync(upgraded, JSON.stringify(toV2(await readAgentFile(fixture('customer-service.v1')))));
    const direct = await diffPaths(fixture('customer-service.v1'), fixture('customer-service.v2-early'));
    const viaUpgrade = await diffPaths(upgraded, fixture('customer-service.v2-early'));
    assert.deepEqual(viaUpgrade.agents[0].counts, direct.agents[0].counts);
    assert.deepEqual(JSON.parse(JSON.stringify(viaUpgrade.agents)), JSON.parse(JSON.stringify(direct.agents)));
  });
});
