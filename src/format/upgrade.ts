/**
 * Upgrade of a legacy v1 Agent File (one agent, Letta ≤ 0.10) to the v2 `AgentFileSchema` shape.
 *
 * `upgradeV1ToV2` is a pure function: no I/O, no clock, no randomness, and it never mutates its
 * input (every nested value in the result is a fresh copy). The same input always gives a
 * deep-equal output. Ids are file-local and positional, like Letta's own v2 exports:
 *
 *   agent-0            the one agent
 *   block-N            core_memory[N]
 *   tool-N             tools[N]
 *   message-N          messages[N]   (so in_context_message_indices[k] = N ↦ "message-N")
 *
 * Field mapping (v1 → v2):
 *   core_memory[]                      → blocks[] + agent.block_ids (same order); a block's
 *                                        `metadata_` (or `metadata`) → `metadata`
 *   tools[]                            → tools[] + agent.tool_ids (same order); `metadata` → `metadata_`
 *   messages[]                         → agent.messages[] (same order), with id, agent_id, type
 *   in_context_message_indices         → agent.in_context_message_ids, IN THE ORDER GIVEN (see below)
 *   tags [{tag}]                       → agent.tags [string]
 *   tool_exec_environment_variables    → agent.tool_exec_environment_variables {key: value} (values as
 *     [{key, value}]                     given; a missing/null value becomes ""), and agent.secrets (the
 *                                        same map, or null when empty, as current Letta exports do)
 *   tool_rules                         → agent.tool_rules (legacy type names InitToolRule /
 *                                        TerminalToolRule / ToolRule → run_first / exit_loop /
 *                                        constrain_child_tools; everything else as given)
 *   name, description, agent_type, system, llm_config, embedding_config,
 *   message_buffer_autoclear           → the same agent fields; `metadata_` → agent.metadata
 *   version                            → metadata.revision_id = "v1:<version>" (see V1_REVISION_PREFIX)
 *
 * In-context order: Letta's v1 export wrote `in_context_message_indices` in the order of the
 * agent's `message_ids` (the context window order, system message first), while `messages` is
 * sorted by creation; so the list need not be sorted (e.g. [89, 81, 80, …] when the system
 * message was rebuilt after the conversation started). Letta's v1 import walked the indices in
 * list order and appended `messages[idx].id` to the new agent's `message_ids`; this upgrade does
 * the same, so the first in-context id is the system message exactly where Letta expects it
 * (Letta reads the system message as `message_ids[0]`).
 *
 * Dropped: the v1-only bookkeeping fields `created_at` / `updated_at` of the agent, blocks and
 * tools, `updated_at` of messages, and the per-variable timestamps/descriptions of environment
 * variables; v2 has no place for them (v2 ToolSchema forbids unknown fields). Message `created_at`
 * is kept; v1 wrote naive UTC timestamps ("2025-04-01T03:47:27.492924"), which get a "Z" so they
 * are RFC 3339 date-times as v2 requires. Top-level `created_at` (the export time) is null: a v1
 * file does not record when it was exported.
 *
 * Import flags: the agent gets `include_base_tools: false`, `include_base_tool_rules: false` and
 * `include_multi_agent_tools: false` (as in every v2 export), so importing it attaches exactly the
 * file's tools and rules.
 */
import { AgentVaultError } from '../core/errors';
import { isObj } from '../core/json';
import type { AgentFileV1, AgentFileV2, AgentV2, BlockV2, Json, MessageV2, ToolV2 } from './types';

/**
 * `metadata.revision_id` of an upgraded document: this prefix plus the v1 `version` (the Letta
 * package version that wrote the v1 file), e.g. "v1:0.6.47", or "v1:unknown" without a version.
 * A real revision_id is an alembic revision (12 hex digits), so the two can never be confused.
 */
export const V1_REVISION_PREFIX = 'v1:';

/** The v1 `version` recorded in an upgraded document's revision_id, or undefined if it is not one. */
export function v1VersionFromRevision(revisionId: unknown): string | undefined {
  if (typeof revisionId !== 'string' || !revisionId.startsWith(V1_REVISION_PREFIX)) return undefined;
  return revisionId.slice(V1_REVISION_PREFIX.length);
}

/** Legacy tool-rule type names of early Letta servers and their current names. */
const LEGACY_TOOL_RULE_TYPES: Readonly<Record<string, string>> = {
  InitToolRule: 'run_first',
  TerminalToolRule: 'exit_loop',
  ToolRule: 'constrain_child_tools',
};

/** v2 BlockSchema fields copied from a v1 block when present (metadata is handled apart). */
const BLOCK_FIELDS = [
  'limit',
  'description',
  'read_only',
  'hidden',
  'tags',
  'is_template',
  'template_name',
  'template_id',
  'base_template_id',
  'deployment_id',
  'entity_id',
  'project_id',
  'preserve_on_migration',
] as const;

