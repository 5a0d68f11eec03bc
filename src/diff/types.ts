/**
 * The semantic diff report (`agent-vault diff --format json`, schema `schemas/diff.schema.json`).
 * See docs/DIFF.md for what each category holds and how items are matched.
 */

export const DIFF_FORMAT = 'agent-vault-diff' as const;
export const DIFF_FORMAT_VERSION = 1;

/** The categories, in report order. Each change is reported under exactly one of them. */
export const CATEGORIES = ['agent', 'system_prompt', 'memory_blocks', 'tools', 'workflows', 'llm_config', 'embedding_config', 'messages', 'passages', 'environment'] as const;
export type Category = (typeof CATEGORIES)[number];

/** Human titles of the categories (the CLI's text and Markdown, the extension's diff view). */
export const CATEGORY_TITLES: Record<Category, string> = {
  agent: 'agent settings',
  system_prompt: 'system prompt',
  memory_blocks: 'memory blocks',
  tools: 'tools',
  workflows: 'workflows',
  llm_config: 'LLM config',
  embedding_config: 'embedding config',
  messages: 'messages',
  passages: 'archival passages',
  environment: 'environment variables',
};
export type CategoryCounts = Record<Category, number>;

export interface SourceInfo {
  kind: 'archive' | 'agent-file' | 'live';
  label: string;
  /** e.g. "archive v1", "v2-double-encoded", "live" */
  format?: string | null;
}

export interface AgentRefJson {
  id: string;
  name: string | null;
}

/** A field that differs; `a`/`b` are the (normalised) values, null when absent. */
export interface FieldChange {
  field: string;
  a: unknown;
  b: unknown;
}

export interface Hunk {
  a_start: number;
  a_lines: number;
  b_start: number;
  b_lines: number;
  /** Lines prefixed with ' ', '-' or '+' (unified diff body). */
  lines: string[];
}

/** A line diff of two texts (computed by jsdiff). */
export interface TextDiff {
  added_lines: number;
  removed_lines: number;
  a_lines: number;
  b_lines: number;
  hunks: Hunk[];
  /** True when the texts were too different to diff line by line within the edit limit: one hunk replaces all. */
  replaced_whole?: boolean;
}

export interface BlockSummary {
  label: string;
  chars: number;
  limit: number | null;
  read_only: boolean;
  description: string | null;
}

export interface BlockChange {
  label: string;
  /** null when the value is unchanged */
  value: TextDiff | null;
  /** limit, read_only, description and other block settings */
  fields: FieldChange[];
}

export interface ToolSummary {
  name: string;
  tool_type: string | null;
  source_type: string | null;
}

export interface RequirementChange {
  manager: 'pip' | 'npm';
  name: string;
  kind: 'added' | 'removed' | 'changed';
  a: string | null;
  b: string | null;
}

export interface SchemaChange {
  /** JSON Pointer into json_schema */
  path: string;
  kind: 'added' | 'removed' | 'changed';
  a: unknown;
  b: unknown;
}

export interface ToolChange {
  name: string;
  source_code: TextDiff | null;
  json_schema: SchemaChange[];
  requirements: RequirementChange[];
  fields: FieldChange[];
}

export interface RuleSummary {
  /** "<type> <tool_name>" (with "#2" … for a second distinct rule of the same kind) */
  key: string;
  type: string;
  tool_name: string | null;
  /** Human form, e.g. "retrieve_candidate -> evaluate_candidate" */
  text: string;
  rule: unknown;
}

export interface RuleChange {
  key: string;
  type: string;
  tool_name: string | null;
  a: string;
  b: string;
  changes: FieldChange[];
}

export interface GroupSummary {
  key: string;
  manager_type: string | null;
  manager: string | null;
  members: string[];
}

export interface GroupChange {
  key: string;
  fields: FieldChange[];
  members_added: string[];
  members_removed: string[];
}

