/**
 * AgentState: one agent's configuration as the diff sees it (the .af v2 agent with its blocks,
 * tools and groups resolved), independent of where it came from.
 */
import type { AgentFileV2 } from '../format/types';
import { isObj } from '../core/json';

export interface AgentRef {
  id: string;
  name: string | null;
  /** true for a database id (agent-<uuid>), false for a file-local one (agent-0, agent-1, …) */
  originalId: boolean;
}

/** A group of agents (multi-agent workflow), as seen from the agent that owns it. */
export interface GroupView {
  id: string;
  manager_type: string | null;
  /** manager agent's name (or id when the name is unknown) */
  manager: string | null;
  /** member agents' names (or ids), sorted */
  members: string[];
  /** manager_config without manager_type / manager_agent_id */
  config: Record<string, unknown>;
  /** labels of the shared blocks, sorted */
  shared_blocks: string[];
  description: string | null;
}

export type Obj = Record<string, unknown>;

export interface AgentState {
  ref: AgentRef;
  /** the agent object without `messages` */
  agent: Obj;
  blocks: Obj[];
  tools: Obj[];
  groups: GroupView[];
  messageCount: number;
  inContextIds: string[];
}

export const FILE_LOCAL_AGENT_ID = /^agent-\d+$/;

export function isFileLocalId(id: string): boolean {
  return FILE_LOCAL_AGENT_ID.test(id);
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

function objects(v: unknown): Obj[] {
  return Array.isArray(v) ? v.filter(isObj) : [];
}

/**
 * The state of `doc.agents[index]`. `nameOf` names agents referenced by groups (the source knows
 * all of its agents, an archive entry only one); `messageCount` overrides the length of the
 * agent's (possibly emptied) `messages`.
 */
export function buildAgentState(doc: AgentFileV2, index: number, ref: AgentRef, nameOf: (docAgentId: string) => string | null, messageCount?: number): AgentState {
  const agents = objects(doc.agents);
  const agent = agents[index];
  const { messages, ...rest } = agent;
  const byId = (list: Obj[]): Map<string, Obj> => new Map(list.filter((o) => typeof o.id === 'string').map((o) => [o.id as string, o]));
  const blocksById = byId(objects(doc.blocks));
  const toolsById = byId(objects(doc.tools));
  const blocks = strings(agent.block_ids)
    .map((id) => blocksById.get(id))
    .filter((b): b is Obj => !!b);
  const tools = strings(agent.tool_ids)
    .map((id) => toolsById.get(id))
    .filter((t): t is Obj => !!t);
  const agentId = str(agent.id) ?? '';
  const ownGroupIds = new Set(strings(agent.group_ids));
  const name = (id: string): string => nameOf(id) ?? (agents.find((a) => a.id === id)?.name as string | undefined) ?? id;
  const groups: GroupView[] = [];
  const ext = (doc as unknown as Obj).agent_vault;
  // an archive entry keeps groups with members in other entries in its extension (docs/FORMAT.md)
  const extGroups = isObj(ext) ? objects(ext.groups) : [];
  const extGroupIds = isObj(ext) ? strings(ext.group_ids) : [];
  for (const id of extGroupIds) ownGroupIds.add(id);
  for (const g of [...objects(doc.groups), ...extGroups]) {
    const mc = isObj(g.manager_config) ? g.manager_config : {};
    const managerId = str(mc.manager_agent_id);
    const members = strings(g.agent_ids);
    // A group is reported under one agent only (its manager, else its first member), so that a
    // change of the group is one change, not one per member.
    const owner = managerId ?? members[0] ?? null;
    if (owner !== null ? owner !== agentId : !ownGroupIds.has(str(g.id) ?? '\0')) continue;
    const { manager_type, manager_agent_id: _m, ...config } = mc;
    groups.push({
      id: str(g.id) ?? '',
      manager_type: str(manager_type),
      manager: managerId ? name(managerId) : null,
      members: members.map(name).sort(),
      config,
      shared_blocks: strings(g.shared_block_ids)
        .map((id) => str(blocksById.get(id)?.label) ?? id)
        .sort(),
      description: str(g.description),
    });
  }
  return {
    ref,
    agent: rest,
    blocks,
    tools,
    groups,
    messageCount: messageCount ?? (Array.isArray(messages) ? messages.length : 0),
    inContextIds: strings(agent.in_context_message_ids),
  };
}

/** What a document holds outside its agents: skills, and blocks / tools no agent, group or identity attaches (by label / name). */
export interface DocComponents {
  skills: string[];
  unattached_blocks: string[];
  unattached_tools: string[];
  /** every block label / tool name of the source, attached or not */
  all_blocks: string[];
  all_tools: string[];
}

export function componentsOf(docs: AgentFileV2[]): DocComponents {
  const skills: string[] = [];
  const blocks = new Map<string, Obj>();
  const tools = new Map<string, Obj>();
  const usedBlocks = new Set<string>();
  const usedTools = new Set<string>();
  for (const doc of docs) {
    const d = doc as unknown as Obj;
    objects(d.skills).forEach((s, k) => {
      const n = str(s.name) ?? str(s.id) ?? `skills[${k}]`;
      if (!skills.includes(n)) skills.push(n);
    });
    for (const b of objects(d.blocks)) if (str(b.id) && !blocks.has(b.id as string)) blocks.set(b.id as string, b);
    for (const t of objects(d.tools)) if (str(t.id) && !tools.has(t.id as string)) tools.set(t.id as string, t);
    for (const a of objects(d.agents)) {
      strings(a.block_ids).forEach((b) => usedBlocks.add(b));
      strings(a.tool_ids).forEach((t) => usedTools.add(t));
    }
    const ext = isObj(d.agent_vault) ? d.agent_vault : {};
    for (const g of [...objects(d.groups), ...objects(ext.groups)]) strings(g.shared_block_ids).forEach((b) => usedBlocks.add(b));
    for (const i of objects(ext.identities)) strings(i.block_ids).forEach((b) => usedBlocks.add(b));
  }
  const label = (o: Obj, k: string): string => str(o[k]) ?? str(o.id) ?? '?';
  return {
    skills,
    unattached_blocks: [...blocks]
      .filter(([id]) => !usedBlocks.has(id))
      .map(([, b]) => label(b, 'label'))
      .sort(),
    unattached_tools: [...tools]
      .filter(([id]) => !usedTools.has(id))
      .map(([, t]) => label(t, 'name'))
      .sort(),
    all_blocks: [...blocks.values()].map((b) => label(b, 'label')),
    all_tools: [...tools.values()].map((t) => label(t, 'name')),
  };
}
