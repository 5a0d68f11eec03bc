/**
 * An agent's components as text: the system prompt, each memory block, each tool's source, the
 * tool rules, the model configs, the messages and the passages. What the VS Code extension shows
 * as read-only documents (one per component) and puts side by side in its diff editor, so the
 * texts are the same for a snapshot, an agent file and a live agent.
 *
 * Items are keyed as the semantic diff keys them (blocks by label, tools by name), so a change in
 * a DiffReport maps onto the component on each side (see `changeComponents`).
 */
import { AGENT_FIELDS, BLOCK_FIELDS, TOOL_FIELDS } from './categories';
import { normalize, stableStringify } from './normalize';
import type { AgentStateSource } from './sources';
import type { AgentState, Obj } from './state';
import { CATEGORIES, type AgentDiff, type Category } from './types';
import { workflowGraph } from './workflow';

export type ComponentKind = 'system' | 'block' | 'block-settings' | 'tool' | 'tool-settings' | 'rules' | 'llm' | 'embedding' | 'settings' | 'environment' | 'messages' | 'passages';

export const COMPONENT_KINDS: readonly ComponentKind[] = ['system', 'block', 'block-settings', 'tool', 'tool-settings', 'rules', 'llm', 'embedding', 'settings', 'environment', 'messages', 'passages'];

/** One component of an agent; `key` is the block label or the tool name. */
export interface ComponentRef {
  kind: ComponentKind;
  key?: string;
}

export interface ComponentInfo {
  ref: ComponentRef;
  /** e.g. "System prompt", "human", "send_message" */
  title: string;
  /** A file name whose extension gives the document its language, e.g. "tools/send_message.py". */
  fileName: string;
  /** Short facts for a list (chars, tool type, …). */
  detail?: string;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
const json = (v: unknown): string => `${JSON.stringify(sortKeys(normalize(v) ?? {}), null, 2)}\n`;

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, sortKeys(o[k])]),
    );
  }
  return v;
}

/** A name that is safe as one path segment of a virtual document (keeps it readable). */
export function safeSegment(name: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what must not reach a path
  const s = name.replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_').trim();
  return s === '' || s === '.' || s === '..' ? '_' : s.slice(0, 120);
}

function blockLabel(b: Obj, i: number): string {
  return str(b.label) ?? `block ${i + 1}`;
}

function toolName(t: Obj, i: number): string {
  return str(t.name) ?? `tool ${i + 1}`;
}

function findBlock(state: AgentState, label: string): Obj | undefined {
  return state.blocks.find((b, i) => blockLabel(b, i) === label);
}

function findTool(state: AgentState, name: string): Obj | undefined {
  return state.tools.find((t, i) => toolName(t, i) === name);
}

/**
 * The language extension of a tool's document: .py for Python (Letta's default; also when the
 * tool is not at hand), .ts/.js for those source types, .json for a tool without source (its
 * JSON schema is shown).
 */
function toolExtension(t: Obj | undefined): string {
  if (!t) return '.py';
  if (!str(t.source_code)) return '.json';
  const type = (str(t.source_type) ?? 'python').toLowerCase();
  if (type === 'typescript' || type === 'ts') return '.ts';
  if (type === 'javascript' || type === 'js') return '.js';
  return '.py';
}

/** File name of a component's document (its extension picks the editor language). */
export function componentFileName(ref: ComponentRef, state?: AgentState): string {
  const key = safeSegment(ref.key ?? '');
  switch (ref.kind) {
    case 'system':
      return 'system-prompt.md';
    case 'block':
      return `blocks/${key}.md`;
    case 'block-settings':
      return `blocks/${key}.settings.json`;
    case 'tool':
      return `tools/${key}${toolExtension(state && ref.key !== undefined ? findTool(state, ref.key) : undefined)}`;
    case 'tool-settings':
      return `tools/${key}.settings.json`;
    case 'rules':
      return 'tool-rules.txt';
    case 'llm':
      return 'llm-config.json';
    case 'embedding':
      return 'embedding-config.json';
    case 'settings':
      return 'agent-settings.json';
    case 'environment':
      return 'environment.txt';
    case 'messages':
      return 'messages.md';
    case 'passages':
      return 'passages.md';
  }
}

