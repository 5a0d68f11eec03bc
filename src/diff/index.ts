/**
 * Semantic diff of two agent states: what changed in the agent (prompt, memory, tools, workflows,
 * models, messages, passages, environment) rather than which lines of a JSON file moved.
 * See docs/DIFF.md.
 */
import { AgentVaultError } from '../core/errors';
import type { DecryptOptions } from '../format/crypto';
import { compareAgentFields, compareBlocks, compareEnvironment, compareTools, configChanges } from './categories';
import { compareMessages, inContextDiff, messagesNotCompared } from './messages';
import { comparePassages, passagesNotCompared } from './passages';
import { openSource, type AgentStateSource } from './sources';
import type { AgentRef, AgentState } from './state';
import { textDiff } from './text';
import { CATEGORIES, DIFF_FORMAT, DIFF_FORMAT_VERSION, zeroCounts, type AgentDiff, type CategoryCounts, type DiffReport, type SourceInfo } from './types';
import { compareWorkflows, workflowChangeCount, workflowGraph } from './workflow';

export * from './types';
export { openSource, openArchiveSource, openReaderSource, openAgentFileSource, openLiveSource, type AgentStateSource, type LiveAgentProvider, type OpenSourceOptions } from './sources';
export type { AgentRef, AgentState } from './state';

export interface DiffOptions {
  /** Only the agent with this id or name (on either side). */
  agent?: string;
}

export interface DiffPathsOptions extends DiffOptions {
  /** Passphrase or key for encrypted archives (either side). */
  decrypt?: DecryptOptions;
  /** How a side is opened (default: an archive or an agent file; the vault layer adds store snapshot references). */
  open?: (src: string, opts: { decrypt?: DecryptOptions }) => Promise<AgentStateSource>;
}

export interface AgentPair {
  a: AgentRef | null;
  b: AgentRef | null;
  matched_by: 'id' | 'name' | 'remaining' | null;
}

/**
 * Pairs the agents of two sides: by database id (when both have one), then by name (when unique
 * among the unpaired on both sides), then — when exactly one agent is left on each side — those
 * two (a renamed agent), then file-local ids (agent-0 with agent-0). The rest are added/removed.
 */
export function matchAgents(la: AgentRef[], lb: AgentRef[]): AgentPair[] {
  const pairs: AgentPair[] = [];
  const restA = new Set(la);
  const restB = new Set(lb);
  const pair = (a: AgentRef, b: AgentRef, by: AgentPair['matched_by']): void => {
    pairs.push({ a, b, matched_by: by });
    restA.delete(a);
    restB.delete(b);
  };
  for (const a of la) {
    if (!a.originalId) continue;
    const b = lb.find((x) => x.originalId && x.id === a.id && restB.has(x));
    if (b) pair(a, b, 'id');
  }
  const uniqueName = (set: Set<AgentRef>, name: string): AgentRef | undefined => {
    const hits = [...set].filter((x) => x.name === name);
    return hits.length === 1 ? hits[0] : undefined;
  };
  for (const a of [...restA]) {
    if (a.name === null) continue;
    const mine = uniqueName(restA, a.name);
    const b = uniqueName(restB, a.name);
    if (mine && b) pair(a, b, 'name');
  }
  if (restA.size === 1 && restB.size === 1) pair([...restA][0], [...restB][0], 'remaining');
  for (const a of [...restA]) {
    const b = [...restB].find((x) => !x.originalId && !a.originalId && x.id === a.id);
    if (b) pair(a, b, 'id');
  }
  for (const a of restA) pairs.push({ a, b: null, matched_by: null });
  for (const b of restB) pairs.push({ a: null, b, matched_by: null });
  return pairs;
}

