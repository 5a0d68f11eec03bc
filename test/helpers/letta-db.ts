/**
 * Databases with Letta's schema for tests, on either backend.
 *
 *   const db = await freshLettaDb('pg');      // new database on the shared PostgreSQL 15 server
 *   const db = await freshLettaDb('pglite');  // new in-memory PGlite
 *   … ; await db.close();
 *
 * Each call returns an independent, empty (default org + user only) database at alembic head.
 * For speed the schema is built once per run and copied: on pg via CREATE DATABASE … TEMPLATE,
 * on PGlite by loading a dump of a schema-initialised instance (~2 s instead of ~5 s + DDL).
 */
import { openPg } from '../../src/db/pg';
import { openPglite, type PgliteDb } from '../../src/db/pglite';
import type { Db } from '../../src/db/types';
import { createLettaSchema } from '../../src/letta/ddl';
import { sharedTestPostgres } from './global-pg';

export type DbKind = 'pg' | 'pglite';
export const DB_KINDS: readonly DbKind[] = ['pg', 'pglite'];

/** A new database without any Letta objects (search_path = letta, schema not created). */
export async function freshEmptyDb(kind: DbKind): Promise<Db> {
  if (kind === 'pglite') return openPglite();
  const server = await sharedTestPostgres();
  const { url } = await server.createDatabase();
  return openPg({ url });
}

let pgTemplate: Promise<string> | undefined;
let pgliteDump: Promise<Blob> | undefined;

function pgTemplateName(): Promise<string> {
  pgTemplate ??= (async () => {
    const server = await sharedTestPostgres();
    const { name, url } = await server.createDatabase({ name: `av_letta_tpl_${process.pid}` });
    const db = await openPg({ url });
    try {
      await createLettaSchema(db);
    } finally {
      await db.close();
    }
    return name;
  })();
  return pgTemplate;
}

export async function freshLettaDb(kind: DbKind): Promise<Db> {
  if (kind === 'pg') {
    const server = await sharedTestPostgres();
    const template = await pgTemplateName();
    const { url } = await server.createDatabase({ template });
    return openPg({ url });
  }
  pgliteDump ??= (async () => {
    const first: PgliteDb = await openPglite();
    try {
      await createLettaSchema(first);
      return await first.dump();
    } finally {
      await first.close();
    }
  })();
  return openPglite({ loadDump: await pgliteDump });
}
