/**
 * The writing of a restore, inside its transaction: the deletions of replaced agents (and what
 * only they owned), then every table's writer (../tables/index.ts) in foreign-key order.
 */
import type { Queryable } from '../../db/types';
import { bulkInsert, describeWriteError, loadColumns } from '../sql';
import type { Obj, WriteContext } from '../tables/common';
import { TABLE_WRITERS, WRITTEN_TABLES, type RestoreStep } from '../tables/index';
import type { Planned, SourceModel } from './model';
import type { RestoreOptions } from './types';

export async function writeAll(tx: Queryable, model: SourceModel, P: Planned, opts: RestoreOptions): Promise<Partial<Record<RestoreStep, number>>> {
  const { assign: A, restored, org, user, plan } = P;
  const rows: Partial<Record<RestoreStep, number>> = {};
  const catalog = await loadColumns(tx, WRITTEN_TABLES);
  const step = async (s: RestoreStep) => {
    await opts.onStep?.(s);
  };
  const identities = new Map<string, Obj>();
  for (const a of restored) for (const i of a.identities) if (typeof i.id === 'string' && !identities.has(i.id)) identities.set(i.id, i);
  const ctx: WriteContext = {
    tx,
    model,
    A,
    restored,
    plan,
    org,
    user,
    opts,
    catalog,
    rows,
    base: { is_deleted: false, organization_id: org, _created_by_id: user, _last_updated_by_id: user },
    stamps: (extra, fallback) => ({ created_at: extra.created_at ?? fallback ?? null, updated_at: extra.updated_at ?? null }),
    now: { created_at: 'now()', updated_at: 'now()' },
    newIdsOr: (id) => (opts.newIds ? undefined : id),
    step,
    ins: async (table, columns, data, o = {}) => {
      await step(table);
      const n = await bulkInsert(tx, catalog, table, columns, data, { ...o, onBatch: (k) => opts.onProgress?.({ step: table, rows: k }) });
      rows[table] = (rows[table] ?? 0) + n;
    },
    msgMaps: new Map(),
    identities,
  };

  // 0. deletions of replaced agents and what only they owned
  await step('delete');
  const del = plan.deletes;
  try {
    if (del.agents.length) {
      await tx.query(`DELETE FROM groups WHERE id = ANY($1::text[])`, [del.groups]);
      await tx.query(`DELETE FROM agents_tags WHERE agent_id = ANY($1::text[])`, [del.agents]);
      await tx.query(`DELETE FROM archives WHERE id = ANY($1::text[])`, [del.archives]);
      await tx.query(`DELETE FROM agents WHERE id = ANY($1::text[])`, [del.agents]);
      await tx.query(`UPDATE block SET current_history_entry_id = NULL WHERE id = ANY($1::text[])`, [del.blocks]);
      await tx.query(`DELETE FROM blocks_tags WHERE block_id = ANY($1::text[])`, [del.blocks]);
      await tx.query(`DELETE FROM block WHERE id = ANY($1::text[])`, [del.blocks]);
    }
  } catch (e) {
    throw describeWriteError(e, 'agents');
  }

  for (const w of TABLE_WRITERS) await w.write(ctx);
  return rows;
}
