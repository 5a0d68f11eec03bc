/**
 * The real Letta server's schema (letta 0.16.8, scripts/provision-letta.sh): a database built by
 * Letta's own alembic migrations is at the head revision the project targets, and its catalog
 * equals the project's DDL and the reference catalog (../shared/reference/letta-schema/) for every
 * table the project reads or writes. Nothing leaves the machine (models: openai-stub.ts).
 */
import { strict as assert } from 'node:assert';
import type { Db } from '../../src/db/types';
import { openPg } from '../../src/db/pg';
import { createLettaSchema, LETTA_ENUMS, LETTA_HEAD_REVISION, LETTA_TABLES } from '../../src/letta/ddl';
import { compareColumns, liveColumns, liveConstraints, REF_CONSTRAINTS, setDiff } from '../helpers/letta-catalog';
import { freshEmptyDb } from '../helpers/letta-db';
import { LETTA_ALEMBIC_HEAD, startLettaServer, type LettaServer } from '../helpers/letta-server';
import { startOpenAiStub, type OpenAiStub } from './openai-stub';
import { KNOWN_STARTUP_OUTBOUND } from './support';

describe('real Letta server: the schema Letta 0.16.8 builds', function () {
  this.timeout(600_000);
  let stub: OpenAiStub;
  let letta: LettaServer;
  let db: Db;

  before(async function () {
    stub = await startOpenAiStub();
    letta = await startLettaServer({ stub });
    db = await openPg({ url: letta.db.url });
  });
  after(async () => {
    await db?.close();
    await letta?.stop();
    await stub?.close();
  });

  describe('1. schema: the database built by Letta 0.16.8 migrations', () => {
    it('is at alembic head 1c28e167b74f, the revision the project targets', async () => {
      const rev = await db.query<{ version_num: string }>('SELECT version_num FROM alembic_version');
      assert.deepEqual(rev.rows, [{ version_num: LETTA_ALEMBIC_HEAD }]);
      assert.equal(LETTA_HEAD_REVISION, LETTA_ALEMBIC_HEAD);
    });

    it('has the columns and constraints of the project DDL and of the reference catalog for every table the project uses', async () => {
      const live = await liveColumns(db, LETTA_TABLES);
      assert.deepEqual(compareColumns(live), [], 'live Letta catalog vs columns.txt');
      const ours = await freshEmptyDb('pg');
      try {
        await createLettaSchema(ours);
        const mine = await liveColumns(ours, LETTA_TABLES);
        const diffs: string[] = [];
        for (const t of LETTA_TABLES) {
          const d = setDiff(mine.get(t) ?? [], live.get(t) ?? []);
          if (d.length) diffs.push(`${t}:`, ...d.map((x) => `  ${x}`));
          else assert.deepEqual(live.get(t), mine.get(t), `${t}: column order`);
        }
        assert.deepEqual(diffs, [], `project DDL (-) vs Letta's migrations (+):\n${diffs.join('\n')}`);
        const liveCons = await liveConstraints(db, LETTA_TABLES);
        const myCons = await liveConstraints(ours, LETTA_TABLES);
        assert.deepEqual(setDiff(myCons, liveCons), [], 'constraints: project DDL (-) vs Letta (+)');
        assert.deepEqual(setDiff(REF_CONSTRAINTS, liveCons), [], 'constraints: constraints.txt (-) vs Letta (+)');
      } finally {
        await ours.close();
      }
    });

    it('has the enum types the project knows, and the message_seq_id sequence', async () => {
      const enums = await db.query<{ typname: string; labels: string[] }>(
        `SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
           FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE n.nspname = current_schema() GROUP BY t.typname ORDER BY t.typname`,
      );
      const live = Object.fromEntries(enums.rows.map((r) => [r.typname, r.labels]));
      for (const [name, labels] of Object.entries(LETTA_ENUMS)) assert.deepEqual(live[name], labels, `enum ${name}`);
      const seq = await db.query(`SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = current_schema() AND sequence_name = 'message_seq_id'`);
      assert.equal(seq.rowCount, 1);
    });

    it('Letta started without a server error and without reaching another host', () => {
      assert.deepEqual(letta.serverErrors(), []);
      assert.deepEqual(
        letta.outbound.filter((o) => !KNOWN_STARTUP_OUTBOUND.includes(o)),
        [],
        'outbound attempts other than the documented start-up one',
      );
    });
  });
});