/** The configuration components of an agent, in display order (messages and passages are separate). */
export function agentComponents(state: AgentState): ComponentInfo[] {
  const out: ComponentInfo[] = [];
  const system = str(state.agent.system);
  out.push({ ref: { kind: 'system' }, title: 'System prompt', fileName: componentFileName({ kind: 'system' }), detail: system === null ? 'none' : `${system.length} chars` });
  const blocks = state.blocks.map((b, i) => ({ b, label: blockLabel(b, i) })).sort((x, y) => cmp(x.label, y.label));
  for (const { b, label } of blocks) {
    const ref: ComponentRef = { kind: 'block', key: label };
    const value = str(b.value) ?? '';
    const limit = typeof b.limit === 'number' ? `/${b.limit}` : '';
    out.push({ ref, title: label, fileName: componentFileName(ref), detail: `${value.length}${limit} chars${b.read_only === true ? ', read-only' : ''}` });
  }
  const tools = state.tools.map((t, i) => ({ t, name: toolName(t, i) })).sort((x, y) => cmp(x.name, y.name));
  for (const { t, name } of tools) {
    const ref: ComponentRef = { kind: 'tool', key: name };
    out.push({ ref, title: name, fileName: componentFileName(ref, state), detail: [str(t.tool_type), str(t.source_code) ? (str(t.source_type) ?? 'python') : 'no source'].filter(Boolean).join(', ') });
  }
  out.push({
    ref: { kind: 'rules' },
    title: 'Tool rules',
    fileName: componentFileName({ kind: 'rules' }),
    detail: `${Array.isArray(state.agent.tool_rules) ? state.agent.tool_rules.length : 0} rules`,
  });
  const llm = state.agent.llm_config as Obj | undefined;
  const emb = state.agent.embedding_config as Obj | undefined;
  out.push({ ref: { kind: 'llm' }, title: 'LLM config', fileName: componentFileName({ kind: 'llm' }), detail: str(llm?.model) ?? 'none' });
  out.push({
    ref: { kind: 'embedding' },
    title: 'Embedding config',
    fileName: componentFileName({ kind: 'embedding' }),
    detail: [str(emb?.embedding_model), typeof emb?.embedding_dim === 'number' ? String(emb.embedding_dim) : null].filter(Boolean).join(' / ') || 'none',
  });
  return out;
}

/**
 * The text of a configuration component, or undefined when the agent has no such component
 * (a block or tool that only the other side has). Messages and passages: `messagesText` /
 * `passagesText`.
 */
export function componentText(state: AgentState, ref: ComponentRef): string | undefined {
  switch (ref.kind) {
    case 'system':
      return str(state.agent.system) ?? '';
    case 'block': {
      const b = ref.key === undefined ? undefined : findBlock(state, ref.key);
      return b ? (str(b.value) ?? '') : undefined;
    }
    case 'block-settings': {
      const b = ref.key === undefined ? undefined : findBlock(state, ref.key);
      return b ? json(pick(b, ['label', ...BLOCK_FIELDS])) : undefined;
    }
    case 'tool': {
      const t = ref.key === undefined ? undefined : findTool(state, ref.key);
      if (!t) return undefined;
      const src = str(t.source_code);
      return src !== null && src !== '' ? src : json(t.json_schema ?? {});
    }
    case 'tool-settings': {
      const t = ref.key === undefined ? undefined : findTool(state, ref.key);
      return t ? json(pick(t, ['name', ...TOOL_FIELDS, 'json_schema', 'pip_requirements', 'npm_requirements'])) : undefined;
    }
    case 'rules':
      return rulesText(state.agent.tool_rules);
    case 'llm':
      return json(state.agent.llm_config ?? {});
    case 'embedding':
      return json(state.agent.embedding_config ?? {});
    case 'settings':
      return json(pick(state.agent, AGENT_FIELDS));
    case 'environment':
      return environmentText(state);
    case 'messages':
    case 'passages':
      return undefined;
  }
}

