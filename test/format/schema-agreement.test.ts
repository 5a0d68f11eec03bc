/**
 * The project's agent-file schemas (schemas/agent-file.v{1,2}.schema.json) against Letta's
 * published schema for .af v2 (../shared/reference/agentfile-v2.letta-openapi.schema.json):
 * same accept/reject verdict on every fixture and on mutated fixtures, with the few deliberate
 * differences listed (and asserted) below.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020';
import type { ErrorObject, ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { getSchema, getValidator, schemaNameFromId } from '../../src/format/schemas';
import { fixtures, REFERENCE_SCHEMA, type FixtureInfo } from '../helpers/paths';

type Doc = any;

function readDoc(f: FixtureInfo): Doc {
  const first = JSON.parse(readFileSync(f.path, 'utf8'));
  return typeof first === 'string' ? JSON.parse(first) : first;
}

/**
 * Letta's schema compiled with ajv. It is an OpenAPI extract: its `discriminator` objects carry
 * `mapping`s into `#/components/schemas/…`, which ajv's discriminator keyword does not support
 * (and ajv also requires the tag to be a required property, which Letta's tags are not: they have
 * defaults). So the `discriminator` keywords are removed and each union is validated as the plain
 * `oneOf` it wraps; every branch pins its tag with a `const`, so a tagged value selects the same
 * branch as the mapping would. (This also sidesteps a slip in this copy of the mapping, which
 * sends "tool_return" content to ToolCallContent; Letta later fixed it.)
 */
function compileReference(): ValidateFunction {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) if (k !== 'discriminator') out[k] = strip(x);
      return out;
    }
    return v;
  };
  const schema = strip(JSON.parse(readFileSync(REFERENCE_SCHEMA, 'utf8'))) as object;
  assert.ok(!JSON.stringify(schema).includes('"discriminator"'));
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv.compile(schema);
}

const brief = (errs: readonly ErrorObject[] | null | undefined): string => JSON.stringify((errs ?? []).slice(0, 4).map((e) => `${e.instancePath || '/'} ${e.message}`));

