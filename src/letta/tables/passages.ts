/**
 * Letta's `archival_passages` and `passage_tags` tables: rows → the archive's passages (NDJSON)
 * and vectors entries (export), entries → rows (restore: binary COPY with pgvector embeddings
 * zero-padded to the column's dimension, and tags by text COPY, streamed from the archive).
 */
import { AgentVaultError } from '../../core/errors';
import { iterateBatches } from '../../db/cursor';
import type { Queryable } from '../../db/types';
import type { ArchiveWriter } from '../../format/archive';
import { passageBatches, rawPassageBatch } from '../../format/passage-stream';
import { VectorWriter } from '../../format/vectors';
import { binaryKinds, COPY_BATCH_BYTES, CopyBinary, CopyPump, copySql, CopyText, copyTextEscape, TimestampReader } from '../copy';
import { ObjectFieldScanner, decodeString, hasEscapes } from '../../format/json-scan';
import { newId, type LettaDbInfo } from '../sql';
import { restoreInvalid, tableWriter, type Obj, ORM_COLUMNS } from './common';

/** Receives each exported passage's embedding (the Qdrant side of a backup); see ../export.ts. */
export interface PassageVectorObserver {
  add(id: string, vector: Float32Array | null): void;
}

/** Some passages' embeddings at the true dimension (the first `dim` values; what the archive holds). */
export async function readVectorsById(tx: Queryable, info: LettaDbInfo, archiveId: string, dim: number, ids: string[]): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  if (ids.length === 0) return out;
  const trimmed = info.hasSubvector ? `subvector(embedding, 1, $3)` : `((embedding::real[])[1:$3])::vector`;
  const r = await tx.query<{ id: string; v: Buffer }>(
    `SELECT id, vector_send(${trimmed}) AS v FROM archival_passages WHERE archive_id = $1 AND id = ANY($2::text[]) AND embedding IS NOT NULL AND vector_dims(embedding) >= $3`,
    [archiveId, ids, dim],
  );
  for (const row of r.rows) {
    const vec = new Float32Array(dim);
    const bytes = Buffer.from(vec.buffer);
    row.v.copy(bytes, 0, 4, 4 + dim * 4);
    bytes.swap32();
    out.set(row.id, vec);
  }
  return out;
}

/** Without a recorded embedding_dim: the position of the last non-zero value over all passages. */
export async function trueDimension(tx: Queryable, archiveId: string, maxDims: number | null): Promise<number> {
  const r = await tx.query<{ d: number | null }>(
    `SELECT max(u.i)::int AS d FROM archival_passages p, LATERAL unnest(p.embedding::real[]) WITH ORDINALITY AS u(x, i)
      WHERE p.archive_id = $1 AND NOT p.is_deleted AND u.x <> 0`,
    [archiveId],
  );
  return r.rows[0].d ?? maxDims ?? 1;
}

export async function writePassages(
  tx: Queryable,
  writer: ArchiveWriter,
  info: LettaDbInfo,
  archiveId: string,
  agentId: string,
  dim: number,
  count: number,
  passagesEntry: string,
  vectorsEntry: string,
  o: { batchSize: number; progress: (n: number) => Promise<void>; observer?: PassageVectorObserver | null },
): Promise<void> {
  const lineSql = `SELECT p.id, p.text, p.archive_id, p.embedding_config, p.metadata_, p.tags,
            COALESCE((SELECT json_agg(t.tag ORDER BY t.tag) FROM passage_tags t WHERE t.passage_id = p.id AND NOT t.is_deleted), '[]'::json) AS passage_tags,
            p.created_at, p.updated_at, (p.embedding IS NULL) AS no_embedding
       FROM archival_passages p WHERE p.archive_id = $1 AND NOT p.is_deleted ORDER BY p.id`;
  async function* lines(): AsyncGenerator<Buffer> {
    for await (const rows of iterateBatches(tx, lineSql, [archiveId], o.batchSize)) {
      const out: string[] = [];
      for (const r of rows) {
        const { no_embedding, ...rest } = r;
        if (no_embedding) (rest as Obj).embedding = null;
        out.push(JSON.stringify(rest));
      }
      yield Buffer.from(out.join('\n') + '\n', 'utf8');
    }
  }
  await writer.addStream(passagesEntry, lines(), { mediaType: 'application/x-ndjson' });

  await writeVectorsEntry(
    tx,
    writer,
    info,
    { from: 'archival_passages p WHERE p.archive_id = $1 AND NOT p.is_deleted', param: archiveId, what: `agent ${agentId}: passage` },
    dim,
    count,
    vectorsEntry,
    o,
  );
}

