/**
 * A connection lost at COMMIT leaves the outcome open: the server may have committed (the COMMIT
 * arrived, the answer was lost) or rolled back (the COMMIT never arrived; the server aborts the
 * transaction when it notices the client is gone). Reporting "not committed" then is false, and a
 * rerun fails or, with --on-conflict=copy, duplicates the agents.
 *
 * So a read-write transaction takes its transaction id before COMMIT (`txid_current()`, with the
 * backend's pid), and when the connection is lost at COMMIT a NEW connection asks the server
 * (`txid_status(txid)`): 'committed', 'aborted', or 'in progress' while the old backend has not yet
 * noticed that its client is gone (then we wait, and after a while end that backend with
 * `pg_terminate_backend`, which the same role may do, so that it aborts). When no new connection
 * can be made, or the server no longer knows the id, the outcome is 'unknown' — and is reported as
 * such, with the id to look up.
 */
import { AgentVaultError, errorMessage } from '../core/errors';
import type { Queryable } from './types';

export type CommitOutcome = 'committed' | 'aborted' | 'unknown';

/** What a read-write transaction records before COMMIT. */
export interface TxIdentity {
  /** txid_current() as text (64-bit, epoch included). */
  txid: string;
  /** pg_backend_pid() of the connection that ran the transaction. */
  pid: number;
}

/** The statement that records a transaction's identity (run right after BEGIN). */
export const TX_IDENTITY_SQL = 'SELECT txid_current()::text AS txid, pg_backend_pid() AS pid';

export interface ResolveOptions {
  /** Opens a new connection (a checker); it is closed with `release`. */
  connect: () => Promise<{ q: Queryable; release: () => void }>;
  /** Give up after this long (default 20 s). */
  timeoutMs?: number;
  /** Poll interval (default 200 ms). */
  pollMs?: number;
  /** After this long 'in progress', terminate the old backend so that it aborts (default 3 s). */
  terminateAfterMs?: number;
}

export interface CommitResolution {
  outcome: CommitOutcome;
  /** How it was determined (for messages). */
  detail: string;
}

/** Asks a new connection whether the transaction `tx` committed. Never throws. */
export async function resolveLostCommit(tx: TxIdentity, opts: ResolveOptions): Promise<CommitResolution> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const pollMs = opts.pollMs ?? 200;
  const terminateAfter = opts.terminateAfterMs ?? 3_000;
  const t0 = Date.now();
  let lastError = '';
  let terminated = false;
  while (Date.now() - t0 < timeoutMs) {
    let conn: { q: Queryable; release: () => void } | undefined;
    try {
      conn = await opts.connect();
      for (;;) {
        const r = await conn.q.query<{ s: string | null }>('SELECT txid_status($1::bigint) AS s', [tx.txid]);
        const s = r.rows[0]?.s ?? null;
        if (s === 'committed') return { outcome: 'committed', detail: `a new connection confirmed that transaction ${tx.txid} committed` };
        if (s === 'aborted') return { outcome: 'aborted', detail: `a new connection confirmed that transaction ${tx.txid} was rolled back` };
        if (s === null) return { outcome: 'unknown', detail: `the server no longer knows transaction ${tx.txid} (txid_status is NULL)` };
        // 'in progress': the old backend has not noticed that its client is gone
        if (!terminated && Date.now() - t0 >= terminateAfter) {
          terminated = true;
          await conn.q.query('SELECT pg_terminate_backend($1)', [tx.pid]).catch(() => undefined);
        }
        if (Date.now() - t0 >= timeoutMs) return { outcome: 'unknown', detail: `transaction ${tx.txid} was still in progress after ${Math.round(timeoutMs / 1000)} s` };
        await new Promise((res) => setTimeout(res, pollMs));
      }
    } catch (e) {
      lastError = errorMessage(e);
      await new Promise((res) => setTimeout(res, pollMs));
    } finally {
      conn?.release();
    }
  }
  return { outcome: 'unknown', detail: `no new connection could ask the server${lastError ? ` (${lastError})` : ''}` };
}

/** The error for a COMMIT whose connection was lost, after asking the server. */
export function lostCommitError(target: string, tx: TxIdentity, res: CommitResolution, cause: unknown): AgentVaultError {
  if (res.outcome === 'aborted') {
    // the same code as any other lost connection (the transaction was not committed), now confirmed
    return new AgentVaultError(
      'db-connection-lost',
      `Lost the connection to PostgreSQL at ${target} at COMMIT (${errorMessage(cause)}); ${res.detail}: nothing was changed (the transaction was not committed).`,
      { kind: 'connection', hint: 'Check that the server is reachable, then run the command again.', cause },
    );
  }
  return new AgentVaultError('db-commit-unknown', `Lost the connection to PostgreSQL at ${target} at COMMIT (${errorMessage(cause)}); whether the transaction committed is unknown: ${res.detail}.`, {
    kind: 'commitUnknown',
    hint: `Before running it again, ask the server: SELECT txid_status(${tx.txid}); — 'committed' means the restore is complete, 'aborted' that nothing was changed.`,
    cause,
  });
}
