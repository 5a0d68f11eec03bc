/**
 * Letta's `archives` and `archives_agents` tables (an agent's archival memory): rows → the
 * extension's archive object (export), target id (plan), extension → rows (restore).
 * The passages themselves are ./passages.ts.
 */
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { existing, tableWriter, type Obj, type PlanContext, ORM_COLUMNS } from './common';

/** An archives row joined with its archives_agents link, as the extension carries it. */
export function archiveJson(link: Obj): JsonObject {
  return {
    id: link.id,
    name: link.name,
    description: link.description,
    metadata_: link.metadata_,
    embedding_config: link.embedding_config,
    vector_db_provider: link.vector_db_provider,
    _vector_db_namespace: link._vector_db_namespace,
    created_at: link.created_at,
    updated_at: link.updated_at,
    is_owner: link.is_owner,
    link_created_at: link.link_created_at,
  };
}

/** Target archive ids of the restored agents that have an archive or passages (kept where free, shared when two agents name one). */
export async function assignArchives(p: PlanContext): Promise<void> {
  const { tx, newIds, restored, assign, freedArchives } = p;
  const archiveDbIds = restored.map((a) => (a.archive && typeof a.archive.id === 'string' ? a.archive.id : null)).filter((x): x is string => !!x);
  const takenArchives = await existing(tx, 'archives', newIds ? [] : archiveDbIds);
  const seenArchive = new Map<string, string>();
  for (const a of restored) {
    if (!a.archive && a.passages === 0) continue;
    const db = a.archive && typeof a.archive.id === 'string' && !newIds ? (a.archive.id as string) : null;
    if (db && seenArchive.has(db) && !assign.copy.has(a.fileId)) {
      assign.archives.set(a.fileId, seenArchive.get(db)!);
      continue;
    }
    const keep = !!db && !assign.copy.has(a.fileId) && (!takenArchives.has(db) || freedArchives.has(db));
    const id = keep ? db! : newId('archive');
    assign.archives.set(a.fileId, id);
    assign.archiveInsert.add(a.fileId);
    if (keep) assign.archiveKeepsIds.add(a.fileId);
    if (db && !assign.copy.has(a.fileId)) seenArchive.set(db, id);
  }
}

export const archivesWriter = tableWriter(['archives', 'archives_agents'], async (ctx) => {
  const { A, restored, plan, base, now, ins } = ctx;
  // archives, links, passages, passage tags
  const archiveRows: Obj[] = [];
  for (const a of restored) {
    if (!A.archiveInsert.has(a.fileId)) continue;
    const x = a.archive ?? {};
    archiveRows.push({
      name: typeof x.name === 'string' ? x.name : `${plan.agents.find((p) => p.file_id === a.fileId)!.target_name ?? 'agent'}'s Archive`,
      description: x.description ?? null,
      metadata_: x.metadata_ ?? null,
      id: A.archives.get(a.fileId),
      created_at: x.created_at ?? null,
      updated_at: x.updated_at ?? null,
      ...base,
      vector_db_provider: x.vector_db_provider ?? 'NATIVE',
      _vector_db_namespace: x._vector_db_namespace ?? null,
      embedding_config: x.embedding_config ?? a.obj.embedding_config ?? null,
    });
  }
  await ins('archives', ['name', 'description', 'metadata_', 'id', ...ORM_COLUMNS, 'organization_id', 'vector_db_provider', '_vector_db_namespace', 'embedding_config'], archiveRows, {
    defaults: now,
  });
  await ins(
    'archives_agents',
    ['agent_id', 'archive_id', 'created_at', 'is_owner'],
    restored
      .filter((a) => A.archives.has(a.fileId))
      .map((a) => ({ agent_id: A.agents.get(a.fileId), archive_id: A.archives.get(a.fileId), created_at: a.archive?.link_created_at ?? null, is_owner: a.archive?.is_owner ?? true })),
    { defaults: { created_at: 'now()' } },
  );
});
