/**
 * The small database interface every Letta adapter works through. Two backends:
 * node-postgres (`pg`) against a real server, and PGlite (Postgres in WASM) through
 * its own API. Only `src/db/*` knows which one is in use.
 */

export interface QueryResult<R = Record<string, any>> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  /** One statement, `$1…$n` parameters. */
  query<R = Record<string, any>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Several statements, no parameters (DDL scripts). */
  exec(sql: string): Promise<void>;
  /**
   * `COPY <table> FROM STDIN …` fed with `data` (any COPY format, e.g. `WITH (FORMAT binary)`);
   * resolves to the number of rows copied. Implemented by both backends' transaction handles
   * (bulk loads without per-value text formatting); optional for other Queryables.
   */
  copyFrom?(sql: string, data: readonly Buffer[]): Promise<number>;
}

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

export interface TransactionOptions {
  isolation?: IsolationLevel;
  readOnly?: boolean;
}

export interface Db extends Queryable {
  readonly kind: 'pg' | 'pglite';
  /** Runs `fn` in one transaction: COMMIT when it resolves, ROLLBACK when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, opts?: TransactionOptions): Promise<T>;
  close(): Promise<void>;
}
