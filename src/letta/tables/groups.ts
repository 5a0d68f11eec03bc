/**
 * Letta's `groups`, `groups_agents` and `groups_blocks` tables (multi-agent groups): row → .af
 * group (export), target id (plan: created, linked to an existing group, or dropped), .af group →
 * rows (restore).
 */
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { dedupe, existing, isObj, strs, tableWriter, type Obj, type PlanContext, ORM_COLUMNS } from './common';
import type { RestorePlan } from '../restore/types';

export const GROUP_EXTRA_COLUMNS = ['created_at', 'updated_at', 'turns_counter', 'last_processed_message_id', 'base_template_id', 'template_id', 'deployment_id'];

/** Maps a database id to its file-local id (the export's id table). */
export interface FileIdLookup {
  get(dbId: string): string | undefined;
}

function managerConfig(g: Obj, ids: FileIdLookup): JsonObject {
  const mgr = g.manager_agent_id ? (ids.get(g.manager_agent_id) ?? g.manager_agent_id) : '';
  switch (g.manager_type) {
    case 'round_robin':
      return { manager_type: 'round_robin', max_turns: g.max_turns };
    case 'supervisor':
      return { manager_type: 'supervisor', manager_agent_id: mgr };
    case 'dynamic':
      return { manager_type: 'dynamic', manager_agent_id: mgr, termination_token: g.termination_token, max_turns: g.max_turns };
    case 'sleeptime':
      return { manager_type: 'sleeptime', manager_agent_id: mgr, sleeptime_agent_frequency: g.sleeptime_agent_frequency };
    case 'voice_sleeptime':
      return { manager_type: 'voice_sleeptime', manager_agent_id: mgr, max_message_buffer_length: g.max_message_buffer_length, min_message_buffer_length: g.min_message_buffer_length };
    default:
      return { manager_type: g.manager_type ?? 'round_robin', ...(g.manager_agent_id ? { manager_agent_id: mgr } : {}) };
  }
}

export function groupJson(g: Obj, fileId: string, ids: FileIdLookup, sharedBlocks: string[], members: string[]): JsonObject {
  return {
    agent_ids: members.map((a) => ids.get(a) ?? a),
    description: g.description,
    manager_config: managerConfig(g, ids),
    project_id: g.project_id,
    shared_block_ids: sharedBlocks.map((b) => ids.get(b) ?? b),
    hidden: g.hidden,
    id: fileId,
  };
}

/** Target ids of the groups with a restored member or manager: created, linked to an existing group, or dropped. */
export async function assignGroups(p: PlanContext): Promise<RestorePlan['groups']> {
  const { tx, model, newIds, assign, warnings, wantGroups, freedGroups } = p;
  const groupPlan: RestorePlan['groups'] = [];
  const takenGroups = await existing(
    tx,
    'groups',
    wantGroups.map((g) => g.dbId).filter((x): x is string => !!x && !newIds),
  );
  for (const g of wantGroups) {
    const mgr = isObj(g.obj.manager_config) && typeof g.obj.manager_config.manager_agent_id === 'string' && g.obj.manager_config.manager_agent_id !== '' ? g.obj.manager_config.manager_agent_id : null;
    if (mgr && !assign.agentRef.has(mgr)) {
      warnings.push(`group ${g.dbId ?? g.fileId} is not restored: its manager agent ${model.dbIds.get(mgr) ?? mgr} is neither restored nor in the target`);
      groupPlan.push({ source_id: g.dbId ?? g.fileId, action: 'drop', target_id: null });
      continue;
    }
    const members = strs(g.obj.agent_ids);
    const anyCopy = [...members, ...(mgr ? [mgr] : [])].some((m) => assign.copy.has(m));
    const db = newIds ? null : g.dbId;
    if (db && takenGroups.has(db) && !freedGroups.has(db) && !anyCopy) {
      assign.groups.set(g.fileId, db);
      warnings.push(`group ${db} already exists in the target; the restored agents are added to it, it is not overwritten`);
      groupPlan.push({ source_id: db, action: 'link', target_id: db });
    } else {
      const id = db && !anyCopy && !(takenGroups.has(db) && !freedGroups.has(db)) ? db : newId('group');
      assign.groups.set(g.fileId, id);
      assign.groupInsert.add(g.fileId);
      groupPlan.push({ source_id: g.dbId ?? g.fileId, action: 'create', target_id: id });
    }
    for (const m of members) {
      if (!assign.agentRef.has(m)) warnings.push(`group ${g.dbId ?? g.fileId}: member ${model.dbIds.get(m) ?? m} is neither restored nor in the target; left out of the group`);
    }
  }
  return groupPlan;
}

