/**
 * Letta's `files`, `file_contents` and `files_agents` tables: rows → .af files and the agent's
 * files_agents (export), target ids (plan), .af → rows (restore; files are laid out for Letta to
 * process again, and ./source-passages.ts puts back the state of those whose chunks the archive
 * carries).
 */
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { existing, tableWriter, type Obj, type PlanContext, ORM_COLUMNS } from './common';

export const FILE_EXTRA_COLUMNS = ['created_at', 'updated_at'];
export const FILES_AGENTS_EXTRA_COLUMNS = ['created_at', 'updated_at'];

export function fileJson(f: Obj, fileId: string, sourceFileId: string): JsonObject {
  return {
    source_id: sourceFileId,
    file_name: f.file_name,
    original_file_name: f.original_file_name,
    file_path: f.file_path,
    file_type: f.file_type,
    file_size: f.file_size,
    file_creation_date: f.file_creation_date,
    file_last_modified_date: f.file_last_modified_date,
    processing_status: f.processing_status,
    error_message: f.error_message,
    total_chunks: f.total_chunks,
    chunks_embedded: f.chunks_embedded,
    content: f.content ?? null,
    id: fileId,
  };
}

/** A files_agents row as the .af agent's files_agents entry (ids are file-local). */
export function fileAgentJson(fa: Obj, agentFileId: string, fileId: (dbId: string) => string | undefined): JsonObject {
  return {
    agent_id: agentFileId,
    file_id: fileId(fa.file_id)!,
    source_id: fileId(fa.source_id)!,
    file_name: fa.file_name,
    is_open: fa.is_open,
    visible_content: fa.visible_content,
    last_accessed_at: fa.last_accessed_at,
    start_line: fa.start_line,
    end_line: fa.end_line,
    id: fileId(fa.id)!,
  };
}

/** Target ids of the files of the restored folders: reused when their id exists, new in a renamed folder. */
export async function assignFiles(p: PlanContext): Promise<void> {
  const { tx, model, newIds, assign, wantFiles } = p;
  const takenFiles = await existing(
    tx,
    'files',
    [...wantFiles].map((f) => model.files.get(f)!.dbId).filter((x): x is string => !!x && !newIds),
  );
  for (const ff of wantFiles) {
    const f = model.files.get(ff)!;
    const db = newIds ? null : f.dbId;
    if (db && takenFiles.has(db) && !assign.sourceNames.has(f.obj.source_id)) assign.files.set(ff, db);
    else if (assign.sourceNames.has(f.obj.source_id)) {
      assign.files.set(ff, newId('file'));
      assign.fileInsert.add(ff);
    } else {
      assign.files.set(ff, db ?? newId('file'));
      assign.fileInsert.add(ff);
    }
  }
}

export const filesWriter = tableWriter(['files', 'file_contents'], async (ctx) => {
  const { model, A, user, base, stamps, now, ins } = ctx;
  // files + contents
  await ins(
    'files',
    [
      'id',
      'source_id',
      'file_name',
      'file_path',
      'file_type',
      'file_size',
      'file_creation_date',
      'file_last_modified_date',
      ...ORM_COLUMNS,
      'organization_id',
      'processing_status',
      'error_message',
      'original_file_name',
      'total_chunks',
      'chunks_embedded',
    ],
    [...A.fileInsert].map((ff) => {
      const f = model.files.get(ff)!;
      const o = f.obj;
      return {
        id: A.files.get(ff),
        source_id: A.sources.get(o.source_id),
        file_name: o.file_name ?? null,
        file_path: o.file_path ?? null,
        file_type: o.file_type ?? null,
        file_size: o.file_size ?? null,
        file_creation_date: o.file_creation_date ?? null,
        file_last_modified_date: o.file_last_modified_date ?? null,
        ...stamps(f.extra),
        ...base,
        // laid out as Letta's import does (parsing, no error, counts cleared) so that Letta
        // processes the file again rather than claiming embeddings that do not exist; when the
        // archive carries the file's chunks, the source_passages step writes them and puts the
        // exported state back
        processing_status: 'parsing',
        error_message: null,
        original_file_name: o.original_file_name ?? null,
        total_chunks: null,
        chunks_embedded: null,
      };
    }),
    { defaults: now },
  );
  await ins(
    'file_contents',
    ['file_id', 'text', 'id', ...ORM_COLUMNS],
    [...A.fileInsert]
      .filter((ff) => typeof model.files.get(ff)!.obj.content === 'string')
      .map((ff) => ({ file_id: A.files.get(ff), text: model.files.get(ff)!.obj.content, id: newId('file_content'), is_deleted: false, _created_by_id: user, _last_updated_by_id: user })),
    { defaults: now },
  );
});

export const filesAgentsWriter = tableWriter(['files_agents'], async (ctx) => {
  const { model, A, restored, base, now, newIdsOr, ins } = ctx;
  await ins(
    'files_agents',
    ['id', 'file_id', 'agent_id', 'is_open', 'visible_content', 'last_accessed_at', ...ORM_COLUMNS, 'organization_id', 'file_name', 'source_id', 'start_line', 'end_line'],
    restored.flatMap((a) =>
      (Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []).map((fa: Obj) => {
        const x: Obj = model.rows.get(fa.id) ?? {};
        const dbId = newIdsOr(model.dbIds.get(fa.id));
        return {
          id: A.keepIds.has(a.fileId) && dbId ? dbId : newId('file_agent'),
          file_id: A.files.get(fa.file_id),
          agent_id: A.agents.get(a.fileId),
          is_open: fa.is_open ?? false,
          visible_content: fa.visible_content ?? null,
          last_accessed_at: fa.last_accessed_at ?? null,
          created_at: x.created_at ?? null,
          updated_at: x.updated_at ?? null,
          ...base,
          file_name: fa.file_name,
          source_id: A.sources.get(fa.source_id),
          start_line: fa.start_line ?? null,
          end_line: fa.end_line ?? null,
        };
      }),
    ),
    { defaults: { ...now, last_accessed_at: 'now()' } },
  );
});
