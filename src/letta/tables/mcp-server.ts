/**
 * Letta's `mcp_server` table (the MCP servers the exported tools name): row → .af (export, no
 * credentials), target id (plan: shared by server_name within an organization), .af → row (restore).
 */
import type { Json, JsonObject } from '../../format/types';
import { newId } from '../sql';
import { existing, isObj, tableWriter, type Obj, type PlanContext } from './common';

export const MCP_SERVER_EXTRA_COLUMNS = ['created_at', 'updated_at'];

export function mcpJson(m: Obj, fileId: string): JsonObject {
  const stdio = isObj(m.stdio_config) ? Object.fromEntries(Object.entries(m.stdio_config).filter(([k]) => k !== 'env')) : null;
  return { id: fileId, server_type: m.server_type, server_name: m.server_name, server_url: m.server_url, stdio_config: stdio as Json, metadata_: m.metadata_ };
}

/** Target ids of the MCP servers the restored tools name, shared by (server_name, organization). */
export async function assignMcpServers(p: PlanContext): Promise<void> {
  const { tx, model, org, newIds, assign, allSelected, wantTools } = p;
  for (const m of model.mcp.values()) {
    const used = [...wantTools].some((t) => {
      const meta = model.tools.get(t)!.obj.metadata_;
      const mcp = isObj(meta) && isObj(meta.mcp) ? meta.mcp : null;
      return !!mcp && (mcp.server_id === m.fileId || mcp.server_name === m.obj.server_name || (m.dbId !== null && mcp.server_id === m.dbId));
    });
    if (!used && !allSelected) continue;
    const r = await tx.query<{ id: string }>(`SELECT id FROM mcp_server WHERE organization_id = $1 AND server_name = $2`, [org, m.obj.server_name]);
    if (r.rows.length) assign.mcp.set(m.fileId, r.rows[0].id);
    else {
      const free = m.dbId && !newIds && !(await existing(tx, 'mcp_server', [m.dbId])).has(m.dbId);
      assign.mcp.set(m.fileId, free ? m.dbId! : newId('mcp_server'));
      assign.mcpInsert.add(m.fileId);
    }
  }
}

export const mcpServerWriter = tableWriter(['mcp_server'], async (ctx) => {
  const { model, A, base, stamps, now, ins } = ctx;
  // MCP servers (no credentials: exports never carry them)
  await ins(
    'mcp_server',
    ['id', 'server_name', 'server_type', 'server_url', 'stdio_config', 'organization_id', 'is_deleted', 'created_at', 'updated_at', '_created_by_id', '_last_updated_by_id', 'metadata_'],
    [...A.mcpInsert].map((mf) => {
      const m = model.mcp.get(mf)!;
      return {
        id: A.mcp.get(mf),
        server_name: m.obj.server_name,
        server_type: m.obj.server_type ?? 'sse',
        server_url: m.obj.server_url ?? null,
        stdio_config: m.obj.stdio_config ?? null,
        ...base,
        ...stamps(m.extra),
        metadata_: m.obj.metadata_ ?? null,
      };
    }),
    { defaults: now },
  );
});
