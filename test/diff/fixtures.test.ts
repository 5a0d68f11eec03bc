/**
 * The diff on real pairs of agent files: the same agent exported by different Letta versions.
 * The expected findings were read off the files themselves (see the comments).
 */
import { strict as assert } from 'node:assert';
import { diffPaths, type AgentDiff, type DiffReport } from '../../src/diff';
import { getValidator } from '../../src/format/schemas';
import { fixture } from './helpers';

function only(r: DiffReport): AgentDiff {
  assert.equal(r.agents.length, 1, 'one agent pair');
  return r.agents[0];
}
const names = (l: Array<{ name: string }>): string[] => l.map((x) => x.name);
const labels = (l: Array<{ label: string }>): string[] => l.map((x) => x.label);
const fields = (l: Array<{ field: string }>): string[] => l.map((x) => x.field);
const field = (l: Array<{ field: string; a: unknown; b: unknown }>, f: string): { a: unknown; b: unknown } => {
  const c = l.find((x) => x.field === f);
  assert.ok(c, `a change of ${f}`);
  return { a: c.a, b: c.b };
};

/** v1 (Letta 0.6.47, memgpt_agent) → v2 (letta_v1_agent): what Letta's re-export changed. */
const V1_TO_V2_LLM_DEFAULTS = ['frequency_penalty', 'max_tokens', 'parallel_tool_calls', 'provider_category', 'provider_name', 'put_inner_thoughts_in_kwargs'];
const V1_BASE_TOOLS_REMOVED = ['archival_memory_insert', 'archival_memory_search', 'core_memory_append', 'core_memory_replace', 'send_message'];
const V1_BASE_RULES_REMOVED = ['continue_loop archival_memory_insert', 'continue_loop archival_memory_search', 'continue_loop conversation_search', 'exit_loop send_message'];

function validJson(r: DiffReport): void {
  const validate = getValidator('diff');
  const ok = validate(JSON.parse(JSON.stringify(r)));
  assert.ok(ok, JSON.stringify(validate.errors?.slice(0, 5)));
}

function assertV1ToV2Embedding(d: AgentDiff): void {
  // text-embedding-ada-002/1536 → text-embedding-3-small/2000: old vectors are wrong now
  assert.deepEqual(fields(d.embedding_config.changes), ['batch_size', 'embedding_dim', 'embedding_model', 'handle']);
  assert.deepEqual(field(d.embedding_config.changes, 'embedding_model'), { a: 'text-embedding-ada-002', b: 'text-embedding-3-small' });
  assert.deepEqual(field(d.embedding_config.changes, 'embedding_dim'), { a: 1536, b: 2000 });
  assert.equal(d.embedding_config.reembedding_required, true);
}

function assertStandardBlocksGrew(d: AgentDiff): void {
  // human/persona: same text, limit 5000 → 20000, a description added; read_only null → false is no change
  assert.deepEqual(labels(d.memory_blocks.changed), ['human', 'persona']);
  for (const b of d.memory_blocks.changed) {
    assert.equal(b.value, null, `${b.label} value unchanged`);
    assert.deepEqual(fields(b.fields), ['limit', 'description']);
    assert.deepEqual(field(b.fields, 'limit'), { a: 5000, b: 20000 });
    assert.match(String(field(b.fields, 'description').b), new RegExp(`^The ${b.label} block: `));
  }
  assert.deepEqual(d.memory_blocks.added, []);
  assert.deepEqual(d.memory_blocks.removed, []);
}

