/**
 * Letta's `agents` table: row → .af agent (export), .af agent → row (restore, with its in-context
 * message ids). Conflicts and the agents' target ids are planned in ../restore/plan.ts.
 */
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { tableWriter, type Obj } from './common';

export const AGENT_EXTRA_COLUMNS = ['created_at', 'updated_at', 'last_run_completion', 'last_run_duration_ms', 'last_stop_reason', 'entity_id', 'deployment_id'];

/** What an .af agent refers to, as file-local ids (the export resolves them). */
export interface AgentJsonRefs {
  fileId: string;
  toolIds: string[];
  sourceIds: string[];
  blockIds: string[];
  tags: string[];
  /** environment variable keys with empty values (the values are not in a plain .af) */
  redacted: Record<string, string> | null;
  inContext: string[];
  filesAgents: JsonObject[];
  groupIds: string[];
}

/** An agents row as Letta's .af agent (without its messages). */
export function agentJson(a: Obj, f: AgentJsonRefs): JsonObject {
  return {
    name: a.name,
    memory_blocks: [],
    tools: [],
    tool_ids: f.toolIds,
    source_ids: f.sourceIds,
    folder_ids: null,
    block_ids: f.blockIds,
    tool_rules: a.tool_rules ?? null,
    tags: f.tags,
    system: a.system,
    agent_type: a.agent_type,
    initial_message_sequence: null,
    include_base_tools: false,
    include_multi_agent_tools: false,
    include_base_tool_rules: false,
    include_default_source: false,
    description: a.description,
    metadata: a.metadata_,
    llm_config: a.llm_config,
    embedding_config: a.embedding_config,
    model: null,
    embedding: null,
    model_settings: null,
    compaction_settings: a.compaction_settings,
    context_window_limit: null,
    embedding_chunk_size: null,
    max_tokens: null,
    max_reasoning_tokens: null,
    enable_reasoner: false,
    reasoning: null,
    from_template: null,
    template: false,
    project: null,
    tool_exec_environment_variables: f.redacted ?? {},
    secrets: f.redacted,
    memory_variables: null,
    project_id: a.project_id,
    template_id: a.template_id,
    base_template_id: a.base_template_id,
    identity_ids: null,
    message_buffer_autoclear: a.message_buffer_autoclear,
    enable_sleeptime: a.enable_sleeptime,
    response_format: a.response_format,
    timezone: a.timezone,
    max_files_open: a.max_files_open,
    per_file_view_window_char_limit: a.per_file_view_window_char_limit,
    hidden: a.hidden,
    parallel_tool_calls: null,
    id: f.fileId,
    in_context_message_ids: f.inContext,
    files_agents: f.filesAgents,
    // only groups held in this entry: Letta's import maps every id through its own table
    group_ids: f.groupIds,
  };
}

export const agentsWriter = tableWriter(['agents'], async (ctx) => {
  const { A, restored, plan, base, stamps, now, ins, msgMaps } = ctx;
  // agents, with their in-context message ids (message_ids has no foreign key). Messages that
  // get new ids have them chosen here; agents keeping their messages' ids learn them while the
  // messages are written, and their message_ids are set then.
  const agentRows: Obj[] = [];
  for (const a of restored) {
    const o = a.obj;
    const keep = A.keepIds.has(a.fileId);
    const map = new Map<string, string>();
    if (!keep) for (const m of a.refs) map.set(m, newId('message'));
    msgMaps.set(a.fileId, map);
    const pa = plan.agents.find((p) => p.file_id === a.fileId)!;
    agentRows.push({
      id: A.agents.get(a.fileId),
      name: pa.target_name,
      ...stamps(a.extra),
      description: o.description ?? null,
      message_ids: keep ? [] : a.inContext.map((m) => map.get(m)!),
      system: o.system ?? null,
      agent_type: o.agent_type ?? null,
      llm_config: o.llm_config ?? null,
      embedding_config: o.embedding_config ?? null,
      metadata_: o.metadata ?? o.metadata_ ?? null,
      tool_rules: o.tool_rules ?? null,
      ...base,
      project_id: o.project_id ?? null,
      template_id: o.template_id ?? null,
      base_template_id: o.base_template_id ?? null,
      message_buffer_autoclear: o.message_buffer_autoclear ?? false,
      enable_sleeptime: o.enable_sleeptime ?? null,
      response_format: o.response_format ?? null,
      last_run_completion: a.extra.last_run_completion ?? null,
      last_run_duration_ms: a.extra.last_run_duration_ms ?? null,
      timezone: o.timezone ?? null,
      max_files_open: o.max_files_open ?? null,
      per_file_view_window_char_limit: o.per_file_view_window_char_limit ?? null,
      hidden: o.hidden ?? null,
      entity_id: a.extra.entity_id ?? null,
      deployment_id: a.extra.deployment_id ?? null,
      last_stop_reason: a.extra.last_stop_reason ?? null,
      compaction_settings: o.compaction_settings ?? null,
    });
  }
  await ins(
    'agents',
    [
      'id',
      'name',
      'created_at',
      'updated_at',
      'description',
      'message_ids',
      'system',
      'agent_type',
      'llm_config',
      'embedding_config',
      'metadata_',
      'tool_rules',
      'is_deleted',
      '_created_by_id',
      '_last_updated_by_id',
      'organization_id',
      'project_id',
      'template_id',
      'base_template_id',
      'message_buffer_autoclear',
      'enable_sleeptime',
      'response_format',
      'last_run_completion',
      'last_run_duration_ms',
      'timezone',
      'max_files_open',
      'per_file_view_window_char_limit',
      'hidden',
      'entity_id',
      'deployment_id',
      'last_stop_reason',
      'compaction_settings',
    ],
    agentRows,
    { defaults: now },
  );
});
