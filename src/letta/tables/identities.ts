/**
 * Letta's `identities`, `identities_agents` and `identities_blocks` tables: rows → the
 * agent_vault extension's identities (export; the .af has no field for them), target ids (plan:
 * by id or identifier_key), extension → rows (restore).
 */
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { dedupe, strs, tableWriter, type Obj, type PlanContext, ORM_COLUMNS } from './common';

/** An identity row as the extension carries it; blockFileIds: its blocks' file-local ids. */
export function identityJson(i: Obj, blockFileIds: string[]): JsonObject {
  return {
    id: i.id,
    identifier_key: i.identifier_key,
    name: i.name,
    identity_type: i.identity_type,
    project_id: i.project_id,
    properties: i.properties,
    created_at: i.created_at,
    updated_at: i.updated_at,
    block_ids: blockFileIds,
  };
}

/** Target ids of the identities (only in archives written by exportAgents): an existing one by id or identifier_key, else inserted. */
export async function assignIdentities(p: PlanContext): Promise<void> {
  const { tx, org, newIds, restored, assign } = p;
  for (const a of restored) {
    for (const i of a.identities) {
      if (typeof i.id !== 'string' || assign.identities.has(i.id)) continue;
      const r = await tx.query<{ id: string }>(
        `SELECT id FROM identities WHERE id = $1 OR (identifier_key = $2 AND project_id IS NOT DISTINCT FROM $3 AND organization_id = $4) ORDER BY (id = $1) DESC LIMIT 1`,
        [i.id, i.identifier_key, i.project_id ?? null, org],
      );
      if (r.rows.length) assign.identities.set(i.id, r.rows[0].id);
      else {
        assign.identities.set(i.id, newIds ? newId('identity') : i.id);
        assign.identityInsert.add(i.id);
      }
    }
  }
}

export const identitiesWriter = tableWriter(['identities'], async (ctx) => {
  const { A, base, now, ins, identities: identityObjs } = ctx;
  // identities
  await ins(
    'identities',
    ['id', 'identifier_key', 'name', 'identity_type', 'project_id', 'organization_id', ...ORM_COLUMNS, 'properties'],
    [...A.identityInsert].map((iid) => {
      const i = identityObjs.get(iid)!;
      return {
        id: A.identities.get(iid),
        identifier_key: i.identifier_key,
        name: i.name,
        identity_type: i.identity_type,
        project_id: i.project_id ?? null,
        ...base,
        created_at: i.created_at ?? null,
        updated_at: i.updated_at ?? null,
        properties: i.properties ?? [],
      };
    }),
    { defaults: { ...now, properties: `'[]'::json` } },
  );
});

export const identitiesAgentsWriter = tableWriter(['identities_agents'], async (ctx) => {
  const { A, restored, ins } = ctx;
  await ins(
    'identities_agents',
    ['identity_id', 'agent_id'],
    dedupe(restored.flatMap((a) => a.identities.filter((i) => typeof i.id === 'string').map((i) => ({ identity_id: A.identities.get(i.id), agent_id: A.agents.get(a.fileId) })))),
    { onConflict: 'ON CONFLICT DO NOTHING' },
  );
});

export const identitiesBlocksWriter = tableWriter(['identities_blocks'], async (ctx) => {
  const { A, ins, identities: identityObjs } = ctx;
  await ins(
    'identities_blocks',
    ['identity_id', 'block_id'],
    dedupe(
      [...identityObjs.values()].flatMap((i) =>
        strs(i.block_ids)
          .filter((b) => A.blocks.has(b))
          .map((b) => ({ identity_id: A.identities.get(i.id), block_id: A.blocks.get(b) })),
      ),
    ),
    { onConflict: 'ON CONFLICT DO NOTHING' },
  );
});