describe('diff of real agent-file pairs', () => {
  it('customer-service v1 → v2-early: the v1 base tools and rules went, memory tools came, embedding model changed', async () => {
    const r = await diffPaths(fixture('customer-service.v1'), fixture('customer-service.v2-early'));
    validJson(r);
    const d = only(r);
    assert.equal(d.status, 'changed');
    assert.equal(d.matched_by, 'name');
    assert.deepEqual(fields(d.agent.changes), ['agent_type', 'timezone', 'max_files_open', 'per_file_view_window_char_limit']);
    assert.deepEqual(field(d.agent.changes, 'agent_type'), { a: 'memgpt_agent', b: 'letta_v1_agent' });
    // MemGPT prompt (58 lines) replaced by the <base_instructions> prompt (23 lines)
    assert.equal(d.system_prompt?.a_lines, 58);
    assert.equal(d.system_prompt?.b_lines, 23);
    assert.equal(d.system_prompt?.removed_lines, 58);
    assert.equal(d.system_prompt?.added_lines, 23);
    assert.ok(d.system_prompt?.hunks[0].lines.includes('+<base_instructions>'));
    assertStandardBlocksGrew(d);
    assert.deepEqual(names(d.tools.added), ['memory_insert', 'memory_replace']);
    assert.deepEqual(names(d.tools.removed), V1_BASE_TOOLS_REMOVED);
    assert.deepEqual(names(d.tools.changed), ['cancel_order', 'check_order_status', 'conversation_search', 'escalate', 'terminate_chat']);
    const cancel = d.tools.changed.find((t) => t.name === 'cancel_order')!;
    // the request_heartbeat parameter was dropped from every custom tool's schema
    assert.deepEqual(
      cancel.json_schema.map((c) => `${c.kind} ${c.path}`),
      ['removed /parameters/properties/request_heartbeat', 'changed /parameters/required'],
    );
    assert.deepEqual(cancel.json_schema[1].b, ['order_number', 'reason']);
    assert.equal(cancel.source_code, null);
    const search = d.tools.changed.find((t) => t.name === 'conversation_search')!;
    assert.deepEqual(fields(search.fields), ['description', 'return_char_limit', 'enable_parallel_execution']);
    assert.deepEqual(field(search.fields, 'return_char_limit'), { a: 1000000, b: 50000 });
    assert.deepEqual(
      d.workflows.rules.removed.map((x) => x.key),
      ['continue_loop conversation_search', 'continue_loop archival_memory_search', 'continue_loop archival_memory_insert', 'exit_loop send_message'],
    );
    assert.deepEqual(d.workflows.rules.added, []);
    assert.deepEqual(d.workflows.graph.a.terminal, ['send_message']);
    assert.deepEqual(d.workflows.graph.b.terminal, []);
    assert.deepEqual(fields(d.llm_config.changes), V1_TO_V2_LLM_DEFAULTS);
    assert.deepEqual(field(d.llm_config.changes, 'put_inner_thoughts_in_kwargs'), { a: true, b: false });
    assertV1ToV2Embedding(d);
    // 4 messages → 1: the system message rewritten, the boot-up exchange gone
    assert.equal(d.messages.a_count, 4);
    assert.equal(d.messages.b_count, 1);
    assert.equal(d.messages.edited, 1);
    assert.equal(d.messages.removed, 3);
    assert.equal(d.messages.appended, 0);
    assert.equal(d.messages.matched_by, 'position'); // file-local ids (message-N) are no identity: an export renumbers them (issue 12)
    assert.equal(d.messages.first_divergence?.a?.position, 0);
    assert.equal(d.messages.first_divergence?.a?.role, 'system');
    assert.match(d.messages.first_divergence!.a!.preview, /^You are Letta/);
    assert.match(d.messages.first_divergence!.b!.preview, /^<base_instructions>/);
    assert.deepEqual(d.messages.in_context, { a_count: 4, b_count: 1, changed: true });
    assert.deepEqual(d.environment, { added: [], removed: [] });
    assert.equal(d.passages.compared, false);
    assert.deepEqual(d.counts, {
      agent: 4,
      system_prompt: 1,
      memory_blocks: 2,
      tools: 12,
      workflows: 4,
      llm_config: 6,
      embedding_config: 4,
      messages: 4,
      passages: 0,
      environment: 0,
    });
  });

  it('customer-service v2-early → v2-double-encoded: only the escalate tool description and the system message differ', async () => {
    const r = await diffPaths(fixture('customer-service.v2-early'), fixture('customer-service.v2-double-encoded'));
    validJson(r);
    const d = only(r);
    // the double-encoded export names its agent agent-1 (not agent-0): paired by name
    assert.deepEqual([d.a?.id, d.b?.id, d.matched_by], ['agent-0', 'agent-1', 'name']);
    // blocks have other file-local ids (block-2/3 vs block-0/1) but the same labels and values
    assert.deepEqual(d.memory_blocks, { added: [], removed: [], changed: [] });
    assert.equal(d.system_prompt, null);
    assert.deepEqual(names(d.tools.changed), ['escalate']);
    const esc = d.tools.changed[0];
    // pip_requirements [] vs null is no change; the description (not the schema) was reworded
    assert.deepEqual(esc.requirements, []);
    assert.deepEqual(esc.json_schema, []);
    assert.deepEqual(fields(esc.fields), ['description']);
    assert.deepEqual(d.llm_config.changes, []);
    assert.deepEqual(d.embedding_config, { changes: [], reembedding_required: false });
    // message-0 vs message-1: id spaces share nothing, so paired by position; the system message
    // was recompiled (memory metadata) between the two exports
    assert.equal(d.messages.matched_by, 'position');
    assert.deepEqual([d.messages.edited, d.messages.removed, d.messages.appended], [1, 0, 0]);
    assert.deepEqual(d.messages.in_context, { a_count: 1, b_count: 1, changed: false });
    assert.deepEqual(d.workflows.rules, { added: [], removed: [], changed: [] });
    assert.equal(r.summary.total_changes, 2);
  });

  it('memgpt-agent v1 → v2-double-encoded: model gpt-4-0613 → gpt-4o-mini, context window 8192 → 32000', async () => {
    const r = await diffPaths(fixture('memgpt-agent.v1'), fixture('memgpt-agent.v2-double-encoded'));
    validJson(r);
    const d = only(r);
    assert.deepEqual(field(d.llm_config.changes, 'model'), { a: 'gpt-4-0613', b: 'gpt-4o-mini' });
    assert.deepEqual(field(d.llm_config.changes, 'context_window'), { a: 8192, b: 32000 });
    assert.deepEqual(field(d.llm_config.changes, 'handle'), { a: 'openai/gpt-4-june', b: 'openai/gpt-4o-mini' });
    assert.deepEqual(fields(d.llm_config.changes).sort(), [...V1_TO_V2_LLM_DEFAULTS, 'context_window', 'handle', 'model'].sort());
    assertV1ToV2Embedding(d);
    assertStandardBlocksGrew(d);
    assert.deepEqual(names(d.tools.added), ['memory_insert', 'memory_replace']);
    assert.deepEqual(names(d.tools.removed), V1_BASE_TOOLS_REMOVED);
    assert.deepEqual(names(d.tools.changed), ['conversation_search']);
    assert.deepEqual(d.workflows.rules.removed.map((x) => x.key).sort(), V1_BASE_RULES_REMOVED);
    assert.equal(d.system_prompt?.a_lines, 58);
    assert.deepEqual([d.messages.a_count, d.messages.b_count, d.messages.edited, d.messages.removed], [4, 1, 1, 3]);
    assert.deepEqual(
      d.messages.samples.removed.map((s) => s.a?.role),
      ['assistant', 'tool', 'user'],
    );
  });

  it('deep-research-agent v1 → v2: renamed, research workflow graph removed, API keys dropped', async () => {
    const r = await diffPaths(fixture('deep-research-agent.v1'), fixture('deep-research-agent.v2'));
    validJson(r);
    const d = only(r);
    // the names differ, so the single agent on each side is paired by elimination
    assert.equal(d.matched_by, 'remaining');
    assert.deepEqual(field(d.agent.changes, 'name'), { a: 'deep_research_agent', b: 'deep-thought-research-agent' });
    assert.deepEqual([d.system_prompt?.a_lines, d.system_prompt?.b_lines], [7, 23]);
    assert.deepEqual(labels(d.memory_blocks.added), ['human', 'persona', 'research_citations']);
    assert.deepEqual(labels(d.memory_blocks.removed), ['report_outline', 'research']);
    assert.deepEqual(labels(d.memory_blocks.changed), ['research_plan']);
    assert.equal(d.memory_blocks.added.find((b) => b.label === 'persona')?.read_only, true);
    assert.deepEqual(names(d.tools.added), ['conversation_search', 'memory', 'reset_research', 'web_search']);
    assert.deepEqual(names(d.tools.removed), ['analyze_and_search_tool', 'evaluate_progress', 'prepare_final_report', 'send_message']);
    const plan = d.tools.changed.find((t) => t.name === 'create_research_plan')!;
    assert.deepEqual(names(d.tools.changed), ['create_research_plan']);
    assert.ok(
      plan.source_code && plan.source_code.removed_lines === 18 && plan.source_code.added_lines === 4,
      JSON.stringify(plan.source_code && [plan.source_code.added_lines, plan.source_code.removed_lines]),
    );
    assert.ok(plan.source_code.hunks.some((h) => h.lines.includes('+        research_plan_str += f"- [ ] Step {i+1} - {step}\\n"')));
    // v1's rule graph: plan -> search -> evaluate -(True)-> report -> send_message, search at most 3×
    // per step; v2 has no rules at all. send_message's exit rule was listed twice in v1: one rule.
    assert.deepEqual(d.workflows.graph.a, {
      init: [],
      terminal: ['send_message'],
      edges: [
        'analyze_and_search_tool -> evaluate_progress',
        'create_research_plan -> analyze_and_search_tool',
        'evaluate_progress -[True]-> prepare_final_report',
        'evaluate_progress -[default]-> analyze_and_search_tool',
        'prepare_final_report -> send_message',
      ],
      max_count: { analyze_and_search_tool: 3 },
      other: [],
    });
    assert.equal(d.workflows.rules.removed.length, 6);
    assert.deepEqual(d.workflows.edges_removed, d.workflows.graph.a.edges);
    assert.deepEqual(d.workflows.edges_added, []);
    assert.deepEqual(field(d.llm_config.changes, 'model'), { a: 'claude-3-7-sonnet-20250219', b: 'claude-sonnet-4-5-20250929' });
    assert.deepEqual(field(d.llm_config.changes, 'context_window'), { a: 32000, b: 100000 });
    assert.deepEqual(field(d.llm_config.changes, 'enable_reasoner'), { a: false, b: true });
    assertV1ToV2Embedding(d);
    // tool_exec_environment_variables listed two (empty) API keys in v1; v2 has none
    assert.deepEqual(d.environment, { added: [], removed: ['FIRECRAWL_API_KEY', 'TAVILY_API_KEY'] });
    assert.equal(d.counts.environment, 2);
  });

  it('outreach-workflow-agent v1 → v2-early: the same workflow (only null fields added), tools re-sourced as JSON', async () => {
    const r = await diffPaths(fixture('outreach-workflow-agent.v1'), fixture('outreach-workflow-agent.v2-early'));
    validJson(r);
    const d = only(r);
    // v2-early adds prompt_template: null, args: null, child_arg_nodes: null to every rule: no change
    assert.equal(d.counts.workflows, 0);
    assert.deepEqual(d.workflows.graph.a, d.workflows.graph.b);
    assert.deepEqual(d.workflows.graph.b, {
      init: ['retrieve_candidate'],
      terminal: ['reject', 'send_email'],
      edges: ['evaluate_candidate -[False]-> reject', 'evaluate_candidate -[True]-> send_email', 'evaluate_candidate -[default]-> reject', 'retrieve_candidate -> evaluate_candidate'],
      max_count: {},
      other: [],
    });
    assert.equal(d.system_prompt, null, 'both have an empty system prompt');
    assert.deepEqual(d.memory_blocks, { added: [], removed: [], changed: [] });
    assert.deepEqual(names(d.tools.changed), ['evaluate_candidate', 'reject', 'retrieve_candidate', 'send_email']);
    for (const t of ['evaluate_candidate', 'reject', 'retrieve_candidate']) {
      const c = d.tools.changed.find((x) => x.name === t)!;
      assert.deepEqual(field(c.fields, 'source_type'), { a: 'python', b: 'json' });
      assert.deepEqual(field(c.fields, 'return_char_limit'), { a: 6000, b: 50000 });
    }
    assert.deepEqual(fields(d.llm_config.changes), V1_TO_V2_LLM_DEFAULTS);
    assertV1ToV2Embedding(d);
    assert.deepEqual([d.messages.a_count, d.messages.b_count, d.messages.edited, d.messages.removed, d.messages.appended], [10, 1, 1, 9, 0]);
    assert.deepEqual(d.tools.added, []);
    assert.deepEqual(d.tools.removed, []);
  });

  it('reverse direction swaps added and removed', async () => {
    const fwd = only(await diffPaths(fixture('deep-research-agent.v1'), fixture('deep-research-agent.v2')));
    const back = only(await diffPaths(fixture('deep-research-agent.v2'), fixture('deep-research-agent.v1')));
    assert.deepEqual(names(back.tools.added), names(fwd.tools.removed));
    assert.deepEqual(labels(back.memory_blocks.removed), labels(fwd.memory_blocks.added));
    assert.deepEqual(back.environment, { added: fwd.environment.removed, removed: [] });
    assert.deepEqual(back.workflows.edges_added, fwd.workflows.edges_removed);
    assert.deepEqual(back.counts, fwd.counts);
  });
});