function emptyAgentDiff(p: AgentPair): AgentDiff {
  const g = workflowGraph([]);
  const ref = (r: AgentRef | null) => (r ? { id: r.id, name: r.name } : null);
  const named = p.b ?? p.a!;
  return {
    key: named.name ?? named.id,
    status: p.a && p.b ? 'unchanged' : p.a ? 'removed' : 'added',
    matched_by: p.matched_by,
    a: ref(p.a),
    b: ref(p.b),
    counts: zeroCounts(),
    agent: { changes: [] },
    system_prompt: null,
    memory_blocks: { added: [], removed: [], changed: [] },
    tools: { added: [], removed: [], changed: [] },
    workflows: { rules: { added: [], removed: [], changed: [] }, groups: { added: [], removed: [], changed: [] }, edges_added: [], edges_removed: [], graph: { a: g, b: g } },
    llm_config: { changes: [] },
    embedding_config: { changes: [], reembedding_required: false },
    messages: messagesNotCompared(0, 0),
    passages: passagesNotCompared('the agent is on one side only', null, null),
    environment: { added: [], removed: [] },
  };
}

function countChanges(d: AgentDiff): CategoryCounts {
  const c = zeroCounts();
  c.agent = d.agent.changes.length;
  c.system_prompt = d.system_prompt ? 1 : 0;
  c.memory_blocks = d.memory_blocks.added.length + d.memory_blocks.removed.length + d.memory_blocks.changed.length;
  c.tools = d.tools.added.length + d.tools.removed.length + d.tools.changed.length;
  c.workflows = workflowChangeCount(d.workflows);
  c.llm_config = d.llm_config.changes.length;
  c.embedding_config = d.embedding_config.changes.length;
  const m = d.messages.appended + d.messages.removed + d.messages.edited;
  // a window change with no message change of its own (e.g. messages evicted by a summary) counts once
  c.messages = m + (m === 0 && d.messages.in_context.changed ? 1 : 0);
  c.passages = d.passages.added + d.passages.removed + d.passages.changed;
  c.environment = d.environment.added.length + d.environment.removed.length;
  return c;
}

async function diffPair(A: AgentStateSource, B: AgentStateSource, p: AgentPair): Promise<AgentDiff> {
  const d = emptyAgentDiff(p);
  if (!p.a || !p.b) return d;
  const a = p.a;
  const b = p.b;
  // Messages and passages first: for an archive the same pass also reads the agent's settings.
  const [messages, passages] = await Promise.all([
    A.iterateMessages && B.iterateMessages
      ? compareMessages(A.iterateMessages(a.id), B.iterateMessages(b.id), { a: `${A.label} agent ${a.id}`, b: `${B.label} agent ${b.id}` })
      : Promise.resolve(null),
    A.iteratePassages && B.iteratePassages
      ? comparePassages(A.iteratePassages(a.id), B.iteratePassages(b.id), { a: `${A.label} agent ${a.id}`, b: `${B.label} agent ${b.id}` })
      : Promise.resolve(null),
  ]);
  const [sa, sb]: AgentState[] = await Promise.all([A.loadAgent(a.id), B.loadAgent(b.id)]);
  d.messages = messages ?? messagesNotCompared(sa.messageCount, sb.messageCount);
  d.messages.in_context = inContextDiff(sa.inContextIds, sb.inContextIds, d.messages.matched_by);
  d.passages =
    passages ??
    passagesNotCompared(
      `${[A, B]
        .filter((s) => !s.iteratePassages)
        .map((s) => (s.kind === 'agent-file' ? `${s === A ? 'A' : 'B'} is an agent file (agent files hold no archival passages)` : `${s === A ? 'A' : 'B'} provides no passages`))
        .join('; ')}`,
      null,
      null,
    );
  d.agent.changes = compareAgentFields(sa, sb);
  d.system_prompt = textDiff(typeof sa.agent.system === 'string' ? sa.agent.system : null, typeof sb.agent.system === 'string' ? sb.agent.system : null);
  d.memory_blocks = compareBlocks(sa.blocks, sb.blocks);
  d.tools = compareTools(sa.tools, sb.tools);
  d.workflows = compareWorkflows(sa.agent.tool_rules, sb.agent.tool_rules, sa.groups, sb.groups, sa.ref.originalId && sb.ref.originalId);
  d.llm_config.changes = configChanges(sa.agent.llm_config, sb.agent.llm_config);
  d.embedding_config.changes = configChanges(sa.agent.embedding_config, sb.agent.embedding_config);
  // Any change of the embedding config makes the stored vectors meaningless under the new one.
  d.embedding_config.reembedding_required = d.embedding_config.changes.length > 0;
  d.environment = compareEnvironment(sa, sb);
  d.counts = countChanges(d);
  d.status = CATEGORIES.some((c) => d.counts[c] > 0) ? 'changed' : 'unchanged';
  return d;
}

