/**
 * The plan of a restore, computed from the target as it is inside the restore's transaction:
 * conflicts and the agents' target ids and names, what a replace deletes, which objects are
 * written, then each table's target ids (../tables/<table>.ts assign…), then the guards.
 */
import { AgentVaultError } from '../../core/errors';
import type { Queryable } from '../../db/types';
import { DEFAULT_ORG_ID, DEFAULT_USER_ID } from '../ddl';
import { newId, readLettaInfo } from '../sql';
import { assignArchives } from '../tables/archives';
import { assignBlocks } from '../tables/block';
import { existing, isObj, strs, type PlanContext } from '../tables/common';
import { assignFiles } from '../tables/files';
import { assignGroups } from '../tables/groups';
import { assignIdentities } from '../tables/identities';
import { assignMcpServers } from '../tables/mcp-server';
import { assignSources } from '../tables/sources';
import { assignTools } from '../tables/tools';
import { checkGuards } from './guards';
import type { Assign, Planned, SourceModel, SrcAgent, SrcObject } from './model';
import type { PlanAgent, PlanRefusal, RestoreOptions, RestorePlan } from './types';

function selectAgents(model: SourceModel, wanted: string[] | undefined): SrcAgent[] {
  if (!wanted || wanted.length === 0) return model.agents;
  const out: SrcAgent[] = [];
  const missing: string[] = [];
  for (const w of wanted) {
    const hits = model.agents.filter((a) => a.dbId === w || a.fileId === w || a.name === w);
    if (hits.length === 0) missing.push(w);
    for (const h of hits) if (!out.includes(h)) out.push(h);
  }
  if (missing.length) {
    const avail = model.agents.map((a) => `${a.name ?? '(unnamed)'} (${a.dbId ?? a.fileId})`).join(', ');
    throw new AgentVaultError('agent-not-found', `${model.path ?? 'the source'} has no agent ${missing.map((m) => JSON.stringify(m)).join(', ')}; it holds: ${avail}`, { kind: 'usage' });
  }
  return model.agents.filter((a) => out.includes(a));
}