function pick(o: Obj, fields: readonly string[]): Obj {
  const out: Obj = {};
  for (const f of fields) if (o[f] !== undefined) out[f] = o[f];
  return out;
}

/** Tool rules as the workflow graph they describe, one fact per line (sorted, so diffs are stable). */
export function rulesText(rules: unknown): string {
  const g = workflowGraph(rules);
  const lines: string[] = [];
  for (const t of g.init) lines.push(`init ${t}`);
  for (const e of g.edges) lines.push(e);
  for (const [t, n] of Object.entries(g.max_count).sort(([x], [y]) => cmp(x, y))) lines.push(`max ${t} ×${n} per step`);
  for (const o of g.other) lines.push(o);
  for (const t of g.terminal) lines.push(`terminal ${t}`);
  return lines.length ? `${lines.join('\n')}\n` : '(no tool rules)\n';
}

function environmentText(state: AgentState): string {
  const keys = new Set<string>();
  const env = state.agent.tool_exec_environment_variables ?? state.agent.secrets;
  if (Array.isArray(env)) for (const e of env) if (e && typeof e === 'object' && typeof (e as Obj).key === 'string') keys.add((e as Obj).key as string);
  if (env && typeof env === 'object' && !Array.isArray(env)) for (const k of Object.keys(env)) keys.add(k);
  const list = [...keys].sort(cmp);
  return list.length ? `${list.join('\n')}\n` : '(no environment variables)\n';
}

// ---------------------------------------------------------------------------------------------
// messages and passages

function partText(part: unknown): string | null {
  if (typeof part === 'string') return part;
  if (!part || typeof part !== 'object') return null;
  const p = part as Obj;
  for (const k of ['text', 'reasoning', 'content']) if (typeof p[k] === 'string') return p[k] as string;
  return null;
}