/**
 * A `.vectors` entry (docs/FORMAT.md §7.2) from the `embedding` column of the rows `from` selects
 * (a FROM clause with alias `p` and one parameter $1), in `p.id` order: pgvector's binary form of
 * the first `dim` values (big-endian float32 after a 4-byte header), plus a check that nothing but
 * zeros follows (the padding Letta adds). A row without an embedding gets an all-zero record.
 */
export async function writeVectorsEntry(
  tx: Queryable,
  writer: ArchiveWriter,
  info: LettaDbInfo,
  src: { from: string; param: unknown; what: string },
  dim: number,
  count: number,
  vectorsEntry: string,
  o: { batchSize: number; progress: (n: number) => Promise<void>; observer?: PassageVectorObserver | null },
): Promise<void> {
  let n = 0;
  const trimmed = info.hasSubvector ? `subvector(p.embedding, 1, $2)` : `((p.embedding::real[])[1:$2])::vector`;
  const padCheck = info.hasSubvector
    ? `CASE WHEN vector_dims(p.embedding) > $2 THEN vector_norm(subvector(p.embedding, $2 + 1, vector_dims(p.embedding) - $2)) <> 0 ELSE false END`
    : `EXISTS (SELECT 1 FROM unnest((p.embedding::real[])[$2 + 1:]) AS x WHERE x <> 0)`;
  const vecSql = `SELECT p.id, CASE WHEN p.embedding IS NULL THEN NULL WHEN vector_dims(p.embedding) < $2 THEN NULL ELSE vector_send(${trimmed}) END AS v,
            CASE WHEN p.embedding IS NULL THEN false ELSE (vector_dims(p.embedding) < $2 OR ${padCheck}) END AS bad,
            CASE WHEN p.embedding IS NULL THEN 0 ELSE vector_dims(p.embedding) END AS dims
       FROM ${src.from} ORDER BY p.id`;
  const vw = new VectorWriter({ dim, count });
  const consumed = writer.addStream(vectorsEntry, vw.stream, { mediaType: 'application/vnd.agent-vault.vectors' });
  consumed.catch(() => undefined);
  const zero = new Float32Array(dim);
  try {
    for await (const rows of iterateBatches<{ id: string; v: Buffer | null; bad: boolean; dims: number }>(tx, vecSql, [src.param, dim], o.batchSize)) {
      for (const r of rows) {
        if (r.bad) {
          throw new AgentVaultError(
            'vector-dim',
            `${src.what} ${r.id} has an embedding of ${r.dims} values that is not the embedding dimension ${dim} followed by zero padding; the recorded embedding_dim does not fit this vector`,
          );
        }
        if (r.v === null) {
          o.observer?.add(r.id, null);
          await vw.append(zero);
          continue;
        }
        const vec = new Float32Array(dim);
        const bytes = Buffer.from(vec.buffer);
        r.v.copy(bytes, 0, 4, 4 + dim * 4);
        bytes.swap32(); // big-endian → little-endian (and aligned, unlike the driver's buffer)
        o.observer?.add(r.id, vec);
        await vw.append(vec);
      }
      n += rows.length;
      await o.progress(n);
    }
    await vw.end();
  } catch (e) {
    vw.abort(e instanceof Error ? e : new Error(String(e)));
    await consumed.catch(() => undefined);
    throw e;
  }
  await consumed;
}

