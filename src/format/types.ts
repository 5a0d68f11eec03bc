/**
 * Types for Letta Agent Files (.af). Field names follow Letta's `AgentFileSchema`
 * (letta/schemas/agent_file.py) for v2 and `pydantic_agent_schema.py` for v1.
 * Only the fields Agent Vault reads are typed; every object keeps unknown fields
 * (index signature) so a round trip never drops data.
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json | undefined };
export type JsonObject = { [k: string]: Json | undefined };

/** How the bytes of an .af file were laid out. */
export type AgentFileFormat = 'v1' | 'v2' | 'v2-double-encoded';

export interface MessageV2 extends JsonObject {
  id: string;
  role: string;
  content?: Json;
  tool_calls?: Json;
  tool_call_id?: string | null;
  tool_returns?: Json;
  agent_id?: string | null;
  created_at?: string | null;
}

export interface AgentV2 extends JsonObject {
  id: string;
  name?: string | null;
  system?: string | null;
  agent_type?: string | null;
  llm_config?: JsonObject | null;
  embedding_config?: JsonObject | null;
  tool_rules?: Json[] | null;
  tags?: string[] | null;
  tool_ids?: string[] | null;
  block_ids?: string[] | null;
  source_ids?: string[] | null;
  group_ids?: string[] | null;
  in_context_message_ids?: string[] | null;
  messages?: MessageV2[] | null;
  files_agents?: JsonObject[] | null;
  tool_exec_environment_variables?: { [k: string]: string } | null;
  secrets?: { [k: string]: string } | null;
}

export interface BlockV2 extends JsonObject {
  id: string;
  label: string;
  value: string;
  limit?: number;
}

export interface ToolV2 extends JsonObject {
  id: string;
  name: string;
  source_code?: string | null;
  json_schema?: JsonObject | null;
}

export interface GroupV2 extends JsonObject {
  id: string;
  agent_ids: string[];
  manager_config?: JsonObject;
  shared_block_ids?: string[];
}

export interface AgentFileV2 extends JsonObject {
  agents: AgentV2[];
  groups: GroupV2[];
  blocks: BlockV2[];
  files: JsonObject[];
  sources: JsonObject[];
  tools: ToolV2[];
  mcp_servers: JsonObject[];
  skills?: JsonObject[];
  metadata?: { revision_id?: string; [k: string]: Json | undefined };
  created_at?: string | null;
}

export interface AgentFileV1 extends JsonObject {
  agent_type: string;
  name: string;
  system?: string;
  core_memory: JsonObject[];
  messages: JsonObject[];
  in_context_message_indices: number[];
  tools: JsonObject[];
  tool_rules?: Json[];
  tags?: { tag: string }[];
  tool_exec_environment_variables?: JsonObject[];
  llm_config?: JsonObject;
  embedding_config?: JsonObject;
  version?: string;
}

export interface AgentFileCounts {
  agents: number;
  blocks: number;
  tools: number;
  messages: number;
  groups: number;
  files: number;
  sources: number;
  skills: number;
  mcp_servers: number;
}
