/**
 * Letta's `sources` table (folders): row → .af source (export), target id (plan: reused when the
 * same folder exists, else a new folder, renamed as Letta's import does), .af source → row (restore).
 */
import { randomBytes } from 'node:crypto';
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { existing, isObj, restoreInvalid, strs, tableWriter, type Obj, type PlanContext } from './common';

export const SOURCE_EXTRA_COLUMNS = ['created_at', 'updated_at', 'vector_db_provider'];

export function sourceJson(s: Obj, fileId: string): JsonObject {
  return {
    name: s.name,
    description: s.description,
    instructions: s.instructions,
    metadata: s.metadata_,
    embedding: null,
    embedding_chunk_size: null,
    embedding_config: s.embedding_config,
    id: fileId,
  };
}

/**
 * Target ids of the sources (folders): the same folder (same id, not a copy) is reused; a folder whose name is
 * taken otherwise gets a new one named "<name>_<8 hex>", as Letta's import does, so two restores
 * never put two rows of one file name into one folder. Files: reused when their id exists.
 */
export async function assignSources(p: PlanContext): Promise<void> {
  const { tx, model, org, newIds, restored, assign, warnings, wantSources } = p;
  const copiedSources = new Set<string>();
  for (const sf of wantSources) {
    const users = restored.filter(
      (a) => [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)].includes(sf) || (Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []).some((fa: Obj) => isObj(fa) && fa.source_id === sf),
    );
    if (users.length > 0 && users.every((a) => assign.copy.has(a.fileId))) copiedSources.add(sf);
  }
  for (const sf of wantSources) {
    const s = model.sources.get(sf)!;
    const r = await tx.query<{ id: string }>(`SELECT id FROM sources WHERE organization_id = $1 AND name = $2`, [org, s.obj.name]);
    if (r.rows.length && !copiedSources.has(sf) && !newIds && s.dbId === r.rows[0].id) assign.sources.set(sf, r.rows[0].id);
    else if (r.rows.length) {
      const name = `${String(s.obj.name)}_${randomBytes(4).toString('hex')}`;
      assign.sources.set(sf, newId('source'));
      assign.sourceInsert.add(sf);
      assign.sourceNames.set(sf, name);
      warnings.push(`folder "${String(s.obj.name)}" exists in the target; its files are restored into a new folder "${name}" (as Letta's import does)`);
    } else {
      const free = s.dbId && !newIds && !(await existing(tx, 'sources', [s.dbId])).has(s.dbId);
      assign.sources.set(sf, free ? s.dbId! : newId('source'));
      assign.sourceInsert.add(sf);
    }
  }
}

export const sourcesWriter = tableWriter(['sources'], async (ctx) => {
  const { model, A, restored, base, stamps, now, ins } = ctx;
  // sources
  const fallbackEmbedding = restored.map((a) => a.obj.embedding_config).find(isObj) ?? null;
  await ins(
    'sources',
    [
      'id',
      'name',
      'created_at',
      'embedding_config',
      'description',
      'metadata_',
      'updated_at',
      'is_deleted',
      '_created_by_id',
      '_last_updated_by_id',
      'organization_id',
      'instructions',
      'vector_db_provider',
    ],
    [...A.sourceInsert].map((sf) => {
      const s = model.sources.get(sf)!;
      const ec = s.obj.embedding_config ?? fallbackEmbedding;
      if (!isObj(ec)) throw restoreInvalid(model.path ?? 'the source', `source "${s.obj.name}" has no embedding_config (Letta requires one)`);
      return {
        id: A.sources.get(sf),
        name: A.sourceNames.get(sf) ?? s.obj.name,
        ...stamps(s.extra),
        embedding_config: ec,
        description: s.obj.description ?? null,
        metadata_: s.obj.metadata ?? null,
        ...base,
        instructions: s.obj.instructions ?? null,
        vector_db_provider: s.extra.vector_db_provider ?? 'NATIVE',
      };
    }),
    { defaults: now },
  );
});