export async function computePlan(tx: Queryable, model: SourceModel, opts: RestoreOptions, where: string): Promise<Planned> {
  const info = await readLettaInfo(tx, where);
  const org = opts.organizationId ?? DEFAULT_ORG_ID;
  const user = opts.userId ?? DEFAULT_USER_ID;
  const orgRow = await tx.query(`SELECT id FROM organizations WHERE id = $1`, [org]);
  if (orgRow.rows.length === 0) throw new AgentVaultError('restore-target', `The target database has no organization ${org}.`, { kind: 'usage', hint: 'restore into an existing organization' });
  const userRow = await tx.query<{ organization_id: string }>(`SELECT organization_id FROM users WHERE id = $1`, [user]);
  if (userRow.rows.length === 0) throw new AgentVaultError('restore-target', `The target database has no user ${user}.`, { kind: 'usage' });
  if (userRow.rows[0].organization_id !== org)
    throw new AgentVaultError('restore-target', `User ${user} belongs to organization ${userRow.rows[0].organization_id}, not to ${org}.`, { kind: 'usage' });

  const onConflict = opts.onConflict ?? 'fail';
  const newIds = !!opts.newIds;
  const suffix = opts.nameSuffix ?? '_copy';
  const selected = selectAgents(model, opts.agents);
  const warnings: string[] = [];
  const refusals: PlanRefusal[] = [];
  const dbOf = (a: SrcAgent) => (newIds ? null : a.dbId);

  // conflicts
  const byId = await tx.query<{ id: string; name: string | null }>(`SELECT id, name FROM agents WHERE id = ANY($1::text[])`, [selected.map(dbOf).filter((x): x is string => !!x)]);
  const existingById = new Map(byId.rows.map((r) => [r.id, r]));
  const names = selected.filter((a) => !dbOf(a) && a.name !== null).map((a) => a.name!);
  const byName =
    names.length && !opts.allowDuplicateNames
      ? await tx.query<{ id: string; name: string }>(`SELECT id, name FROM agents WHERE organization_id = $1 AND NOT is_deleted AND name = ANY($2::text[]) ORDER BY created_at NULLS FIRST, id`, [
          org,
          names,
        ])
      : { rows: [] as { id: string; name: string }[] };
  const existingByName = new Map<string, string[]>();
  for (const r of byName.rows) existingByName.set(r.name, [...(existingByName.get(r.name) ?? []), r.id]);

  const planAgents: PlanAgent[] = [];
  const assign: Assign = {
    agents: new Map(),
    agentRef: new Map(),
    copy: new Set(),
    keepIds: new Set(),
    blocks: new Map(),
    linkedBlocks: new Set(),
    blockLabels: new Map(),
    tools: new Map(),
    toolInsert: new Set(),
    toolUpdate: new Set(),
    mcp: new Map(),
    mcpInsert: new Set(),
    sources: new Map(),
    sourceInsert: new Set(),
    sourceNames: new Map(),
    files: new Map(),
    fileInsert: new Set(),
    groups: new Map(),
    groupInsert: new Set(),
    identities: new Map(),
    identityInsert: new Set(),
    archives: new Map(),
    archiveInsert: new Set(),
    archiveKeepsIds: new Set(),
    envCarry: new Map(),
  };
  const deleteAgents: string[] = [];
  const usedNames = new Set<string>();
  const copies: SrcAgent[] = [];
  for (const a of selected) {
    const db = dbOf(a);
    const hitId = db ? existingById.get(db) : undefined;
    const hitNames = !db && a.name !== null ? (existingByName.get(a.name) ?? []) : [];
    const existingId = hitId ? hitId.id : (hitNames[0] ?? null);
    const counts = {
      messages: a.messageCount,
      in_context_messages: a.inContext.length,
      blocks: strs(a.obj.block_ids).length,
      tools: strs(a.obj.tool_ids).length,
      passages: a.passages,
    };
    const pa: PlanAgent = {
      source_id: a.dbId ?? a.fileId,
      file_id: a.fileId,
      name: a.name,
      action: 'create',
      target_id: null,
      target_name: a.name,
      existing_id: existingId,
      conflict_by: hitId ? 'id' : hitNames.length ? 'name' : null,
      counts,
      adds_system_message: a.inContext.length === 0 && model.sourceKind === 'agent-file' && opts.initialSystemMessage !== false,
    };
    if (a.inContext.length === 0 && model.sourceKind !== 'agent-file')
      warnings.push(`agent ${JSON.stringify(a.name)} has no in-context message in the snapshot; it is restored as it is, and Letta will not run it until it has a system message`);
    if (!existingId) {
      pa.target_id = db ?? newId('agent');
      if (db) assign.keepIds.add(a.fileId);
    } else if (onConflict === 'fail') {
      pa.action = 'conflict';
      pa.target_name = null;
    } else if (onConflict === 'skip') {
      pa.action = 'skip';
      pa.target_name = null;
      if (hitId) assign.agentRef.set(a.fileId, hitId.id);
    } else if (onConflict === 'replace') {
      pa.action = 'replace';
      if (hitId) {
        pa.target_id = hitId.id;
        assign.keepIds.add(a.fileId);
        deleteAgents.push(hitId.id);
      } else {
        // Letta allows several agents with one name: only the oldest is replaced
        pa.target_id = newId('agent');
        deleteAgents.push(hitNames[0]);
        if (hitNames.length > 1) warnings.push(`${hitNames.length} agents are named ${JSON.stringify(a.name)}; only the oldest (${hitNames[0]}) is replaced`);
      }
    } else {
      pa.action = 'rename';
      pa.target_id = newId('agent');
      assign.copy.add(a.fileId);
      copies.push(a);
    }
    if (pa.target_id) {
      assign.agents.set(a.fileId, pa.target_id);
      assign.agentRef.set(a.fileId, pa.target_id);
    }
    planAgents.push(pa);
  }
  // names for copies: "<name><suffix>", then "<name><suffix>2", … — free in the target and in this restore
  if (copies.length) {
    const candidates = copies.flatMap((a) => Array.from({ length: 50 }, (_, i) => `${a.name ?? 'agent'}${suffix}${i === 0 ? '' : i + 1}`));
    const taken = await tx.query<{ name: string }>(`SELECT name FROM agents WHERE organization_id = $1 AND name = ANY($2::text[])`, [org, candidates]);
    for (const t of taken.rows) usedNames.add(t.name);
    for (const a of copies) {
      const pa = planAgents.find((p) => p.file_id === a.fileId)!;
      let name: string | null = null;
      for (let i = 0; i < 50 && name === null; i++) {
        const c = `${a.name ?? 'agent'}${suffix}${i === 0 ? '' : i + 1}`;
        if (!usedNames.has(c)) name = c;
      }
      name ??= `${a.name ?? 'agent'}${suffix}-${pa.target_id!.slice(-8)}`;
      usedNames.add(name);
      pa.target_name = name;
    }
  }
  // agents of the source that are not restored but exist in the target under their id
  const others = model.agents.filter((a) => !assign.agentRef.has(a.fileId) && a.dbId && !newIds);
  const present = await existing(
    tx,
    'agents',
    others.map((a) => a.dbId!),
  );
  for (const a of others) if (present.has(a.dbId!) && !deleteAgents.includes(a.dbId!)) assign.agentRef.set(a.fileId, a.dbId!);
  for (const [f, d] of model.dbIds)
    if (f.startsWith('agent-') && !assign.agentRef.has(f) && !newIds && !model.agents.some((a) => a.fileId === f)) {
      if ((await existing(tx, 'agents', [d])).has(d) && !deleteAgents.includes(d)) assign.agentRef.set(f, d);
    }

  const conflicts = planAgents.filter((p) => p.action === 'conflict');
  if (conflicts.length) {
    refusals.push({
      code: 'conflict',
      message: `${conflicts.length === 1 ? 'An agent' : `${conflicts.length} agents`} already exist${conflicts.length === 1 ? 's' : ''} in the target: ${conflicts
        .map((c) => `${JSON.stringify(c.name)} (${c.conflict_by === 'id' ? `same id ${c.existing_id}` : `same name as ${c.existing_id}`})`)
        .join(', ')}. Nothing was restored; choose to skip, replace or copy them.`,
      kind: 'conflict',
      remedy: 'on-conflict',
    });
  }

  const restored = selected.filter((a) => assign.agents.has(a.fileId));
  const restoredSet = new Set(restored.map((a) => a.fileId));

  // what a replace deletes
  let deleteGroups: string[] = [];
  let deleteBlocks: string[] = [];
  let deleteArchives: string[] = [];
  if (deleteAgents.length) {
    deleteGroups = (
      await tx.query<{ id: string }>(`SELECT id FROM groups WHERE manager_agent_id = ANY($1::text[]) OR id IN (SELECT group_id FROM groups_agents WHERE agent_id = ANY($1::text[])) ORDER BY id`, [
        deleteAgents,
      ])
    ).rows.map((r) => r.id);
    deleteBlocks = (
      await tx.query<{ block_id: string }>(
        `SELECT block_id FROM blocks_agents WHERE agent_id = ANY($1::text[])
         EXCEPT SELECT block_id FROM blocks_agents WHERE NOT (agent_id = ANY($1::text[]))
         EXCEPT SELECT block_id FROM groups_blocks WHERE NOT (group_id = ANY($2::text[]))
         EXCEPT SELECT block_id FROM blocks_conversations bc JOIN conversations c ON c.id = bc.conversation_id WHERE NOT (c.agent_id = ANY($1::text[]))
         ORDER BY 1`,
        [deleteAgents, deleteGroups],
      )
    ).rows.map((r) => r.block_id);
    deleteArchives = (
      await tx.query<{ archive_id: string }>(
        `SELECT archive_id FROM archives_agents WHERE agent_id = ANY($1::text[]) EXCEPT SELECT archive_id FROM archives_agents WHERE NOT (agent_id = ANY($1::text[])) ORDER BY 1`,
        [deleteAgents],
      )
    ).rows.map((r) => r.archive_id);
    // secrets are redacted in archives: a replaced agent keeps its current values for the same keys
    const env = await tx.query<{ agent_id: string; key: string; value: string; value_enc: string | null }>(
      `SELECT agent_id, key, value, value_enc FROM agent_environment_variables WHERE agent_id = ANY($1::text[])`,
      [deleteAgents],
    );
    for (const pa of planAgents.filter((p) => p.action === 'replace')) {
      const m = new Map<string, { value: string; value_enc: string | null }>();
      for (const r of env.rows) if (r.agent_id === pa.existing_id) m.set(r.key, { value: r.value, value_enc: r.value_enc });
      if (m.size) assign.envCarry.set(pa.file_id, m);
    }
  }
  const freedBlocks = new Set(deleteBlocks);
  const freedGroups = new Set(deleteGroups);
  const freedArchives = new Set(deleteArchives);

  // objects the restored agents reference
  const wantBlocks = new Set<string>();
  const wantTools = new Set<string>();
  const wantSources = new Set<string>();
  const wantFiles = new Set<string>();
  for (const a of restored) {
    strs(a.obj.block_ids).forEach((b) => wantBlocks.add(b));
    strs(a.obj.tool_ids).forEach((t) => wantTools.add(t));
    [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)].forEach((s) => wantSources.add(s));
    for (const fa of Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []) {
      wantFiles.add(fa.file_id);
      wantSources.add(fa.source_id);
    }
    for (const i of a.identities) strs(i.block_ids).forEach((b) => model.blocks.has(b) && wantBlocks.add(b));
  }
  // groups with at least one restored member or manager
  const wantGroups: SrcObject[] = [];
  for (const g of model.groups.values()) {
    const mgr = isObj(g.obj.manager_config) && typeof g.obj.manager_config.manager_agent_id === 'string' ? g.obj.manager_config.manager_agent_id : null;
    const members = [...strs(g.obj.agent_ids), ...(mgr ? [mgr] : [])];
    if (members.some((m) => restoredSet.has(m))) {
      wantGroups.push(g);
      strs(g.obj.shared_block_ids).forEach((b) => model.blocks.has(b) && wantBlocks.add(b));
    }
  }
  const allSelected = !opts.agents || opts.agents.length === 0;
  if (allSelected) {
    // like Letta's import: every object of the file, referenced or not
    for (const b of model.blocks.keys()) wantBlocks.add(b);
    for (const t of model.tools.keys()) wantTools.add(t);
    for (const s of model.sources.keys()) wantSources.add(s);
  }
  for (const f of model.files.values()) if (wantSources.has(f.obj.source_id)) wantFiles.add(f.fileId);
  // written, but attached to nothing restored: an export of the agents will not hold them
  const attachedBlocks = new Set<string>();
  const attachedTools = new Set<string>();
  for (const a of restored) {
    strs(a.obj.block_ids).forEach((b) => attachedBlocks.add(b));
    strs(a.obj.tool_ids).forEach((t) => attachedTools.add(t));
    for (const i of a.identities) strs(i.block_ids).forEach((b) => attachedBlocks.add(b));
  }
  for (const g of wantGroups) strs(g.obj.shared_block_ids).forEach((b) => attachedBlocks.add(b));
  const looseBlocks = [...wantBlocks].filter((b) => !attachedBlocks.has(b)).map((b) => String(model.blocks.get(b)!.obj.label ?? b));
  const looseTools = [...wantTools].filter((t) => !attachedTools.has(t)).map((t) => String(model.tools.get(t)!.obj.name ?? t));
  const notCarried: RestorePlan['not_carried'] = {
    skills: { count: model.skills.length, names: [...model.skills] },
    unattached_blocks: { count: looseBlocks.length, labels: looseBlocks },
    unattached_tools: { count: looseTools.length, names: looseTools },
  };
  if (model.skills.length)
    warnings.push(
      `${model.skills.length} skill${model.skills.length === 1 ? '' : 's'} of the source ${model.skills.length === 1 ? 'is' : 'are'} not restored (Agent Vault writes no skills): ${model.skills.slice(0, 5).join(', ')}${model.skills.length > 5 ? ', …' : ''}`,
    );
  if (looseBlocks.length || looseTools.length) {
    warnings.push(
      `${looseBlocks.length} block${looseBlocks.length === 1 ? '' : 's'} and ${looseTools.length} tool${looseTools.length === 1 ? '' : 's'} that no restored agent attaches are written as free-standing rows; an export of these agents will not contain them`,
    );
  }
  const pc: PlanContext = { tx, model, opts, org, newIds, restored, assign, warnings, allSelected, wantBlocks, wantTools, wantSources, wantFiles, wantGroups, freedBlocks, freedGroups, freedArchives };
  await assignBlocks(pc);
  const toolPlan = await assignTools(pc);
  await assignMcpServers(pc);
  await assignSources(pc);
  await assignFiles(pc);
  await assignIdentities(pc);
  const groupPlan = await assignGroups(pc);
  await assignArchives(pc);
  const guards = await checkGuards(tx, model, info, opts, org, restored, deleteArchives, refusals, warnings);

  const nameOf = (p: PlanAgent) => p.name ?? p.source_id;
  const plan: RestorePlan = {
    source: {
      path: model.path,
      kind: model.kind,
      format: model.format,
      revision: model.revision,
      source_kind: model.sourceKind,
      encrypted: model.encrypted,
      secret_values: opts.secrets === false ? 0 : restored.reduce((n, a) => n + (a.manifest ? (model.secrets.get(a.manifest.id)?.size ?? 0) : 0), 0),
    },
    target: { database: info.database, schema: info.schema, revision: info.revision, organization_id: org, user_id: user },
    dry_run: !!opts.dryRun,
    agents: planAgents,
    summary: {
      created: planAgents.filter((p) => p.action === 'create').map(nameOf),
      renamed: planAgents.filter((p) => p.action === 'rename').map((p) => `${nameOf(p)} → ${p.target_name}`),
      skipped: planAgents.filter((p) => p.action === 'skip').map(nameOf),
      replaced: planAgents.filter((p) => p.action === 'replace').map(nameOf),
      conflicts: planAgents.filter((p) => p.action === 'conflict').map(nameOf),
    },
    tools: toolPlan,
    groups: groupPlan,
    deletes: { agents: deleteAgents, groups: deleteGroups, blocks: deleteBlocks, archives: deleteArchives },
    guards,
    not_carried: notCarried,
    warnings,
    refusals,
  };
  return { plan, restored, assign, info, org, user };
}
