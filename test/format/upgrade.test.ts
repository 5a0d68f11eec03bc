/**
 * upgradeV1ToV2 on the 10 v1 fixtures: the result is valid v2 (project schema and Letta's
 * published schema), keeps every block, tool, message and the in-context order, and the
 * function is pure.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020';
import type { ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { AgentVaultError } from '../../src/core/errors';
import { getValidator } from '../../src/format/schemas';
import type { AgentFileV1, AgentFileV2 } from '../../src/format/types';
import { upgradeV1ToV2, v1TimestampToUtc, v1VersionFromRevision, V1_REVISION_PREFIX } from '../../src/format/upgrade';
import { fixtures, REFERENCE_SCHEMA } from '../helpers/paths';

type Doc = any;

/** Letta's published v2 schema, with its OpenAPI `discriminator`s removed (see schema-agreement.test.ts). */
function compileReference(): ValidateFunction {
  const text = readFileSync(REFERENCE_SCHEMA, 'utf8');
  const schema = JSON.parse(text, (k, v) => (v && typeof v === 'object' && !Array.isArray(v) && 'discriminator' in v ? (({ discriminator: _d, ...rest }) => rest)(v) : v));
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv.compile(schema);
}

const errs = (v: ValidateFunction) => JSON.stringify((v.errors ?? []).slice(0, 5).map((e) => `${e.instancePath} ${e.message}`));
const textOf = (content: Doc): string => (typeof content === 'string' ? content : content.map((c: Doc) => c.text ?? '').join(''));

