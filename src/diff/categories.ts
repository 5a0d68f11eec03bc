/**
 * The configuration categories of the diff: agent settings, system prompt, memory blocks, tools,
 * LLM and embedding configs, environment variable keys. (Workflows: workflow.ts; messages and
 * passages: messages.ts, passages.ts.)
 */
import { canonical, normalize, valueChanges } from './normalize';
import type { AgentState, Obj } from './state';
import { textDiff } from './text';
import type { BlockChange, BlockSummary, EnvironmentDiff, FieldChange, RequirementChange, ToolChange, ToolSummary } from './types';

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

/**
 * Agent settings compared in the "agent" category. Import flags (include_base_tools …), ids,
 * template bookkeeping and the embedded `memory_blocks`/`tools` request fields are not state.
 */
export const AGENT_FIELDS = [
  'name',
  'agent_type',
  'description',
  'tags',
  'metadata',
  'message_buffer_autoclear',
  'enable_sleeptime',
  'timezone',
  'max_files_open',
  'per_file_view_window_char_limit',
  'response_format',
  'hidden',
] as const;

/** Boolean settings whose absence means false. */
const FALSE_BY_DEFAULT = new Set(['message_buffer_autoclear', 'enable_sleeptime', 'hidden', 'read_only', 'default_requires_approval', 'enable_parallel_execution']);

function fieldValue(o: Obj, f: string): unknown {
  let v = o[f];
  if (f === 'tags' && Array.isArray(v)) v = [...v].map(String).sort();
  if (FALSE_BY_DEFAULT.has(f) && (v === null || v === undefined)) v = false;
  return normalize(v) ?? null;
}

export function fieldChanges(a: Obj, b: Obj, fields: readonly string[]): FieldChange[] {
  const out: FieldChange[] = [];
  for (const f of fields) {
    const x = fieldValue(a, f);
    const y = fieldValue(b, f);
    if (canonical(x) !== canonical(y)) out.push({ field: f, a: x, b: y });
  }
  return out;
}

export function compareAgentFields(a: AgentState, b: AgentState): FieldChange[] {
  return fieldChanges(a.agent, b.agent, AGENT_FIELDS);
}

// ---------------------------------------------------------------------------------------------
// memory blocks

/** Block settings compared besides the value (template/project bookkeeping is not state). */
export const BLOCK_FIELDS = ['limit', 'read_only', 'description', 'hidden', 'tags', 'metadata'] as const;

/** Items keyed by a name; a repeated name gets "#2", "#3" … in order. */
function keyed(list: Obj[], name: (o: Obj) => string): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const o of list) {
    const base = name(o);
    let k = base;
    for (let n = 2; out.has(k); n++) k = `${base}#${n}`;
    out.set(k, o);
  }
  return out;
}

function blockSummary(label: string, b: Obj): BlockSummary {
  const value = str(b.value) ?? '';
  return { label, chars: value.length, limit: typeof b.limit === 'number' ? b.limit : null, read_only: b.read_only === true, description: str(b.description) };
}

export function compareBlocks(a: Obj[], b: Obj[]): { added: BlockSummary[]; removed: BlockSummary[]; changed: BlockChange[] } {
  const label = (o: Obj): string => str(o.label) ?? '(no label)';
  const ka = keyed(a, label);
  const kb = keyed(b, label);
  const res = { added: [] as BlockSummary[], removed: [] as BlockSummary[], changed: [] as BlockChange[] };
  for (const [k, x] of ka) if (!kb.has(k)) res.removed.push(blockSummary(k, x));
  for (const [k, y] of kb) if (!ka.has(k)) res.added.push(blockSummary(k, y));
  for (const [k, x] of ka) {
    const y = kb.get(k);
    if (!y) continue;
    const value = textDiff(str(x.value), str(y.value));
    const fields = fieldChanges(x, y, BLOCK_FIELDS);
    if (value || fields.length) res.changed.push({ label: k, value, fields });
  }
  for (const l of [res.added, res.removed, res.changed]) l.sort((x, y) => cmp(x.label, y.label));
  return res;
}

