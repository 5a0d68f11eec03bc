/**
 * What an export reads, inside its snapshot transaction: the selected agents (with the members
 * of their groups), every row they refer to, and the file-local ids of the archive.
 */
import { AgentVaultError } from '../../core/errors';
import type { Queryable } from '../../db/types';
import { isObj, type Obj as Row } from '../tables/common';
import type { ExportSelect } from './types';

/** Allocates file-local ids (`<prefix>-<n>`) for database ids, one counter per prefix. */
export class FileIds {
  private readonly byDb = new Map<string, string>();
  private readonly counters = new Map<string, number>();
  readonly toDb = new Map<string, string>();

  get(dbId: string): string | undefined {
    return this.byDb.get(dbId);
  }

  map(dbId: string, prefix: string): string {
    const have = this.byDb.get(dbId);
    if (have) return have;
    const n = this.counters.get(prefix) ?? 0;
    this.counters.set(prefix, n + 1);
    const id = `${prefix}-${n}`;
    this.byDb.set(dbId, id);
    this.toDb.set(id, dbId);
    return id;
  }

  /** Reserves `count` consecutive numbers for a prefix (messages) and returns the first. */
  reserve(prefix: string, count: number): number {
    const n = this.counters.get(prefix) ?? 0;
    this.counters.set(prefix, n + count);
    return n;
  }
}

export interface Loaded {
  agents: Row[];
  blocksById: Map<string, Row>;
  blockLinks: Map<string, Row[]>; // agent → blocks_agents rows
  blockTags: Map<string, string[]>;
  toolsById: Map<string, Row>;
  toolLinks: Map<string, string[]>;
  tags: Map<string, string[]>;
  sourcesById: Map<string, Row>;
  sourceLinks: Map<string, string[]>;
  filesById: Map<string, Row>;
  fileAgents: Map<string, Row[]>;
  groupsById: Map<string, Row>;
  groupBlocks: Map<string, string[]>;
  groupAgents: Map<string, string[]>;
  agentGroups: Map<string, string[]>; // agent → groups it manages or belongs to
  identitiesById: Map<string, Row>;
  identityAgents: Map<string, string[]>; // identity → agents
  identityBlocks: Map<string, string[]>;
  env: Map<string, Row[]>;
  archiveLink: Map<string, Row>; // agent → archives_agents row + archive columns
  mcpById: Map<string, Row>;
  mcpByName: Map<string, Row>;
}

function groupBy<T extends Row>(rows: T[], key: string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const r of rows) {
    const k = r[key] as string;
    let l = m.get(k);
    if (!l) m.set(k, (l = []));
    l.push(r);
  }
  return m;
}

export async function selectAgents(tx: Queryable, sel: ExportSelect, org: string | undefined, where: string): Promise<Row[]> {
  const ids = sel.ids ?? [];
  const names = sel.names ?? [];
  const tags = sel.tags ?? [];
  const refs = sel.refs ?? [];
  if (!sel.all && ids.length === 0 && names.length === 0 && tags.length === 0 && refs.length === 0) {
    throw new AgentVaultError('export-no-selection', 'Nothing selected to export: name agents by id, name or tag, or ask for all of them.', { kind: 'usage', remedy: 'select-agents' });
  }
  const r = await tx.query(
    `SELECT a.* FROM agents a
      WHERE NOT a.is_deleted AND ($1::text IS NULL OR a.organization_id = $1)
        AND ($2::boolean OR a.id = ANY($3::text[]) OR a.name = ANY($4::text[]) OR a.id = ANY($6::text[]) OR a.name = ANY($6::text[])
             OR EXISTS (SELECT 1 FROM agents_tags t WHERE t.agent_id = a.id AND t.tag = ANY($5::text[])))
      ORDER BY a.created_at NULLS FIRST, a.id`,
    [org ?? null, !!sel.all, ids, names, tags, refs],
  );
  const found = r.rows;
  const missing = [
    ...ids.filter((id) => !found.some((a) => a.id === id)).map((id) => `id ${JSON.stringify(id)}`),
    ...names.filter((n) => !found.some((a) => a.name === n)).map((n) => `name ${JSON.stringify(n)}`),
    ...refs.filter((r) => !found.some((a) => a.id === r || a.name === r)).map((r) => `id or name ${JSON.stringify(r)}`),
  ];
  if (missing.length) {
    throw new AgentVaultError('agent-not-found', `No agent with ${missing.join(', ')} in ${where}${org ? ` (organization ${org})` : ''}.`, {
      kind: 'usage',
      hint: 'run `agent-vault agents` to list the agents',
    });
  }
  if (found.length === 0) {
    throw new AgentVaultError('agent-not-found', `No agents match the selection in ${where}${tags.length ? ` (tags ${tags.join(', ')})` : ''}.`, { kind: 'usage' });
  }
  return found;
}