export const passagesWriter = tableWriter(['archival_passages', 'passage_tags'], async (ctx) => {
  const { tx, model, A, restored, org, user, opts, catalog, rows, step } = ctx;
  // archival passages (binary COPY: embeddings in pgvector's binary form, zero-padded to the
  // column's dimension) and their tags (text COPY), streamed from the archive
  await step('archival_passages');
  if (binaryKinds(catalog, 'archival_passages', PASSAGE_COPY_COLUMNS).some((k, i) => k !== PASSAGE_COPY_KINDS[i])) {
    throw new AgentVaultError('letta-schema-mismatch', `The target table "archival_passages" has column types Agent Vault does not write (its Letta schema revision differs).`, { kind: 'mismatch' });
  }
  const padTo = catalog.get('archival_passages')!.find((c) => c.name === 'embedding')?.vectorDim ?? null;
  const nowMicros = Number((await tx.query<{ us: string }>(`SELECT (EXTRACT(EPOCH FROM now()) * 1000000)::bigint::text AS us`)).rows[0].us);
  const passagePump = new CopyPump(tx, copySql('archival_passages', PASSAGE_COPY_COLUMNS, true), 'archival_passages', (k) => opts.onProgress?.({ step: 'archival_passages', rows: k }));
  const tagPump = new CopyPump(tx, copySql('passage_tags', PASSAGE_TAG_COPY_COLUMNS, false), 'passage_tags', (k) => opts.onProgress?.({ step: 'passage_tags', rows: k }));
  const passageOut = new CopyBinary();
  const tagOut = new CopyText();
  const passageRows = new PassageRows(passageOut, tagOut, new TimestampReader(tx));
  let tagsStarted = false;
  const flushPassages = async () => {
    const n = passageOut.rows;
    if (n) await passagePump.send(passageOut.take(), n);
  };
  const flushTags = async () => {
    const n = tagOut.rows;
    if (!n) return;
    // tags name passages: every passage row so far is sent first (one connection: in order)
    await flushPassages();
    if (!tagsStarted) {
      await passagePump.wait();
      await step('passage_tags');
      tagsStarted = true;
    }
    await tagPump.send(tagOut.take(), n);
  };
  for (const a of restored) {
    if (!A.archiveInsert.has(a.fileId) || !a.manifest?.passages_entry || !model.streams) continue;
    const m = a.manifest;
    const where = `${model.path}!${m.passages_entry}`;
    passageRows.beginAgent({ archiveId: A.archives.get(a.fileId)!, keepIds: A.archiveKeepsIds.has(a.fileId), userId: user, organizationId: org, padTo, nowMicros, where });
    const lines = model.streams.stream(m.passages_entry!);
    const vectors = m.vectors_entry ? await model.streams.chunks(m.vectors_entry) : null;
    try {
      for await (const batch of passageBatches(lines, vectors, where, m.vectors_entry ? `${model.path}!${m.vectors_entry}` : '', rawPassageBatch)) {
        for (let k = 0; k < batch.length; k++) {
          const vb = batch.vecBufs ? batch.vecBufs[k] : null;
          await passageRows.add(batch.lineBufs![k], batch.lineStarts![k], batch.lineEnds![k], vb, vb ? batch.vecStarts![k] : 0, vb ? batch.vecEnds![k] : 0);
          if (passageOut.size >= COPY_BATCH_BYTES) await flushPassages();
          if (tagOut.size >= COPY_BATCH_BYTES) await flushTags();
        }
      }
    } finally {
      await Promise.allSettled([lines.return(undefined), vectors?.close()]);
    }
  }
  await flushPassages();
  await passagePump.wait();
  rows.archival_passages = passagePump.total;
  if (!tagsStarted) {
    await step('passage_tags');
    tagsStarted = true;
  }
  await flushTags();
  await tagPump.wait();
  rows.passage_tags = tagPump.total;
});

// ---------------------------------------------------------------------------------------------
// restore: rows for binary COPY

// ---------------------------------------------------------------------------------------------
// archival passages and their tags

const P_KEYS = ['id', 'text', 'embedding_config', 'metadata_', 'created_at', 'updated_at', 'tags', 'passage_tags', 'embedding'] as const;
const P = Object.fromEntries(P_KEYS.map((k, i) => [k, i])) as Record<(typeof P_KEYS)[number], number>;

/** The columns a passage row has, in COPY order. */
export const PASSAGE_COPY_COLUMNS = ['id', 'text', 'embedding_config', 'metadata_', 'embedding', ...ORM_COLUMNS, 'organization_id', 'archive_id', 'tags'] as const;
export const PASSAGE_COPY_KINDS = ['text', 'text', 'json', 'json', 'vector', 'timestamptz', 'timestamptz', 'bool', 'text', 'text', 'text', 'text', 'json'] as const;
export const PASSAGE_TAG_COPY_COLUMNS = ['id', 'tag', 'passage_id', 'archive_id', ...ORM_COLUMNS, 'organization_id'] as const;

const EMPTY_OBJECT = Buffer.from('{}');
const EMPTY = Buffer.alloc(0);

export interface PassageAgentContext {
  archiveId: string;
  keepIds: boolean;
  userId: string;
  organizationId: string;
  /** the embedding column's dimension (vectors are zero-padded to it), null: unconstrained */
  padTo: number | null;
  /** now() of the transaction, microseconds since 1970 */
  nowMicros: number;
  where: string;
}

