/**
 * Bounded-memory reading of large result sets with a server-side cursor
 * (`DECLARE … NO SCROLL CURSOR FOR <query>` + `FETCH n`). Works on both backends.
 * The cursor lives only inside a transaction: pass the `tx` handle of `db.transaction()`
 * (a repeatable-read, read-only transaction gives a consistent snapshot for an export).
 */
import { AgentVaultError } from '../core/errors';
import type { Queryable } from './types';

let cursorSeq = 0;

/** Yields the rows of `sql` in arrays of at most `batchSize` rows, one FETCH per array. */
export async function* iterateBatches<R = Record<string, any>>(tx: Queryable, sql: string, params: readonly unknown[] = [], batchSize = 500): AsyncGenerator<R[], void, undefined> {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new AgentVaultError('db-bad-batch-size', `Cursor batch size must be a positive integer (got ${batchSize}).`);
  }
  const name = `av_cursor_${++cursorSeq}`;
  await tx.query(`DECLARE ${name} NO SCROLL CURSOR FOR ${sql}`, params);
  let open = true;
  // the next batch is fetched while the consumer works on this one (the server produces rows
  // while we process them); at most two batches are held
  let pending: Promise<{ rows: R[] }> | null = tx.query<R>(`FETCH FORWARD ${batchSize} FROM ${name}`);
  try {
    for (;;) {
      const r: { rows: R[] } = await pending!;
      pending = null;
      const more = r.rows.length >= batchSize;
      if (more) {
        pending = tx.query<R>(`FETCH FORWARD ${batchSize} FROM ${name}`);
        pending.catch(() => undefined);
      }
      if (r.rows.length > 0) yield r.rows;
      if (!more) break;
    }
    open = false;
    await tx.query(`CLOSE ${name}`);
  } finally {
    // Early exit (break/throw in the consumer): close the cursor (after the fetch in flight). If
    // the transaction is already aborted, CLOSE fails too; the original error is the one that matters.
    if (pending) await pending.catch(() => undefined);
    if (open) await tx.query(`CLOSE ${name}`).catch(() => undefined);
  }
}

/**
 * Yields the rows of `sql` one at a time while fetching `batchSize` rows per round trip,
 * so memory stays bounded by the batch size. `tx` must be a transaction handle.
 */
export async function* iterateRows<R = Record<string, any>>(tx: Queryable, sql: string, params: readonly unknown[] = [], batchSize = 500): AsyncGenerator<R, void, undefined> {
  for await (const batch of iterateBatches<R>(tx, sql, params, batchSize)) {
    yield* batch;
  }
}