/** Adds the other members (and managers) of every group a selected agent belongs to. */
export async function addGroupMembers(tx: Queryable, agents: Row[], warnings: string[]): Promise<Row[]> {
  const have = new Map(agents.map((a) => [a.id as string, a]));
  for (;;) {
    const r = await tx.query<{ agent_id: string }>(
      `WITH g AS (
         SELECT group_id AS id FROM groups_agents WHERE agent_id = ANY($1::text[])
         UNION SELECT id FROM groups WHERE manager_agent_id = ANY($1::text[]))
       SELECT DISTINCT x.agent_id FROM (
         SELECT ga.agent_id FROM groups_agents ga JOIN g ON g.id = ga.group_id
         UNION SELECT gr.manager_agent_id FROM groups gr JOIN g ON g.id = gr.id WHERE gr.manager_agent_id IS NOT NULL) x
       WHERE NOT (x.agent_id = ANY($1::text[]))`,
      [[...have.keys()]],
    );
    if (r.rows.length === 0) break;
    const more = await tx.query(`SELECT * FROM agents WHERE id = ANY($1::text[]) AND NOT is_deleted ORDER BY created_at NULLS FIRST, id`, [r.rows.map((x) => x.agent_id)]);
    if (more.rows.length === 0) break;
    for (const a of more.rows) {
      have.set(a.id, a);
      warnings.push(`added agent ${JSON.stringify(a.name)} (${a.id}): it is in a group with a selected agent`);
    }
  }
  return [...have.values()].sort((a, b) => String(a.created_at ?? '').localeCompare(String(b.created_at ?? '')) || String(a.id).localeCompare(String(b.id)));
}

