/** Outputs of the diff (text, Markdown, JSON) and the `agent-vault diff` command. */
import { strict as assert } from 'node:assert';
import { diffPaths, type DiffReport } from '../../src/diff';
import { renderJson, renderMarkdown, renderText } from '../../src/cli/diff-render';
import { getValidator } from '../../src/format/schemas';
import { runCli, STACK_TRACE } from '../helpers/cli';
import { fixture, fixtureV2, TempDir } from './helpers';

// eslint-disable-next-line no-control-regex -- ESC starts the colour sequences this test looks for
const ANSI = /\u001b\[[0-9;]*m/;

describe('diff output', () => {
  it('text: one section per category, colour only when asked', async () => {
    const r = await diffPaths(fixture('deep-research-agent.v1'), fixture('deep-research-agent.v2'));
    const plain = renderText(r);
    assert.doesNotMatch(plain, ANSI);
    assert.match(plain, /^agent "deep-thought-research-agent" \(agent-0, matched by elimination\): 47 changes$/m);
    assert.match(plain, /^ {2}system prompt: 7 → 23 lines \(\+23 −7 lines\)$/m);
    assert.match(plain, /^ {4}\+ research_citations \(0 chars, limit 5000\)$/m);
    assert.match(plain, /^ {4}− send_message$/m);
    assert.match(plain, /^ {4}− rule max analyze_and_search_tool ×3 per step$/m);
    assert.match(plain, /^ {8}− evaluate_progress -\[True\]-> prepare_final_report$/m);
    assert.match(plain, /^ {2}embedding config: RE-EMBEDDING REQUIRED/m);
    assert.match(plain, /^ {4}~ model: "claude-3-7-sonnet-20250219" → "claude-sonnet-4-5-20250929"$/m);
    assert.match(plain, /^ {4}! first divergence: A#0 system "You are Letta/m);
    assert.match(plain, /^ {4}− TAVILY_API_KEY$/m);
    assert.match(plain, /^47 changes: agent settings 6, system prompt 1, memory blocks 6, tools 9, workflows 6, LLM config 9, embedding config 4, messages 4, environment variables 2$/m);
    const coloured = renderText(r, { color: true });
    assert.match(coloured, ANSI);
    assert.equal(coloured.replace(new RegExp(ANSI.source, 'g'), ''), plain);
  });

  it('markdown: a summary table and a diff block per changed text', async () => {
    const r = await diffPaths(fixture('customer-service.v1'), fixture('customer-service.v2-early'));
    const md = renderMarkdown(r);
    assert.match(md, /^## Agent diff$/m);
    assert.match(md, /^\| customer_service \| changed \| 4 \| 1 \| 2 \| 12 \| 4 \| 6 \| 4 \| 4 \| {2}\| {2}\|$/m);
    assert.match(md, /^#### System prompt$/m);
    assert.match(md, /^```diff\n@@ -1,58 \+1,23 @@\n-You are Letta/m);
    assert.match(md, /^> \*\*⚠ RE-EMBEDDING REQUIRED/m);
    assert.match(md, /^- ➖ rule terminal send_message$/m);
    const same = renderMarkdown(await diffPaths(fixture('memgpt-agent.v1'), fixture('memgpt-agent.v1')));
    assert.match(same, /\*\*No differences\.\*\*/);
  });

  it('json: validates against schemas/diff.schema.json', async () => {
    const validate = getValidator('diff');
    for (const [a, b] of [
      ['customer-service.v1', 'customer-service.v2-double-encoded'],
      ['outreach-workflow-agent.v1', 'outreach-workflow-agent.v2-early'],
      ['lettabot-builder.v2', 'lettabot.v2'],
      ['memgpt-agent.v1', 'memgpt-agent.v1'],
    ]) {
      const json = JSON.parse(renderJson(await diffPaths(fixture(a), fixture(b))));
      assert.ok(validate(json), `${a} vs ${b}: ${JSON.stringify(validate.errors?.slice(0, 3))}`);
    }
    // and the schema does reject what it should
    assert.equal(validate({ format: 'agent-vault-diff', format_version: 1 }), false);
  });

  it('two-agent files: a sleeptime group is reported once, under its manager; an agent only on one side is added/removed', async () => {
    const r = await diffPaths(fixture('lettabot-builder.v2'), fixture('lettabot.v2'));
    const by = Object.fromEntries(r.agents.map((d) => [d.key, d]));
    // lettabot-builder has a main agent and its sleeptime agent; lettabot has one agent
    assert.deepEqual(r.agents.map((d) => d.status).sort(), ['changed', 'removed']);
    assert.equal(r.summary.agents_removed, 1);
    const main = r.agents.find((d) => d.status === 'changed')!;
    // names differ and two agents are left on one side: the file-local ids pair agent-0 with agent-0
    assert.equal(main.matched_by, 'id');
    assert.deepEqual(
      main.workflows.groups.removed.map((g) => [g.manager_type, g.manager, g.members]),
      [['sleeptime', 'lettabot-builder', ['Nameless Agent-sleeptime']]],
    );
    assert.equal(by['Nameless Agent-sleeptime'].status, 'removed');
  });
});

describe('agent-vault diff (CLI)', () => {
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('--exit-code: 1 when the states differ, 0 when they do not; without it 0 either way', async () => {
    const a = fixture('customer-service.v2-early');
    const b = fixture('customer-service.v2-double-encoded');
    const differ = runCli(['diff', a, b, '--exit-code']);
    assert.equal(differ.code, 1, differ.stderr);
    assert.match(differ.stdout, /^2 changes: tools 1, messages 1$/m);
    assert.doesNotMatch(differ.stdout, ANSI, 'no colour when stdout is not a terminal');
    const same = runCli(['diff', a, a, '--exit-code']);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /^no differences$/m);
    assert.equal(runCli(['diff', a, b]).code, 0);
  });

  it('--format json and md, --agent', async () => {
    const doc = await fixtureV2('lettabot-builder.v2');
    const edited = structuredClone(doc);
    edited.agents[1].llm_config!.temperature = 0.2;
    const a = tmp.writeAf(doc);
    const b = tmp.writeAf(edited);
    const json = runCli(['diff', a, b, '--format', 'json', '--agent', 'Nameless Agent-sleeptime']);
    assert.equal(json.code, 0, json.stderr);
    const r = JSON.parse(json.stdout) as DiffReport;
    assert.ok(getValidator('diff')(r));
    assert.deepEqual(
      r.agents.map((d) => d.key),
      ['Nameless Agent-sleeptime'],
    );
    assert.deepEqual(r.agents[0].llm_config.changes, [{ field: 'temperature', a: 1, b: 0.2 }]);
    const md = runCli(['diff', a, b, '--format', 'md']);
    assert.match(md.stdout, /^\| Nameless Agent-sleeptime \| changed \|/m);
    assert.match(md.stdout, /^\| lettabot-builder \| unchanged \|/m);
  });

  it('errors name what and where, without a stack trace', () => {
    const missing = runCli(['diff', fixture('memgpt-agent.v1'), '/nonexistent/x.af']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /agent-vault: cannot open \/nonexistent\/x\.af: no such file/);
    assert.doesNotMatch(missing.stderr, STACK_TRACE);
    const noAgent = runCli(['diff', fixture('memgpt-agent.v1'), fixture('memgpt-agent.v1'), '--agent', 'nobody']);
    assert.equal(noAgent.code, 2);
    assert.match(noAgent.stderr, /no agent with id or name "nobody"/);
    const badFormat = runCli(['diff', fixture('memgpt-agent.v1'), fixture('memgpt-agent.v1'), '--format', 'xml']);
    assert.equal(badFormat.code, 2);
    assert.match(badFormat.stderr, /Allowed choices are text, md, json/);
  });
});
