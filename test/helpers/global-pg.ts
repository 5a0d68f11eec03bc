/**
 * The one PostgreSQL server of a test run, started lazily on first use and stopped when the
 * run ends.
 *
 *   import { sharedTestPostgres } from '../helpers/global-pg';
 *   const server = await sharedTestPostgres();          // { url, adminUrl, createDatabase, … }
 *   const { url } = await server.createDatabase();       // a database of your own
 *
 * Stopping: this file is listed in .mocharc.json `require`, so mocha calls
 * `mochaGlobalTeardown` after the whole run; a process 'exit' handler in pgcluster.ts is the
 * fallback when a test file is run some other way. Test files never stop the shared server.
 * Starting costs ~2-3 s (initdb + start) and happens only if some test asks for it.
 */
import { startTestPostgres, type TestPostgres } from './pgcluster';

let shared: Promise<TestPostgres> | undefined;

export function sharedTestPostgres(): Promise<TestPostgres> {
  if (!shared) {
    shared = startTestPostgres();
    // A failed start is reported to every caller, and retried by none.
    shared.catch(() => undefined);
  }
  return shared;
}

export async function stopSharedTestPostgres(): Promise<void> {
  const s = shared;
  shared = undefined;
  if (!s) return;
  const server = await s.catch(() => undefined);
  await server?.stop();
}

/** Mocha global fixture (this file is loaded through .mocharc.json `require`). */
export async function mochaGlobalTeardown(): Promise<void> {
  await stopSharedTestPostgres();
}