export class PassageRows {
  private readonly sc = new ObjectFieldScanner(P_KEYS);
  private ctx!: PassageAgentContext;
  private constants!: { user: Buffer; org: Buffer; archive: Buffer; tagTail: Buffer };
  private line = 0;

  constructor(
    readonly out: CopyBinary,
    readonly tags: CopyText,
    private readonly timestamps: TimestampReader,
  ) {}

  beginAgent(ctx: PassageAgentContext): void {
    this.ctx = ctx;
    this.line = 0;
    this.constants = {
      user: Buffer.from(ctx.userId, 'utf8'),
      org: Buffer.from(ctx.organizationId, 'utf8'),
      archive: Buffer.from(ctx.archiveId, 'utf8'),
      tagTail: Buffer.from(`\t${copyTextEscape(ctx.archiveId)}\tnow\tnow\tf\t${copyTextEscape(ctx.userId)}\t${copyTextEscape(ctx.userId)}\t${copyTextEscape(ctx.organizationId)}\n`, 'utf8'),
    };
  }

  /**
   * Appends the row of the passage line b[s, e), with its embedding v[vs, ve) (little-endian
   * float32; v null: none), and rows for its tags.
   */
  async add(b: Buffer, s: number, e: number, v: Buffer | null, vs: number, ve: number): Promise<void> {
    const { sc, out, ctx, constants: c } = this;
    const line = ++this.line;
    if (!sc.scan(b, s, e)) throw restoreInvalid(ctx.where, `line ${line} is not a JSON object`);
    const created = sc.string(b, P.created_at);
    const updated = sc.string(b, P.updated_at);
    const createdUs = created === null ? ctx.nowMicros : await this.timestamps.micros(created);
    const updatedUs = updated === null ? ctx.nowMicros : await this.timestamps.micros(updated);
    const orig = ctx.keepIds ? sc.string(b, P.id) : null;
    const id = orig ?? newId('passage');
    out.beginRow(13);
    out.str(id);
    // text: NOT NULL, '' when missing
    const ts = sc.starts[P.text];
    if (ts >= 0 && b[ts] === 0x22) {
      const te = sc.ends[P.text];
      if (hasEscapes(b, ts, te)) out.str(decodeString(b, ts, te));
      else out.bytes(b, ts + 1, te - 1);
    } else out.constant(EMPTY);
    if (sc.isNull(b, P.embedding_config)) out.nul();
    else out.bytes(b, sc.starts[P.embedding_config], sc.ends[P.embedding_config]);
    if (sc.isNull(b, P.metadata_)) out.constant(EMPTY_OBJECT);
    else out.bytes(b, sc.starts[P.metadata_], sc.ends[P.metadata_]);
    if (v === null || (sc.has(P.embedding) && sc.isNull(b, P.embedding))) out.nul();
    else out.vector(v, vs, ve, ctx.padTo);
    out.timestamp(createdUs);
    out.timestamp(updatedUs);
    out.bool(false);
    out.constant(c.user);
    out.constant(c.user);
    out.constant(c.org);
    out.constant(c.archive);
    if (sc.isNull(b, P.tags)) out.nul();
    else out.bytes(b, sc.starts[P.tags], sc.ends[P.tags]);
    // tags: passage_tags (the tag rows at export), else the tags column
    const k = !sc.isNull(b, P.passage_tags) && b[sc.starts[P.passage_tags]] === 0x5b ? P.passage_tags : !sc.isNull(b, P.tags) && b[sc.starts[P.tags]] === 0x5b ? P.tags : -1;
    if (k >= 0 && sc.ends[k] - sc.starts[k] > 2) {
      let list: unknown;
      try {
        list = JSON.parse(b.toString('utf8', sc.starts[k], sc.ends[k]));
      } catch {
        throw restoreInvalid(ctx.where, `line ${line}: "${P_KEYS[k]}" is not valid JSON`);
      }
      const seen = new Set<string>();
      for (const t of Array.isArray(list) ? list : []) {
        if (typeof t !== 'string' || seen.has(t)) continue;
        seen.add(t);
        const tags = this.tags;
        tags.str(newId('passage-tag'));
        tags.tab();
        tags.str(t);
        tags.tab();
        tags.str(id);
        tags.raw(c.tagTail);
        tags.rows++;
      }
    }
  }
}
