/**
 * Error classification shared by both database backends.
 */
import { AgentVaultError, errorMessage } from '../core/errors';

/** SQLSTATE codes and driver messages that mean the server connection is gone. */
const LOST_SQLSTATES = new Set(['57P01', '57P02', '57P03', '57P05']);
const LOST_MESSAGES = [
  'Connection terminated',
  'connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'terminating connection',
  'server closed the connection unexpectedly',
];
const LOST_ERRNOS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ENOTCONN']);

/** True for errors that mean the connection to the server was lost (not for SQL errors). */
export function isConnectionLostError(e: unknown): boolean {
  if (e instanceof AgentVaultError) return e.code === 'db-connection-lost';
  if (!e || typeof e !== 'object') return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (LOST_SQLSTATES.has(code) || code.startsWith('08') || LOST_ERRNOS.has(code)) return true;
  }
  const msg = errorMessage(e);
  return LOST_MESSAGES.some((m) => msg.includes(m));
}

export function connectionLostError(target: string, during: string, cause: unknown): AgentVaultError {
  if (cause instanceof AgentVaultError && cause.code === 'db-connection-lost') return cause;
  return new AgentVaultError('db-connection-lost', `Lost the connection to PostgreSQL at ${target} ${during}: ${errorMessage(cause)}. The transaction was not committed (the server rolls it back).`, {
    hint: 'Check that the server is running and reachable, then run the command again.',
    cause,
  });
}

/** Thrown when a transaction handle is used after its transaction ended. */
export function transactionFinishedError(): AgentVaultError {
  return new AgentVaultError('db-tx-finished', 'A database transaction handle was used after its transaction had ended (internal error).');
}

/** COMMIT answered ROLLBACK: a statement failed inside the transaction and the error was swallowed. */
export function transactionAbortedError(target: string): AgentVaultError {
  return new AgentVaultError('db-tx-aborted', `The transaction on ${target} was rolled back because a statement in it failed (the error was caught and not re-thrown).`);
}

export type TxIsolation = 'read committed' | 'repeatable read' | 'serializable';

export function beginStatement(opts: { isolation?: TxIsolation; readOnly?: boolean } = {}): string {
  const iso = opts.isolation ?? 'read committed';
  if (iso !== 'read committed' && iso !== 'repeatable read' && iso !== 'serializable') {
    throw new AgentVaultError('db-bad-isolation', `Unknown transaction isolation level ${JSON.stringify(iso)}.`);
  }
  return `BEGIN ISOLATION LEVEL ${iso.toUpperCase()}${opts.readOnly ? ' READ ONLY' : ' READ WRITE'}`;
}

/** Double-quotes an identifier (schema name) after checking it is a plain SQL identifier. */
export function quoteIdent(name: string, what = 'Schema name'): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
    throw new AgentVaultError('db-bad-identifier', `${what} ${JSON.stringify(name)} is not a plain SQL identifier (letters, digits and _, starting with a letter or _, at most 63 characters).`);
  }
  return `"${name}"`;
}
