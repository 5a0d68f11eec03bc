/**
 * Letta's `source_passages` table: the chunks Letta made of a folder's files, with their
 * embeddings. Export: rows → the archive's `file-passages/<agent>.jsonl` and `.vectors` entries
 * (docs/FORMAT.md §7.3; `file_id` and `source_id` as the entry's file-local ids). Restore: the
 * chunks of every file the restore creates are written back (embeddings zero-padded to the column's
 * dimension), and such a file keeps the processing state and chunk counts it was exported with; a
 * file without chunks in the source stays laid out as Letta's import lays it out (./files.ts).
 */
import { AgentVaultError, errorMessage } from '../../core/errors';
import { iterateBatches } from '../../db/cursor';
import type { Queryable } from '../../db/types';
import { filePassagesEntryName, fileVectorsEntryName, type ArchiveWriter } from '../../format/archive';
import { readPassages } from '../../format/pack';
import { newId, type LettaDbInfo } from '../sql';
import { existing, isObj, num, tableWriter, type Obj, ORM_COLUMNS } from './common';

/** What writeFilePassages put into the archive (null: the files have no chunks). */
export interface FilePassagesWritten {
  count: number;
  dim: number;
  passagesEntry: string;
  vectorsEntry: string;
}

/**
 * The chunks of `fileIds` (database ids) as an agent's file-passages entries. `localId` maps a
 * database id of a file or folder to the id the agent's `.af` entry gives it.
 */
export async function writeFilePassages(
  tx: Queryable,
  writer: ArchiveWriter,
  info: LettaDbInfo,
  o: { agentId: string; fileIds: string[]; localId: (dbId: string) => string | undefined; batchSize: number; progress: (n: number) => Promise<void> },
  writeVectors: (dim: number, count: number, vectorsEntry: string) => Promise<void>,
): Promise<FilePassagesWritten | null> {
  if (o.fileIds.length === 0) return null;
  const where = `source_passages p WHERE p.file_id = ANY($1::text[]) AND NOT p.is_deleted`;
  const cnt = await tx.query<{ n: number; maxdim: number | null }>(`SELECT count(*)::int AS n, max(vector_dims(p.embedding)) AS maxdim FROM ${where}`, [o.fileIds]);
  const count = cnt.rows[0].n;
  if (count === 0) return null;
  const dim = await fileEmbeddingDim(tx, o.fileIds, cnt.rows[0].maxdim);
  const passagesEntry = filePassagesEntryName(o.agentId);
  const vectorsEntry = fileVectorsEntryName(o.agentId);
  const lineSql = `SELECT p.id, p.text, p.file_id, p.source_id, p.file_name, p.embedding_config, p.metadata_, p.tags,
            p.created_at, p.updated_at, (p.embedding IS NULL) AS no_embedding
       FROM ${where} ORDER BY p.id`;
  const localId = o.localId;
  async function* lines(): AsyncGenerator<Buffer> {
    for await (const rows of iterateBatches<Obj>(tx, lineSql, [o.fileIds], o.batchSize)) {
      const out: string[] = [];
      for (const r of rows) {
        const { no_embedding, ...rest } = r;
        if (no_embedding) rest.embedding = null;
        rest.file_id = localId(r.file_id) ?? r.file_id;
        rest.source_id = localId(r.source_id) ?? r.source_id;
        out.push(JSON.stringify(rest));
      }
      yield Buffer.from(out.join('\n') + '\n', 'utf8');
    }
  }
  await writer.addStream(passagesEntry, lines(), { mediaType: 'application/x-ndjson' });
  await writeVectors(dim, count, vectorsEntry);
  return { count, dim, passagesEntry, vectorsEntry };
}

/**
 * The true dimension of the chunks' embeddings: the `embedding_dim` their embedding_config records
 * when all agree, else the position of the last non-zero value over all of them.
 */
async function fileEmbeddingDim(tx: Queryable, fileIds: string[], maxDims: number | null): Promise<number> {
  const r = await tx.query<{ d: string | null }>(
    `SELECT DISTINCT (p.embedding_config::jsonb ->> 'embedding_dim') AS d FROM source_passages p WHERE p.file_id = ANY($1::text[]) AND NOT p.is_deleted AND p.embedding IS NOT NULL`,
    [fileIds],
  );
  const dims = r.rows.map((x) => num(x.d));
  if (dims.length === 1 && dims[0] !== null && Number.isInteger(dims[0]) && dims[0] >= 1 && (maxDims === null || dims[0] <= maxDims)) return dims[0];
  const t = await tx.query<{ d: number | null }>(
    `SELECT max(u.i)::int AS d FROM source_passages p, LATERAL unnest(p.embedding::real[]) WITH ORDINALITY AS u(x, i)
      WHERE p.file_id = ANY($1::text[]) AND NOT p.is_deleted AND u.x <> 0`,
    [fileIds],
  );
  return t.rows[0].d ?? maxDims ?? 1;
}

