/**
 * Workflows: an agent's tool rules and its groups, seen as a graph.
 *
 *   run_first X                 init X
 *   exit_loop X                 terminal X
 *   constrain_child_tools X [C] edges X -> C
 *   parent_last_tool X [C]      edges X -> C [parent]
 *   conditional X               edges X -[output]-> C for each mapping, X -[default]-> D
 *   max_count_per_step X n      max_count X = n
 *   continue_loop, required_before_exit, requires_approval, unknown types: listed as text
 *
 * Rules are matched by "<type> <tool_name>"; identical duplicates count once (Letta applies a
 * rule once however often it is listed). Fields left null/empty by one exporter and omitted by
 * another (prompt_template, args, child_arg_nodes …) are not differences.
 */
import { canonical, normalize, valueChanges } from './normalize';
import type { GroupView } from './state';
import type { FieldChange, GroupSummary, RuleChange, RuleSummary, WorkflowGraph, WorkflowsDiff } from './types';

interface Rule {
  key: string;
  type: string;
  tool_name: string | null;
  body: Record<string, unknown>;
  canon: string;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

function rulesOf(list: unknown): Rule[] {
  const out: Rule[] = [];
  const seen = new Set<string>();
  const perKey = new Map<string, number>();
  for (const r of Array.isArray(list) ? list : []) {
    if (!r || typeof r !== 'object' || Array.isArray(r)) continue;
    const body = (normalize(r) ?? {}) as Record<string, unknown>;
    const canon = canonical(body);
    if (seen.has(canon)) continue; // an identical duplicate
    seen.add(canon);
    const type = str(body.type) ?? 'unknown';
    const tool = str(body.tool_name);
    const base = `${type} ${tool ?? '?'}`;
    const n = (perKey.get(base) ?? 0) + 1;
    perKey.set(base, n);
    out.push({ key: n === 1 ? base : `${base}#${n}`, type, tool_name: tool, body, canon });
  }
  return out;
}

function edgesOf(r: Rule): string[] {
  const t = r.tool_name ?? '?';
  const b = r.body;
  switch (r.type) {
    case 'constrain_child_tools':
      return strings(b.children).map((c) => `${t} -> ${c}`);
    case 'parent_last_tool':
      return strings(b.children).map((c) => `${t} -> ${c} [parent]`);
    case 'conditional': {
      const out: string[] = [];
      const map = b.child_output_mapping && typeof b.child_output_mapping === 'object' ? (b.child_output_mapping as Record<string, unknown>) : {};
      for (const k of Object.keys(map).sort()) if (typeof map[k] === 'string') out.push(`${t} -[${k}]-> ${map[k] as string}`);
      if (typeof b.default_child === 'string') out.push(`${t} -[default]-> ${b.default_child}`);
      return out;
    }
    default:
      return [];
  }
}

export function ruleText(r: Rule): string {
  const t = r.tool_name ?? '?';
  const b = r.body;
  switch (r.type) {
    case 'run_first':
      return `init ${t}`;
    case 'exit_loop':
      return `terminal ${t}`;
    case 'continue_loop':
      return `continue after ${t}`;
    case 'max_count_per_step':
      return `max ${t} ×${typeof b.max_count_limit === 'number' ? b.max_count_limit : '?'} per step`;
    case 'required_before_exit':
      return `${t} required before exit`;
    case 'requires_approval':
      return `${t} requires approval`;
    case 'constrain_child_tools':
    case 'parent_last_tool':
    case 'conditional': {
      const e = edgesOf(r);
      const extra = r.type === 'conditional' && b.require_output_mapping === true ? ' (output mapping required)' : '';
      return (e.length ? e.join(', ') : `${r.type} ${t} (no children)`) + extra;
    }
    default:
      return `${r.type} ${t}`;
  }
}

export function workflowGraph(rules: unknown): WorkflowGraph {
  const g: WorkflowGraph = { init: [], terminal: [], edges: [], max_count: {}, other: [] };
  for (const r of rulesOf(rules)) {
    const t = r.tool_name ?? '?';
    if (r.type === 'run_first') g.init.push(t);
    else if (r.type === 'exit_loop') g.terminal.push(t);
    else if (r.type === 'max_count_per_step' && typeof r.body.max_count_limit === 'number') g.max_count[t] = r.body.max_count_limit;
    else if (r.type === 'constrain_child_tools' || r.type === 'parent_last_tool' || r.type === 'conditional') g.edges.push(...edgesOf(r));
    else g.other.push(ruleText(r));
  }
  g.init.sort();
  g.terminal.sort();
  g.edges = [...new Set(g.edges)].sort();
  g.other.sort();
  return g;
}

function summary(r: Rule): RuleSummary {
  return { key: r.key, type: r.type, tool_name: r.tool_name, text: ruleText(r), rule: r.body };
}

function groupKey(g: GroupView, i: number, originalIds: boolean): string {
  return originalIds && g.id ? g.id : `${g.manager_type ?? 'group'}${i > 0 ? `#${i + 1}` : ''}`;
}

function groupSummary(key: string, g: GroupView): GroupSummary {
  return { key, manager_type: g.manager_type, manager: g.manager, members: g.members };
}

/**
 * Groups are matched by database id when both sides have them, else by manager type (the n-th
 * group of a type with the n-th).
 */
function compareGroups(a: GroupView[], b: GroupView[], originalIds: boolean): WorkflowsDiff['groups'] {
  const key = (list: GroupView[]): Map<string, GroupView> => {
    const perType = new Map<string, number>();
    const out = new Map<string, GroupView>();
    for (const g of list) {
      const t = g.manager_type ?? 'group';
      const n = perType.get(t) ?? 0;
      perType.set(t, n + 1);
      out.set(groupKey(g, n, originalIds), g);
    }
    return out;
  };
  const ka = key(a);
  const kb = key(b);
  const res: WorkflowsDiff['groups'] = { added: [], removed: [], changed: [] };
  for (const [k, g] of ka) if (!kb.has(k)) res.removed.push(groupSummary(k, g));
  for (const [k, g] of kb) if (!ka.has(k)) res.added.push(groupSummary(k, g));
  for (const [k, ga] of ka) {
    const gb = kb.get(k);
    if (!gb) continue;
    const fields: FieldChange[] = [];
    for (const f of ['manager_type', 'manager', 'description', 'shared_blocks'] as const) {
      if (canonical(ga[f]) !== canonical(gb[f])) fields.push({ field: f, a: normalize(ga[f]) ?? null, b: normalize(gb[f]) ?? null });
    }
    for (const c of valueChanges(ga.config, gb.config)) fields.push({ field: `manager_config${c.path.replace(/\//g, '.')}`, a: c.a, b: c.b });
    const membersAdded = gb.members.filter((m) => !ga.members.includes(m));
    const membersRemoved = ga.members.filter((m) => !gb.members.includes(m));
    if (fields.length || membersAdded.length || membersRemoved.length) res.changed.push({ key: k, fields, members_added: membersAdded, members_removed: membersRemoved });
  }
  return res;
}

export function compareWorkflows(rulesA: unknown, rulesB: unknown, groupsA: GroupView[], groupsB: GroupView[], originalIds: boolean): WorkflowsDiff {
  const ra = rulesOf(rulesA);
  const rb = rulesOf(rulesB);
  const mb = new Map(rb.map((r) => [r.key, r]));
  const ma = new Map(ra.map((r) => [r.key, r]));
  const rules: WorkflowsDiff['rules'] = { added: [], removed: [], changed: [] };
  for (const r of ra) if (!mb.has(r.key)) rules.removed.push(summary(r));
  for (const r of rb) if (!ma.has(r.key)) rules.added.push(summary(r));
  for (const x of ra) {
    const y = mb.get(x.key);
    if (!y || y.canon === x.canon) continue;
    const changes: FieldChange[] = valueChanges(x.body, y.body).map((c) => ({ field: c.path.slice(1).replace(/\//g, '.'), a: c.a, b: c.b }));
    const change: RuleChange = { key: x.key, type: x.type, tool_name: x.tool_name, a: ruleText(x), b: ruleText(y), changes };
    rules.changed.push(change);
  }
  const ga = workflowGraph(rulesA);
  const gb = workflowGraph(rulesB);
  return {
    rules,
    groups: compareGroups(groupsA, groupsB, originalIds),
    edges_added: gb.edges.filter((e) => !ga.edges.includes(e)),
    edges_removed: ga.edges.filter((e) => !gb.edges.includes(e)),
    graph: { a: ga, b: gb },
  };
}

export function workflowChangeCount(w: WorkflowsDiff): number {
  return w.rules.added.length + w.rules.removed.length + w.rules.changed.length + w.groups.added.length + w.groups.removed.length + w.groups.changed.length;
}
