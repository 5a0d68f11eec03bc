import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { agentComponents, changeComponents, componentFileName, componentText, messagesText, passagesText, rulesText } from '../../src/diff/components';
import { diffPaths, openSource } from '../../src/diff/index';
import { packAgentFile } from '../../src/format/pack';
import { MODIFIED, modifiedAgentFileText } from '../extension/test-files';
import { fixture, TempDir } from './helpers';

interface LoopDoc {
  agents: Array<{ system: string; messages: unknown[] }>;
  blocks: Array<{ label: string; value: string }>;
  tools: Array<{ name: string; source_code: string | null; json_schema: unknown }>;
}

describe("diff/components: an agent's components as text", () => {
  const tmp = new TempDir();
  after(() => tmp.remove());
  const loop = JSON.parse(readFileSync(fixture('loop.v2'), 'utf8')) as LoopDoc;

  it('lists system prompt, blocks and tools (sorted), rules and both model configs, keyed like the diff', async () => {
    const src = await openSource(fixture('loop.v2'));
    try {
      const [ref] = await src.listAgents();
      const state = await src.loadAgent(ref.id);
      const list = agentComponents(state);
      assert.deepEqual(
        list.map((c) => `${c.ref.kind}:${c.ref.key ?? ''}`),
        ['system:', ...loop.blocks.map((b) => `block:${b.label}`).sort(), ...loop.tools.map((t) => `tool:${t.name}`).sort(), 'rules:', 'llm:', 'embedding:'],
      );
      assert.equal(componentText(state, { kind: 'system' }), loop.agents[0].system);
      for (const b of loop.blocks) assert.equal(componentText(state, { kind: 'block', key: b.label }), b.value);
      const note = loop.tools.find((t) => t.name === 'note')!;
      assert.equal(componentText(state, { kind: 'tool', key: 'note' }), note.source_code);
      assert.equal(list.find((c) => c.ref.key === 'note')!.fileName, 'tools/note.py');
      // a tool without source code shows its JSON schema
      const noSource = loop.tools.find((t) => !t.source_code)!;
      assert.deepEqual(JSON.parse(componentText(state, { kind: 'tool', key: noSource.name })!), JSON.parse(JSON.stringify(noSource.json_schema)));
      assert.equal(list.find((c) => c.ref.key === noSource.name)!.fileName, `tools/${noSource.name}.json`);
      assert.equal(componentText(state, { kind: 'block', key: 'no-such-block' }), undefined);
      assert.match(componentText(state, { kind: 'embedding' })!, /"embedding_model": "text-embedding-3-small"/);
      const { text, count } = await messagesText(src, ref.id);
      assert.equal(count, loop.agents[0].messages.length);
      assert.match(text, /^# Messages \(3\)\n\n### #1 /);
      assert.match((await passagesText(src, ref.id)).text, /agent file holds no archival passages/);
    } finally {
      await src.close();
    }
  });

  it('renders tool rules as the workflow they describe', () => {
    assert.equal(rulesText([]), '(no tool rules)\n');
    assert.equal(
      rulesText([
        { type: 'exit_loop', tool_name: 'send_message' },
        { type: 'run_first', tool_name: 'search' },
        { type: 'constrain_child_tools', tool_name: 'search', children: ['summarize', 'send_message'] },
        { type: 'max_count_per_step', tool_name: 'search', max_count_limit: 2 },
      ]),
      'init search\nsearch -> send_message\nsearch -> summarize\nmax search ×2 per step\nterminal send_message\n',
    );
  });

  it('maps every change of a diff report to the component that shows it, and flags re-embedding', async () => {
    const a = tmp.file('a.avsnap');
    const b = tmp.file('b.avsnap');
    const modified = tmp.file('modified.af');
    writeFileSync(modified, modifiedAgentFileText(readFileSync(fixture('loop.v2'), 'utf8')));
    await packAgentFile(fixture('loop.v2'), a);
    await packAgentFile(modified, b);
    const report = await diffPaths(a, b);
    const per = changeComponents(report.agents[0]);
    assert.deepEqual(
      per.system_prompt.map((c) => c.ref),
      [{ kind: 'system' }],
    );
    assert.deepEqual(
      per.memory_blocks.map((c) => [c.label, c.status, c.ref.kind]),
      [[MODIFIED.block, 'changed', 'block']],
    );
    assert.deepEqual(
      per.tools.map((c) => [c.label, c.ref.kind]),
      [[MODIFIED.tool, 'tool']],
    );
    assert.deepEqual(
      per.workflows.map((c) => [c.label, c.status, c.ref.kind]),
      [['init web_search', 'added', 'rules']],
    );
    assert.equal(per.embedding_config.length, 1);
    assert.equal(per.embedding_config[0].reembedding, true);
    assert.deepEqual(per.messages, []);
    assert.equal(componentFileName({ kind: 'tool', key: 'x/y' }), 'tools/x_y.py');
  });
});
