/**
 * The per-table modules (src/letta/tables/): the restore steps come from LETTA_TABLES (the one
 * list of Letta's tables in foreign-key order), every table is written by exactly one writer, and
 * the writers run in that order. No database.
 */
import { strict as assert } from 'node:assert';
import { LETTA_TABLES } from '../../src/letta/ddl';
import { RESTORE_STEPS } from '../../src/letta/restore';
import { EXTRA_COLUMNS, TABLE_WRITERS, WRITTEN_TABLES } from '../../src/letta/tables/index';

describe('letta tables: restore steps derived from LETTA_TABLES', () => {
  it('the steps are the deletions, then the written tables in LETTA_TABLES order', () => {
    assert.equal(RESTORE_STEPS[0], 'delete');
    assert.deepEqual(RESTORE_STEPS.slice(1), [...WRITTEN_TABLES]);
    const pos = WRITTEN_TABLES.map((t) => (LETTA_TABLES as readonly string[]).indexOf(t));
    assert.ok(
      pos.every((p) => p >= 0),
      'every written table is one of LETTA_TABLES',
    );
    assert.deepEqual(
      pos,
      [...pos].sort((a, b) => a - b),
      'in foreign-key order',
    );
  });

  it('each written table has exactly one writer, and the writers run in the order of their tables', () => {
    const order = TABLE_WRITERS.flatMap((w) => [...w.tables]);
    assert.deepEqual(order, [...WRITTEN_TABLES]);
    assert.equal(new Set(order).size, order.length);
  });

  it('the columns kept in agent_vault.rows name tables of LETTA_TABLES, and never the columns of a row id', () => {
    for (const [table, cols] of Object.entries(EXTRA_COLUMNS)) {
      assert.ok((LETTA_TABLES as readonly string[]).includes(table), table);
      assert.ok(!cols.includes('id'), `${table}: id`);
      assert.ok(cols.includes('created_at'), `${table}: created_at`);
    }
  });
});