// ---------------------------------------------------------------------------------------------
// tools

/** Tool settings compared besides source code, JSON schema and requirements. */
export const TOOL_FIELDS = ['description', 'tool_type', 'source_type', 'tags', 'return_char_limit', 'args_json_schema', 'default_requires_approval', 'enable_parallel_execution', 'metadata_'] as const;

function requirementMap(v: unknown): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const r of Array.isArray(v) ? v : []) {
    if (typeof r === 'string') out.set(r, null);
    else if (r && typeof r === 'object' && typeof (r as Obj).name === 'string') out.set((r as Obj).name as string, str((r as Obj).version));
  }
  return out;
}

export function requirementChanges(a: Obj, b: Obj): RequirementChange[] {
  const out: RequirementChange[] = [];
  for (const [manager, field] of [
    ['pip', 'pip_requirements'],
    ['npm', 'npm_requirements'],
  ] as const) {
    const ma = requirementMap(a[field]);
    const mb = requirementMap(b[field]);
    for (const [name, v] of ma) {
      if (!mb.has(name)) out.push({ manager, name, kind: 'removed', a: v, b: null });
      else if (mb.get(name) !== v) out.push({ manager, name, kind: 'changed', a: v, b: mb.get(name) ?? null });
    }
    for (const [name, v] of mb) if (!ma.has(name)) out.push({ manager, name, kind: 'added', a: null, b: v });
  }
  return out;
}

function toolSummary(name: string, t: Obj): ToolSummary {
  return { name, tool_type: str(t.tool_type), source_type: str(t.source_type) };
}

export function compareTools(a: Obj[], b: Obj[]): { added: ToolSummary[]; removed: ToolSummary[]; changed: ToolChange[] } {
  const name = (o: Obj): string => str(o.name) ?? '(no name)';
  const ka = keyed(a, name);
  const kb = keyed(b, name);
  const res = { added: [] as ToolSummary[], removed: [] as ToolSummary[], changed: [] as ToolChange[] };
  for (const [k, x] of ka) if (!kb.has(k)) res.removed.push(toolSummary(k, x));
  for (const [k, y] of kb) if (!ka.has(k)) res.added.push(toolSummary(k, y));
  for (const [k, x] of ka) {
    const y = kb.get(k);
    if (!y) continue;
    const change: ToolChange = {
      name: k,
      source_code: textDiff(str(x.source_code), str(y.source_code)),
      json_schema: valueChanges(x.json_schema, y.json_schema),
      requirements: requirementChanges(x, y),
      fields: fieldChanges(x, y, TOOL_FIELDS),
    };
    if (change.source_code || change.json_schema.length || change.requirements.length || change.fields.length) res.changed.push(change);
  }
  for (const l of [res.added, res.removed, res.changed]) l.sort((x, y) => cmp(x.name, y.name));
  return res;
}

// ---------------------------------------------------------------------------------------------
// model configs, environment

/** Every field of the two configs (model, endpoint, context window, temperature and the rest). */
export function configChanges(a: unknown, b: unknown): FieldChange[] {
  const x = (a && typeof a === 'object' ? a : {}) as Obj;
  const y = (b && typeof b === 'object' ? b : {}) as Obj;
  const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort();
  return fieldChanges(x, y, keys);
}

export function environmentKeys(s: AgentState): Set<string> {
  const keys = new Set<string>();
  for (const f of ['tool_exec_environment_variables', 'secrets']) {
    const v = s.agent[f];
    if (Array.isArray(v)) {
      for (const e of v) if (e && typeof e === 'object' && typeof (e as Obj).key === 'string') keys.add((e as Obj).key as string);
    } else if (v && typeof v === 'object') for (const k of Object.keys(v)) keys.add(k);
  }
  return keys;
}

/** Keys only: values are secrets and never compared or printed. */
export function compareEnvironment(a: AgentState, b: AgentState): EnvironmentDiff {
  const ka = environmentKeys(a);
  const kb = environmentKeys(b);
  return { added: [...kb].filter((k) => !ka.has(k)).sort(), removed: [...ka].filter((k) => !kb.has(k)).sort() };
}