describe('format/upgrade: upgradeV1ToV2', function () {
  const v1Fixtures = fixtures().filter((f) => f.format === 'v1');
  let reference: ValidateFunction;
  let v2: ValidateFunction;

  before(function () {
    reference = compileReference();
    v2 = getValidator('agent-file.v2');
  });

  it('there are 10 v1 fixtures', function () {
    assert.equal(v1Fixtures.length, 10);
  });

  for (const f of v1Fixtures) {
    describe(f.file, function () {
      let input: Doc;
      let out: AgentFileV2;
      let agent: Doc;

      before(function () {
        input = JSON.parse(readFileSync(f.path, 'utf8'));
        out = upgradeV1ToV2(input as AgentFileV1);
        agent = out.agents[0];
      });

      it('passes the project v2 schema and the reference schema', function () {
        assert.equal(v2(out), true, `project: ${errs(v2)}`);
        assert.equal(reference(out), true, `reference: ${errs(reference)}`);
      });

      it('has one agent "agent-0" with the v1 identity and settings', function () {
        assert.equal(out.agents.length, 1);
        assert.equal(agent.id, 'agent-0');
        assert.equal(agent.name, input.name);
        assert.equal(agent.agent_type, input.agent_type);
        assert.equal(agent.system, input.system);
        assert.equal(agent.description, input.description);
        assert.equal(agent.message_buffer_autoclear, input.message_buffer_autoclear);
        assert.deepEqual(agent.llm_config, input.llm_config);
        assert.deepEqual(agent.embedding_config, input.embedding_config);
        assert.deepEqual(agent.tool_rules, input.tool_rules);
        assert.deepEqual(
          agent.tags,
          input.tags.map((t: Doc) => t.tag),
        );
        assert.equal(agent.include_base_tools, false);
        assert.deepEqual([out.groups, out.files, out.sources, out.mcp_servers], [[], [], [], []]);
        assert.equal(out.metadata?.revision_id, `v1:${input.version}`);
        assert.equal(out.metadata?.revision_id, `${V1_REVISION_PREFIX}${f.facts.version}`);
        assert.equal(v1VersionFromRevision(out.metadata?.revision_id), input.version);
      });

      it('keeps every memory block (label, value, limit) in order, attached by block_ids', function () {
        assert.equal(out.blocks.length, input.core_memory.length);
        assert.equal(String(out.blocks.length), f.facts.core_memory);
        input.core_memory.forEach((b: Doc, i: number) => {
          const ob = out.blocks[i];
          assert.equal(ob.id, `block-${i}`);
          assert.equal(ob.label, b.label);
          assert.equal(ob.value, b.value);
          assert.equal(ob.limit, b.limit);
          assert.equal(ob.description, b.description);
        });
        assert.deepEqual(
          agent.block_ids,
          out.blocks.map((b) => b.id),
        );
      });

      it('keeps every tool (name, source_code, json_schema) in order, attached by tool_ids', function () {
        assert.equal(out.tools.length, input.tools.length);
        assert.equal(String(out.tools.length), f.facts.tools);
        input.tools.forEach((t: Doc, i: number) => {
          const ot = out.tools[i];
          assert.equal(ot.id, `tool-${i}`);
          assert.equal(ot.name, t.name);
          assert.equal(ot.source_code, t.source_code);
          assert.deepEqual(ot.json_schema, t.json_schema);
          assert.equal(ot.tool_type, t.tool_type);
          assert.equal(ot.created_at, undefined, 'v1 bookkeeping timestamps are not carried into v2 tools');
        });
        assert.deepEqual(
          agent.tool_ids,
          out.tools.map((t) => t.id),
        );
      });

      it('keeps every message in order with its role, text, tool calls and tool_call_id', function () {
        const msgs = agent.messages;
        assert.equal(msgs.length, input.messages.length);
        assert.equal(String(msgs.length), f.facts.messages);
        input.messages.forEach((m: Doc, i: number) => {
          const om = msgs[i];
          assert.equal(om.id, `message-${i}`);
          assert.equal(om.agent_id, 'agent-0');
          assert.equal(om.role, m.role);
          assert.equal(textOf(om.content), textOf(m.content));
          assert.deepEqual(om.tool_calls ?? [], m.tool_calls);
          assert.equal(om.tool_call_id, m.tool_call_id);
          assert.deepEqual(om.tool_returns, m.tool_returns);
          assert.equal(Date.parse(om.created_at), Date.parse(/[Zz]|[+-]\d\d:\d\d$/.test(m.created_at) ? m.created_at : m.created_at + 'Z'));
        });
      });

      it('keeps the in-context messages in the order of in_context_message_indices, system message first', function () {
        const ids: string[] = agent.in_context_message_ids;
        assert.deepEqual(
          ids,
          input.in_context_message_indices.map((ix: number) => `message-${ix}`),
        );
        const byId = new Map(agent.messages.map((m: Doc) => [m.id, m]));
        for (const id of ids) assert.ok(byId.has(id), `${id} is one of the agent's messages`);
        const first = byId.get(ids[0]) as Doc;
        assert.equal(first.role, 'system', 'Letta reads the system message as message_ids[0]');
        assert.equal(textOf(first.content), textOf(input.messages[input.in_context_message_indices[0]].content));
      });

      it('turns the environment variable list into a map of key → value (values as given)', function () {
        const expected = Object.fromEntries(input.tool_exec_environment_variables.map((e: Doc) => [e.key, e.value]));
        assert.deepEqual(agent.tool_exec_environment_variables, expected);
        assert.deepEqual(agent.secrets, Object.keys(expected).length ? expected : null);
      });

      it('is pure: the input is not changed and two calls give deep-equal results sharing nothing with the input', function () {
        const before = structuredClone(input);
        const a = upgradeV1ToV2(input);
        const b = upgradeV1ToV2(input);
        assert.deepStrictEqual(input, before);
        assert.deepStrictEqual(a, b);
        assert.deepStrictEqual(a, out);
        // Mutating the result must not reach the input.
        (a.agents[0].llm_config as Doc).model = 'changed';
        (a.tools[0].json_schema as Doc).name = 'changed';
        (a.agents[0].messages![0].content as Doc)[0].text = 'changed';
        if (a.agents[0].tool_rules!.length) (a.agents[0].tool_rules as Doc)[0].tool_name = 'changed';
        assert.deepStrictEqual(input, before);
      });
    });
  }

  describe('concrete values', function () {
    const load = (file: string): Doc => JSON.parse(readFileSync(fixtures().find((f) => f.file === file)!.path, 'utf8'));

    it('memgpt-agent-with-convo: unsorted indices [89, 81, 80, …] keep their order; message-89 is the system message', function () {
      const input = load('memgpt-agent-with-convo.v1.af');
      const agent = upgradeV1ToV2(input).agents[0] as Doc;
      assert.deepEqual(input.in_context_message_indices, [89, 81, 80, 82, 83, 84, 85, 86, 87, 88, 90]);
      assert.deepEqual(agent.in_context_message_ids, [
        'message-89',
        'message-81',
        'message-80',
        'message-82',
        'message-83',
        'message-84',
        'message-85',
        'message-86',
        'message-87',
        'message-88',
        'message-90',
      ]);
      assert.equal(agent.messages[89].id, 'message-89');
      assert.equal(agent.messages[89].role, 'system');
      assert.equal(agent.messages[0].role, 'system', 'the original system message is still in the history, out of context');
      assert.equal(agent.messages.length, 91);
    });

    it('memgpt-agent: blocks, tools, the first tool call and timestamps', function () {
      const out = upgradeV1ToV2(load('memgpt-agent.v1.af'));
      assert.deepEqual(
        out.blocks.map((b) => [b.id, b.label, b.limit]),
        [
          ['block-0', 'persona', 5000],
          ['block-1', 'human', 5000],
        ],
      );
      assert.ok(out.blocks[1].value.startsWith('\nThis is what I know so far about the user'));
      assert.deepEqual(out.blocks[0].metadata, {});
      assert.equal(out.tools[0].name, 'archival_memory_search');
      assert.equal(out.tools[0].tool_type, 'letta_core');
      assert.deepEqual(out.tools[0].metadata_, {});
      const [sys, asst, tool] = out.agents[0].messages as Doc[];
      assert.equal(sys.created_at, '2025-04-01T03:47:27.492924Z');
      assert.equal(sys.tool_calls, null);
      assert.equal(asst.tool_calls[0].id, '787790f6-32cb-492a-a581-8de0aefe0c55');
      assert.equal(asst.tool_calls[0].function.name, 'send_message');
      assert.equal(tool.role, 'tool');
      assert.equal(tool.tool_call_id, '787790f6-32cb-492a-a581-8de0aefe0c55');
      assert.deepEqual(out.agents[0].in_context_message_ids, ['message-0', 'message-1', 'message-2', 'message-3']);
      assert.equal(out.created_at, null);
      assert.deepEqual(out.metadata, { revision_id: 'v1:0.6.47' });
    });

    it('deep-research-agent: environment variables, conditional rules, offset timestamps kept', function () {
      const input = load('deep-research-agent.v1.af');
      const agent = upgradeV1ToV2(input).agents[0] as Doc;
      assert.deepEqual(agent.tool_exec_environment_variables, { TAVILY_API_KEY: '', FIRECRAWL_API_KEY: '' });
      assert.deepEqual(agent.secrets, { TAVILY_API_KEY: '', FIRECRAWL_API_KEY: '' });
      const conditional = agent.tool_rules.find((r: Doc) => r.type === 'conditional');
      assert.deepEqual(conditional, {
        tool_name: 'evaluate_progress',
        type: 'conditional',
        default_child: 'analyze_and_search_tool',
        child_output_mapping: { True: 'prepare_final_report' },
        require_output_mapping: false,
      });
      assert.equal(agent.messages[0].created_at, input.messages[0].created_at);
      assert.match(agent.messages[0].created_at, /\+00:00$/);
    });

    it('outreach-workflow-agent: message_buffer_autoclear and a single in-context message', function () {
      const agent = upgradeV1ToV2(load('outreach-workflow-agent.v1.af')).agents[0] as Doc;
      assert.equal(agent.message_buffer_autoclear, true);
      assert.deepEqual(agent.in_context_message_ids, ['message-0']);
      assert.deepEqual(agent.messages[3].tool_returns, [{ status: 'success', stdout: [], stderr: [] }]);
    });

    it('tags [{tag}] become strings, variable values are kept as given, legacy rule names are renamed', function () {
      const base = load('memgpt-agent.v1.af');
      const input = {
        ...base,
        tags: [{ tag: 'support' }, { tag: 'prod' }],
        tool_exec_environment_variables: [
          { key: 'API_URL', value: 'http://127.0.0.1:8283', created_at: 'x', updated_at: 'x', description: null },
          { key: 'EMPTY', value: '' },
        ],
        tool_rules: [
          { tool_name: 'send_message', type: 'TerminalToolRule' },
          { tool_name: 'core_memory_append', type: 'InitToolRule' },
          { tool_name: 'core_memory_append', type: 'ToolRule', children: ['send_message'] },
        ],
      };
      const out = upgradeV1ToV2(input);
      const agent = out.agents[0] as Doc;
      assert.deepEqual(agent.tags, ['support', 'prod']);
      assert.deepEqual(agent.tool_exec_environment_variables, { API_URL: 'http://127.0.0.1:8283', EMPTY: '' });
      assert.deepEqual(
        agent.tool_rules.map((r: Doc) => r.type),
        ['exit_loop', 'run_first', 'constrain_child_tools'],
      );
      assert.equal(v2(out), true, errs(v2));
      assert.equal(input.tool_rules[0].type, 'TerminalToolRule', 'input untouched');
    });

    it('rejects an in-context index that points at no message, naming where', function () {
      const input = load('memgpt-agent.v1.af');
      input.in_context_message_indices = [0, 7];
      assert.throws(
        () => upgradeV1ToV2(input),
        (e: unknown) => e instanceof AgentVaultError && e.code === 'af-upgrade' && e.location?.pointer === '/in_context_message_indices/1' && /7/.test(e.message),
      );
    });

    it('rejects a v1 agent in a multi-agent group (no v2 equivalent for one agent)', function () {
      const input = { ...load('memgpt-agent.v1.af'), multi_agent_group: { id: 'group-x' } };
      assert.throws(
        () => upgradeV1ToV2(input),
        (e: unknown) => e instanceof AgentVaultError && e.location?.pointer === '/multi_agent_group',
      );
    });

    it('v1TimestampToUtc marks naive timestamps as UTC and leaves others alone', function () {
      assert.equal(v1TimestampToUtc('2025-04-01T03:47:27.492924'), '2025-04-01T03:47:27.492924Z');
      assert.equal(v1TimestampToUtc('2025-04-01T03:47:27'), '2025-04-01T03:47:27Z');
      assert.equal(v1TimestampToUtc('2025-04-01 03:47'), '2025-04-01T03:47:00Z');
      assert.equal(v1TimestampToUtc('2025-05-07T05:25:00.120627+00:00'), '2025-05-07T05:25:00.120627+00:00');
      assert.equal(v1TimestampToUtc('yesterday'), 'yesterday');
    });
  });
});