/** One message as Markdown: a heading with position and role, then its text, tool calls and returns. */
export function messageText(m: Obj, position: number): string {
  const role = str(m.role) ?? 'message';
  const head = `### #${position} ${role}${str(m.name) ? ` (${str(m.name)})` : ''}${str(m.created_at) ? ` · ${str(m.created_at)}` : ''}`;
  const body: string[] = [];
  if (typeof m.content === 'string') body.push(m.content);
  else if (Array.isArray(m.content))
    for (const p of m.content) {
      const t = partText(p);
      if (t !== null && t !== '') body.push(t);
    }
  if (Array.isArray(m.tool_calls)) {
    for (const c of m.tool_calls) {
      const fn = (c as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
      if (fn) body.push(`→ ${String(fn.name)}(${typeof fn.arguments === 'string' ? fn.arguments : stableStringify(fn.arguments ?? {})})`);
    }
  }
  if (Array.isArray(m.tool_returns)) {
    for (const r of m.tool_returns) {
      const o = (r ?? {}) as Obj;
      body.push(`← ${str(o.status) ?? 'return'}: ${typeof o.func_response === 'string' ? o.func_response : stableStringify(o.func_response ?? o)}`);
    }
  }
  return `${head}\n\n${body.join('\n\n') || '(no text)'}\n`;
}

/** The agent's messages (streamed from the source) as one Markdown text. */
export async function messagesText(source: AgentStateSource, agentId: string, opts: { max?: number } = {}): Promise<{ text: string; count: number }> {
  const max = opts.max ?? 5000;
  const parts: string[] = [];
  let n = 0;
  if (source.iterateMessages) {
    for await (const batch of source.iterateMessages(agentId)) {
      for (const item of batch) {
        n++;
        if (n > max) continue;
        const m = item.obj ?? (JSON.parse(item.raw!.toString('utf8')) as Obj);
        parts.push(messageText(m, n));
      }
    }
  }
  const more = n > max ? `\n… ${n - max} more messages not shown\n` : '';
  return { text: `# Messages (${n})\n\n${parts.join('\n')}${more}`, count: n };
}

/** The agent's archival passages as Markdown (text and tags; vectors are summarised by dimension). */
export async function passagesText(source: AgentStateSource, agentId: string, opts: { max?: number } = {}): Promise<{ text: string; count: number }> {
  const max = opts.max ?? 5000;
  if (!source.iteratePassages) return { text: `# Passages\n\n${source.kind === 'agent-file' ? 'An agent file holds no archival passages.' : 'This source provides no passages.'}\n`, count: 0 };
  const parts: string[] = [];
  let n = 0;
  for await (const batch of source.iteratePassages(agentId)) {
    for (const item of batch) {
      n++;
      if (n > max) continue;
      const p = item.obj ?? (JSON.parse(item.raw!.toString('utf8')) as Obj);
      const tags = Array.isArray(p.tags) && p.tags.length ? ` · tags: ${p.tags.map(String).join(', ')}` : '';
      const dim = item.vector ? ` · vector ${item.vector.length / 4} floats` : '';
      parts.push(`### #${n}${str(p.id) ? ` ${str(p.id)}` : ''}${tags}${dim}\n\n${str(p.text) ?? '(no text)'}\n`);
    }
  }
  const more = n > max ? `\n… ${n - max} more passages not shown\n` : '';
  return { text: `# Passages (${n})\n\n${parts.join('\n')}${more}`, count: n };
}

// ---------------------------------------------------------------------------------------------
// from a diff report to the components to put side by side

export interface ChangeItem {
  category: Category;
  /** e.g. "human", "send_message", "init send_message" */
  label: string;
  status: 'added' | 'removed' | 'changed';
  /** what differs, in a few words */
  detail: string;
  /** the component whose two sides show the change */
  ref: ComponentRef;
  /** an embedding-model change: stored vectors must be re-embedded */
  reembedding?: boolean;
}

/** Every change of an agent's diff, per category, with the component that shows it. */
export function changeComponents(d: AgentDiff): Record<Category, ChangeItem[]> {
  const out = Object.fromEntries(CATEGORIES.map((c) => [c, [] as ChangeItem[]])) as Record<Category, ChangeItem[]>;
  if (d.agent.changes.length) out.agent.push({ category: 'agent', label: 'agent settings', status: 'changed', detail: d.agent.changes.map((c) => c.field).join(', '), ref: { kind: 'settings' } });
  if (d.system_prompt)
    out.system_prompt.push({
      category: 'system_prompt',
      label: 'system prompt',
      status: 'changed',
      detail: `+${d.system_prompt.added_lines} −${d.system_prompt.removed_lines} lines`,
      ref: { kind: 'system' },
    });
  for (const b of d.memory_blocks.added) out.memory_blocks.push({ category: 'memory_blocks', label: b.label, status: 'added', detail: `${b.chars} chars`, ref: { kind: 'block', key: b.label } });
  for (const b of d.memory_blocks.removed) out.memory_blocks.push({ category: 'memory_blocks', label: b.label, status: 'removed', detail: `${b.chars} chars`, ref: { kind: 'block', key: b.label } });
  for (const b of d.memory_blocks.changed) {
    const detail = [b.value ? `value +${b.value.added_lines} −${b.value.removed_lines} lines` : null, ...b.fields.map((f) => f.field)].filter(Boolean).join(', ');
    out.memory_blocks.push({ category: 'memory_blocks', label: b.label, status: 'changed', detail, ref: { kind: b.value ? 'block' : 'block-settings', key: b.label } });
  }
  for (const t of d.tools.added) out.tools.push({ category: 'tools', label: t.name, status: 'added', detail: t.tool_type ?? '', ref: { kind: 'tool', key: t.name } });
  for (const t of d.tools.removed) out.tools.push({ category: 'tools', label: t.name, status: 'removed', detail: t.tool_type ?? '', ref: { kind: 'tool', key: t.name } });
  for (const t of d.tools.changed) {
    const detail = [
      t.source_code ? `source +${t.source_code.added_lines} −${t.source_code.removed_lines} lines` : null,
      t.json_schema.length ? 'json_schema' : null,
      t.requirements.length ? 'requirements' : null,
      ...t.fields.map((f) => f.field),
    ]
      .filter(Boolean)
      .join(', ');
    out.tools.push({ category: 'tools', label: t.name, status: 'changed', detail, ref: { kind: t.source_code ? 'tool' : 'tool-settings', key: t.name } });
  }
  const w = d.workflows;
  for (const r of w.rules.added) out.workflows.push({ category: 'workflows', label: r.text, status: 'added', detail: r.key, ref: { kind: 'rules' } });
  for (const r of w.rules.removed) out.workflows.push({ category: 'workflows', label: r.text, status: 'removed', detail: r.key, ref: { kind: 'rules' } });
  for (const r of w.rules.changed) out.workflows.push({ category: 'workflows', label: r.key, status: 'changed', detail: `${r.a} → ${r.b}`, ref: { kind: 'rules' } });
  for (const g of [...w.groups.added, ...w.groups.removed]) {
    out.workflows.push({ category: 'workflows', label: `group ${g.key}`, status: w.groups.added.includes(g) ? 'added' : 'removed', detail: g.members.join(', '), ref: { kind: 'rules' } });
  }
  for (const g of w.groups.changed) out.workflows.push({ category: 'workflows', label: `group ${g.key}`, status: 'changed', detail: g.fields.map((f) => f.field).join(', '), ref: { kind: 'rules' } });
  if (d.llm_config.changes.length)
    out.llm_config.push({ category: 'llm_config', label: 'LLM config', status: 'changed', detail: d.llm_config.changes.map((c) => c.field).join(', '), ref: { kind: 'llm' } });
  if (d.embedding_config.changes.length) {
    out.embedding_config.push({
      category: 'embedding_config',
      label: 'embedding config',
      status: 'changed',
      detail: d.embedding_config.changes.map((c) => c.field).join(', '),
      ref: { kind: 'embedding' },
      reembedding: d.embedding_config.reembedding_required,
    });
  }
  const m = d.messages;
  if (m.appended + m.removed + m.edited > 0 || m.in_context.changed) {
    const detail = [m.appended ? `${m.appended} appended` : '', m.removed ? `${m.removed} removed` : '', m.edited ? `${m.edited} edited` : '', m.in_context.changed ? 'context window changed' : '']
      .filter(Boolean)
      .join(', ');
    out.messages.push({ category: 'messages', label: `messages ${m.a_count} → ${m.b_count}`, status: 'changed', detail, ref: { kind: 'messages' } });
  }
  const p = d.passages;
  if (p.compared && p.added + p.removed + p.changed > 0) {
    const detail = [p.added ? `${p.added} added` : '', p.removed ? `${p.removed} removed` : '', p.changed ? `${p.changed} changed` : ''].filter(Boolean).join(', ');
    out.passages.push({ category: 'passages', label: `passages ${p.a_count ?? '?'} → ${p.b_count ?? '?'}`, status: 'changed', detail, ref: { kind: 'passages' } });
  }
  if (d.environment.added.length + d.environment.removed.length > 0) {
    const detail = [...d.environment.added.map((k) => `+${k}`), ...d.environment.removed.map((k) => `−${k}`)].join(', ');
    out.environment.push({ category: 'environment', label: 'environment variables', status: 'changed', detail, ref: { kind: 'environment' } });
  }
  return out;
}
