/**
 * The project's Letta DDL (src/letta/ddl.ts) must build exactly the catalog that Letta's own
 * migrations build (../shared/reference/letta-schema/columns.txt + constraints.txt), on a real
 * PostgreSQL 15 + pgvector server and on PGlite.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Db } from '../../src/db/types';
import { createLettaSchema, DEFAULT_ORG_ID, DEFAULT_USER_ID, LETTA_ENUMS, LETTA_HEAD_REVISION, LETTA_TABLES } from '../../src/letta/ddl';
import { freshEmptyDb, type DbKind } from '../helpers/letta-db';
import { SHARED_DIR } from '../helpers/paths';

const REF_DIR = path.join(SHARED_DIR, 'reference', 'letta-schema');

function readLines(file: string): string[] {
  return readFileSync(path.join(REF_DIR, file), 'utf8')
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
}

/** columns.txt line "table: col type[ NN][ def=…], …" → one item per column, in order. */
function splitColumnsLine(line: string): { table: string; columns: string[] } {
  const i = line.indexOf(': ');
  const table = line.slice(0, i);
  // Columns are separated by ", " followed by the next column name and a space.
  const columns = line.slice(i + 2).split(/, (?=[_a-z][_a-z0-9]* )/);
  return { table, columns };
}

const REF_COLUMNS = readLines('columns.txt').map(splitColumnsLine);
const REF_TABLES = REF_COLUMNS.map((t) => t.table);
const REF_CONSTRAINTS = readLines('constraints.txt');

async function liveColumns(db: Db, tables: readonly string[]): Promise<Map<string, string[]>> {
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

async function liveConstraints(db: Db, tables: readonly string[]): Promise<string[]> {
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
function setDiff(expected: readonly string[], actual: readonly string[]): string[] {
  const a = new Set(actual);
  const e = new Set(expected);
  return [...expected.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...actual.filter((l) => !e.has(l)).map((l) => `+ ${l}`)];
}

function compareColumns(live: Map<string, string[]>): string[] {
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

for (const kind of ['pg', 'pglite'] as DbKind[]) {
  describe(`Letta schema conformance (${kind === 'pg' ? 'PostgreSQL 15 + pgvector' : 'PGlite + pgvector'})`, function () {
    this.timeout(180_000);
    let db: Db;

    before(async function () {
      db = await freshEmptyDb(kind);
      await createLettaSchema(db);
    });
    after(async () => {
      await db?.close();
    });

    it('creates every table of columns.txt with identical columns (name, type, NOT NULL, default, order)', async () => {
      const live = await liveColumns(db, REF_TABLES);
      const problems = compareColumns(live);
      assert.equal(REF_TABLES.length, 35, 'columns.txt lists 35 tables');
      assert.deepEqual(problems, [], `columns differ from columns.txt (- expected, + live):\n${problems.join('\n')}`);
    });

    it('creates exactly the constraints of constraints.txt (type, name, definition)', async () => {
      const live = await liveConstraints(db, REF_TABLES);
      const diff = setDiff(REF_CONSTRAINTS, live);
      assert.deepEqual(diff, [], `constraints differ from constraints.txt (- expected, + live):\n${diff.join('\n')}`);
      assert.equal(live.length, REF_CONSTRAINTS.length);
    });

    it('has the enum types, the message_seq_id sequence, alembic_version at head and the default org/user', async () => {
      const enums = await db.query<{ typname: string; labels: string[] }>(
        `SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
           FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE n.nspname = current_schema() GROUP BY t.typname ORDER BY t.typname`,
      );
      assert.deepEqual(Object.fromEntries(enums.rows.map((r) => [r.typname, r.labels])), LETTA_ENUMS);
      const seq = await db.query(`SELECT data_type, start_value::text AS start FROM information_schema.sequences WHERE sequence_schema = current_schema()`);
      assert.deepEqual(seq.rows, [{ data_type: 'bigint', start: '1' }]);
      const rev = await db.query('SELECT version_num FROM alembic_version');
      assert.deepEqual(rev.rows, [{ version_num: LETTA_HEAD_REVISION }]);
      const org = await db.query('SELECT id, name, privileged_tools FROM organizations');
      assert.deepEqual(org.rows, [{ id: DEFAULT_ORG_ID, name: 'default_org', privileged_tools: false }]);
      const user = await db.query('SELECT id, name, organization_id FROM users');
      assert.deepEqual(user.rows, [{ id: DEFAULT_USER_ID, name: 'default_user', organization_id: DEFAULT_ORG_ID }]);
      const ext = await db.query(`SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'`);
      assert.deepEqual(ext.rows, [{ nspname: 'letta' }]);
    });

    it('LETTA_TABLES names every table of columns.txt once, in an order every foreign key allows', async () => {
      assert.deepEqual([...LETTA_TABLES].sort(), [...REF_TABLES].sort());
      const fks = await db.query<{ child: string; parent: string; conname: string }>(
        `SELECT c.relname AS child, p.relname AS parent, con.conname
           FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class p ON p.oid = con.confrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE con.contype = 'f' AND n.nspname = current_schema()`,
      );
      const pos = new Map<string, number>(LETTA_TABLES.map((t, i) => [t, i]));
      const late = fks.rows
        .filter((f) => pos.has(f.child) && pos.has(f.parent) && f.child !== f.parent)
        .filter((f) => pos.get(f.parent)! > pos.get(f.child)!)
        .map((f) => `${f.child}.${f.conname} → ${f.parent}`);
      // The documented cycle: block.current_history_entry_id is set after block_history rows exist.
      assert.deepEqual(late, ['block.fk_block_current_history_entry → block_history']);
    });

    it('refuses to create the schema twice', async () => {
      await assert.rejects(createLettaSchema(db), (e: { code?: string }) => e.code === '42P07' || e.code === '42710');
      const rev = await db.query('SELECT count(*)::int AS n FROM alembic_version');
      assert.equal(rev.rows[0].n, 1);
    });
  });
}