export async function loadRelated(tx: Queryable, agents: Row[]): Promise<Loaded> {
  const ids = agents.map((a) => a.id as string);
  const q = async (sql: string, params: unknown[] = [ids]) => (await tx.query(sql, params)).rows;

  const blockLinks = groupBy(await q(`SELECT agent_id, block_id, block_label FROM blocks_agents WHERE agent_id = ANY($1::text[])`), 'agent_id');
  const groupRows = await q(
    `SELECT * FROM groups WHERE NOT is_deleted AND (manager_agent_id = ANY($1::text[]) OR id IN (SELECT group_id FROM groups_agents WHERE agent_id = ANY($1::text[])))
      ORDER BY created_at NULLS FIRST, id`,
  );
  const groupIds = groupRows.map((g) => g.id as string);
  const groupBlockRows = await q(`SELECT group_id, block_id FROM groups_blocks WHERE group_id = ANY($1::text[]) ORDER BY block_id`, [groupIds]);
  const groupAgentRows = await q(`SELECT group_id, agent_id FROM groups_agents WHERE group_id = ANY($1::text[])`, [groupIds]);
  const identityAgentRows = await q(`SELECT identity_id, agent_id FROM identities_agents WHERE agent_id = ANY($1::text[])`);
  const identityIds = [...new Set(identityAgentRows.map((r) => r.identity_id as string))];
  const identityRows = await q(`SELECT * FROM identities WHERE id = ANY($1::text[]) AND NOT is_deleted ORDER BY id`, [identityIds]);
  const identityBlockRows = await q(`SELECT identity_id, block_id FROM identities_blocks WHERE identity_id = ANY($1::text[])`, [identityIds]);

  const blockIds = new Set<string>();
  for (const l of blockLinks.values()) for (const r of l) blockIds.add(r.block_id);
  for (const r of groupBlockRows) blockIds.add(r.block_id);
  const blockRows = await q(`SELECT * FROM block WHERE id = ANY($1::text[])`, [[...blockIds]]);
  const blockTagRows = await q(`SELECT block_id, tag FROM blocks_tags WHERE block_id = ANY($1::text[]) AND NOT is_deleted ORDER BY tag`, [[...blockIds]]);

  const toolLinkRows = await q(`SELECT agent_id, tool_id FROM tools_agents WHERE agent_id = ANY($1::text[])`);
  const toolRows = await q(`SELECT * FROM tools WHERE id = ANY($1::text[])`, [[...new Set(toolLinkRows.map((r) => r.tool_id as string))]]);
  const tagRows = await q(`SELECT agent_id, tag FROM agents_tags WHERE agent_id = ANY($1::text[]) ORDER BY tag`);

  const sourceLinkRows = await q(`SELECT agent_id, source_id FROM sources_agents WHERE agent_id = ANY($1::text[])`);
  const fileAgentRows = await q(`SELECT * FROM files_agents WHERE agent_id = ANY($1::text[]) AND NOT is_deleted ORDER BY file_name, id`);
  const sourceIds = new Set<string>([...sourceLinkRows.map((r) => r.source_id as string), ...fileAgentRows.map((r) => r.source_id as string)]);
  const fileRows = await q(
    `SELECT f.*, c.text AS content FROM files f LEFT JOIN file_contents c ON c.file_id = f.id
      WHERE NOT f.is_deleted AND (f.source_id = ANY($1::text[]) OR f.id = ANY($2::text[])) ORDER BY f.file_name, f.id`,
    [[...sourceIds], fileAgentRows.map((r) => r.file_id)],
  );
  for (const f of fileRows) sourceIds.add(f.source_id);
  const sourceRows = await q(`SELECT * FROM sources WHERE id = ANY($1::text[])`, [[...sourceIds]]);

  const envRows = await q(`SELECT * FROM agent_environment_variables WHERE agent_id = ANY($1::text[]) AND NOT is_deleted ORDER BY key`);
  const archiveRows = await q(
    `SELECT aa.agent_id, aa.is_owner, aa.created_at AS link_created_at, ar.*
       FROM archives_agents aa JOIN archives ar ON ar.id = aa.archive_id WHERE aa.agent_id = ANY($1::text[]) AND NOT ar.is_deleted`,
  );

  // MCP servers named by the tools' metadata_.mcp (by id, else by name), as Letta's export does.
  const mcpIds = new Set<string>();
  const mcpNames = new Set<string>();
  for (const t of toolRows) {
    const mcp = isObj(t.metadata_) ? t.metadata_.mcp : undefined;
    if (isObj(mcp)) {
      if (typeof mcp.server_id === 'string') mcpIds.add(mcp.server_id);
      else if (typeof mcp.server_name === 'string') mcpNames.add(mcp.server_name);
    }
  }
  const mcpRows =
    mcpIds.size || mcpNames.size
      ? await q(`SELECT * FROM mcp_server WHERE (id = ANY($1::text[]) OR server_name = ANY($2::text[])) AND NOT is_deleted ORDER BY server_name, id`, [[...mcpIds], [...mcpNames]])
      : [];

  const agentGroups = new Map<string, string[]>();
  const addAG = (agent: string, group: string) => {
    const l = agentGroups.get(agent) ?? [];
    if (!l.includes(group)) l.push(group);
    agentGroups.set(agent, l);
  };
  for (const g of groupRows) {
    if (g.manager_agent_id) addAG(g.manager_agent_id, g.id);
    for (const r of groupAgentRows) if (r.group_id === g.id) addAG(r.agent_id, g.id);
    for (const a of Array.isArray(g.agent_ids) ? g.agent_ids : []) if (typeof a === 'string') addAG(a, g.id);
  }

  const byId = (rows: Row[]) => new Map(rows.map((r) => [r.id as string, r]));
  const strMap = (m: Map<string, Row[]>, field: string) => new Map([...m].map(([k, v]) => [k, v.map((r) => r[field] as string)]));
  return {
    agents,
    blocksById: byId(blockRows),
    blockLinks,
    blockTags: strMap(groupBy(blockTagRows, 'block_id'), 'tag'),
    toolsById: byId(toolRows),
    toolLinks: strMap(groupBy(toolLinkRows, 'agent_id'), 'tool_id'),
    tags: strMap(groupBy(tagRows, 'agent_id'), 'tag'),
    sourcesById: byId(sourceRows),
    sourceLinks: strMap(groupBy(sourceLinkRows, 'agent_id'), 'source_id'),
    filesById: byId(fileRows),
    fileAgents: groupBy(fileAgentRows, 'agent_id'),
    groupsById: byId(groupRows),
    groupBlocks: strMap(groupBy(groupBlockRows, 'group_id'), 'block_id'),
    groupAgents: strMap(groupBy(groupAgentRows, 'group_id'), 'agent_id'),
    agentGroups,
    identitiesById: byId(identityRows),
    identityAgents: strMap(groupBy(identityAgentRows, 'identity_id'), 'agent_id'),
    identityBlocks: strMap(groupBy(identityBlockRows, 'identity_id'), 'block_id'),
    env: groupBy(envRows, 'agent_id'),
    archiveLink: new Map(archiveRows.map((r) => [r.agent_id as string, r])),
    mcpById: byId(mcpRows),
    mcpByName: new Map(mcpRows.map((r) => [r.server_name as string, r])),
  };
}

