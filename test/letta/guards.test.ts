/**
 * The restore guards: a Letta schema revision outside the compatible list, and archival passages
 * whose embedding model/dimension the target does not use, are refused (exit code 6) with a
 * message that names both sides, and change nothing; --force-schema / --allow-embedding-mismatch
 * let them through.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errorHints } from '../../src/cli/exit';
import { AgentVaultError } from '../../src/core/errors';
import type { Db } from '../../src/db/types';
import { COMPATIBLE_REVISIONS } from '../../src/letta/compat';
import { LETTA_HEAD_REVISION } from '../../src/letta/ddl';
import { exportAgents } from '../../src/letta/export';
import { planRestore, restoreAgents } from '../../src/letta/restore';
import { generateSyntheticDb } from '../../src/letta/synth';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR } from '../helpers/paths';
import { tableSnapshot } from './support';

const refused =
  (code: string, ...mustName: string[]) =>
  (e: unknown) => {
    assert.ok(e instanceof AgentVaultError && e.code === code && e.kind === 'mismatch', String(e));
    // what the CLI prints: the message and its hints (the flag that lifts the refusal is the CLI's hint)
    const printed = [e.message, ...errorHints(e)].join('\n');
    for (const n of mustName) assert.ok(printed.includes(n), `the message or its CLI hint names ${n}: ${printed}`);
    return true;
  };

describe('letta restore guards: schema revision and embedding model/dimension', function () {
  this.timeout(60000);
  let dir: string;
  let archive: string;
  let db: Db;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-guards-'));
    const src = await freshLettaDb('pg');
    try {
      await generateSyntheticDb(src, { agents: 1, messagesPerAgent: 10, passagesPerAgent: 6, dim: 16, seed: 11, embeddingModel: 'model-b' });
      archive = path.join(dir, 'x.avs');
      await exportAgents(src, { select: { all: true }, out: archive });
    } finally {
      await src.close();
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    db = await freshLettaDb('pg');
  });
  afterEach(async () => db.close());

  it('the compatible list is documented and contains head', async () => {
    assert.ok(COMPATIBLE_REVISIONS.some((r) => r.revision === LETTA_HEAD_REVISION));
    const doc = readFileSync(path.join(__dirname, '..', '..', 'docs', 'RESTORE.md'), 'utf8');
    for (const r of COMPATIBLE_REVISIONS) assert.ok(doc.includes(r.revision), `docs/RESTORE.md lists ${r.revision}`);
  });

  it('a target at an incompatible revision is refused, naming both revisions; --force-schema restores', async () => {
    await db.query(`UPDATE alembic_version SET version_num = 'ffb17eb241fc'`);
    const before = await tableSnapshot(db);
    await assert.rejects(restoreAgents(db, archive), refused('revision-mismatch', LETTA_HEAD_REVISION, 'ffb17eb241fc', '--force-schema'));
    assert.deepEqual(await tableSnapshot(db), before);
    const plan = await planRestore(db, archive);
    assert.equal(plan.guards.revision.compatible, false);
    assert.equal(plan.refusals[0].code, 'revision-mismatch');
    const r = await restoreAgents(db, archive, { forceSchema: true });
    assert.equal(r.plan.guards.revision.forced, true);
    assert.equal(r.plan.summary.created.length, 1);
  });

  it('a target at a compatible revision restores without --force-schema', async () => {
    await db.query(`UPDATE alembic_version SET version_num = '9fa274fb0b83'`);
    const r = await restoreAgents(db, archive);
    assert.equal(r.plan.guards.revision.compatible, true);
  });

  it('an agent file from an older Letta revision (v2 or v1) is interchange: upgraded and restored without --force-schema', async () => {
    const af = path.join(FIXTURES_DIR, 'co-3.v2.af'); // revision 308a180244fc
    const r = await restoreAgents(db, af);
    assert.deepEqual(r.plan.guards.revision, { source: '308a180244fc', target: LETTA_HEAD_REVISION, compatible: true, forced: false, interchange: true });
    assert.equal(r.plan.summary.created.length, 1);
    const v1 = path.join(FIXTURES_DIR, 'memgpt-agent.v1.af');
    const r1 = await restoreAgents(db, v1);
    assert.equal(r1.plan.guards.revision.source, 'v1:0.6.47');
    assert.equal(r1.plan.guards.revision.interchange, true);
    assert.equal(r1.plan.summary.created.length, 1);
  });

  it('an agent file into a target at a revision Agent Vault does not write is still refused', async () => {
    await db.query(`UPDATE alembic_version SET version_num = 'ffb17eb241fc'`);
    const before = await tableSnapshot(db);
    await assert.rejects(restoreAgents(db, path.join(FIXTURES_DIR, 'co-3.v2.af')), refused('revision-mismatch', 'ffb17eb241fc', '--force-schema'));
    assert.deepEqual(await tableSnapshot(db), before);
  });

  it('a snapshot archive of a database at an older revision is refused, naming both; --force-schema restores', async () => {
    const src = await freshLettaDb('pg');
    const old = path.join(dir, 'old.avs');
    try {
      await generateSyntheticDb(src, { agents: 1, messagesPerAgent: 3, passagesPerAgent: 0, dim: 16, seed: 21 });
      await src.query(`UPDATE alembic_version SET version_num = '308a180244fc'`);
      await exportAgents(src, { select: { all: true }, out: old });
    } finally {
      await src.close();
    }
    const before = await tableSnapshot(db);
    await assert.rejects(restoreAgents(db, old), refused('revision-mismatch', '308a180244fc', LETTA_HEAD_REVISION, '--force-schema'));
    assert.deepEqual(await tableSnapshot(db), before);
    const r = await restoreAgents(db, old, { forceSchema: true });
    assert.equal(r.plan.guards.revision.forced, true);
    assert.equal(r.plan.guards.revision.interchange, false);
  });

  it('passages with an embedding model/dimension the target does not use are refused, naming both; --allow-embedding-mismatch restores', async () => {
    await generateSyntheticDb(db, { agents: 1, messagesPerAgent: 4, passagesPerAgent: 3, dim: 8, seed: 12, embeddingModel: 'model-a' });
    const before = await tableSnapshot(db);
    await assert.rejects(restoreAgents(db, archive), refused('embedding-mismatch', 'model-b (16 dimensions)', 'model-a (8 dimensions)', '--allow-embedding-mismatch'));
    assert.deepEqual(await tableSnapshot(db), before);
    const r = await restoreAgents(db, archive, { allowEmbeddingMismatch: true });
    assert.equal(r.plan.guards.embedding[0].forced, true);
    assert.equal(r.rows.archival_passages, 6);
  });

  it('the same model and dimension in the target is no mismatch', async () => {
    await generateSyntheticDb(db, { agents: 1, messagesPerAgent: 4, passagesPerAgent: 3, dim: 16, seed: 13, embeddingModel: 'model-b' });
    const r = await restoreAgents(db, archive);
    assert.deepEqual(
      r.plan.guards.embedding.map((g) => g.ok),
      [true],
    );
  });
});
