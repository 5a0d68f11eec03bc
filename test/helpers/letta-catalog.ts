/**
 * Letta's catalog as the project knows it (../shared/reference/letta-schema/columns.txt and
 * constraints.txt, read on PostgreSQL 15 after Letta's full alembic chain) and readers of a live
 * database's catalog in the same notation. Used by test/letta/schema-conformance.test.ts (the
 * project's DDL) and test/letta-server/ (a database migrated by the real Letta server).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Db } from '../../src/db/types';
import { SHARED_DIR } from './paths';

export const REF_DIR = path.join(SHARED_DIR, 'reference', 'letta-schema');

export function readLines(file: string): string[] {
  return readFileSync(path.join(REF_DIR, file), 'utf8')
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
}

/** columns.txt line "table: col type[ NN][ def=…], …" → one item per column, in order. */
export function splitColumnsLine(line: string): { table: string; columns: string[] } {
  const i = line.indexOf(': ');
  const table = line.slice(0, i);
  // Columns are separated by ", " followed by the next column name and a space.
  const columns = line.slice(i + 2).split(/, (?=[_a-z][_a-z0-9]* )/);
  return { table, columns };
}

export const REF_COLUMNS = readLines('columns.txt').map(splitColumnsLine);
export const REF_TABLES = REF_COLUMNS.map((t) => t.table);
export const REF_CONSTRAINTS = readLines('constraints.txt');

export async function liveColumns(db: Db, tables: readonly string[]): Promise<Map<string, string[]>> {
  const r = await db.query<{ table: string; name: string; type: string; notnull: boolean; def: string | null }>(
    `SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS def
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        AND c.relname = ANY($1::text[])
      ORDER BY c.relname, a.attnum`,
    [tables],
  );
  const out = new Map<string, string[]>();
  for (const row of r.rows) {
    const spec = `${row.name} ${row.type}${row.notnull ? ' NN' : ''}${row.def !== null ? ` def=${row.def}` : ''}`;
    if (!out.has(row.table)) out.set(row.table, []);
    out.get(row.table)!.push(spec);
  }
  return out;
}

export async function liveConstraints(db: Db, tables: readonly string[]): Promise<string[]> {
  // PostgreSQL 18 (PGlite) also lists NOT NULL constraints (contype 'n'); the reference was
  // read on PostgreSQL 15, where they are not constraints. Nullability is checked per column.
  const r = await db.query<{ table: string; contype: string; conname: string; def: string }>(
    `SELECT c.relname AS table, con.contype::text AS contype, con.conname AS conname, pg_get_constraintdef(con.oid) AS def
       FROM pg_constraint con
       JOIN pg_class c ON c.oid = con.conrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND con.contype <> 'n' AND c.relname = ANY($1::text[])
      ORDER BY 1, 2, 3`,
    [tables],
  );
  return r.rows.map((x) => `${x.table} ${x.contype} ${x.conname}: ${x.def}`);
}

/** Lines only in `expected` (-) and only in `actual` (+). */
export function setDiff(expected: readonly string[], actual: readonly string[]): string[] {
  const a = new Set(actual);
  const e = new Set(expected);
  return [...expected.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...actual.filter((l) => !e.has(l)).map((l) => `+ ${l}`)];
}

export function compareColumns(live: Map<string, string[]>): string[] {
  const problems: string[] = [];
  for (const { table, columns } of REF_COLUMNS) {
    const got = live.get(table);
    if (!got) {
      problems.push(`table ${table} is missing`);
      continue;
    }
    const diff = setDiff(columns, got);
    if (diff.length) problems.push(`${table}:`, ...diff.map((d) => `  ${d}`));
    else if (columns.join('\n') !== got.join('\n')) {
      problems.push(`${table}: column order differs`, `  - ${columns.map((c) => c.split(' ')[0]).join(', ')}`, `  + ${got.map((c) => c.split(' ')[0]).join(', ')}`);
    }
  }
  return problems;
}