export interface WorkflowGraph {
  init: string[];
  terminal: string[];
  /** "A -> B", "A -[True]-> B", "A -[default]-> B", "A -> B [parent]" */
  edges: string[];
  max_count: Record<string, number>;
  /** continue_loop, required_before_exit, requires_approval and unknown rule types, as text */
  other: string[];
}

export interface WorkflowsDiff {
  rules: { added: RuleSummary[]; removed: RuleSummary[]; changed: RuleChange[] };
  groups: { added: GroupSummary[]; removed: GroupSummary[]; changed: GroupChange[] };
  edges_added: string[];
  edges_removed: string[];
  graph: { a: WorkflowGraph; b: WorkflowGraph };
}

export interface MessageRef {
  position: number;
  id: string | null;
  role: string | null;
  preview: string;
}

export interface MessageSample {
  a: MessageRef | null;
  b: MessageRef | null;
}

export interface MessagesDiff {
  compared: boolean;
  a_count: number;
  b_count: number;
  unchanged: number;
  appended: number;
  removed: number;
  edited: number;
  /** Where the histories first part: the two messages compared there (null: that side had ended). */
  first_divergence: MessageSample | null;
  in_context: { a_count: number; b_count: number; changed: boolean };
  /** Up to 10 of each kind */
  samples: { appended: MessageSample[]; removed: MessageSample[]; edited: MessageSample[] };
  /** "id", "position" or "id+position": how messages were paired */
  matched_by: string;
}

export interface PassageRef {
  position: number;
  id: string | null;
  preview: string;
}

export interface PassagesDiff {
  compared: boolean;
  /** Why not compared (e.g. an agent file holds no passages). */
  reason?: string;
  a_count: number | null;
  b_count: number | null;
  delta: number | null;
  unchanged: number;
  added: number;
  removed: number;
  changed: number;
  /** changed passages whose embedding differs (text may be the same) */
  vectors_changed: number;
  /** Up to 20 of each kind */
  samples: { added: PassageRef[]; removed: PassageRef[]; changed: Array<{ a: PassageRef; b: PassageRef; fields: string[] }> };
}

export interface EnvironmentDiff {
  added: string[];
  removed: string[];
}

export interface AgentDiff {
  /** display key: the agent's name, else its id */
  key: string;
  status: 'changed' | 'unchanged' | 'added' | 'removed';
  matched_by: 'id' | 'name' | 'remaining' | null;
  a: AgentRefJson | null;
  b: AgentRefJson | null;
  counts: CategoryCounts;
  agent: { changes: FieldChange[] };
  system_prompt: TextDiff | null;
  memory_blocks: { added: BlockSummary[]; removed: BlockSummary[]; changed: BlockChange[] };
  tools: { added: ToolSummary[]; removed: ToolSummary[]; changed: ToolChange[] };
  workflows: WorkflowsDiff;
  llm_config: { changes: FieldChange[] };
  embedding_config: { changes: FieldChange[]; reembedding_required: boolean };
  messages: MessagesDiff;
  passages: PassagesDiff;
  environment: EnvironmentDiff;
}

export interface DiffReport {
  format: typeof DIFF_FORMAT;
  format_version: number;
  a: SourceInfo;
  b: SourceInfo;
  identical: boolean;
  summary: {
    agents_compared: number;
    agents_added: number;
    agents_removed: number;
    agents_changed: number;
    /** changed items per category, all agents together */
    counts: CategoryCounts;
    total_changes: number;
    /** skills and unattached blocks/tools present on one side only (counted in total_changes) */
    components_changed: number;
  };
  agents: AgentDiff[];
  /**
   * What the sources hold outside their agents, present on one side only: skills by name, blocks
   * (by label) and tools (by name) that no agent, group or identity attaches. Absent when a side
   * cannot tell (a live database) or one agent was selected.
   */
  components?: Record<'skills' | 'unattached_blocks' | 'unattached_tools', { a_only: string[]; b_only: string[] }>;
}

export function zeroCounts(): CategoryCounts {
  return Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as CategoryCounts;
}
