/**
 * Letta fidelity of a restore (issue 12): what Letta's own import writes, and what a round trip
 * keeps. Facts from Letta 0.16.8 (letta/services/group_manager.py, agent_serialization_manager.py).
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Db } from '../../src/db/types';
import { restoreAgents } from '../../src/letta/restore';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR } from '../helpers/paths';

describe('letta restore fidelity (issue 12)', function () {
  this.timeout(120000);
  let dir: string;
  let db: Db;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-fidelity-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    db = await freshLettaDb('pg');
  });
  afterEach(async () => db.close());

  it('a sleeptime group gets turns_counter -1 when sleeptime_agent_frequency is set, as Letta\'s create_group writes it', async () => {
    await restoreAgents(db, path.join(FIXTURES_DIR, 'lettabot-builder.v2.af'));
    const g = await db.query<{ manager_type: string; sleeptime_agent_frequency: number | null; turns_counter: number | null }>(
      'SELECT manager_type, sleeptime_agent_frequency, turns_counter FROM groups',
    );
    assert.equal(g.rows.length, 1);
    assert.equal(g.rows[0].manager_type, 'sleeptime');
    assert.ok(g.rows[0].sleeptime_agent_frequency, 'the fixture sets a frequency');
    assert.equal(g.rows[0].turns_counter, -1);
  });
});