const INSERT_BATCH = 200;
const COLUMNS = ['id', 'text', 'embedding_config', 'metadata_', 'embedding', ...ORM_COLUMNS, 'organization_id', 'file_id', 'source_id', 'file_name', 'tags'];

/** The vector literal of an embedding zero-padded to `padTo` (pgvector's text form). */
function vectorLiteral(v: Float32Array, padTo: number | null): string {
  const parts: string[] = Array.from(v, (x) => String(x));
  if (padTo !== null) for (let i = v.length; i < padTo; i++) parts.push('0');
  return `[${parts.join(',')}]`;
}

export const sourcePassagesWriter = tableWriter(['source_passages'], async (ctx) => {
  const { tx, model, A, restored, base, now, step, rows, catalog } = ctx;
  await step('source_passages');
  rows.source_passages = 0;
  if (!model.reader || A.fileInsert.size === 0) return;
  const padTo = catalog.get('source_passages')?.find((c) => c.name === 'embedding')?.vectorDim ?? null;
  const written = new Set<string>();
  const filesWithChunks = new Set<string>();
  let batch: Obj[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const taken = ctx.opts.newIds
      ? new Set<string>()
      : await existing(
          tx,
          'source_passages',
          batch.map((r) => r.id as string),
        );
    const values: unknown[] = [];
    const tuples = batch.map((r) => {
      if (taken.has(r.id)) r.id = newId('passage');
      const ph = COLUMNS.map((c) => {
        values.push(r[c]);
        return c === 'embedding' ? `$${values.length}::vector` : c === 'embedding_config' || c === 'metadata_' || c === 'tags' ? `$${values.length}::json` : `$${values.length}`;
      });
      return `(${ph.join(', ')})`;
    });
    await tx.query(`INSERT INTO source_passages (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}`, values);
    rows.source_passages! += batch.length;
    batch = [];
  };
  for (const a of restored) {
    const m = a.manifest;
    if (!m?.file_passages_entry) continue;
    const where = `${model.path}!${m.file_passages_entry}`;
    let n = 0;
    try {
      for await (const rec of readPassages(model.reader, m, 'file')) {
        n++;
        const p = rec.passage as Obj;
        const fileKey = typeof p.file_id === 'string' ? p.file_id : '';
        if (!model.files.has(fileKey)) {
          throw new AgentVaultError('dangling-reference', `${where}:${n}: chunk ${JSON.stringify(p.id)} names file ${JSON.stringify(p.file_id)}, which the agent's entry does not hold`, {
            location: { file: model.path ?? undefined, entry: m.file_passages_entry, line: n },
          });
        }
        if (!A.fileInsert.has(fileKey)) continue; // the file exists in the target with its own chunks
        const key = `${fileKey}\u0000${String(p.id)}`;
        if (written.has(key)) continue; // another agent of the archive carries the same folder
        written.add(key);
        filesWithChunks.add(fileKey);
        const src = model.files.get(fileKey)!.obj.source_id;
        batch.push({
          ...base,
          id: ctx.opts.newIds || typeof p.id !== 'string' ? newId('passage') : p.id,
          text: String(p.text ?? ''),
          embedding_config: JSON.stringify(p.embedding_config ?? null),
          metadata_: JSON.stringify(isObj(p.metadata_) ? p.metadata_ : {}),
          embedding: rec.embedding ? vectorLiteral(rec.embedding, padTo) : null,
          created_at: p.created_at ?? now.created_at,
          updated_at: p.updated_at ?? now.updated_at,
          file_id: A.files.get(fileKey),
          source_id: A.sources.get(src) ?? A.sources.get(String(p.source_id)),
          file_name: typeof p.file_name === 'string' ? p.file_name : String(model.files.get(fileKey)!.obj.file_name ?? ''),
          tags: p.tags === undefined || p.tags === null ? null : JSON.stringify(p.tags),
        });
        if (batch.length >= INSERT_BATCH) await flush();
      }
    } catch (e) {
      if (e instanceof AgentVaultError) throw e;
      throw new AgentVaultError('restore-invalid', `${where}: ${errorMessage(e)}`, { location: { file: model.path ?? undefined, entry: m.file_passages_entry }, kind: 'failed' });
    }
  }
  await flush();
  // a file whose chunks came back keeps the state it was exported with (Letta does not process it again)
  for (const fileKey of filesWithChunks) {
    const o = model.files.get(fileKey)!.obj;
    await tx.query(`UPDATE files SET processing_status = $2, error_message = $3, total_chunks = $4, chunks_embedded = $5 WHERE id = $1`, [
      A.files.get(fileKey),
      typeof o.processing_status === 'string' ? o.processing_status : 'completed',
      o.error_message ?? null,
      num(o.total_chunks),
      num(o.chunks_embedded),
    ]);
  }
});
