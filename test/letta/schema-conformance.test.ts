/**
 * The project's Letta DDL (src/letta/ddl.ts) must build exactly the catalog that Letta's own
 * migrations build (../shared/reference/letta-schema/columns.txt + constraints.txt), on a real
 * PostgreSQL 15 + pgvector server and on PGlite.
 */
import assert from 'node:assert/strict';
import type { Db } from '../../src/db/types';
import { createLettaSchema, DEFAULT_ORG_ID, DEFAULT_USER_ID, LETTA_ENUMS, LETTA_HEAD_REVISION, LETTA_TABLES } from '../../src/letta/ddl';
import { freshEmptyDb, type DbKind } from '../helpers/letta-db';
import { compareColumns, liveColumns, liveConstraints, REF_CONSTRAINTS, REF_TABLES, setDiff } from '../helpers/letta-catalog';

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