/** v2 ToolSchema fields copied from a v1 tool when present (metadata_ is handled apart). */
const TOOL_FIELDS = [
  'name',
  'description',
  'tool_type',
  'source_type',
  'source_code',
  'json_schema',
  'args_json_schema',
  'tags',
  'return_char_limit',
  'pip_requirements',
  'npm_requirements',
  'default_requires_approval',
  'enable_parallel_execution',
  'project_id',
] as const;

type Obj = Record<string, unknown>;

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
/** A deep copy of a JSON value (so the result never shares structure with the input). */
const copy = <T>(v: T): T => (v === undefined ? v : structuredClone(v));
const has = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k) && o[k] !== undefined;

function fail(message: string, pointer: string): never {
  throw new AgentVaultError('af-upgrade', `cannot upgrade this v1 agent file to v2: ${message}`, { location: { pointer } });
}

/** A v1 naive timestamp (UTC without an offset) as an RFC 3339 date-time; anything else as given. */
export function v1TimestampToUtc(ts: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)$/.exec(ts);
  if (!m) return ts;
  const time = m[2].length === 5 ? `${m[2]}:00` : m[2];
  return `${m[1]}T${time}Z`;
}

function upgradeBlock(b: unknown, i: number): BlockV2 {
  const p = `/core_memory/${i}`;
  if (!isObj(b)) fail(`memory block ${i} is not an object`, p);
  if (typeof b.label !== 'string') fail(`memory block ${i} has no string "label"`, `${p}/label`);
  if (typeof b.value !== 'string') fail(`memory block ${i} ("${b.label}") has no string "value"`, `${p}/value`);
  const out: BlockV2 = { id: `block-${i}`, label: b.label, value: b.value };
  for (const k of BLOCK_FIELDS) if (has(b, k)) (out as Obj)[k] = copy(b[k]);
  const meta = has(b, 'metadata_') ? b.metadata_ : b.metadata;
  if (meta !== undefined) out.metadata = copy(meta as Json);
  return out;
}

function upgradeTool(t: unknown, i: number): ToolV2 {
  const p = `/tools/${i}`;
  if (!isObj(t)) fail(`tool ${i} is not an object`, p);
  if (typeof t.name !== 'string') fail(`tool ${i} has no string "name"`, `${p}/name`);
  const out: ToolV2 = { id: `tool-${i}`, name: t.name };
  for (const k of TOOL_FIELDS) if (has(t, k)) (out as Obj)[k] = copy(t[k]);
  const meta = has(t, 'metadata_') ? t.metadata_ : t.metadata;
  if (meta !== undefined) out.metadata_ = copy(meta as Json);
  return out;
}

function upgradeToolRule(r: unknown, i: number): Json {
  if (!isObj(r)) fail(`tool rule ${i} is not an object`, `/tool_rules/${i}`);
  const out = copy(r) as { [k: string]: Json };
  if (typeof r.type === 'string' && LEGACY_TOOL_RULE_TYPES[r.type]) out.type = LEGACY_TOOL_RULE_TYPES[r.type];
  return out;
}

function upgradeContent(m: Obj): Json {
  if (typeof m.content === 'string') return m.content;
  if (Array.isArray(m.content)) {
    return m.content.map((part) => {
      const c = copy(part) as Json;
      // v1 only knew text parts; a part without a type is one.
      if (isObj(c) && c.type === undefined && typeof c.text === 'string') return { type: 'text', ...c } as Json;
      return c;
    });
  }
  // Very early exports kept the text in a top-level "text" field.
  if (typeof m.text === 'string') return [{ type: 'text', text: m.text }];
  return [];
}

function upgradeMessage(m: unknown, i: number, agentId: string): MessageV2 {
  const p = `/messages/${i}`;
  if (!isObj(m)) fail(`message ${i} is not an object`, p);
  if (typeof m.role !== 'string') fail(`message ${i} has no string "role"`, `${p}/role`);
  const toolCalls = Array.isArray(m.tool_calls) && m.tool_calls.length > 0 ? (copy(m.tool_calls) as Json) : null;
  const out: MessageV2 = {
    type: 'message',
    id: `message-${i}`,
    agent_id: agentId,
    role: m.role,
    content: upgradeContent(m),
    name: typeof m.name === 'string' ? m.name : null,
    model: typeof m.model === 'string' ? m.model : null,
    tool_calls: toolCalls,
    tool_call_id: typeof m.tool_call_id === 'string' ? m.tool_call_id : null,
    tool_returns: Array.isArray(m.tool_returns) ? (copy(m.tool_returns) as Json) : [],
    group_id: typeof m.group_id === 'string' ? m.group_id : null,
    otid: null,
    sender_id: null,
    batch_item_id: null,
    approve: null,
    approval_request_id: null,
    denial_reason: null,
  };
  if (typeof m.created_at === 'string') out.created_at = v1TimestampToUtc(m.created_at);
  return out;
}