export interface AgentPlan {
  row: Row;
  fileId: string;
  blockIds: string[]; // db ids, in .af order
  toolIds: string[];
  sourceIds: string[];
  fileIds: string[]; // db ids of files in this slice
  groupIds: string[]; // groups in this slice (manager or member)
  managedGroupIds: string[]; // agent.group_ids (Letta: the group the agent manages)
  messageBase: number;
  messageCount: number;
}

export async function planIds(tx: Queryable, L: Loaded, ids: FileIds): Promise<AgentPlan[]> {
  const plans: AgentPlan[] = [];
  for (const a of L.agents)
    plans.push({ row: a, fileId: ids.map(a.id, 'agent'), blockIds: [], toolIds: [], sourceIds: [], fileIds: [], groupIds: [], managedGroupIds: [], messageBase: 0, messageCount: 0 });
  const counts = await tx.query<{ agent_id: string; n: number }>(`SELECT agent_id, count(*)::int AS n FROM messages WHERE agent_id = ANY($1::text[]) AND NOT is_deleted GROUP BY agent_id`, [
    L.agents.map((a) => a.id),
  ]);
  const msgCount = new Map(counts.rows.map((r) => [r.agent_id, r.n]));
  for (const p of plans) {
    const id = p.row.id as string;
    const links = (L.blockLinks.get(id) ?? []).slice().sort((x, y) => String(x.block_label).localeCompare(String(y.block_label)) || String(x.block_id).localeCompare(String(y.block_id)));
    p.blockIds = links.map((l) => l.block_id).filter((b) => L.blocksById.has(b));
    p.blockIds.forEach((b) => ids.map(b, 'block'));
    p.toolIds = (L.toolLinks.get(id) ?? []).filter((t) => L.toolsById.has(t)).sort((x, y) => String(L.toolsById.get(x)!.name).localeCompare(String(L.toolsById.get(y)!.name)) || x.localeCompare(y));
    const srcs = new Set<string>(L.sourceLinks.get(id) ?? []);
    for (const fa of L.fileAgents.get(id) ?? []) srcs.add(fa.source_id);
    p.sourceIds = [...srcs].filter((s) => L.sourcesById.has(s)).sort((x, y) => String(L.sourcesById.get(x)!.name).localeCompare(String(L.sourcesById.get(y)!.name)) || x.localeCompare(y));
    const files = new Set<string>();
    for (const f of L.filesById.values()) if (p.sourceIds.includes(f.source_id)) files.add(f.id);
    for (const fa of L.fileAgents.get(id) ?? []) if (L.filesById.has(fa.file_id)) files.add(fa.file_id);
    p.fileIds = [...files];
    p.groupIds = (L.agentGroups.get(id) ?? []).filter((g) => L.groupsById.has(g));
    p.managedGroupIds = p.groupIds.filter((g) => L.groupsById.get(g)!.manager_agent_id === id);
    p.messageCount = msgCount.get(id) ?? 0;
    p.messageBase = ids.reserve('message', p.messageCount);
  }
  // Second pass, in agent order: tools, sources, files, file-agent links, groups, shared blocks.
  for (const p of plans) p.toolIds.forEach((t) => ids.map(t, 'tool'));
  for (const p of plans) p.sourceIds.forEach((s) => ids.map(s, 'source'));
  for (const p of plans) p.fileIds.forEach((f) => ids.map(f, 'file'));
  for (const p of plans) for (const fa of L.fileAgents.get(p.row.id) ?? []) ids.map(fa.id, 'file_agent');
  for (const p of plans) p.groupIds.forEach((g) => ids.map(g, 'group'));
  for (const g of L.groupsById.values()) for (const b of L.groupBlocks.get(g.id) ?? []) if (L.blocksById.has(b)) ids.map(b, 'block');
  for (const m of L.mcpById.values()) ids.map(m.id, 'mcp_server');
  for (const i of L.identitiesById.values()) ids.map(i.id, 'identity');
  return plans;
}

export function groupMembers(L: Loaded, g: Row): string[] {
  const fromJson = Array.isArray(g.agent_ids) ? (g.agent_ids as unknown[]).filter((x): x is string => typeof x === 'string') : [];
  const linked = L.groupAgents.get(g.id) ?? [];
  return [...fromJson, ...linked.filter((a) => !fromJson.includes(a)).sort()];
}