export const groupsWriter = tableWriter(['groups', 'groups_agents', 'groups_blocks'], async (ctx) => {
  const { model, A, base, stamps, now, ins } = ctx;
  // groups
  const groupRows: Obj[] = [];
  const groupAgentRows: Obj[] = [];
  const groupBlockRows: Obj[] = [];
  for (const [gf, gid] of A.groups) {
    const g = model.groups.get(gf)!;
    const mc: Obj = isObj(g.obj.manager_config) ? g.obj.manager_config : { manager_type: 'round_robin' };
    const members = strs(g.obj.agent_ids)
      .filter((m) => A.agentRef.has(m))
      .map((m) => A.agentRef.get(m)!);
    if (A.groupInsert.has(gf)) {
      groupRows.push({
        id: gid,
        description: typeof g.obj.description === 'string' ? g.obj.description : '',
        manager_type: mc.manager_type ?? 'round_robin',
        manager_agent_id: typeof mc.manager_agent_id === 'string' && mc.manager_agent_id ? (A.agentRef.get(mc.manager_agent_id) ?? null) : null,
        termination_token: mc.termination_token ?? null,
        max_turns: mc.max_turns ?? null,
        ...stamps(g.extra),
        ...base,
        agent_ids: members,
        sleeptime_agent_frequency: mc.sleeptime_agent_frequency ?? null,
        // a snapshot keeps the database's counter; otherwise as Letta's create_group writes it:
        // -1 for a sleeptime group with a sleeptime_agent_frequency (it adds to it every turn)
        turns_counter: 'turns_counter' in g.extra ? (g.extra.turns_counter ?? null) : mc.manager_type === 'sleeptime' && mc.sleeptime_agent_frequency ? -1 : null,
        last_processed_message_id: g.extra.last_processed_message_id ?? null,
        max_message_buffer_length: mc.max_message_buffer_length ?? null,
        min_message_buffer_length: mc.min_message_buffer_length ?? null,
        project_id: g.obj.project_id ?? null,
        base_template_id: g.extra.base_template_id ?? null,
        template_id: g.extra.template_id ?? null,
        deployment_id: g.extra.deployment_id ?? null,
        hidden: g.obj.hidden ?? null,
      });
      for (const b of strs(g.obj.shared_block_ids)) if (A.blocks.has(b)) groupBlockRows.push({ group_id: gid, block_id: A.blocks.get(b) });
    }
    for (const m of members) groupAgentRows.push({ group_id: gid, agent_id: m });
  }
  await ins(
    'groups',
    [
      'id',
      'description',
      'manager_type',
      'manager_agent_id',
      'termination_token',
      'max_turns',
      ...ORM_COLUMNS,
      'organization_id',
      'agent_ids',
      'sleeptime_agent_frequency',
      'turns_counter',
      'last_processed_message_id',
      'max_message_buffer_length',
      'min_message_buffer_length',
      'project_id',
      'base_template_id',
      'template_id',
      'deployment_id',
      'hidden',
    ],
    groupRows,
    { defaults: now },
  );
  await ins('groups_agents', ['group_id', 'agent_id'], dedupe(groupAgentRows), { onConflict: 'ON CONFLICT DO NOTHING' });
  await ins('groups_blocks', ['group_id', 'block_id'], dedupe(groupBlockRows), { onConflict: 'ON CONFLICT DO NOTHING' });
});