function upgradeTags(tags: unknown): string[] {
  return list(tags).map((t, i) => {
    if (typeof t === 'string') return t;
    if (isObj(t) && typeof t.tag === 'string') return t.tag;
    return fail(`tag ${i} is not {"tag": "…"}`, `/tags/${i}`);
  });
}

function upgradeEnvironment(vars: unknown): { [k: string]: string } {
  const out: { [k: string]: string } = {};
  list(vars).forEach((v, i) => {
    if (!isObj(v) || typeof v.key !== 'string') fail(`environment variable ${i} has no string "key"`, `/tool_exec_environment_variables/${i}`);
    const value = v.value;
    out[v.key] = typeof value === 'string' ? value : value === null || value === undefined ? '' : JSON.stringify(value);
  });
  return out;
}

/**
 * The v2 document equivalent to a v1 agent file. Pure and deterministic (see the module comment
 * for the mapping). Throws AgentVaultError (code "af-upgrade", with a JSON Pointer into the v1
 * document) when the input cannot be expressed in v2: an in-context index that points at no
 * message, a malformed block/tool/message/tag/variable, or a `multi_agent_group` (v1 groups
 * have no v2 equivalent in a single-agent file).
 */
export function upgradeV1ToV2(v1: AgentFileV1): AgentFileV2 {
  if (!isObj(v1)) fail('the document is not a JSON object', '');
  const doc = v1 as Obj;
  if (doc.multi_agent_group !== undefined && doc.multi_agent_group !== null) {
    fail('it belongs to a multi-agent group ("multi_agent_group"), which v2 cannot express for a single agent', '/multi_agent_group');
  }
  const agentId = 'agent-0';

  const blocks = list(doc.core_memory).map(upgradeBlock);
  const tools = list(doc.tools).map(upgradeTool);
  const messages = list(doc.messages).map((m, i) => upgradeMessage(m, i, agentId));

  const inContext = list(doc.in_context_message_indices).map((ix, k) => {
    if (typeof ix !== 'number' || !Number.isInteger(ix) || ix < 0 || ix >= messages.length) {
      return fail(`in_context_message_indices[${k}] is ${JSON.stringify(ix)}, which is not the position of one of the ${messages.length} messages`, `/in_context_message_indices/${k}`);
    }
    return messages[ix].id;
  });

  const env = upgradeEnvironment(doc.tool_exec_environment_variables);
  const metadata = has(doc, 'metadata_') ? doc.metadata_ : doc.metadata;

  // (Built as a plain object and cast: AgentV2's declared fields are not all `Json` in types.ts.)
  const agent = {
    id: agentId,
    name: typeof doc.name === 'string' ? doc.name : '',
    description: typeof doc.description === 'string' ? doc.description : null,
    agent_type: typeof doc.agent_type === 'string' ? doc.agent_type : null,
    system: typeof doc.system === 'string' ? doc.system : null,
    tags: upgradeTags(doc.tags),
    metadata: isObj(metadata) ? copy(metadata) : null,
    llm_config: isObj(doc.llm_config) ? copy(doc.llm_config) : null,
    embedding_config: isObj(doc.embedding_config) ? copy(doc.embedding_config) : null,
    tool_rules: list(doc.tool_rules).map(upgradeToolRule),
    block_ids: blocks.map((b) => b.id),
    tool_ids: tools.map((t) => t.id),
    source_ids: [],
    group_ids: [],
    files_agents: [],
    memory_blocks: [],
    tools: [],
    include_base_tools: false,
    include_base_tool_rules: false,
    include_multi_agent_tools: false,
    message_buffer_autoclear: doc.message_buffer_autoclear === true,
    tool_exec_environment_variables: env,
    secrets: Object.keys(env).length > 0 ? { ...env } : null,
    in_context_message_ids: inContext,
    messages,
  } as unknown as AgentV2;
  if (agent.agent_type === null) delete agent.agent_type;

  const version = typeof doc.version === 'string' && doc.version ? doc.version : 'unknown';
  return {
    agents: [agent],
    groups: [],
    blocks,
    files: [],
    sources: [],
    tools,
    mcp_servers: [],
    skills: [],
    metadata: { revision_id: `${V1_REVISION_PREFIX}${version}` },
    created_at: null,
  } as unknown as AgentFileV2;
}