function sourceInfo(s: AgentStateSource): SourceInfo {
  return { kind: s.kind, label: s.label, format: s.format };
}

export async function diffSources(A: AgentStateSource, B: AgentStateSource, opts: DiffOptions = {}): Promise<DiffReport> {
  let pairs = matchAgents(await A.listAgents(), await B.listAgents());
  if (opts.agent !== undefined) {
    const x = opts.agent;
    pairs = pairs.filter((p) => [p.a, p.b].some((r) => r && (r.id === x || r.name === x)));
    if (pairs.length === 0) {
      throw new AgentVaultError('no-agent', `no agent with id or name ${JSON.stringify(x)} in ${A.label} or ${B.label}`, { kind: 'usage' });
    }
  }
  const agents: AgentDiff[] = [];
  for (const p of pairs) agents.push(await diffPair(A, B, p));
  const counts = zeroCounts();
  for (const d of agents) for (const c of CATEGORIES) counts[c] += d.counts[c];
  const added = agents.filter((d) => d.status === 'added').length;
  const removed = agents.filter((d) => d.status === 'removed').length;
  // components outside the agents (skills, blocks/tools nothing attaches): present on one side only
  let components: DiffReport['components'];
  if (opts.agent === undefined && A.components && B.components && A.kind !== 'live' && B.kind !== 'live') {
    const ca = await A.components();
    const cb = await B.components();
    const side = (x: string[], y: string[]) => {
      const rest = [...y];
      const only: string[] = [];
      for (const v of x) {
        const k = rest.indexOf(v);
        if (k >= 0) rest.splice(k, 1);
        else only.push(v);
      }
      return only;
    };
    components = {
      skills: { a_only: side(ca.skills, cb.skills), b_only: side(cb.skills, ca.skills) },
      // a block/tool attached on the other side is an agent's change (reported there), not a component's
      unattached_blocks: { a_only: side(ca.unattached_blocks, cb.all_blocks), b_only: side(cb.unattached_blocks, ca.all_blocks) },
      unattached_tools: { a_only: side(ca.unattached_tools, cb.all_tools), b_only: side(cb.unattached_tools, ca.all_tools) },
    };
  }
  const componentChanges = components ? Object.values(components).reduce((n, c) => n + c.a_only.length + c.b_only.length, 0) : 0;
  const total = CATEGORIES.reduce((n, c) => n + counts[c], 0) + added + removed + componentChanges;
  return {
    format: DIFF_FORMAT,
    format_version: DIFF_FORMAT_VERSION,
    a: sourceInfo(A),
    b: sourceInfo(B),
    identical: total === 0,
    summary: {
      agents_compared: agents.filter((d) => d.a && d.b).length,
      agents_added: added,
      agents_removed: removed,
      agents_changed: agents.filter((d) => d.status === 'changed').length,
      counts,
      total_changes: total,
      components_changed: componentChanges,
    },
    agents,
    ...(components ? { components } : {}),
  };
}

/** Opens both sides (archive, agent file), diffs them, closes them. */
export async function diffPaths(a: string, b: string, opts: DiffPathsOptions = {}): Promise<DiffReport> {
  const open = opts.open ?? openSource;
  const A = await open(a, { decrypt: opts.decrypt });
  try {
    const B = await open(b, { decrypt: opts.decrypt });
    try {
      return await diffSources(A, B, { agent: opts.agent });
    } finally {
      await B.close();
    }
  } finally {
    await A.close();
  }
}