describe("format/schemas: project schemas agree with Letta's published .af v2 schema", function () {
  let reference: ValidateFunction;
  let v2: ValidateFunction;
  let v1: ValidateFunction;
  const all = fixtures();
  const docs = new Map<string, Doc>();

  before(function () {
    reference = compileReference();
    v2 = getValidator('agent-file.v2');
    v1 = getValidator('agent-file.v1');
    for (const f of all) docs.set(f.file, readDoc(f));
  });

  const verdicts = (doc: Doc) => {
    const r = reference(doc) as boolean;
    const rErr = brief(reference.errors);
    const p = v2(doc) as boolean;
    const pErr = brief(v2.errors);
    return { r, p, why: `reference=${r} ${r ? '' : rErr}; project=${p} ${p ? '' : pErr}` };
  };

  it('reads the 24 fixtures: 10 v1, 12 v2, 2 double-encoded v2', function () {
    assert.equal(all.length, 24);
    assert.equal(all.filter((f) => f.format === 'v1').length, 10);
    assert.equal(all.filter((f) => f.format === 'v2').length, 12);
    assert.equal(all.filter((f) => f.format === 'v2-double-encoded').length, 2);
    for (const f of all.filter((x) => x.format === 'v2-double-encoded')) {
      assert.equal(typeof JSON.parse(readFileSync(f.path, 'utf8')), 'string', `${f.file} is a JSON string at the top`);
    }
  });

  it('getValidator compiles each schema once and caches it', function () {
    assert.equal(getValidator('agent-file.v2'), v2);
    assert.equal(getValidator('agent-file.v1'), v1);
    assert.equal(getSchema('agent-file.v2').$id, 'https://agent-vault.dev/schemas/agent-file.v2.schema.json');
    assert.throws(
      () => getValidator('no-such-schema'),
      (e: any) => e.code === 'schema-missing' && /no-such-schema/.test(e.message),
    );
    assert.throws(
      () => getValidator('../package'),
      (e: any) => e.code === 'schema-missing',
    );
    // Cross-file $refs are resolved by name from the target's $id.
    assert.equal(schemaNameFromId('https://agent-vault.dev/schemas/agent-file.v2.schema.json#/$defs/ToolRule'), 'agent-file.v2');
    assert.equal(schemaNameFromId('urn:agent-vault:schema:archive-manifest'), 'archive-manifest');
  });

  it('the project schemas compile under ajv strict mode (no unknown keywords, no loose types)', function () {
    for (const name of ['agent-file.v1', 'agent-file.v2']) {
      const ajv = new Ajv2020({ strict: true, discriminator: true, allErrors: true });
      addFormats(ajv);
      assert.doesNotThrow(() => ajv.compile(getSchema(name)), name);
    }
  });

  describe('fixtures', function () {
    for (const f of fixtures()) {
      if (f.format === 'v1') {
        it(`${f.file}: v1, rejected by the reference and by the project v2 schema, accepted by the v1 schema`, function () {
          const doc = docs.get(f.file);
          const { r, p, why } = verdicts(doc);
          assert.equal(r, false, why);
          assert.equal(p, false, why);
          assert.equal(v1(doc), true, `v1 schema: ${brief(v1.errors)}`);
        });
      } else {
        it(`${f.file}: ${f.format}, accepted by the reference and by the project v2 schema, rejected by the v1 schema`, function () {
          const doc = docs.get(f.file);
          const { r, p, why } = verdicts(doc);
          assert.equal(r, true, why);
          assert.equal(p, true, why);
          assert.equal(v1(doc), false, 'a v2 document must not pass the v1 schema');
        });
      }
    }
  });

  it('the v1 schema rejects garbage and near-misses', function () {
    const memgpt = docs.get('memgpt-agent.v1.af');
    const cases: [string, Doc][] = [
      ['null', null],
      ['a string', 'agent'],
      ['an array', [memgpt]],
      ['an empty object', {}],
      ['no core_memory', { ...memgpt, core_memory: undefined }],
      ['in_context_message_indices with a string', { ...memgpt, in_context_message_indices: ['0'] }],
      ['negative in-context index', { ...memgpt, in_context_message_indices: [-1] }],
      ['tags as strings', { ...memgpt, tags: ['a'] }],
      ['environment variables as a map', { ...memgpt, tool_exec_environment_variables: { K: 'v' } }],
      ['message role robot', { ...memgpt, messages: [{ ...memgpt.messages[0], role: 'robot' }] }],
      ['tool rule with an unknown type', { ...memgpt, tool_rules: [{ tool_name: 'x', type: 'run_last' }] }],
      ['tool without a name', { ...memgpt, tools: [{ ...memgpt.tools[0], name: undefined }] }],
    ];
    for (const [name, doc] of cases) {
      const clean = JSON.parse(JSON.stringify(doc ?? null));
      assert.equal(v1(clean), false, `v1 schema should reject: ${name}`);
    }
    assert.equal(v1(JSON.parse(JSON.stringify({ ...memgpt, tags: [{ tag: 'a' }], tool_exec_environment_variables: [{ key: 'K', value: 'v' }] }))), true);
  });

  // -------------------------------------------------------------------------------------------
  // Mutations: each applies one change to a parsed fixture. `valid` is the verdict both schemas
  // must give (asserted against each, so a mutation that changes nothing cannot pass unnoticed).

  interface Mutation {
    name: string;
    fixture: string;
    /** Changes the document in place, or returns a replacement root. */
    mutate: (d: Doc) => unknown;
    valid: boolean;
  }

  const BASIC = 'letta-test-basic-blocks-tools-messages.v2.af';
  const TEST_AGENT = 'letta-test-agent.v2.af';
  const BUILDER = 'lettabot-builder.v2.af';
  const VOID = 'void.v2.af';
  const OUTREACH = 'outreach-workflow-agent.v2-early.af';
  const LETTABOT = 'lettabot.v2.af';
  const CO3 = 'co-3.v2.af';

  const agent = (d: Doc) => d.agents[0];
  const findMessage = (d: Doc, pred: (m: Doc) => boolean): Doc => {
    for (const a of d.agents) for (const m of a.messages) if (pred(m)) return m;
    throw new Error('mutation target not found: message');
  };
  const findRule = (d: Doc, type: string): Doc => {
    for (const a of d.agents) for (const r of a.tool_rules ?? []) if (r.type === type) return r;
    throw new Error(`mutation target not found: ${type} rule`);
  };
  const firstPart = (d: Doc, type: string): Doc => findMessage(d, (m) => Array.isArray(m.content) && m.content.some((c: Doc) => c.type === type)).content.find((c: Doc) => c.type === type);
  const addPart = (d: Doc, part: Doc) => findMessage(d, (m) => m.role === 'user').content.push(part);
  const addRule = (d: Doc, rule: Doc) => agent(d).tool_rules.push(rule);
  const withToolReturn = (d: Doc) => findMessage(d, (m) => Array.isArray(m.tool_returns) && m.tool_returns.length > 0).tool_returns[0];
  const withToolCall = (d: Doc) => findMessage(d, (m) => Array.isArray(m.tool_calls) && m.tool_calls.length > 0).tool_calls[0];
  const approvalReturn = (d: Doc) => findMessage(d, (m) => Array.isArray(m.approvals) && m.approvals.some((a: Doc) => a.type === 'approval')).approvals.find((a: Doc) => a.type === 'approval');

  const mutations: Mutation[] = [
    // top level
    { name: 'top level without agents', fixture: BASIC, valid: false, mutate: (d) => void delete d.agents },
    { name: 'top level without groups', fixture: BASIC, valid: false, mutate: (d) => void delete d.groups },
    { name: 'top level without blocks', fixture: BASIC, valid: false, mutate: (d) => void delete d.blocks },
    { name: 'top level without files', fixture: BASIC, valid: false, mutate: (d) => void delete d.files },
    { name: 'top level without sources', fixture: BASIC, valid: false, mutate: (d) => void delete d.sources },
    { name: 'top level without tools', fixture: BASIC, valid: false, mutate: (d) => void delete d.tools },
    { name: 'top level without mcp_servers', fixture: BASIC, valid: false, mutate: (d) => void delete d.mcp_servers },
    { name: 'agents is an object, not an array', fixture: BASIC, valid: false, mutate: (d) => void (d.agents = d.agents[0]) },
    { name: 'agents is a string', fixture: BASIC, valid: false, mutate: (d) => void (d.agents = 'agent-0') },
    { name: 'skills left out (optional)', fixture: LETTABOT, valid: true, mutate: (d) => void delete d.skills },
    { name: 'metadata.revision_id is a number', fixture: BASIC, valid: false, mutate: (d) => void (d.metadata.revision_id = 66857381578) },
    { name: 'created_at is not a date-time', fixture: BASIC, valid: false, mutate: (d) => void (d.created_at = 'yesterday') },
    { name: 'created_at is null', fixture: BASIC, valid: true, mutate: (d) => void (d.created_at = null) },
    { name: 'the root is an array', fixture: BASIC, valid: false, mutate: (d) => [d] },
    { name: 'the root is null', fixture: BASIC, valid: false, mutate: () => null },
    // agent
    { name: 'agent without id', fixture: BASIC, valid: false, mutate: (d) => void delete agent(d).id },
    { name: 'agent id is a number', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).id = 0) },
    { name: 'unknown agent_type', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).agent_type = 'unknown_agent') },
    { name: 'agent_type is null', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).agent_type = null) },
    { name: 'agent tags is a string', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).tags = 'test') },
    { name: 'agent tags contains a number', fixture: BASIC, valid: false, mutate: (d) => void agent(d).tags.push(1) },
    { name: 'agent tool_rules is null', fixture: BASIC, valid: true, mutate: (d) => void (agent(d).tool_rules = null) },
    { name: 'in_context_message_ids contains a number', fixture: BASIC, valid: false, mutate: (d) => void agent(d).in_context_message_ids.push(4) },
    { name: 'a secret value is a number', fixture: CO3, valid: false, mutate: (d) => void (agent(d).secrets.DISCORD_USER_ID = 1234) },
    { name: 'tool_exec_environment_variables is null', fixture: CO3, valid: true, mutate: (d) => void (agent(d).tool_exec_environment_variables = null) },
    { name: 'message_buffer_autoclear is null', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).message_buffer_autoclear = null) },
    { name: 'memory_blocks entry without value', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).memory_blocks = [{ label: 'persona' }]) },
    { name: 'memory_blocks entry with label and value', fixture: BASIC, valid: true, mutate: (d) => void (agent(d).memory_blocks = [{ label: 'persona', value: 'I am' }]) },
    { name: 'initial_message_sequence with a tool message', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).initial_message_sequence = [{ role: 'tool', content: 'x' }]) },
    {
      name: 'initial_message_sequence with a user message',
      fixture: BASIC,
      valid: true,
      mutate: (d) => void (agent(d).initial_message_sequence = [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }]),
    },
    // tool rules
    { name: 'tool rule with an unknown type', fixture: VOID, valid: false, mutate: (d) => void (findRule(d, 'run_first').type = 'run_last') },
    { name: 'tool rule without tool_name', fixture: VOID, valid: false, mutate: (d) => void delete findRule(d, 'exit_loop').tool_name },
    { name: 'tool rule with an extra field', fixture: VOID, valid: false, mutate: (d) => void (findRule(d, 'continue_loop').priority = 1) },
    { name: 'tool rule without type', fixture: BASIC, valid: false, mutate: (d) => void addRule(d, { tool_name: 'send_message' }) },
    { name: 'constrain_child_tools rule without children', fixture: OUTREACH, valid: false, mutate: (d) => void delete findRule(d, 'constrain_child_tools').children },
    { name: 'conditional rule without child_output_mapping', fixture: OUTREACH, valid: false, mutate: (d) => void delete findRule(d, 'conditional').child_output_mapping },
    { name: 'conditional rule mapping to a number', fixture: OUTREACH, valid: false, mutate: (d) => void (findRule(d, 'conditional').child_output_mapping.True = 1) },
    {
      name: 'max_count_per_step rule with a string limit',
      fixture: BASIC,
      valid: false,
      mutate: (d) => void addRule(d, { type: 'max_count_per_step', tool_name: 'send_message', max_count_limit: '3' }),
    },
    { name: 'max_count_per_step rule', fixture: BASIC, valid: true, mutate: (d) => void addRule(d, { type: 'max_count_per_step', tool_name: 'send_message', max_count_limit: 3 }) },
    { name: 'parent_last_tool rule', fixture: BASIC, valid: true, mutate: (d) => void addRule(d, { type: 'parent_last_tool', tool_name: 'send_message', children: ['memory_insert'] }) },
    { name: 'required_before_exit rule', fixture: BASIC, valid: true, mutate: (d) => void addRule(d, { type: 'required_before_exit', tool_name: 'memory_insert', prompt_template: null }) },
    { name: 'requires_approval rule with children', fixture: TEST_AGENT, valid: false, mutate: (d) => void (findRule(d, 'requires_approval').children = ['x']) },
    // messages
    { name: 'message role "robot"', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).messages[1].role = 'robot') },
    { name: 'message without id', fixture: BASIC, valid: false, mutate: (d) => void delete agent(d).messages[2].id },
    { name: 'message without content', fixture: BASIC, valid: false, mutate: (d) => void delete agent(d).messages[3].content },
    { name: 'message content as plain text', fixture: BASIC, valid: true, mutate: (d) => void (agent(d).messages[3].content = 'hello') },
    { name: 'message content is a number', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).messages[3].content = 42) },
    { name: 'content part of type "video"', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).messages[0].content[0].type = 'video') },
    { name: 'text part without text', fixture: BASIC, valid: false, mutate: (d) => void delete agent(d).messages[0].content[0].text },
    { name: 'reasoning part without is_native', fixture: TEST_AGENT, valid: false, mutate: (d) => void delete firstPart(d, 'reasoning').is_native },
    { name: 'message created_at is not a date-time', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).messages[0].created_at = '10/10/2025') },
    { name: 'message created_at is null', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).messages[0].created_at = null) },
    { name: 'message type "note"', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).messages[0].type = 'note') },
    { name: 'tool call without function', fixture: BASIC, valid: false, mutate: (d) => void delete withToolCall(d).function },
    { name: 'tool call arguments as an object', fixture: BASIC, valid: false, mutate: (d) => void (withToolCall(d).function.arguments = { message: 'hi' }) },
    { name: 'tool return status "ok"', fixture: BASIC, valid: false, mutate: (d) => void (withToolReturn(d).status = 'ok') },
    { name: 'tool return func_response as content parts', fixture: BASIC, valid: true, mutate: (d) => void (withToolReturn(d).func_response = [{ type: 'text', text: 'OK' }]) },
    { name: 'approval with a string approve', fixture: TEST_AGENT, valid: false, mutate: (d) => void (approvalReturn(d).approve = 'yes') },
    { name: 'image part with a url source', fixture: BASIC, valid: true, mutate: (d) => void addPart(d, { type: 'image', source: { type: 'url', url: 'http://127.0.0.1/a.png' } }) },
    { name: 'image part with a base64 source without data', fixture: BASIC, valid: false, mutate: (d) => void addPart(d, { type: 'image', source: { type: 'base64', media_type: 'image/png' } }) },
    { name: 'tool_return part', fixture: BASIC, valid: true, mutate: (d) => void addPart(d, { type: 'tool_return', tool_call_id: 'call-1', content: 'done', is_error: false }) },
    { name: 'tool_call part without input', fixture: BASIC, valid: false, mutate: (d) => void addPart(d, { type: 'tool_call', id: 'call-1', name: 'send_message' }) },
    { name: 'redacted_reasoning part', fixture: BASIC, valid: true, mutate: (d) => void addPart(d, { type: 'redacted_reasoning', data: 'xxx' }) },
    // model configuration
    { name: 'llm_config without context_window', fixture: BASIC, valid: false, mutate: (d) => void delete agent(d).llm_config.context_window },
    { name: 'llm_config with an unknown model_endpoint_type', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).llm_config.model_endpoint_type = 'carrier_pigeon') },
    { name: 'llm_config is null', fixture: BASIC, valid: true, mutate: (d) => void (agent(d).llm_config = null) },
    { name: 'llm_config reasoning_effort "extreme"', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).llm_config.reasoning_effort = 'extreme') },
    { name: 'embedding_dim is a string', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).embedding_config.embedding_dim = '2000') },
    { name: 'embedding_config without embedding_model', fixture: BASIC, valid: false, mutate: (d) => void delete agent(d).embedding_config.embedding_model },
    {
      name: 'model_settings for openai',
      fixture: BASIC,
      valid: true,
      mutate: (d) => void (agent(d).model_settings = { provider_type: 'openai', reasoning: { reasoning_effort: 'low' }, max_output_tokens: 1024 }),
    },
    { name: 'model_settings with an unknown provider_type', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).model_settings = { provider_type: 'acme' }) },
    { name: 'model_settings without provider_type', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).model_settings = { temperature: 0.5 }) },
    { name: 'anthropic thinking type "maybe"', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).model_settings = { provider_type: 'anthropic', thinking: { type: 'maybe' } }) },
    { name: 'response_format json_schema without json_schema', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).response_format = { type: 'json_schema' }) },
    { name: 'response_format json_object', fixture: BASIC, valid: true, mutate: (d) => void (agent(d).response_format = { type: 'json_object' }) },
    { name: 'compaction_settings', fixture: BASIC, valid: true, mutate: (d) => void (agent(d).compaction_settings = { mode: 'sliding_window', model_settings: { provider_type: 'google_ai' } }) },
    { name: 'compaction_settings mode "forget"', fixture: BASIC, valid: false, mutate: (d) => void (agent(d).compaction_settings = { mode: 'forget' }) },
    // blocks and tools
    { name: 'block without label', fixture: BASIC, valid: false, mutate: (d) => void delete d.blocks[0].label },
    { name: 'block value is a number', fixture: BASIC, valid: false, mutate: (d) => void (d.blocks[0].value = 5) },
    { name: 'block limit 1.5', fixture: BASIC, valid: false, mutate: (d) => void (d.blocks[0].limit = 1.5) },
    { name: 'block without id', fixture: BASIC, valid: false, mutate: (d) => void delete d.blocks[1].id },
    { name: 'block with an extra field (blocks are open)', fixture: BASIC, valid: true, mutate: (d) => void (d.blocks[0].colour = 'blue') },
    { name: 'tool with an extra field (tools are closed)', fixture: BASIC, valid: false, mutate: (d) => void (d.tools[0].created_at = '2025-01-01T00:00:00Z') },
    { name: 'tool return_char_limit 0', fixture: BASIC, valid: false, mutate: (d) => void (d.tools[0].return_char_limit = 0) },
    { name: 'tool_type "martian"', fixture: BASIC, valid: false, mutate: (d) => void (d.tools[0].tool_type = 'martian') },
    { name: 'tool name null', fixture: BASIC, valid: true, mutate: (d) => void (d.tools[0].name = null) },
    { name: 'tool without id', fixture: BASIC, valid: false, mutate: (d) => void delete d.tools[0].id },
    { name: 'pip requirement with an empty name', fixture: BASIC, valid: false, mutate: (d) => void (d.tools[0].pip_requirements = [{ name: '' }]) },
    // groups
    { name: 'group manager_type "anarchy"', fixture: BUILDER, valid: false, mutate: (d) => void (d.groups[0].manager_config.manager_type = 'anarchy') },
    { name: 'group without description', fixture: BUILDER, valid: false, mutate: (d) => void delete d.groups[0].description },
    { name: 'sleeptime manager without manager_agent_id', fixture: BUILDER, valid: false, mutate: (d) => void delete d.groups[0].manager_config.manager_agent_id },
    { name: 'round_robin manager', fixture: BUILDER, valid: true, mutate: (d) => void (d.groups[0].manager_config = { manager_type: 'round_robin', max_turns: 3 }) },
    { name: 'supervisor manager', fixture: BUILDER, valid: true, mutate: (d) => void (d.groups[0].manager_config = { manager_type: 'supervisor', manager_agent_id: 'agent-0' }) },
    { name: 'group without manager_config', fixture: BUILDER, valid: true, mutate: (d) => void delete d.groups[0].manager_config },
    { name: 'group shared_block_ids is a string', fixture: BUILDER, valid: false, mutate: (d) => void (d.groups[0].shared_block_ids = 'block-0') },
    // files, sources
    { name: 'files_agents entry without file_name', fixture: VOID, valid: false, mutate: (d) => void delete agent(d).files_agents[0].file_name },
    { name: 'files_agents last_accessed_at not a date-time', fixture: VOID, valid: false, mutate: (d) => void (agent(d).files_agents[0].last_accessed_at = 'now') },
    { name: 'file with an extra field', fixture: VOID, valid: false, mutate: (d) => void (d.files[0].checksum = 'abc') },
    { name: 'file processing_status "done"', fixture: VOID, valid: false, mutate: (d) => void (d.files[0].processing_status = 'done') },
    { name: 'source without name', fixture: VOID, valid: false, mutate: (d) => void delete d.sources[0].name },
    // MCP servers, skills
    { name: 'MCP server', fixture: BASIC, valid: true, mutate: (d) => void d.mcp_servers.push({ id: 'mcp_server-0', server_type: 'sse', server_name: 'docs', server_url: 'http://127.0.0.1:9/sse' }) },
    { name: 'MCP server without server_name', fixture: BASIC, valid: false, mutate: (d) => void d.mcp_servers.push({ id: 'mcp_server-0', server_type: 'sse' }) },
    { name: 'skill without name', fixture: LETTABOT, valid: false, mutate: (d) => void delete d.skills[0].name },
    { name: 'skill file content is a number', fixture: LETTABOT, valid: false, mutate: (d) => void (d.skills.find((s: Doc) => s.files).files['SKILL.md'] = 1) },
  ];

  /**
   * Where the project is stricter on purpose. Letta parses these unions with Pydantic
   * discriminated unions (`Field(discriminator=...)`: ToolRule, ManagerConfigUnion,
   * LettaMessageContentUnion, ImageSourceUnion), which reject a value whose tag is missing. The
   * published schema lost that: as a plain `oneOf`, an untagged value that fits exactly one
   * branch passes (a branch without required fields, or the only branch allowing some field).
   * The project schema requires the tag, like Letta's import.
   */
  const exceptions: (Omit<Mutation, 'valid'> & { reference: boolean; project: boolean; reason: string })[] = [
    {
      name: 'manager_config {} (no manager_type)',
      fixture: BUILDER,
      mutate: (d) => void (d.groups[0].manager_config = {}),
      reference: true,
      project: false,
      reason: 'RoundRobinManager has no required field, so it is the one oneOf branch {} fits; Letta needs manager_type',
    },
    {
      name: 'tool rule with child_output_mapping but no type',
      fixture: BASIC,
      mutate: (d) => void addRule(d, { tool_name: 'send_message', child_output_mapping: { yes: 'memory_insert' } }),
      reference: true,
      project: false,
      reason: 'only ConditionalToolRule allows child_output_mapping, so the untagged rule fits one branch; Letta needs type',
    },
    {
      name: 'image source with a url but no type',
      fixture: BASIC,
      mutate: (d) => void addPart(d, { type: 'image', source: { url: 'http://127.0.0.1/a.png' } }),
      reference: true,
      project: false,
      reason: "only UrlImage fits {url}; Letta's ImageSourceUnion needs type",
    },
    {
      name: 'empty content part {}',
      fixture: BASIC,
      mutate: (d) => void addPart(d, {}),
      reference: true,
      project: false,
      reason: "OmittedReasoningContent has no required field, so {} fits it alone; Letta's content union needs type",
    },
  ];

  const apply = (m: { fixture: string; mutate: (d: Doc) => unknown }): Doc => {
    const doc = structuredClone(docs.get(m.fixture));
    assert.ok(doc !== undefined, `fixture ${m.fixture}`);
    const replaced = m.mutate(doc);
    return replaced === undefined ? doc : replaced;
  };

  it(`has at least 40 mutations, both verdicts represented (${mutations.length} mutations)`, function () {
    assert.ok(mutations.length >= 40);
    assert.ok(mutations.filter((m) => m.valid).length >= 10);
    assert.ok(mutations.filter((m) => !m.valid).length >= 40);
  });

  describe('mutated fixtures: same verdict', function () {
    for (const m of mutations) {
      it(`${m.valid ? 'accepts' : 'rejects'}: ${m.name} (${m.fixture})`, function () {
        const { r, p, why } = verdicts(apply(m));
        assert.equal(r, m.valid, `reference: ${why}`);
        assert.equal(p, m.valid, `project: ${why}`);
      });
    }
  });

  describe('mutated fixtures: documented differences (project stricter)', function () {
    for (const x of exceptions) {
      it(`${x.name}: reference ${x.reference ? 'accepts' : 'rejects'}, project ${x.project ? 'accepts' : 'rejects'} (${x.reason})`, function () {
        const { r, p, why } = verdicts(apply(x));
        assert.equal(r, x.reference, why);
        assert.equal(p, x.project, why);
      });
    }
  });

  it('errors name the expected thing by its title (e.g. ToolRule, ChildToolRule)', function () {
    const doc = apply({ fixture: OUTREACH, mutate: (d) => void (delete findRule(d, 'constrain_child_tools').children, (findRule(d, 'run_first').type = 'run_last')) });
    assert.equal(v2(doc), false);
    const errs = v2.errors ?? [];
    const titles = (e: ErrorObject) => (e.parentSchema as { title?: string } | undefined)?.title;
    const missing = errs.find((e) => e.keyword === 'required' && (e.params as { missingProperty?: string }).missingProperty === 'children');
    assert.ok(missing, brief(errs));
    assert.equal(titles(missing), 'ChildToolRule');
    const unknown = errs.find((e) => e.keyword === 'discriminator');
    assert.ok(unknown, brief(errs));
    assert.equal(titles(unknown), 'ToolRule');
    assert.match(unknown.instancePath, /^\/agents\/0\/tool_rules\/\d+$/);
  });
});
