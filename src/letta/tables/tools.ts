/**
 * Letta's `tools` table: row → .af tool (export), the tool's target id (plan: shared by name within
 * an organization), .af tool → row (restore: insert, or overwrite with tools: 'replace').
 */
import type { Json, JsonObject } from '../../format/types';
import type { Assign, SourceModel } from '../restore/model';
import type { RestorePlan } from '../restore/types';
import { describeWriteError, newId, qi } from '../sql';
import { existing, isObj, restoreInvalid, tableWriter, type Obj, type PlanContext, ORM_COLUMNS } from './common';

/** Columns Letta's .af has no field for (kept in agent_vault.rows). */
export const TOOL_EXTRA_COLUMNS = ['created_at', 'updated_at'];

export function toolJson(t: Obj, fileId: string): JsonObject {
  const o: JsonObject = {
    id: fileId,
    tool_type: t.tool_type,
    description: t.description,
    source_type: t.source_type,
    name: t.name,
    tags: Array.isArray(t.tags) ? t.tags : [],
    source_code: t.source_code,
    json_schema: t.json_schema,
    args_json_schema: t.args_json_schema,
  };
  // Letta's ToolSchema: return_char_limit is an integer (1…1 000 000) when present, never null.
  if (typeof t.return_char_limit === 'number') o.return_char_limit = t.return_char_limit;
  Object.assign(o, {
    pip_requirements: t.pip_requirements,
    npm_requirements: t.npm_requirements,
    default_requires_approval: t.default_requires_approval,
    enable_parallel_execution: t.enable_parallel_execution,
    created_by_id: t._created_by_id,
    last_updated_by_id: t._last_updated_by_id,
    metadata_: t.metadata_,
    project_id: t.project_id,
  });
  return o;
}

/** Target ids of the tools the restored agents use: an existing tool of the same name is used (or overwritten). */
export async function assignTools(p: PlanContext): Promise<RestorePlan['tools']> {
  const { tx, model, opts, org, newIds, assign, wantTools } = p;
  const toolMode = opts.tools ?? 'keep';
  const toolNames = [...wantTools].map((t) => model.tools.get(t)!.obj.name).filter((n): n is string => typeof n === 'string');
  const existingTools = await tx.query<{ id: string; name: string }>(`SELECT id, name FROM tools WHERE organization_id = $1 AND name = ANY($2::text[])`, [org, toolNames]);
  const toolByName = new Map(existingTools.rows.map((r) => [r.name, r.id]));
  const takenToolIds = await existing(
    tx,
    'tools',
    [...wantTools].map((t) => model.tools.get(t)!.dbId).filter((x): x is string => !!x && !newIds),
  );
  const toolPlan: RestorePlan['tools'] = [];
  for (const tf of wantTools) {
    const t = model.tools.get(tf)!;
    const name = t.obj.name;
    if (typeof name !== 'string' || name === '') throw restoreInvalid(model.path ?? 'the source', `tool "${tf}" has no name`);
    const hit = toolByName.get(name);
    if (hit) {
      assign.tools.set(tf, hit);
      if (toolMode === 'replace') assign.toolUpdate.add(tf);
      toolPlan.push({ name, action: toolMode === 'replace' ? 'replace' : 'keep', target_id: hit });
    } else {
      const id = t.dbId && !newIds && !takenToolIds.has(t.dbId) ? t.dbId : newId('tool');
      assign.tools.set(tf, id);
      assign.toolInsert.add(tf);
      toolByName.set(name, id);
      toolPlan.push({ name, action: 'create', target_id: id });
    }
  }
  return toolPlan;
}

export const toolsWriter = tableWriter(['tools'], async (ctx) => {
  const { tx, model, A, catalog, rows, base, stamps, now, ins } = ctx;
  // tools (insert new; overwrite existing ones of the same name with tools: replace)
  const toolRow = (tf: string): Obj => {
    const t = model.tools.get(tf)!;
    const o = t.obj;
    return {
      id: A.tools.get(tf),
      name: o.name,
      description: o.description ?? null,
      source_type: o.source_type ?? 'python',
      source_code: o.source_code ?? null,
      json_schema: o.json_schema ?? null,
      tags: Array.isArray(o.tags) ? o.tags : [],
      ...stamps(t.extra),
      ...base,
      return_char_limit: o.return_char_limit ?? null,
      tool_type: o.tool_type ?? 'custom',
      args_json_schema: o.args_json_schema ?? null,
      metadata_: remapMcp(o.metadata_, model, A),
      pip_requirements: o.pip_requirements ?? null,
      npm_requirements: o.npm_requirements ?? null,
      default_requires_approval: o.default_requires_approval ?? null,
      enable_parallel_execution: o.enable_parallel_execution ?? null,
      project_id: o.project_id ?? null,
    };
  };
  // what a restore may change in a tool that exists (a tool replaced in place): its definition;
  // never its id, name, organization or creation record
  const toolDefinition = [
    'description',
    'source_type',
    'source_code',
    'json_schema',
    'tags',
    'return_char_limit',
    'tool_type',
    'args_json_schema',
    'metadata_',
    'pip_requirements',
    'npm_requirements',
    'default_requires_approval',
    'enable_parallel_execution',
    'project_id',
  ];
  const toolCols = ['id', 'name', ...toolDefinition, ...ORM_COLUMNS, 'organization_id'];
  await ins('tools', toolCols, [...A.toolInsert].map(toolRow), { defaults: now });
  if (A.toolUpdate.size) {
    const upd = [...toolDefinition, '_last_updated_by_id'];
    const cols = catalog.get('tools')!;
    const defs = ['id', ...upd].map((c) => `${qi(c)} ${cols.find((x) => x.name === c)!.type}`).join(', ');
    try {
      await tx.query(`UPDATE tools t SET ${upd.map((c) => `${qi(c)} = r.${qi(c)}`).join(', ')}, updated_at = now() FROM json_to_recordset($1::json) AS r(${defs}) WHERE t.id = r.id`, [
        JSON.stringify([...A.toolUpdate].map(toolRow)),
      ]);
    } catch (e) {
      throw describeWriteError(e, 'tools');
    }
    rows.tools = (rows.tools ?? 0) + A.toolUpdate.size;
  }
});

/** A tool's MCP metadata with the server id mapped to the target. */
export function remapMcp(meta: unknown, model: SourceModel, A: Assign): Json {
  if (!isObj(meta) || !isObj(meta.mcp)) return (meta ?? null) as Json;
  const mcp = { ...meta.mcp };
  if (typeof mcp.server_id === 'string' && A.mcp.has(mcp.server_id)) mcp.server_id = A.mcp.get(mcp.server_id);
  return { ...meta, mcp } as Json;
}
